"""Fills at the quotes: buys at the ask, sells at the bid of the latest quote, the same in Backtrader
(``QuoteBroker``, the recording replayed through the live feed path) and vectorbt (per-bar fill prices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_data, load_dataset
from massive_feeds.backtrader import MassiveData, MassiveQuoteData
from massive_feeds.errors import InvalidInputError, NoQuotesError
from massive_feeds.record import WebSocketDataRecorder
from massive_feeds.sandbox import Sandbox
from strategies import SmaCross, run_strategy
from strategies.fills import quote_fill_prices
from strategies.validation import format_table, validate
from strategies.vectorbt_runner import run_vectorbt

from ._stream_support import wait_until

PARAMS = {"fast": 3, "slow": 8}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """A recorded sandbox session of about 40 market minutes of AAPL, saved as a dataset."""
    tmp = tmp_path_factory.mktemp("fills")
    with Sandbox(websocket=True, clock_speed=600) as sb:  # ten market minutes per second
        settings = sb.settings(home=tmp / "home", datasets_dir=tmp / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], tmp / "rec", settings=settings).start()
        wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
        begun = sb.clock.now_ms()
        wait_until(lambda: sb.clock.now_ms() - begun >= 40 * 60_000, timeout=30, what="40 market minutes")
        rec.stop()
        name = rec.save_dataset(tag="fills").stem
        hist = fetch_data("AAPL", "2024-03-04", "2024-03-05", "15m", settings=settings)
    return name, (settings, hist)


def test_both_engines_fill_at_the_quotes_with_identical_trades(session: tuple[str, object]) -> None:
    name, (settings, _) = session  # type: ignore[misc]
    bars = load_dataset(name, settings=settings)
    feed = MassiveQuoteData(recording=name, settings=settings)
    bt_q = run_strategy(SmaCross, feed, 10_000, cheat_on_close=True, fills="quotes", **PARAMS)
    vbt_q = run_vectorbt(SmaCross, bars, 10_000, fills="quotes", **PARAMS)
    assert bt_q.trade_count >= 1 and bt_q.fills == vbt_q.fills == "quotes"
    cols = ["entry_time", "exit_time", "entry_price", "exit_price"]
    pd.testing.assert_frame_equal(bt_q.trades[cols], vbt_q.trades[cols], check_dtype=False)
    assert bt_q.trades["size"].to_numpy() == pytest.approx(vbt_q.trades["size"].to_numpy(), rel=1e-12)
    assert bt_q.end_value == pytest.approx(vbt_q.end_value, rel=1e-12)
    # each fill at the side of the latest quote of its bar: the ask for entries, the bid for exits
    quotes = bars.set_index("timestamp")[["bid", "ask"]].where(bars.set_index("timestamp")[["bid", "ask"]]
                                                                .notna().all(axis=1)).ffill()
    assert bt_q.trades["entry_price"].to_numpy() == pytest.approx(
        quotes.loc[bt_q.trades["entry_time"], "ask"].to_numpy(), rel=0, abs=0)
    assert bt_q.trades["exit_price"].to_numpy() == pytest.approx(
        quotes.loc[bt_q.trades["exit_time"], "bid"].to_numpy(), rel=0, abs=0)
    # the same signals filled at the close: the spread is what separates the two
    bt_c = run_strategy(SmaCross, MassiveQuoteData(recording=name, settings=settings), 10_000,
                        cheat_on_close=True, **PARAMS)
    assert bt_c.fills == "close"
    assert list(bt_c.trades["entry_time"]) == list(bt_q.trades["entry_time"])
    assert bt_c.trades["entry_price"].to_numpy() == pytest.approx(
        bars.set_index("timestamp").loc[bt_c.trades["entry_time"], "close"].to_numpy(), rel=0, abs=0)


def test_next_bar_fills_use_the_quote_of_the_signal_bar(session: tuple[str, object]) -> None:
    name, (settings, _) = session  # type: ignore[misc]
    bars = load_dataset(name, settings=settings).set_index("timestamp")
    result = run_strategy(SmaCross, MassiveQuoteData(recording=name, settings=settings), 10_000, fills="quotes",
                          **PARAMS)
    assert result.trade_count >= 1
    signal_bar = [bars.index[bars.index.get_loc(t) - 1] for t in result.trades["entry_time"]]
    assert list(result.trades["entry_price"]) == list(bars.loc[signal_bar, "ask"])  # fills one bar later


def test_quote_fill_prices_take_each_side_and_drop_signals_before_the_first_quote() -> None:
    bars = pd.DataFrame({"close": [10.0, 10.2, 10.4, 10.6], "bid": [np.nan, 10.1, np.nan, 10.5],
                         "ask": [np.nan, 10.3, np.nan, 10.7]})
    price, entries, exits = quote_fill_prices(bars, np.array([True, False, True, False]),
                                              np.array([False, True, False, True]))
    assert list(entries) == [False, False, True, False]  # bar 0: no quote yet, the order is rejected
    assert list(exits) == [False, True, False, True]
    assert list(price) == [10.0, 10.1, 10.3, 10.5]  # entry at the carried ask 10.3, exits at the bids


def test_bars_without_quotes_refuse_quote_fills(session: tuple[str, object], tmp_path: Path) -> None:
    _, (settings, hist) = session  # type: ignore[misc]
    with pytest.raises(NoQuotesError, match="fills='quotes' needs bid/ask quotes"):
        run_strategy(SmaCross, hist, 10_000, fills="quotes")
    with pytest.raises(NoQuotesError, match="fills='quotes' needs bid/ask quotes"):
        run_vectorbt(SmaCross, hist, 10_000, fills="quotes")
    with pytest.raises(NoQuotesError, match=r"needs a feed with bid/ask lines \(MassiveQuoteData\), not MassiveData"):
        run_strategy(SmaCross, MassiveData(bars=hist), 10_000, fills="quotes")
    from massive_feeds import save_dataset

    save_dataset(hist, "plain_bars", settings=settings)
    with pytest.raises(NoQuotesError, match="the bars of dataset plain_bars have none"):
        validate(["sma_cross"], ["plain_bars"], fills="quotes", output=tmp_path, settings=settings)
    with pytest.raises(InvalidInputError, match="fills must be 'close' or 'quotes', not 'mid'"):
        run_vectorbt(SmaCross, hist, 10_000, fills="mid")


def test_validate_shows_the_fill_model_and_the_engines_agree(session: tuple[str, object], tmp_path: Path) -> None:
    name, (settings, _) = session  # type: ignore[misc]
    table = validate(["sma_cross"], [name], engine="both", fills="quotes", params=PARAMS, output=tmp_path,
                     settings=settings)
    assert list(table["fills"]) == ["quotes", "quotes"]
    assert table["total_return"].iloc[0] == pytest.approx(table["total_return"].iloc[1], rel=1e-9)
    rows = [line.split() for line in format_table(table).splitlines() if line.startswith(name)]
    assert [row[2:4] for row in rows] == [["backtrader", "quotes"], ["vectorbt", "quotes"]]


def test_tick_history_fills_at_its_quotes_in_both_engines(session: tuple[str, object], tmp_path: Path) -> None:
    """A tick dataset (REST v3 trades and quotes of the sandbox): Backtrader replays the ticks through the
    live feed path, vectorbt reads the bars built from them; both fill at the same quotes."""
    from massive_feeds import fetch_ticks, save_dataset

    _, (settings, _) = session  # type: ignore[misc]
    ticks = fetch_ticks("AAPL", "2024-03-05T14:30", "2024-03-05T15:30", ["trades", "quotes"], method="rest",
                        settings=settings)
    save_dataset(ticks, "aapl_ticks_hour", settings=settings, source="ticks_rest")
    table = validate(["sma_cross"], ["aapl_ticks_hour"], engine="both", fills="quotes", params=PARAMS,
                     output=tmp_path, settings=settings)
    runs = {run.engine: run.result for run in table.attrs["runs"]}
    assert list(table["fills"]) == ["quotes", "quotes"] and runs["backtrader"].trade_count >= 1
    cols = ["entry_time", "exit_time", "entry_price", "exit_price"]
    pd.testing.assert_frame_equal(runs["backtrader"].trades[cols], runs["vectorbt"].trades[cols], check_dtype=False)
    assert runs["backtrader"].end_value == pytest.approx(runs["vectorbt"].end_value, rel=1e-12)


def test_the_pages_backtest_offers_quote_fills(session: tuple[str, object]) -> None:
    from massive_feeds import save_dataset
    from massive_feeds.ui.live import run_backtest

    name, (settings, hist) = session  # type: ignore[misc]
    at_quotes = run_backtest(settings, name, "AAPL", "sma_cross", PARAMS, 10_000.0, "quotes")
    direct = run_strategy(SmaCross, load_dataset(name, settings=settings), 10_000, fills="quotes", **PARAMS)
    assert at_quotes.fills == "quotes" and at_quotes.end_value == direct.end_value and at_quotes.trade_count >= 1
    save_dataset(hist, "plain_for_page", settings=settings)
    with pytest.raises(NoQuotesError):
        run_backtest(settings, "plain_for_page", "AAPL", "sma_cross", PARAMS, 10_000.0, "quotes")
