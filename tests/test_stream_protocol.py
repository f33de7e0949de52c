"""Stream building blocks without sockets: field maps, parser, events, backoff, rate monitor, hub."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from massive_feeds.errors import InvalidInputError
from massive_feeds.stream import events as E
from massive_feeds.stream.backoff import ReconnectPolicy
from massive_feeds.stream.hub import EventHub, Listener
from massive_feeds.stream.protocol import (
    CHANNELS,
    FrameError,
    FrameParser,
    TypedFrame,
    action_message,
    auth_message,
    chunk_params,
    param_ticker,
    subscription_params,
)
from massive_feeds.stream.ratemonitor import RateMonitor

T0 = 1_717_000_000_123


def parse(market: str, *items: dict) -> tuple[list[E.StreamEvent], list[dict]]:
    rows, statuses = FrameParser(market).parse(orjson.dumps(list(items)), 42)
    assert all(type(r) is tuple for r in rows)  # plain tuples: the GC stops tracking them
    return [E.as_event(r) for r in rows], statuses


# --- field maps ------------------------------------------------------------------------------------
def test_stock_trade_quote_and_aggregates() -> None:
    events, statuses = parse(
        "stocks",
        {"ev": "T", "sym": "AAPL", "x": 4, "i": "1", "z": 3, "p": 190.5, "s": 100, "c": [12], "t": T0,
         "q": 9},
        {"ev": "Q", "sym": "AAPL", "bx": 4, "bp": 190.4, "bs": 3, "ax": 7, "ap": 190.6, "as": 2, "t": T0 + 1},
        {"ev": "A", "sym": "AAPL", "v": 300, "av": 9000, "op": 189, "vw": 190.2, "o": 190, "c": 190.5, "h": 191,
         "l": 189.9, "a": 190.1, "z": 100, "s": T0, "e": T0 + 1000},
        {"ev": "AM", "sym": "AAPL", "v": 5000, "o": 190, "c": 190.5, "h": 191, "l": 189.9, "s": T0, "e": T0 + 60_000},
    )
    assert statuses == []
    trade, quote, sec, minute = events
    assert (trade.kind, trade.symbol, trade.price, trade.size, trade.time_ms, trade.exchange) == \
        ("trade", "AAPL", 190.5, 100, T0, 4)
    assert math.isnan(trade.bid) and trade.received_ns == 42
    assert (quote.kind, quote.bid, quote.ask, quote.bid_size, quote.ask_size) == ("quote", 190.4, 190.6, 3, 2)
    assert sec.kind == "agg_second" and (sec.open, sec.high, sec.low, sec.close, sec.volume, sec.vwap) == \
        (190, 191, 189.9, 190.5, 300, 190.2)
    assert minute.kind == "agg_minute" and minute.time_ms == T0 and minute.end_ms == T0 + 60_000
    assert math.isnan(minute.vwap)  # optional key missing → nan


def test_forex_crypto_and_index_symbols_become_our_tickers() -> None:
    fx, _ = parse("forex", {"ev": "C", "p": "EUR/USD", "x": 48, "a": 1.0802, "b": 1.08, "t": T0},
                  {"ev": "CA", "pair": "EUR/USD", "o": 1, "c": 1, "h": 1, "l": 1, "v": 10, "s": T0, "e": T0 + 60000},
                  {"ev": "CAS", "pair": "USD/JPY", "o": 1, "c": 1, "h": 1, "l": 1, "v": 1, "s": T0,
                   "e": T0 + 1000})
    assert [(e.kind, e.symbol) for e in fx] == [("quote", "C:EURUSD"), ("agg_minute", "C:EURUSD"),
                                                 ("agg_second", "C:USDJPY")]
    assert fx[0].bid == 1.08 and fx[0].ask == 1.0802 and math.isnan(fx[0].bid_size)
    cx, _ = parse("crypto",
                  {"ev": "XT", "pair": "BTC-USD", "p": 65000.5, "s": 0.01, "t": T0, "c": [1], "x": 1, "r": T0},
                  {"ev": "XQ", "pair": "ETH-USD", "bp": 3200, "bs": 1.5, "ap": 3201, "as": 2, "t": T0, "x": 1},
                  {"ev": "XA", "pair": "BTC-USD", "o": 1, "c": 2, "h": 3, "l": 0.5, "v": 4, "vw": 1.5, "s": T0,
                   "e": T0},
                  {"ev": "XAS", "pair": "SOL-USD", "o": 1, "c": 2, "h": 3, "l": 0.5, "v": 4, "s": T0, "e": T0})
    assert [(e.kind, e.symbol) for e in cx] == [("trade", "X:BTCUSD"), ("quote", "X:ETHUSD"),
                                                 ("agg_minute", "X:BTCUSD"), ("agg_second", "X:SOLUSD")]
    ix, _ = parse("indices", {"ev": "V", "val": 5200.25, "T": "I:SPX", "t": T0},
                  {"ev": "AM", "sym": "I:SPX", "op": 5190, "o": 5200, "c": 5201, "h": 5202, "l": 5199, "s": T0,
                   "e": T0})
    assert (ix[0].kind, ix[0].symbol, ix[0].price) == ("value", "I:SPX", 5200.25)
    assert ix[1].kind == "agg_minute" and math.isnan(ix[1].volume)


def test_every_channel_has_a_builder_and_event_times_are_utc() -> None:
    assert {c.channel for c in CHANNELS} == {"T", "Q", "A", "AM", "V", "C", "CA", "CAS", "XT", "XQ", "XA", "XAS"}
    (ev,), _ = parse("stocks", {"ev": "T", "sym": "AAPL", "p": 1, "s": 1, "t": T0})
    assert ev.time == datetime(2024, 5, 29, 16, 26, 40, 123000, tzinfo=timezone.utc)
    assert ev.received.tzinfo is timezone.utc
    d = ev.to_dict()
    assert d["bid"] is None and d["timestamp"] == ev.time and d["symbol"] == "AAPL"


def test_statuses_are_separated_and_unknown_or_malformed_items_skipped() -> None:
    parser = FrameParser("stocks")
    rows, statuses = parser.parse(orjson.dumps([
        {"ev": "status", "status": "success", "message": "subscribed to: T.AAPL"},
        {"ev": "T", "sym": "AAPL", "p": 1, "s": 1, "t": T0},
        {"ev": "LULD", "T": "AAPL"},  # a real channel we do not parse
        {"ev": "Q", "sym": "AAPL", "t": T0},  # missing bp/ap
        "junk",
        {"ev": "XT", "pair": "BTC-USD", "p": 1, "t": 1},  # crypto event on the stocks socket
    ]), 1)
    assert [r[0] for r in rows] == ["trade"]
    assert statuses[0]["status"] == "success"
    assert parser.malformed_events == 2 and parser.unknown_events == 2


@pytest.mark.parametrize("raw", [b'[{"ev":"T","sym":', b'{"ev":"T"}', b"", b"null"])
def test_non_array_frames_raise_frame_error(raw: bytes) -> None:
    with pytest.raises(FrameError):
        FrameParser("stocks").parse(raw, 0)


# --- subscriptions ---------------------------------------------------------------------------------
def test_subscription_params_per_market() -> None:
    assert subscription_params("AAPL", ["quote", "trade", "agg_minute"]) == ["Q.AAPL", "T.AAPL", "AM.AAPL"]
    assert subscription_params("X:BTCUSD", ["trade", "quote", "agg_minute"]) == \
        ["XT.BTC-USD", "XQ.BTC-USD", "XA.BTC-USD"]
    assert subscription_params("C:EURUSD", ["quote", "trade", "agg_second"]) == ["C.EUR/USD", "CAS.EUR/USD"]
    assert subscription_params("I:SPX", ["quote", "trade", "value"]) == ["V.I:SPX"]
    assert subscription_params("O:SPY251219C00650000", ["quote"]) == ["Q.O:SPY251219C00650000"]
    with pytest.raises(InvalidInputError, match="offers"):
        subscription_params("C:EURUSD", ["trade"])
    assert param_ticker("crypto", "XQ.BTC-USD") == "X:BTCUSD" and param_ticker("stocks", "T.*") == "*"


def test_control_messages() -> None:
    assert orjson.loads(auth_message("k")) == {"action": "auth", "params": "k"}
    assert orjson.loads(action_message("subscribe", ["Q.A", "T.A"])) == {"action": "subscribe", "params": "Q.A,T.A"}
    chunks = chunk_params([f"Q.SYM{i:04d}" for i in range(3000)], max_chars=8000)
    assert sum(len(c) for c in chunks) == 3000 and all(len(",".join(c)) <= 8000 for c in chunks)


# --- backoff and rate ----------------------------------------------------------------------------------
def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = ReconnectPolicy(initial=1.0, factor=2.0, cap=8.0, jitter=0.5, max_attempts=5)
    for n, base in enumerate([1, 2, 4, 8, 8, 8]):
        delays = [policy.delay(n) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert max(delays) - min(delays) > 0  # jittered
    assert not policy.exhausted(4) and policy.exhausted(5)
    assert not ReconnectPolicy().exhausted(10**6)


def test_rate_monitor_counts_a_sliding_minute_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    rm = RateMonitor(100)
    with caplog.at_level(logging.WARNING):
        for _ in range(30):
            rm.add(5)
    assert rm.count() == 150 and rm.total == 150
    assert rm.warnings == 1 and sum("100 messages/minute" in r.getMessage() for r in caplog.records) == 1
    rm._advance(rm._second + 61)  # a minute later everything has left the window
    assert rm._running == 0


# --- hub / listeners --------------------------------------------------------------------------------
def _events(n: int, symbol: str = "AAPL", kind: str = "trade") -> list[E.StreamEvent]:
    return [E.make_event(kind, symbol, T0 + i, price=float(i)) for i in range(n)]


def test_listener_delivers_in_order_and_filters() -> None:
    hub = EventHub()
    got: list = []
    only: list = []
    hub.add_listener(got.append)
    hub.add_listener(only.append, symbols=["MSFT"], kinds=["quote"])
    hub.publish(_events(3))
    hub.publish(_events(2, "MSFT", "quote"))
    gap = E.GapEvent("gap", "stocks", ("AAPL",), T0, T0 + 5, 0, 1, "test", 1)
    hub.publish_control(gap)
    hub.publish_control(E.StatusEvent("status", "stocks", "connected", "", 0))
    assert hub.wait_idle(5)
    assert [e.price for e in got[:3]] == [0.0, 1.0, 2.0] and got[5] is gap and len(got) == 7
    assert [e.kind for e in only] == ["quote", "quote", "status"]  # gap for AAPL filtered out
    hub.close()


def test_rows_become_stream_events_and_inline_listeners_run_on_the_publisher() -> None:
    hub = EventHub()
    threaded: list = []
    inline: list = []
    hub.add_listener(threaded.append)
    hub.add_listener(lambda b: inline.append((threading.current_thread(), b)), batched=True, inline=True)
    rows = [tuple(e) for e in _events(3)]
    hub.publish(rows)
    assert inline[0][0] is threading.current_thread()  # delivered before publish returned
    assert all(type(e) is E.StreamEvent for e in inline[0][1]) and inline[0][1][2].price == 2.0
    assert hub.wait_idle(5) and [type(e) for e in threaded] == [E.StreamEvent] * 3
    hub.close()


def test_listener_exceptions_are_isolated_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    hub = EventHub()
    good: list = []

    def bad(ev: object) -> None:
        raise RuntimeError("boom")

    bad_listener = hub.add_listener(bad)
    hub.add_listener(good.append)
    with caplog.at_level(logging.ERROR):
        hub.publish(_events(50))
        assert hub.wait_idle(5)
    assert bad_listener.errors == 50 and len(good) == 50
    assert hub.stats()["errors"] == 50
    assert any("boom" in r.getMessage() and r.exc_info for r in caplog.records)  # first one with traceback
    hub.close()


def test_overflow_is_counted_and_announced_in_band() -> None:
    gate = threading.Event()
    seen: list = []

    def slow(batch: list) -> None:
        gate.wait(5)
        seen.extend(batch)

    listener = Listener(slow, batched=True, max_pending=10)
    listener.offer(_events(10))  # taken by the worker, which then blocks on the gate
    time.sleep(0.1)
    assert listener.offer(_events(10))  # fills the queue
    assert not listener.offer(_events(5)) and not listener.offer(_events(5))
    assert listener.dropped == 10
    gate.set()
    assert listener.wait_idle(5)
    listener.offer(_events(1))  # room again: the overflow notice precedes this batch
    assert listener.wait_idle(5)
    statuses = [e for e in seen if e.kind == "status"]
    assert len(statuses) == 1 and statuses[0].status == "overflow" and statuses[0].message.startswith("10 events")
    assert seen[-2] is statuses[0] and seen[-1].kind == "trade"
    assert sum(e.kind == "trade" for e in seen) + listener.dropped == 31
    listener.close()


# --- whole-frame builders (the hot path) and their fallbacks -----------------------------------------
def _quote(i: int, **over: object) -> dict:
    d = {"ev": "Q", "sym": "AAPL", "bx": 4, "bp": 100.0 + i, "bs": 3, "ax": 7, "ap": 101.0 + i, "as": 2,
         "t": T0 + i}
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def test_single_channel_frame_keeps_order_and_defaults_a_missing_optional_key() -> None:
    # One quote in the middle lacks its sizes and exchange: the strict comprehension fails and the frame is
    # rebuilt with defaults for that event only, every other event keeping its values, in wire order.
    items = [_quote(i) for i in range(50)]
    items[25] = _quote(25, bs=None, bx=None)
    events, _ = parse("stocks", *items)
    assert [e.time_ms for e in events] == [T0 + i for i in range(50)]
    assert [e.bid for e in events] == [100.0 + i for i in range(50)]
    assert math.isnan(events[25].bid_size) and events[25].exchange == 0 and events[25].ask_size == 2
    assert all(e.bid_size == 3 and e.exchange == 4 for i, e in enumerate(events) if i != 25)


def test_mixed_frames_statuses_and_malformed_items_mid_frame_keep_the_rest_in_order() -> None:
    # Each surprise alone in an otherwise single-channel frame (so none hides behind another's fallback),
    # each on a fresh parser (after a mixed frame a parser goes per item for a while).
    parser = FrameParser("stocks")
    mixed: list = [_quote(i) for i in range(10)]
    mixed[3] = {"ev": "T", "sym": "MSFT", "p": 5.0, "s": 1, "t": T0 + 3, "x": 1}  # another channel
    rows, statuses = parser.parse(orjson.dumps(mixed), 7)
    assert [(r[0], r[2]) for r in rows] == [("trade" if i == 3 else "quote", T0 + i) for i in range(10)]
    assert all(type(r) is tuple and r[3] == 7 for r in rows) and statuses == []
    with_status: list = [_quote(i) for i in range(10)]
    with_status[6] = {"ev": "status", "status": "success", "message": "subscribed to: Q.AAPL"}
    rows, statuses = FrameParser("stocks").parse(orjson.dumps(with_status), 7)
    assert [r[2] for r in rows] == [T0 + i for i in range(10) if i != 6]
    assert [s["status"] for s in statuses] == ["success"]
    broken: list = [_quote(i) for i in range(10)]
    broken[8] = _quote(8, bp=None)  # required key missing
    parser = FrameParser("stocks")
    rows, _ = parser.parse(orjson.dumps(broken), 7)
    assert [r[2] for r in rows] == [T0 + i for i in range(10) if i != 8]
    assert parser.malformed_events == 1 and parser.unknown_events == 0


def test_frames_after_a_mixed_frame_parse_identically() -> None:
    parser = FrameParser("stocks")
    mixed = [_quote(0), {"ev": "T", "sym": "AAPL", "p": 1.0, "s": 1, "t": T0, "x": 2}]
    frames = [mixed] + [[_quote(i) for i in range(k, k + 5)] for k in range(0, 200, 5)]
    for frame in frames:  # per item for a while, then the whole-frame builder again: same rows
        assert parser.parse(orjson.dumps(frame), 1) == FrameParser("stocks").parse(orjson.dumps(frame), 1)


def test_forex_frames_coerce_the_string_exchange_on_the_frame_path() -> None:
    events, _ = parse("forex", *({"ev": "C", "p": "EUR/USD", "x": "44", "a": 1.1 + i, "b": 1.0, "t": T0 + i}
                                 for i in range(5)))
    assert [e.exchange for e in events] == [44] * 5 and all(type(e.exchange) is int for e in events)
    assert [e.symbol for e in events] == ["C:EURUSD"] * 5 and events[4].ask == 1.1 + 4


def test_listener_filters_mixed_row_batches_by_kind_or_symbol_alone() -> None:
    hub = EventHub()
    by_kind: list = []
    by_symbol: list = []
    hub.add_listener(by_kind.append, kinds=["quote"], inline=True)
    hub.add_listener(by_symbol.extend, symbols=["MSFT"], batched=True, inline=True)
    rows = [tuple(e) for e in (*_events(2, "AAPL", "quote"), *_events(2, "MSFT", "trade"),
                              *_events(1, "MSFT", "quote"))]
    hub.publish(rows)
    assert [(e.kind, e.symbol) for e in by_kind] == [("quote", "AAPL"), ("quote", "AAPL"), ("quote", "MSFT")]
    assert [(e.kind, e.symbol) for e in by_symbol] == [("trade", "MSFT"), ("trade", "MSFT"), ("quote", "MSFT")]
    assert all(type(e) is E.StreamEvent for e in by_kind + by_symbol)
    hub.publish([tuple(e) for e in _events(3, "AAPL", "trade")])  # nothing passes either filter
    assert len(by_kind) == 3 and len(by_symbol) == 3
    hub.close()


# --- the one typed decoder, its fallback, and TypedFrame ---------------------------------------------
SPEC_EXAMPLES = orjson.loads((Path(__file__).parent / "fixtures" / "real" / "ws" / "spec_examples.json").read_bytes())


def _same_rows(a: list[tuple], b: list[tuple]) -> bool:
    """Rows equal field by field, in value *and* type (nan equals nan)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb, strict=True):
            if type(x) is not type(y):
                return False
            if not (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))):
                return False
    return True


