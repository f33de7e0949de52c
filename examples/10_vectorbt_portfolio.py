"""vectorbt: load bars through MassiveData and run a moving-average crossover portfolio."""

import vectorbt as vbt

from _common import massive_settings, recent_weekdays

from massive_feeds.vectorbt import MassiveData

with massive_settings() as settings:
    start, end = recent_weekdays(5)
    data = MassiveData.download(["AAPL", "MSFT"], start=start, end=end, timeframe="15m", settings=settings)
    close = data.get("Close").ffill()
    fast, slow = close.rolling(8).mean(), close.rolling(21).mean()
    entries = (fast > slow) & (fast.shift() <= slow.shift())
    exits = (fast < slow) & (fast.shift() >= slow.shift())
    pf = vbt.Portfolio.from_signals(close, entries, exits, init_cash=10_000, fees=0.0005, freq="15min")
    print(pf.total_return())
    assert list(close.columns) == ["AAPL", "MSFT"] and str(close.index.tz) == "UTC"
    trades = pf.trades.count()
    # crossings alternate, so every entry signal opens exactly one trade (closed later or still open)
    assert (trades == entries.sum()).all() and (trades > 0).all(), (trades.to_dict(), entries.sum().to_dict())
    assert abs(pf.final_value()["AAPL"] - 10_000 * (1 + pf.total_return()["AAPL"])) < 1e-6
    print(f"verified: {len(close)} bars per symbol, trades {trades.to_dict()}")
    print(pf.stats(column="AAPL")[["Total Return [%]", "Sharpe Ratio", "Max Drawdown [%]", "Total Trades"]])
