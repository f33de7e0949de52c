"""Atomic file writes: write to a temp file in the same folder, fsync, then rename over the target.

A crash, ``kill -9`` or full disk mid-write leaves the old file (or none) in place, never half a file.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TEMP_SUFFIX = ".partial"


def ensure_dir(folder: Path, what: str) -> Path:
    """Create ``folder`` (and parents) for ``what`` (e.g. "REST cache"), or raise a one-line
    :class:`~massive_feeds.errors.InvalidSettingError` naming it when it cannot be created or written."""
    from .errors import InvalidSettingError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", str(folder))
    except OSError as exc:
        raise InvalidSettingError(
            f"cannot write the {what} in {folder} ({exc.strerror or exc}); make it writable, free space, or "
            "point MASSIVE_FEEDS_HOME at a writable folder") from None
    return folder


@contextmanager
def atomic_path(target: Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target`` (after an
    fsync of the file and, after the rename, of the folder when ``durable``). On failure it is removed.

    ``durable=False`` is for caches: an entry a power cut damaged can be fetched again, and skipping
    the syncs is cheaper than paying them on every write."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        if durable:
            _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(target: Path, mode: str = "wb") -> Iterator[IO[bytes]]:
    with atomic_path(target) as tmp, open(tmp, mode) as fh:
        yield fh


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_parquet(df: pd.DataFrame, target: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``df`` to ``target`` atomically, with optional key/value metadata in the schema."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        merged = {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
        table = table.replace_schema_metadata(merged)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(target)


def read_parquet_metadata(path: Path) -> dict[str, str]:
    """Our key/value metadata of a parquet file, without reading its rows."""
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"pandas") and k != b"ARROW:schema"}
