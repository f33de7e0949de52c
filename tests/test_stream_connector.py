"""MassiveConnector and the async iterators over real sockets: callbacks, listeners, loss accounting,
data fidelity against the market generator and REST, thread safety, the registry."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from contextlib import aclosing
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pytest

from massive_feeds.config import Settings
from massive_feeds.errors import MassiveError, StreamAuthError
from massive_feeds.rest import RestClient
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.ws import Firehose
from massive_feeds.schema import NEW_YORK
from massive_feeds.stream import (
    MassiveConnector,
    get_connector,
    stream_bars_websocket,
    stream_events,
    stream_quotes_websocket,
    stream_trades_websocket,
)
from massive_feeds.stream import events as E

from ._stream_support import FAST, Collector, wait_until


Make = Callable[..., MassiveConnector]


def test_orderbook_callbacks(make_connector: Make) -> None:
    c = make_connector()
    books: list[tuple[str, dict[str, Any]]] = []
    c.start_stream(["AAPL", "C:EURUSD", "I:SPX"], callback=lambda s, b: books.append((s, b)))
    wait_until(lambda: {s for s, _ in books} == {"AAPL", "C:EURUSD", "I:SPX"}, what="a book per symbol")
    wait_until(lambda: any(b["event"] == "trade" for s, b in books if s == "AAPL"), what="an AAPL trade")
    for symbol, book in books:
        assert book["symbol"] == symbol and book["timestamp"].tzinfo is timezone.utc
        if symbol == "I:SPX":
            assert book["bids"] == [] and book["last_price"] > 0
        else:
            (bid, bid_size), (ask, ask_size) = book["bids"][0], book["asks"][0]
            assert 0 < bid < ask and book["spread"] == pytest.approx(ask - bid)
            assert (bid_size is None) == (ask_size is None) == (symbol == "C:EURUSD")
    aapl = [b for s, b in books if s == "AAPL" and b["event"] == "trade"][-1]
    assert aapl["last_price"] > 0 and aapl["last_size"] > 0
    snap = c.get_orderbook("aapl")
    assert snap is not None and snap["symbol"] == "AAPL"


def test_callback_and_listener_exceptions_are_isolated(make_connector: Make) -> None:
    c = make_connector()
    good: list[str] = []

    def bad(symbol: str, book: dict[str, Any]) -> None:
        raise ValueError("callback bug")

    def bad_listener(ev: E.Event) -> None:
        raise KeyError("listener bug")

    c.add_listener(bad_listener)
    c.start_stream(["AAPL"], callback=bad)
    c.start_stream(["MSFT", "X:BTCUSD"], callback=lambda s, b: good.append(s))
    wait_until(lambda: c.get_stats()["callback_errors"] > 10 and {"MSFT", "X:BTCUSD"} <= set(good))
    n = len(good)
    wait_until(lambda: len(good) > n + 3, what="stream continues")
    stats = c.get_stats()
    assert stats["connected"] and stats["reconnects"] == 0 and stats["dropped"] == 0


def test_firehose_zero_loss_and_counted_overflow(make_connector: Make, ws_sandbox: Sandbox) -> None:
    n = 50_000
    ws_sandbox.ws.set_firehose(Firehose(events=n, batch=100, channel="Q"))
    c = make_connector()
    counted = [0]
    c.add_listener(lambda batch: counted.__setitem__(0, counted[0] + sum(e.kind == "quote" for e in batch)),
                   batched=True)
    slow_seen: list[E.Event] = []

    def slow(ev: E.Event) -> None:
        slow_seen.append(ev)
        if len(slow_seen) % 100 == 0:
            time.sleep(0.002)

    slow_listener = c.add_listener(slow, max_pending=500)
    c.start_stream(["AAPL"], kinds=["quote"])
    wait_until(lambda: counted[0] >= n, timeout=20, what="firehose delivered")
    time.sleep(0.2)
    assert counted[0] == n  # every event, exactly once
    c.remove_listener(slow_listener)  # drains, then reports any unreported drop
    quotes = sum(isinstance(e, E.StreamEvent) for e in slow_seen)
    assert slow_listener.dropped > 0 and quotes + slow_listener.dropped == n
    overflow = [e for e in slow_seen if isinstance(e, E.StatusEvent) and e.status == E.OVERFLOW]
    assert overflow and sum(int(e.message.split()[0]) for e in overflow) == slow_listener.dropped
    stats = c.get_stats()
    assert stats["dropped"] == slow_listener.dropped and stats["messages_total"] == n


def _ny_day(ms: int) -> Any:
    return datetime.fromtimestamp(ms / 1000, NEW_YORK).date()


def test_streamed_trades_are_the_generator_ticks_and_minute_bars_match_rest(
        make_connector: Make, ws_sandbox: Sandbox, ws_settings: Settings) -> None:
    c = make_connector()
    seen = Collector()
    c.add_listener(seen, symbols=["NVDA"])
    c.start_stream(["NVDA"], kinds=["trade", "agg_minute"])
    wait_until(lambda: len(seen.data("NVDA", "agg_minute")) >= 2 and len(seen.data("NVDA", "trade")) > 10,
               timeout=10, what="trades and two minute bars")
    trades = seen.data("NVDA", "trade")
    ticks = ws_sandbox.market.ticks("NVDA", _ny_day(trades[0].time_ms))
    i0 = int(np.searchsorted(ticks.t_ms, trades[0].time_ms))
    got = [(e.time_ms, e.price, e.size) for e in trades]
    sel = slice(i0, i0 + len(got))
    want = list(zip(ticks.t_ms[sel].tolist(), ticks.price[sel].tolist(), ticks.size[sel].tolist(), strict=True))
    assert got == want  # every tick, in order, none missing
    with RestClient(ws_settings.with_overrides(plan=ws_settings.plan)) as rest:
        for bar in seen.data("NVDA", "agg_minute"):
            body = rest.get_json(f"/v2/aggs/ticker/NVDA/range/1/minute/{bar.time_ms}/{bar.time_ms}")
            (row,) = body["results"]
            assert (bar.time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap) == \
                (row["t"], row["o"], row["h"], row["l"], row["c"], row["v"], row["vw"])
            assert bar.end_ms == bar.time_ms + 60_000


def test_async_iterators_yield_the_documented_dicts(ws_settings: Settings) -> None:
    async def take(gen: Any, n: int) -> list[dict[str, Any]]:
        out = []
        async with aclosing(gen) as it:
            async for item in it:
                out.append(item)
                if len(out) >= n:
                    break
        return out

    async def main() -> tuple[list, list, list]:
        quotes = await asyncio.wait_for(take(stream_quotes_websocket(["AAPL", "EUR/USD"], settings=ws_settings,
                                                                     reconnect=FAST), 20), 10)
        trades = await asyncio.wait_for(take(stream_trades_websocket("X:BTCUSD", settings=ws_settings), 5), 10)
        bars = await asyncio.wait_for(take(stream_bars_websocket(["X:ETHUSD"], settings=ws_settings), 2), 10)
        return quotes, trades, bars

    quotes, trades, bars = asyncio.run(main())
    for q in quotes:
        assert {"symbol", "bid", "ask", "bid_size", "ask_size", "timestamp"} <= set(q)
        assert q["bid"] < q["ask"] and q["timestamp"].tzinfo is timezone.utc
    assert {q["symbol"] for q in quotes} <= {"AAPL", "C:EURUSD"}
    assert all(t["symbol"] == "X:BTCUSD" and t["price"] > 0 and t["size"] > 0 for t in trades)
    for b in bars:
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
        assert (b["end"] - b["timestamp"]).total_seconds() == 60


def test_async_iterator_auth_error_and_gap_events(ws_sandbox: Sandbox, ws_settings: Settings) -> None:
    async def bad_key() -> None:
        async for _ in stream_quotes_websocket(["AAPL"], api_key="nope", settings=ws_settings):
            pass

    with pytest.raises(StreamAuthError):
        asyncio.run(asyncio.wait_for(bad_key(), 10))

    async def with_gap() -> list[E.Event]:
        seen: list[E.Event] = []
        async with aclosing(stream_events(["X:SOLUSD"], ["trade", "quote"], settings=ws_settings,
                                          include_control=True, reconnect=FAST)) as it:
            async for ev in it:
                seen.append(ev)
                if isinstance(ev, E.StreamEvent) and sum(isinstance(e, E.StreamEvent) for e in seen) == 3:
                    await asyncio.to_thread(ws_sandbox.ws.force_disconnect, "crypto")
                if isinstance(ev, E.GapEvent):
                    return seen
        return seen

    seen = asyncio.run(asyncio.wait_for(with_gap(), 10))
    kinds = [e.kind for e in seen]
    assert kinds[0] == "status" and "gap" in kinds
    statuses = [e.status for e in seen if isinstance(e, E.StatusEvent)]
    assert statuses.index(E.DISCONNECTED) < statuses.index(E.RECONNECTED)


def test_list_symbols_is_cached(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector()
    calls = lambda: ws_sandbox.rest.count("/v3/reference/tickers")  # noqa: E731
    before = calls()
    symbols = c.list_symbols()
    assert {"AAPL", "X:BTCUSD", "C:EURUSD"} <= set(symbols)
    assert c.list_symbols() == symbols and calls() == before + 1
    c.list_symbols(refresh=True)
    assert calls() == before + 2
    assert all(s.startswith("X:") for s in c.list_symbols("crypto"))
    assert c.list_symbols(limit=3) == sorted(symbols)[:3]


def test_get_connector_registry(ws_settings: Settings) -> None:
    a = get_connector("massive", settings=ws_settings)
    assert get_connector("Massive", settings=ws_settings) is a
    assert get_connector("massive", settings=ws_settings, shared=False) is not a
    a.close()
    b = get_connector("massive", settings=ws_settings)
    assert b is not a and not b.closed
    b.close()
    with pytest.raises(MassiveError, match="Unknown connector"):
        get_connector("nope")


def test_thread_safety_under_concurrent_calls(make_connector: Make, ws_sandbox: Sandbox) -> None:
    c = make_connector()
    universe = ["AAPL", "MSFT", "GOOGL", "AMZN", "X:BTCUSD", "X:ETHUSD", "C:EURUSD", "I:SPX"]
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                pick = rng.sample(universe, 3)
                if rng.random() < 0.6:
                    c.start_stream(pick, callback=lambda s, b: None)
                else:
                    c.stop_stream(pick)
                c.get_stats()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    c.stop_stream()
    assert c.get_stats()["active_streams"] == 0
    c.start_stream(["AAPL", "X:ETHUSD"], kinds=["quote"])
    wait_until(lambda: ws_sandbox.ws.subscriptions("stocks") == {"Q.AAPL"}
               and ws_sandbox.ws.subscriptions("crypto") == {"XQ.ETH-USD"})


def test_stats_have_the_documented_keys(make_connector: Make) -> None:
    c = make_connector()
    c.start_stream(["AAPL"])
    stats = c.get_stats()
    for key in ("active_streams", "max_streams", "messages_this_minute", "max_messages_per_minute",
                "reconnects", "dropped", "last_message_age", "gaps", "callback_errors", "connected"):
        assert key in stats
    assert stats["max_messages_per_minute"] == 100 and stats["max_streams"] == 10
    assert "sandbox-key" not in repr(stats) and "sandbox-key" not in repr(c)
    c.close()
    with pytest.raises(MassiveError, match="closed"):
        c.start_stream(["AAPL"])


def test_a_later_callback_replaces_the_earlier_one(make_connector: Make) -> None:
    c = make_connector()
    first: list[str] = []
    second: list[str] = []
    c.start_stream(["X:BTCUSD"], callback=lambda s, b: first.append(s))
    wait_until(lambda: first)
    c.start_stream(["X:BTCUSD"], callback=lambda s, b: second.append(s))  # e.g. a Streamlit rerun
    wait_until(lambda: second)
    c.drain()
    n = len(first)
    wait_until(lambda: len(second) > 5)
    assert len(first) == n and c.get_stats()["active_streams"] == 1
