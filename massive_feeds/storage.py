"""Atomic file writes (temp file in the same folder, fsync, rename over the target) and self-checking Parquet.

A crash, ``kill -9`` or full disk mid-write leaves the old file (or none) in place, never half a file.

Every Parquet file massive_feeds writes (datasets, the REST result cache, the flat-file cache, the store's day and
month files, split lists) goes through :func:`write_parquet_table` / :func:`sealed_writer`, and every read through
:func:`open_parquet` / :func:`read_parquet_table` / :func:`read_parquet_frame`, so bit rot is an error, never other
numbers:

* each data and dictionary page carries a CRC32 (``write_page_checksum``) that every read verifies
  (``page_checksum_verification``);
* the footer, which Parquet does not checksum, carries a *seal* (:data:`SEAL_KEY`): a SHA-256 of the Parquet schema
  (column names, physical and logical types), every key/value metadata entry (the Arrow schema, pandas metadata,
  ours) and the row count. A flipped byte there (``timestamp`` read as ``dimestamp``, a millisecond column read as
  microseconds, a dataset's JSON metadata) fails the seal.

Damage becomes a :class:`~massive_feeds.errors.CorruptFileError` naming the file; callers turn it into a cache miss
(caches) or a typed error of their own (datasets, store). Files written before seals and page checksums existed
have neither: they are read as before (nothing to verify against). The footer's min/max statistics stay outside
the seal (unknown until the writer closes), so no read trusts them to skip rows: flat-file cache days are picked by
their (checksummed) ticker column, the store's day, tick and month files by their sealed index; only store files
written before that index existed fall back to the statistics.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

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


def write_parquet(df: pd.DataFrame, target: Path, metadata: dict[str, str] | None = None, *,
                  durable: bool = True) -> Path:
    """Write ``df`` to ``target`` atomically (checksummed and sealed), with optional key/value metadata in the
    schema. ``durable=False`` skips the fsyncs (caches, see :func:`atomic_path`)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        merged = {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
        table = table.replace_schema_metadata(merged)
    return write_parquet_table(table, target, durable=durable, compression="zstd")


def read_parquet_metadata(path: Path) -> dict[str, str]:
    """Our key/value metadata of a parquet file, without reading its rows (the seal is checked: a damaged
    footer is a :class:`~massive_feeds.errors.CorruptFileError`)."""
    pf = open_parquet(path)
    meta = pf.schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"pandas") and k != b"ARROW:schema"}


# --- self-checking Parquet -------------------------------------------------------------------------------------
#: Writer options of every Parquet file we write: a CRC32 per page.
CHECKSUM_WRITE: dict[str, Any] = {"write_page_checksum": True}
#: Reader options of every Parquet file we read: verify those CRCs (files without them read as before).
CHECKSUM_READ: dict[str, Any] = {"page_checksum_verification": True}
#: The footer key holding the seal (see the module docstring).
SEAL_KEY = b"massive_feeds.seal"
#: What the Arrow/Parquet readers raise on damaged bytes (thrift, decompression, decoding, CRC, bad metadata
#: JSON). Missing files and permissions are not damage and pass through.
_DAMAGE = (pa.ArrowException, OSError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError)
_NOT_DAMAGE = (FileNotFoundError, PermissionError, IsADirectoryError)
_ARROW_WRITER = "parquet-cpp-arrow"
_WRITER_NAME = re.compile(r"^[\w .()+/:-]{1,120}$")  # e.g. "parquet-mr version 1.12.3 (build …)", "DuckDB"


def _schema_text(schema: pq.ParquetSchema) -> str:
    text = str(schema)
    return text.split("\n", 1)[1] if text.startswith("<") else text  # drop "<... object at 0x…>"


def _digest(schema: pq.ParquetSchema, kv: Mapping[bytes, bytes], rows: int) -> bytes:
    h = hashlib.sha256(_schema_text(schema).encode())
    for key in sorted(k for k in kv if k != SEAL_KEY):
        h.update(b"\x00%d:%s=%d:%s" % (len(key), key, len(kv[key]), kv[key]))
    h.update(b"\x00rows=%d" % rows)
    return h.hexdigest().encode()


class _Seal:
    """The seal of a file about to be written with ``schema`` and ``options``: its Parquet schema and key/value
    metadata are those of the same schema written empty (a dry run into memory), so only the rows are left."""

    def __init__(self, schema: pa.Schema, options: Mapping[str, Any]) -> None:
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, schema, **{**options, **CHECKSUM_WRITE}):
            pass
        md = pq.read_metadata(pa.BufferReader(sink.getvalue()))
        self.schema = md.schema
        self.kv = dict(md.metadata or {})

    def metadata(self, rows: int, extra: Mapping[bytes, bytes] | None = None) -> dict[bytes, bytes]:
        return {SEAL_KEY: _digest(self.schema, {**self.kv, **(extra or {})}, rows)}


