"""vectorbt twins agree with the Backtrader strategies; validation runs strategies × datasets × engines."""

from __future__ import annotations

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

from ._stream_support import wait_until


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
    with Sandbox(websocket=True, clock_speed=240) as sb:  # four market minutes per second
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], tmp_path / "rec", settings=settings).start()
        # a dozen market minutes from the first event on disk (however long the connection took)
        wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
        begun = sb.clock.now_ms()
        wait_until(lambda: sb.clock.now_ms() - begun >= 12 * 60_000, timeout=30, what="12 market minutes")
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


def test_plots_show_the_price_with_trades_in_the_feeds_tz(week_of_bars: pd.DataFrame, tmp_path: Path) -> None:
    from massive_feeds.backtrader import MassiveData
    from strategies.validation import save_run_files

    feed = MassiveData(bars=week_of_bars, tz="America/New_York")
    result = run_strategy(STRATEGIES["sma_cross"], feed, 10_000)
    assert result.tz == "America/New_York" and result.trade_count > 0 and len(result.prices) == result.bars
    fig = result.figure()
    price_ax, _, drawdown_ax = fig.axes
    first_bar = week_of_bars["timestamp"].iloc[0].tz_convert("America/New_York").tz_localize(None)
    assert pd.Timestamp(price_ax.lines[0].get_xdata()[0]) == first_bar  # New York wall clock
    entries, exits, *held = price_ax.collections  # ▲ and ▼ markers, one per closed trade; hollow ▲ if held
    assert len(entries.get_offsets()) == len(exits.get_offsets()) == result.trade_count
    assert [len(h.get_offsets()) for h in held] == ([result.open_trades] if result.open_trades else [])
    assert drawdown_ax.get_xlabel() == "time (America/New_York)"

    files = save_run_files(result, tmp_path, "sma", "sma on MSFT")
    html = files["html"].read_text()
    import re

    assert not re.findall(r"<script[^>]+src=", html)  # plotly.js is embedded, nothing loaded: opens offline
    assert len(html) > 1_000_000
    assert "Plotly.newPlot" in html and '"name":"entry"' in html and '"name":"exit"' in html


def test_sharpe_is_not_meaningful_on_a_short_run_and_says_why(week_of_bars: pd.DataFrame) -> None:
    short = week_of_bars.head(40)  # 40 five-minute bars: 3.3 hours, less than one session
    for result in (run_strategy(STRATEGIES["mean_reversion"], short, 10_000),
                   run_vectorbt(STRATEGIES["mean_reversion"], short, 10_000)):
        assert result.sharpe != result.sharpe  # NaN
        assert "less than one 6.5 h session" in result.sharpe_note and "Sharpe n/a (40 bars" in str(result)
    long = run_vectorbt(STRATEGIES["mean_reversion"], week_of_bars, 10_000)
    assert long.sharpe == long.sharpe and long.sharpe_note is None


def test_validation_table_says_why_sharpe_is_na(week_of_bars: pd.DataFrame, settings: Settings,
                                               tmp_path: Path) -> None:
    save_dataset(week_of_bars.head(40), "short_msft", settings=settings)
    table = validate(["sma_cross"], ["short_msft"], engine="vectorbt", output=tmp_path, settings=settings,
                     progress=False)
    assert table["sharpe"].isna().all() and table["sharpe_note"].str.contains("40 bars").all()
    text = format_table(table)
    assert " n/a" in text and "nan" not in text and "Sharpe n/a = not meaningful" in text


def test_run_vectorbt_accepts_vbt_data_and_wide_frames(week_of_bars: pd.DataFrame) -> None:
    from massive_feeds.vectorbt import MassiveData

    expected = run_vectorbt(STRATEGIES["sma_cross"], week_of_bars, 10_000)
    data = MassiveData.from_bars(week_of_bars)
    for given in (data, data.data["MSFT"], data.data["MSFT"].rename(columns=str.lower)):
        got = run_vectorbt(STRATEGIES["sma_cross"], given, 10_000, symbol="MSFT" if given is data else None)
        assert got.trade_count == expected.trade_count and got.end_value == pytest.approx(expected.end_value)
        assert got.symbol == "MSFT" or given is not data
    with pytest.raises(InvalidInputError, match="no close column"):
        run_vectorbt(STRATEGIES["sma_cross"], data.data["MSFT"].drop(columns="Close"), 10_000)
    two = MassiveData.from_bars(pd.concat([week_of_bars, week_of_bars.assign(symbol="AAPL")]))
    with pytest.raises(InvalidInputError, match="pass symbol="):
        run_vectorbt(STRATEGIES["sma_cross"], two, 10_000)
    with pytest.raises(InvalidInputError, match="'IBM' is not in"):
        run_vectorbt(STRATEGIES["sma_cross"], two, 10_000, symbol="IBM")
    from massive_feeds import to_wide

    wide = to_wide(pd.concat([week_of_bars, week_of_bars.assign(symbol="AAPL")]))
    via_wide = run_vectorbt(STRATEGIES["sma_cross"], wide, 10_000, symbol="MSFT")
    assert via_wide.trade_count == expected.trade_count and via_wide.end_value == pytest.approx(expected.end_value)


