"""Flat-file base rows → bars of an interval: split adjustment, session cut, then the resample kernel.

The bucket rules and the resample itself live in :mod:`massive_feeds.buckets` (below sessions and
splits); this module orders the steps for flat files and any other store of raw base bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..buckets import VALUE_COLUMNS, bucket_starts, resample
from ..schema import Interval
from ..sessions import regular_session_mask
from ..splits import merge_duplicate_splits, price_factors

__all__ = ["VALUE_COLUMNS", "bucket_starts", "finish_base_frame", "resample"]


def finish_base_frame(frame: pd.DataFrame, interval: Interval, *, splits: pd.DataFrame | None = None,
                      session: str = "extended") -> pd.DataFrame:
    """Base rows (minute or day bars as ``symbol``, ``t`` and values) → bars of ``interval``, in the
    order that keeps every path consistent: split-adjust the base rows (when ``splits`` is given), cut
    them to the regular session (``session="regular"``; the rows of stocks, options and indices must
    then be minute rows), then resample.

    The seam shared by flat files and any other store of raw base bars. Near-duplicate split rows are
    applied once (:func:`~massive_feeds.splits.merge_duplicate_splits`); the merges are in
    ``attrs["merged_splits"]`` of the result.
    """
    if frame.empty:
        return resample(frame, interval)
    merged: list[dict] = []
    if splits is not None and not splits.empty:
        splits = merge_duplicate_splits(splits, frame[["symbol", "t", "open", "close"]])  # dated by the raw jump
        merged = splits.attrs["merged"]
        factor = price_factors(frame["symbol"].to_numpy(), frame["t"].to_numpy(np.int64), splits)
        if (factor != 1.0).any():
            frame = frame.copy()
            for col in ("open", "high", "low", "close", "vwap"):
                if col in frame.columns:
                    frame[col] = frame[col].to_numpy(dtype=np.float64) * factor
            frame["volume"] = frame["volume"].to_numpy(dtype=np.float64) / factor
    regular = session == "regular"
    if regular:
        frame = frame[regular_session_mask(frame["symbol"].to_numpy(), frame["t"].to_numpy(np.int64))]
    out = resample(frame, interval, from_minutes=regular and not interval.is_intraday)
    out.attrs["merged_splits"] = merged
    return out
