"""The Backtrader internals ``MassiveData``'s fast paths rely on, pinned to the exact release.

``MassiveData.load`` appends to a line's buffer (``array.append``, ``_idx += 1``, ``lencount += 1``) instead of
``forward()`` + ``line[0] = value``, guarded by ``_barstack``/``_barstash`` being empty; ``preload`` extends the
buffers with whole columns and then calls ``_last()`` and ``home()``; ``_tick_nullify``/``_tick_fill`` are
overridden with cached versions. Each test here fails on a Backtrader release where that is no longer true
(and the feed itself falls back to Backtrader's own path on any other release).
"""

from __future__ import annotations

import re
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
from backtrader.linebuffer import LineBuffer

from massive_feeds.backtrader import MassiveData
from massive_feeds.backtrader.feed import FAST_PATH_BACKTRADER
from tests._bt_support import Recorder

ROOT = Path(__file__).resolve().parent.parent


def test_backtrader_is_the_release_the_fast_paths_were_checked_on() -> None:
    pinned = re.search(r'"backtrader==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned is not None and pinned.group(1) == FAST_PATH_BACKTRADER
    assert bt.__version__ == FAST_PATH_BACKTRADER, (
        f"Backtrader {bt.__version__} is not {FAST_PATH_BACKTRADER}: MassiveData's fast paths are off; re-check "
        "this file against the new release, then move FAST_PATH_BACKTRADER and the pin in pyproject.toml")


def test_appending_to_the_buffer_is_forward_then_set() -> None:
    public, direct = LineBuffer(), LineBuffer()
    assert public.mode == direct.mode == LineBuffer.UnBounded
    for value in (1.0, 2.5, -3.0, float("nan")):
        public.forward()
        public[0] = value
        direct.array.append(value)
        direct._idx += 1
        direct.lencount += 1
        assert (direct._idx, direct.lencount, len(direct), direct.idx) == (
            public._idx, public.lencount, len(public), public.idx)
        np.testing.assert_array_equal(np.asarray(direct.array), np.asarray(public.array))
        np.testing.assert_array_equal([direct[0], direct[-1] if len(direct) > 1 else 0.0],
                                      [public[0], public[-1] if len(public) > 1 else 0.0])


def test_the_feed_hooks_it_overrides_exist_in_backtrader() -> None:
    base = bt.feed.AbstractDataBase
    for name in ("_tick_nullify", "_tick_fill", "_last", "home", "preload", "load", "_load"):
        assert callable(getattr(base, name, None)), name
    feed = MassiveData(bars=_bars(3), dataname="AAPL")
    assert hasattr(feed, "_barstack") and hasattr(feed, "_barstash")


def _run(feed: bt.feed.DataBase, preload: bool) -> pd.DataFrame:
    cerebro = bt.Cerebro(stdstats=False, preload=preload)
    cerebro.adddata(feed)
    cerebro.addstrategy(Recorder)
    return cerebro.run()[0].frame()


def _bars(n: int) -> pd.DataFrame:
    t = pd.date_range("2024-03-04 14:30", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(7)
    close = 100 + rng.normal(size=n).cumsum()
    return pd.DataFrame({"timestamp": t, "symbol": "AAPL", "open": close - 0.1, "high": close + 0.5,
                         "low": close - 0.5, "close": close, "volume": rng.integers(1, 1000, n).astype(float),
                         "vwap": close, "transactions": np.ones(n, dtype=np.int64)})


def test_fast_paths_give_what_backtraders_own_pandas_feed_gives() -> None:
    bars = _bars(50)
    frame = bars.set_index(bars["timestamp"].dt.tz_localize(None))[["open", "high", "low", "close", "volume"]]
    frame["openinterest"] = 0.0
    for preload in (True, False):
        ours = _run(MassiveData(bars=bars, dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=1), preload)
        theirs = _run(bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Minutes, compression=1), preload)
        assert len(ours) == len(theirs) == 50
        pd.testing.assert_frame_equal(ours.drop(columns=["status"]), theirs.drop(columns=["status"]),
                                      check_dtype=False)
