"""Bars prepared for Backtrader's lines: plain Python lists of floats, one per line, built vectorised.

The feed's hot loop only indexes these lists (no pandas, no per-row conversions), which is what
makes it about twice as fast as ``bt.feeds.PandasData``. Date numbers are computed exactly as
``backtrader.date2num`` does (``math.fsum`` of the same terms), so a bar stamped 09:35 here compares
equal to 09:35 computed anywhere inside Backtrader (resampler edges, other feeds, fromdate).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass
from math import fsum
from typing import Iterable, Literal, NamedTuple, Sequence

import numpy as np
import pandas as pd
from backtrader.utils.dateintern import HOURS_PER_DAY, MINUTES_PER_DAY, MUSECONDS_PER_DAY, SECONDS_PER_DAY

log = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 10**9
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()

#: The standard lines every feed fills, in this order after ``datetime``.
OHLCV_LINES: tuple[str, ...] = ("open", "high", "low", "close", "volume", "openinterest")
#: Extra lines a feed class may declare; filled from same-named columns (NaN where absent).
EXTRA_LINES: tuple[str, ...] = ("vwap", "transactions", "bid", "ask", "mid", "spread", "bid_size", "ask_size")

Stamp = Literal["start", "end"]


def bt_datenums(ns: np.ndarray) -> list[float]:
    """Epoch nanoseconds (UTC) → Backtrader date numbers, bit-identical to ``date2num`` of the naive
    UTC datetime (microsecond resolution, as Backtrader's)."""
    ns = np.asarray(ns, dtype=np.int64)
    days, rem = np.divmod(ns, NS_PER_DAY)
    hours, rem = np.divmod(rem, 3_600 * 10**9)
    minutes, rem = np.divmod(rem, 60 * 10**9)
    seconds, rem = np.divmod(rem, 10**9)
    terms = (
        (days + _EPOCH_ORDINAL).astype(np.float64).tolist(),
        (hours / HOURS_PER_DAY).tolist(),
        (minutes / MINUTES_PER_DAY).tolist(),
        (seconds / SECONDS_PER_DAY).tolist(),
        ((rem // 1000) / MUSECONDS_PER_DAY).tolist(),
    )
    return list(map(fsum, zip(*terms)))


@dataclass(frozen=True)
class BarBlock:
    """Consecutive bars ready for the lines: ``dt`` (Backtrader date numbers, strictly increasing)
    and one list per line named in ``names`` (``open … openinterest`` then any extras)."""

    dt: list[float]
    names: tuple[str, ...]
    values: tuple[list[float], ...]
    label: str = "history"  # history | backfill | live: for logs and reprs only

    def __len__(self) -> int:
        return len(self.dt)

    def __repr__(self) -> str:
        return f"BarBlock({self.label}, bars={len(self.dt)})"

    def after(self, last: float) -> "BarBlock":
        """The bars strictly after date number ``last`` (the feed never emits a bar twice or backwards)."""
        cut = bisect_right(self.dt, last)
        if cut == 0:
            return self
        return BarBlock(self.dt[cut:], self.names, tuple(v[cut:] for v in self.values), self.label)


class LiveBar(NamedTuple):
    """One bar built from stream events (bar start in epoch ms UTC)."""

    time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    transactions: int
    bid: float
    ask: float


class BarFormat:
    """How bars of one feed become a :class:`BarBlock`: which extra lines, and where a bar is stamped.

    Args:
        extra: extra line names of the feed class (subset of :data:`EXTRA_LINES`).
        width_ms: bar width for intraday bars (``None`` for days and longer).
        stamp: ``"start"`` (our schema: the bar's start) or ``"end"`` (start + width, Backtrader's
            resampler convention). Only intraday bars can be end-stamped.
    """

    def __init__(self, extra: Sequence[str] = (), width_ms: int | None = None, stamp: Stamp = "start") -> None:
        unknown = [n for n in extra if n not in EXTRA_LINES]
        if unknown:
            raise ValueError(f"unknown extra lines {unknown}; supported: {EXTRA_LINES}")
        if stamp == "end" and not width_ms:
            raise ValueError("only intraday bars can be stamped at their end")
        self.extra = tuple(extra)
        self.names = OHLCV_LINES + self.extra
        self.width_ms = width_ms
        self.stamp = stamp
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"BarFormat(stamp={self.stamp!r}, width_ms={self.width_ms}, extra={self.extra})"

    @property
    def offset_ns(self) -> int:
        return (self.width_ms or 0) * 1_000_000 if self.stamp == "end" else 0

    def from_frame(self, df: pd.DataFrame, label: str = "history") -> BarBlock:
        """A block from bars in the standard schema (one symbol), extra columns used when present."""
        ts = df["timestamp"]
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            ts = pd.to_datetime(ts, utc=True)
        ns = ts.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").view(np.int64) + self.offset_ns
        cols = {name: self._column(df, name) for name in self.names}
        return self._block(ns, cols, label)

    def from_bars(self, bars: Iterable[LiveBar], label: str = "live") -> BarBlock:
        """A block from bars built out of stream events."""
        rows = list(bars)
        if not rows:
            return BarBlock([], self.names, tuple([] for _ in self.names), label)
        arr = np.array([r[1:] for r in rows], dtype=np.float64)
        ms = np.fromiter((r.time_ms for r in rows), dtype=np.int64, count=len(rows))
        src = dict(zip(LiveBar._fields[1:], arr.T))
        bid, ask = src["bid"], src["ask"]
        src.update(mid=(bid + ask) / 2, spread=ask - bid, openinterest=np.zeros(len(rows)),
                   bid_size=np.full(len(rows), np.nan), ask_size=np.full(len(rows), np.nan))
        return self._block(ms * 1_000_000 + self.offset_ns, {n: src[n] for n in self.names}, label)

    # --- helpers -----------------------------------------------------------------------------------
    def _column(self, df: pd.DataFrame, name: str) -> np.ndarray:
        n = len(df)
        if name == "openinterest":
            return np.zeros(n)
        if name in df:
            return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if name in ("mid", "spread") and "bid" in df and "ask" in df:
            bid, ask = self._column(df, "bid"), self._column(df, "ask")
            return (bid + ask) / 2 if name == "mid" else ask - bid
        if name not in self._warned:
            self._warned.add(name)
            log.info("bars have no %r column; the %s line is NaN", name, name)
        return np.full(n, np.nan)

    def _block(self, ns: np.ndarray, cols: dict[str, np.ndarray], label: str) -> BarBlock:
        # Indices and quote-less bars carry NaN volume: Backtrader lines want a number.
        cols["volume"] = np.nan_to_num(cols["volume"], nan=0.0)
        bad = np.isnan(cols["open"]) | np.isnan(cols["high"]) | np.isnan(cols["low"]) | np.isnan(cols["close"])
        keep = ~bad
        if bad.any():
            log.warning("dropping %d bar(s) without open/high/low/close", int(bad.sum()))
        if len(ns) > 1 and not np.all(np.diff(ns[keep]) > 0):
            # keep the last bar of each timestamp, in time order (a bar never goes backwards)
            order = np.flatnonzero(keep)[np.argsort(ns[keep], kind="stable")]
            last = np.r_[ns[order][1:] != ns[order][:-1], True]
            log.warning("bars were unsorted or duplicated: %d row(s) dropped", int((~last).sum()))
            keep = order[last]
        elif bad.any():
            keep = np.flatnonzero(keep)
        else:
            keep = slice(None)
        return BarBlock(bt_datenums(ns[keep]), self.names,
                        tuple(cols[n][keep].tolist() for n in self.names), label)
