"""The strategy set on sandbox data: trades happen, Backtrader signals equal the vectorised twins,
and run_strategy's numbers, trade log, equity curve and PNG are consistent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_data
from massive_feeds.backtrader import MassiveData, MassiveQuoteData
from massive_feeds.config import Settings
from strategies import STRATEGIES, BacktestResult, MeanReversion, SmaCross, SpreadCapture, run_strategy
from strategies import signals as sig
from tests._bt_support import close_stores  # noqa: F401 - autouse fixture


@pytest.fixture
def week(settings: Settings) -> pd.DataFrame:
    """A week of AAPL 5-minute bars from the sandbox REST server."""
    return fetch_data("AAPL", dt.date(2024, 3, 4), dt.date(2024, 3, 8), "5m", settings=settings)


def twin(name: str, bars: pd.DataFrame) -> sig.Signals:
    c, h, l = (bars[k].to_numpy() for k in ("close", "high", "low"))
    return {
        "sma_cross": lambda: sig.sma_cross_signals(c),
        "mean_reversion": lambda: sig.mean_reversion_signals(c),
        "breakout": lambda: sig.breakout_signals(c, h, l),
        "spread_capture": lambda: sig.spread_capture_signals(c, h, l, bars.get("bid"), bars.get("ask")),
    }[name]()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_each_strategy_trades_on_sandbox_bars(week: pd.DataFrame, name: str) -> None:
    result = run_strategy(STRATEGIES[name], week, cash=10_000, commission=0.0005)
    assert result.trade_count >= 3 and len(result.trades) == result.trade_count
    assert result.trades["exit_time"].gt(result.trades["entry_time"]).all()


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_backtrader_signals_equal_the_vectorised_twins(week: pd.DataFrame, name: str) -> None:
    result = run_strategy(STRATEGIES[name], MassiveData(bars=week), cash=10_000)
    expected = twin(name, week)
    n = len(result.signals)  # Backtrader starts calling next() once the indicators are warm
    assert result.signals.index.equals(pd.DatetimeIndex(week["timestamp"].iloc[-n:]))
    np.testing.assert_array_equal(result.signals["entry"].to_numpy(), expected.entries[-n:])
    np.testing.assert_array_equal(result.signals["exit"].to_numpy(), expected.exits[-n:])
    assert not expected.entries[:-n].any() and not expected.exits[:-n].any()


def test_spread_capture_reads_quotes_when_the_feed_has_them(week: pd.DataFrame) -> None:
    rng = np.random.default_rng(2)
    half = week["close"] * rng.uniform(2e-4, 8e-4, len(week))
    quoted = week.assign(bid=week["close"] - half * rng.uniform(0.2, 1.8, len(week)), ask=week["close"] + half)
    result = run_strategy(SpreadCapture, MassiveQuoteData(bars=quoted), cash=10_000)
    with_quotes, without = twin("spread_capture", quoted), twin("spread_capture", week)
    np.testing.assert_array_equal(result.signals["entry"].to_numpy(), with_quotes.entries)
    assert not np.array_equal(with_quotes.entries, without.entries)


def test_metrics_agree_with_the_equity_curve_and_trade_log(week: pd.DataFrame) -> None:
    result = run_strategy(SmaCross, week, cash=10_000, commission=0.001, fast=5, slow=20)
    equity = result.equity
    assert str(equity.index.tz) == "UTC" and len(equity) == len(week) == result.bars
    assert result.total_return == pytest.approx(result.end_value / 10_000 - 1)
    assert result.end_value == pytest.approx(equity.iloc[-1])
    peak_to_trough = (1 - equity / equity.cummax()).max()
    assert 0 < result.max_drawdown < 1 and result.max_drawdown == pytest.approx(peak_to_trough)
    assert np.isfinite(result.sharpe) and (result.trades["commission"] > 0).all()
    trades = result.trades
    np.testing.assert_allclose(trades["pnl"], trades["size"] * (trades["exit_price"] - trades["entry_price"]))
    assert result.params["fast"] == 5 and "SmaCross: return" in str(result)


def test_cheat_on_close_fills_on_the_signal_bar(week: pd.DataFrame) -> None:
    by_close = run_strategy(MeanReversion, week, cash=10_000, cheat_on_close=True)
    first_entry = by_close.signals.index[by_close.signals["entry"].to_numpy()][0]
    trade = by_close.trades.iloc[0]
    assert trade["entry_time"] == first_entry
    assert trade["entry_price"] == week.set_index("timestamp").loc[first_entry, "close"]
    next_open = run_strategy(MeanReversion, week, cash=10_000)
    assert next_open.trades["entry_time"].iloc[0] > first_entry


def test_equity_png_is_written(week: pd.DataFrame, tmp_path: Path) -> None:
    result = run_strategy(SmaCross, week, cash=10_000)
    path = result.save_equity_png(tmp_path / "plots" / "sma.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert isinstance(result, BacktestResult) and set(result.summary()) >= {"total_return", "sharpe", "max_drawdown"}
