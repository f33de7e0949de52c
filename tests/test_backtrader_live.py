"""Live and replayed sessions: the bar builder, the state machine over an in-process event source,
REST backfill of the start and of reconnect gaps, and replaying a recorded sandbox session."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Iterator

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_data, fetch_ohlcv_rest
from massive_feeds.backtrader import MassiveData, MassiveQuoteData
from massive_feeds.backtrader.live import BarBuilder
from massive_feeds.config import Settings
from massive_feeds.record import WebSocketDataRecorder, ticks_to_bars
from massive_feeds.sandbox import Sandbox
from massive_feeds.stream.events import GapEvent, StatusEvent, make_event
from strategies import SpreadCapture, run_strategy
from massive_feeds.stream.hub import EventHub
from tests._bt_support import OHLCV, Recorder, ScriptedEvents, run, close_stores  # noqa: F401 - autouse fixture

MIN = 60_000
T0 = 1_709_562_600_000  # 2024-03-04 14:30 UTC


def trade(t: int, price: float, size: float = 10.0, sym: str = "AAPL"):
    return make_event("trade", sym, t, price=price, size=size)


def quote(t: int, bid: float, ask: float, sym: str = "AAPL"):
    return make_event("quote", sym, t, bid=bid, ask=ask, bid_size=1.0, ask_size=1.0)


def status(name: str, message: str = "") -> StatusEvent:
    return StatusEvent("status", "stocks", name, message, time.time_ns())


# --- bar builder ---------------------------------------------------------------------------------
def test_builder_makes_ohlcv_bars_with_the_last_quote_of_each_minute() -> None:
    b = BarBuilder(MIN)
    out = []
    for ev in [trade(T0 + 1_000, 10.0, 100), quote(T0 + 2_000, 9.9, 10.1), trade(T0 + 30_000, 12.0, 50),
               trade(T0 + 59_000, 11.0, 50), quote(T0 + 59_500, 10.9, 11.1), trade(T0 + MIN + 5, 11.5, 10)]:
        out += b.add(ev)
    (bar,) = out
    assert bar[:6] == (T0, 10.0, 12.0, 10.0, 11.0, 200.0)
    assert bar.vwap == pytest.approx((10 * 100 + 12 * 50 + 11 * 50) / 200) and bar.transactions == 3
    assert (bar.bid, bar.ask) == (10.9, 11.1)
    assert b.add(trade(T0 + 10_000, 99.0)) == [] and b.late == 1  # a handed-out bar never changes
    assert [x.close for x in b.flush()] == [11.5]


def test_builder_agrees_with_the_recorders_resampler() -> None:
    rng = np.random.default_rng(1)
    times = np.sort(rng.integers(T0, T0 + 30 * MIN, 400))
    events = [trade(int(t), float(np.round(100 + rng.normal(), 2)), float(rng.integers(1, 500))) for t in times]
    b = BarBuilder(5 * MIN)
    built = [bar for ev in events for bar in b.add(ev)] + b.flush()
    expected = ticks_to_bars(pd.DataFrame([e._asdict() for e in events]), "5min")
    assert [bar.time_ms for bar in built] == (expected["timestamp"].astype("int64") // 10**6).tolist()
    got = np.array([[bar.open, bar.high, bar.low, bar.close, bar.volume, bar.transactions] for bar in built])
    np.testing.assert_allclose(got, expected[["open", "high", "low", "close", "volume", "transactions"]].to_numpy())


def test_quote_only_minutes_make_mid_bars_only_when_asked() -> None:
    events = [quote(T0 + 1_000, 1.0800, 1.0802, "C:EURUSD"), quote(T0 + 30_000, 1.0804, 1.0806, "C:EURUSD")]
    trades_only = BarBuilder(MIN)
    assert [bar for ev in events for bar in trades_only.add(ev)] + trades_only.flush() == []
    forex = BarBuilder(MIN, quote_only_bars=True)
    (bar,) = [b for ev in events for b in forex.add(ev)] + forex.flush()
    assert bar[1:5] == pytest.approx((1.0801, 1.0805, 1.0801, 1.0805)) and bar.volume == 0


def test_minute_aggregates_close_a_five_minute_bar_without_waiting() -> None:
    b = BarBuilder(5 * MIN, mode="aggregates")
    aggs = [make_event("agg_minute", "AAPL", T0 + i * MIN, end_ms=T0 + (i + 1) * MIN, open=10.0 + i, high=11.0 + i,
                       low=9.0 + i, close=10.5 + i, volume=100.0, vwap=10.2 + i) for i in range(5)]
    out = [bar for ev in aggs for bar in b.add(ev)]
    assert len(out) == 1 and out[0][:6] == (T0, 10.0, 15.0, 9.0, 14.5, 500.0)
    assert out[0].vwap == pytest.approx(12.2)


# --- the state machine in cerebro ------------------------------------------------------------------
@pytest.fixture
def now_minute(sandbox: Sandbox) -> int:
    """A minute in the sandbox's past, so REST has every bar before it."""
    now = sandbox.clock.now_ms()
    return now - now % MIN - 30 * MIN


