"""REST benchmark: one 50,000-bar aggregates page into a DataFrame.

Compares, in one run, on the same body (taken from the sandbox, then served as fixed gzip bytes from
a loopback HTTP server so that only client-side work is measured):
  * ours: massive_feeds' parser (parse only) and fetch_ohlcv_rest (HTTP + parse + schema), also with the
    result cache written (a fresh cache each run, so each run fetches and writes its entry),
  * the official `massive` client: RESTClient.list_aggs into a DataFrame (HTTP + parse),
  * bare parsing: json.loads and orjson.loads of the body (no DataFrame at all).
Prints median timings and ratios. Run: .venv/bin/python benchmarks/bench_rest.py
"""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def official_frame(client, start_ms: int, end_ms: int) -> pd.DataFrame:
    aggs = client.list_aggs(TICKER, 1, "minute", start_ms, end_ms, limit=50_000)
    return pd.DataFrame([a.__dict__ for a in aggs])


def serve_fixed(body: bytes) -> ThreadingHTTPServer:
    """A loopback server answering every GET with the same gzip body, as the real service sends it."""
    payload = gzip.compress(body, compresslevel=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    from massive import RESTClient

    with Sandbox() as sb:
        settings = sb.settings(home=tempfile.mkdtemp(), plan="unlimited")
        ours_client = RestClient(settings)
        df = fetch_ohlcv_rest(TICKER, START, END, "1m", client=ours_client, use_cache=False)
        start_ms, end_ms = df["timestamp"].iloc[0].value // 10**6, df["timestamp"].iloc[-1].value // 10**6
        url = f"{sb.rest_url}/v2/aggs/ticker/{TICKER}/range/1/minute/{start_ms}/{end_ms}?limit=50000"
        page = requests.get(url, headers={"Authorization": f"Bearer {sb.api_key}"}).json()
        page.pop("next_url", None)  # one self-contained page
        body = orjson.dumps(page)
        bars = len(orjson.loads(body)["results"])
        print(f"page: {bars:,} bars, {len(body) / 1e6:.1f} MB JSON")

        def ours_parse() -> pd.DataFrame:
            page = parse_aggs(body)
            return pd.DataFrame(page.columns)

        def official_parse() -> pd.DataFrame:
            # what list_aggs does with a page once it has the bytes: json.loads, then one Agg per bar
            from massive.rest.models import Agg

            results = json.loads(body.decode("utf-8"))["results"]
            return pd.DataFrame([Agg.from_dict(r).__dict__ for r in results])

        parse = {
            "official client: parse -> DataFrame": best_of(official_parse, 3),
            "json.loads (bare)": best_of(lambda: json.loads(body)),
            "orjson.loads (bare)": best_of(lambda: orjson.loads(body)),
            "ours: parse -> DataFrame": best_of(ours_parse),
        }
    fixed = serve_fixed(body)
    base = f"http://127.0.0.1:{fixed.server_address[1]}"
    fixed_client = RestClient(settings.with_overrides(rest_url=base))
    official = RESTClient(api_key="bench", base=base, retries=0)
    cache_dir = settings.cache_dir / "rest"

    def ours_cached() -> pd.DataFrame:
        # a fresh result cache each run, so every run fetches and writes its entry (cleared before the clock)
        return fetch_ohlcv_rest(TICKER, START, END, "1m", client=fixed_client, use_cache=True)

    def clear_cache() -> None:
        wait_for_result_cache()  # the previous run's entry, written in the background, lands untimed
        shutil.rmtree(cache_dir, ignore_errors=True)

    e2e = {
        "official list_aggs -> DataFrame": median_of(lambda: official_frame(official, start_ms, end_ms), 5),
        "ours fetch_ohlcv_rest (HTTP+schema)": median_of(
            lambda: fetch_ohlcv_rest(TICKER, START, END, "1m", client=fixed_client, use_cache=False), 5),
        "ours, result cache written": median_of(ours_cached, 5, before=clear_cache),
    }
    clear_cache()
    fixed.shutdown()
    print("\nparsing only (median of 7):")
    for name, t in parse.items():
        print(f"  {name:38s} {t * 1e3:8.1f} ms")
    print("end to end over loopback HTTP (median of 5):")
    for name, t in e2e.items():
        print(f"  {name:38s} {t * 1e3:8.1f} ms")
    ours = parse["ours: parse -> DataFrame"]
    print("\nratios:")
    print(f"  ours vs orjson.loads (bare):       {ours / parse['orjson.loads (bare)']:.2f}x the time (target <= 1.5x)")
    print(f"  ours vs json.loads (bare):         {ours / parse['json.loads (bare)']:.2f}x the time")
    parse_speedup = parse["official client: parse -> DataFrame"] / ours
    print(f"  page -> DataFrame, ours vs official: {parse_speedup:.1f}x faster (target >= 5x)")
    speedup = e2e["official list_aggs -> DataFrame"] / e2e["ours fetch_ohlcv_rest (HTTP+schema)"]
    print(f"  end to end incl. HTTP+gzip, ours vs official: {speedup:.1f}x faster")
    cached = e2e["official list_aggs -> DataFrame"] / e2e["ours, result cache written"]
    print(f"  end to end with the result cache written, ours vs official: {cached:.1f}x faster (target >= 2.5x)")
    print("  (the cache entry is written by a background thread after the call returns: atomically, served from "
          "memory until it is on disk)")


if __name__ == "__main__":
    main()
