"""Local cache of flat-file day files, keyed by object key and ETag.

Layout under ``<cache_dir>/flatfiles/``, mirroring the bucket::

    us_stocks_sip/minute_aggs_v1/2024/01/2024-01-02.<etag>.csv.gz    # as downloaded (transient)
    us_stocks_sip/minute_aggs_v1/2024/01/2024-01-02.<etag>.parquet   # the cached, parsed day

A download is streamed (inflated and parsed while it arrives) and teed into the gzip entry, which
lands once every byte arrived and the gzip CRC checked out; the parsed batches meanwhile go to a
parquet file of the whole day (all tickers, zstd, sorted as the source), finished in the background
after the query returned, which then replaces the gzip: later queries read only the row groups of the
tickers they want and skip decompression altogether. A file whose ETag is no longer the listed one is never used, and is
deleted when its key is fetched again. Every file appears under its final name only through an
atomic rename (:func:`atomic_file`), so a killed download or conversion leaves at most a
``.partial`` temp file, which nothing reads and :meth:`DayFileCache.sweep` removes later.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import ContextManager

from ..storage import TEMP_SUFFIX, atomic_path, ensure_dir, open_parquet
from .s3 import RemoteFile

log = logging.getLogger(__name__)

GZIP = ".csv.gz"
PARQUET = ".parquet"
STALE_TEMP_SECONDS = 3600.0


def atomic_file(target: Path) -> ContextManager[Path]:
    """A temp path beside ``target``, renamed onto it when the block succeeds and removed when it fails.

    No fsync (:func:`massive_feeds.storage.atomic_path` with ``durable=False``): every cache entry can be
    fetched again, and one damaged by a power cut is caught on use (listed size, parquet footer, gzip
    CRC) and discarded, so the ~10 % the sync would cost each first read is not worth paying.
    """
    return atomic_path(target, durable=False)


def _safe(etag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", etag)


class DayFileCache:
    """Day files on disk. ``root`` is ``settings.cache_dir / "flatfiles"``."""

    def __init__(self, root: Path) -> None:
        self.root = ensure_dir(Path(root), "flat-file cache")  # an unusable home fails here, in one line

    def __repr__(self) -> str:
        return f"DayFileCache('{self.root}')"

    def _stem(self, key: str) -> Path:
        return self.root / key.removesuffix(GZIP)

    def parquet_path(self, remote: RemoteFile) -> Path:
        stem = self._stem(remote.key)
        return stem.with_name(f"{stem.name}.{_safe(remote.etag)}{PARQUET}")

    def gzip_path(self, remote: RemoteFile) -> Path:
        stem = self._stem(remote.key)
        return stem.with_name(f"{stem.name}.{_safe(remote.etag)}{GZIP}")

    def lookup(self, remote: RemoteFile) -> Path | None:
        """The cached parquet, or a complete downloaded gzip, for exactly this key and ETag; else ``None``.

        A damaged parquet (unreadable footer) or a gzip of the wrong size is discarded here.
        """
        parquet = self.parquet_path(remote)
        if parquet.exists():
            try:
                open_parquet(parquet, parquet.name)  # footer and seal (its pages are verified as they are read)
                return parquet
            except Exception as exc:  # noqa: BLE001 - any damage means "not cached"
                log.warning("discarding damaged cached flat file %s: %s", parquet.name, exc)
                parquet.unlink(missing_ok=True)
        gz = self.gzip_path(remote)
        try:
            if gz.stat().st_size == remote.size:
                return gz
        except FileNotFoundError:  # none, or its parquet replaced it a moment ago (a background conversion)
            return parquet if parquet.exists() else None
        gz.unlink(missing_ok=True)
        return None

    def versions(self, key: str) -> list[Path]:
        """Every cached file of ``key``, whatever its ETag (temp files excluded)."""
        stem = self._stem(key)
        prefix = f"{stem.name}."  # temp files start with a dot, so never with this
        try:  # one scandir, not a glob: every download asks this (see discard) of a folder of a month's days
            with os.scandir(stem.parent) as entries:
                return [Path(e.path) for e in entries if e.name.startswith(prefix) and e.name.endswith((GZIP, PARQUET))]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def discard(self, key: str, keep: Path | None = None, *, keep_etag: str | None = None) -> None:
        """Delete the cached copies of ``key`` (all ETags), except ``keep`` and those of ``keep_etag``."""
        spared = f".{_safe(keep_etag)}." if keep_etag is not None else None
        for path in self.versions(key):
            if path != keep and not (spared and spared in path.name):
                path.unlink(missing_ok=True)
                log.debug("removed cached flat file %s", path)

    def sweep(self, folder: Path, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete temp files under ``folder`` left by killed runs (older than ``older_than`` seconds,
        so a download running right now in another process is left alone)."""
        if not folder.is_dir():
            return 0
        limit = time.time() - older_than
        removed = 0
        for path in folder.glob(f".*{TEMP_SUFFIX}"):
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
