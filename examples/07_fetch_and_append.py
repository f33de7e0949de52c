"""Unified fetch, then grow a dataset incrementally with append mode (de-duplicated)."""

from _common import massive_settings, recent_weekdays

from massive_feeds import fetch_intraday_data, load_dataset, save_dataset, stack_data

with massive_settings() as settings:
    start, end = recent_weekdays(4)
    first = fetch_intraday_data(["AAPL", "GOOGL"], start, start, interval="1h", source="massive", settings=settings)
    save_dataset(first, "my_stocks_dataset", settings=settings, overwrite=True)  # a rerun starts afresh

    new = fetch_intraday_data(["AAPL", "GOOGL"], start, end, interval="1h", source="massive", settings=settings)
    combined = stack_data(load_dataset("my_stocks_dataset", settings=settings), new, mode="append")
    save_dataset(combined, "my_stocks_dataset", settings=settings, overwrite=True)
    print(f"{len(first)} bars, then {len(new)} fetched (overlapping), dataset now {len(combined)} unique bars")
    reloaded = load_dataset("my_stocks_dataset", settings=settings)
    # `new` covers `first`'s day too: appending must not duplicate it
    assert len(combined) == len(new) == len(reloaded), (len(first), len(new), len(combined), len(reloaded))
    assert not reloaded.duplicated(["symbol", "timestamp"]).any()
    print(f"verified: appended without duplicates ({len(reloaded)} bars)")
