"""Where a history store lives: a local folder, or any filesystem pyarrow (or fsspec) can reach.

A store location is a pyarrow filesystem plus a root path inside it:

* a local path (``"~/massive-store"``, ``Path(...)``, ``"file:///data/store"``);
* a URL pyarrow understands natively, e.g.
  ``"s3://bucket/prefix?endpoint_override=minio.local:9000&scheme=http&region=us-east-1"``
  (credentials from the usual AWS environment variables / config files, never from the URL);
* any other fsspec URL (``gs://``, ``abfs://``, ``memory://`` …) when fsspec and the protocol's package are
  installed;
* an explicit ``filesystem=`` (a :class:`pyarrow.fs.FileSystem`, e.g. ``S3FileSystem(endpoint_override=…)``, or an
  fsspec filesystem) with a path inside it.

S3 is reached through pyarrow's own S3 client, not s3fs: adding s3fs beside a current boto3 makes pip fall back
to an ancient s3fs (see ``shared/field-notes.md``).

Writes are all-or-nothing: on a local disk through a temp file renamed onto the target; on object stores with a
single upload, which only becomes visible when it completes. Query strings are never shown (they may hold keys).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import InvalidInputError, StoreError
from ..storage import TEMP_SUFFIX, SealedWriter, atomic_path, write_sealed

_SECRET_WORDS = ("key", "secret", "token", "password", "credential", "session")


def redact_url(url: str) -> str:
    """``url`` with the values of credential-like query parameters (and any user:password) replaced by ``***``."""
    parts = urlsplit(url)
    query = urlencode([(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*:")
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _wrap_fsspec(fs: Any) -> pafs.FileSystem:
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fs))


#: URL schemes pyarrow reaches by itself; their errors are reported as they are, not retried through fsspec.
NATIVE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def _from_url(url: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(url)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as arrow_exc:
        if urlsplit(url).scheme in NATIVE_SCHEMES:
            raise InvalidInputError(
                f"Cannot open store {redact_url(url)}: {arrow_exc}. URL query parameters may set region, scheme and "
                "endpoint_override; credentials come from the environment (AWS_ACCESS_KEY_ID …), or pass "
                "filesystem=pyarrow.fs.S3FileSystem(...) with a bucket/prefix path") from None
        try:
            import fsspec
        except ImportError:
            raise InvalidInputError(
                f"Cannot open store {redact_url(url)}: pyarrow does not support this URL ({arrow_exc}) and fsspec "
                "is not installed (pip install 'massive-feeds[store]')") from None
        try:
            fs, path = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise InvalidInputError(f"Cannot open store {redact_url(url)}: {exc}") from None
        return _wrap_fsspec(fs), path


@dataclass(frozen=True)
class StoreLocation:
    """A pyarrow filesystem and the store's root path inside it. Picklable (it is sent to Dask workers)."""

    filesystem: pafs.FileSystem
    root: str
    display: str

    @classmethod
    def resolve(cls, location: str | os.PathLike[str], filesystem: Any = None) -> "StoreLocation":
        """A location from a path or URL, optionally inside an explicit (pyarrow or fsspec) ``filesystem``."""
        if filesystem is not None:
            fs = filesystem if isinstance(filesystem, pafs.FileSystem) else _wrap_fsspec(filesystem)
            root = str(location).rstrip("/") or "/"
            return cls(fs, root, f"{fs.type_name}:{root}")
        text = os.fspath(location)
        if "://" in text and not text.startswith("file://"):
            fs, root = _from_url(text)
            return cls(fs, root.rstrip("/"), redact_url(text))
        local = Path(text.removeprefix("file://")).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), local.as_posix(), str(local))

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def __repr__(self) -> str:
        return f"StoreLocation({self.display!r})"

    def __str__(self) -> str:
        return self.display

    # --- reading --------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes | None:
        """The whole object at ``path``, or ``None`` if there is none."""
        try:
            with self.filesystem.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such" in str(exc).lower():
                return None
            raise StoreError(f"Cannot read {self._show(path)} from the store {self.display}: {exc}") from exc

    def list_files(self, folder: str) -> dict[str, int]:
        """Every file under ``folder`` (recursively) → its size; paths relative to ``folder``."""
        selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise StoreError(f"Cannot list the store {self.display}: {exc}") from exc
        base = folder.rstrip("/") + "/"
        return {info.path.removeprefix(base): int(info.size or 0)
                for info in infos if info.type == pafs.FileType.File}

    # --- writing --------------------------------------------------------------------------------
    def _prepare(self, path: str) -> None:
        if self.is_local:
            self.filesystem.create_dir(posixpath.dirname(path), recursive=True)

    def _temp_for(self, path: str) -> str:
        folder, name = posixpath.split(path)
        return posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace ``path`` by ``data`` all at once (fsynced temp file + rename locally, one upload elsewhere)."""
        self._prepare(path)
        try:
            if not self.is_local:
                with self.filesystem.open_output_stream(path) as out:
                    out.write(data)
                return
            with atomic_path(Path(path)) as tmp:  # fsynced: a manifest must survive a power cut
                tmp.write_bytes(data)
        except OSError as exc:
            raise StoreError(f"Cannot write {self._show(path)} to the store {self.display}: {exc}") from exc

    def write_table(self, path: str, table: pa.Table, **parquet_options: Any) -> int:
        """Write ``table`` as parquet (page checksums, a sealed footer) to ``path`` all at once; returns the file's
        size in bytes."""
        self._prepare(path)
        try:
            if not self.is_local:  # one upload of the finished file: readers never see half of it
                sink = pa.BufferOutputStream()
                write_sealed(table, sink, **parquet_options)
                data = sink.getvalue()
                with self.filesystem.open_output_stream(path) as out:
                    out.write(data)
                return data.size
            tmp = self._temp_for(path)
            try:
                with self.filesystem.open_output_stream(tmp) as out:
                    write_sealed(table, out, **parquet_options)
                size = self.filesystem.get_file_info(tmp).size
                self.filesystem.move(tmp, path)
                return int(size or 0)
            finally:
                self._discard(tmp)
        except OSError as exc:
            raise StoreError(f"Cannot write {self._show(path)} to the store {self.display}: {exc}") from exc

    @contextmanager
    def parquet_writer(self, path: str, schema: pa.Schema, **parquet_options: Any) -> Iterator[SealedWriter]:
        """A Parquet writer (page checksums, a sealed footer: :class:`~massive_feeds.storage.SealedWriter`) whose
        file appears at ``path`` only when the block ends without an error (locally: a temp file beside it, renamed; elsewhere: one streamed upload, which object
        stores publish when it completes — callers also give such files names nothing refers to yet)."""
        self._prepare(path)
        target = path if not self.is_local else self._temp_for(path)
        done = False
        try:
            try:
                with self.filesystem.open_output_stream(target) as out, \
                        SealedWriter(out, schema, **parquet_options) as writer:
                    yield writer
                if self.is_local:
                    with open(target, "rb+") as fh:  # the manifest will point here: survive a power cut
                        os.fsync(fh.fileno())
                    self.filesystem.move(target, path)
                done = True
            finally:
                if self.is_local or not done:  # an object store may have published a failed upload: drop it
                    self._discard(target)
        except OSError as exc:
            raise StoreError(f"Cannot write {self._show(path)} to the store {self.display}: {exc}") from exc

    def size(self, path: str) -> int:
        """The size of the file at ``path`` in bytes."""
        return int(self.filesystem.get_file_info(path).size or 0)

    def delete(self, path: str, *, prune: bool = False) -> None:
        """Remove the file at ``path`` (if any); ``prune``: also its folder when that is now empty (locally;
        object stores have no empty folders)."""
        self._discard(path)
        if prune and self.is_local:
            try:
                os.rmdir(posixpath.dirname(path))
            except OSError:  # not empty, or already gone
                pass

    def _discard(self, path: str) -> None:
        try:
            self.filesystem.delete_file(path)
        except (FileNotFoundError, OSError):
            pass

    def _show(self, path: str) -> str:
        return path.removeprefix(self.root).lstrip("/") or path
