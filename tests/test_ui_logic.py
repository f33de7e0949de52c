"""The Streamlit app: page rules as plain functions, then the pages through ``streamlit.testing.v1.AppTest``.

App tests run the real app script in-process. Depending on the test the app talks to a fake key (no
call is made), to the session's REST sandbox through a configured key, or — with no key — starts its
own full sandbox (REST, WebSocket, S3), exactly as ``massive-feeds ui`` does for a user without a key.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

pytest.importorskip("streamlit")

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from massive_feeds.config import PLANS  # noqa: E402
from massive_feeds.errors import (  # noqa: E402
    ConfigurationError,
    InvalidInputError,
    MissingCredentialsError,
    QuotaExceededError,
)
from massive_feeds.quota import QuotaManager, _midnight_utc  # noqa: E402
from massive_feeds.ui import APP_PATH, streamlit_command  # noqa: E402
from massive_feeds.ui import logic as L  # noqa: E402
from massive_feeds.ui.backend import config_fingerprint, sandbox_preference, sandbox_speed  # noqa: E402
from massive_feeds.ui.live import QuoteBoard  # noqa: E402

RESETS = datetime(2026, 1, 2, tzinfo=timezone.utc)


# --- pure page rules ------------------------------------------------------------------------------
@pytest.mark.parametrize(("remaining", "level", "colour"), [
    (100, "green", "green"), (51, "green", "green"), (50, "orange", "orange"), (20, "orange", "orange"),
    (19, "red", "red"), (1, "red", "red"), (0, "exhausted", "gray"), (None, "green", "green"),
])
def test_quota_colour_rule_at_the_boundaries(remaining: int | None, level: str, colour: str) -> None:
    badge = L.rest_quota_badge(remaining, 100, RESETS)
    assert (badge.level, badge.colour) == (level, colour)
    assert badge.markdown.startswith(f":{colour}-badge[")


def test_exhausted_quota_says_when_it_resets() -> None:
    badge = L.rest_quota_badge(0, 100, RESETS)
    assert "midnight UTC" in badge.label and "2026-01-02 00:00 UTC" in badge.label and badge.icon == "🚫"
    assert L.rest_quota_badge(42, 100, RESETS).label == "42 of 100 REST calls left today"
    assert "Unlimited" in L.rest_quota_badge(None, None, RESETS).label


def test_bytes_and_flatfile_label() -> None:
    assert L.format_bytes(10 * 10**9) == "10.00 GB"
    assert L.format_bytes(512_300_000) == "512.3 MB"
    assert L.format_bytes(999) == "999 B"
    assert L.format_bytes(None) == "unlimited"


def test_method_plan_follows_the_auto_rule() -> None:
    assert "Auto picks **REST API**" in L.method_plan("auto", 5, 7)
    assert "Auto picks **Flat Files (S3)**" in L.method_plan("auto", 6, 1)
    assert "Auto picks **Flat Files (S3)**" in L.method_plan("auto", 1, 8)
    assert "requested explicitly" in L.method_plan("rest", 50, 300)
    assert "≤5 symbols and ≤7 days" in L.AUTO_RULE


def test_method_plan_says_the_quota_fallback_instead_of_announcing_rest() -> None:
    assert L.method_plan("auto", 1, 5, rest_left=0, rest_calls=1) == (
        "For this query (1 symbol over 5 days, a small query) Auto picks **REST API**, but only 0 REST call(s) are "
        "left today for ~1: unless those answers are cached, it takes **Flat Files (S3)** instead.")
    assert L.method_plan("auto", 1, 5, rest_left=1, rest_calls=1).endswith("Auto picks **REST API**.")
    assert L.method_plan("auto", 6, 5, rest_left=0, rest_calls=6).endswith("Auto picks **Flat Files (S3)**.")


def test_method_used_messages_name_the_fallback() -> None:
    fallback = L.method_used_message({"method": "rest", "method_reason": "fell back to REST: no S3 credentials (X)"})
    assert fallback.kind == "warning" and fallback.title == "Fetched via REST API (fallback)"
    assert "because no S3 credentials (X)" in fallback.detail
    to_files = L.method_used_message({"method": "flat_file",
                                      "method_reason": "fell back to flat files: the REST quota left today (0 calls) "
                                                       "cannot cover ~2 calls"})
    assert to_files.kind == "warning" and "Flat Files (S3)" in to_files.title and "REST quota" in to_files.detail
    auto = L.method_used_message({"method": "rest", "method_reason": "2 symbol(s) over 5 day(s): small query → REST"})
    assert auto.kind == "success" and "small query" in auto.detail
    assert L.method_used_message({"method": "flat_file", "method_reason": "requested explicitly"}).kind == "success"


def test_error_messages_are_specific_and_never_tracebacks() -> None:
    no_key = L.error_message(MissingCredentialsError("No API key found. Set MASSIVE_API_KEY"))
    assert no_key.kind == "error" and no_key.title == "No API key configured"
    no_s3 = L.error_message(MissingCredentialsError("No S3 credentials found for flat files."))
    assert no_s3.title == "No S3 credentials for flat files"
    quota = L.error_message(QuotaExceededError("used up", resource="rest_daily", resets_at=RESETS))
    assert quota.title == "Daily REST quota exhausted" and "2026-01-02 00:00 UTC" in quota.hint
    assert L.error_message(InvalidInputError("bad symbol"), "Fetching").title == "Fetching failed: invalid input"
    other = L.error_message(ZeroDivisionError("float division by zero"), "The backtest")
    assert other.detail == "ZeroDivisionError: float division by zero" and "Traceback" not in other.text


def test_small_helpers() -> None:
    assert L.default_date_range(datetime(2026, 3, 10).date()) == (datetime(2026, 3, 5).date(),
                                                                  datetime(2026, 3, 9).date())
    assert L.suggest_dataset_name(["AAPL", "X:BTCUSD"], "1h") == "aapl_btcusd_1h"
    assert L.recording_dataset_name("massive_live_a_20260101", []) == "massive_live_a_20260101"
    now = datetime(2026, 1, 1, 12, 30, 5, tzinfo=timezone.utc)
    assert L.recording_dataset_name("x", ["x"], now) == "x_123005"
    assert L.recording_dataset_name("x", ["x", "x_123005"], now) == "x_123005_2"
    cards = L.stream_stat_cards({"active_streams": 2, "max_streams": 10, "messages_this_minute": 7,
                                 "max_messages_per_minute": None, "reconnects": 1, "dropped": 0})
    assert cards == {"Active streams": "2 / 10", "Messages this minute": "7 / ∞", "Reconnects": "1", "Dropped": "0"}
    assert L.default_stream_symbols(["MSFT", "X:BTCUSD", "AAPL"]) == ["AAPL", "X:BTCUSD"]
    assert L.default_stream_symbols(["MSFT", "KO", "V"]) == ["MSFT", "KO"]


def test_strategy_params_and_bars_needed() -> None:
    from strategies import STRATEGIES

    params = L.strategy_params(STRATEGIES["sma_cross"])
    assert params == {"stake": 0.95, "fast": 10, "slow": 30}
    assert L.min_bars_needed(params) == 31
    assert L.min_bars_needed({"min_spread_bps": 1.0}) == 2


def test_quote_board_is_a_snapshot_of_the_stream() -> None:
    board = QuoteBoard(history=3)
    t = datetime(2026, 1, 2, 15, 30, tzinfo=timezone.utc)
    for i in range(5):
        board.on_update("AAPL", {"bid": 10.0 + i, "ask": 10.2 + i, "mid": 10.1 + i, "spread": 0.2, "bid_size": 1,
                                 "ask_size": 2, "last_price": None, "last_size": None,
                                 "timestamp": t + timedelta(seconds=i)})
    board.on_update("I:SPX", {"mid": None, "last_price": 5000.0, "timestamp": t})
    quotes = board.quotes_frame(["AAPL", "MSFT"])
    assert quotes["Symbol"].tolist() == ["AAPL"] and quotes["Updates"].tolist() == [5]
    hist = board.history_frame()
    assert len(hist[hist["symbol"] == "AAPL"]) == 3  # bounded
    assert hist[hist["symbol"] == "I:SPX"]["price"].tolist() == [5000.0]  # last trade when no quote
    shown = L.format_quotes(quotes)
    assert shown.loc["AAPL", "Bid"] == "14.00" and shown.loc["AAPL", "Spread"] == "0.2000" and shown.loc["AAPL", "Last"] == "–"
    board.clear(["AAPL"])
    assert board.quotes_frame().empty is False and "AAPL" not in board.quotes_frame()["Symbol"].tolist()


def test_backend_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox_preference({}) == "auto"
    assert sandbox_preference({"MASSIVE_UI_SANDBOX": "0"}) == "off"
    assert sandbox_preference({"MASSIVE_UI_SANDBOX": "On"}) == "on"
    with pytest.raises(ConfigurationError):
        sandbox_preference({"MASSIVE_UI_SANDBOX": "maybe"})
    assert sandbox_speed({"MASSIVE_UI_SANDBOX_SPEED": "30"}) == 30.0
    with pytest.raises(ConfigurationError):
        sandbox_speed({"MASSIVE_UI_SANDBOX_SPEED": "fast"})
    a = config_fingerprint({"MASSIVE_API_KEY": "secret-one"}, Path("/x"))
    assert a != config_fingerprint({"MASSIVE_API_KEY": "secret-two"}, Path("/x")) and "secret" not in a


def test_streamlit_command_is_headless_and_private() -> None:
    cmd = streamlit_command("127.0.0.1", 8123, python="py")
    assert cmd[:5] == ["py", "-m", "streamlit", "run", str(APP_PATH)]
    for flag in ("--server.address=127.0.0.1", "--server.port=8123", "--server.headless=true",
                 "--browser.gatherUsageStats=false", "--client.showErrorDetails=none"):
        assert flag in cmd


def test_cli_ui_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from massive_feeds import cli

    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append(list(argv)))
    monkeypatch.setattr("subprocess.call", lambda argv: calls.append(list(argv)) or 0)
    assert cli.main(["ui", "--port", "8999", "--sandbox", "on"]) == 0
    assert "--server.port=8999" in calls[0] and "--server.address=127.0.0.1" in calls[0]
    assert os.environ["MASSIVE_UI_SANDBOX"] == "on"
    monkeypatch.delenv("MASSIVE_UI_SANDBOX")
    monkeypatch.setattr("massive_feeds.ui.streamlit_available", lambda: False)
    assert cli.main(["ui"]) == 1
    assert "pip install 'massive-feeds[ui]'" in capsys.readouterr().err


# --- the pages, through AppTest -------------------------------------------------------------------
@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Private folders for the app; afterwards every cached backend/live session is released, which
    stops the sandboxes and connectors the app started."""
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "datasets"))
    yield tmp_path
    st.cache_resource.clear()


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=60)


