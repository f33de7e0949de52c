"""Flat-file benchmark: one realistic full-market minute_aggs day, 5 symbols, resampled to 1h.

Generates (once, cached in the temp folder) a day file shaped like Massive's
``us_stocks_sip/minute_aggs_v1``: ~11,000 tickers, ~1.6 M rows, ~90 MB CSV, ~20 MB gzip, sorted by
ticker then minute, liquid names trading every minute and a long tail of thin ones. Then times,
each in a fresh child process (so peak RSS is that of the method alone):

  (a) ours, first read: stream the gzip through pyarrow (filtering each block to the 5 symbols while
      a second thread writes the whole day to the parquet cache), then resample to 1h;
  (a') ours, repeat read: the cached parquet day, only the row groups holding the 5 symbols;
  (b) naive: ``pandas.read_csv`` of the whole gzip, then filter and resample;
  (c) ``gzip -dc > /dev/null``: the decompression floor.

Prints best wall times (methods interleaved over several child processes), ratios, peak RSS and
the targets (≥ 4× faster than naive pandas, within 1.5× of the gzip floor, peak RSS ≤ 400 MB).
Run: ``.venv/bin/python benchmarks/bench_flatfiles.py`` (``--strict``: exit 1 when the first read
misses a target).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "SPY"]
DAY = "2024-01-02"
SESSION_START_S = 1704186000  # 2024-01-02 04:00 New York (09:00 UTC): the first minute of the file
MINUTES = 960  # 04:00-20:00 New York
KEY = f"us_stocks_sip/minute_aggs_v1/2024/01/{DAY}.csv.gz"
HEADER = "ticker,volume,open,close,high,low,window_start,transactions"


# --- data -------------------------------------------------------------------------------------
def _tickers(rng: np.random.Generator, n: int) -> np.ndarray:
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    names = set(SYMBOLS)
    while len(names) < n:
        lengths = rng.integers(1, 6, n)
        names.update("".join(rng.choice(letters, k)) for k in lengths[: n - len(names)])
    return np.array(sorted(names))


def generate_day(n_tickers: int = 11_000, seed: int = 2024) -> pa.Table:
    """A full-market minute_aggs day, vectorised: per-ticker activity, minute masks, random walks."""
    rng = np.random.default_rng(seed)
    tickers = _tickers(rng, n_tickers)
    # Activity: a quarter of the market trades nearly every minute, the rest thinly (heavy tail).
    activity = np.clip(rng.lognormal(-2.0, 1.5, len(tickers)), 0.002, 1.0)
    activity[np.isin(tickers, SYMBOLS)] = 1.0
    minute = np.arange(MINUTES)
    regular = (minute >= 330) & (minute < 720)  # 09:30-16:00 New York
    shape = np.where(regular, 1.0, 0.25).astype(np.float32)
    mask = rng.random((len(tickers), MINUTES), dtype=np.float32) < activity[:, None].astype(np.float32) * shape
    t_idx, m_idx = np.nonzero(mask)  # sorted by ticker, then minute
    n = len(t_idx)
    starts = np.flatnonzero(np.r_[True, t_idx[1:] != t_idx[:-1]])

    base = rng.lognormal(3.0, 1.2, len(tickers))[t_idx]
    steps = rng.normal(0.0, 0.0012, n)
    walk = np.cumsum(steps)
    walk -= np.repeat(walk[starts] - steps[starts], np.diff(np.r_[starts, n]))  # restart per ticker
    close = base * np.exp(walk)
    open_ = close * np.exp(rng.normal(0.0, 0.0006, n))
    wiggle = np.abs(rng.normal(0.0, 0.0008, (2, n)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    decimals = np.where(close >= 1, 2, 4)
    rnd = lambda x: np.round(x * 10.0 ** decimals) / 10.0 ** decimals  # noqa: E731
    volume = np.round(rng.lognormal(6.0, 1.6, n))
    fractional = rng.random(n) < 0.05  # some fractional-share volume, written with decimals
    volume[fractional] += np.round(rng.random(fractional.sum()), 4)
    transactions = np.maximum(1, (volume / rng.uniform(60, 180, n)).astype(np.int64))
    return pa.table({
        "ticker": pa.array(tickers[t_idx]),
        "volume": volume, "open": rnd(open_), "close": rnd(close), "high": rnd(high), "low": rnd(low),
        "window_start": (SESSION_START_S + m_idx.astype(np.int64) * 60) * 1_000_000_000,
        "transactions": transactions,
    })


def write_day(path: Path) -> None:
    table = generate_day()
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    csv = (HEADER + "\n").encode() + sink.getvalue().to_pybytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(csv, compresslevel=6, mtime=0))
    tmp.replace(path)
    print(f"generated {path}: {table.num_rows:,} rows, {len(set(table['ticker'].to_pylist())):,} tickers, "
          f"{len(csv) / 1e6:.1f} MB CSV, {path.stat().st_size / 1e6:.1f} MB gzip")


# --- methods (run in a child process) ---------------------------------------------------------
def _ours(path: Path, cache: Path, warm: bool) -> Callable[[], int]:
    from massive_feeds.flatfiles.reader import bars_from_tables, convert_day_file, file_forms, read_cached_day
    from massive_feeds.schema import parse_date_range, parse_interval

    forms, window, interval = file_forms(SYMBOLS), parse_date_range(DAY, DAY), parse_interval("1h")
    parquet = cache / "day.parquet"
    if warm:
        convert_day_file(path, parquet, forms, KEY)

    def run() -> int:
        if warm:
            table = read_cached_day(parquet, forms, KEY)
        else:
            parquet.unlink(missing_ok=True)
            table = convert_day_file(path, parquet, forms, KEY)
        return len(bars_from_tables([(table, forms)], window, interval))

    return run


def _naive(path: Path) -> Callable[[], int]:
    import pandas as pd

    def run() -> int:
        df = pd.read_csv(path)
        df = df[df["ticker"].isin(SYMBOLS)]
        df["timestamp"] = pd.to_datetime(df["window_start"], unit="ns", utc=True)
        bars = df.groupby(["ticker", pd.Grouper(key="timestamp", freq="1h")]).agg(
            open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
            volume=("volume", "sum"), transactions=("transactions", "sum")).dropna()
        return len(bars)

    return run


def child(method: str, path: Path, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as cache:
        fn = _naive(path) if method == "naive" else _ours(path, Path(cache), warm=method == "warm")
        times, rows = [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            rows = fn()
            times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": min(times), "rows": rows, "rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM belongs to the address space that exec created; the
    getrusage figure can carry the parent's peak over a fork+exec, so it is only the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(method: str, path: Path, repeat: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", method, "--file", str(path), "--repeat", str(repeat)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gzip_floor(path: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(f"gzip -dc '{path}' > /dev/null", shell=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


# --- report -------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=Path(tempfile.gettempdir()) / "massive_feeds_bench" / f"{DAY}.csv.gz")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per child process")
    ap.add_argument("--rounds", type=int, default=3, help="child processes per method, interleaved")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the first read misses a target")
    ap.add_argument("--child", choices=["cold", "warm", "naive"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.file, args.repeat)
        return 0
    if not args.file.exists():
        write_day(args.file)
    size = args.file.stat().st_size
    print(f"day file: {args.file} ({size / 1e6:.1f} MB gzip); symbols {', '.join(SYMBOLS)} -> 1h; "
          f"best of {args.rounds}x{args.repeat}, {os.cpu_count()} CPUs")

    # Interleave the methods over several rounds and keep each one's best: on a shared machine a
    # burst of someone else's load then spoils one sample rather than one method.
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": [], "naive": []}
    floors = []
    for _ in range(args.rounds):
        floors.append(gzip_floor(args.file, args.repeat))
        for method, results in runs.items():
            results.append(run_child(method, args.file, args.repeat))
    floor = min(floors)
    cold, warm, naive = ({"seconds": min(r["seconds"] for r in res), "rows": res[0]["rows"],
                          "rss_mb": max(r["rss_mb"] for r in res)} for res in runs.values())
    assert cold["rows"] == warm["rows"] == naive["rows"], (cold, warm, naive)

    print(f"\n{'method':46} {'seconds':>8} {'peak RSS':>9}")
    for name, res in [("(a)  ours, first read (gzip -> filter + parquet)", cold),
                      ("(a') ours, repeat read (cached parquet)", warm),
                      ("(b)  naive pandas.read_csv + filter", naive)]:
        print(f"{name:46} {res['seconds']:8.3f} {res['rss_mb']:7.0f} MB")
    print(f"{'(c)  gzip -dc > /dev/null':46} {floor:8.3f}")

    checks = [
        ("first read  >= 4x faster than naive pandas", naive["seconds"] / cold["seconds"], 4.0, ">="),
        ("repeat read >= 4x faster than naive pandas", naive["seconds"] / warm["seconds"], 4.0, ">="),
        ("first read  within 1.5x of gzip floor", cold["seconds"] / floor, 1.5, "<="),
        ("repeat read within 1.5x of gzip floor", warm["seconds"] / floor, 1.5, "<="),
        ("first read  peak RSS <= 400 MB", cold["rss_mb"], 400.0, "<="),
        ("repeat read peak RSS <= 400 MB", warm["rss_mb"], 400.0, "<="),
    ]
    print()
    missed_first = False
    for label, value, target, op in checks:
        ok = value >= target if op == ">=" else value <= target
        missed_first |= not ok and label.startswith("first")
        print(f"{label:46} {value:8.2f}  {'ok' if ok else 'MISSED'}")
    print(f"\nNote: gzip -dc alone takes {floor / naive['seconds']:.0%} of naive pandas' whole time, so no "
          "first read of a gzip day can be 4x faster than pandas; every later query of that day reads "
          "the parquet cache and skips gzip entirely.")
    return 1 if args.strict and missed_first else 0


if __name__ == "__main__":
    sys.exit(main())
