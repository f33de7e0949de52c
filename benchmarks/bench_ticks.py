"""Tick benchmarks (no key needed: everything comes from the local sandbox). Prints timings and ratios
against baselines measured in the same run:

1. cerebro: a symbol-day of quotes (and the day's trades) replayed through ``MassiveQuoteData(ticks=…)``
   — the live state machine building minute bars — against ``bt.feeds.PandasData`` over the same
   rows (one line per tick, preloaded), each with a do-nothing strategy.
2. flat files: a ``quotes_v1`` day file streamed through the ticker filter (``stream_filter``), in MB/s
   of gzip and peak RSS (child process), against ``gzip -dc > /dev/null`` on the same file. The sandbox
   day is small, so the file is also enlarged (rows repeated) to show memory stays flat with size.
3. REST v3: one 50,000-quote page and one 50,000-trade page → DataFrame, ours (the REST piece of
   ``fetch_ticks_rest``: HTTP + gzip + parse + tick schema, without and with the result cache written)
   against the official client's ``list_quotes`` / ``list_trades`` into a DataFrame, all from a loopback
   server answering with the same gzip body; then the same pages in real pages' shape, where optional keys
   vary from one tick to the next.

Run: .venv/bin/python benchmarks/bench_ticks.py [rest] [cerebro] [flatfile]   (all three by default)
"""

from __future__ import annotations

import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import backtrader as bt
import numpy as np
import orjson
import pandas as pd
import requests

from massive_feeds.backtrader import MassiveQuoteData
from massive_feeds.rest import RestClient
from massive_feeds.sandbox import Sandbox
from massive_feeds.cache import ResultCache, wait_for_result_cache
from massive_feeds.ticks import _rest_piece, fetch_ticks

from bench_rest import interleaved, serve_fixed, spread  # the aggs benchmark's server (own process) and rounds

DAY = "2024-03-05"


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# --- 1. cerebro -----------------------------------------------------------------------------------
class Nothing(bt.Strategy):
    def __init__(self) -> None:
        self.count = 0

    def next(self) -> None:
        self.count += 1


def run_cerebro(feed: bt.feed.DataBase) -> int:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed)
    cerebro.addstrategy(Nothing)
    return cerebro.run()[0].count


def bench_cerebro(settings) -> None:
    ticks = fetch_ticks("AAPL", DAY, DAY, ["trades", "quotes"], method="rest", settings=settings)
    quotes = ticks[ticks["kind"] == "quote"]
    rows = pd.DataFrame({"open": quotes["bid"].to_numpy(), "high": quotes["ask"].to_numpy(),
                         "low": quotes["bid"].to_numpy(), "close": ((quotes["bid"] + quotes["ask"]) / 2).to_numpy(),
                         "volume": quotes["bid_size"].to_numpy(), "openinterest": 0.0},
                        index=pd.DatetimeIndex(quotes["timestamp"]).tz_localize(None))
    bars = run_cerebro(MassiveQuoteData(ticks=ticks, dataname="AAPL", interval="1m"))
    ours = best_of(lambda: run_cerebro(MassiveQuoteData(ticks=ticks, dataname="AAPL", interval="1m")))
    base = best_of(lambda: run_cerebro(bt.feeds.PandasData(dataname=rows)))
    print(f"[cerebro] {len(quotes):,} quotes + {len(ticks) - len(quotes):,} trades of AAPL {DAY}")
    print(f"  MassiveQuoteData(ticks=…) → {bars} minute bars: {ours * 1000:8.1f} ms "
          f"({len(ticks) / ours / 1e6:.2f} M events/s)")
    print(f"  bt.feeds.PandasData over the {len(quotes):,} quote rows: {base * 1000:8.1f} ms")
    print(f"  ratio PandasData / MassiveQuoteData = {base / ours:.1f}x  (target ≥ 2x)")


# --- 2. flat file streaming ----------------------------------------------------------------------------
_CHILD = r"""
import sys, time
from massive_feeds.flatfiles.stream import file_chunks
from massive_feeds.flatfiles.ticks import stream_filter, table_to_ticks
path = sys.argv[1]
t0 = time.perf_counter()
table = stream_filter(file_chunks(path), {"AAPL": "AAPL"}, "quotes", path)
rows = len(table_to_ticks(table, "quotes"))
elapsed = time.perf_counter() - t0
# VmHWM: this process's own peak (ru_maxrss would include the parent's size from before exec)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(elapsed, rows, hwm)
"""


