"""Recording live sessions: durability (kill -9, torn tails, full disk), ticks → bars, datasets, replay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds import list_datasets, load_dataset
from massive_feeds.config import Settings
from massive_feeds.errors import DatasetError, InvalidInputError, RecordingError
from massive_feeds.record import RecordingReader, RecordingSource, WebSocketDataRecorder, ticks_to_bars
from massive_feeds.record.log import HEADER, SegmentWriter, encode, segments
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.ws import Firehose
from massive_feeds.sandbox.ws_feed import firehose_frames
from massive_feeds.stream.events import make_event

from ._stream_support import wait_until

MINUTE = 60_000


@pytest.fixture(scope="module")
def live_sandbox() -> Iterator[Sandbox]:
    """REST + WebSocket sandbox whose clock runs 60x real time (a market minute per second)."""
    with Sandbox(websocket=True, clock_speed=60) as sb:
        yield sb


@pytest.fixture
def live_settings(live_sandbox: Sandbox, tmp_path: Path) -> Settings:
    return live_sandbox.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


def trade(sym: str, t: int, price: float, size: float):
    return make_event("trade", sym, t, price=price, size=size)


def quote(sym: str, t: int, bid: float, ask: float):
    return make_event("quote", sym, t, bid=bid, ask=ask, bid_size=1.0, ask_size=2.0)


def events_frame(events) -> pd.DataFrame:
    return pd.DataFrame([e._asdict() for e in events])


# --- ticks to bars -----------------------------------------------------------------------------
def test_trades_make_ohlcv_and_quotes_add_bid_ask() -> None:
    t0 = 1_709_650_800_000  # a minute boundary
    ev = [trade("AAPL", t0 + 1_000, 10.0, 100), quote("AAPL", t0 + 1_500, 9.9, 10.1),
          trade("AAPL", t0 + 20_000, 12.0, 50), trade("AAPL", t0 + 59_999, 11.0, 50),
          trade("AAPL", t0 + MINUTE, 11.5, 10)]
    bars = ticks_to_bars(events_frame(ev), "1min")
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (10.0, 12.0, 10.0, 11.0)
    assert first.volume == 200 and first.transactions == 3
    assert first.vwap == pytest.approx((10 * 100 + 12 * 50 + 11 * 50) / 200)
    assert (first.bid, first.ask, first.mid, first.spread) == (9.9, 10.1, 10.0, pytest.approx(0.2))
    assert bars.iloc[1].timestamp == pd.Timestamp(t0 + MINUTE, unit="ms", tz="UTC")
    assert not bars["quote_only"].any()


def test_minutes_with_only_quotes_get_mid_price_bars_marked() -> None:
    t0 = 1_709_650_800_000
    bars = ticks_to_bars(events_frame([quote("MSFT", t0, 99.0, 101.0), quote("MSFT", t0 + 30_000, 101.0, 103.0)]))
    bar = bars.iloc[0]
    assert bar.quote_only and (bar.open, bar.high, bar.low, bar.close) == (100.0, 102.0, 100.0, 102.0)
    assert bar.volume == 0 and bar.transactions == 0 and np.isnan(bar.vwap)


@pytest.mark.parametrize("interval, expected", [("1s", 4), ("1min", 2), ("5min", 1)])
def test_resample_interval_sets_the_bucket_width(interval: str, expected: int) -> None:
    t0 = 1_709_650_800_000
    ev = [trade("A", t0, 1, 1), trade("A", t0 + 1_000, 1, 1), trade("A", t0 + 2_000, 1, 1), trade("A", t0 + MINUTE, 1, 1)]
    assert len(ticks_to_bars(events_frame(ev), interval)) == expected


def test_bad_resample_interval_is_rejected() -> None:
    with pytest.raises(InvalidInputError):
        ticks_to_bars(events_frame([trade("A", 0, 1, 1)]), "1 fortnight")


# --- the log -----------------------------------------------------------------------------------
def write_log(folder: Path, batches: int) -> None:
    writer = SegmentWriter(folder)
    for i in range(batches):
        writer.append([encode(b"D", [tuple(trade("A", i, 1.0, 1.0))])])
    writer.close()


def test_torn_tail_is_truncated_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_log(tmp_path, 5)
    seg = segments(tmp_path)[-1]
    with open(seg, "ab") as fh:  # a record cut short mid-write, as kill -9 would leave it
        fh.write(HEADER.pack(500, 0, 5) + b"D[[")
    assert RecordingReader(tmp_path).count() == 5  # readers skip it without touching the file
    SegmentWriter(tmp_path).close()  # a writer reopening the log repairs it
    assert "torn tail" in caplog.text
    write_log(tmp_path, 1)
    assert RecordingReader(tmp_path).count() == 6


def test_corrupt_record_stops_reading_at_the_last_good_one(tmp_path: Path) -> None:
    write_log(tmp_path, 3)
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # flip bits in the last record's payload: its CRC no longer matches
    seg.write_bytes(bytes(data))
    assert RecordingReader(tmp_path).count() == 2


def test_segments_rotate_and_read_back_in_order(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, segment_bytes=200)
    for i in range(20):
        writer.append([encode(b"D", [tuple(trade("A", i, float(i), 1.0))])])
    writer.close()
    assert len(segments(tmp_path)) > 3
    assert list(RecordingReader(tmp_path).events()["time_ms"]) == list(range(20))


# --- recording from the sandbox stream -----------------------------------------------------------
def record(sandbox: Sandbox, settings: Settings, tmp_path: Path, minutes: float,
           symbols=("AAPL", "MSFT")) -> WebSocketDataRecorder:
    """Record ``symbols`` for ``minutes`` of the sandbox's market clock, counted from the first event on
    disk (however long connecting took)."""
    rec = WebSocketDataRecorder(list(symbols), tmp_path / "rec", settings=settings)
    rec.start()
    wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
    begun = sandbox.clock.now_ms()
    wait_until(lambda: sandbox.clock.now_ms() - begun >= minutes * MINUTE, timeout=60, what=f"{minutes} market minutes")
    rec.stop()
    return rec


def test_recorded_trades_resample_to_the_sandbox_minute_bars(live_settings: Settings, live_sandbox: Sandbox,
                                                             tmp_path: Path) -> None:
    rec = record(live_sandbox, live_settings, tmp_path, 3.5, symbols=["AAPL"])
    bars = rec.get_dataframe("1min")
    assert rec.stats()["events_durable"] > 0 and len(bars) >= 3
    inner = bars.iloc[1:-1]  # the first and last minutes were only partly recorded
    day = inner["timestamp"].iloc[0].tz_convert("America/New_York").date()
    truth = live_sandbox.market.minute_bars("AAPL", day)
    t = inner["timestamp"].astype("int64").to_numpy() // 10**6
    idx = np.searchsorted(truth.t, t)
    np.testing.assert_array_equal(truth.t[idx], t)
    for ours, theirs in (("open", truth.o), ("high", truth.h), ("low", truth.l), ("close", truth.c),
                         ("volume", truth.v), ("transactions", truth.n)):
        np.testing.assert_array_equal(inner[ours].to_numpy(), theirs[idx], err_msg=ours)
    np.testing.assert_allclose(inner["vwap"].to_numpy(), truth.vw[idx], atol=1e-4)


def test_recording_keeps_provider_and_receive_timestamps(live_settings: Settings, live_sandbox: Sandbox,
                                                         tmp_path: Path) -> None:
    rec = record(live_sandbox, live_settings, tmp_path, 1)
    ev = rec.reader().events()
    assert set(ev["kind"]) == {"trade", "quote"} and set(ev["symbol"]) <= {"AAPL", "MSFT"}
    assert (ev["received_ns"] > 0).all() and (ev["time_ms"] > 0).all()
    quotes = ev[ev["kind"] == "quote"]
    assert (quotes["ask"] >= quotes["bid"]).all()


def test_saved_recording_is_a_tagged_dataset_beside_its_event_log(live_settings: Settings, live_sandbox: Sandbox,
                                                                  tmp_path: Path) -> None:
    rec = record(live_sandbox, live_settings, tmp_path, 1)
    path = rec.save_dataset(tag="morning")
    assert path.name.startswith("massive_live_morning_") and path.with_suffix(".events").is_dir()
    row = list_datasets(settings=live_settings).set_index("name").loc[path.stem]
    assert row["source"] == "live_recording" and row["tags"] == ["morning"]
    bars = load_dataset(path.stem, settings=live_settings)
    assert {"bid", "ask", "mid", "spread", "quote_only"} <= set(bars.columns)
    assert bars.attrs["events"] == rec.stats()["events_durable"]


def test_append_to_dataset_deduplicates(live_settings: Settings, live_sandbox: Sandbox,
                                        tmp_path: Path) -> None:
    rec = record(live_sandbox, live_settings, tmp_path, 1)
    path = rec.save_dataset("session")
    rows = len(load_dataset("session", settings=live_settings))
    rec.append_to_dataset(path)  # the same bars again
    assert len(load_dataset("session", settings=live_settings)) == rows


def test_reconnect_gaps_are_markers_in_the_log_and_the_metadata(live_settings: Settings, live_sandbox: Sandbox,
                                                                tmp_path: Path) -> None:
    rec = WebSocketDataRecorder(["AAPL"], tmp_path / "rec", settings=live_settings)
    rec.start()
    wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
    live_sandbox.ws.force_disconnect("stocks")
    deadline = time.monotonic() + 15
    while rec.stats()["gaps"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    rec.stop()
    gaps = rec.reader().gaps()
    assert len(gaps) == 1 and gaps[0]["end_ms"] >= (gaps[0]["start_ms"] or 0)
    path = rec.save_dataset("with_gap")
    assert len(load_dataset(path.stem, settings=live_settings).attrs["gaps"]) == 1


def test_unwritable_save_dir_is_a_recording_error(live_settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RecordingError):
        WebSocketDataRecorder(["AAPL"], blocker / "sub", settings=live_settings).start()


# --- replay ------------------------------------------------------------------------------------
def test_replay_delivers_the_recorded_events_in_order_then_stops(live_settings: Settings, live_sandbox: Sandbox,
                                                                 tmp_path: Path) -> None:
    rec = record(live_sandbox, live_settings, tmp_path, 1)
    got: list = []
    source = RecordingSource(rec.path)
    source.add_listener(got.append)
    source.start()
    assert source.wait(10)
    data = [e for e in got if e.kind in ("trade", "quote")]
    assert [tuple(e) for e in data] == [tuple(e) for batch in rec.reader().batches() for e in batch
                                        if e.kind in ("trade", "quote")]
    assert got[-1].kind == "status" and got[-1].status == "stopped"
    source.close()


def test_paced_replay_follows_provider_time(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path)
    for i in range(3):
        writer.append([encode(b"D", [tuple(trade("A", 1_000_000 + i * 1_000, 1.0, 1.0))])])
    writer.close()
    source = RecordingSource(tmp_path, speed=4.0)  # 2 s of market time in 0.5 s
    t0 = time.monotonic()
    source.start()
    assert source.wait(5)
    assert 0.45 <= time.monotonic() - t0 < 2.0
    source.close()


# --- crash safety: kill -9 and a full disk, in real child processes ------------------------------
CHILD = textwrap.dedent("""
    import os, sys, time
    from massive_feeds.config import load_settings
    from massive_feeds.record import WebSocketDataRecorder
    settings = load_settings(plan="unlimited")
    rec = WebSocketDataRecorder(sys.argv[2].split(","), sys.argv[1], settings=settings,
                                session="s")
    if len(sys.argv) > 3:  # a "full disk": no file may grow past this many bytes
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    rec.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = rec.stats()
        print(f"durable {s['events_durable']} errors {s['write_errors']}", flush=True)
        if len(sys.argv) > 3 and s["write_errors"] >= 3:
            break
        time.sleep(0.02)
    try:
        rec.stop()
        print("stopped cleanly", flush=True)
    except Exception as exc:
        print(f"stop raised {type(exc).__name__}: {exc}", flush=True)