def _walk(n: int) -> pd.DataFrame:
    import numpy as np

    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 80))[:n]
    ts = pd.date_range("2024-03-04 14:30", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "symbol": "AAPL", "open": close, "high": close + .5, "low": close - .5,
                         "close": close, "volume": 100.0, "vwap": close, "transactions": 1})


@pytest.mark.parametrize(("n", "closed", "still_open"), [
    (38, 1, 1),  # an exit signal on the last bar: before, vectorbt closed it there (2 trades) and Backtrader could not
    (21, 1, 0),  # an entry signal on the last bar: before, vectorbt opened a position there
    (57, 2, 1),
])
def test_both_engines_count_closed_and_open_trades_alike(n: int, closed: int, still_open: int) -> None:
    from strategies import SmaCross

    bars = _walk(n)
    bt_result = run_strategy(SmaCross, bars, 10_000, cheat_on_close=True, fast=3, slow=8)
    vbt_result = run_vectorbt(SmaCross, bars, 10_000, fast=3, slow=8)
    for result in (bt_result, vbt_result):
        assert (result.trade_count, result.open_trades) == (closed, still_open)
        assert result.summary()["open"] == still_open
    assert bt_result.total_return == pytest.approx(vbt_result.total_return, abs=1e-12)
    pd.testing.assert_frame_equal(bt_result.open_positions, vbt_result.open_positions, check_exact=False)
    if still_open:
        assert f"{closed} trades (+1 open) over {n} bars" in str(bt_result)


def test_spread_capture_trades_on_a_sandbox_recording(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=240) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], tmp_path / "rec", settings=settings).start()
        wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
        begun = sb.clock.now_ms()
        wait_until(lambda: sb.clock.now_ms() - begun >= 20 * 60_000, timeout=30, what="20 market minutes")
        rec.stop()
        recorded = rec.save_dataset(tag="spread").stem
    bars = rec.get_dataframe("1min")
    bars = bars[~bars["quote_only"]]  # a minute without a trade closes on its mid
    # a print at the touch, as real ones are (before: every sandbox trade printed exactly at the quote's mid)
    at_touch = (bars["close"] == bars["bid"]) | (bars["close"] == bars["ask"])
    assert at_touch.all() and (bars["close"] == bars["bid"]).any() and (bars["close"] == bars["ask"]).any()
    table = validate(["spread_capture"], [recorded], engine="both", output=tmp_path / "out", settings=settings)
    counts = table.set_index("engine")["trades"]
    assert counts["backtrader"] == counts["vectorbt"] and counts["backtrader"] > 0  # before: 0 on every recording


def test_an_open_position_is_marked_in_the_plots_and_the_table(tmp_path: Path) -> None:
    from strategies import SmaCross
    from strategies.validation import result_figure, save_run_files

    result = run_vectorbt(SmaCross, _walk(38), 10_000, fast=3, slow=8)
    assert result.open_trades == 1
    names = [t.name for t in result_figure(result).data]
    assert "1 open (held at the end)" in names  # before: no marker, the table said 0 trades
    legend = [t.get_text() for t in result.figure().axes[0].get_legend().get_texts()]
    assert "1 open" in legend
    shared = tmp_path / "out" / "plotly.min.js"
    first = save_run_files(result, tmp_path / "out" / "a" / "AAPL", "one", "t", plotlyjs=shared)
    second = save_run_files(result, tmp_path / "out" / "b" / "AAPL", "two", "t", plotlyjs=shared)
    assert shared.stat().st_size > 1_000_000  # the one copy
    for files in (first, second):
        html = files["html"].read_text()
        assert '<script charset="utf-8" src="../../plotly.min.js"></script>' in html
        assert files["html"].stat().st_size < 200_000  # before: each file embedded its own 4.9 MB