def _gzip_dc(path: Path) -> tuple[float, int | None]:
    """Seconds and peak RSS (KB, when /usr/bin/time exists) of ``gzip -dc FILE > /dev/null``."""
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    proc = subprocess.run([*timer, "sh", "-c", f"gzip -dc '{path}' > /dev/null"], check=True, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - t0
    peak = int(proc.stderr.strip().splitlines()[-1]) if timer else None
    return elapsed, peak


_IMPORTS = r"""
from massive_feeds.flatfiles.stream import file_chunks
from massive_feeds.flatfiles.ticks import stream_filter, table_to_ticks
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def bench_flatfile(sb: Sandbox, folder: Path) -> None:
    from massive_feeds.flatfiles.s3 import S3Transport

    transport = S3Transport(sb.settings(home=folder / "h"))
    key = f"us_stocks_sip/quotes_v1/{DAY[:4]}/{DAY[5:7]}/{DAY}.csv.gz"
    body = transport.client.get_object(Bucket=transport.bucket, Key=key)["Body"].read()
    raw = gzip.decompress(body)
    header, _, rows = raw.partition(b"\n")
    files = {"day file": folder / "day.csv.gz"}
    files["day file"].write_bytes(body)
    big = folder / "big.csv.gz"
    rows = rows if rows.endswith(b"\n") else rows + b"\n"
    with gzip.open(big, "wb", compresslevel=1) as fh:  # the day's rows 40 times over, AAPL only once
        fh.write(header + b"\n")
        for k in range(40):
            fh.write(rows if k == 0 else rows.replace(b"\nAAPL,", b"\nAAPX,"))
    files["day x40"] = big
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    base_kb = int(subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True, env=env,
                                 check=True).stdout)
    for label, path in files.items():
        size_mb = path.stat().st_size / 1e6
        runs = [subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                               env=env, check=True).stdout.split() for _ in range(3)]
        secs, kept, rss_kb = min(float(r[0]) for r in runs), int(runs[0][1]), max(int(r[2]) for r in runs)
        gz_runs = [_gzip_dc(path) for _ in range(3)]
        gz, gz_rss = min(r[0] for r in gz_runs), gz_runs[0][1]
        print(f"[flat file {label}] {size_mb:,.1f} MB gzip, {kept:,} AAPL quotes kept")
        print(f"  ours (stream + filter + tick frame): {size_mb / secs:7.1f} MB/s gzip, peak RSS {rss_kb / 1024:6.0f} MB "
              f"(of which {base_kb / 1024:.0f} MB is the interpreter with pandas/pyarrow imported)")
        print(f"  gzip -dc > /dev/null:                {size_mb / gz:7.1f} MB/s gzip, peak RSS "
              f"{'n/a' if gz_rss is None else f'{gz_rss / 1024:.0f} MB'}")
        print(f"  ratio ours / gzip -dc = {gz / secs:.2f}x")


# --- 3. REST page ----------------------------------------------------------------------------------------
def real_shape(rows: list[dict], kind: str) -> list[dict]:
    """The sandbox's ticks in the shape of real pages, where optional keys come and go from one object to the
    next (the one page decoder reads both shapes alike): trades with
    ``conditions`` on most, ``trf_id``/``trf_timestamp`` on about a third, a rare ``correction``; quotes with
    ``conditions``/``indicators`` on some. Keys stay in the service's alphabetical order."""
    rng = np.random.default_rng(17)
    out = []
    for r in rows:
        extra: dict = {}
        if kind == "trades":
            if rng.random() < 0.85:
                extra["conditions"] = sorted(int(c) for c in rng.choice([2, 12, 14, 37, 41, 53], rng.integers(1, 4), False))
            if rng.random() < 0.01:
                extra["correction"] = 1
            if rng.random() < 0.35:
                extra.update(trf_id=201, trf_timestamp=r["sip_timestamp"] - 45_000)
        else:
            if rng.random() < 0.2:
                extra["conditions"] = [1]
            if rng.random() < 0.1:
                extra["indicators"] = [604]
        out.append(dict(sorted({**r, **extra}.items())))
    return out


def bench_rest(sb: Sandbox, folder: Path, kind: str, rounds: int = 15, shape: str = "sandbox") -> None:
    """One full page (50,000) of ``kind`` from a loopback server answering with the same gzip body to both
    clients: ours without and with the result cache written (the entry is cleared, untimed, after each run so
    every run fetches and writes), and the official client's ``list_quotes``/``list_trades`` into a frame.
    ``shape="real"``: the same ticks with real pages' optional keys (:func:`real_shape`)."""
    from massive import RESTClient

    url = f"{sb.rest_url}/v3/{kind}/AAPL"
    # three weeks of the sandbox's AAPL ticks hold more than a page: the first page is a full 50,000
    lo, hi = pd.Timestamp("2024-03-01", tz="UTC").value, pd.Timestamp("2024-03-22", tz="UTC").value
    params = {"timestamp.gte": lo, "timestamp.lt": hi, "limit": 50_000, "order": "asc", "sort": "timestamp"}
    page = requests.get(url, params=params, headers={"Authorization": f"Bearer {sb.api_key}"}, timeout=60).json()
    page.pop("next_url", None)
    if shape == "real":
        page["results"] = real_shape(page["results"], kind)
    n = len(page["results"])
    body = orjson.dumps(page)
    server = serve_fixed(body)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings = sb.settings(home=folder / f"rest-{kind}-{shape}", plan="unlimited").with_overrides(rest_url=base)
    ours_client = RestClient(settings)
    official = RESTClient(api_key="bench", base=base, retries=0)
    listing = official.list_quotes if kind == "quotes" else official.list_trades
    cache_dir = folder / f"cache-{kind}-{shape}"

    def ours(use_cache: bool = False) -> pd.DataFrame:  # one request chain = the one fixed page
        return _rest_piece(ours_client, ResultCache(cache_dir), "AAPL", kind, lo, hi, use_cache=use_cache)

    def theirs() -> pd.DataFrame:
        return pd.DataFrame([t.__dict__ for t in listing("AAPL", timestamp_gte=lo, timestamp_lt=hi, limit=50_000)])

    def cache_landed() -> None:  # untimed: the background write lands, then the entry goes
        wait_for_result_cache()
        shutil.rmtree(cache_dir, ignore_errors=True)

    got = ours()
    assert len(got) == n and len(theirs()) == n, (len(got), n)
    names = (f"official list_{kind} -> DataFrame", "ours (HTTP + parse + tick schema)", "ours, result cache written")
    runs = interleaved({names[0]: theirs, names[1]: ours, names[2]: lambda: ours(True)}, rounds,
                       after={names[2]: cache_landed})  # warm-up, then alternating order
    label = "" if shape == "sandbox" else ", real shape (optional keys vary)"
    print(f"[REST {kind}{label}] one page of {n:,} {kind} ({len(body) / 1e6:.1f} MB JSON), median of {rounds} "
          f"interleaved rounds (min-max); load average {os.getloadavg()[0]:.1f} at the end")
    for name in names:
        times = runs[name]
        print(f"  {name:38s} {statistics.median(times) * 1000:7.1f} ms  ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})")
    for name in names[1:]:
        ratios = [a / b for a, b in zip(runs[names[0]], runs[name])]
        print(f"  ratio official / {name.split(' (')[0]}: {spread(ratios)}  (target ≥ 5x)")
    server.shutdown()


def main(parts: tuple[str, ...] = ("rest", "cerebro", "flatfile")) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        from datetime import date

        with Sandbox(s3=True, s3_days=(date(2024, 3, 4), date(2024, 3, 8))) as sb:
            settings = sb.settings(home=folder / "home", plan="unlimited")
            if "rest" in parts:
                for kind in ("quotes", "trades"):
                    bench_rest(sb, folder, kind)
                for kind in ("quotes", "trades"):
                    bench_rest(sb, folder, kind, shape="real")
            if "cerebro" in parts:
                bench_cerebro(settings)
            if "flatfile" in parts:
                bench_flatfile(sb, folder)


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or ("rest", "cerebro", "flatfile"))
