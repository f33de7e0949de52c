"""Fan-out of event batches to listeners.

A listener normally runs on its own daemon thread behind a bounded queue: the socket thread only
appends a batch reference, so no consumer can stall reading (which is what earns a ``slow_consumer``
disconnect). When the queue is full, new batches are dropped, counted, logged and — once there is
room again — announced by an ``overflow`` :class:`~massive_feeds.stream.events.StatusEvent` placed
exactly where the hole is: loss is never silent. Exceptions a listener raises are caught, counted
and logged (throttled) and never reach other listeners or the socket.

An *inline* listener (``inline=True``) instead runs on the publishing thread, like the official
client's processor: no queue, no thread switch, no drops — and no protection, so it must be quick
(count, append to your own queue). Its exceptions are still isolated.

Live batches are :class:`~massive_feeds.stream.protocol.TypedFrame` objects: decoded wire structs from
which each listener builds its ``StreamEvent`` objects on its own thread (the structs are invisible to
the garbage collector, while a queue of tuple-subclass instances is rescanned by every collection —
that alone cost ~40 % of throughput). Other publishers (a replay, tests) hand over lists of
``StreamEvent`` objects or of plain tuples in its field order; listeners always receive
:class:`StreamEvent` objects.

:class:`EventHub` is the one delivery mechanism for live streams *and* replays: a replay source owns
a hub, publishes the recorded batches into it, and its listeners behave exactly as live ones.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from time import monotonic, time_ns
from typing import Any, Callable, Iterable, Protocol, Sequence

from .events import GAP, OVERFLOW, STATUS, Event, StatusEvent, as_events
from .protocol import TypedFrame
from .throttle import ThrottledLog

log = logging.getLogger(__name__)

EventCallback = Callable[[Event], Any]
BatchCallback = Callable[[Sequence[Event]], Any]
DEFAULT_MAX_PENDING = 100_000


class _Delivery:
    """Filtering, materialisation and error isolation shared by both listener kinds."""

    def __init__(self, fn: EventCallback | BatchCallback, *, batched: bool, symbols: Iterable[str] | None,
                 kinds: Iterable[str] | None, name: str | None) -> None:
        self.fn = fn
        self.batched = batched
        self.symbols: frozenset[str] | None = frozenset(symbols) if symbols is not None else None
        self.kinds: frozenset[str] | None = frozenset(kinds) if kinds is not None else None
        self.name = name or f"massive-listener-{getattr(fn, '__name__', type(fn).__name__)}"
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self._warn_error = ThrottledLog(log, logging.ERROR, interval=10.0)

    def _deliver(self, batch: Sequence[Any]) -> None:
        if type(batch) is TypedFrame:
            kind = batch.kind
            if kind is not None and self.symbols is None:  # one kind: the filter is one test per frame
                if self.kinds is not None and kind not in self.kinds:
                    return
                # events built here, on the consuming thread (see TypedFrame), straight from the structs
                if self.batched:
                    self._send(batch.events(), True)
                else:  # each event built just before its call (TypedFrame.deliver isolates fn as _send does)
                    batch.deliver(self.fn, self._failed)  # type: ignore[arg-type]
                    self.delivered += len(batch)
                return
            batch = batch.events()  # mixed kinds, or a symbol filter: built, then filtered below
            ready = True
        elif batch[0][0] in (STATUS, GAP):
            if self.symbols is not None or self.kinds is not None:
                batch = [ev for ev in batch if self._accept(ev)]
            self._send(batch, True)
            return
        else:
            ready = False  # a published list of rows or events, made StreamEvents in _send
        # Data batches (one frame of rows or events): filter in one comprehension, no call per event.
        kinds, symbols = self.kinds, self.symbols
        if symbols is not None:
            if kinds is not None:
                batch = [r for r in batch if r[0] in kinds and r[1] in symbols]
            else:
                batch = [r for r in batch if r[1] in symbols]
        elif kinds is not None:
            batch = [r for r in batch if r[0] in kinds]
        self._send(batch, ready)

    def _send(self, batch: Sequence[Any], ready: bool) -> None:
        """Deliver a batch (nothing if empty): event objects when ``ready`` (control events, StreamEvents
        built from a TypedFrame), else published rows (made StreamEvents here)."""
        if not batch:
            return
        fn = self.fn
        if self.batched:
            try:
                fn(batch if ready else list(as_events(batch)))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - isolate the consumer
                self._failed(exc)
        else:
            # rows become StreamEvents in C (map over tuple.__new__); the one Python call per event is fn's
            events: Iterable[Any] = batch if ready else as_events(batch)
            for ev in events:
                try:
                    fn(ev)
                except Exception as exc:  # noqa: BLE001
                    self._failed(exc)
        self.delivered += len(batch)

    def _accept(self, ev: Any) -> bool:
        kind = ev[0]
        if kind == STATUS:
            return True
        if kind == GAP:
            return self.symbols is None or not self.symbols.isdisjoint(ev.symbols)
        return (self.kinds is None or kind in self.kinds) and (self.symbols is None or ev[1] in self.symbols)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._warn_error("listener %s raised %s: %s (errors so far: %d); the stream continues",
                         self.name, type(exc).__name__, exc, self.errors, exc_info=exc)

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "batched": self.batched, "inline": False, "pending": 0,
                "delivered": self.delivered, "dropped": self.dropped, "errors": self.errors}


class Listener(_Delivery):
    """One consumer: ``fn`` runs on a dedicated daemon thread, in publication order.

    Args:
        fn: ``fn(event)``, or ``fn(batch)`` with ``batched=True`` (a list of events per frame).
        batched: deliver per frame instead of per event (cheaper at high rates).
        symbols: only data events of these tickers (and gaps touching them); ``None`` = all.
        kinds: only data events of these kinds; gap and status events always pass.
        max_pending: queued events beyond which new batches are dropped (and counted).
        name: thread name, shown in logs and stats.
    """

    inline = False

    def __init__(
        self,
        fn: EventCallback | BatchCallback,
        *,
        batched: bool = False,
        symbols: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        name: str | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        super().__init__(fn, batched=batched, symbols=symbols, kinds=kinds, name=name)
        self.max_pending = max_pending
        self._queue: deque[Sequence[Any]] = deque()
        self._pending = 0
        self._unreported_drops = 0
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition(threading.Lock())
        self._warn_drop = ThrottledLog(log, interval=5.0)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"Listener({self.name!r}, batched={self.batched}, pending={self._pending}, "
                f"delivered={self.delivered}, dropped={self.dropped}, errors={self.errors})")

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def closed(self) -> bool:
        return self._stopping

    # --- producer side (any thread) ---------------------------------------------------------------
    def offer(self, batch: Sequence[Any], wake: bool = True) -> bool:
        """Queue a batch; False (and counted) if the queue is full or the listener closed.

        ``wake=False`` leaves the worker asleep until :meth:`wake`: a producer that publishes many
        frames in a row wakes it once, sparing a thread switch per frame."""
        n = len(batch)
        with self._cond:
            if self._stopping:
                return False
            if self._pending + n <= self.max_pending:
                if self._unreported_drops:
                    self._queue.append([self._overflow_notice()])
                self._queue.append(batch)
                self._pending += n
                if wake:
                    self._cond.notify()
                return True
            self.dropped += n
            self._unreported_drops += n
        self._warn_drop("listener %s is %d events behind; dropped %d (total %d). Its callback is too slow "
                        "for this stream: make it faster, use batched=True, or raise max_pending.",
                        self.name, self._pending, n, self.dropped)
        return False

    def offer_control(self, event: Event) -> None:
        """Queue a gap/status event regardless of the bound (they are rare and must not be lost)."""
        with self._cond:
            if self._stopping:
                return
            self._queue.append([event])
            self._pending += 1
            self._cond.notify()

    def wake(self) -> None:
        """Wake the worker if anything is queued (after ``offer(..., wake=False)``)."""
        with self._cond:
            if self._queue:
                self._cond.notify()

    def _overflow_notice(self) -> StatusEvent:
        n, self._unreported_drops = self._unreported_drops, 0
        return StatusEvent(STATUS, "", OVERFLOW, f"{n} events dropped: listener {self.name} fell behind",
                           time_ns())

    # --- consumer side ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                batches, self._queue = self._queue, deque()
                self._pending = 0
                self._busy = True
            try:
                for batch in batches:
                    self._deliver(batch)
            finally:
                # Free the delivered frames here, not when ``batches`` is next rebound under the lock: freeing
                # thousands of decoded events takes a while, and the socket thread's offer() needs that lock.
                batches = batch = None  # type: ignore[assignment]
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # --- lifecycle --------------------------------------------------------------------------------
    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far was delivered. False on timeout."""
        if threading.current_thread() is self._thread:
            return not self._queue
        deadline = None if timeout is None else monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, *, drain: bool = True, timeout: float = 5.0) -> None:
        """Stop the worker, first delivering what is queued when ``drain`` (bounded by ``timeout``)."""
        with self._cond:
            if self._stopping:
                return
            if not drain:
                self.dropped += self._pending
                self._queue.clear()
                self._pending = 0
            elif self._unreported_drops:
                self._queue.append([self._overflow_notice()])
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "pending": self._pending, "max_pending": self.max_pending}