""")


def stock_tickers(sandbox: Sandbox) -> list[str]:
    return [t for t, info in sandbox.market.universe.items() if info.asset == "stocks"]


def spawn_recorder(sandbox: Sandbox, folder: Path, *extra: str) -> subprocess.Popen:
    """A child process recording every stock of the firehose into ``folder/s``, reporting its stats."""
    env = {**os.environ, **sandbox.env(), "MASSIVE_FEEDS_HOME": str(folder / "home"),
           "MASSIVE_PLAN_WS_MAX_STREAMS": "unlimited"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), ",".join(stock_tickers(sandbox)), *extra],
                            env=env, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def firehose_sandbox() -> Iterator[Sandbox]:
    with Sandbox(websocket=True) as sb:
        sb.ws.set_firehose(Firehose(events=5_000_000, batch=100, channel="Q"))
        yield sb


def test_kill_9_loses_nothing_that_was_flushed(firehose_sandbox: Sandbox, tmp_path: Path) -> None:
    child = spawn_recorder(firehose_sandbox, tmp_path)
    durable = 0
    assert child.stdout is not None
    for line in child.stdout:
        durable = int(line.split()[1])
        if durable >= 200_000:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert durable >= 200_000
    events = RecordingReader(tmp_path / "s").events()  # sequence numbers are checked while reading
    assert len(events) >= durable
    _, pool = firehose_frames(firehose_sandbox.ws.feed, "stocks", "Q", firehose_sandbox.clock.now().date(), 100)
    expected = [(e["sym"], e["t"], e["bp"], e["ap"]) for e in pool]
    got = list(zip(events["symbol"], events["time_ms"], events["bid"], events["ask"]))
    assert all(g == expected[i % len(expected)] for i, g in enumerate(got))  # each exactly once, in order


def test_full_disk_is_reported_and_earlier_data_survives(firehose_sandbox: Sandbox, tmp_path: Path) -> None:
    child = spawn_recorder(firehose_sandbox, tmp_path, "20000000")
    out, _ = child.communicate(timeout=90)
    assert "stop raised RecordingError" in out
    errors = [int(line.split()[3]) for line in out.splitlines() if line.startswith("durable")]
    assert max(errors) >= 1
    durable = max(int(line.split()[1]) for line in out.splitlines() if line.startswith("durable"))
    events = RecordingReader(tmp_path / "s").events()
    assert len(events) >= durable > 0


# --- the connector's recording API (product document) ---------------------------------------------
def test_connector_records_while_streaming_and_saves_a_dataset(live_settings: Settings, tmp_path: Path) -> None:
    from massive_feeds.stream import MassiveConnector

    with MassiveConnector(settings=live_settings, recorder=WebSocketDataRecorder) as connector:
        recorder = connector.enable_recording(symbols=["AAPL"], save_dir=tmp_path / "rec", tag="fomc")
        assert recorder.flush_interval == 0.1  # the recorder's one default (the README's 100 ms), not a copy
        quotes: list = []
        connector.start_stream(["AAPL"], callback=lambda sym, book: quotes.append(sym))
        time.sleep(3)
        path = connector.disable_recording()
        assert path is not None and path.name.startswith("massive_live_fomc_")
        assert quotes  # the callback kept working while recording
        bars = connector.get_recorded_dataframe("1min")
        assert len(bars) >= 1 and set(bars["symbol"]) == {"AAPL"}
        assert connector.disable_recording() is None  # nothing more to stop
        assert "AAPL" in connector.active_symbols  # streaming goes on


def test_enabling_recording_twice_is_refused(live_settings: Settings, tmp_path: Path) -> None:
    from massive_feeds.stream import MassiveConnector

    with MassiveConnector(settings=live_settings, recorder=WebSocketDataRecorder) as connector:
        connector.enable_recording(symbols=["AAPL"], save_dir=tmp_path / "rec")
        with pytest.raises(InvalidInputError, match="already"):
            connector.enable_recording(symbols=["MSFT"], save_dir=tmp_path / "rec")
        connector.disable_recording()


def test_a_second_session_with_the_same_tag_never_replaces_the_first(live_settings: Settings, live_sandbox: Sandbox,
                                                                     tmp_path: Path) -> None:
    first = record(live_sandbox, live_settings, tmp_path / "a", 0.75).save_dataset(tag="open")
    second = record(live_sandbox, live_settings, tmp_path / "b", 0.75).save_dataset(tag="open")
    assert first != second and first.exists() and second.exists()
    assert second.stem == first.stem + "_2"
    with pytest.raises(DatasetError, match="already exists"):
        record(live_sandbox, live_settings, tmp_path / "c", 0.5).save_dataset(first.stem)


def test_a_recording_appends_by_name_to_a_fetched_split_adjusted_dataset(live_settings: Settings,
                                                                          live_sandbox: Sandbox,
                                                                          tmp_path: Path) -> None:
    from massive_feeds import fetch_data, save_dataset

    rec = record(live_sandbox, live_settings, tmp_path, 2, symbols=["AAPL"])
    recorded = rec.get_dataframe("1min")
    day = recorded["timestamp"].min().tz_convert("America/New_York").normalize()
    start = (day - pd.Timedelta(days=7)).date()
    end = (day - pd.Timedelta(days=1)).date()
    fetched = fetch_data("AAPL", start, end, "1m", settings=live_settings)
    assert fetched.attrs["adjusted"] is True  # a fetch's default: split-adjusted prices
    save_dataset(fetched, "aapl_1m", settings=live_settings)
    path = rec.append_to_dataset("aapl_1m")  # a name, as the product document's workflow gives it
    out = load_dataset("aapl_1m", settings=live_settings)
    assert path == live_settings.datasets_dir / "aapl_1m.parquet"
    assert len(out) == len(fetched) + len(recorded)
    assert out.attrs["adjusted"] is True and out.attrs["interval"] == "1m"
    tail = out[out["timestamp"] >= recorded["timestamp"].min()].reset_index(drop=True)
    pd.testing.assert_series_equal(tail["close"], recorded["close"].reset_index(drop=True), check_names=False)


def test_a_recording_appends_to_a_fetched_total_return_dataset(live_settings: Settings, live_sandbox: Sandbox,
                                                                tmp_path: Path) -> None:
    from massive_feeds import fetch_data, save_dataset

    rec = record(live_sandbox, live_settings, tmp_path, 2, symbols=["AAPL"])
    recorded = rec.get_dataframe("1min")
    day = recorded["timestamp"].min().tz_convert("America/New_York").normalize()
    fetched = fetch_data("AAPL", (day - pd.Timedelta(days=7)).date(), (day - pd.Timedelta(days=1)).date(), "1m",
                         adjusted="total", settings=live_settings)
    save_dataset(fetched, "aapl_total", settings=live_settings)
    rec.append_to_dataset("aapl_total")  # was refused: total-return prices and raw bars would mix
    out = load_dataset("aapl_total", settings=live_settings)
    assert len(out) == len(fetched) + len(recorded)
    assert out.attrs["adjustment"] == "total" and out.attrs["interval"] == "1m"
    # recorded today, after every ex-date the dataset counts: its prices are the same raw and total
    tail = out[out["timestamp"] >= recorded["timestamp"].min()].reset_index(drop=True)
    pd.testing.assert_series_equal(tail["close"], recorded["close"].reset_index(drop=True), check_names=False)


def test_a_missing_dataset_name_to_append_to_is_a_dataset_error(live_settings: Settings, live_sandbox: Sandbox,
                                                                tmp_path: Path) -> None:
    rec = record(live_sandbox, live_settings, tmp_path, 0.5, symbols=["AAPL"])
    with pytest.raises(DatasetError, match=r"^dataset 'nope' not found in "):
        rec.append_to_dataset("nope")


def test_disable_recording_with_nothing_recorded_saves_no_dataset(live_settings: Settings, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from massive_feeds.stream import MassiveConnector

    with MassiveConnector(settings=live_settings, recorder=WebSocketDataRecorder) as connector:
        connector.enable_recording(symbols=["ZZZZQ"], save_dir=tmp_path / "rec")  # a ticker nobody trades
        with caplog.at_level("WARNING", logger="massive_feeds"):
            assert connector.disable_recording() is None
    assert "stopped with no quote or trade received: no dataset saved" in caplog.text
    assert list_datasets(settings=live_settings).empty


def test_saving_an_empty_recording_is_no_data(live_settings: Settings, tmp_path: Path) -> None:
    from massive_feeds.errors import NoDataError

    rec = WebSocketDataRecorder(["ZZZZQ"], tmp_path / "rec", settings=live_settings, check_symbols=False).start()
    rec.stop()
    with pytest.raises(NoDataError, match="holds no quote or trade, so no dataset was saved"):
        rec.save_dataset("empty")
    assert list_datasets(settings=live_settings).empty


def test_an_unknown_symbol_is_refused_at_start_without_a_session_folder(live_settings: Settings,
                                                                       live_sandbox: Sandbox, tmp_path: Path) -> None:
    from massive_feeds.errors import UnknownSymbolError

    asked = live_sandbox.rest.count("/v3/reference/tickers")
    with pytest.raises(UnknownSymbolError, match=r"^unknown symbol\(s\) AAPLL: no active ticker of that name") as err:
        WebSocketDataRecorder(["AAPL", "AAPLL"], tmp_path / "rec", settings=live_settings).start()
    assert err.value.symbols == ["AAPLL"]
    assert not (tmp_path / "rec").exists()  # no empty session folder
    assert live_sandbox.rest.count("/v3/reference/tickers") - asked == 2  # one call per ticker
    rec = WebSocketDataRecorder(["AAPL"], tmp_path / "rec", settings=live_settings).start()  # confirmed today
    wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
    rec.stop()
    assert live_sandbox.rest.count("/v3/reference/tickers") - asked == 2  # AAPL was not asked again
