"""Backtrader on historical bars: MassiveData in cerebro, a built-in strategy, metrics and a plot."""

import backtrader as bt
from _common import massive_settings, recent_weekdays

from massive_feeds.backtrader import MassiveData
from strategies import SmaCross, run_strategy

with massive_settings() as settings:
    start, end = recent_weekdays(5)
    data = MassiveData(dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=5, fromdate=start,
                       todate=end, tz="America/New_York", settings=settings)
    result = run_strategy(SmaCross, data, cash=10_000, commission=0.0005, fast=8, slow=21)
    print(result)
    print(result.trades.head())
    print("equity plot:", result.save_equity_png(settings.home / "sma_cross_aapl.png"))

    # The same feed resampled by cerebro, as with any Backtrader feed
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.resampledata(MassiveData(dataname="MSFT", interval="1m", fromdate=end, todate=end, settings=settings),
                         timeframe=bt.TimeFrame.Minutes, compression=30)
    cerebro.run()
    print("resampled MSFT 1m -> 30m: ok")
