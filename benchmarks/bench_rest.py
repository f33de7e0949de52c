"""REST benchmark: one 50,000-bar aggregates page into a DataFrame, as compact JSON (the service's form) and
as ordinary spaced JSON (``json.dumps``), both through the one page decoder.

Compares, in one run, on the same body (taken from the sandbox, then served as fixed gzip bytes by a
loopback HTTP server in its own process, so the server's work never shares the client's GIL and both
sides meet the same server):
  * ours: massive_feeds' parser (parse only) and fetch_ohlcv_rest (HTTP + parse + schema), also with the
    result cache written (a fresh cache each run, so each run fetches and writes its entry),
  * the official `massive` client: RESTClient.list_aggs into a DataFrame (HTTP + parse),
  * bare parsing: json.loads and orjson.loads of the body (no DataFrame at all).

End to end, every case is warmed up once, then run in interleaved rounds (official, ours, ours+cache, then
the next round in reverse order), so a load swing on a shared machine hits every side alike; each
round's ratio is official / ours from that round. Prints medians, the min-max spread of the per-round
ratios, and how long the background cache write took after the call returned (waited for, untimed,
before the next case starts). Run: .venv/bin/python benchmarks/bench_rest.py [rounds]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import orjson
import pandas as pd
import requests

from massive_feeds import fetch_ohlcv_rest
from massive_feeds.cache import wait_for_result_cache
from massive_feeds.rest import RestClient, parse_aggs
from massive_feeds.sandbox import Sandbox

TICKER, START, END = "X:BTCUSD", "2024-01-01", "2024-02-04"  # 35 days of 24/7 minutes ≈ 50,000 bars


def best_of(fn: Callable[[], object], repeat: int = 7) -> float:
    return median_of(fn, repeat)


def median_of(fn: Callable[[], object], repeat: int = 7, before: Callable[[], None] | None = None) -> float:
    """Median wall time of ``repeat`` runs (``before`` runs untimed ahead of each)."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(cases: dict[str, Callable[[], object]], rounds: int,
                after: dict[str, Callable[[], None]] | None = None) -> dict[str, list[float]]:
    """Wall times per case over ``rounds`` rounds after one warm-up each; the order alternates every round
    (A B C, C B A, …). ``after[name]`` runs untimed right after that case (e.g. to let background work land)."""
    after = after or {}
    names = list(cases)
    for name in names:  # warm-up: connections, imports, caches of both clients
        cases[name]()
        after.get(name, lambda: None)()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
            after.get(name, lambda: None)()
    return times


def spread(ratios: list[float]) -> str:
    return f"median {statistics.median(ratios):.1f}x, min {min(ratios):.1f}x, max {max(ratios):.1f}x"


def official_frame(client, start_ms: int, end_ms: int) -> pd.DataFrame:
    aggs = client.list_aggs(TICKER, 1, "minute", start_ms, end_ms, limit=50_000)
    return pd.DataFrame([a.__dict__ for a in aggs])


