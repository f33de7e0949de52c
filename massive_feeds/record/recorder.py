"""``WebSocketDataRecorder``: record live quotes and trades durably, then turn them into bars.

The recorder is a listener on a :class:`~massive_feeds.stream.MassiveConnector` (its own, or one
you pass in). The listener thread only queues batches; a writer thread encodes them into the
append-only log (:mod:`.log`) and fsyncs them as a group no later than ``flush_interval`` after the
oldest of them arrived, so a ``kill -9`` loses at most the events of the last ``flush_interval`` plus
one flush. Each flush does bounded work (at most :data:`MAX_FLUSH_EVENTS` events), so one flush stays
short whatever the backlog; when events arrive faster than the disk takes them the bound cannot hold,
and the recorder says so — ``stats()["lagging"]`` with ``lag_seconds``, and a warning in the log —
instead of growing a backlog silently. Gaps from reconnects are written into the log as markers.
Write errors (disk full, permission) are counted in :meth:`stats`, the affected records are rolled
back so the log stays valid, writing is retried on the next flush, and :meth:`stop` raises the error.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ..config import Settings
from ..datasets import validate_name
from ..errors import InvalidInputError, RecordingError
from ..rest.reference import refuse_unknown_tickers
from ..runtime import resolve_settings
from ..schema import normalize_symbols
from ..storage import atomic_open
from ..stream.connector import MassiveConnector
from .bars import ticks_to_bars
from .log import DATA, GAP, STATUS, SegmentWriter, encode
from .reader import RecordingReader

log = logging.getLogger(__name__)

RECORDED_KINDS = ("trade", "quote", "value", "agg_minute")
MAX_BUFFERED_EVENTS = 5_000_000  # memory bound while the disk refuses writes
LISTENER_QUEUE = 2_000_000  # events the connector may queue for us during an fsync stall
#: Events written per flush at most: bounds one flush's time, hence what a crash can lose.
MAX_FLUSH_EVENTS = 50_000
LAG_WARNING_INTERVAL = 5.0  # seconds between "lagging" warnings
#: Seconds between group fsyncs by default: the most a crash loses (the README promises 100 ms); the one default,
#: the connector's ``enable_recording`` included.
FLUSH_INTERVAL = 0.1


class WebSocketDataRecorder:
    """Record every quote and trade of ``symbols`` to ``save_dir`` and build bars from them.

    Args:
        symbols: tickers to record.
        save_dir: parent folder; each session gets its own sub-folder (the raw event log).
        connector: a running :class:`MassiveConnector` to attach to (it keeps streaming after
            :meth:`stop`); by default the recorder runs its own.
        settings: configuration (the configured one when omitted, resolved by the runtime context: no key
            configured → the built-in sandbox), also used for datasets.
        flush_interval: seconds between group fsyncs (:data:`FLUSH_INTERVAL`: the most a crash loses).
        segment_bytes: log segment size before rotation.
        session: sub-folder name (default: a UTC timestamp).
        max_flush_events: events written per flush at most (bounds a flush's duration).
        check_symbols: when the recorder runs its own connector, :meth:`start` first asks the reference list
            whether each symbol is an active ticker (one REST call per ticker not confirmed today) and refuses
            unknown ones with :class:`~massive_feeds.errors.UnknownSymbolError` before the session folder exists
            (the stream would stay silent for them). ``False`` records whatever is asked (a caller's own checks).
    """

    def __init__(
        self,
        symbols: str | Iterable[str],
        save_dir: str | Path = "data/live_recorded",
        *,
        connector: Any = None,
        settings: Settings | None = None,
        api_key: str | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        segment_bytes: int = 64 * 1024 * 1024,
        session: str | None = None,
        max_flush_events: int = MAX_FLUSH_EVENTS,
        check_symbols: bool = True,
    ) -> None:
        if flush_interval <= 0:
            raise InvalidInputError("flush_interval must be positive")
        if max_flush_events < 1:
            raise InvalidInputError("max_flush_events must be at least 1")
        self.max_flush_events = max_flush_events
        self.check_symbols = check_symbols
        self.symbols = normalize_symbols(symbols)
        given = getattr(connector, "settings", None) if settings is None and api_key is None else None
        # the keyless default applies here (no key configured: the built-in sandbox), or the connector's own
        self.settings = given if isinstance(given, Settings) else resolve_settings(settings, api_key=api_key,
                                                                                 need=("rest", "websocket"))
        self.flush_interval = flush_interval
        self.segment_bytes = segment_bytes
        if session is not None:  # a sub-folder of save_dir, never a path: validated like a dataset name
            try:
                validate_name(session)
            except InvalidInputError:
                raise InvalidInputError(f"Invalid session name {session!r}: use letters, digits, '_', '-' and '.', "
                                        "no slashes, '..' or absolute paths") from None
        name = session or datetime.now(timezone.utc).strftime("session_%Y%m%dT%H%M%S_%f")
        self.path = Path(save_dir) / name
        self._connector = connector
        self._own_connector = connector is None
        self._listener: Any = None
        self._pending: deque[tuple[bytes, object, int, float]] = deque()  # kind, body, events, arrived
        self._pending_events = 0
        self._cond = threading.Condition()
        self._writer: SegmentWriter | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._error: OSError | None = None
        self._stats: dict[str, Any] = {"events_received": 0, "events_durable": 0, "records_durable": 0, "flushes": 0,
                       "write_errors": 0, "gaps": 0, "last_flush": None, "last_flush_seconds": 0.0,
                       "max_flush_seconds": 0.0, "lagging_episodes": 0}
        self._lagging = False
        self._last_lag_warning = -math.inf
        self._in_flight = 0  # records at the front of _pending being written right now

    def __repr__(self) -> str:
        state = "recording" if self._running else "stopped"
        return (f"WebSocketDataRecorder({state}, symbols={self.symbols}, path='{self.path}', "
                f"durable_events={self._stats['events_durable']})")

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, *, listen: bool = True) -> "WebSocketDataRecorder":
        """Open the log and start recording (streaming the symbols if the recorder owns the connector).

        ``listen=False`` opens the log without listening to the connector: the caller hands batches to
        :meth:`record_batch` itself (a paper session records exactly the batches its feed was given)."""
        if self._running:
            return self
        if listen and self._connector is None and self.check_symbols:
            # before the folder exists: a misspelt symbol would record silence into an empty session
            refuse_unknown_tickers(self.symbols, settings=self.settings)
        try:
            self._writer = SegmentWriter(self.path, self.segment_bytes)
        except OSError as exc:
            raise RecordingError(f"cannot record to {self.path}: {exc.strerror or exc}") from exc
        self._write_meta()
        self._running = True
        self._thread = threading.Thread(target=self._write_loop, name="massive-recorder", daemon=True)
        self._thread.start()
        if not listen:
            self._own_connector = False
            return self
        if self._connector is None:
            self._connector = MassiveConnector(settings=self.settings)
        self._listener = self._connector.add_listener(self._on_batch, batched=True, symbols=self.symbols,
                                                      kinds=RECORDED_KINDS, max_pending=LISTENER_QUEUE,
                                                      name="massive-recorder-listener")
        self._connector.start_stream(self.symbols)
        log.info("recording %s to %s", ", ".join(self.symbols), self.path)
        return self

    def stop(self) -> Path:
        """Stop recording, make everything received durable, and return the log folder.

        Raises :class:`RecordingError` if writes failed and could not be completed."""
        if not self._running:
            return self.path
        try:
            if self._own_connector:
                self._connector.stop_stream(self.symbols)
            if self._listener is not None:
                self._connector.remove_listener(self._listener, drain=True)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()
            assert self._thread is not None
            self._thread.join()
            if self._own_connector:
                self._connector.close()
                self._connector = None
        self._write_meta(stopped=True)
        if self._pending_events or self._error is not None:
            raise RecordingError(
                f"recording {self.path}: {self._pending_events} events could not be written "
                f"({self._error}); everything before them is intact"
            )
        return self.path

    def __enter__(self) -> "WebSocketDataRecorder":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def is_recording(self) -> bool:
        return self._running

    def stats(self) -> dict[str, Any]:
        """Counters: events received / durable, flushes, write errors, gaps, seconds since last flush,
        and whether the writer keeps its promise: ``lag_seconds`` (age of the oldest event not yet
        durable, 0 when none is waiting) and ``lagging`` (that age exceeds ``flush_interval`` plus the
        last flush's duration: input outruns the disk and a crash now would lose more than promised)."""
        with self._cond:
            out = dict(self._stats)
            lag = self._lag_seconds()
            lagging = self._is_lagging()
            out["pending_events"] = self._pending_events
        last = out.pop("last_flush")
        out["last_flush_age"] = None if last is None else time.monotonic() - last
        out["lag_seconds"] = lag
        out["lagging"] = lagging
        out["last_error"] = None if self._error is None else str(self._error)
        return out

    def wait_for_flush(self, timeout: float | None = None) -> bool:
        """Block until the writer's next successful flush (True) or ``timeout`` seconds (False)."""
        with self._cond:
            flushes = self._stats["flushes"]
            return self._cond.wait_for(lambda: self._stats["flushes"] > flushes or not self._running, timeout)

    def _lag_seconds(self) -> float:
        """Age of the oldest event not yet durable (call with the lock held)."""
        return time.monotonic() - self._pending[0][3] if self._pending else 0.0

    def _is_lagging(self) -> bool:
        """Whether an event the writer has not started on is already older than ``flush_interval`` plus
        a flush: the flush that will take it ends later than promised (call with the lock held)."""
        if len(self._pending) <= self._in_flight:
            return False
        waiting = time.monotonic() - self._pending[self._in_flight][3]
        return waiting > self.flush_interval + self._stats["last_flush_seconds"]

    # --- listener side (connector thread) ----------------------------------------------------------
    def record_batch(self, batch: Sequence[Any]) -> None:
        """Queue one batch of events for the log, in order (thread-safe; what the listener does)."""
        run: list[Any] = []
        for ev in batch:  # data before a control event is queued before it, so the log keeps the order
            if ev.kind in ("gap", "status"):
                if run:
                    self._on_batch(run)
                    run = []
                self._on_batch([ev])
            else:
                run.append(ev)
        if run:
            self._on_batch(run)

    def _on_batch(self, batch: Sequence[Any]) -> None:
        data = [ev for ev in batch if ev.kind not in ("gap", "status")]
        with self._cond:
            if data:
                self._queue(DATA, [tuple(ev) for ev in data], len(data))
            for ev in batch:
                if ev.kind == "gap":
                    self._stats["gaps"] += 1
                    self._queue(GAP, ev._asdict(), 0)
                elif ev.kind == "status":
                    self._queue(STATUS, ev._asdict(), 0)

    def _queue(self, kind: bytes, body: object, n_events: int) -> None:
        if self._pending_events + n_events > MAX_BUFFERED_EVENTS:
            log.error("recorder buffer full while the disk refuses writes: dropping %d events", n_events)
            self._stats.setdefault("dropped", 0)
            self._stats["dropped"] += n_events
            return
        self._pending.append((kind, body, n_events, time.monotonic()))
        self._pending_events += n_events
        self._stats["events_received"] += n_events

    # --- writer thread -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        assert self._writer is not None
        while True:
            with self._cond:
                if self._running:
                    # group commit: flush when the oldest waiting event is flush_interval old (at once
                    # if it already is: a backlog is worked off chunk by chunk without pausing)
                    wait = (self._pending[0][3] + self.flush_interval - time.monotonic() if self._pending
                            else self.flush_interval)
                    if wait > 0:
                        self._cond.wait(wait)
                batch = self._take()
                self._in_flight = len(batch)
                running = self._running
            if batch:
                self._flush(batch)
                self._check_lag()
            if not running:
                with self._cond:
                    if not self._pending or self._error is not None:
                        break
        try:
            self._writer.close()
        except OSError as exc:
            self._error = exc

    def _take(self) -> list[tuple[bytes, object, int, float]]:
        """The oldest pending records, up to ``max_flush_events`` events (at least one record), so
        one flush's work is bounded (call with the lock held)."""
        batch: list[tuple[bytes, object, int, float]] = []
        events = 0
        for item in self._pending:
            if batch and events + item[2] > self.max_flush_events:
                break
            batch.append(item)
            events += item[2]
        return batch

    def _check_lag(self) -> None:
        with self._cond:
            self._in_flight = 0
            lag = self._lag_seconds()
            pending = self._pending_events
            lagging = self._is_lagging()
        if lagging and not self._lagging:
            self._stats["lagging_episodes"] += 1
        self._lagging = lagging
        now = time.monotonic()
        if lagging and now - self._last_lag_warning >= LAG_WARNING_INTERVAL:
            self._last_lag_warning = now
            log.warning("recording %s is lagging: the oldest unwritten event is %.2f s old (%d events waiting, "
                        "last flush %.0f ms): events arrive faster than the disk takes them, so a crash now "
                        "would lose more than the promised %.0f ms", self.path, lag, pending,
                        self._stats["last_flush_seconds"] * 1000, self.flush_interval * 1000)

    def _flush(self, batch: list[tuple[bytes, object, int, float]]) -> None:
        writer = self._writer
        assert writer is not None
        start_seq = writer.next_sequence
        started = time.monotonic()
        try:
            writer.append([encode(kind, body) for kind, body, _, _ in batch])
            writer.sync()
        except OSError as exc:
            self._stats["write_errors"] += 1
            if self._error is None:
                log.error("recording %s: write failed (%s); will retry, earlier data is intact", self.path, exc)
            self._error = exc
            try:
                writer.rollback(start_seq)
            except OSError:
                pass
            return
        self._error = None
        n = sum(item[2] for item in batch)
        done = time.monotonic()
        with self._cond:
            for _ in batch:
                self._pending.popleft()
            self._in_flight = 0
            self._pending_events -= n
            self._stats["events_durable"] += n
            self._stats["records_durable"] += len(batch)
            self._stats["flushes"] += 1
            self._stats["last_flush"] = done
            self._stats["last_flush_seconds"] = done - started
            self._stats["max_flush_seconds"] = max(self._stats["max_flush_seconds"], done - started)
            self._cond.notify_all()  # wake wait_for_flush() callers

    def _write_meta(self, stopped: bool = False) -> None:
        meta_path = self.path / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta.update({"format": 1, "symbols": self.symbols, "kinds": list(RECORDED_KINDS),
                     "data_source": self.settings.source})
        meta.setdefault("started", datetime.now(timezone.utc).isoformat())
        if stopped:
            meta["stopped"] = datetime.now(timezone.utc).isoformat()
            meta["stats"] = {k: v for k, v in self.stats().items() if k != "last_flush_age"}
        try:
            with atomic_open(meta_path) as fh:
                fh.write(json.dumps(meta, indent=2).encode())
        except OSError as exc:  # metadata is a convenience; the log is the record
            log.warning("could not write %s: %s", meta_path, exc)

    # --- results ---------------------------------------------------------------------------------
    def reader(self) -> RecordingReader:
        return RecordingReader(self.path)

    def get_dataframe(self, resample_interval: str = "1min") -> pd.DataFrame:
        """Bars (standard schema plus quote columns) from everything durable so far."""
        return ticks_to_bars(self.reader().events(), resample_interval)

    def save_dataset(self, name: str | None = None, resample_interval: str = "1min", *,
                     tags: Iterable[str] = (), tag: str | None = None, overwrite: bool = False) -> Path:
        """Save the bars as a dataset (``massive_live_<tag>_<YYYYMMDD>`` by default) beside a copy of
        the raw event log, so the session can be replayed tick by tick later.

        Raises:
            NoDataError: nothing was recorded (no empty dataset is saved).
            DatasetExistsError: ``name`` is in use and ``overwrite`` is not set.
        """
        from .library import save_recording_dataset

        return save_recording_dataset(self.path, name, resample_interval, tags=tags, tag=tag, settings=self.settings,
                                      overwrite=overwrite)

    def append_to_dataset(self, dataset: str | Path, resample_interval: str = "1min") -> Path:
        """Append this session's bars to an existing dataset, by name or ``.parquet`` path (de-duplicated on
        symbol+timestamp; adjusted like the dataset when it holds split-adjusted or total-return prices)."""
        from .library import append_recording

        return append_recording(self.path, dataset, resample_interval, settings=self.settings)
