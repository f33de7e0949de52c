"""The demo: the whole product on the embedded sandbox, with no API key and no network."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

DEMO_SYMBOLS = ["AAPL", "MSFT", "X:BTCUSD"]


def _step(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def run_demo(output: str | Path = "output/demo") -> int:
    from ..datasets import list_datasets, save_dataset
    from ..fetch import fetch_ohlcv_rest
    from ..quota import quota_status
    from ..sandbox import Sandbox
    from . import _optional_sides

    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Sandbox(**_optional_sides(True, True)) as sb:
        _step("Sandbox")
        print(sb.describe())
        # The demo keeps its quota state and caches in its own folder so it never touches a user's real ones.
        home = Path(tempfile.mkdtemp(prefix="massive-demo-"))
        settings = sb.settings(home=home, datasets_dir=out / "datasets")

        _step("REST history")
        day = sb.clock.now().date()
        start = (sb.clock.now() - _weekdays(5)).date()
        df = fetch_ohlcv_rest(DEMO_SYMBOLS, start, day, "5m", settings=settings, progress=False)
        print(f"{len(df):,} 5-minute bars for {', '.join(DEMO_SYMBOLS)} from {start} to {day}")
        print(df.groupby("symbol")["close"].agg(["count", "first", "last"]).to_string())

        _step("Dataset")
        path = save_dataset(df, "demo_rest_5m", tags=["demo"], settings=settings)
        print(f"saved {path}")
        print(list_datasets(settings=settings).drop(columns=["path"]).to_string(index=False))

        _step("Quota")
        print(quota_status(settings))
    print(f"\nDemo finished in {time.monotonic() - started:.1f}s; outputs in {out}")
    return 0


def _weekdays(n: int):
    import pandas as pd

    return pd.offsets.BDay(n)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_demo(os.environ.get("DEMO_OUTPUT", "output/demo")))