def _frame(market: str, items: list, parser: FrameParser | None = None) -> tuple[TypedFrame, list, FrameParser]:
    # items given as bytes are raw JSON (numbers orjson.dumps cannot write)
    raw = b"[" + b",".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items) + b"]"
    parser = parser or FrameParser(market)
    data, statuses = parser.parse_frame(raw, 42)
    assert isinstance(data, TypedFrame)
    _typed_events_match(data)
    return data, statuses, parser


def _typed_events_match(data: TypedFrame) -> None:
    """The frame's events, made from its structs both ways (a list; one by one through ``deliver``), and
    its rows (plain tuples) are the same values, types and order."""
    delivered: list = []
    data.deliver(delivered.append, pytest.fail)
    rows = data.rows()
    assert all(type(r) is tuple for r in rows) and len(rows) == len(data)
    for got in (data.events(), delivered):
        assert all(type(e) is E.StreamEvent for e in got)
        assert _same_rows(got, rows)


@pytest.mark.parametrize("market,channel", [(m, c) for m, chans in SPEC_EXAMPLES.items() if m != "status"
                                            for c in chans])
def test_real_frames_decode_whole_and_typed(market: str, channel: str) -> None:
    # Three copies of the real example in one frame: decoded in one pass (nothing refused), one kind,
    # each copy the same event as the example alone (its values are checked by hand in test_real_payloads).
    items = SPEC_EXAMPLES[market][channel] * 3
    data, statuses, parser = _frame(market, items)
    alone = FrameParser(market).parse(orjson.dumps(SPEC_EXAMPLES[market][channel]), 42)[0]
    assert statuses == [] and parser.malformed_events == 0 and parser.unknown_events == 0
    assert len(data) == 3 and _same_rows(data.rows(), alone * 3)
    assert data.kind == data.events()[0].kind and data.kind in E.DATA_KINDS


