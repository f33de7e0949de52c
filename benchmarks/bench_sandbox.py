"""Sandbox generation speed: how fast the synthetic market serves any date, cold (nothing generated yet).

Measures, in one run:
  * full-market day files (stocks ``minute_aggs_v1``, ``trades_v1``, ``quotes_v1``) generated from
    nothing, against reading the same gzip CSV back with pandas (baseline from the same run);
  * REST, through our own ``fetch_ohlcv_rest`` against a fresh sandbox: a month of minute bars for 5
    symbols, cold and warm (generator cache filled, result cache off), and 2003-to-clock daily bars
    for one symbol;
  * one 50,000-trade ``/v3/trades`` page over HTTP.
Targets (issue 14): a full-market minute day file well under a second; a month of 5 symbols over REST
without noticeable wait. Run: ``.venv/bin/python benchmarks/bench_sandbox.py``
"""

from __future__ import annotations

import gzip
import io
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from massive_feeds import fetch_ohlcv_rest  # noqa: E402
from massive_feeds.sandbox import Sandbox  # noqa: E402
from massive_feeds.sandbox.dayfiles import day_file  # noqa: E402
from massive_feeds.sandbox.market import MarketGenerator  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY", "JPM"]
CLOCK = datetime(2025, 6, 4, 15, 30, tzinfo=timezone.utc)


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    MarketGenerator().ticks("AAPL", date(2024, 1, 2))  # load the XNYS calendar once, outside the timings
    print("full-market stocks day files, cold generator (a new one per file):")
    for base, day in [("minute", date(2011, 4, 12)), ("minute", date(2024, 1, 9)),
                      ("trades", date(2019, 3, 5)), ("quotes", date(2019, 3, 6))]:
        data, gen = timed(day_file, MarketGenerator(), "stocks", base, day)
        frame, read = timed(lambda data=data: pd.read_csv(io.BytesIO(gzip.decompress(data))))
        print(f"  {base:7s} {day}: {gen * 1e3:7.1f} ms for {len(frame):,} rows / {len(data) / 1e6:.2f} MB gzip"
              f"  (reading it back with pandas: {read * 1e3:.1f} ms, generation = {gen / read:.2f}x that)")

    with tempfile.TemporaryDirectory() as home, Sandbox(clock_start=CLOCK) as sb:
        settings = sb.settings(home=Path(home), plan="unlimited")
        df, cold = timed(fetch_ohlcv_rest, SYMBOLS, "2024-01-01", "2024-01-31", "1m", settings=settings,
                         use_cache=False, progress=False)
        _, warm = timed(fetch_ohlcv_rest, SYMBOLS, "2024-01-01", "2024-01-31", "1m", settings=settings,
                        use_cache=False, progress=False)
        print(f"\nREST, a month of 1m bars for {len(SYMBOLS)} symbols ({len(df):,} bars):")
        print(f"  cold {cold:.2f} s, warm {warm:.2f} s (cold = {cold / warm:.1f}x warm: the generation share)")
        daily, t = timed(fetch_ohlcv_rest, "KO", "2003-09-10", "2025-06-03", "1d", settings=settings,
                         use_cache=False, progress=False)
        print(f"REST, daily bars 2003-09-10..2025-06-03 for one symbol ({len(daily):,} bars): cold {t:.2f} s")
        url = f"{sb.rest_url}/v3/trades/AAPL?timestamp.gte=2024-01-02&limit=50000&order=asc"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {sb.api_key}"})
        body, t = timed(lambda: urllib.request.urlopen(req, timeout=60).read())
        print(f"REST, one 50,000-trade /v3/trades page: {t * 1e3:.0f} ms ({len(body) / 1e6:.1f} MB JSON)")


if __name__ == "__main__":
    main()
