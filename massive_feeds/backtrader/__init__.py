"""Backtrader adapter: Massive bars as data feeds, historical, live and replayed from recordings.

::

    import backtrader as bt
    from massive_feeds.backtrader import MassiveData, MassiveStore

    cerebro = bt.Cerebro()
    cerebro.adddata(MassiveData(dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=5,
                                fromdate=datetime(2024, 3, 4), todate=datetime(2024, 3, 8), tz="America/New_York"))
    cerebro.adddata(MassiveData(dataset="my_stocks", dataname="MSFT"))           # a saved dataset
    cerebro.adddata(MassiveQuoteData(recording="massive_live_morning_20250104"))  # a recorded session

The adapter holds no HTTP or socket code: history comes through :func:`massive_feeds.fetch_data` and
the dataset library, live data from the streaming connector, replays from the recording reader.
"""

from .._optional import require

require("backtrader", "The Backtrader adapter")

from .bars import BarBlock, BarFormat, LiveBar, bt_datenums
from .feed import MassiveData, MassiveQuoteData
from .sources import END, FeedSource, FrameSource, Notice
from .store import MassiveStore
from .timeframes import interval_for, timeframe_for
from .tz import LocalizingTZ, backtrader_tz

__all__ = [
    "END", "BarBlock", "BarFormat", "FeedSource", "FrameSource", "LiveBar", "LocalizingTZ", "MassiveData",
    "MassiveQuoteData", "MassiveStore", "Notice", "backtrader_tz", "bt_datenums", "interval_for", "timeframe_for",
]
