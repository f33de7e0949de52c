"""The demo: the whole product on the embedded sandbox, with no API key and no network.

Record a live session from the sandbox's WebSocket → fetch history over REST and flat files → run
every strategy on Backtrader (the recording *replayed through the live feed path*) and on vectorbt →
print the validation table and where the plots and trade logs went.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LIVE_SYMBOLS = ["AAPL", "MSFT"]
REST_SYMBOLS = ["AAPL", "MSFT", "X:BTCUSD"]
BULK_SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META", "GOOGL", "JPM"]
CLOCK_SPEED = 120.0  # two market hours per real minute: a useful live session in well under a minute
RECORD_SECONDS = 40.0


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def spread_cost_table(at_close: "pd.DataFrame", at_quotes: "pd.DataFrame") -> str:
    """Per strategy, symbol and engine: total return filled at the close, at the quotes, and the difference
    (what crossing the spread cost)."""
    keys = ["strategy", "symbol", "engine"]
    both = at_close[keys + ["total_return", "trades"]].merge(at_quotes[keys + ["total_return"]], on=keys,
                                                              suffixes=("_close", "_quotes"))
    both["spread_cost"] = both["total_return_quotes"] - both["total_return_close"]
    for col in ("total_return_close", "total_return_quotes", "spread_cost"):
        both[col] = both[col].map("{:+.3%}".format)
    return both.to_string(index=False)


def run_demo(output: str | Path = "output/demo", record_seconds: float = RECORD_SECONDS,
             speed: float = CLOCK_SPEED) -> int:
    from massive_feeds.strategies.validation import format_table, validate

    from ..datasets import list_datasets, save_dataset
    from ..fetch import fetch_data
    from . import print_rolls
    from ..quota import quota_status
    from ..record import WebSocketDataRecorder
    from ..sandbox import Sandbox

    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Sandbox(websocket=True, s3=True, clock_speed=speed) as sb:
        _step("Sandbox (no API key, no network)")
        print(sb.describe())
        # Quota state and caches live in a throwaway folder: the demo never touches a user's own.
        home = Path(tempfile.mkdtemp(prefix="massive-demo-"))
        settings = sb.settings(home=home, datasets_dir=out / "datasets")

        _step(f"Recording a live session: {', '.join(LIVE_SYMBOLS)} for {record_seconds:.0f}s "
              f"({record_seconds * speed / 60:.0f} market minutes at {speed:g}x)")
        recorder = WebSocketDataRecorder(LIVE_SYMBOLS, out / "live_recorded", settings=settings).start()
        time.sleep(record_seconds)
        recorder.stop()
        stats = recorder.stats()
        recording = recorder.save_dataset(tag="demo").stem
        print(f"{stats['events_durable']:,} quotes and trades recorded durably ({stats['flushes']} group fsyncs), "
              f"saved as dataset {recording}")

        _step("History over REST (small query -> auto picks REST)")
        today = sb.clock.now().date()
        rest = fetch_data(REST_SYMBOLS, today - timedelta(days=4), today - timedelta(days=1), "5m", settings=settings)
        print(f"{len(rest):,} 5-minute bars via {rest.attrs['method']} ({rest.attrs['method_reason']})")
        save_dataset(rest, "demo_rest_5m", tags=["demo"], settings=settings, overwrite=True)

        _step("History from flat files (large query -> auto picks S3 day files)")
        bulk = fetch_data(BULK_SYMBOLS, today - timedelta(days=12), today - timedelta(days=1), "1d", settings=settings)
        print(f"{len(bulk):,} daily bars for {len(BULK_SYMBOLS)} symbols via {bulk.attrs['method']} "
              f"({bulk.attrs['method_reason']})")
        save_dataset(bulk, "demo_flatfiles_1d", tags=["demo"], settings=settings, overwrite=True)

        _step("Futures: the continuous ES.c.0 over its last roll, back-adjusted by ratio")
        es = fetch_data("ES.c.0", today - timedelta(days=100), today - timedelta(days=1), "1d", settings=settings,
                        roll_adjust="ratio")
        held = " -> ".join(dict.fromkeys(es["contract"]))
        print(f"{len(es):,} sessions via {es.attrs['method']}, holding {held}")
        print_rolls(es)

        _step("Datasets")
        print(list_datasets(settings=settings).drop(columns=["path"]).to_string(index=False))

        _step("Validation: every strategy x (REST history, recorded session) x (Backtrader, vectorbt)")
        table = validate(None, ["demo_rest_5m", recording], engine="both", output=out / "validation",
                         settings=settings)
        print(format_table(table))

        _step("The spread's cost: the recorded session filled at the close vs at the quotes (buy ask, sell bid)")
        quotes = validate(None, [recording], engine="both", output=out / "validation", settings=settings,
                          fills="quotes")
        print(spread_cost_table(table[table["dataset"] == recording], quotes))

        _step("Quota")
        print(quota_status(settings))
    print(f"\nPlots (PNG/HTML) and trade logs (CSV): {out / 'validation'}")
    print(f"Demo finished in {time.monotonic() - started:.0f}s; everything is under {out}")
    return 0
