"""Backtrader live (REST backfill, then stream bars) and the replay of a recording through the same path."""

import time

import backtrader as bt
from _common import massive_settings

from massive_feeds import WebSocketDataRecorder
from massive_feeds.backtrader import MassiveData


class PrintBars(bt.Strategy):
    """Prints data notifications and the first live bars, then stops."""

    params = (("live_bars", 3),)

    def __init__(self) -> None:
        self.live_seen = 0

    def notify_data(self, data, status, *args, **kwargs) -> None:
        print("status:", data._getstatusname(status))

    def next(self) -> None:
        if self.data._laststatus == self.data.LIVE:
            self.live_seen += 1
            print(f"live bar {self.data.datetime.datetime(0):%H:%M} close={self.data.close[0]}")
            if self.live_seen >= self.p.live_bars:
                self.env.runstop()


with massive_settings() as settings:
    # Live: DELAYED while backfilling over REST, then LIVE bars built from the stream
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MassiveData(dataname="AAPL", interval="1m", historical=False, backfill_bars=30, settings=settings))
    cerebro.addstrategy(PrintBars)
    live = cerebro.run()[0]
    assert live.live_seen == 3, live.live_seen  # it stopped itself after three LIVE bars

    # Record a few minutes, then replay them through the very same feed code (as fast as possible)
    recorder = WebSocketDataRecorder(["AAPL"], settings.home / "rec", settings=settings).start()
    time.sleep(6)
    recorder.stop()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MassiveData(recording=recorder.path, interval="1m", settings=settings))
    cerebro.addstrategy(PrintBars, live_bars=10_000)
    replayed = cerebro.run()[0]
    recorded_bars = recorder.get_dataframe(resample_interval="1min")
    # every minute of the recording reached the strategy as a LIVE bar, as it would have live
    assert replayed.live_seen == len(recorded_bars) > 0, (replayed.live_seen, len(recorded_bars))
    print(f"verified: replayed {replayed.live_seen} recorded minutes through the live feed path")