class SealedWriter:
    """A :class:`pyarrow.parquet.ParquetWriter` (page checksums on) that counts the rows it writes and seals the
    footer when closed. ``add_key_value_metadata`` entries are covered by the seal."""

    def __init__(self, where: Any, schema: pa.Schema, **options: Any) -> None:
        self._seal = _Seal(schema, options)
        self._writer = pq.ParquetWriter(where, schema, **{**options, **CHECKSUM_WRITE})
        self._extra: dict[bytes, bytes] = {}
        self.rows = 0

    def write_table(self, table: pa.Table, row_group_size: int | None = None) -> None:
        self._writer.write_table(table, row_group_size=row_group_size)
        self.rows += table.num_rows

    def write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def add_key_value_metadata(self, kv: Mapping[str | bytes, str | bytes]) -> None:
        as_bytes = {(k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
                    for k, v in kv.items()}
        self._extra.update(as_bytes)
        self._writer.add_key_value_metadata(as_bytes)

    def close(self) -> None:
        """Seal and finish the file (once; a failed write is closed by the caller's cleanup unsealed)."""
        if self._writer.is_open:
            self._writer.add_key_value_metadata(self._seal.metadata(self.rows, self._extra))
            self._writer.close()

    def __enter__(self) -> "SealedWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_sealed(table: pa.Table, where: Any, *, row_group_size: int | None = None, **options: Any) -> None:
    """``pq.write_table`` with page checksums and a seal; ``where`` is a path or an Arrow output stream."""
    with SealedWriter(where, table.schema, **options) as writer:
        writer.write_table(table, row_group_size=row_group_size)


def write_parquet_table(table: pa.Table, target: Path, *, durable: bool = True, **options: Any) -> Path:
    """Write ``table`` to the local file ``target`` atomically, checksummed and sealed."""
    with atomic_path(target, durable=durable) as tmp:
        write_sealed(table, tmp, **options)
    return Path(target)


def damaged(label: str, exc: BaseException | str) -> Exception:
    """The error for the damaged Parquet file ``label``."""
    from .errors import CorruptFileError

    return CorruptFileError(f"{label} is damaged ({exc})", path=label)


@contextmanager
def reading(label: str) -> Iterator[None]:
    """Turn what the Parquet reader raises on damaged bytes into a :class:`CorruptFileError` naming ``label``."""
    from .errors import MassiveError

    try:
        yield
    except (MassiveError, *_NOT_DAMAGE):
        raise
    except _DAMAGE as exc:
        raise damaged(label, exc) from exc


def check_seal(pf: pq.ParquetFile, label: str) -> None:
    """Raise :class:`CorruptFileError` when ``pf``'s footer no longer matches its seal (no seal: nothing to do)."""
    md = pf.metadata
    kv = md.metadata or {}
    stored = kv.get(SEAL_KEY)
    if stored is None:
        # Unsealed: written before seals existed, or by another tool. Arrow always stores its schema, so an Arrow
        # file (or one whose footer lost its writer's name too) without it lost its key/value metadata to damage.
        writer = md.created_by or ""
        if b"ARROW:schema" not in kv and (writer.startswith(_ARROW_WRITER) or not _WRITER_NAME.match(writer)):
            raise damaged(label, "its footer lost its key/value metadata")
    elif stored != _digest(md.schema, kv, md.num_rows):
        raise damaged(label, "its footer fails its seal")
    # the row groups' counts are not sealed (unknown until the writer closes) but must add up to the sealed total
    if sum(md.row_group(i).num_rows for i in range(md.num_row_groups)) != md.num_rows:
        raise damaged(label, "its row groups do not add up to its row count")


def open_parquet(source: Any, label: str | None = None, **options: Any) -> pq.ParquetFile:
    """A :class:`pyarrow.parquet.ParquetFile` whose page reads verify their CRCs, its seal checked.
    ``source`` is a path or an open Arrow file; ``label`` names it in errors (default: the path)."""
    label = label or str(source)
    with reading(label):
        pf = pq.ParquetFile(source, **options, **CHECKSUM_READ)
        check_seal(pf, label)
    return pf


def read_parquet_table(path: Path | str, label: str | None = None, *, columns: list[str] | None = None,
                       filters: Any = None, **options: Any) -> pa.Table:
    """The rows of a local Parquet file (``filters`` as in :func:`pyarrow.parquet.read_table`), verified."""
    label = label or str(path)
    pf = open_parquet(path, label)
    with reading(label):
        if filters is None:
            return pf.read(columns=columns, **options)
        return pq.read_table(path, columns=columns, filters=filters, **options, **CHECKSUM_READ)


def read_parquet_frame(path: Path | str, label: str | None = None) -> pd.DataFrame:
    """A local Parquet file as a DataFrame (as :func:`pandas.read_parquet`), verified."""
    label = label or str(path)
    open_parquet(path, label)
    with reading(label):
        return pd.read_parquet(path, **CHECKSUM_READ)


def verify_parquet(path: Path | str) -> str | None:
    """Read every page of a local Parquet file: ``None`` when intact, else why it is damaged."""
    from .errors import CorruptFileError

    try:
        pf = open_parquet(path)
        with reading(str(path)):
            for i in range(pf.metadata.num_row_groups):
                pf.read_row_group(i, use_threads=False)
            _ = pf.schema_arrow.pandas_metadata  # the pandas metadata must parse too
    except CorruptFileError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class DamagedFile:
    """A file :func:`verify_files` found damaged, and why."""

    path: Path
    reason: str


def verify_files(*roots: str | Path) -> tuple[list[Path], list[DamagedFile]]:
    """Read every page of every Parquet file under ``roots`` (folders, searched recursively, or files): the files
    checked and the damaged ones (page checksums, seal or encoding fail). Temp files of writes in progress are
    skipped. A store, a datasets folder and the caches can all be scanned this way."""
    checked: list[Path] = []
    bad: list[DamagedFile] = []
    for root in map(Path, roots):
        files = [root] if root.is_file() else sorted(root.rglob("*.parquet")) if root.is_dir() else []
        for path in files:
            if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX):
                continue
            checked.append(path)
            reason = verify_parquet(path)
            if reason is not None:
                bad.append(DamagedFile(path, reason))
    return checked, bad
