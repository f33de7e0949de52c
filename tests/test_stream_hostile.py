"""Hostile WebSocket values over real sockets to the sandbox: every event is either typed as documented or
counted as malformed (per kind) and never delivered, and one bad event never costs the good events of its
frame — for a listener, for the connector's stats, and for a recording."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import orjson
import pandas as pd
import pytest

from massive_feeds.record import WebSocketDataRecorder
from massive_feeds.sandbox import Sandbox
from massive_feeds.stream import MassiveConnector
from massive_feeds.stream import events as E

from ._stream_support import Collector, wait_until

Make = Callable[..., MassiveConnector]

#: Outside the sandbox's universe: the server never streams it by itself, so every event of it is ours.
SYM = "ZZHOST"
#: 2030-01-04 00:00 UTC, a minute boundary far from the sandbox clock's own events.
T0 = 1_893_715_200_000


def _trade(t: int, price: Any, size: Any, **over: Any) -> dict[str, Any]:
    return {"ev": "T", "sym": SYM, "x": 4, "p": price, "s": size, "t": t, "c": [12], **over}


GOOD_BEFORE = _trade(T0 + 1_000, 100.0, 10)
GOOD_AFTER = _trade(T0 + 2_000, 101.0, 20)
SENTINEL = _trade(T0 + 3_000, 102.0, 30)  # sent in a frame of its own after each hostile one: "all read"

# The cases of issue 27 (each was delivered as a bar before), and a few more of the same family.
HOSTILE: dict[str, bytes] = {
    "string price": orjson.dumps(_trade(T0 + 1_500, "102.5", 5)),
    "null price": orjson.dumps(_trade(T0 + 1_500, None, 5)),
    "negative price": orjson.dumps(_trade(T0 + 1_500, -5, 5)),
    "negative size": orjson.dumps(_trade(T0 + 1_500, 100.5, -5)),
    "float time": orjson.dumps(_trade(1.5e12, 100.5, 5)),
    "string size": orjson.dumps(_trade(T0 + 1_500, 100.5, "abc")),
    "numeric symbol": orjson.dumps(_trade(T0 + 1_500, 100.5, 5, sym=123)),
    "time in seconds": orjson.dumps(_trade((T0 + 1_500) // 1000, 100.5, 5)),
    "infinite price": b'{"ev":"T","sym":"ZZHOST","p":1e400,"s":5,"t":1893715201500}',
}


def _frame(*items: dict[str, Any] | bytes) -> bytes:
    return b"[" + b",".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items) + b"]"


def _send_hostile(sandbox: Sandbox, seen: Collector, bad: bytes, shift: int = 0) -> None:
    """One frame with a bad trade between two good ones, then a sentinel frame, the good trades' times
    moved by ``shift`` ms; returns once the sentinel was delivered (frames are read, parsed and delivered
    in order)."""
    before, after, sentinel = ({**t, "t": t["t"] + shift} for t in (GOOD_BEFORE, GOOD_AFTER, SENTINEL))
    assert sandbox.ws.send_raw(_frame(before, bad, after), "stocks") == 1
    assert sandbox.ws.send_raw(_frame(sentinel), "stocks") == 1
    wait_until(lambda: any(e.time_ms == sentinel["t"] for e in seen.data(SYM)), what="the sentinel trade")


def _streaming(make_connector: Make) -> tuple[MassiveConnector, Collector]:
    c = make_connector()
    seen = Collector()
    c.add_listener(seen)
    c.start_stream([SYM])
    wait_until(lambda: c.get_stats()["connected"], what="the stocks connection")
    return c, seen


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_trade_is_counted_never_delivered_and_its_frame_neighbours_are(
        case: str, make_connector: Make, ws_sandbox: Sandbox) -> None:
    c, seen = _streaming(make_connector)
    _send_hostile(ws_sandbox, seen, HOSTILE[case])
    got = seen.data(SYM)
    assert [(e.time_ms, e.price, e.size) for e in got] == [(T0 + 1_000, 100.0, 10), (T0 + 2_000, 101.0, 20),
                                                           (T0 + 3_000, 102.0, 30)]
    assert all(type(e.price) is float and type(e.time_ms) is int and e.symbol == SYM for e in got)
    stats = c.get_stats()
    assert stats["malformed"] == 1 and stats["malformed_by_kind"] == {"T": 1}
    stocks = stats["markets"]["stocks"]
    assert (stocks["malformed_frames"], stocks["malformed_events"], stocks["malformed_by_kind"]) == (0, 1, {"T": 1})
    notices = seen.statuses(E.MALFORMED)
    assert [(n.market, n.message) for n in notices] == [("stocks", "1 malformed event(s) skipped")]


def test_every_hostile_kind_in_one_frame_is_counted_once_each_and_logged_once_per_kind(
        make_connector: Make, ws_sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    c, seen = _streaming(make_connector)
    bad_quote = orjson.dumps({"ev": "Q", "sym": SYM, "bp": "1", "ap": 2.0, "t": T0 + 1_700})
    with caplog.at_level("WARNING", logger="massive_feeds.stream"):
        assert ws_sandbox.ws.send_raw(_frame(GOOD_BEFORE, *HOSTILE.values(), bad_quote, b"7", GOOD_AFTER),
                                      "stocks") == 1
        assert ws_sandbox.ws.send_raw(_frame(SENTINEL), "stocks") == 1
        wait_until(lambda: any(e.time_ms == SENTINEL["t"] for e in seen.data(SYM)), what="the sentinel trade")
    assert [e.time_ms for e in seen.data(SYM)] == [T0 + 1_000, T0 + 2_000, T0 + 3_000]
    stats = c.get_stats()
    assert stats["malformed_by_kind"] == {"T": len(HOSTILE), "Q": 1, "(not an object)": 1}
    assert stats["malformed"] == len(HOSTILE) + 2
    warned = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warned) == 3  # one line per kind, however many of it came
    assert sum("malformed T event" in w for w in warned) == 1 and sum("malformed Q event" in w for w in warned) == 1


def test_a_recording_with_hostile_events_gives_the_bars_of_the_good_ones(
        make_connector: Make, ws_sandbox: Sandbox, tmp_path: Path) -> None:
    c, seen = _streaming(make_connector)
    rec = WebSocketDataRecorder([SYM], tmp_path / "rec", connector=c, flush_interval=0.05)
    rec.start()
    for i, bad in enumerate(HOSTILE.values()):
        _send_hostile(ws_sandbox, seen, bad, shift=3_000 * i)
    rec.stop()
    assert len(rec.reader().events()) == 3 * len(HOSTILE)  # the good trades only
    bars = rec.get_dataframe("1min")
    ours = bars[bars["symbol"] == SYM]
    assert len(ours) == 1  # nine times three good trades, all in the minute starting at T0
    bar = ours.iloc[0]
    assert bar["timestamp"] == pd.Timestamp(T0, unit="ms", tz="UTC")
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (100.0, 102.0, 100.0, 102.0)
    assert bar["volume"] == 9 * (10 + 20 + 30)
    assert math.isclose(bar["vwap"], (100.0 * 10 + 101.0 * 20 + 102.0 * 30) / 60)
    assert c.get_stats()["malformed_by_kind"] == {"T": len(HOSTILE)}
