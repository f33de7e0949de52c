"""REST history for several asset classes, with the quota status afterwards."""

from _common import massive_settings, recent_weekdays

from massive_feeds import fetch_ohlcv_rest, quota_status

with massive_settings() as settings:
    start, end = recent_weekdays(2)
    df = fetch_ohlcv_rest(["AAPL", "BTC-USD", "EURUSD", "I:SPX"], start, end, interval="15m", settings=settings)
    print(df.groupby("symbol").agg(bars=("close", "size"), first=("open", "first"), last=("close", "last")))
    print()
    print(quota_status(settings))