def test_typed_path_keeps_numbers_as_sent_and_defaults_missing_optional_keys() -> None:
    items = [_quote(0, bp=190, bs=None, bx=None), _quote(1, bs=2.5, bp=2**63 - 1, ap=0),
             {"ev": "T", "sym": "MSFT", "p": 5, "s": 100, "t": T0, "x": 4},  # mixed channels
             {"ev": "AM", "sym": "AAPL", "o": 1, "h": 2.5, "l": 0.5, "c": 2, "s": T0, "e": T0 + 60_000}]
    data, _, parser = _frame("stocks", items)
    assert parser.malformed_events == 0 and data.kind is None  # mixed
    quote, big, trade, bar = data.events()
    assert type(quote.bid) is int and quote.bid == 190 and math.isnan(quote.bid_size) and quote.exchange == 0
    assert big.bid == 2**63 - 1 and big.ask == 0 and big.bid_size == 2.5  # a quote side of 0: "no ask"
    assert type(trade.size) is int and trade.kind == "trade" and math.isnan(bar.vwap) and bar.end_ms == T0 + 60_000
    assert (trade.price, trade.size, trade.exchange, trade.time_ms) == (5, 100, 4, T0)
    assert (bar.open, bar.high, bar.low, bar.close, bar.kind) == (1, 2.5, 0.5, 2, "agg_minute")
    assert (data.first_ms(), data.last_ms()) == (T0, T0 + 60_000)  # an aggregate counts at its window end
    fx, _, _ = _frame("forex", [{"ev": "C", "p": "EUR/USD", "x": "44", "a": 1.1, "b": 1.0, "t": T0}])
    assert fx.rows()[0][-1] == 44 and fx.events()[0].symbol == "C:EURUSD"