class InlineListener(_Delivery):
    """A consumer run synchronously on the publishing thread (see the module docstring)."""

    inline = True
    pending = 0

    def __init__(self, fn: EventCallback | BatchCallback, *, batched: bool = False,
                 symbols: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                 name: str | None = None) -> None:
        super().__init__(fn, batched=batched, symbols=symbols, kinds=kinds, name=name)
        self.closed = False

    def __repr__(self) -> str:
        return (f"InlineListener({self.name!r}, batched={self.batched}, delivered={self.delivered}, "
                f"errors={self.errors})")

    def offer(self, batch: Sequence[Any], wake: bool = True) -> bool:
        if self.closed:
            return False
        self._deliver(batch)
        return True

    def offer_control(self, event: Event) -> None:
        if not self.closed:
            self._deliver([event])

    def wake(self) -> None:
        pass

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self, *, drain: bool = True, timeout: float = 5.0) -> None:
        self.closed = True

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "inline": True}


AnyListener = Listener | InlineListener


class EventSource(Protocol):
    """What the recorder and the Backtrader live/replay feed need from a stream of events.

    Implemented by :class:`EventHub`, :class:`~massive_feeds.stream.connector.MassiveConnector` and
    the replay source (:class:`massive_feeds.record.replay.RecordingSource`).
    """

    def add_listener(self, fn: EventCallback | BatchCallback, *, batched: bool = False,
                     symbols: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                     max_pending: int = DEFAULT_MAX_PENDING, name: str | None = None) -> AnyListener: ...

    def remove_listener(self, listener: AnyListener, *, drain: bool = True) -> None: ...


