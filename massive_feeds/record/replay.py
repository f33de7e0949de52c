"""Replay a recording through the same listener interface as the live stream.

:class:`RecordingSource` owns an :class:`~massive_feeds.stream.hub.EventHub`, exactly as a live
connector does, and publishes the recorded batches into it — as fast as possible (``speed=None``) or
paced at ``speed`` × real time from the events' provider timestamps. Consumers (the Backtrader feed,
vectorbt loaders, your own callbacks) cannot tell it from the socket except by pacing.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..stream.events import STATUS, STOPPED, StatusEvent
from ..stream.hub import DEFAULT_MAX_PENDING, AnyListener, EventHub
from .reader import RecordingReader

log = logging.getLogger(__name__)


def _batch_time_ms(batch: list[Any]) -> int | None:
    first = batch[0]
    return getattr(first, "time_ms", None) if first.kind != STATUS else None


def _coalesced(batches: Iterable[list[Any]], limit: int) -> Iterator[list[Any]]:
    """Consecutive data batches joined up to ``limit`` events; control batches (gaps, statuses) alone,
    in their place."""
    pending: list[Any] = []
    for batch in batches:
        if batch[0].kind in ("gap", "status"):
            if pending:
                yield pending
                pending = []
            yield batch
            continue
        if pending and len(pending) + len(batch) > limit:
            yield pending
            pending = []
        if pending:
            pending.extend(batch)
        else:
            pending = list(batch)
    if pending:
        yield pending


class RecordingSource:
    """An event source reading a recording folder. ``start()`` begins publishing; the last event is a
    ``stopped`` status with message ``replay finished``."""

    def __init__(self, path: str | Path, speed: float | None = None, *, coalesce: int = 0) -> None:
        self._setup(speed)
        self.reader = RecordingReader(path)
        # as fast as possible, consecutive data batches may go out as one of up to ``coalesce`` events:
        # the same events in the same order, with a thread hand-off per few hundred events instead of
        # per recorded frame (a paced stream records frames of a few events)
        self.coalesce = coalesce if speed is None else 0

    def _setup(self, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        self.speed = speed
        self._hub = EventHub()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.published = 0

    def __repr__(self) -> str:
        return f"RecordingSource('{self.reader.path}', speed={self.speed}, published={self.published})"

    def add_listener(self, fn: Any, *, batched: bool = False, symbols: Iterable[str] | None = None,
                     kinds: Iterable[str] | None = None, max_pending: int = DEFAULT_MAX_PENDING,
                     name: str | None = None) -> AnyListener:
        return self._hub.add_listener(fn, batched=batched, symbols=symbols, kinds=kinds,
                                      max_pending=max_pending, name=name)

    def remove_listener(self, listener: AnyListener, *, drain: bool = True) -> None:
        self._hub.remove_listener(listener, drain=drain)

    def start(self) -> "RecordingSource":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="massive-replay", daemon=True)
            self._thread.start()
        return self

    def _batches(self) -> Iterable[list[Any]]:
        batches = self.reader.batches()
        return _coalesced(batches, self.coalesce) if getattr(self, "coalesce", 0) > 0 else batches

    def _run(self) -> None:
        t0_wall = time.monotonic()
        t0_event: int | None = None
        try:
            for batch in self._batches():
                if self._stop.is_set():
                    break
                at = _batch_time_ms(batch)
                if self.speed is not None and at is not None:
                    t0_event = at if t0_event is None else t0_event
                    delay = (at - t0_event) / 1000 / self.speed - (time.monotonic() - t0_wall)
                    if delay > 0 and self._stop.wait(delay):
                        break
                if batch[0].kind in ("gap", "status"):
                    for ev in batch:
                        self._hub.publish_control(ev)
                else:
                    self._hub.publish(batch)
                self.published += len(batch)
        finally:
            self._hub.publish_control(StatusEvent(STATUS, "", STOPPED, "replay finished", time.time_ns()))
            self.finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every recorded event was published and delivered to the listeners."""
        done = self.finished.wait(timeout)
        return done and self._hub.wait_idle(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._hub.close()
