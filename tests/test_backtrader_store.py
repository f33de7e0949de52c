"""``MassiveStore`` as a Backtrader store: ``cerebro.addstore`` + ``store.getdata`` runs, cerebro starts and
stops the store, and ``notify_store`` hears stream connections, reconnects and REST quota warnings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd
import pytest

from massive_feeds import fetch_data
from massive_feeds.backtrader import MassiveData, MassiveStore
from massive_feeds.config import Plan, Settings
from massive_feeds.quota import QuotaStatus
from massive_feeds.sandbox import Sandbox
from massive_feeds.stream.events import GapEvent, StatusEvent
from tests._bt_support import Recorder, close_stores  # noqa: F401 - autouse fixture


class StoreWatcher(Recorder):
    """Recorder that also keeps every ``notify_store`` message and what the store saw while running."""

    def __init__(self) -> None:
        super().__init__()
        self.store_msgs: list[tuple[Any, tuple[Any, ...]]] = []
        self.store_datas: list[Any] = []

    def notify_store(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.store_msgs.append((msg, args))

    def start(self) -> None:
        self.store_datas = list(self.env.stores[0].datas)


def test_addstore_and_getdata_run_and_give_the_fetch_data_bars(settings: Settings) -> None:
    store = MassiveStore(settings)
    assert isinstance(store, bt.Store)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.addstore(store)
    data = store.getdata(dataname="AAPL", interval="1d", fromdate=pd.Timestamp("2024-03-04").date(),
                         todate=pd.Timestamp("2024-03-08").date())
    assert isinstance(data, MassiveData) and data.store is store
    cerebro.adddata(data)
    cerebro.addstrategy(StoreWatcher)
    strat = cerebro.run()[0]  # before: AttributeError: start
    assert cerebro.stores == [store]  # the feed adds its store too: once
    assert strat.store_datas == [data]  # the feed started the store with data=
    assert store.datas == []  # stop() forgot the run's feeds
    expected = fetch_data("AAPL", "2024-03-04", "2024-03-08", "1d", settings=settings)
    got = strat.frame()
    assert len(got) == len(expected) == 5
    assert got["close"].tolist() == expected["close"].tolist()


def test_a_store_per_configuration_not_a_singleton(settings: Settings, tmp_path: Path) -> None:
    other = dataclasses.replace(settings, datasets_dir=tmp_path / "other")
    assert MassiveStore(settings) is not MassiveStore(settings)  # bt.Store's metaclass would make it one
    assert MassiveStore.shared(settings) is MassiveStore.shared(settings)
    assert MassiveStore.shared(settings) is not MassiveStore.shared(other)


def test_quota_warning_reaches_notify_store_when_it_turns_orange(settings: Settings) -> None:
    # 51 calls a day: green at the start (no message), 50 left after the one REST call (orange: 20–50)
    tight = dataclasses.replace(settings, plan=Plan("tight", None, 51, None, None, None))
    store = MassiveStore(tight)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(store.getdata(dataname="AAPL", interval="1d", method="rest",
                                  fromdate=pd.Timestamp("2024-03-04").date(), todate=pd.Timestamp("2024-03-05").date()))
    cerebro.addstrategy(StoreWatcher)
    strat = cerebro.run(runonce=False)[0]  # Backtrader's vectorised runonce loop never calls notify_store
    assert [msg for msg, _ in strat.store_msgs] == ["REST quota orange: 50 calls left today"]
    (status,) = strat.store_msgs[0][1]
    assert isinstance(status, QuotaStatus) and status.rest_remaining_today == 50


def test_quota_already_low_is_announced_when_the_run_starts(settings: Settings) -> None:
    frame = fetch_data("AAPL", "2024-03-04", "2024-03-05", "1d", settings=settings)  # one REST call
    # same state folder, 20 calls a day: 19 left when the run starts, red (< 20), told before any bar
    store = MassiveStore(dataclasses.replace(settings, plan=Plan("low", None, 20, None, None, None)))
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.addstore(store)
    cerebro.adddata(MassiveData(bars=frame, dataname="AAPL"))
    cerebro.addstrategy(StoreWatcher)
    strat = cerebro.run(runonce=False)[0]
    assert [msg for msg, _ in strat.store_msgs] == ["REST quota red: 19 calls left today"]


class DropOnceWatcher(StoreWatcher):
    """After 2 live bars, drop the sandbox connection; stop after 2 live bars past the reconnect."""

    params = (("sandbox", None),)

    def __init__(self) -> None:
        super().__init__()
        self.live_bars = [0, 0]

    def notify_data(self, data: Any, status: int, *args: Any, **kwargs: Any) -> None:
        self.notices.append(data._getstatusname(status))

    def next(self) -> None:
        if self.data._laststatus != self.data.LIVE:
            return
        dropped = "CONNBROKEN" in self.notices
        self.live_bars[dropped] += 1
        if not dropped and self.live_bars[0] == 2:
            self.p.sandbox.ws.drop("stocks")
        if self.live_bars[1] >= 2:
            self.env.runstop()


def test_notify_store_hears_the_connection_and_the_reconnect(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=120) as sb:  # two market minutes per second
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        store = MassiveStore(settings)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.addstore(store)
        cerebro.adddata(store.getdata(dataname="AAPL", historical=False, interval="1m", clock=sb.clock.now_ms,
                                      backfill_bars=3, qcheck=0.1))
        cerebro.addstrategy(DropOnceWatcher, sandbox=sb)
        try:
            strat = cerebro.run()[0]
        finally:
            store.connector.close()
            store.close()
    messages = [msg for msg, _ in strat.store_msgs]
    assert messages[0] == f"stocks stream connected: authenticated at {settings.ws_url.rstrip('/')}/stocks"
    reconnects = [(msg, args) for msg, args in strat.store_msgs if "reconnected after" in msg]
    assert len(reconnects) == 1, messages
    msg, (gap,) = reconnects[0]
    assert isinstance(gap, GapEvent) and gap.market == "stocks" and "AAPL" in gap.symbols
    assert msg.startswith(f"stocks stream reconnected after {gap.attempts} attempt(s) ({gap.reason}); gap ")
    statuses = [args[0].status for _, args in strat.store_msgs if args and isinstance(args[0], StatusEvent)]
    assert statuses[:4] == ["connected", "subscribed", "disconnected", "reconnected"]


def test_a_closed_store_stops_hearing_its_connector(settings: Settings) -> None:
    store = MassiveStore(settings)
    connector = store.connector
    assert store._on_stream_control in connector._control_listeners
    store.close()
    assert store._on_stream_control not in connector._control_listeners
    connector.close()


@pytest.mark.parametrize("event, expected", [
    (StatusEvent("status", "crypto", "disconnected", "connection closed (1006)", 0),
     "crypto stream disconnected: connection closed (1006)"),
    (StatusEvent("status", "stocks", "connected", "", 0), "stocks stream connected"),
    (GapEvent("gap", "stocks", ("AAPL",), 1_709_562_600_000, 1_709_562_720_000, 0, 0, "stale", 3),
     "stocks stream reconnected after 3 attempt(s) (stale); gap 14:30:00 to 14:32:00 UTC"),
    (GapEvent("gap", "stocks", ("AAPL",), None, 1_709_562_720_000, 0, 0, "stale", 1),
     "stocks stream reconnected after 1 attempt(s) (stale); gap to 14:32:00 UTC"),
])
def test_stream_control_events_become_one_line_messages(settings: Settings, event: Any, expected: str) -> None:
    store = MassiveStore(settings)
    store._on_stream_control(event)
    store._on_stream_control(StatusEvent("status", "", "overflow", "3 events dropped", 0))  # a listener's, not ours
    assert store.get_notifications() == [(expected, (event,), {})]


# --- several feeds: one store, Backtrader's overloaded == on lines never runs -----------------------------
class Closes(bt.Strategy):
    """Keeps every feed's close at every step (the feeds are aligned on time by cerebro)."""

    def __init__(self) -> None:
        self.closes: dict[str, list[float]] = {d._name: [] for d in self.datas}

    def next(self) -> None:
        for d in self.datas:
            self.closes[d._name].append(d.close[0])