# Each is one event of a documented channel whose values are not what the channel documents.
HOSTILE_QUOTES = [
    {"ev": "Q", "sym": "AAPL", "bp": None, "ap": 1.0, "t": T0},  # null price
    {"ev": "Q", "sym": "AAPL", "bp": "1.5", "ap": 1.0, "t": T0},  # string price
    {"ev": "Q", "sym": "AAPL", "bp": -1.5, "ap": 1.0, "t": T0},  # negative price
    {"ev": "Q", "sym": "AAPL", "bp": 1.5, "ap": 1.0, "bs": -5, "t": T0},  # negative size
    {"ev": "Q", "sym": "AAPL", "bp": True, "ap": 1.0, "t": T0},  # a boolean is no number
    {"ev": "Q", "sym": "AAPL", "bp": 1.5, "ap": 1.0, "t": 1.5e12},  # float time
    {"ev": "Q", "sym": "AAPL", "bp": 1.5, "ap": 1.0, "t": T0 // 1000},  # seconds, not ms
    {"ev": "Q", "sym": "AAPL", "bp": 1.5, "ap": 1.0, "t": T0 * 1_000_000},  # nanoseconds, not ms
    {"ev": "Q", "sym": 5, "bp": 1.5, "ap": 1.0, "t": T0},  # symbol not a string
    {"ev": "Q", "sym": "", "bp": 1.5, "ap": 1.0, "t": T0},  # empty symbol
    b'{"ev":"Q","sym":"AAPL","bp":1e400,"ap":1.0,"t":1717000000123}',  # not finite
    b'{"ev":"Q","sym":"AAPL","bp":18446744073709551616,"ap":1.0,"t":1717000000123}',  # past int64
    b'{"ev":"Q","sym":"AAPL","bp":-9223372036854775808,"ap":1.0,"t":1717000000123}',
    b'{"ev":"Q","sym":"AAPL","bp":1.5,"ap":1.0,"t":9223372036854775808}',  # time past int64
    {"ev": "Q", "sym": "AAPL", "ap": 1.0, "t": T0},  # required key missing
    {"ev": "Q", "sym": "AAPL", "bp": 1.5, "ap": 1.0, "t": T0, "bx": -1},  # negative exchange id
]


@pytest.mark.parametrize("bad", HOSTILE_QUOTES)
def test_a_badly_typed_event_is_counted_malformed_and_its_neighbours_survive(bad: object) -> None:
    data, statuses, parser = _frame("stocks", [_quote(0), bad, _quote(2)])
    assert [e.time_ms for e in data.events()] == [T0, T0 + 2] and data.kind == "quote"
    assert [e.bid for e in data.events()] == [100.0, 102.0] and statuses == []
    assert parser.malformed_events == 1 and parser.malformed_by_kind == {"Q": 1} and parser.unknown_events == 0


def _bar(**over: object) -> dict:
    return {"ev": "AM", "sym": "AAPL", "o": 10.0, "h": 12.0, "l": 9.0, "c": 11.0, "v": 100, "s": T0,
            "e": T0 + 60_000, **over}


@pytest.mark.parametrize("bad", [_bar(h=8.0), _bar(l=11.5), _bar(o=12.5), _bar(c=8.5), _bar(e=T0 - 60_000),
                                 _bar(o=None), _bar(v=-1), _bar(s=T0 + 0.5)])
def test_an_aggregate_whose_values_contradict_each_other_is_malformed(bad: dict) -> None:
    good = [_bar(), _bar(s=T0 + 60_000, e=T0 + 120_000, h=11.0)]  # at the boundaries: h == c, e == s + 1 min
    data, _, parser = _frame("stocks", [good[0], bad, good[1]])
    assert [(e.time_ms, e.high, e.low) for e in data.events()] == [(T0, 12.0, 9.0), (T0 + 60_000, 11.0, 9.0)]
    assert parser.malformed_by_kind == {"AM": 1}
    fx, _, fx_parser = _frame("forex", [{**bad, "ev": "CA", "pair": "EUR/USD"}])  # a rewritten symbol too
    assert len(fx) == 0 and fx_parser.malformed_by_kind == {"CA": 1}


@pytest.mark.parametrize("surprise,counted", [
    ({"ev": "status", "status": "success", "message": "subscribed to: Q.AAPL"}, (0, 0)),
    ({"ev": "LULD", "T": "AAPL"}, (0, 1)),  # a channel we do not parse
    ({"T": "AAPL"}, (0, 1)),  # no channel at all
    ("junk", (1, 0)),  # not an object
])
def test_statuses_unknown_channels_and_junk_take_the_one_fallback(surprise: object, counted: tuple) -> None:
    data, statuses, parser = _frame("stocks", [_quote(0), surprise, _quote(2)])
    assert [e.time_ms for e in data.events()] == [T0, T0 + 2]
    assert statuses == ([surprise] if counted == (0, 0) else [])
    assert (parser.malformed_events, parser.unknown_events) == counted
    assert parser.malformed_by_kind == ({"(not an object)": 1} if counted[0] else {})


def test_malformed_events_are_logged_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    parser = FrameParser("stocks")
    trade = {"ev": "T", "sym": "AAPL", "p": "1", "t": T0}
    with caplog.at_level(logging.WARNING, logger="massive_feeds.stream"):
        for _ in range(3):
            _frame("stocks", [HOSTILE_QUOTES[0], trade, _quote(1), HOSTILE_QUOTES[1]], parser)
    assert parser.malformed_by_kind == {"Q": 6, "T": 3} and parser.malformed_events == 9
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2 and "malformed Q event" in logged[0] and "malformed T event" in logged[1]
    assert "`$.bp`" in logged[0] and "`$.p`" in logged[1]  # which key was wrong


def test_typed_delivery_isolates_a_raising_callback_and_goes_on_in_order() -> None:
    data, _, _ = _frame("stocks", [_quote(i) for i in range(6)])
    seen: list = []
    failures: list = []

    def fn(ev: E.StreamEvent) -> None:
        seen.append(ev.time_ms)
        if ev.time_ms in (T0 + 1, T0 + 4):
            raise ValueError(ev.time_ms)

    data.deliver(fn, failures.append)
    assert seen == [T0 + i for i in range(6)]  # every event once, in order, the raising ones included
    assert [type(x) for x in failures] == [ValueError, ValueError]
    assert [x.args[0] for x in failures] == [T0 + 1, T0 + 4]


def test_forex_exchange_that_is_not_digits_is_malformed() -> None:
    data, _, parser = _frame("forex", [{"ev": "C", "p": "EUR/USD", "x": "4a", "a": 1.1, "b": 1.0, "t": T0}])
    assert len(data) == 0 and parser.malformed_by_kind == {"C": 1}


def test_the_parser_keeps_no_state_between_frames() -> None:
    # A refused frame (statuses) changes nothing for the next: every frame is decoded on its own.
    parser = FrameParser("stocks")
    status = orjson.dumps([{"ev": "status", "status": "success", "message": "subscribed to: Q.AAPL"}])
    data, statuses = parser.parse_frame(status, 1)
    assert len(data) == 0 and [s["status"] for s in statuses] == ["success"]
    frames = [parser.parse_frame(orjson.dumps([_quote(i)]), 1)[0] for i in range(3)]
    assert [(f.kind, f.events()[0].time_ms) for f in frames] == [("quote", T0 + i) for i in range(3)]


def test_one_channel_frames_know_their_kind_and_foreign_events_are_never_taken() -> None:
    parser = FrameParser("stocks")
    trade = {"ev": "T", "sym": "MSFT", "p": 5.0, "s": 1, "t": T0, "x": 1}
    kinds = []
    for items in ([_quote(0)], [_quote(1), _quote(2)], [trade], [_quote(3), trade], [_quote(4)]):
        data, _, _ = _frame("stocks", items, parser)
        assert [e.time_ms for e in data.events()] == [it["t"] for it in items]
        kinds.append(data.kind)
    assert kinds == ["quote", "quote", "trade", None, "quote"]  # a mixed frame has no one kind
    # Events lacking "ev" (or carrying a quote's keys under another ev) are not quotes.
    for items in ([{k: v for k, v in _quote(5).items() if k != "ev"}], [{**_quote(6), "ev": "\x00none"}]):
        fresh = FrameParser("stocks")
        fresh.parse_frame(orjson.dumps([_quote(0)]), 1)
        data, _, _ = _frame("stocks", items, fresh)
        assert len(data) == 0 and fresh.unknown_events == 1 and fresh.malformed_events == 0


def test_typed_frames_rows_and_control_events_reach_every_listener_kind_in_order() -> None:
    # TypedFrames, plain row lists and control events interleaved: every listener kind (threaded per-event,
    # threaded batched, inline) sees every event once, data in wire order, controls exactly between.
    parser = FrameParser("stocks")
    hub = EventHub()
    per_event: list = []
    batches: list = []
    inline: list = []
    hub.add_listener(per_event.append, max_pending=10_000)
    hub.add_listener(batches.append, batched=True, max_pending=10_000)
    hub.add_listener(inline.append, inline=True)
    trades: list = []
    msft: list = []
    hub.add_listener(trades.append, kinds=["trade"], max_pending=10_000)  # whole quote frames skipped unbuilt
    hub.add_listener(msft.extend, symbols=["MSFT"], batched=True, inline=True)
    expected: list = []
    t = 0
    for k in range(60):
        if k % 7 == 3:
            ev = E.StatusEvent("status", "stocks", "disconnected", f"#{k}", k)
            hub.publish_control(ev)
            expected.append(("status", ev.message))
            continue
        n = 1 + k % 5
        items = [_quote(t + i) for i in range(n)]
        if k % 4 == 0:
            items[-1] = {"ev": "T", "sym": "MSFT", "p": 5.0, "s": 1, "t": T0 + t + n - 1, "x": 1}
        data, _ = parser.parse_frame(orjson.dumps(items), k)
        assert isinstance(data, TypedFrame)
        hub.publish(data if k % 3 != 1 else data.rows(), wake=k % 2 == 0)  # both batch forms, some wakes deferred
        expected += [("trade" if (k % 4 == 0 and i == n - 1) else "quote", T0 + t + i) for i in range(n)]
        t += n
    hub.wake()
    assert hub.wait_idle(10)
    flat = [e for b in batches for e in b]
    for got in (per_event, flat, inline):
        assert [(e.kind, e.message) if e.kind == "status" else (e.kind, e.time_ms) for e in got] == expected
        assert all(type(e) is (E.StatusEvent if e.kind == "status" else E.StreamEvent) for e in got)
    assert all(type(b) is list for b in batches)  # batched listeners get lists of StreamEvents, as documented
    only_trades = [x for x in expected if x[0] in ("trade", "status")]
    assert sum(x[0] == "trade" for x in only_trades) >= 10 and expected[0][0] == "trade"  # incl. trade-only frames
    for got in (trades, msft):  # statuses pass every filter, in place
        assert [(e.kind, e.message) if e.kind == "status" else (e.kind, e.time_ms) for e in got] == only_trades
    hub.close()
