"""Helpers shared by the stream tests (their fixtures live in ``_stream_fixtures``)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from massive_feeds.stream import ReconnectPolicy
from massive_feeds.stream.events import Event, GapEvent, StatusEvent, StreamEvent

#: Reconnect fast in tests (real default: 0.5 s doubling to 30 s).
FAST = ReconnectPolicy(initial=0.02, factor=2.0, cap=0.1, jitter=0.5, healthy_after=0.5)
#: 60x: one market minute per second, so minute aggregates arrive every second.
CLOCK_SPEED = 60.0


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class Collector:
    """A per-event listener that keeps everything (thread-safe enough: list.append under the GIL)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)

    def data(self, symbol: str | None = None, kind: str | None = None) -> list[StreamEvent]:
        return [e for e in list(self.events) if isinstance(e, StreamEvent)
                and (symbol is None or e.symbol == symbol) and (kind is None or e.kind == kind)]

    def statuses(self, status: str | None = None, market: str | None = None) -> list[StatusEvent]:
        return [e for e in list(self.events) if isinstance(e, StatusEvent)
                and (status is None or e.status == status) and (market is None or e.market == market)]

    def gaps(self, market: str | None = None) -> list[GapEvent]:
        return [e for e in list(self.events) if isinstance(e, GapEvent) and (market is None or e.market == market)]
