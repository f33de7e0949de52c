"""Backtrader ``timeframe``/``compression`` pairs ↔ our bar intervals.

Only sizes Massive serves directly are accepted: asking for, say, 3-minute bars is an error that points
at ``cerebro.resampledata`` instead of a silent substitution.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from ..errors import InvalidInputError
from ..schema import INTERVALS, Interval, parse_interval

TF = bt.TimeFrame

#: (timeframe, compression) → interval name.
_TO_INTERVAL: dict[tuple[int, int], str] = {
    (TF.Minutes, 1): "1m", (TF.Minutes, 5): "5m", (TF.Minutes, 15): "15m", (TF.Minutes, 30): "30m",
    (TF.Minutes, 60): "1h", (TF.Minutes, 240): "4h",
    (TF.Days, 1): "1d", (TF.Weeks, 1): "1w", (TF.Months, 1): "1M",
}
_FROM_INTERVAL: dict[str, tuple[int, int]] = {v: k for k, v in _TO_INTERVAL.items()}


def _describe(timeframe: int, compression: int) -> str:
    return f"{bt.TimeFrame.getname(timeframe, compression)} x{compression}"


def supported() -> str:
    """Human list of the supported pairs, for error messages."""
    return ", ".join(f"{name} ({_describe(*pair)})" for name, pair in _FROM_INTERVAL.items())


def interval_for(timeframe: int, compression: int) -> Interval:
    """The interval of a Backtrader ``timeframe``/``compression`` pair.

    Raises:
        InvalidInputError: Massive has no such bar size; the message lists the supported ones.
    """
    name = _TO_INTERVAL.get((int(timeframe), int(compression)))
    if name is None:
        raise InvalidInputError(
            f"Massive bars of {_describe(timeframe, compression)} are not available; supported: {supported()}. "
            "For other sizes load a finer interval and use cerebro.resampledata(...)."
        )
    return INTERVALS[name]


def timeframe_for(interval: str | Interval) -> tuple[int, int]:
    """``"5m"`` → ``(TimeFrame.Minutes, 5)``. Also accepts fixed widths such as ``"1s"``/``"10s"``
    (recordings resampled to seconds), which have no REST interval but are valid bar sizes."""
    try:
        return _FROM_INTERVAL[parse_interval(interval).name]
    except InvalidInputError:
        try:
            width = pd.Timedelta(str(interval))
        except ValueError:
            raise InvalidInputError(f"Invalid interval {interval!r}; use one of {', '.join(INTERVALS)}") from None
        seconds = width.total_seconds()
        if seconds > 0 and seconds < 60 and seconds == int(seconds):
            return TF.Seconds, int(seconds)
        if seconds >= 60 and seconds % 60 == 0:
            return TF.Minutes, int(seconds // 60)
        raise InvalidInputError(f"Invalid interval {interval!r}: not a whole number of seconds") from None


def bar_width_ms(timeframe: int, compression: int) -> int | None:
    """Fixed width of intraday bars in milliseconds; ``None`` for days and longer (calendar-based)."""
    if timeframe == TF.Seconds:
        return 1000 * compression
    if timeframe == TF.Minutes:
        return 60_000 * compression
    return None