class EventHub:
    """Publishes event batches to every registered listener (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[AnyListener, ...] = ()  # replaced, never mutated: publish needs no lock
        self._retired = {"dropped": 0, "errors": 0}  # totals of removed listeners, so stats never shrink

    def __repr__(self) -> str:
        return f"EventHub(listeners={len(self._listeners)})"

    @property
    def listeners(self) -> tuple[AnyListener, ...]:
        return self._listeners

    def add_listener(self, fn: EventCallback | BatchCallback, *, batched: bool = False,
                     symbols: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                     max_pending: int = DEFAULT_MAX_PENDING, name: str | None = None,
                     inline: bool = False) -> AnyListener:
        """Register ``fn`` (see :class:`Listener` / :class:`InlineListener`). Returns the handle to remove it."""
        listener: AnyListener
        if inline:
            listener = InlineListener(fn, batched=batched, symbols=symbols, kinds=kinds, name=name)
        else:
            listener = Listener(fn, batched=batched, symbols=symbols, kinds=kinds, max_pending=max_pending,
                                name=name)
        with self._lock:
            self._listeners = (*self._listeners, listener)
        return listener

    def remove_listener(self, listener: AnyListener, *, drain: bool = True) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)
        listener.close(drain=drain)
        self._retire(listener)

    def _retire(self, listener: AnyListener) -> None:
        with self._lock:
            self._retired["dropped"] += listener.dropped
            self._retired["errors"] += listener.errors

    def publish(self, batch: Sequence[Any], wake: bool = True) -> None:
        """Hand a batch of data events (``StreamEvent`` objects or rows in its field order) to every
        listener; drops are counted per listener. With ``wake=False`` threaded listeners sleep on
        until :meth:`wake` (see :meth:`Listener.offer`)."""
        for listener in self._listeners:
            listener.offer(batch, wake)

    def wake(self) -> None:
        for listener in self._listeners:
            listener.wake()

    def publish_control(self, event: Event) -> None:
        """Hand a gap/status event to every listener, bypassing queue bounds."""
        for listener in self._listeners:
            listener.offer_control(event)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every listener delivered what was published so far."""
        deadline = None if timeout is None else monotonic() + timeout
        for listener in self._listeners:
            remaining = None if deadline is None else max(0.0, deadline - monotonic())
            if not listener.wait_idle(remaining):
                return False
        return True

    def close(self, *, drain: bool = True, timeout: float = 5.0) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, ()
        for listener in listeners:
            listener.close(drain=drain, timeout=timeout)
            self._retire(listener)

    def stats(self) -> dict[str, Any]:
        listeners = [x.stats() for x in self._listeners]
        return {"listeners": listeners,
                "dropped": self._retired["dropped"] + sum(x["dropped"] for x in listeners),
                "errors": self._retired["errors"] + sum(x["errors"] for x in listeners),
                "pending": sum(x["pending"] for x in listeners)}
