"""The durable event log: append-only segment files of length + CRC framed records.

Layout of a recording folder::

    meta.json              symbols, start time, format version (written atomically)
    seg-000001.mflog       records, appended; rotated at ``segment_bytes``
    seg-000002.mflog …

Record framing (little-endian): ``u32 payload length | u32 crc32(payload) | u64 sequence | payload``.
The payload is one type byte (``D`` data batch, ``G`` gap, ``S`` status) and an orjson body. A batch
of events is one record, so the framing cost is per frame, not per tick.

Durability: records are written by one thread and ``fsync``-ed as a group at most ``flush_interval``
after they arrive; only then do they count as durable. On open, a torn tail (a record cut short by a
crash or ``kill -9``) fails its length or CRC check and is truncated away with a warning, so every
record before it stays readable and the sequence numbers stay contiguous.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

from ..errors import RecordingError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIQ")
MAX_RECORD = 256 * 1024 * 1024
SEGMENT_GLOB = "seg-*.mflog"
DATA, GAP, STATUS = b"D", b"G", b"S"


def segment_name(index: int) -> str:
    return f"seg-{index:06d}.mflog"


def encode(kind: bytes, body: object) -> bytes:
    # orjson writes NaN as null; readers turn nulls in float fields back into NaN.
    return kind + orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class Record:
    sequence: int
    kind: bytes
    body: Any  # the decoded JSON: a list of rows (data), a dict (gap, status)


def _scan(path: Path) -> tuple[list[tuple[int, bytes]], int, int]:
    """(sequence, payload) of every intact record, the offset after the last one, and the file size."""
    data = path.read_bytes()
    records: list[tuple[int, bytes]] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, crc, seq = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length == 0 or length > MAX_RECORD or end > len(data):
            break
        payload = data[offset + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        records.append((seq, payload))
        offset = end
    return records, offset, len(data)


def segments(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob(SEGMENT_GLOB))


def repair(folder: Path) -> int:
    """Truncate a torn tail in the last segment (with a warning). Returns the bytes cut."""
    segs = segments(folder)
    if not segs:
        return 0
    _, good, size = _scan(segs[-1])
    if good < size:
        log.warning("recording %s: truncating a torn tail of %d bytes in %s (written during a crash)",
                    folder, size - good, segs[-1].name)
        with open(segs[-1], "r+b") as fh:
            fh.truncate(good)
            os.fsync(fh.fileno())
    return size - good


def read_records(folder: Path) -> Iterator[Record]:
    """Every intact record in order. A torn tail is skipped (reading never modifies the files)."""
    expected = None
    for seg in segments(folder):
        records, good, size = _scan(seg)
        for seq, payload in records:
            if expected is not None and seq != expected:
                raise RecordingError(f"recording {folder}: sequence jumps from {expected - 1} to {seq} in {seg.name}")
            expected = seq + 1
            yield Record(seq, payload[:1], orjson.loads(payload[1:]))
        if good < size and seg != segments(folder)[-1]:
            raise RecordingError(f"recording {folder}: segment {seg.name} is damaged in the middle of the log")


def _last_sequence(segs: list[Path]) -> int:
    """Sequence number of the newest intact record, or -1 for an empty log."""
    for seg in reversed(segs):
        records, _, _ = _scan(seg)
        if records:
            return records[-1][0]
    return -1


class SegmentWriter:
    """Appends framed records to the newest segment, rotating by size. Not thread-safe: one writer."""

    def __init__(self, folder: Path, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        repair(self.folder)
        segs = segments(self.folder)
        self.next_sequence = _last_sequence(segs) + 1
        self._index = int(segs[-1].stem.split("-")[1]) if segs else 1
        self._fh = open(self.folder / segment_name(self._index), "ab")
        self._durable_offset = self._fh.tell()

    def __repr__(self) -> str:
        return f"SegmentWriter('{self.folder}', next_sequence={self.next_sequence})"

    def append(self, payloads: list[bytes]) -> None:
        """Write records (not yet durable: call :meth:`sync`)."""
        if self._fh.tell() >= self.segment_bytes:
            self._rotate()
        parts = []
        for payload in payloads:
            parts.append(HEADER.pack(len(payload), zlib.crc32(payload), self.next_sequence))
            parts.append(payload)
            self.next_sequence += 1
        self._fh.write(b"".join(parts))

    def sync(self) -> None:
        """Flush and fsync: everything appended so far survives a crash from now on."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._durable_offset = self._fh.tell()

    def rollback(self, next_sequence: int) -> None:
        """Undo records appended since the last successful :meth:`sync` (after a write error)."""
        try:
            self._fh.close()
        except OSError:
            pass
        path = self.folder / segment_name(self._index)
        with open(path, "r+b") as fh:
            fh.truncate(self._durable_offset)
        self.next_sequence = next_sequence
        self._fh = open(path, "ab")

    def _rotate(self) -> None:
        self.sync()
        self._fh.close()
        self._index += 1
        self._fh = open(self.folder / segment_name(self._index), "ab")
        self._durable_offset = 0
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()
