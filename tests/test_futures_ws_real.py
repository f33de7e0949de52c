"""Massive's futures WebSocket frames as its documentation pages publish them
(``tests/fixtures/real/ws/futures_docs_examples.json``, see PROVENANCE.md) through the one decoder, with
hand-computed numbers; over a real socket to a connector; and the sandbox's ``/futures`` frames compared
with them key by key.

What the published frames show (and these tests pin): ``AM`` carries ``dv`` (dollar volume) and ``n``
(trade count) and no ``vw``; the per-second page's example is an ``AM`` frame (its ``ev`` decides: a
per-minute bar); ``T`` has an undocumented ``z`` and an integer price; ``Q``'s ``t`` is not between its
``bt``/``at``. Values are kept as sent: the decoder rescales nothing and derives nothing.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pytest

from massive_feeds.sandbox import Sandbox
from massive_feeds.stream import MassiveConnector
from massive_feeds.stream import events as E
from massive_feeds.stream.protocol import FrameParser

from ._stream_support import Collector, wait_until
from .test_real_payloads import _assert_same_form, _collect

FUT: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).parent / "fixtures/real/ws/futures_docs_examples.json").read_text())
UTC = timezone.utc


def _decode(channel: str) -> E.StreamEvent:
    """The docs page's frame of ``channel`` through the futures decoder: exactly one event, nothing refused."""
    parser = FrameParser("futures")
    rows, statuses = parser.parse(orjson.dumps(FUT[channel]), 7)
    assert statuses == [] and len(rows) == 1
    assert (parser.malformed_events, parser.unknown_events) == (0, 0)
    return E.as_event(rows[0])


def test_docs_minute_aggregate() -> None:
    am = _decode("AM")
    assert (am.kind, am.symbol) == ("agg_minute", "6CH5")
    assert (am.open, am.high, am.low, am.close, am.volume) == (6994.5, 6995, 6994.5, 6995, 91)
    assert am.time == datetime(2025, 7, 8, 0, 15, tzinfo=UTC)  # s = 1751933700000 ms
    assert am.end_ms == 1751933760000 and am.end_ms - am.time_ms == 60_000
    # No "vw" on this feed, and "dv" is not made into one: 1353.1 / 91 = 14.87, outside the bar's 6994.5..6995.
    assert math.isnan(am.vwap)
    assert math.isnan(am.price) and math.isnan(am.bid) and am.exchange == 0


def test_docs_per_second_page_example_is_a_minute_bar_and_a_real_A_frame_is_a_second_bar() -> None:
    # The per-second page's example says ev "AM" over a 60 s window: the tag decides what it is.
    a = _decode("A")
    assert (a.kind, a.symbol, a.open, a.close, a.volume) == ("agg_minute", "6CH5", 6994.5, 6995, 91)
    assert a.time == datetime(2024, 12, 20, 17, 51, tzinfo=UTC) and a.end_ms - a.time_ms == 60_000
    frame = [{**FUT["A"][0], "ev": "A"}]
    rows, _ = FrameParser("futures").parse(orjson.dumps(frame), 7)
    second = E.as_event(rows[0])
    assert second.kind == "agg_second" and second[1:] == a[1:]


def test_docs_trade() -> None:
    t = _decode("T")
    assert (t.kind, t.symbol, t.size) == ("trade", "ESZ4", 100)
    # The page's price is the integer 606450 (ESZ4 traded near 6,064.50 that day); kept as sent, not rescaled.
    assert t.price == 606450 and type(t.price) is int
    assert t.time == datetime(2024, 12, 13, 15, 27, 8, 363000, tzinfo=UTC)  # t = 1734103628363 ms
    assert t.exchange == 0 and math.isnan(t.bid) and t.end_ms == 0  # no "x"; "q" and "z" are not carried


def test_docs_quote() -> None:
    q = _decode("Q")
    assert (q.kind, q.symbol, q.bid, q.ask, q.bid_size, q.ask_size) == ("quote", "ESZ4", 114.125, 114.128, 100, 160)
    # The event time is "t" as documented (here 2018-09-04), not the bid/ask submission times "bt"/"at".
    assert q.time == datetime(2018, 9, 4, 4, 53, 38, 784000, tzinfo=UTC)  # t = 1536036818784 ms
    assert math.isnan(q.price) and q.exchange == 0


def test_docs_quote_without_a_side_keeps_it_missing() -> None:
    one_sided = [{k: v for k, v in FUT["Q"][0].items() if k not in ("ap", "as", "at")}]
    rows, _ = FrameParser("futures").parse(orjson.dumps(one_sided), 7)
    q = E.as_event(rows[0])
    assert q.bid == 114.125 and math.isnan(q.ask) and math.isnan(q.ask_size)


Make = Callable[..., MassiveConnector]


def test_docs_frames_over_a_socket_reach_a_listener_as_decoded(make_connector: Make, ws_sandbox: Sandbox) -> None:
    """The four published frames sent by the sandbox's socket to a connector streaming the two contracts
    (neither listed by the sandbox, so every event seen is one of these)."""
    c = make_connector()
    seen = Collector()
    c.add_listener(seen)
    c.start_stream(["ESZ4", "6CH5"], kinds=["trade", "quote", "agg_minute", "agg_second"])
    wait_until(lambda: c.get_stats()["connected"], what="the futures connection")
    wait_until(lambda: {"T.ESZ4", "AM.6CH5"} <= ws_sandbox.ws.subscriptions("futures"), what="the subscriptions")
    for channel in ("AM", "A", "T", "Q"):
        assert ws_sandbox.ws.send_raw(orjson.dumps(FUT[channel]), "futures") == 1
    wait_until(lambda: len(seen.data()) == 4, what="the four events")
    got = [ev[:3] + ev[4:] for ev in seen.data()]  # all but received_ns
    assert got == [ev[:3] + ev[4:] for ev in map(_decode, ("AM", "A", "T", "Q"))]
    assert c.get_stats()["malformed"] == 0


# --- the sandbox speaks the same form -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def futures_sandbox() -> Iterator[Sandbox]:
    with Sandbox(rest=False, websocket=True, clock_speed=60) as sb:
        yield sb


def test_sandbox_futures_frames_match_the_docs_forms(futures_sandbox: Sandbox) -> None:
    got = _collect(futures_sandbox, "futures", "AM.*,A.*,T.*,Q.*", {"AM", "A", "T", "Q"})
    forms: dict[str, dict[str, Any]] = {
        "AM": {"ints": {"v", "n", "s", "e"}, "ms": {"s", "e"}},
        "A": {"ints": {"v", "n", "s", "e"}, "ms": {"s", "e"}},  # the per-second page's example (ev aside)
        # "z" appears in the trades page's example but not in its field table (it is the stocks tape id)
        "T": {"ints": {"s", "t", "q"}, "ms": {"t"}, "optional": {"z"}},
        "Q": {"ints": {"bs", "as", "bt", "at", "t"}, "ms": {"bt", "at", "t"}},
    }
    for ev, ours in got.items():
        form = forms[ev]
        _assert_same_form(f"futures.{ev}", FUT[ev][0], ours, optional=form.get("optional", set()),
                          ints=form["ints"], ms=form["ms"])
        parser = FrameParser("futures")
        rows, _ = parser.parse(orjson.dumps([ours]), 1)
        assert len(rows) == 1 and parser.malformed_events == 0
        event = E.as_event(rows[0])
        if ev in ("A", "AM"):
            assert event.kind == ("agg_second" if ev == "A" else "agg_minute")
            assert event.end_ms - event.time_ms == (1000 if ev == "A" else 60_000)
