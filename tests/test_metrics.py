"""Sharpe annualisation from the bar interval and the asset's session, and the minimum sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from strategies import metrics


def _curve(n: int, freq: str, start: str = "2024-03-04 14:30", seed: int = 1) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    return pd.Series(10_000 * np.cumprod(1 + rng.normal(2e-4, 1e-3, n)), index=idx)


@pytest.mark.parametrize(("interval", "symbol", "expected"), [
    ("1min", "AAPL", 6.5 * 60 * 252),
    ("1h", "AAPL", 6.5 * 252),
    ("1min", "X:BTCUSD", 24 * 60 * 365),
    ("1h", "C:EURUSD", 24 * 260),
    ("1D", "AAPL", 252),
    ("1D", "X:BTCUSD", 365),
    ("1D", "C:EURUSD", 260),
    ("7D", "AAPL", 365.25 / 7),
    ("4h", "I:SPX", 6.5 / 4 * 252),
    ("12h", "AAPL", 252),  # longer than the session: at least one bar a day
])
def test_periods_per_year_follow_the_session(interval: str, symbol: str, expected: float) -> None:
    assert metrics.periods_per_year(interval, symbol) == pytest.approx(expected)


def test_infer_interval_ignores_overnight_gaps() -> None:
    day1 = pd.date_range("2024-03-04 14:30", periods=390, freq="1min", tz="UTC")
    day2 = pd.date_range("2024-03-05 14:30", periods=390, freq="1min", tz="UTC")
    assert metrics.infer_interval(day1.append(day2)) == pd.Timedelta("1min")
    assert metrics.infer_interval(day1[:1]) is None


def test_81_one_minute_bars_are_not_meaningful() -> None:
    eq = _curve(81, "1min")
    assert math.isnan(metrics.sharpe_ratio(eq, symbol="AAPL"))
    note = metrics.sharpe_note(eq, symbol="AAPL")
    assert note is not None and "81 bars of 1 min cover 1.35 h, less than one 6.5 h session" in note
    assert metrics.format_sharpe(float("nan"), note).startswith("n/a (81 bars")


@pytest.mark.parametrize(("n", "meaningful"), [(30, False), (31, True)])
def test_minimum_returns_boundary(n: int, meaningful: bool) -> None:
    eq = _curve(n, "1D", "2024-01-02")  # n daily bars → n - 1 returns
    note = metrics.sharpe_note(eq, symbol="AAPL")
    assert (note is None) is meaningful
    if not meaningful:
        assert note == "only 29 bar returns (needs at least 30)"


def test_one_full_session_boundary() -> None:
    stocks = _curve(390, "1min")  # exactly 6.5 h of 1-minute bars
    assert metrics.sharpe_note(stocks, symbol="AAPL") is None
    assert metrics.sharpe_note(stocks.iloc[:389], symbol="AAPL") is not None
    assert metrics.sharpe_note(stocks, symbol="X:BTCUSD") is not None  # crypto's session is 24 h


def test_sharpe_value_uses_the_annualisation() -> None:
    eq = _curve(400, "1min")
    r = eq.pct_change().dropna()
    expected = r.mean() / r.std(ddof=1) * math.sqrt(6.5 * 60 * 252)
    assert metrics.sharpe_ratio(eq, symbol="AAPL") == pytest.approx(expected)
    crypto = r.mean() / r.std(ddof=1) * math.sqrt(24 * 60 * 365)
    assert metrics.sharpe_ratio(_curve(1440, "1min"), symbol="X:BTCUSD") != pytest.approx(crypto)  # other sample
    assert metrics.sharpe_ratio(eq.iloc[:400].set_axis(eq.index), "1min", "AAPL") == pytest.approx(expected)
    flat = pd.Series(100.0, index=eq.index)
    assert metrics.sharpe_ratio(flat, symbol="AAPL") == 0.0


def test_a_declared_bar_size_wins_over_the_typical_step() -> None:
    sparse = pd.date_range("2024-03-04 14:30", periods=50, freq="2s", tz="UTC")  # 1-second bars, every other
    assert metrics.infer_interval(sparse) == pd.Timedelta("2s")
    assert metrics.bar_interval(sparse, "1s") == pd.Timedelta("1s")
    assert metrics.bar_interval(sparse, "5m") == pd.Timedelta("5min")
    assert metrics.bar_interval(sparse, "1min") == pd.Timedelta("1min")
    assert metrics.bar_interval(sparse, "1d") == pd.Timedelta("1D")
    assert metrics.bar_interval(sparse, "1M") == pd.Timedelta("2s")  # calendar months: measured from the data
    assert metrics.bar_interval(sparse, None) == pd.Timedelta("2s")
