"""Performance figures from an equity curve, defined once for every engine (Backtrader, vectorbt).

Sharpe ratio annualisation
--------------------------
Bar-to-bar returns are annualised with the number of bars in a trading year, computed from the bar
interval and the asset class's session (:data:`SESSIONS`):

============  ===================  ==================  ======================================
asset class   session per day      trading days/year   e.g. 1-minute bars per year
============  ===================  ==================  ======================================
stocks        6.5 h (09:30–16:00)  252                 6.5 × 60 × 252 = 98,280
crypto        24 h                 365                 24 × 60 × 365 = 525,600
forex         24 h                 260 (Mon–Fri)       24 × 60 × 260 = 374,400
============  ===================  ==================  ======================================

Daily bars count one per trading day (252 / 365 / 260); weekly and monthly bars count calendar
periods (365.25 days / the bar length). Options and indices follow stocks. Extended-hours stock bars
are still annualised on the 6.5-hour session (the regular session is the convention).

A Sharpe ratio from a handful of bars is noise, so :func:`sharpe_ratio` returns ``NaN`` — and
:func:`sharpe_note` says why — below :data:`MIN_RETURNS` bar returns or when the curve covers less
than one full session of bars (``bars × interval`` < the asset's session: 6.5 h for stocks, 24 h for
crypto and forex). Eighty-one 1-minute bars are therefore "not meaningful", not −32.28.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from massive_feeds.schema import asset_class

TRADING_DAYS = 252
#: Fewest bar-to-bar returns for which a Sharpe ratio is reported.
MIN_RETURNS = 30


class Session(NamedTuple):
    """Trading hours per day and trading days per year of an asset class."""

    hours: float
    days_per_year: int


#: asset class → session used to annualise (see the module docstring).
SESSIONS: dict[str, Session] = {
    "stocks": Session(6.5, 252),
    "options": Session(6.5, 252),
    "indices": Session(6.5, 252),
    "crypto": Session(24.0, 365),
    "forex": Session(24.0, 260),
}
_DAY = pd.Timedelta(days=1)


def session_for(symbol: str | None) -> Session:
    """The session of ``symbol``'s asset class (stocks when unknown)."""
    return SESSIONS.get(asset_class(symbol) if symbol else "stocks", SESSIONS["stocks"])


def infer_interval(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The bar size: the most common positive step between consecutive bars (``None`` under 2 bars).

    The mode, not the mean, so overnight, weekend and no-trade gaps do not stretch it."""
    idx = pd.DatetimeIndex(index)
    if len(idx) < 2:
        return None
    steps = np.diff(idx.as_unit("ns").asi8)
    steps = steps[steps > 0]
    if not len(steps):
        return None
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def interval_of(label: object) -> pd.Timedelta | None:
    """A bar-size label (``1s``, ``5m``, ``1min``, ``1h``, ``1d``, our interval names) as a Timedelta;
    ``None`` when it names no fixed width (``1M``, ``1w`` calendar bars are measured from the data)."""
    if label is None or label == "":
        return None
    text = str(label).strip()
    try:
        from massive_feeds.schema import parse_interval

        iv = parse_interval(text)
        if iv.is_intraday:
            return pd.Timedelta(minutes=iv.minutes)
        return pd.Timedelta(days=iv.multiplier) if iv.timespan == "day" else None
    except Exception:  # noqa: BLE001 - not one of our names: try pandas' spelling (1s, 1min, 5min)
        pass
    try:
        td = pd.Timedelta(text)
    except ValueError:
        return None
    return td if td > pd.Timedelta(0) else None


def bar_interval(index: pd.DatetimeIndex, label: object = None) -> pd.Timedelta | None:
    """The declared bar size when known (a dataset's ``interval``), else :func:`infer_interval`.

    Declared wins: sparse bars (a quiet symbol recorded at 1 s) have a wider typical step than their size."""
    return interval_of(label) or infer_interval(index)


def periods_per_year(interval: pd.Timedelta | str, symbol: str | None = None) -> float:
    """Bars per trading year for bars of ``interval`` on ``symbol``'s market (see the module docstring)."""
    iv = pd.Timedelta(interval)
    if iv <= pd.Timedelta(0):
        raise ValueError(f"interval must be positive, got {interval!r}")
    sess = session_for(symbol)
    if iv > _DAY:  # weekly, monthly: calendar periods
        return 365.25 / (iv / _DAY)
    if iv == _DAY:
        return float(sess.days_per_year)
    bars_per_day = max(pd.Timedelta(hours=sess.hours) / iv, 1.0)
    return bars_per_day * sess.days_per_year


def sharpe_note(equity: pd.Series, interval: pd.Timedelta | str | None = None, symbol: str | None = None) -> str | None:
    """Why the Sharpe ratio of ``equity`` is not meaningful, or ``None`` when it is."""
    n_returns = max(len(equity) - 1, 0)
    if n_returns < MIN_RETURNS:
        return f"only {n_returns} bar returns (needs at least {MIN_RETURNS})"
    iv = pd.Timedelta(interval) if interval is not None else infer_interval(pd.DatetimeIndex(equity.index))
    if iv is None:
        return "the bar interval is unknown"
    sess = session_for(symbol)
    covered = min(iv, _DAY) * len(equity)
    need = pd.Timedelta(hours=sess.hours)
    if covered < need:
        return (f"{len(equity)} bars of {_fmt_td(iv)} cover {_fmt_td(covered)}, less than one "
                f"{sess.hours:g} h session")
    return None


def _fmt_td(td: pd.Timedelta) -> str:
    secs = td.total_seconds()
    if secs >= 86400 and secs % 86400 == 0:
        return f"{secs / 86400:g} d"
    if secs >= 3600:
        return f"{secs / 3600:.3g} h"
    if secs >= 60:
        return f"{secs / 60:.3g} min"
    return f"{secs:g} s"


def sharpe_ratio(equity: pd.Series, interval: pd.Timedelta | str | None = None, symbol: str | None = None) -> float:
    """Annualised Sharpe ratio of bar-to-bar returns (risk-free rate 0, sample std).

    ``interval`` defaults to the bars' most common step, ``symbol`` picks the session (stocks when
    ``None``). ``NaN`` when the sample is too small (:func:`sharpe_note` says why); 0.0 for a flat curve.
    """
    if sharpe_note(equity, interval, symbol) is not None:
        return float("nan")
    returns = equity.pct_change().dropna()
    std = float(returns.std(ddof=1))
    if not std > 0:
        return 0.0
    iv = pd.Timedelta(interval) if interval is not None else infer_interval(pd.DatetimeIndex(equity.index))
    return float(returns.mean()) / std * math.sqrt(periods_per_year(iv, symbol))


def format_sharpe(value: float, note: str | None = None) -> str:
    """``1.23``, or ``n/a (reason)`` when not meaningful."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"n/a ({note})" if note else "n/a"
    return f"{value:.2f}"


def max_drawdown(equity: pd.Series) -> float:
    """Largest peak-to-trough fall as a fraction of the peak (0.12 = 12 %); 0.0 if never below a peak."""
    values = equity.to_numpy(dtype=np.float64)
    if not len(values):
        return 0.0
    peaks = np.maximum.accumulate(values)
    return float(np.max(1.0 - values / peaks))


def total_return(equity: pd.Series) -> float:
    """Final over initial value, minus one."""
    if len(equity) < 1 or not equity.iloc[0]:
        return 0.0
    return float(equity.iloc[-1] / equity.iloc[0] - 1.0)