def _texts(elements: object) -> list[str]:
    return [str(e.value) for e in elements]  # type: ignore[attr-defined]


def _use_rest_calls(home: Path, n: int) -> None:
    """Record ``n`` REST calls made earlier today in the quota state under ``home``."""
    qm = QuotaManager(PLANS["free"], home / "state" / "quota.sqlite3")
    now = time.time()
    ts = max(now - 61, _midnight_utc(now) + 0.5)
    qm._connect().executemany("INSERT INTO rest_calls(ts) VALUES (?)", [(ts,)] * n)


def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "test-key-not-shown")
    monkeypatch.setenv("MASSIVE_REST_URL", "http://127.0.0.1:9")  # never called by these tests


def test_data_loader_widgets(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_key(monkeypatch)
    at = _app().run()
    assert not at.exception
    assert at.title[0].value == "📥 Data Loader"
    assert at.selectbox(key="dl_source").options == ["Massive.com · profile free: 100 REST calls/day, 10 per minute"]
    assert at.radio(key="dl_method").options == ["Auto (Recommended)", "REST API", "Flat Files (S3)"]
    assert at.radio(key="dl_method").value == "Auto (Recommended)"
    assert at.text_input(key="dl_symbols").value == "AAPL, MSFT"
    assert at.selectbox(key="dl_interval").options == list(L.INTERVALS)
    assert at.date_input(key="dl_start") and at.date_input(key="dl_end")
    assert at.button(key="dl_fetch").label == "Fetch Data"
    markdown = " ".join(_texts(at.markdown))
    assert "Auto rule:" in markdown and "100 of 100 REST calls left today" in markdown
    assert "10.00 GB of 10.00 GB flat-file downloads left this month" in markdown
    assert "Auto picks **REST API**" in " ".join(_texts(at.caption))
    assert not at.info and not at.warning  # no sandbox / no-key banner with a key
    assert "test-key-not-shown" not in str(at.main) + str(at.sidebar)  # the key is never displayed
    at.text_input(key="dl_symbols").set_value("A, B, C, D, E, F").run()
    assert "Auto picks **Flat Files (S3)**" in " ".join(_texts(at.caption))


@pytest.mark.parametrize(("used", "colour", "text"), [
    (49, "green", "51 of 100"), (50, "orange", "50 of 100"), (80, "orange", "20 of 100"),
    (81, "red", "19 of 100"), (100, "gray", "Daily limit reached"),
])
def test_quota_panel_colours(app_env: Path, monkeypatch: pytest.MonkeyPatch, used: int, colour: str,
                             text: str) -> None:
    _fake_key(monkeypatch)
    _use_rest_calls(app_env / "home", used)
    at = _app().run()
    badges = [m for m in _texts(at.markdown) if "-badge[" in m]
    assert len(badges) == 1 and badges[0].startswith(f":{colour}-badge[") and text in badges[0]
    if colour == "gray":
        assert "resets at midnight UTC" in badges[0]


def test_no_key_and_sandbox_off_shows_errors_not_tracebacks(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_UI_SANDBOX", "off")
    at = _app().run()
    assert not at.exception
    assert "No API key configured" in at.warning[0].value
    at.button(key="dl_fetch").click().run()
    assert not at.exception
    assert any("No API key configured" in e and "MASSIVE_API_KEY" in e for e in _texts(at.error))
    at.switch_page("views/live_trading.py").run()
    assert not at.exception
    # listing symbols needs the key: one message says so and offers a built-in list, any symbol can be typed
    listing = [i for i in _texts(at.info) if "Symbols from a built-in list" in i]
    assert len(listing) == 1 and "no API key is configured" in listing[0] and "type any symbol" in listing[0]
    assert at.button(key="lt_start").label == "▶️ Start Trading" and not at.button(key="lt_start").disabled
    at.button(key="lt_start").click().run()
    assert any("No API key configured" in e for e in _texts(at.error))  # streaming needs it too


def test_auto_falls_back_to_rest_without_s3_credentials(app_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                         sandbox) -> None:
    for key, value in sandbox.env().items():  # a key and the REST sandbox, but no S3 credentials
        monkeypatch.setenv(key, value)
    day = sandbox.clock.now().date()
    at = _app().run()
    at.date_input(key="dl_start").set_value(day - timedelta(days=12))
    at.date_input(key="dl_end").set_value(day - timedelta(days=1))
    at.selectbox(key="dl_interval").set_value("1d")
    at.button(key="dl_fetch").click().run()
    assert not at.exception and not at.error
    warning = " ".join(_texts(at.warning))
    assert "Fetched via REST API (fallback)" in warning and "no S3 credentials" in warning
    assert "REST API" in [m.value for m in at.metric if m.label == "Method"]
    assert int(next(m.value for m in at.metric if m.label == "Rows")) > 0
    markdown = " ".join(_texts(at.markdown))
    assert "98 of 100 REST calls left today" in markdown  # the panel shows the calls just made


def test_exhausted_quota_is_a_clear_message(app_env: Path, monkeypatch: pytest.MonkeyPatch, sandbox) -> None:
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    _use_rest_calls(app_env / "home" / "sandbox", 100)  # sandbox settings keep their own quota state
    at = _app().run()
    assert any(m.startswith(":gray-badge[🚫 Daily limit reached") for m in _texts(at.markdown))
    at.radio(key="dl_method").set_value("REST API")
    at.button(key="dl_fetch").click().run()
    assert not at.exception
    errors = " ".join(_texts(at.error))
    assert "Daily REST quota exhausted" in errors
    assert any("resets at" in c for c in _texts(at.caption))
    at.radio(key="dl_method").set_value("Flat Files (S3)")
    at.button(key="dl_fetch").click().run()
    assert "No S3 credentials for flat files" in " ".join(_texts(at.error)) and not at.exception


@pytest.mark.slow
def test_fetch_save_and_append_on_the_apps_own_sandbox(app_env: Path) -> None:
    at = _app().run()
    assert not at.exception
    assert "Sandbox mode: no API key configured" in at.info[0].value
    assert "local sandbox" in " ".join(_texts(at.sidebar.caption))
    at.button(key="dl_fetch").click().run()
    assert not at.exception and not at.error
    assert "Fetched via REST API" in at.success[0].value
    rows = int(next(m.value for m in at.metric if m.label == "Rows").replace(",", ""))
    assert rows > 0
    assert len(at.dataframe) >= 1 and at.dataframe[0].value.shape[0] == rows
    assert at.multiselect(key="dl_chart_symbols").options == ["AAPL", "MSFT"]

    at.text_input(key="dl_name").set_value("ui_test")
    at.button(key="dl_save").click().run()
    assert "Saved dataset **ui_test** (" in " ".join(_texts(at.success))
    saved = pd.read_parquet(app_env / "datasets" / "ui_test.parquet")
    assert len(saved) == rows

    at.toggle(key="dl_append").set_value(True).run()
    assert at.selectbox(key="dl_append_target").options == ["ui_test"]
    assert at.selectbox(key="dl_append_target").value is None  # no default target: the user picks one
    assert at.button(key="dl_save").disabled
    at.selectbox(key="dl_append_target").set_value("ui_test").run()
    assert f"**ui_test** holds 1h bars · stocks · {rows:,} rows; these rows: 1h bars · stocks · {rows:,} rows." in \
        " ".join(_texts(at.caption))
    at.button(key="dl_save").click().run()
    assert f"0 new row(s), {rows} duplicate(s) skipped; it now holds {rows} rows" in " ".join(_texts(at.success))

    at.toggle(key="dl_append").set_value(False).run()
    at.text_input(key="dl_name").set_value("ui_test").run()
    assert not at.checkbox(key="dl_overwrite").value  # replacing is opt-in
    at.button(key="dl_save").click().run()
    assert "dataset 'ui_test' already exists" in " ".join(_texts(at.error))
    at.checkbox(key="dl_overwrite").check().run()
    at.button(key="dl_save").click().run()
    assert f"Saved dataset **ui_test** ({rows:,} rows)" in " ".join(_texts(at.success))

    at.radio(key="dl_method").set_value("Flat Files (S3)")
    at.button(key="dl_fetch").click().run()
    assert not at.exception and not at.error
    assert "Fetched via Flat Files (S3)" in at.success[0].value
    assert "GB of 10.00 GB flat-file downloads left this month" in " ".join(_texts(at.markdown))


@pytest.mark.slow
def test_live_trading_record_and_backtest_on_the_apps_own_sandbox(app_env: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_UI_SANDBOX_SPEED", "60")
    at = _app().run()
    at.switch_page("views/live_trading.py").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="lt_source").options == ["massive"]
    assert at.radio(key="lt_mode").options == ["Streaming (WebSocket)"]
    assert "AAPL" in at.multiselect(key="lt_symbols").options
    assert at.multiselect(key="lt_symbols").value == ["AAPL", "X:BTCUSD"]
    cached = json.loads((app_env / "ui_symbols.json").read_text())  # kept for when REST is unavailable
    assert "AAPL" in cached["symbols"] and not [i for i in _texts(at.info) if "Symbols from" in i]
    assert at.selectbox(key="lt_speed").value == 60.0
    assert at.button(key="lt_stop").disabled
    assert [t.label for t in at.tabs] == ["📈 Live Quotes", "🧪 Test on Live Data", "🤖 Paper Trading"]
    assert not [b for b in at.button if b.key == "lt_start_rec"]  # the hidden tab does not run
    at.session_state["lt_tab"] = "🧪 Test on Live Data"
    at.run()
    assert at.button(key="lt_start_rec").disabled  # nothing streams yet
    readiness = next(d.value for d in at.dataframe if "Bars needed" in d.value.columns).set_index("Strategy")
    assert readiness.loc["sma_cross", "Bars needed"] == "31" and readiness.loc["sma_cross", "Wall time at 60×"] == "31 s"
    assert any("Start trading first" in c for c in _texts(at.caption))
    at.session_state["lt_tab"] = "📈 Live Quotes"
    at.run()

    at.button(key="lt_start").click().run()
    assert "Streaming" in at.success[0].value
    deadline = time.monotonic() + 20
    # until AAPL's quote is in the table (bitcoin's may come first and show alone for a rerun or two)
    while not (at.table and "AAPL" in at.table[0].value.index) and time.monotonic() < deadline:
        time.sleep(0.2)
        at.run()
    assert at.table, "no quotes arrived"
    assert "AAPL" in at.table[0].value.index
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Live 5s candles" in spec and '"candlestick"' in spec for spec in specs)  # beside the quotes
    stats = {m.label: m.value for m in at.metric}
    assert stats["Active streams"] == "2 / 10" and stats["Dropped"] == "0"

    at.session_state["lt_tab"] = "🧪 Test on Live Data"
    at.run()
    assert not at.table  # the quotes panel is not refreshed while its tab is hidden
    at.selectbox(key="lt_bar").set_value("1s")
    at.text_input(key="lt_tag").set_value("apptest")
    at.button(key="lt_start_rec").click().run()
    assert not at.error
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
        recorded = {m.label: m.value for m in at.metric}.get("Written to disk", "0")
        if int(recorded.replace(",", "")) >= 200:
            break
    live_stats = {m.label: m.value for m in at.metric}
    assert int(live_stats["Bars (1s)"].replace(",", "")) > 0 and live_stats["Elapsed"].endswith(" s")
    status = next(d.value for d in at.dataframe if "Status" in d.value.columns).set_index("Strategy")["Status"]
    assert status.str.startswith(("✅", "⏳")).all()
    at.button(key="lt_stop_rec").click().run()
    saved = [s for s in _texts(at.success) if "Saved recording as dataset massive_live_apptest_" in s]
    assert saved, _texts(at.error)
    dataset = at.selectbox(key="lt_dataset").value
    assert dataset.startswith("massive_live_apptest_")

    at.selectbox(key="lt_strategy").set_value("mean_reversion")
    at.button(key="lt_run").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    cards = {m.label: m.value for m in at.metric}
    assert cards["Return"].endswith("%") and cards["Max drawdown"].endswith("%") and "Sharpe" in cards
    # the cards are the numbers of the same strategy run independently on the saved dataset
    from massive_feeds.datasets import load_dataset
    from strategies import MeanReversion, run_strategy

    header = next(t for t in _texts(at.markdown) if t.startswith("**mean_reversion** on **"))
    symbol = header.split("**")[3]
    saved = load_dataset(dataset, folder=app_env / "datasets")
    bars = saved[saved["symbol"] == symbol].reset_index(drop=True)
    bars.attrs = dict(saved.attrs)
    expected = run_strategy(MeanReversion, bars, cash=100_000.0)
    assert cards["Trades"] == str(expected.trade_count)
    assert cards["Return"] == L.backtest_cards(expected)["Return"]

    at.button(key="lt_stop").click().run()
    assert any("Trading stopped" in i for i in _texts(at.info))

    at.selectbox(key="lt_speed").set_value(120.0).run()  # restarts the sandbox at the new speed
    assert not at.exception and any("Sandbox clock set to 120× real time" in i for i in _texts(at.info))
    from massive_feeds.ui.common import get_backend

    assert get_backend().sandbox.clock.speed == 120.0