_SERVER = r"""
import gzip, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

with open(sys.argv[1], "rb") as f:
    payload = gzip.compress(f.read(), compresslevel=1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class FixedServer:
    """A loopback server, in its own process, answering every GET with the same gzip body, as the real
    service sends it (gzip level 1, Content-Length, keep-alive)."""

    def __init__(self, body: bytes) -> None:
        fd, name = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        self._body_file = Path(name)
        self._proc = subprocess.Popen([sys.executable, "-c", _SERVER, name], stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.server_address = ("127.0.0.1", int(self._proc.stdout.readline()))

    def shutdown(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._body_file.unlink(missing_ok=True)


def serve_fixed(body: bytes) -> FixedServer:
    return FixedServer(body)


def end_to_end(body: bytes, settings, start_ms: int, end_ms: int, rounds: int) -> tuple[dict, dict, list[float]]:
    """Interleaved rounds of the official client, ours, and ours with the result cache written, all against
    one loopback server answering with ``body``. Returns (times per case, per-round ratios, cache writes)."""
    from massive import RESTClient

    fixed = FixedServer(body)
    base = f"http://127.0.0.1:{fixed.server_address[1]}"
    fixed_client = RestClient(settings.with_overrides(rest_url=base))
    official = RESTClient(api_key="bench", base=base, retries=0)
    cache_dir = settings.cache_dir / "rest"

    def ours_cached() -> pd.DataFrame:
        # a fresh result cache each run (cleared untimed by cache_landed), so every run fetches and writes
        return fetch_ohlcv_rest(TICKER, START, END, "1m", client=fixed_client, use_cache=True)

    write_times: list[float] = []

    def cache_landed() -> None:  # untimed: the background write finishes before the next case starts
        t0 = time.perf_counter()
        wait_for_result_cache()
        write_times.append(time.perf_counter() - t0)
        shutil.rmtree(cache_dir, ignore_errors=True)

    runs = interleaved({
        NAMES[0]: lambda: official_frame(official, start_ms, end_ms),
        NAMES[1]: lambda: fetch_ohlcv_rest(TICKER, START, END, "1m", client=fixed_client, use_cache=False),
        NAMES[2]: ours_cached,
    }, rounds, after={NAMES[2]: cache_landed})
    fixed.shutdown()
    per_round = {name: [a / b for a, b in zip(runs[NAMES[0]], runs[name])] for name in NAMES[1:]}
    return runs, per_round, write_times


NAMES = ("official list_aggs -> DataFrame", "ours fetch_ohlcv_rest (HTTP+schema)", "ours, result cache written")


def main(rounds: int = 9) -> None:
    with Sandbox() as sb:
        settings = sb.settings(home=tempfile.mkdtemp(), plan="unlimited")
        ours_client = RestClient(settings)
        df = fetch_ohlcv_rest(TICKER, START, END, "1m", client=ours_client, use_cache=False)
        start_ms, end_ms = df["timestamp"].iloc[0].value // 10**6, df["timestamp"].iloc[-1].value // 10**6
        url = f"{sb.rest_url}/v2/aggs/ticker/{TICKER}/range/1/minute/{start_ms}/{end_ms}?limit=50000"
        page = requests.get(url, headers={"Authorization": f"Bearer {sb.api_key}"}).json()
        page.pop("next_url", None)  # one self-contained page
        # the service's compact form, and the same page as ordinary spaced JSON (``json.dumps``)
        forms = {"compact": orjson.dumps(page), "spaced": json.dumps(page).encode()}
        body = forms["compact"]
        bars = len(orjson.loads(body)["results"])
        print(f"page: {bars:,} bars, {len(body) / 1e6:.1f} MB compact JSON, {len(forms['spaced']) / 1e6:.1f} MB spaced")

        def official_parse() -> pd.DataFrame:
            # what list_aggs does with a page once it has the bytes: json.loads, then one Agg per bar
            from massive.rest.models import Agg

            results = json.loads(body.decode("utf-8"))["results"]
            return pd.DataFrame([Agg.from_dict(r).__dict__ for r in results])

        parse = {
            "official client: parse -> DataFrame": best_of(official_parse, 3),
            "json.loads (bare)": best_of(lambda: json.loads(body)),
            "orjson.loads (bare)": best_of(lambda: orjson.loads(body)),
        }
        for form, data in forms.items():
            parse[f"ours: parse -> DataFrame ({form})"] = best_of(lambda d=data: pd.DataFrame(parse_aggs(d).columns))
    results = {form: end_to_end(data, settings, start_ms, end_ms, rounds) for form, data in forms.items()}
    print("\nparsing only (median of 7):")
    for name, t in parse.items():
        print(f"  {name:48s} {t * 1e3:8.1f} ms")
    ours = parse["ours: parse -> DataFrame (compact)"]
    print("\nratios (parse):")
    print(f"  ours vs orjson.loads (bare):       {ours / parse['orjson.loads (bare)']:.2f}x the time (target <= 1.5x)")
    print(f"  ours vs json.loads (bare):         {ours / parse['json.loads (bare)']:.2f}x the time")
    parse_speedup = parse["official client: parse -> DataFrame"] / ours
    print(f"  page -> DataFrame, ours vs official: {parse_speedup:.1f}x faster (target >= 5x)")
    for form, (runs, per_round, write_times) in results.items():
        print(f"\nend to end over loopback HTTP, {form} JSON (median of {rounds} interleaved rounds, min-max):")
        for name, times in runs.items():
            print(f"  {name:38s} {statistics.median(times) * 1e3:8.1f} ms  ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})")
        print(f"  (background cache write, after the call returned: median {statistics.median(write_times) * 1e3:.1f} ms)")
        print(f"  ours vs official: {spread(per_round[NAMES[1]])} faster")
        print(f"  with the result cache written, ours vs official: {spread(per_round[NAMES[2]])} faster (target >= 2x)")
    print("  (the cache entry is written by a background thread after the call returns: atomically, served from "
          "memory until it is on disk)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
