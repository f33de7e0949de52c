"""Streaming decompression of gzip CSV day files: bytes in (from S3 while they download, or from disk),
pyarrow record batches out, with no wait for the whole file and no decompressed copy anywhere.

This is the one reader every flat-file path shares (minute/day aggregates here, quotes/trades day files
elsewhere). Each function takes any iterable of *compressed* byte chunks (``S3Transport.iter_object``
while it downloads, or :func:`file_chunks` for a local ``.csv.gz``):

* :func:`read_rows_where` — only the rows of some tickers, parsing nothing else (the fast path of a
  first read: a full-market day's other lines are scanned with numpy, not parsed);
* :func:`iter_csv_batches` — every row, as ``pyarrow.RecordBatch`` objects as soon as each block is parsed
  (e.g. to write a whole day to parquet);
* :func:`iter_line_blocks` — the decompressed text in blocks cut at line ends.

Typical use, the rows of some tickers of a day file while it downloads::

    table = read_rows_where(transport.iter_object(remote), remote.key, "ticker", {"AAPL", "MSFT"},
                            column_types=COLUMN_TYPES)

Inflating is :mod:`massive_feeds.inflate`'s (ISA-L where installed), in the consumer's thread as the chunks
arrive (socket reads and pyarrow's parsing run without the GIL). Concatenated gzip members are read as one
stream, as ``gzip -dc`` does.

A file is only accepted whole: a stream that ends before the gzip trailer (truncated download or file),
a CRC/length mismatch, bytes that are not gzip, or CSV that does not parse raise
:class:`~massive_feeds.errors.CorruptFileError` naming the file. Callers write caches from the batches
only after the iterator finished without error, so a damaged or interrupted stream never becomes an entry.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import CorruptFileError, MassiveError
from ..inflate import GzipError, inflate

log = logging.getLogger(__name__)

#: CSV block handed to the parser: big enough for pyarrow to parse on several threads, small enough
#: that a few blocks in flight stay far below the memory cap.
BLOCK_SIZE = 4 << 20
#: Compressed bytes read from disk at once by :func:`file_chunks`.
FILE_CHUNK = 1 << 20


def file_chunks(path: Path | str, chunk: int = FILE_CHUNK) -> Iterator[bytes]:
    """The compressed bytes of a local file, in chunks (for :func:`iter_csv_batches`)."""
    with open(path, "rb", buffering=0) as fh:
        while data := fh.read(chunk):
            yield data


def passed_on(chunks: Iterable[bytes], *, copy_to: BinaryIO | None = None,
              at_end: Callable[[], object] | None = None) -> Iterator[bytes]:
    """``chunks`` passed on unchanged, each also written to ``copy_to`` (the cache's temp gzip) when given;
    ``at_end`` runs once the last one arrived (a transport ends its iterator only after exactly the listed
    size, so a download that breaks off never gets there)."""
    for chunk in chunks:
        if copy_to is not None:
            copy_to.write(chunk)
        yield chunk
    if at_end is not None:
        at_end()


class _GzipStream(io.RawIOBase):
    """A readable file of the *decompressed* bytes of gzip ``chunks``, inflated on demand (pyarrow reads
    it block by block, on its I/O thread). Damage comes out as :class:`~massive_feeds.inflate.GzipError`."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._pieces = inflate(chunks, BLOCK_SIZE)
        self._out = bytearray()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return bytes(self._out) + b"".join(self._pieces)
        while len(self._out) < size and (piece := next(self._pieces, None)) is not None:
            self._out += piece
        data = bytes(self._out[:size])
        del self._out[:size]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def iter_csv_batches(
    chunks: Iterable[bytes],
    key: str,
    *,
    column_types: dict[str, pa.DataType] | None = None,
    include_columns: list[str] | None = None,
    block_size: int = BLOCK_SIZE,
    check_schema: Callable[[pa.Schema], None] | None = None,
    use_threads: bool = True,
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
        use_threads: let pyarrow parse on its thread pool (``False``: all work on the calling thread,
            e.g. a background thread that should take one core at most).

    Raises:
        CorruptFileError: truncated stream, not gzip, CRC/length mismatch, or CSV that does not parse.
    """
    stream = _GzipStream(chunks)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block_size, use_threads=use_threads),
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
    except (pa.ArrowInvalid, OSError, EOFError, ValueError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, MassiveError):  # raised by the chunk iterable inside pyarrow's read
            raise cause from None
        raise corrupt(key, cause if isinstance(cause, GzipError) else exc) from exc


def iter_line_blocks(chunks: Iterable[bytes], key: str, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """The decompressed bytes of gzip ``chunks`` in blocks of about ``block_size`` that each end at a line
    end (the last one may lack its newline); the first block starts with the header line.

    Raises :class:`CorruptFileError` for a truncated or damaged gzip stream (after the good blocks)."""
    parts: list[bytes] = []
    held = 0
    try:
        for data in inflate(chunks, block_size):
            parts.append(data)
            held += len(data)
            if held >= block_size:
                block = b"".join(parts)
                cut = block.rfind(b"\n") + 1
                if cut:  # else one line longer than a block: keep reading
                    parts, held = ([block[cut:]], len(block) - cut) if cut < len(block) else ([], 0)
                    yield block if cut == len(block) else block[:cut]
    except MassiveError:
        raise
    except (OSError, EOFError, ValueError) as exc:  # GzipError, or the local file failing
        raise corrupt(key, exc) from exc
    if held:
        yield b"".join(parts)


def read_rows_where(
    chunks: Iterable[bytes],
    key: str,
    column: str,
    values: Iterable[str],
    *,
    column_types: dict[str, pa.DataType] | None = None,
    check_schema: Callable[[pa.Schema], None] | None = None,
    block_size: int = BLOCK_SIZE,
) -> pa.Table:
    """The rows of the gzip CSV ``chunks`` whose ``column`` is one of ``values`` (e.g. the tickers of a
    flat file). When ``column`` is the first one (``ticker`` is, in every Massive flat file), only the
    matching lines are parsed; every other line is only scanned. Otherwise every block is parsed and
    filtered.

    The file is inflated block by block as ``chunks`` arrive (all of it: the gzip CRC is checked). In each
    block the line starts are found with numpy, the first 8 bytes of every line compared with
    ``value + ","`` (vectorised, exact for values of up to 7 characters, a superset beyond), and only the
    runs of matching lines are handed to pyarrow; the parsed rows are then filtered on the exact value.
    No ordering of the file is assumed. A block with a ``"`` (quoted fields may hold newlines or commas)
    is parsed whole and filtered, so quoting never loses a row. For a full-market minute day and a few
    tickers this is about 3x cheaper than parsing the whole day.

    Args:
        chunks, key: as for :func:`iter_csv_batches`.
        column: the column to filter on.
        values: its values to keep (exact match).
        column_types: pyarrow types by column name; other columns are read as strings.
        check_schema: called with the header's schema (names from the header, types as above).

    Raises:
        CorruptFileError: truncated or damaged gzip, or matching lines that do not parse.
    """
    import numpy as np
    import pyarrow.compute as pc

    wanted = sorted(set(values))
    blocks = iter_line_blocks(chunks, key, block_size)
    first = next(blocks, b"")
    header_end = first.find(b"\n")
    header = (first if header_end < 0 else first[:header_end]).decode("utf-8-sig").rstrip("\r")
    names = header.split(",") if header else []
    types = column_types or {}
    schema = pa.schema([(name, types.get(name, pa.string())) for name in names])
    if check_schema is not None:
        check_schema(schema)
    read_options = pacsv.ReadOptions(column_names=names, use_threads=False)
    convert_options = pacsv.ConvertOptions(column_types={n: schema.field(n).type for n in names})
    needles = []
    for value in wanted:
        raw = (value + ",").encode()
        k = min(len(raw), 8)
        needles.append((np.frombuffer(raw[:k].ljust(8, b"\0"), "<u8")[0],
                        np.uint64((1 << (8 * k)) - 1) if k < 8 else np.uint64(0xFFFFFFFFFFFFFFFF)))
    picked: list[bytes] = []

    if column not in names:
        raise corrupt(key, f"no column {column!r} in its header {header!r}")
    whole_blocks = names.index(column) != 0

    def scan(block: bytes) -> None:
        if not block or not needles:
            return
        if whole_blocks or b'"' in block:  # no line-level shortcut
            picked.append(block if block.endswith(b"\n") else block + b"\n")
            return
        size = len(block)
        a = np.frombuffer(block, np.uint8)
        starts = np.flatnonzero(a == 10) + 1
        starts = np.concatenate((np.zeros(1, np.int64), starts[starts < size]))
        # the first 8 bytes of every line as one little-endian uint64: an unaligned, overlapping view
        # of the block (no copy), gathered once; the few lines starting in the last 8 bytes are padded
        inner = starts <= size - 8
        prefix = np.empty(len(starts), np.uint64)
        if size >= 8:
            words = np.ndarray((size - 7,), "<u8", block, 0, (1,))
            prefix[inner] = words[starts[inner]]
        for i in np.flatnonzero(~inner).tolist():
            prefix[i] = int.from_bytes(block[starts[i]:starts[i] + 8].ljust(8, b"\0"), "little")
        mask = np.zeros(len(starts), bool)
        for needle, keep in needles:
            mask |= (prefix & keep) == needle
        lines = np.flatnonzero(mask)
        if not len(lines):
            return
        ends = np.append(starts[1:], size)
        breaks = np.flatnonzero(np.diff(lines) != 1)
        firsts = lines[np.r_[0, breaks + 1]]
        lasts = lines[np.r_[breaks, len(lines) - 1]]
        for lo, hi in zip(starts[firsts].tolist(), ends[lasts].tolist()):
            part = block[lo:hi]
            picked.append(part if part.endswith(b"\n") else part + b"\n")

    if header_end >= 0:
        scan(first[header_end + 1:])
    for block in blocks:
        scan(block)
    if not picked:
        return schema.empty_table()
    try:
        table = pacsv.read_csv(pa.py_buffer(b"".join(picked)), read_options=read_options,
                               convert_options=convert_options)
    except pa.ArrowInvalid as exc:
        raise corrupt(key, exc) from exc
    return table.filter(pc.is_in(table.column(column), pa.array(wanted, table.schema.field(column).type)))


def corrupt(key: str, exc: BaseException | str) -> CorruptFileError:
    """The error for a damaged day file ``key``."""
    return CorruptFileError(
        f"Flat file {key} is corrupt or truncated ({exc}); its cached copy was discarded, "
        "so the next run downloads it again", key=key,
    )
