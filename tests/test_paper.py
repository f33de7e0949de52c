"""Paper trading on the live stream (the keyless sandbox at 120x), the saved session, and the replay's
parity: the same orders, fills and final equity — also across a dropped connection."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from massive_feeds.cli.paper import report
from massive_feeds.errors import InvalidInputError
from massive_feeds.sandbox import Sandbox
from strategies.validation import validate
from strategies.paper import BackfillLog, PaperOrder, PaperResult, Parity, compare, paper_trade, replay_session

from ._stream_support import wait_until
from .test_cli import run

# fast=2/slow=5 crosses every few bars, so a session of ~20 market minutes has live trades to compare
PARAMS = ("--param", "fast=2", "--param", "slow=5")
# the market clock at 120x (at 60x with 20 s sessions the same 20 market minutes took twice as long)
SPEED = 120
SESSION_SECONDS = "10"  # at 120x: 20 market minutes of live bars after 20 backfilled ones
# the synthetic market from a fixed session (its default start is 15:30 on the last NYSE session before
# today, so the bars, and whether sma_cross(2/5) completes a round trip at the quotes, changed every day)
CLOCK_START = "2026-12-04T15:30:00Z"
START = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("fills", ["close", "quotes"])
def test_paper_session_trades_saves_and_replays_identically(fills: str, tmp_path: Path) -> None:
    env = {"MASSIVE_SANDBOX_SPEED": str(SPEED), "MASSIVE_PLAN": "unlimited", "MASSIVE_SANDBOX_START": CLOCK_START,
           "MASSIVE_DATASETS_DIR": str(tmp_path / "ds"), "MASSIVE_FEEDS_HOME": str(tmp_path / "home")}
    started = time.monotonic()
    result = run("paper", "sma_cross", "AAPL", "--seconds", SESSION_SECONDS, *PARAMS, "--fills", fills,
                 "--backfill-bars", "20", "--save-dir", str(tmp_path / "rec"), "--json", env=env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert set(out) >= {"dataset", "orders", "trades", "equity_final", "parity"}
    assert out["parity"] == {"identical": True, "differences": []}
    assert out["fills"] == fills and len(out["trades"]) >= 1, out
    assert set(out["trades"][0]) == {"entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl"}
    completed = [o for o in out["orders"] if o["status"] == "Completed"]
    assert len(completed) >= 2 and {o["side"] for o in completed} == {"buy", "sell"}
    # the saved session: the fed bars (backfilled and live) beside the raw events and the backfills
    bars = pd.read_parquet(tmp_path / "ds" / f"{out['dataset']}.parquet")
    assert len(bars) == out["bars"] and bars["timestamp"].is_monotonic_increasing
    events = tmp_path / "ds" / f"{out['dataset']}.events"
    assert (events / "paper.json").exists() and (events / "paper_backfill.json").exists()
    assert BackfillLog.load(events).calls[0][2] is not None and len(BackfillLog.load(events).calls[0][2]) >= 19
    if fills == "quotes":  # live fills at the quotes: every fill price is an ask (buys) or bid (sells) seen
        quotes = bars.set_index("timestamp")
        for o in completed:
            side = "ask" if o["side"] == "buy" else "bid"
            assert o["fill_price"] == quotes.loc[pd.Timestamp(o["fill_time"]), side]
    assert took < float(SESSION_SECONDS) + 45, f"session of {SESSION_SECONDS} s took {took:.0f} s end to end"
    # stderr (not a terminal here): the first status line at once, and a line per fill as it happens
    assert re.search(r"^\d\d:\d\d:\d\d DELAYED close [\d.]+ \| position 0 \| open orders 0 \| fills 0 \| "
                     r"cash 100,000\.00 \| equity 100,000\.00 \| 1 bars$", result.stderr, re.M), result.stderr
    fill_lines = re.findall(r"^fill: (buy|sell) [\d.]+ @ [\d.]+ \(\d\d:\d\d:\d\d\)$", result.stderr, re.M)
    assert fill_lines == [o["side"] for o in completed]


def test_parity_holds_across_a_dropped_connection(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=SPEED, clock_start=START) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        stop = threading.Event()
        seen: dict[str, Any] = {"live": 0, "dropped": False, "after": 0}

        def on_bar(control: Any) -> None:  # drop the socket after 6 live bars, stop 12 live bars after that
            d = control.datas[0]
            if d._laststatus != d.LIVE:
                return
            if not seen["dropped"]:
                seen["live"] += 1
                if seen["live"] == 6:
                    seen["dropped"] = sb.ws.drop("stocks") > 0
            else:
                seen["after"] += 1
                if seen["after"] == 12:
                    stop.set()

        live = paper_trade("sma_cross", "AAPL", params={"fast": 2, "slow": 5}, settings=settings, stop=stop,
                           on_bar=on_bar, save_dir=tmp_path / "rec", backfill_bars=20, fills="quotes")
    assert seen["dropped"] and live.stats["gaps"] >= 1
    calls = BackfillLog.load(tmp_path / "ds" / f"{live.dataset}.events").calls
    assert len(calls) >= 3  # the initial backfill, the start bucket, and the hole of the reconnect
    assert live.parity == Parity(identical=True, differences=[])
    assert len(live.orders) >= 1
    # after the gap the strategy saw REST's bars, and so does the replay: the fed bars are the same
    again = replay_session(live.dataset, settings=settings)
    assert [o.as_dict() for o in again.orders] == [o.as_dict() for o in live.orders]
    assert again.equity_final == live.equity_final and again.bars == live.bars
    # the saved session backtests like any recording: Backtrader replays it as it was fed, vectorbt reads
    # the fed bars, and both end where the live run did
    table = validate(["sma_cross"], [live.dataset], engine="both", fills="quotes", params={"fast": 2, "slow": 5},
                     output=tmp_path / "out", settings=settings)
    runs = {run.engine: run.result for run in table.attrs["runs"]}
    assert runs["backtrader"].bars == runs["vectorbt"].bars == live.bars
    assert runs["backtrader"].end_value == pytest.approx(live.equity_final, rel=1e-12)
    cols = ["entry_time", "exit_time", "entry_price", "exit_price"]
    pd.testing.assert_frame_equal(runs["backtrader"].trades[cols], runs["vectorbt"].trades[cols], check_dtype=False)


def test_ctrl_c_stops_after_the_next_bar_then_saves_and_replays(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "MASSIVE_SANDBOX_SPEED": str(SPEED), "MASSIVE_PLAN": "unlimited",
           "MASSIVE_DATASETS_DIR": str(tmp_path / "ds"), "MASSIVE_FEEDS_HOME": str(tmp_path / "home")}
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "massive_feeds.cli", "paper", "sma_cross", "AAPL", *PARAMS,
                                 "--backfill-bars", "20", "--save-dir", str(tmp_path / "rec")],
                                stdout=subprocess.PIPE, stderr=fh, text=True, env=env)
        try:
            # the first status line comes with the first bar the strategy saw
            wait_until(lambda: re.search(r"\| \d+ bars\n", err.read_text()) is not None, timeout=60,
                       what="the first status line")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err.read_text()[-2000:]
    assert "stopping after the next bar, then saving and replaying" in err.read_text()
    assert "saved as dataset massive_live_paper_" in out and "replay parity: identical" in out


def _result(orders: list[PaperOrder], equity: float) -> PaperResult:
    trades = pd.DataFrame(columns=["entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl"])
    return PaperResult(strategy="SmaCross", symbol="AAPL", params={}, fills="close", cash=1000.0, orders=orders,
                       trades=trades, equity_final=equity, bars=3, last_bar=None, dataset="d")


def test_differences_are_listed_order_by_order_and_exit_1() -> None:
    t = pd.Timestamp("2024-03-04 15:00", tz="UTC")
    buy = PaperOrder(1, t, "buy", 2.0, "Completed", t, 100.0)
    other = PaperOrder(1, t, "buy", 2.0, "Completed", t, 100.5)
    sell = PaperOrder(2, t + pd.Timedelta("1min"), "sell", 2.0, "Completed", t + pd.Timedelta("1min"), 101.0)
    parity = compare(_result([buy, sell], 1002.0), _result([other], 1001.0))
    assert parity.differences == [
        "order 1: live buy 2.0 at 2024-03-04 15:00:00 Completed filled 2024-03-04 15:00:00 @ 100.0 | "
        "replay buy 2.0 at 2024-03-04 15:00:00 Completed filled 2024-03-04 15:00:00 @ 100.5",
        "order 2: live sell 2.0 at 2024-03-04 15:01:00 Completed filled 2024-03-04 15:01:00 @ 101.0 | replay (none)",
        "final equity: live 1002.0, replay 1001.0",
    ]
    assert compare(_result([buy], 1.0), _result([buy], 1.0)) == Parity(True, [])
    result = _result([buy, sell], 1002.0)
    result.parity = parity
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert report(result, as_json=False) == 1
    assert "replay parity: 3 difference(s)" in out.getvalue() and "  order 2: live sell" in out.getvalue()


def test_several_symbols_trade_side_by_side_each_with_its_parity(tmp_path: Path) -> None:
    env = {"MASSIVE_SANDBOX_SPEED": str(SPEED), "MASSIVE_PLAN": "unlimited",
           "MASSIVE_DATASETS_DIR": str(tmp_path / "ds"), "MASSIVE_FEEDS_HOME": str(tmp_path / "home")}
    result = run("paper", "sma_cross", "AAPL,MSFT", "--seconds", SESSION_SECONDS, *PARAMS, "--backfill-bars", "20",
                 "--name", "pair", "--save-dir", str(tmp_path / "rec"), "--json", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert [s["symbol"] for s in out["sessions"]] == ["AAPL", "MSFT"]
    assert [s["dataset"] for s in out["sessions"]] == ["pair_AAPL", "pair_MSFT"]
    assert out["parity"] == {"identical": True, "differences": []}
    assert out["equity_final"] == pytest.approx(sum(s["equity_final"] for s in out["sessions"]), rel=1e-12)
    assert all(len(s["orders"]) >= 1 for s in out["sessions"])
    assert "AAPL: " in result.stderr and "MSFT: " in result.stderr  # each session's status lines say whose


def test_bad_arguments_fail_before_connecting(tmp_path: Path) -> None:
    bad_name = run("paper", "sma_cross", "AAPL,MSFT", "--name", "a/b")
    assert bad_name.returncode == 2 and "a/b_AAPL" in bad_name.stderr
    bad = run("paper", "sma_cross", "AAPL", "--param", "fast=x")
    assert bad.returncode == 2 and "--param fast must be an integer" in bad.stderr
    with pytest.raises(InvalidInputError, match="fills must be 'close' or 'quotes'"):
        paper_trade("sma_cross", "AAPL", fills="mid", seconds=1)


def test_the_pages_paper_run_trades_stops_and_shows_parity_beside_the_backtest(tmp_path: Path) -> None:
    from massive_feeds.ui.live import PaperRun

    with Sandbox(websocket=True, clock_speed=SPEED, clock_start=START) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        run = PaperRun(settings, tmp_path / "rec", "sma_cross", "AAPL", {"fast": 2, "slow": 5}, fills="quotes",
                       backfill_bars=20).start()
        wait_until(lambda: len(run.view()[2]) >= 2, timeout=90, what="two fills seen live by the page")
        snap, bars, fills = run.view()
        run.stop()
        assert run.wait(120)
    assert run.error is None and len(fills) >= 2 and snap is not None and len(bars) == snap.bars
    assert [f.side for f in fills[:2]] == ["buy", "sell"]
    assert run.result.parity == Parity(identical=True, differences=[])
    assert run.backtest.fills == "quotes" and run.backtest.end_value == pytest.approx(run.result.equity_final,
                                                                                      rel=1e-12)
    assert run.backtest.bars == run.result.bars


def test_live_trading_page_start_trading_stop_and_parity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Paper Trading tab through AppTest: Start Trading with a strategy and its params, the position,
    fills and equity as they happen, Stop, then the parity result beside the recorded session's backtest."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    app = Path(__file__).resolve().parent.parent / "massive_feeds" / "ui" / "app.py"
    with Sandbox(websocket=True, clock_speed=SPEED, clock_start=START) as sb:
        for key, value in {**sb.env(), "MASSIVE_DATASETS_DIR": str(tmp_path / "ds"),
                           "MASSIVE_FEEDS_HOME": str(tmp_path / "home"), "MASSIVE_PLAN": "unlimited"}.items():
            monkeypatch.setenv(key, value)
        try:
            at = AppTest.from_file(str(app), default_timeout=60).run()
            at.switch_page("views/live_trading.py").run()
            at.session_state["lt_tab"] = "🤖 Paper Trading"
            at.run()
            at.radio(key="lt_pp_fills").set_value("quotes").run()
            at.number_input(key="lt_pp_backfill").set_value(20).run()
            at.number_input(key="lt_pp_p_sma_cross_fast").set_value(2).run()
            at.number_input(key="lt_pp_p_sma_cross_slow").set_value(5).run()
            at.button(key="lt_pp_start").click().run()
            assert not at.exception and "sma_cross on AAPL, fills at the quotes" in " ".join(s.value for s in at.success)

            def metric(label: str) -> str:
                return next((str(m.value) for m in at.metric if m.label == label), "")

            def fills_shown() -> bool:
                at.run()
                return metric("Fills") not in ("", "0", "1")

            wait_until(fills_shown, timeout=90, what="two fills on the page")
            assert metric("Last bar").endswith("LIVE") and at.button(key="lt_pp_stop").disabled is False
            shown = next(d.value for d in at.dataframe if "fill_time" in d.value.columns)  # the chart's zone
            assert "**Fills** (New York time, as the chart)" in [m.value for m in at.markdown]
            assert shown["created"].dt.tz is None  # naive wall-clock times, not the UTC isoformat strings
            assert at.radio(key="lt_pp_fills").value == "quotes"  # the fills table has a key of its own
            at.button(key="lt_pp_stop").click().run()

            def finished() -> bool:
                at.run()
                return any("Replay parity" in s.value for s in at.success) or bool(at.error)

            wait_until(finished, timeout=90, what="the parity result")
            assert not at.error and not at.exception
            texts = " ".join(s.value for s in at.success)
            assert "Saved the session as dataset massive_live_paper_" in texts and "Replay parity: identical" in texts
            equities = [str(m.value) for m in at.metric if m.label == "Final equity"]
            assert len(equities) == 2 and equities[0] == equities[1]  # the paper session and its backtest
        finally:
            st.cache_resource.clear()  # closes the page's LiveSession, which stops a paper run still going


def test_status_view_redraws_one_line_on_a_terminal_and_prints_fills_above_it() -> None:
    from massive_feeds.cli.paper import StatusView
    from strategies.paper import Snapshot

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    t = pd.Timestamp("2024-03-04 15:00", tz="UTC")
    buy = PaperOrder(1, t, "buy", 2.0, "Completed", t, 100.25)
    snaps = [Snapshot(t, 100.0, 99.9, 100.1, "LIVE", 0.0, 0, (), 1000.0, 1000.0, 5),
             Snapshot(t + pd.Timedelta("1min"), 100.5, 100.4, 100.6, "LIVE", 2.0, 0, (buy,), 799.5, 1000.5, 6)]
    out = Tty()
    view = StatusView(out, snap=lambda i: snaps[i])
    view(0)
    view(1)
    view.close()
    assert out.getvalue() == (
        "\r\x1b[2K15:00:00 LIVE close 100 bid 99.9 ask 100.1 | position 0 | open orders 0 | fills 0 | "
        "cash 1,000.00 | equity 1,000.00 | 5 bars"
        "\r\x1b[2Kfill: buy 2 @ 100.25 (15:00:00)\n"
        "\r\x1b[2K15:01:00 LIVE close 100.5 bid 100.4 ask 100.6 | position 2 | open orders 0 | fills 1 | "
        "cash 799.50 | equity 1,000.50 | 6 bars\n")
