"""Issue 18 page rules and flows: charts without closed hours, strategy readiness, the symbol list that
survives a spent REST quota, truthful profile labels, dataset download/inspect/delete (AppTest)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

pytest.importorskip("streamlit")

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from massive_feeds.config import load_settings  # noqa: E402
from massive_feeds.errors import MissingCredentialsError, QuotaExceededError  # noqa: E402
from massive_feeds.quota import QuotaManager, _midnight_utc, free_tier_info  # noqa: E402
from massive_feeds.ui import APP_PATH  # noqa: E402
from massive_feeds.ui import logic as L  # noqa: E402
from massive_feeds.ui.charts import bars_figure, candles_from_prices, live_candles, rangebreaks  # noqa: E402
from massive_feeds.ui.live import QuoteBoard  # noqa: E402


# --- charts ---------------------------------------------------------------------------------------
def _bars(symbol: str, start: str, periods: int, freq: str) -> pd.DataFrame:
    ts = pd.date_range(start, periods=periods, freq=freq, tz="UTC")
    n = len(ts)
    return pd.DataFrame({"timestamp": ts, "symbol": symbol, "open": 10.0, "high": 11.0, "low": 9.0,
                         "close": [10.0 + i for i in range(n)], "volume": 100.0})


def test_rangebreaks_hide_weekends_holidays_and_the_night_for_stocks_only() -> None:
    # regular-session hourly bars 09:30..15:30 New York around Good Friday 2024-03-29 (NYSE closed)
    days = ["2024-03-27", "2024-03-28", "2024-04-01"]
    ts = pd.DatetimeIndex([t for d in days for t in pd.date_range(f"{d} 09:30", periods=7, freq="1h",
                                                                  tz="America/New_York")]).tz_convert("UTC")
    breaks = rangebreaks(ts, ["AAPL"], pd.Timedelta("1h"))
    assert {"bounds": ["sat", "mon"]} in breaks
    assert {"values": ["2024-03-29"], "dvalue": 86_400_000} in breaks  # the holiday, from the calendar
    assert {"bounds": [16.5, 9.5], "pattern": "hour"} in breaks  # last bar 15:30 + 1 h → next 09:30
    daily = rangebreaks(ts, ["AAPL"], pd.Timedelta("1D"))
    assert not [b for b in daily if b.get("pattern") == "hour"]
    assert rangebreaks(ts, ["X:BTCUSD"], pd.Timedelta("1h")) == []  # 24/7: nothing to hide
    assert rangebreaks(ts, ["AAPL", "C:EURUSD"], pd.Timedelta("1h")) == []


def test_bars_figure_stacks_candles_with_volume_overlays_and_marks_trades() -> None:
    bars = pd.concat([_bars("AAPL", "2024-03-04 14:30", 10, "1h"), _bars("MSFT", "2024-03-04 14:30", 10, "1h")])
    stacked = bars_figure(bars, ["AAPL", "MSFT"], interval="1h")
    kinds = [(t.type, t.name) for t in stacked.data]
    assert kinds == [("candlestick", "AAPL"), ("bar", "AAPL volume"), ("candlestick", "MSFT"), ("bar", "MSFT volume")]
    assert stacked.layout.xaxis.rangebreaks  # closed hours hidden
    overlay = bars_figure(bars, ["AAPL", "MSFT"], layout="overlay", interval="1h")
    lines = [t for t in overlay.data if t.type == "scatter"]
    assert [t.name for t in lines] == ["AAPL", "MSFT"] and lines[0].y[0] == 0.0 and lines[0].y[1] == pytest.approx(10.0)
    trades = pd.DataFrame({"entry_time": [bars["timestamp"].iloc[1]], "entry_price": [11.0],
                           "exit_time": [bars["timestamp"].iloc[4]], "exit_price": [14.0]})
    marked = bars_figure(bars[bars.symbol == "AAPL"], ["AAPL"], trades=trades)
    markers = {t.name: t for t in marked.data if t.type == "scatter"}
    assert markers["entry"].marker.symbol == "triangle-up" and list(markers["exit"].y) == [14.0]
    assert pd.Timestamp(markers["entry"].x[0]) == pd.Timestamp("2024-03-04 10:30")  # New York wall clock


def test_live_candles_are_ohlc_of_the_board_prices() -> None:
    t0 = pd.Timestamp("2026-01-02 15:30:00", tz="UTC")
    hist = pd.DataFrame({"time": [t0 + pd.Timedelta(seconds=s) for s in (0, 1, 2, 5, 6)], "symbol": "AAPL",
                         "price": [10.0, 12.0, 9.0, 11.0, 11.5]})
    candles = candles_from_prices(hist, "5s")
    assert candles[["open", "high", "low", "close", "ticks"]].values.tolist() == [[10.0, 12.0, 9.0, 9.0, 3],
                                                                                 [11.0, 11.5, 11.0, 11.5, 2]]


def test_live_candles_and_quotes_table_are_in_new_york_time() -> None:
    t0 = pd.Timestamp("2026-01-02 15:30:00", tz="UTC")  # 10:30 in New York (EST)
    hist = pd.DataFrame({"time": [t0, t0 + pd.Timedelta(seconds=1)], "symbol": "AAPL", "price": [10.0, 11.0]})
    fig = live_candles(hist, "5s")
    assert pd.Timestamp(fig.data[0].x[0]) == pd.Timestamp("2026-01-02 10:30:00")
    assert fig.layout.title.text.endswith("· New York time")
    board = QuoteBoard()
    board.on_update("AAPL", {"bid": 1.0, "ask": 1.2, "mid": 1.1, "timestamp": t0})
    quotes = board.quotes_frame()
    assert quotes["Market time (New York)"].tolist() == ["2026-01-02 10:30:00.000"]


def test_data_loader_inspects_a_dataset_in_new_york_time_like_its_chart(app_env: Path) -> None:
    from massive_feeds.datasets import save_dataset

    save_dataset(_bars("AAPL", "2024-03-04 14:30", 3, "1h"),
                 "ny", settings=load_settings())
    at = _app().run()
    assert at.selectbox(key="dl_inspect").value == "ny"
    captions = [c for c in _texts(at.caption) if "→" in c]
    assert captions and captions[0].startswith("2024-03-04 09:30 → 2024-03-04 11:30 New York time")
    assert not any(" UTC" in c for c in captions)
    rows = next(d.value for d in at.dataframe if "timestamp" in d.value.columns and len(d.value) == 3)
    assert str(rows["timestamp"].dt.tz) == "America/New_York"
    assert rows["timestamp"].iloc[0] == pd.Timestamp("2024-03-04 09:30", tz="America/New_York")


# --- page rules -----------------------------------------------------------------------------------
def test_strategy_readiness_says_how_long_to_record() -> None:
    rows = L.strategy_readiness({"sma_cross": 31, "spread_capture": 2}, "1min", None, speed=60)
    assert rows[0] == {"Strategy": "sma_cross", "Bars needed": "31", "Market time": "31 min",
                       "Wall time at 60×": "31 s"}
    live = L.strategy_readiness({"sma_cross": 31, "spread_capture": 2}, "1s", bars_so_far=4)
    assert live[0]["Status"] == "⏳ 27 more bars (~27 s)" and live[1]["Status"] == "✅ enough bars"
    assert L.strategy_readiness({"x": 31}, "1s", bars_so_far=31)[0]["Status"] == "✅ enough bars"
    assert L.format_duration(3900) == "1 h 05 min"


def test_symbol_list_message_is_one_and_says_any_symbol_can_be_typed() -> None:
    assert L.symbol_list_message("live", None) is None
    quota = QuotaExceededError("used up", resource="rest_daily", resets_at=None)
    msg = L.symbol_list_message("cache", quota, "2026-01-02 10:00 UTC")
    assert msg.kind == "info" and msg.title == "Symbols from cache"
    assert "daily REST quota is used up" in msg.detail and "cached at 2026-01-02 10:00 UTC" in msg.detail
    assert "Streaming does not use REST: type any symbol" in msg.detail and not msg.hint
    fallback = L.symbol_list_message("fallback", MissingCredentialsError("No API key found"))
    assert "no API key is configured" in fallback.detail and "built-in list" in fallback.detail


def test_labels_name_the_profile_and_massives_documented_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_PLAN", "custom")
    monkeypatch.setenv("MASSIVE_PLAN_REST_PER_DAY", "40")
    plan = load_settings().plan
    assert L.source_label(plan) == "Massive.com · profile custom: 40 REST calls/day, 10 per minute"
    caption = L.profile_caption(plan)
    assert "custom limits from your MASSIVE_PLAN_* settings" in caption and "5 REST requests/minute" in caption
    tips = free_tier_info()
    assert tips.startswith("=== Limits of profile 'custom' (custom limits") and "REST API: 40 requests/day" in tips
    assert "=== Massive's documented limits ===" in tips and "Free Tier" not in tips
    monkeypatch.delenv("MASSIVE_PLAN")
    monkeypatch.delenv("MASSIVE_PLAN_REST_PER_DAY")
    assert "not Massive's numbers" in free_tier_info()


# --- pages through AppTest ------------------------------------------------------------------------
@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "datasets"))
    yield tmp_path
    st.cache_resource.clear()


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=60)


def _texts(elements: object) -> list[str]:
    return [str(e.value) for e in elements]  # type: ignore[attr-defined]


def _spend_rest_calls(home: Path, n: int) -> None:
    settings = load_settings()
    qm = QuotaManager(settings.plan, home / "state" / "quota.sqlite3")
    ts = max(time.time() - 61, _midnight_utc(time.time()) + 0.5)
    qm._connect().executemany("INSERT INTO rest_calls(ts) VALUES (?)", [(ts,)] * n)


def test_custom_plan_is_shown_with_its_real_name_and_limits(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "test-key-not-shown")
    monkeypatch.setenv("MASSIVE_REST_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MASSIVE_PLAN", "custom")
    monkeypatch.setenv("MASSIVE_PLAN_REST_PER_DAY", "40")
    at = _app().run()
    assert at.selectbox(key="dl_source").options == ["Massive.com · profile custom: 40 REST calls/day, 10 per minute"]
    page = " ".join(_texts(at.markdown) + _texts(at.caption))
    assert "40 of 40 REST calls left today" in page and "profile `custom`" in page
    assert "100 calls/day" not in page and "FREE" not in page and "Free tier" not in page
    assert "Massive documents 5 REST requests/minute" in page


def test_live_trading_with_the_daily_quota_spent_offers_the_cached_list(app_env: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        sandbox) -> None:
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    _spend_rest_calls(app_env / "home" / "sandbox", 100)  # sandbox settings keep their own quota state
    at = _app().run()
    at.switch_page("views/live_trading.py").run()
    assert not at.exception and not at.error  # no quota error at all: streaming does not need REST
    infos = [i for i in _texts(at.info) if "Symbols from" in i]
    assert len(infos) == 1 and "daily REST quota is used up" in infos[0] and "built-in list" in infos[0]
    assert at.multiselect(key="lt_symbols").value == ["AAPL", "X:BTCUSD"] and not at.button(key="lt_start").disabled
    assert len(at.caption) == len(set(_texts(at.caption)))

    # a list fetched earlier is kept on disk and offered instead of the built-in one
    st.cache_resource.clear()
    from massive_feeds.ui.backend import resolve_backend

    cache = resolve_backend().recordings_dir.parent / "ui_symbols.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"symbols": ["KO", "PEP", "X:BTCUSD"], "fetched_at": "2026-01-02 10:00 UTC"}))
    try:
        at = _app().run()
        at.switch_page("views/live_trading.py").run()
        infos = [i for i in _texts(at.info) if "Symbols from" in i]
        assert len(infos) == 1 and "Symbols from cache" in infos[0] and "2026-01-02 10:00 UTC" in infos[0]
        assert at.multiselect(key="lt_symbols").options == ["KO", "PEP", "X:BTCUSD"]
    finally:
        cache.unlink()


@pytest.mark.slow
def test_saved_datasets_can_be_downloaded_inspected_and_deleted(app_env: Path) -> None:
    at = _app().run()
    at.button(key="dl_fetch").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    rows = int(next(m.value for m in at.metric if m.label == "Rows").replace(",", ""))
    result_caption = next(c for c in _texts(at.caption) if "preview: first" in c)
    assert "New York time · prices" in result_caption and "UTC" not in result_caption  # the chart's zone
    csv = at.download_button(key="dl_download_csv")
    assert csv.proto.label == "⬇️ CSV"
    at.text_input(key="dl_name").set_value("to_delete").run()
    at.button(key="dl_save").click().run()
    assert at.selectbox(key="dl_inspect").value == "to_delete"
    inspected = {m.label: m.value for m in at.metric}
    assert inspected["Rows"] == f"{rows:,}" and inspected["Source"] in ("rest", "flat_file")
    assert at.download_button(key="dl_inspect_download_parquet").proto.label == "⬇️ Parquet"
    at.button(key="dl_delete").click().run()
    assert not at.exception
    assert "Deleted dataset **to_delete** (to_delete.parquet)." in _texts(at.success)
    assert not (app_env / "datasets" / "to_delete.parquet").exists()
    assert any("None yet" in c for c in _texts(at.caption))


def test_downloads_are_the_same_bars(tmp_path: Path) -> None:
    bars = _bars("AAPL", "2024-03-04 14:30", 5, "1h")
    buf = io.BytesIO()
    bars.to_parquet(buf, index=False)
    back = pd.read_parquet(io.BytesIO(buf.getvalue()))
    pd.testing.assert_frame_equal(back, bars, check_dtype=False)


def test_the_data_loaders_parquet_download_of_a_continuous_future_keeps_its_rolls(
        app_env: Path, monkeypatch: pytest.MonkeyPatch, sandbox) -> None:
    """pandas writes ``df.attrs`` into the Parquet file: ES.c.0's roll table there once made the download fail."""
    from datetime import date

    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    from massive_feeds import fetch_data, roll_table

    stores: list[MemoryMediaFileStorage] = []

    class Kept(MemoryMediaFileStorage):  # AppTest's media store, kept to read the download's bytes back
        def __init__(self, endpoint: str) -> None:
            super().__init__(endpoint)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Kept)
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    at = _app().run()
    at.text_input(key="dl_symbols").set_value("ES.c.0")
    at.date_input(key="dl_start").set_value(date(2026, 9, 14))
    at.date_input(key="dl_end").set_value(date(2026, 9, 25))
    at.selectbox(key="dl_interval").set_value("1d")
    at.button(key="dl_fetch").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    url = at.download_button(key="dl_download_parquet").proto.url
    data = stores[-1].get_file(url.rsplit("/", 1)[1]).content
    back = pd.read_parquet(io.BytesIO(data))
    direct = fetch_data("ES.c.0", "2026-09-14", "2026-09-25", "1d", settings=load_settings())
    assert back["close"].tolist() == direct["close"].tolist() and len(back) == 10
    assert back.attrs["rolls"] == direct.attrs["rolls"]
    assert roll_table(back)[["date", "from", "to"]].values.tolist() == [[pd.Timestamp("2026-09-21"), "ESU6", "ESZ6"]]
