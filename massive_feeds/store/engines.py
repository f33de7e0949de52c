"""Engines that run ingest tasks: a local thread or process pool, or a Dask distributed cluster.

Every engine runs the same function (:func:`~massive_feeds.store.daytask.run_day_task`) on the same picklable
tasks and yields ``(task, result or exception)`` as tasks finish, in completion order, so the driver can record
each day in the manifest as soon as it is written. Failed tasks are retried (``retries`` times) unless the error
cannot go away by itself (credentials, entitlement, bad input).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, Iterator, Literal, Protocol

from ..errors import AuthenticationError, ConfigurationError, InvalidInputError, NotEntitledError, QuotaExceededError
from .daytask import DayResult, DayTask, run_day_task

log = logging.getLogger(__name__)

EngineName = Literal["local", "dask"]
ENGINES: tuple[str, ...] = ("local", "dask")
#: Errors a retry cannot fix: the ingest stops at the first one.
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    AuthenticationError, NotEntitledError, ConfigurationError, InvalidInputError, QuotaExceededError,
)
Outcome = tuple[DayTask, "DayResult | BaseException"]


def default_workers() -> int:
    """One worker per core, at most 8 (each task holds one day, a few hundred MB at its peak)."""
    return max(1, min(8, os.cpu_count() or 2))


class Runner(Protocol):
    """What the ingest driver needs from an engine."""

    description: str

    def run(self, tasks: list[DayTask]) -> Iterator[Outcome]: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class PoolRunner:
    """A local pool: threads (default; pyarrow parses and compresses without the GIL) or processes."""

    def __init__(self, workers: int, processes: bool = False, retries: int = 1) -> None:
        self.workers = max(1, workers)
        self.processes = processes
        self.retries = max(0, retries)
        self._pool: Executor = (
            ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
            if processes else ThreadPoolExecutor(self.workers, thread_name_prefix="store-ingest")
        )
        self._futures: dict[Future[DayResult], DayTask] = {}
        kind = "process" if processes else "thread"
        self.description = f"local {kind} pool, {self.workers} worker(s)"

    def __repr__(self) -> str:
        return f"PoolRunner({self.description})"

    def run(self, tasks: list[DayTask]) -> Iterator[Outcome]:
        attempts: dict[int, int] = {}
        pending = {self._pool.submit(run_day_task, t): t for t in tasks}
        self._futures = dict(pending)
        while pending:
            for fut in as_completed(list(pending)):
                task = pending.pop(fut)
                if fut.cancelled():
                    continue
                exc = fut.exception()
                if exc is None:
                    yield task, fut.result()
                    continue
                tries = attempts[id(task)] = attempts.get(id(task), 0) + 1
                if tries <= self.retries and not isinstance(exc, FATAL_ERRORS):
                    log.warning("ingest of %s failed (%s); retrying (%d/%d)", task.remote.key, exc, tries,
                                self.retries)
                    try:
                        retry = self._pool.submit(run_day_task, task)
                    except RuntimeError as broken:  # the pool itself is gone (a worker process died)
                        yield task, broken
                        continue
                    pending[retry] = self._futures[retry] = task
                    break  # restart as_completed with the retry included
                yield task, exc

    def cancel(self) -> None:
        for fut in self._futures:
            fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _is_local_address(address: str) -> bool:
    """Whether a Dask scheduler address is on this machine (so its workers share our disk)."""
    from urllib.parse import urlsplit

    if address.startswith("inproc://"):
        return True
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


class DaskRunner:
    """Tasks on a Dask distributed cluster: an existing one (scheduler address or ``Client``), or a
    ``LocalCluster`` of ``workers`` single-threaded workers (one day per worker at a time) started here."""

    def __init__(self, scheduler: Any = None, workers: int = 2, processes: bool = True, retries: int = 2,
                 connect_timeout: str = "15s") -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigurationError(
                "engine='dask' needs dask.distributed: pip install 'massive-feeds[store]'") from None
        self.retries = max(0, retries)
        self._cluster: Any = None
        self._own_client = True
        self._futures: list[Any] = []
        if isinstance(scheduler, Client):
            self.client, self._own_client = scheduler, False
            where = "existing client"
        elif scheduler:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ConfigurationError(f"Cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
            where = f"scheduler {scheduler}"
        else:
            # Worker processes write their logs to our stderr: only their errors. A day that fails is
            # reported through its future (and the ingest report), not through their log lines.
            self._cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=processes,
                                         dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
            where = f"LocalCluster ({max(1, workers)} {'process' if processes else 'thread'} worker(s))"
        self.remote = self._cluster is None and not _is_local_address(str(self.client.scheduler.address))
        n = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        self.description = f"Dask {where}, {n} worker(s) now"
        log.info("ingest on %s; dashboard: %s", self.description, self.dashboard_link or "not available")
        if self._cluster is not None and importlib.util.find_spec("bokeh") is None:
            log.info("the Dask dashboard needs bokeh (pip install 'bokeh>=3.1') to show task progress")

    @property
    def dashboard_link(self) -> str | None:
        try:
            return str(self.client.dashboard_link)
        except Exception:  # noqa: BLE001 - a missing dashboard (no bokeh) must not stop the ingest
            return None

    def __repr__(self) -> str:
        return f"DaskRunner({self.description})"

    def run(self, tasks: list[DayTask]) -> Iterator[Outcome]:
        from distributed import as_completed as dask_completed

        if not tasks:
            return
        keys = [f"massive-ingest-{t.dataset.path.replace('/', '.')}-{t.day}-{os.urandom(4).hex()}" for t in tasks]
        futures = self.client.map(run_day_task, tasks, key=keys, retries=self.retries, pure=False)
        self._futures = futures
        by_key = {f.key: t for f, t in zip(futures, tasks)}
        for fut in dask_completed(futures):
            task = by_key[fut.key]
            if fut.status == "cancelled":
                continue
            if fut.status == "error":
                yield task, fut.exception()
            else:
                yield task, fut.result()
            fut.release()

    def cancel(self) -> None:
        if self._futures:
            self.client.cancel(self._futures)

    def close(self) -> None:
        self._futures = []
        # Shutting a cluster down makes distributed log the comms it closes (CommClosedError tracebacks
        # under load): expected at this point, so not shown; the ingest's outcome is already decided.
        with _quiet(_SHUTDOWN_LOGGERS):
            if self._own_client:
                self.client.close()
            if self._cluster is not None:
                self._cluster.close()


_SHUTDOWN_LOGGERS = ("distributed", "tornado", "asyncio")


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Only CRITICAL records from the loggers ``names`` inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_engine(engine: str, scheduler: Any = None) -> None:
    """Refuse an unknown engine, or a scheduler without ``engine="dask"``, with an :class:`InvalidInputError`."""
    if engine not in ENGINES:
        raise InvalidInputError(f"Invalid engine {engine!r}; use {' or '.join(repr(e) for e in ENGINES)}")
    if scheduler is not None and engine != "dask":
        raise InvalidInputError("A scheduler address only makes sense with engine='dask'")


def make_runner(engine: str, *, workers: int | None = None, scheduler: Any = None, processes: bool | None = None,
                retries: int | None = None) -> Runner:
    """The runner for ``engine`` (``local`` or ``dask``)."""
    check_engine(engine, scheduler)
    n = workers or default_workers()
    if engine == "dask":
        return DaskRunner(scheduler, n, True if processes is None else processes, 2 if retries is None else retries)
    return PoolRunner(n, bool(processes), 1 if retries is None else retries)
