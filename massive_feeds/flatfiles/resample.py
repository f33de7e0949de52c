"""Vectorised bar resampling with Massive's bucket rules (no per-row Python).

* Intraday: minute bars into epoch-aligned UTC buckets, ``bucket = t // width * width``, as the REST
  aggregates do for ``5/minute``, ``1/hour``, ``4/hour`` …
* ``1w``: day bars into weeks that start on Sunday, labelled midnight New York of that Sunday.
* ``1M``: day bars into calendar months, labelled midnight New York of the 1st.

OHLCV rules per bucket: first open, highest high, lowest low, last close, summed volume and
transactions. VWAP cannot be rebuilt from flat files (they carry none), so it stays NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..schema import NEW_YORK, Interval

#: Columns of the frames handled here: ``symbol`` (str), ``t`` (int64 ns UTC, bar start) and values.
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "transactions")


def bucket_starts(t_ns: np.ndarray, interval: Interval) -> np.ndarray:
    """The start (int64 ns UTC) of the ``interval`` bucket each bar start ``t_ns`` falls in."""
    t_ns = np.asarray(t_ns, dtype=np.int64)
    if interval.is_intraday:
        width = interval.minutes * 60 * 1_000_000_000
        return t_ns // width * width
    if interval.timespan == "day" and interval.multiplier == 1:
        return t_ns
    local = pd.DatetimeIndex(pd.to_datetime(t_ns, unit="ns", utc=True)).tz_convert(NEW_YORK).tz_localize(None)
    day = local.normalize()
    if interval.timespan == "week":
        start = day - pd.to_timedelta((day.day_of_week + 1) % 7, unit="D")  # back to Sunday
    elif interval.timespan == "month":
        start = day - pd.to_timedelta(day.day - 1, unit="D")
    else:
        raise ValueError(f"cannot resample day bars to {interval}")
    # Midnight always exists in New York (DST switches at 02:00), so localising is unambiguous.
    return start.tz_localize(NEW_YORK).tz_convert("UTC").asi8


def resample(df: pd.DataFrame, interval: Interval) -> pd.DataFrame:
    """Bars ``df`` (columns ``symbol``, ``t`` and :data:`VALUE_COLUMNS`) aggregated to ``interval``.

    Input order does not matter; the output is sorted by symbol then time.
    """
    if df.empty:
        return df.reset_index(drop=True)
    codes, names = pd.factorize(df["symbol"], sort=True)
    t = df["t"].to_numpy(np.int64)
    order = np.lexsort((t, codes))
    codes, t = codes[order], t[order]
    keys = bucket_starts(t, interval)
    if interval.name in ("1m", "1d"):  # already at the target size
        starts = np.arange(len(t))
    else:
        starts = np.flatnonzero(np.r_[True, (codes[1:] != codes[:-1]) | (keys[1:] != keys[:-1])])
    ends = np.r_[starts[1:], len(t)] - 1
    col = {c: df[c].to_numpy()[order] for c in VALUE_COLUMNS}
    return pd.DataFrame({
        "symbol": np.asarray(names)[codes[starts]],
        "t": keys[starts],
        "open": col["open"][starts],
        "high": np.maximum.reduceat(col["high"], starts),
        "low": np.minimum.reduceat(col["low"], starts),
        "close": col["close"][ends],
        "volume": np.add.reduceat(col["volume"], starts),
        "transactions": np.add.reduceat(col["transactions"], starts),
    })
