"""vectorbt twins agree with the Backtrader strategies; validation runs strategies × datasets × engines."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from massive_feeds import fetch_data, save_dataset
from massive_feeds.config import Settings
from massive_feeds.errors import InvalidInputError
from massive_feeds.record import WebSocketDataRecorder
from massive_feeds.sandbox import Sandbox
from strategies import STRATEGIES, run_strategy
from strategies.validation import format_table, validate
from strategies.vectorbt_runner import run_vectorbt


@pytest.fixture(scope="module")
def week_of_bars(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    settings = sandbox.settings(home=tmp_path_factory.mktemp("home"), plan="unlimited")
    return fetch_data("MSFT", "2024-03-04", "2024-03-08", "5m", settings=settings)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_engines_agree_on_every_signal(week_of_bars: pd.DataFrame, name: str) -> None:
    bt_result = run_strategy(STRATEGIES[name], week_of_bars, 10_000, cheat_on_close=True)
    vbt_result = run_vectorbt(STRATEGIES[name], week_of_bars, 10_000)
    vbt_signals = vbt_result.signals.loc[bt_result.signals.index]
    assert (bt_result.signals["entry"].to_numpy() == vbt_signals["entry"].to_numpy()).all()
    assert (bt_result.signals["exit"].to_numpy() == vbt_signals["exit"].to_numpy()).all()
    assert bt_result.trade_count > 0


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_engines_agree_on_trades_when_both_fill_at_the_close(week_of_bars: pd.DataFrame, name: str) -> None:
    bt_result = run_strategy(STRATEGIES[name], week_of_bars, 10_000, 0.0005, cheat_on_close=True)
    vbt_result = run_vectorbt(STRATEGIES[name], week_of_bars, 10_000, 0.0005)
    cols = ["entry_time", "exit_time", "entry_price", "exit_price"]
    pd.testing.assert_frame_equal(bt_result.trades[cols], vbt_result.trades[cols], check_dtype=False)
    # vectorbt's percent sizing sets the fees aside from the stake; Backtrader adds them on top
    assert bt_result.total_return == pytest.approx(vbt_result.total_return, abs=1e-4)


def test_unknown_strategy_is_rejected(settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="available"):
        validate(["no_such_strategy"], [], settings=settings)


def test_validation_table_and_files_for_history_and_a_recording(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=120) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], tmp_path / "rec", settings=settings).start()
        time.sleep(6)
        rec.stop()
        recorded = rec.save_dataset(tag="morning").stem
        save_dataset(fetch_data("AAPL", "2024-03-04", "2024-03-05", "15m", settings=settings), "hist",
                     settings=settings)
    table = validate(["sma_cross", "mean_reversion"], ["hist", recorded], engine="both",
                     output=tmp_path / "out", settings=settings)
    assert len(table) == 2 * 2 * 2
    assert set(table["engine"]) == {"backtrader", "vectorbt"}
    for run in table.attrs["runs"]:
        assert run.files["png"].stat().st_size > 1000 and run.files["trades"].exists()
    both = table.pivot_table(index=["strategy", "dataset"], columns="engine", values="bars")
    assert (both["backtrader"] == both["vectorbt"]).all()  # the replayed recording built the same bars
    text = format_table(table)
    assert "== sma_cross ==" in text and recorded in text


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_fewer_bars_than_the_lookback_run_without_trades(week_of_bars: pd.DataFrame, name: str) -> None:
    short = week_of_bars.head(5)
    for result in (run_strategy(STRATEGIES[name], short, 10_000), run_vectorbt(STRATEGIES[name], short, 10_000)):
        assert result.trade_count == 0 and result.total_return == 0.0


def test_no_bars_is_a_clear_error(week_of_bars: pd.DataFrame) -> None:
    for run in (run_strategy, run_vectorbt):
        with pytest.raises(InvalidInputError, match="no bars"):
            run(STRATEGIES["sma_cross"], week_of_bars.head(0), 10_000)
