"""The bar-bucket rule and the resample kernel: pure numpy/pandas over the schema, below every source.

* Intraday: epoch-aligned UTC buckets, ``bucket = t // width * width`` (:func:`fixed_buckets`), as the
  REST aggregates do for ``5/minute``, ``1/hour``, ``4/hour`` … and as recordings and live bars do.
* ``1w``: day bars into weeks that start on Sunday, labelled midnight New York of that Sunday.
* ``1M``: day bars into calendar months, labelled midnight New York of the 1st.

OHLCV rules per bucket: first open, highest high, lowest low, last close, summed volume and
transactions. VWAP cannot be rebuilt from flat files (they carry none), so it stays NaN; a frame
that has a ``vwap`` column (minute bars from REST) gets the volume-weighted VWAP of its bars.

Nothing here knows sessions, splits or files: :mod:`massive_feeds.sessions`,
:mod:`massive_feeds.splits` and the sources build on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .schema import NEW_YORK, Interval

#: Columns of the frames handled here: ``symbol`` (str), ``t`` (int64 ns UTC, bar start) and values.
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "transactions")


def fixed_buckets(t: Any, width: int) -> Any:
    """The intraday bucket rule, the one place every path takes it from: the epoch-aligned start
    ``t // width * width`` of the bucket each time ``t`` falls in (``t`` and ``width`` in the same unit,
    ns or ms; an int or an int64 array). REST aggregates, flat files, recordings and live bars agree by it."""
    return t // width * width


def ny_day_buckets(t_ns: np.ndarray) -> np.ndarray:
    """The day bucket rule: midnight New York (int64 ns UTC) of the New York day each time falls in."""
    local = pd.DatetimeIndex(pd.to_datetime(np.asarray(t_ns, dtype=np.int64), unit="ns", utc=True))
    day = local.tz_convert(NEW_YORK).tz_localize(None).normalize()
    # Midnight always exists in New York (DST switches at 02:00), so localising is unambiguous.
    return day.tz_localize(NEW_YORK).tz_convert("UTC").as_unit("ns").asi8


def bucket_starts(t_ns: np.ndarray, interval: Interval, from_minutes: bool = False) -> np.ndarray:
    """The start (int64 ns UTC) of the ``interval`` bucket each bar start ``t_ns`` falls in.

    ``from_minutes``: the bars are intraday, so ``1d`` buckets are their New York session dates
    (midnight New York); otherwise day bars already start at midnight New York and keep their time."""
    t_ns = np.asarray(t_ns, dtype=np.int64)
    if interval.is_intraday:
        return fixed_buckets(t_ns, interval.minutes * 60 * 1_000_000_000)
    if interval.timespan == "day" and interval.multiplier == 1:
        return ny_day_buckets(t_ns) if from_minutes else t_ns
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


def resample(df: pd.DataFrame, interval: Interval, from_minutes: bool = False) -> pd.DataFrame:
    """Bars ``df`` (columns ``symbol``, ``t`` and :data:`VALUE_COLUMNS`, optionally ``vwap``)
    aggregated to ``interval``. ``from_minutes``: ``df`` holds minute bars even for day-or-longer
    targets (see :func:`bucket_starts`).

    Input order does not matter; the output is sorted by symbol then time.
    """
    if df.empty:
        return df.reset_index(drop=True)
    codes, names = pd.factorize(df["symbol"], sort=True)
    t = df["t"].to_numpy(np.int64)
    order = np.lexsort((t, codes))
    codes, t = codes[order], t[order]
    keys = bucket_starts(t, interval, from_minutes)
    if interval.name == "1m" or (interval.name == "1d" and not from_minutes):  # already at the target size
        starts = np.arange(len(t))
    else:
        starts = np.flatnonzero(np.r_[True, (codes[1:] != codes[:-1]) | (keys[1:] != keys[:-1])])
    ends = np.r_[starts[1:], len(t)] - 1
    col = {c: df[c].to_numpy()[order] for c in VALUE_COLUMNS}
    out = pd.DataFrame({
        "symbol": np.asarray(names)[codes[starts]],
        "t": keys[starts],
        "open": col["open"][starts],
        "high": np.maximum.reduceat(col["high"], starts),
        "low": np.minimum.reduceat(col["low"], starts),
        "close": col["close"][ends],
        "volume": np.add.reduceat(col["volume"], starts),
        "transactions": np.add.reduceat(col["transactions"], starts),
    })
    if "vwap" in df.columns:
        vwap = df["vwap"].to_numpy(dtype=np.float64)[order]
        volume = col["volume"].astype(np.float64)
        weighted = np.add.reduceat(np.nan_to_num(vwap * volume), starts)
        total = np.add.reduceat(np.where(np.isnan(vwap), 0.0, volume), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["vwap"] = np.where(total > 0, weighted / np.where(total > 0, total, 1.0), np.nan)
    return out

