"""Validate the strategies across recorded regimes and history, on Backtrader and vectorbt."""

import time

from _common import massive_settings, recent_weekdays

from massive_feeds import WebSocketDataRecorder, fetch_data, save_dataset
from massive_feeds.strategies.validation import format_table, validate

with massive_settings() as settings:
    recorded = []
    for tag in ("morning", "midday"):  # with a real key: record at the open, mid-day, around news
        rec = WebSocketDataRecorder(["AAPL"], settings.home / "rec", settings=settings).start()
        time.sleep(5)
        rec.stop()
        recorded.append(rec.save_dataset(f"massive_live_{tag}", tag=tag, overwrite=True).stem)
    start, end = recent_weekdays(3)
    save_dataset(fetch_data("AAPL", start, end, "5m", settings=settings), "aapl_5m", settings=settings,
                     overwrite=True)

    table = validate(["sma_cross", "mean_reversion", "breakout"], ["aapl_5m", *recorded], engine="both",
                     output=settings.home / "validation", settings=settings)
    print(format_table(table))
    # three strategies x three datasets x two engines, one row each (AAPL is the only symbol)
    assert len(table) == 3 * 3 * 2, len(table)
    assert set(table["dataset"]) == {"aapl_5m", *recorded}, set(table["dataset"])
    print(f"verified: {len(table)} validation rows")
    print("plots and trade logs in", settings.home / "validation")