def live_feed(settings: Settings, events, minute: int, **kwargs) -> MassiveData:
    return MassiveData(dataname="AAPL", historical=False, events=events, interval="1m", settings=settings,
                       fromdate=pd.Timestamp(minute - 10 * MIN, unit="ms", tz="UTC").to_pydatetime(),
                       clock=lambda: minute + 5_000, qcheck=0.05, **kwargs)


def rest_minutes(settings: Settings, start: int, end: int) -> pd.DataFrame:
    df = fetch_ohlcv_rest("AAPL", pd.Timestamp(start, unit="ms", tz="UTC").to_pydatetime(),
                          pd.Timestamp(end - 1, unit="ms", tz="UTC").to_pydatetime(), "1m", settings=settings)
    return df.set_index("timestamp")[OHLCV]


def test_live_feed_backfills_over_rest_then_goes_live(settings: Settings, now_minute: int) -> None:
    m = now_minute
    script = [[trade(m + 1_000, 100.0), trade(m + 2_000, 101.0)], [trade(m + MIN + 1_000, 102.0)],
              status("stopped", "closed by user")]
    strat = run(live_feed(settings, ScriptedEvents(script), m))
    got = strat.frame().set_index("timestamp")
    assert strat.notices == ["CONNECTED", "DELAYED", "LIVE", "DISCONNECTED"]
    backfilled = got[got["status"] == bt.feed.DataBase.DELAYED]
    # The minute the stream started in (m) missed its ticks before the subscribe: it comes from REST
    # too, once a later event shows it is over, never from the two trades seen here.
    pd.testing.assert_frame_equal(backfilled[OHLCV], rest_minutes(settings, m - 10 * MIN, m + MIN),
                                  check_names=False, check_index_type=False)
    live = got[got["status"] == bt.feed.DataBase.LIVE]
    assert live["close"].tolist() == [102.0]  # the last bar is flushed when the stream stops
    assert live.index[0] == pd.Timestamp(m + MIN, unit="ms", tz="UTC")


def test_reconnect_gap_is_backfilled_and_bars_never_repeat_or_go_back(settings: Settings, now_minute: int) -> None:
    m = now_minute
    script = [
        # minute m (the start minute) comes from REST, m+1 is live, m+2 is half built at the drop
        [trade(m + 1_000, 100.0)], [trade(m + MIN + 1_000, 101.0)], [trade(m + 2 * MIN + 1_000, 102.0)],
        status("disconnected", "connection closed (1006)"), status("reconnected"),
        GapEvent("gap", "stocks", ("AAPL",), m + 2 * MIN + 1_000, m + 5 * MIN + 10, 0, 0, "test", 1),
        [trade(m + 5 * MIN + 10, 105.0), trade(m + 3 * MIN, 999.0)],  # a straggler from the outage is ignored
        [trade(m + 6 * MIN + 10, 106.0)], status("stopped"),
    ]
    strat = run(live_feed(settings, ScriptedEvents(script), m))
    assert strat.notices == ["CONNECTED", "DELAYED", "LIVE", "CONNBROKEN", "CONNECTED", "DELAYED", "LIVE",
                             "DISCONNECTED"]
    got = strat.frame().set_index("timestamp")
    assert got.index.is_monotonic_increasing and got.index.is_unique
    assert got.loc[pd.Timestamp(m + MIN, unit="ms", tz="UTC"), "close"] == 101.0  # the one live bar before
    # m+2..m+4 (the outage) and m+5 (the minute it resumed in: its trades before the reconnect never
    # arrived, so the 105.0 print alone would be a wrong bar) are REST's bars.
    repaired = got.loc[pd.Timestamp(m + 2 * MIN, unit="ms", tz="UTC"):pd.Timestamp(m + 5 * MIN, unit="ms", tz="UTC")]
    pd.testing.assert_frame_equal(repaired[OHLCV], rest_minutes(settings, m + 2 * MIN, m + 6 * MIN),
                                  check_names=False, check_index_type=False)
    assert got["close"].iloc[-1] == 106.0 and not {102.0, 105.0, 999.0} & set(got["close"])


