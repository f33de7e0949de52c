"""Smart fetch: auto picks REST for small queries and flat files for large ones."""

from _common import massive_settings, recent_weekdays

from massive_feeds import fetch_data

with massive_settings() as settings:
    start, end = recent_weekdays(3)
    small = fetch_data(["AAPL", "MSFT"], start, end, interval="1h", method="auto", settings=settings)
    print(f"small query -> {small.attrs['method']}: {small.attrs['method_reason']}")
    print(small.head())

    start, end = recent_weekdays(8)
    large = fetch_data(["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "META"], start, end, interval="1d",
                       method="auto", settings=settings)
    print(f"\nlarge query -> {large.attrs['method']}: {large.attrs['method_reason']}")
    print(large.groupby("symbol")["close"].last())
