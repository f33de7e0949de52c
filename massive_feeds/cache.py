"""On-disk cache of query results (parquet), so identical repeat queries cost no call and no quota.

Entries are keyed by a hash of everything that determines the answer (endpoint base URL, ticker,
bar size, range, adjustment). Only ranges that ended at least :data:`SETTLE` ago are cached, since
the newest bars still change; split-adjusted results expire after :data:`ADJUSTED_TTL` because a new
split re-adjusts history.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .storage import atomic_path, ensure_dir

log = logging.getLogger(__name__)

SETTLE = pd.Timedelta(hours=1)
ADJUSTED_TTL = 24 * 3600.0


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def stable_origin(url: str) -> str:
    """``url`` as a cache key part: a local server's port dropped. The built-in sandbox listens on a random
    port each run, and its answers (a seeded market) are the same whatever the port, so a new process must
    hit what an earlier one cached; its caches already live apart from a real account's (``data_home``)."""
    from urllib.parse import urlsplit

    text = str(url).rstrip("/")
    parts = urlsplit(text)
    if parts.hostname in _LOOPBACK and parts.port is not None:
        return f"{parts.scheme}://{parts.hostname}{parts.path}"
    return text


class ResultCache:
    """A folder of parquet files named by the hash of the query that produced them."""

    def __init__(self, folder: Path) -> None:
        self.folder = ensure_dir(Path(folder), "result cache")  # an unusable home fails here, in one line

    def __repr__(self) -> str:
        return f"ResultCache('{self.folder}')"

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.parquet"

    def get(self, key: str, max_age: float | None = None) -> pd.DataFrame | None:
        path = self._path(key)
        with _pending_lock:
            pending = _pending.get(path)
        if pending is not None:  # written a moment ago by put_later, still on its way to disk
            return pending.copy()
        try:
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None
            return pd.read_parquet(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged entry is a miss, never an error for the user
            log.warning("discarding unreadable cache entry %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
            return None

    def has(self, key: str, max_age: float | None = None) -> bool:
        """Whether an entry exists (and is at most ``max_age`` seconds old), without reading it."""
        with _pending_lock:
            if self._path(key) in _pending:
                return True
        try:
            age = time.time() - self._path(key).stat().st_mtime
        except FileNotFoundError:
            return False
        return max_age is None or age <= max_age

    def put(self, key: str, df: pd.DataFrame) -> None:
        """Write the entry now (atomically: temp file + rename; no fsync, as an entry a power cut damaged
        is read as a miss)."""
        try:
            _write(self._path(key), df)
        except OSError as exc:  # a full disk must not fail the fetch that already succeeded
            log.warning("could not write cache entry: %s", exc)

    def put_later(self, key: str, df: pd.DataFrame) -> None:
        """Write the entry from a background thread, so the caller returns without waiting for it.

        The entry is as safe as with :meth:`put`: it appears under its name only once complete (a crash
        before leaves at most a temp file, which nothing reads); meanwhile :meth:`get` in this process
        answers from a private copy of ``df`` (later changes to ``df`` by the caller change nothing: pandas'
        copy-on-write, always on from pandas 3, copies the caller's columns when they are written, so no
        copy is made up front). Entries are written one after another by one long-lived worker thread (no
        thread start, with its handshake, on the caller's path); the interpreter finishes the queued writes
        before it exits, so a script that ends right away still gets its entry.
        """
        path = self._path(key)
        frame = df.copy(deep=False)
        with _pending_lock:
            _pending[path] = frame
        try:
            _writer.submit(_write_pending, path, frame)
        except RuntimeError:  # the interpreter is shutting down (a fetch in a late thread): write it now
            _write_pending(path, frame)

    def clear(self) -> int:
        files = list(self.folder.glob("*/*.parquet"))
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)


_pending: dict[Path, pd.DataFrame] = {}  # entries being written by put_later, by path
_pending_lock = threading.Condition()
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="result-cache-write")  # joined at exit


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: a fresh writer and lock, and no pending entries (the
    parent writes those; here they are misses until on disk)."""
    global _writer, _pending_lock
    _pending.clear()
    _pending_lock = threading.Condition()
    _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="result-cache-write")


os.register_at_fork(after_in_child=_after_fork_in_child)


def _write(path: Path, df: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path, durable=False) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _write_pending(path: Path, frame: pd.DataFrame) -> None:
    try:
        _write(path, frame)
    except Exception as exc:  # noqa: BLE001 - a background thread has nobody to raise to; a miss later
        log.warning("could not write cache entry %s: %s", path.name, exc)
    finally:
        with _pending_lock:
            if _pending.get(path) is frame:
                del _pending[path]
            _pending_lock.notify_all()


def wait_for_result_cache(timeout: float | None = None) -> bool:
    """Wait until every entry handed to :meth:`ResultCache.put_later` is on disk (or failed); ``False`` when
    ``timeout`` passed first. Reads never need it; tests and benchmarks use it to look at a settled cache."""
    with _pending_lock:
        return _pending_lock.wait_for(lambda: not _pending, timeout)