def test_feed_waits_for_slow_events_instead_of_ending(settings: Settings, now_minute: int) -> None:
    m = now_minute
    events = ScriptedEvents([])
    data = live_feed(settings, events, m, backfill=False)

    def later() -> None:
        time.sleep(0.4)  # cerebro loops on _load() returning None meanwhile
        events.publish([trade(m + 1_000, 100.0), trade(m + MIN, 101.0)])
        events.publish_control(status("stopped"))

    threading.Thread(target=later, daemon=True).start()
    strat = run(data)
    assert data.islive() and strat.notices == ["CONNECTED", "LIVE", "DISCONNECTED"]
    assert strat.frame()["close"].tolist() == [100.0, 101.0]


class StopAfterBackfill(Recorder):
    """Records, and ends the session (a ``stopped`` status into ``hub``) once the backfill has arrived."""

    hub: EventHub

    def next(self) -> None:
        super().next()
        if len(self.rows) == 1:
            self.hub.publish_control(status("stopped", "closed by the test"))


def _silent_feed(settings: Settings, hub: EventHub, **kwargs) -> MassiveData:
    """A live feed on the stream clock (no ``clock=``), 10 bars of backfill, over an event source."""
    return MassiveData(dataname="AAPL", historical=False, events=hub, interval="1m", settings=settings,
                       backfill_bars=10, qcheck=0.05, **kwargs)


def _watchdog(hub: EventHub, seconds: float = 60.0) -> threading.Timer:
    """Ends a session that would otherwise wait forever (the bug under test), so the test fails on its
    assertions instead of hanging; cancelled as soon as the run returns."""
    timer = threading.Timer(seconds, hub.publish_control, [status("stopped", "watchdog")])
    timer.daemon = True
    timer.start()
    return timer