def _historical_run(settings: Settings, symbols: list[str]) -> Any:
    cerebro = bt.Cerebro(stdstats=False)
    for symbol in symbols:
        cerebro.adddata(MassiveData(dataname=symbol, interval="1d", settings=settings,
                                    fromdate=pd.Timestamp("2024-03-04").date(),
                                    todate=pd.Timestamp("2024-03-08").date()), name=symbol)
    cerebro.addstrategy(Closes)
    return cerebro.run()[0]


TEN = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "SPY"]


@pytest.mark.parametrize("symbols", [TEN[:2], TEN], ids=["2 feeds", "10 feeds"])
def test_several_feeds_in_one_cerebro_run_on_one_store(settings: Settings, symbols: list[str]) -> None:
    strat = _historical_run(settings, symbols)  # before: AttributeError ... 'addindicator'
    expected = fetch_data(symbols, "2024-03-04", "2024-03-08", "1d", settings=settings)
    for symbol in symbols:
        assert strat.closes[symbol] == expected[expected["symbol"] == symbol]["close"].tolist()
        assert len(strat.closes[symbol]) == 5
    assert MassiveStore.shared(settings).datas == []  # stop() forgot the run's feeds


def test_two_cerebros_in_one_process_both_run(settings: Settings) -> None:
    first = _historical_run(settings, ["AAPL", "MSFT"])
    second = _historical_run(settings, ["AAPL", "MSFT"])  # before: every later cerebro failed too
    assert first.closes == second.closes and len(second.closes["MSFT"]) == 5


def test_the_shared_store_is_one_before_and_after_the_sandbox_streams(tmp_path: Path) -> None:
    """Keyless, the built-in sandbox starts its WebSocket side on demand and settings name its URL from then on:
    a store taken before a stream started and one taken after must still be one store (one connector, one
    connection; a second connection kicks the first, and a multi-symbol paper session lost a symbol to it)."""
    from massive_feeds.config import load_settings
    from massive_feeds.runtime import Runtime

    configured = load_settings(environ={"MASSIVE_FEEDS_HOME": str(tmp_path)})
    with Runtime() as rt:
        first = MassiveStore.shared(configured)
        rt.settings(configured, need=("websocket",))  # a stream elsewhere starts the side
        assert MassiveStore.shared(configured) is first
        assert first.connector is MassiveStore.shared(configured).connector
