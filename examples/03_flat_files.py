"""Bulk history from S3 flat files (day files cached locally; monthly byte quota)."""

from _common import massive_settings, recent_weekdays, trading_days, verify_bars

from massive_feeds import download_flat_file, quota_status

with massive_settings() as settings:
    start, end = recent_weekdays(5)
    df = download_flat_file(["AAPL", "GOOGL", "MSFT", "TSLA", "NVDA"], start, end, interval="1d", settings=settings)
    print(df.pivot(index="timestamp", columns="symbol", values="close"))
    print("days without a file:", df.attrs.get("missing_days"))
    print(quota_status(settings))
    verify_bars(df, ["AAPL", "GOOGL", "MSFT", "TSLA", "NVDA"], per_symbol=trading_days(start, end))
    assert quota_status(settings).flatfile_bytes_used > 0, "flat-file bytes were not counted"
