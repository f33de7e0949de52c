"""Performance figures from an equity curve, defined once for every engine (Backtrader, vectorbt)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from massive_feeds.schema import NEW_YORK

TRADING_DAYS = 252


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year: bars per New York trading day seen in the data × 252.

    Counting from the data itself works for any bar size and market hours (a 1-minute stock series
    with sparse pre-market bars, a 24/7 crypto series, daily bars) without a calendar.
    """
    if len(index) < 2:
        return float(TRADING_DAYS)
    days = pd.DatetimeIndex(index).tz_convert(NEW_YORK).normalize().nunique()
    return len(index) / max(days, 1) * TRADING_DAYS


def sharpe_ratio(equity: pd.Series) -> float:
    """Annualised Sharpe ratio of bar-to-bar returns (risk-free rate 0, sample std); 0.0 for a flat curve."""
    returns = equity.pct_change().dropna()
    if len(returns) < 2:
        return 0.0
    std = float(returns.std(ddof=1))
    if not std > 0:
        return 0.0
    return float(returns.mean()) / std * math.sqrt(periods_per_year(equity.index))


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
