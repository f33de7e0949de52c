"""REST history for several asset classes, with the quota status afterwards."""

from _common import massive_settings, recent_weekdays, verify_bars

from massive_feeds import fetch_ohlcv_rest, quota_status

with massive_settings() as settings:
    start, end = recent_weekdays(2)
    df = fetch_ohlcv_rest(["AAPL", "BTC-USD", "EURUSD", "I:SPX"], start, end, interval="15m", settings=settings)
    print(df.groupby("symbol").agg(bars=("close", "size"), first=("open", "first"), last=("close", "last")))
    print()
    print(quota_status(settings))
    verify_bars(df, ["AAPL", "X:BTCUSD", "C:EURUSD", "I:SPX"])
    counts = df.groupby("symbol").size()
    # crypto trades around the clock: 96 quarter-hours a day, more than any stock session has
    assert counts["X:BTCUSD"] > counts["AAPL"], counts.to_dict()
    assert quota_status(settings).rest_used_today >= 4, "one REST call per ticker at least"
