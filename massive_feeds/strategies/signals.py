"""The strategies' rules as pure functions: one definition for Backtrader and for vectorised engines.

Each strategy's indicators are *kernels* — plain functions of a trailing window of floats — and its
entry/exit rule a plain function of indicator values. The Backtrader strategies call the very same
kernels bar by bar (:mod:`massive_feeds.strategies.indicators`), and the ``*_signals`` functions here apply them
over whole arrays, so both produce bit-identical entries and exits for the same bars (sums use
``math.fsum``: exactly rounded, so the order of summation cannot make them differ).

Position rule shared by every strategy (and expected from a vectorised runner): long only; enter
when flat and ``entries`` is true, leave when long and ``exits`` is true. Entries and exits are never
both true on one bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Window = Sequence[float]
Kernel = Callable[[Window], float]
NAN = math.nan


# --- kernels (one trailing window → one value) ----------------------------------------------------
def mean(w: Window) -> float:
    """Arithmetic mean (exactly rounded sum), as Backtrader's ``SMA``."""
    return math.fsum(w) / len(w)


def stddev(w: Window) -> float:
    """Population standard deviation, ``sqrt(mean(x²) − mean(x)²)`` as Backtrader's ``StdDev``."""
    m = math.fsum(w) / len(w)
    return math.sqrt(abs(math.fsum([v * v for v in w]) / len(w) - m * m))


def zscore(w: Window) -> float:
    """How many standard deviations the last value sits from the window's mean (NaN if flat)."""
    s = stddev(w)
    return (w[-1] - mean(w)) / s if s > 0 else NAN


def highest(w: Window) -> float:
    return max(w)


def lowest(w: Window) -> float:
    return min(w)


def momentum(w: Window) -> float:
    """Return over the window: last / first − 1."""
    return w[-1] / w[0] - 1.0 if w[0] else NAN


def rolling(x: np.ndarray | Sequence[float], period: int, kernel: Kernel) -> np.ndarray:
    """``kernel`` over each trailing window of ``period`` values; NaN until the first full window."""
    values = np.asarray(x, dtype=np.float64).tolist()  # Python floats: the very values Backtrader sees
    out = np.full(len(values), np.nan)
    for i in range(period - 1, len(values)):
        out[i] = kernel(values[i - period + 1:i + 1])
    return out


def previous(x: np.ndarray) -> np.ndarray:
    """``x`` shifted one bar later (NaN first), i.e. Backtrader's ``line[-1]``."""
    return np.r_[np.nan, x[:-1]]


# --- rules (indicator values at one bar → entry, exit) ---------------------------------------------
def cross_rule(diff_now: float, diff_before: float) -> tuple[bool, bool]:
    """Fast-minus-slow crossing zero: up → entry, down → exit."""
    return diff_now > 0 and diff_before <= 0, diff_now < 0 and diff_before >= 0


def zscore_rule(z: float, entry_z: float, exit_z: float) -> tuple[bool, bool]:
    """Enter when stretched below the mean, leave once back to ``exit_z``."""
    return z <= -entry_z, z >= exit_z


def breakout_rule(close: float, prior_high: float, prior_low: float, mom: float,
                  min_momentum: float) -> tuple[bool, bool]:
    """Close above the prior N-bar high with positive momentum → entry; below the prior M-bar low → exit."""
    return close > prior_high and mom > min_momentum, close < prior_low


def quote_position(close: float, high: float, low: float, bid: float, ask: float) -> tuple[float, float]:
    """Where the last print sits inside the quote (−1 at the bid, +1 at the ask) and the quoted
    spread in basis points of the mid. Without a quote (NaN bid/ask) the bar's low/high stand in."""
    if not (bid == bid and ask == ask and ask > bid):
        bid, ask = low, high
    half = (ask - bid) / 2
    mid = (ask + bid) / 2
    if not half > 0 or not mid > 0:
        return NAN, NAN
    return (close - mid) / half, (ask - bid) / mid * 1e4


def spread_rule(pos: float, spread_bps: float, min_spread_bps: float, entry_pos: float,
                exit_pos: float) -> tuple[bool, bool]:
    """Buy when prints hit the bid of a wide enough quote; sell when they lift the offer."""
    return spread_bps >= min_spread_bps and pos <= -entry_pos, pos >= exit_pos


# --- vectorised twins ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signals:
    """Boolean entries/exits aligned with the input bars."""

    entries: np.ndarray
    exits: np.ndarray

    def __repr__(self) -> str:
        return f"Signals(bars={len(self.entries)}, entries={int(self.entries.sum())}, exits={int(self.exits.sum())})"


def _apply(rule: Callable[..., tuple[bool, bool]], *columns: np.ndarray, **params: float) -> Signals:
    pairs = [rule(*row, **params) for row in zip(*(np.asarray(c, dtype=np.float64).tolist() for c in columns))]
    arr = np.array(pairs, dtype=bool).reshape(-1, 2)
    return Signals(arr[:, 0], arr[:, 1])


def sma_cross_signals(close: np.ndarray, fast: int = 10, slow: int = 30) -> Signals:
    """:class:`massive_feeds.strategies.SmaCross`: fast SMA crossing the slow SMA."""
    diff = rolling(close, fast, mean) - rolling(close, slow, mean)
    return _apply(cross_rule, diff, previous(diff))


def mean_reversion_signals(close: np.ndarray, period: int = 20, entry_z: float = 2.0,
                           exit_z: float = 0.0) -> Signals:
    """:class:`massive_feeds.strategies.MeanReversion`: z-score of the close against its ``period`` mean (Bollinger)."""
    return _apply(zscore_rule, rolling(close, period, zscore), entry_z=entry_z, exit_z=exit_z)


def breakout_signals(close: np.ndarray, high: np.ndarray, low: np.ndarray, period: int = 20,
                     exit_period: int = 10, min_momentum: float = 0.0) -> Signals:
    """:class:`massive_feeds.strategies.MomentumBreakout`: Donchian breakout with a momentum filter."""
    prior_high = previous(rolling(high, period, highest))
    prior_low = previous(rolling(low, exit_period, lowest))
    mom = rolling(close, period + 1, momentum)
    return _apply(breakout_rule, close, prior_high, prior_low, mom, min_momentum=min_momentum)


def spread_capture_signals(close: np.ndarray, high: np.ndarray, low: np.ndarray,
                           bid: np.ndarray | None = None, ask: np.ndarray | None = None,
                           min_spread_bps: float = 1.0, entry_pos: float = 0.5,
                           exit_pos: float = 0.5) -> Signals:
    """:class:`massive_feeds.strategies.SpreadCapture`: quote-driven entries near the bid, exits near the ask."""
    n = len(close)
    bid = np.full(n, np.nan) if bid is None else bid
    ask = np.full(n, np.nan) if ask is None else ask
    pos = [quote_position(*row) for row in zip(*(np.asarray(c, dtype=np.float64).tolist()
                                                  for c in (close, high, low, bid, ask)))]
    where = np.array(pos, dtype=np.float64).reshape(-1, 2)
    return _apply(spread_rule, where[:, 0], where[:, 1], min_spread_bps=min_spread_bps, entry_pos=entry_pos,
                  exit_pos=exit_pos)
