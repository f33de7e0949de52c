"""Streaming decompression of gzip CSV day files: bytes in (from S3 while they download, or from disk),
pyarrow record batches out, with no wait for the whole file and no decompressed copy anywhere.

This is the one reader every flat-file path shares (minute/day aggregates here, quotes/trades day files
elsewhere): :func:`iter_csv_batches` takes any iterable of *compressed* byte chunks and yields
``pyarrow.RecordBatch`` objects as soon as each block is parsed; :func:`file_chunks` turns a local
``.csv.gz`` into such chunks. Typical use, filtering a day file to some tickers while it downloads::

    for batch in iter_csv_batches(transport.iter_object(remote), remote.key, column_types=COLUMN_TYPES):
        kept.append(batch.filter(pc.is_in(batch.column("ticker"), wanted)))

Inflating uses the fastest zlib-compatible library installed: ``isal`` (ISA-L, ~3x zlib on this kind
of machine), then ``zlib-ng``, then the standard ``zlib`` (see ``benchmarks/bench_flatfiles.py``, which
measured ``rapidgzip``'s parallel inflate too: slower than ``isal`` on 2 shared cores, so not used).
All three release the GIL while inflating, and pyarrow parses the CSV blocks without it, so download,
inflate and parse overlap. Concatenated gzip members are read as one stream, as ``gzip -dc`` does.

A file is only accepted whole: a stream that ends before the gzip trailer (truncated download or file),
a CRC/length mismatch, bytes that are not gzip, or CSV that does not parse raise
:class:`~massive_feeds.errors.CorruptFileError` naming the file. Callers write caches from the batches
only after the iterator finished without error, so a damaged or interrupted stream never becomes an entry.
"""

from __future__ import annotations

import io
import logging
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import CorruptFileError, MassiveError

log = logging.getLogger(__name__)

try:  # fastest first; all are drop-in zlib APIs
    from isal import isal_zlib as _inflate_lib

    INFLATE = "isal"
except ImportError:  # pragma: no cover - depends on the installed extras
    try:
        from zlib_ng import zlib_ng as _inflate_lib  # type: ignore[no-redef]

        INFLATE = "zlib-ng"
    except ImportError:
        _inflate_lib = zlib  # type: ignore[assignment]
        INFLATE = "zlib"

#: CSV block handed to the parser: big enough for pyarrow to parse on several threads, small enough
#: that a few blocks in flight stay far below the memory cap.
BLOCK_SIZE = 4 << 20
#: Compressed bytes read from disk at once by :func:`file_chunks`.
FILE_CHUNK = 1 << 20
_GZIP_WBITS = 31  # gzip header and trailer, CRC-32 and length checked by the library


def file_chunks(path: Path | str, chunk: int = FILE_CHUNK) -> Iterator[bytes]:
    """The compressed bytes of a local file, in chunks (for :func:`iter_csv_batches`)."""
    with open(path, "rb", buffering=0) as fh:
        while data := fh.read(chunk):
            yield data


class _GzipStream(io.RawIOBase):
    """A readable file of the *decompressed* bytes of gzip ``chunks``, inflated on demand.

    pyarrow reads it block by block (on its I/O thread). Raises :class:`_Truncated` when the chunks end
    before the gzip trailer; other inflate errors come out as the library's ``error``.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._inflater: Any = _inflate_lib.decompressobj(_GZIP_WBITS)
        self._pending = b""  # compressed bytes not yet given to the inflater
        self._out = bytearray()
        self._done = False
        self.compressed_bytes = 0

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        inflater = self._inflater
        while len(self._out) < want and not self._done:
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    if not inflater.eof:
                        raise _Truncated(f"the gzip stream ends early, after {self.compressed_bytes:,} bytes")
                    self._done = True
                    break
                self.compressed_bytes += len(chunk)
                self._pending = chunk
            if inflater.eof:  # a further gzip member (concatenated .gz), or trailing garbage
                tail, self._pending = self._pending, b""
                if tail.strip(b"\0"):
                    inflater = self._inflater = _inflate_lib.decompressobj(_GZIP_WBITS)
                    self._pending = tail
                continue
            data = inflater.decompress(self._pending, max(want - len(self._out), BLOCK_SIZE))
            self._pending = inflater.unconsumed_tail
            if inflater.eof:
                self._pending = inflater.unused_data + self._pending
            self._out += data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            chunks = []
            while data := self.read(BLOCK_SIZE):
                chunks.append(data)
            return b"".join(chunks)
        self._fill(size)
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Truncated(Exception):
    pass


def iter_csv_batches(
    chunks: Iterable[bytes],
    key: str,
    *,
    column_types: dict[str, pa.DataType] | None = None,
    include_columns: list[str] | None = None,
    block_size: int = BLOCK_SIZE,
    check_schema: Callable[[pa.Schema], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of the gzip CSV whose compressed bytes are ``chunks``, as each block is parsed.

    Args:
        chunks: compressed bytes in order (an S3 body being downloaded, :func:`file_chunks`, ...). Errors
            raised by the iterable itself (network, quota, ...) pass through unchanged.
        key: the file's name in messages (the object key).
        column_types: pyarrow types by column name (others are inferred per the first block).
        include_columns: only these columns (in this order); default all.
        block_size: bytes of CSV per parsed block.
        check_schema: called with the header's schema before the first batch (e.g. to raise when a
            required column is missing).

    Raises:
        CorruptFileError: truncated stream, not gzip, CRC/length mismatch, or CSV that does not parse.
    """
    stream = _GzipStream(chunks)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block_size),
            convert_options=pacsv.ConvertOptions(column_types=column_types or {},
                                                 include_columns=include_columns or []),
        )
        if check_schema is not None:
            check_schema(reader.schema)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            yield batch
    except MassiveError:
        raise
    except _Truncated as exc:
        raise corrupt(key, exc) from exc
    except (pa.ArrowInvalid, _inflate_lib.error, zlib.error, OSError, EOFError, ValueError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, MassiveError):  # raised by the chunk iterable inside pyarrow's read
            raise cause from None
        if isinstance(cause, _Truncated):
            raise corrupt(key, cause) from exc
        raise corrupt(key, exc) from exc


def corrupt(key: str, exc: BaseException | str) -> CorruptFileError:
    """The error for a damaged day file ``key``."""
    return CorruptFileError(
        f"Flat file {key} is corrupt or truncated ({exc}); its cached copy was discarded, "
        "so the next run downloads it again", key=key,
    )
