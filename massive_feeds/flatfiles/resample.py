"""Flat-file base rows → bars of an interval: split and dividend adjustment, session cut, then the resample kernel.

The bucket rules and the resample itself live in :mod:`massive_feeds.buckets` (below sessions and
splits); this module orders the steps for flat files and any other store of raw base bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..buckets import VALUE_COLUMNS, bucket_starts, resample
from ..dividends import dividend_factors
from ..schema import Interval
from ..sessions import regular_session_mask
from ..splits import merge_duplicate_splits, price_factors

__all__ = ["VALUE_COLUMNS", "bucket_starts", "finish_base_frame", "resample"]


def finish_base_frame(frame: pd.DataFrame, interval: Interval, *, splits: pd.DataFrame | None = None,
                      session: str = "extended", dividends: pd.DataFrame | None = None) -> pd.DataFrame:
    """Base rows (minute or day bars as ``symbol``, ``t`` and values) → bars of ``interval``, in the
    order that keeps every path consistent: split-adjust the base rows (when ``splits`` is given), cut
    them to the regular session (``session="regular"``; the rows of stocks, options and indices must
    then be minute rows), then resample.

    The seam shared by flat files and any other store of raw base bars. Near-duplicate split rows are
    applied once (:func:`~massive_feeds.splits.merge_duplicate_splits`); the merges are in
    ``attrs["merged_splits"]`` of the result. ``dividends`` (total return, :mod:`massive_feeds.dividends`) scale the
    prices of the raw base rows before each ex-date too (volumes untouched); those applied are in
    ``attrs["dividends"]``.
    """
    if frame.empty:
        return resample(frame, interval)
    merged: list[dict] = []
    applied: list[dict] = []
    total = np.ones(len(frame))
    if dividends is not None and not dividends.empty:  # from the raw rows: before any split factor
        total, applied = dividend_factors(frame["symbol"].to_numpy(), frame["t"].to_numpy(np.int64),
                                          frame["close"].to_numpy(np.float64), frame["open"].to_numpy(np.float64),
                                          dividends)
    if (splits is not None and not splits.empty) or (total != 1.0).any():
        factor = np.ones(len(frame))
        if splits is not None and not splits.empty:
            splits = merge_duplicate_splits(splits, frame[["symbol", "t", "open", "close"]])  # dated by the raw jump
            merged = splits.attrs["merged"]
            factor = price_factors(frame["symbol"].to_numpy(), frame["t"].to_numpy(np.int64), splits)
        if (factor != 1.0).any() or (total != 1.0).any():
            frame = frame.copy()
            for col in ("open", "high", "low", "close", "vwap"):
                if col in frame.columns:
                    frame[col] = frame[col].to_numpy(dtype=np.float64) * factor * total
            frame["volume"] = frame["volume"].to_numpy(dtype=np.float64) / factor  # dividends leave volumes alone
    regular = session == "regular"
    if regular:
        frame = frame[regular_session_mask(frame["symbol"].to_numpy(), frame["t"].to_numpy(np.int64))]
    out = resample(frame, interval, from_minutes=regular and not interval.is_intraday)
    out.attrs["merged_splits"] = merged
    out.attrs["dividends"] = applied
    return out
