"""On-disk cache of query results (parquet), so identical repeat queries cost no call and no quota.

Entries are keyed by a hash of everything that determines the answer (endpoint base URL, ticker,
bar size, range, adjustment). Only ranges that ended at least :data:`SETTLE` ago are cached, since
the newest bars still change; split-adjusted results expire after :data:`ADJUSTED_TTL` because a new
split re-adjusts history.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import pandas as pd

from .storage import ensure_dir, write_parquet

log = logging.getLogger(__name__)

SETTLE = pd.Timedelta(hours=1)
ADJUSTED_TTL = 24 * 3600.0


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
        try:
            age = time.time() - self._path(key).stat().st_mtime
        except FileNotFoundError:
            return False
        return max_age is None or age <= max_age

    def put(self, key: str, df: pd.DataFrame) -> None:
        try:
            write_parquet(df, self._path(key))
        except OSError as exc:  # a full disk must not fail the fetch that already succeeded
            log.warning("could not write cache entry: %s", exc)

    def clear(self) -> int:
        files = list(self.folder.glob("*/*.parquet"))
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)
