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

from .runtime import current
from .storage import ensure_dir, read_parquet_frame, write_parquet_table

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
        pending = _writer().pending.get(path)
        if pending is not None:  # written a moment ago by put_later, still on its way to disk
            return pending.copy()
        try:
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None
            return read_parquet_frame(path, path.name)  # page checksums and seal verified: bit rot is a miss
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged entry is a miss (fetched again), never an error for the user
            log.warning("discarding damaged cache entry %s (it is fetched again): %s", path.name, exc)
            path.unlink(missing_ok=True)
            return None

    def has(self, key: str, max_age: float | None = None) -> bool:
        """Whether an entry exists (and is at most ``max_age`` seconds old), without reading it."""
        if self._path(key) in _writer().pending:
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
        copy is made up front). Entries are written one after another by the runtime's one long-lived writer thread
        (no thread start, with its handshake, on the caller's path); closing the runtime (at exit for the default
        one) finishes the queued writes, so a script that ends right away still gets its entry.
        """
        _writer().submit(self._path(key), df.copy(deep=False))

    def clear(self) -> int:
        files = list(self.folder.glob("*/*.parquet"))
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)


class _Writer:
    """The runtime's writer of :meth:`ResultCache.put_later` entries: one long-lived pool thread, and the frames
    on their way to disk by path (answered from memory meanwhile). Closed with the runtime: queued entries are
    written first."""

    def __init__(self) -> None:
        self.pending: dict[Path, pd.DataFrame] = {}
        self.done = threading.Condition()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="result-cache-write")

    def submit(self, path: Path, frame: pd.DataFrame) -> None:
        with self.done:
            self.pending[path] = frame
        try:
            self.pool.submit(self.write, path, frame)
        except RuntimeError:  # the interpreter is shutting down (a fetch in a late thread): write it now
            self.write(path, frame)

    def write(self, path: Path, frame: pd.DataFrame) -> None:
        try:
            _write(path, frame)
        except Exception as exc:  # noqa: BLE001 - a background thread has nobody to raise to; a miss later
            log.warning("could not write cache entry %s: %s", path.name, exc)
        finally:
            with self.done:
                if self.pending.get(path) is frame:
                    del self.pending[path]
                self.done.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self.done:
            return self.done.wait_for(lambda: not self.pending, timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _writer() -> _Writer:
    """The current runtime's writer; per process id, since a forked child has none of its parent's threads
    (its parent writes the parent's pending entries; here they are misses until on disk)."""
    return current().shared("result-cache-writer", os.getpid(), _Writer)


def _write(path: Path, df: pd.DataFrame) -> None:
    write_parquet_table(pa.Table.from_pandas(df, preserve_index=False), path, durable=False, compression="zstd")


def wait_for_result_cache(timeout: float | None = None) -> bool:
    """Wait until every entry handed to :meth:`ResultCache.put_later` is on disk (or failed); ``False`` when
    ``timeout`` passed first. Reads never need it; tests and benchmarks use it to look at a settled cache."""
    return _writer().wait(timeout)
