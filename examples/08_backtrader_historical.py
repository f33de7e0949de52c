"""Backtrader on historical bars: MassiveData in cerebro, a built-in strategy, metrics and a plot."""

import backtrader as bt
from _common import massive_settings, recent_weekdays

from massive_feeds import fetch_data
from massive_feeds.backtrader import MassiveData
from massive_feeds.strategies import SmaCross, run_strategy

class CountBars(bt.Strategy):
    """Counts the bars the strategy sees."""

    def stop(self) -> None:
        self.bars = len(self.data)


with massive_settings() as settings:
    start, end = recent_weekdays(5)
    data = MassiveData(dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=5, fromdate=start,
                       todate=end, tz="America/New_York", settings=settings)
    result = run_strategy(SmaCross, data, cash=10_000, commission=0.0005, fast=8, slow=21)
    print(result)
    print(result.trades.head())
    bars_5m = fetch_data("AAPL", start, end, "5m", settings=settings)
    # the strategy saw every 5-minute bar of the query, and its equity curve starts at the cash given
    assert len(result.equity) == len(bars_5m), (len(result.equity), len(bars_5m))
    assert abs(float(result.equity.iloc[0]) - 10_000) < 1e-6
    print(f"verified: {len(bars_5m)} bars through cerebro, final value {float(result.equity.iloc[-1]):,.2f}")
    print("equity plot:", result.save_equity_png(settings.home / "sma_cross_aapl.png"))

    # The same feed resampled by cerebro, as with any Backtrader feed
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.resampledata(MassiveData(dataname="MSFT", interval="1m", fromdate=end, todate=end, settings=settings),
                         timeframe=bt.TimeFrame.Minutes, compression=30)
    cerebro.addstrategy(CountBars)
    resampled = cerebro.run()[0].bars
    minutes = fetch_data("MSFT", end, end, "30m", settings=settings)
    assert resampled == len(minutes) > 0, (resampled, len(minutes))
    print(f"verified: MSFT 1m resampled by cerebro into {resampled} 30-minute bars, as many as REST's 30m bars")
