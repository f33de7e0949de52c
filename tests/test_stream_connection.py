"""The WebSocket protocol and its failure modes, over real sockets to the sandbox."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from massive_feeds.errors import StreamAuthError, StreamLimitError
from massive_feeds.sandbox import Sandbox
from massive_feeds.stream import MassiveConnector
from massive_feeds.stream import events as E

from ._stream_support import Collector, wait_until


Make = Callable[..., MassiveConnector]


# --- the sandbox server speaks the protocol -----------------------------------------------------------
def _recv(ws: ClientConnection) -> list[dict[str, Any]]:
    return orjson.loads(ws.recv(timeout=5))  # type: ignore[no-any-return]


def _recv_status(ws: ClientConnection) -> list[dict[str, Any]]:
    while True:
        frame = _recv(ws)
        statuses = [m for m in frame if m["ev"] == "status"]
        if statuses:
            return statuses


def test_server_handshake_subscribe_wildcard_and_errors(ws_sandbox: Sandbox) -> None:
    with connect(f"{ws_sandbox.ws_url}/stocks", compression=None) as ws:
        assert _recv(ws) == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
        ws.send(orjson.dumps({"action": "subscribe", "params": "T.AAPL"}).decode())
        assert _recv(ws)[0]["status"] == "auth_required"
        ws.send(orjson.dumps({"action": "auth", "params": ws_sandbox.api_key}).decode())
        assert _recv(ws) == [{"ev": "status", "status": "auth_success", "message": "authenticated"}]
        ws.send(orjson.dumps({"action": "subscribe", "params": "T.*,ZZ.AAPL"}).decode())
        replies = _recv_status(ws)
        assert replies[0]["message"] == "subscribed to: T.*" and replies[1]["status"] == "error"
        symbols: set[str] = set()
        deadline = time.monotonic() + 5
        while len(symbols) < 3 and time.monotonic() < deadline:
            symbols |= {m["sym"] for m in _recv(ws) if m["ev"] == "T"}
        assert len(symbols) >= 3  # the wildcard streams many tickers
        ws.send(orjson.dumps({"action": "unsubscribe", "params": "T.*"}).decode())
        assert _recv_status(ws)[0]["message"] == "unsubscribed to: T.*"


def test_server_auth_failed_and_auth_timeout(ws_sandbox: Sandbox) -> None:
    with connect(f"{ws_sandbox.ws_url}/crypto", compression=None) as ws:
        _recv(ws)
        ws.send(orjson.dumps({"action": "auth", "params": "wrong"}).decode())
        assert _recv(ws)[0]["status"] == "auth_failed"
    ws_sandbox.ws.auth_timeout = 0.2
    with connect(f"{ws_sandbox.ws_url}/crypto", compression=None) as ws:
        _recv(ws)
        assert _recv(ws)[0]["status"] == "auth_timeout"


# --- our client: handshake, auth, subscriptions, limits -------------------------------------------------
def test_handshake_and_streaming(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector()
    seen = Collector()
    c.add_listener(seen)
    assert c.start_stream(["aapl", "BTC-USD"]) == ["AAPL", "X:BTCUSD"]
    assert c.get_stats()["connected"]  # start_stream returns once authenticated
    wait_until(lambda: {s.market for s in seen.statuses(E.CONNECTED)} == {"stocks", "crypto"})
    wait_until(lambda: seen.data("AAPL", "quote") and seen.data("X:BTCUSD", "trade"), what="events")
    stats = c.get_stats()
    assert stats["connected"] and stats["active_streams"] == 2 and stats["last_message_age"] < 5
    assert ws_sandbox.ws.subscriptions("stocks") == {"Q.AAPL", "T.AAPL"}
    assert ws_sandbox.ws.subscriptions("crypto") == {"XQ.BTC-USD", "XT.BTC-USD"}


def test_bad_key_raises_stream_auth_error_without_a_retry_loop(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector(api_key="not-the-key")
    before = ws_sandbox.ws.auth_failures
    with pytest.raises(StreamAuthError) as info:
        c.start_stream(["AAPL"])
    assert "not-the-key" not in str(info.value) and "authentication failed" in str(info.value)
    time.sleep(0.5)
    assert ws_sandbox.ws.auth_failures == before + 1  # tried once, never again
    assert c.get_stats()["active_streams"] == 0 and "not-the-key" not in repr(c)


def test_subscribe_and_unsubscribe(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector()
    c.start_stream(["AAPL", "MSFT"], kinds=["quote"])
    wait_until(lambda: ws_sandbox.ws.subscriptions("stocks") == {"Q.AAPL", "Q.MSFT"})
    c.start_stream(["AAPL"], kinds=["agg_minute"])  # adds a kind
    wait_until(lambda: ws_sandbox.ws.subscriptions("stocks") == {"Q.AAPL", "AM.AAPL", "Q.MSFT"})
    assert c.stop_stream(["AAPL"]) == ["AAPL"]
    wait_until(lambda: ws_sandbox.ws.subscriptions("stocks") == {"Q.MSFT"})
    assert c.get_stats()["symbols"] == ["MSFT"]
    assert c.stop_stream() == ["MSFT"]
    wait_until(lambda: not ws_sandbox.ws.connections("stocks"), what="market slot freed")


def test_symbol_stream_cap(make_connector: Make) -> None:
    c = make_connector()
    assert c.get_stats()["max_streams"] == 10
    eleven = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "TSLA", "META", "NFLX", "AMD", "INTC", "JPM"]
    with pytest.raises(StreamLimitError, match="cap of 10"):
        c.start_stream(eleven)
    assert c.get_stats()["active_streams"] == 0  # all or nothing
    c.start_stream(eleven[:6])
    with pytest.raises(StreamLimitError):
        c.start_stream(eleven[6:])
    c.stop_stream(["AAPL"])
    c.start_stream(eleven[6:10])
    assert c.get_stats()["active_streams"] == 9
    c.start_stream(eleven[:1])  # already-streaming symbols do not count twice
    assert c.get_stats()["active_streams"] == 10
    c.start_stream(["AAPL", "MSFT"])
    assert c.get_stats()["active_streams"] == 10


# --- reconnects -----------------------------------------------------------------------------------------
def test_ten_forced_disconnects_restore_every_subscription(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector()
    seen = Collector()
    c.add_listener(seen)
    c.start_stream(["AAPL", "MSFT", "NVDA"], kinds=["quote", "trade", "agg_minute"])
    c.start_stream(["X:BTCUSD"])
    wanted = {f"{ch}.{s}" for ch in ("Q", "T", "AM") for s in ("AAPL", "MSFT", "NVDA")}
    stocks = lambda: c.get_stats()["markets"]["stocks"]  # noqa: E731
    for i in range(10):
        wait_until(lambda i=i: len(seen.gaps("stocks")) == i and seen.data("AAPL"), what=f"data before drop {i}")
        assert ws_sandbox.ws.force_disconnect("stocks") == 1
        wait_until(lambda i=i: stocks()["reconnects"] == i + 1 and stocks()["confirmed"] == len(wanted),
                   what="resubscribed")
        assert ws_sandbox.ws.subscriptions("stocks") == wanted
        wait_until(lambda i=i: len(seen.gaps("stocks")) == i + 1, what=f"gap {i}")
    stats = c.get_stats()
    assert stats["reconnects"] == 10 and stats["markets"]["crypto"]["reconnects"] == 0
    gaps = seen.gaps("stocks")
    assert len(gaps) == 10 and len(stats["gaps"]) == 10 and not stats["open_gaps"]
    for gap in gaps:
        assert gap.reason == "force_disconnect" and gap.symbols == ("AAPL", "MSFT", "NVDA")
        assert gap.start_ms is not None and gap.start_ms <= gap.end_ms and gap.attempts == 1
    # A gap is published right before the first event after its reconnect, and after the drop status.
    events = list(seen.events)
    for gap in gaps:
        i = events.index(gap)
        after = next(e for e in events[i + 1:] if isinstance(e, E.StreamEvent) and e.symbol in gap.symbols)
        assert max(after.time_ms, after.end_ms) == gap.end_ms
    assert len(seen.statuses(E.DISCONNECTED, "stocks")) == 10 and len(seen.statuses(E.RECONNECTED, "stocks")) == 10
    assert len(seen.statuses(E.FORCE_DISCONNECT, "stocks")) == 10


def test_abrupt_drop_and_slow_consumer_reconnect(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector()
    seen = Collector()
    c.add_listener(seen)
    c.start_stream(["X:ETHUSD"])
    wait_until(lambda: seen.data("X:ETHUSD"))
    ws_sandbox.ws.drop("crypto")
    wait_until(lambda: seen.gaps("crypto"), what="gap after drop")
    assert seen.gaps()[0].reason.startswith("connection closed")
    ws_sandbox.ws.slow_consumer("crypto")
    wait_until(lambda: len(seen.gaps("crypto")) == 2, what="gap after slow_consumer")
    stats = c.get_stats()
    assert stats["slow_consumer"] == 1 and stats["reconnects"] == 2
    assert seen.statuses(E.SLOW_CONSUMER)


def test_stale_socket_is_detected_and_replaced(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector(stale_after=0.3, pong_timeout=0.3)
    seen = Collector()
    c.add_listener(seen)
    c.start_stream(["X:SOLUSD", "X:BTCUSD"])
    wait_until(lambda: seen.data())
    ws_sandbox.ws.freeze("crypto")
    wait_until(lambda: seen.gaps("crypto"), timeout=8, what="stale detection")
    assert seen.gaps()[0].reason.startswith("stale")
    assert c.get_stats()["markets"]["crypto"]["state"] == "connected"


def test_max_connections_kick_stops_without_fighting(make_connector: Make, ws_sandbox: Sandbox) -> None:
    first, second = make_connector(), make_connector()
    seen = Collector()
    first.add_listener(seen)
    first.start_stream(["C:EURUSD"])
    accepted = ws_sandbox.ws.accepted
    second.start_stream(["C:GBPUSD"])  # same key, same market: the older connection is kicked
    wait_until(lambda: seen.statuses(E.STOPPED, "forex"), what="first stopped")
    assert seen.statuses(E.MAX_CONNECTIONS)
    stats = first.get_stats()
    assert stats["markets"]["forex"]["state"] == "failed" and "one connection per market" in stats["last_error"]
    time.sleep(0.5)
    assert ws_sandbox.ws.accepted == accepted + 1  # the kicked client did not come back to fight
    assert ws_sandbox.ws.subscriptions("forex") == {"C.GBP/USD"}
    # A server-side kick of the only connection is the same story; start_stream brings it back.
    ws_sandbox.ws.kick("forex")
    wait_until(lambda: second.get_stats()["markets"]["forex"]["state"] == "failed")
    second.start_stream(["C:EURUSD"])
    assert second.get_stats()["markets"]["forex"]["state"] == "connected"
    wait_until(lambda: ws_sandbox.ws.subscriptions("forex") == {"C.GBP/USD", "C.EUR/USD"})


def test_malformed_frames_are_skipped_with_a_warning(make_connector: Make, ws_sandbox: Sandbox,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    c = make_connector()
    seen = Collector()
    c.add_listener(seen)
    c.start_stream(["AAPL", "MSFT"])
    wait_until(lambda: seen.data("AAPL"))
    with caplog.at_level(logging.WARNING, logger="massive_feeds.stream"):
        for frame in (b'[{"ev":"Q","sym":', b'{"ev":"Q"}', b'[{"ev":"Q","sym":"AAPL"}]', b"[1, 2]"):
            ws_sandbox.ws.send_raw(frame, "stocks")
        wait_until(lambda: len(seen.statuses(E.MALFORMED)) == 4, what="malformed notices")
    n = len(seen.data())
    wait_until(lambda: len(seen.data()) > n + 5, what="stream continues")
    stats = c.get_stats()
    assert stats["malformed"] == 5 and stats["reconnects"] == 0  # 2 frames + 3 items; no reconnect
    assert any("malformed" in r.getMessage() for r in caplog.records)


def test_unreachable_server_gives_up_after_max_attempts(ws_settings: Any) -> None:
    import socket

    from massive_feeds.errors import StreamError
    from massive_feeds.stream import ReconnectPolicy

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ws_settings.with_overrides(ws_url=f"ws://127.0.0.1:{port}")
    policy = ReconnectPolicy(initial=0.01, cap=0.02, max_attempts=3)
    with MassiveConnector(settings=settings, reconnect=policy, connect_timeout=5) as c:
        seen = Collector()
        c.add_listener(seen)
        with pytest.raises(StreamError, match="gave up after 3 failed attempts"):
            c.start_stream(["AAPL"])
        assert c.get_stats()["active_streams"] == 0
        wait_until(lambda: seen.statuses(E.STOPPED))
        assert not seen.statuses(E.CONNECTED) and not seen.statuses(E.DISCONNECTED)


def test_the_rate_warning_names_a_fast_sandbox_clock_not_the_symbols(caplog: pytest.LogCaptureFixture) -> None:
    from massive_feeds.stream.ratemonitor import RateMonitor

    with caplog.at_level("WARNING", logger="massive_feeds.stream.ratemonitor"):
        RateMonitor(100, name="massive stream", speed=60.0).add(120)
        RateMonitor(100, name="massive stream").add(120)
    fast, real = [r.getMessage() for r in caplog.records]
    assert fast == ("massive stream: 120 messages in the last minute reached the plan's 100 messages/minute because "
                    "the sandbox's clock runs at 60x real time (60 market minutes a minute); a real feed of these "
                    "symbols sends about 2. Nothing is dropped.")
    assert "Stream fewer symbols" not in fast and "Stream fewer symbols" in real