def test_silent_stream_backfills_up_to_the_services_time(settings: Settings, sandbox: Sandbox) -> None:
    # A closed market or an idle symbol: no event ever comes. After start_wait the feed asks the service
    # for its time (/v1/marketstatus/now, at the sandbox clock) and backfills up to it, instead of
    # waiting with an empty chart for a first trade that may be hours away.
    hub = EventHub()
    StopAfterBackfill.hub = hub
    asked = sandbox.rest.count("/v1/marketstatus/now")
    before = sandbox.clock.now_ms()
    timer = _watchdog(hub)
    try:
        strat = run(_silent_feed(settings, hub, start_wait=0.2), strategy=StopAfterBackfill)
    finally:
        timer.cancel()
    after = sandbox.clock.now_ms()
    assert strat.notices == ["CONNECTED", "DELAYED", "DISCONNECTED"]
    assert sandbox.rest.count("/v1/marketstatus/now") == asked + 1
    got = strat.frame().set_index("timestamp")
    assert (got["status"] == bt.feed.DataBase.DELAYED).all() and len(got) == 10
    # the backfill ends where the minute of the service's time starts (that minute is held: it was joined
    # mid-way), so its last bar is the minute before "now" as the sandbox clock read around the run
    end = int(got.index[-1].value // 1_000_000) + MIN
    assert before - before % MIN <= end <= after - after % MIN
    first = int(got.index[0].value // 1_000_000)
    pd.testing.assert_frame_equal(got[OHLCV], rest_minutes(settings, first, end), check_names=False,
                                  check_index_type=False)


def test_first_event_before_start_wait_places_the_start_and_the_service_is_not_asked(
        settings: Settings, sandbox: Sandbox, now_minute: int) -> None:
    m = now_minute
    asked = sandbox.rest.count("/v1/marketstatus/now")
    script = [[trade(m + 1_000, 100.0)], [trade(m + MIN + 1_000, 102.0)], status("stopped", "closed by user")]
    strat = run(_silent_feed(settings, ScriptedEvents(script), start_wait=30.0))
    assert sandbox.rest.count("/v1/marketstatus/now") == asked
    got = strat.frame().set_index("timestamp")
    assert strat.notices == ["CONNECTED", "DELAYED", "LIVE", "DISCONNECTED"]
    # 10 bars before the first event's minute m, then m itself from REST (held), then m+1 live
    backfilled = got[got["status"] == bt.feed.DataBase.DELAYED]
    pd.testing.assert_frame_equal(backfilled[OHLCV], rest_minutes(settings, m - 10 * MIN, m + MIN),
                                  check_names=False, check_index_type=False)
    assert got["close"].iloc[-1] == 102.0


def test_silent_stream_with_the_services_clock_failing_waits_for_the_first_event(
        settings: Settings, sandbox: Sandbox, now_minute: int, caplog: pytest.LogCaptureFixture) -> None:
    m = now_minute
    hub = EventHub()
    sandbox.faults.queue(403)  # /v1/marketstatus/now refused (a plan without it): a MassiveError, no retry
    asked = sandbox.rest.count("/v1/marketstatus/now")
    data = _silent_feed(settings, hub, start_wait=0.2)
    gave_up = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "clock is unavailable" in record.getMessage():
                gave_up.set()

    signal = Signal()
    logging.getLogger("massive_feeds.backtrader.live").addHandler(signal)

    def events_after_the_failure() -> None:
        if gave_up.wait(60):
            hub.publish([trade(m + 1_000, 100.0)])
            hub.publish([trade(m + MIN + 1_000, 102.0)])
        hub.publish_control(status("stopped", "closed by the test"))

    threading.Thread(target=events_after_the_failure, daemon=True).start()
    try:
        strat = run(data)
    finally:
        logging.getLogger("massive_feeds.backtrader.live").removeHandler(signal)
    assert gave_up.is_set()
    assert sandbox.rest.count("/v1/marketstatus/now") == asked + 1  # asked once, never again
    assert strat.notices == ["CONNECTED", "DELAYED", "LIVE", "DISCONNECTED"]
    backfilled = strat.frame().set_index("timestamp")
    backfilled = backfilled[backfilled["status"] == bt.feed.DataBase.DELAYED]
    pd.testing.assert_frame_equal(backfilled[OHLCV], rest_minutes(settings, m - 10 * MIN, m + MIN),
                                  check_names=False, check_index_type=False)


def test_rejected_subscription_is_notsubscribed_and_ends_the_feed(settings: Settings, now_minute: int) -> None:
    script = [status("error", "subscription rejected for T.AAPL: not entitled")]
    strat = run(live_feed(settings, ScriptedEvents(script), now_minute, backfill=False))
    assert strat.notices == ["CONNECTED", "NOTSUBSCRIBED"] and strat.rows == []


# --- replaying a recorded sandbox session --------------------------------------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path, list[pd.Timestamp]]]:
    """Four seconds of the sandbox stream at 240x (about 16 market minutes), with its REST twin."""
    folder = tmp_path_factory.mktemp("recorded")
    with Sandbox(websocket=True, clock_speed=240) as sb:
        settings = sb.settings(home=folder / "home", datasets_dir=folder / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], folder / "rec", settings=settings).start()
        time.sleep(4)
        rec.stop()
        times = rec.get_dataframe("1min")["timestamp"]
        inner = [times.iloc[1], times.iloc[-2]]  # first and last minutes were recorded in part only
        yield settings, rec.path, inner


def test_replay_bars_equal_the_historical_bars_of_the_same_session(recorded) -> None:
    settings, path, (first, last) = recorded
    window = {"fromdate": first.to_pydatetime(), "todate": last.to_pydatetime()}
    replayed = run(MassiveQuoteData(recording=path, settings=settings, **window))
    history = run(MassiveData(dataname="AAPL", interval="1m", settings=settings, **window))
    assert replayed.notices[:2] == ["CONNECTED", "LIVE"] and len(replayed.rows) >= 8
    assert replayed.frame()["bid"].notna().all()  # the last quote of each recorded minute
    pd.testing.assert_frame_equal(replayed.frame()[["timestamp", *OHLCV]], history.frame()[["timestamp", *OHLCV]])


def test_strategy_trades_identically_on_replay_and_history(recorded) -> None:
    settings, path, (first, last) = recorded
    window = {"fromdate": first.to_pydatetime(), "todate": last.to_pydatetime()}
    # plain OHLC feeds on both sides: the quote lines only a recording has would change the signals
    replay = run_strategy(SpreadCapture, MassiveData(recording=path, settings=settings, **window), cash=10_000)
    history = run_strategy(SpreadCapture, MassiveData(dataname="AAPL", interval="1m", settings=settings, **window),
                           cash=10_000)
    assert replay.trade_count > 0
    pd.testing.assert_frame_equal(replay.trades, history.trades)
    pd.testing.assert_series_equal(replay.equity, history.equity)


def test_replay_speed_paces_the_session(recorded) -> None:
    settings, path, _ = recorded
    start = time.monotonic()
    replayed = run(MassiveData(recording=path, settings=settings, replay_speed=600.0))
    # ~16 recorded market minutes at 600x real time take ~1.6 s; as fast as possible takes milliseconds
    assert time.monotonic() - start > 1.0 and len(replayed.rows) >= 10


# --- live against the sandbox WebSocket, through the store's connector ------------------------------
class DropOnce(bt.Strategy):
    """After 3 live bars, drop the sandbox connection; stop after 3 live bars past the reconnect."""

    params = (("sandbox", None),)

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.times: list[pd.Timestamp] = []
        self.live_bars = [0, 0]  # before / after the drop

    def notify_data(self, data, status, *args, **kwargs) -> None:
        self.notices.append(data._getstatusname(status))

    def next(self) -> None:
        self.times.append(pd.Timestamp(bt.num2date(self.data.datetime[0]), tz="UTC"))
        if self.data._laststatus != self.data.LIVE:
            return
        dropped = "CONNBROKEN" in self.notices
        self.live_bars[dropped] += 1
        if not dropped and self.live_bars[0] == 3:
            self.p.sandbox.ws.drop("stocks")
        if self.live_bars[1] >= 3:
            self.env.runstop()


def test_live_session_on_the_sandbox_websocket_survives_a_drop(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=120) as sb:  # two market minutes per second
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        data = MassiveData(dataname="AAPL", historical=False, interval="1m", settings=settings,
                           clock=sb.clock.now_ms, backfill_bars=5, qcheck=0.1)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(data)
        cerebro.addstrategy(DropOnce, sandbox=sb)
        try:
            strat = cerebro.run()[0]
        finally:
            data.store.connector.close()
    assert strat.notices == ["CONNECTED", "DELAYED", "LIVE", "CONNBROKEN", "CONNECTED", "DELAYED", "LIVE"]
    times = pd.DatetimeIndex(strat.times)
    assert times.is_monotonic_increasing and times.is_unique
    assert (times[1:] - times[:-1] == pd.Timedelta(minutes=1)).all()  # regular session: the outage backfilled


class MixedFeeds(bt.Strategy):
    """Counts the historical feed's bars and the live feed's LIVE bars; stops after 3 live ones."""

    def __init__(self) -> None:
        self.history: list[pd.Timestamp] = []
        self.live_bars = 0

    def prenext(self) -> None:  # before every feed has a bar (the daily bars come before the live minutes)
        self.next()

    def next(self) -> None:
        hist, live = self.datas
        if len(hist) and (not self.history or self.history[-1] != hist.datetime[0]):
            self.history.append(hist.datetime[0])
        if live._laststatus == live.LIVE:
            self.live_bars += 1
            if self.live_bars >= 3:
                self.env.runstop()


def test_a_historical_and_a_live_feed_in_one_cerebro_with_two_live_feeds_after(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=120) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        now = pd.Timestamp(sb.clock.now_ms(), unit="ms", tz="UTC")
        day = (now.tz_convert("America/New_York") - pd.Timedelta(days=7)).date()
        hist = MassiveData(dataname="MSFT", interval="1d", settings=settings, fromdate=day,
                           todate=now.tz_convert("America/New_York").date())
        live = MassiveData(dataname="AAPL", historical=False, interval="1m", settings=settings,
                           clock=sb.clock.now_ms, backfill_bars=2, qcheck=0.1)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(hist)
        cerebro.adddata(live)
        cerebro.addstrategy(MixedFeeds)
        try:
            strat = cerebro.run()[0]  # before: AttributeError ... 'addindicator' (two feeds on one store)
            second = bt.Cerebro(stdstats=False)  # a second live run in the same process, two live feeds
            for symbol in ("AAPL", "MSFT"):
                second.adddata(MassiveData(dataname=symbol, historical=False, interval="1m", settings=settings,
                                           clock=sb.clock.now_ms, backfill_bars=2, qcheck=0.1))
            second.addstrategy(MixedFeeds)
            again = second.run()[0]
        finally:
            live.store.connector.close()
    expected = fetch_data("MSFT", day, now.tz_convert("America/New_York").date(), "1d", settings=settings)
    assert strat.live_bars == 3 and again.live_bars == 3
    got = [pd.Timestamp(bt.num2date(t), tz="UTC") for t in strat.history]
    assert got == expected["timestamp"].tolist()  # every daily bar of the historical feed, in order
