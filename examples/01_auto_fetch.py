"""Smart fetch: auto picks REST for small queries and flat files for large ones."""

from _common import massive_settings, recent_weekdays, trading_days, verify_bars

from massive_feeds import fetch_data

with massive_settings() as settings:
    start, end = recent_weekdays(3)
    small = fetch_data(["AAPL", "MSFT"], start, end, interval="1h", method="auto", settings=settings)
    print(f"small query -> {small.attrs['method']}: {small.attrs['method_reason']}")
    print(small.head())
    assert small.attrs["method"] == "rest", small.attrs  # 2 symbols x 3 days: inside the REST rule
    verify_bars(small, ["AAPL", "MSFT"])

    start, end = recent_weekdays(8)
    large = fetch_data(["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META"], start, end, interval="1d",
                       method="auto", settings=settings)
    print(f"\nlarge query -> {large.attrs['method']}: {large.attrs['method_reason']}")
    print(large.groupby("symbol")["close"].last())
    assert large.attrs["method"] == "flat_file", large.attrs  # 6 symbols: over the REST rule's 5
    verify_bars(large, ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META"], per_symbol=trading_days(start, end))
