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
crash or ``kill -9``: an invalid frame with no valid frame after it, at the very end of the last
segment) is truncated away with a warning, so every record before it stays readable and the sequence
numbers stay contiguous.

Damage (bit rot, a bad sector) anywhere else is never truncated: the reader skips the damaged bytes, counts
the records lost there (:class:`Damage`, from the sequence numbers on both sides) and resynchronises on the
next valid frame. The sequence number is the sync marker: a frame is taken after damage only if its
sequence number is the next expected one or a little later (:data:`MAX_LOST_RECORDS`; a random 64-bit value
lands in that window with a probability of about 2**-44), its payload passes its CRC (2**-32) and the frame
after it validates too (or it ends the segment exactly). The framing is unchanged, so every recording
written before reads the same way.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
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


#: After damage, how many records a resynchronisation may find missing at most (more: not a frame of this log).
MAX_LOST_RECORDS = 1 << 20


@dataclass(frozen=True)
class Damage:
    """Bytes of a segment that held no valid frame: ``records`` lost there (by the sequence numbers around
    them), or a torn tail (``tail``: nothing valid after it, at the end of the log)."""

    segment: str
    offset: int
    length: int
    records: int
    tail: bool = False


@dataclass
class _Scan:
    records: list[tuple[int, bytes]]
    damage: list[Damage]
    good: int  # where the torn tail begins (the file size when there is none)
    size: int
    next_sequence: int | None


def _frame_at(data: bytes, offset: int, expected: int | None, *, exact: bool = True) -> tuple[int, int, bytes] | None:
    """``(end, sequence, payload)`` of a valid frame at ``offset``, else ``None``. Its sequence number must be
    ``expected`` (``exact``), or within :data:`MAX_LOST_RECORDS` after it (after damage), or anything (``None``)."""
    if offset + HEADER.size > len(data):
        return None
    length, crc, seq = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if length == 0 or length > MAX_RECORD or end > len(data):
        return None
    if expected is not None and (seq != expected if exact else not expected <= seq < expected + MAX_LOST_RECORDS):
        return None
    payload = data[offset + HEADER.size: end]
    if zlib.crc32(payload) != crc:
        return None
    return end, seq, payload


def _confirmed(data: bytes, offset: int, expected: int | None) -> tuple[int, int, bytes] | None:
    """A valid frame at ``offset`` (sequence number as in :func:`_frame_at` with ``exact=False``) that the frame
    after it confirms (the next sequence number, valid), or that ends the segment exactly."""
    frame = _frame_at(data, offset, expected, exact=False)
    if frame is None:
        return None
    end, seq, _ = frame
    return frame if end == len(data) or _frame_at(data, end, seq + 1) is not None else None


def _resync(data: bytes, start: int, expected: int | None) -> int | None:
    """The first offset from ``start`` on where a confirmed frame begins (see :func:`_confirmed`). Candidates
    are found by their sequence number, vectorised over the 8 byte alignments."""
    if expected is None:  # no sequence number to look for: every offset is a candidate (slow, never expected)
        candidates = np.arange(start, max(start, len(data) - HEADER.size + 1))
    else:
        found = []
        for align in range(8):
            base = start + 8 + align  # the sequence field of a frame at ``p`` sits at p + 8
            count = (len(data) - base) // 8
            if count <= 0:
                continue
            seqs = np.frombuffer(data, dtype="<u8", count=count, offset=base)
            hits = np.flatnonzero((seqs >= expected) & (seqs < expected + MAX_LOST_RECORDS))
            found.append(hits * 8 + base - 8)
        candidates = np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    for p in candidates.tolist():
        if _confirmed(data, p, expected) is not None:
            return p
    return None


class _Unanchored(Exception):
    """A segment scanned on its own (no sequence number known) starts with damage."""


def _scan(path: Path, expected: int | None, *, last: bool) -> _Scan:
    """Every intact record of a segment, the damage skipped, where a torn tail begins, the size, and the
    sequence number the next record should carry. ``expected``: the sequence number after the previous
    segment's (``None``: unknown); ``last``: this is the log's last segment (only there is a trailing invalid
    region a torn tail: cut on resume, not counted as lost)."""
    data = path.read_bytes()
    records: list[tuple[int, bytes]] = []
    damage: list[Damage] = []
    offset, good = 0, len(data)
    # a segment's first frame may carry another sequence number than expected, when confirmed (the caller checks
    # it against the previous segment)
    frame = _frame_at(data, 0, expected) or _confirmed(data, 0, None)
    if frame is None and expected is None and data:
        raise _Unanchored(path.name)  # damage with no sequence number to resynchronise on: scan from the start
    while offset < len(data):
        if frame is not None:
            end, seq, payload = frame
            records.append((seq, payload))
            offset, expected = end, seq + 1
            frame = _frame_at(data, offset, expected)
            continue
        nxt = _resync(data, offset + 1, expected)
        if nxt is None:  # nothing valid up to the end
            tail = last
            damage.append(Damage(path.name, offset, len(data) - offset, 0 if tail else 1, tail=tail))
            if tail:
                good = offset
            elif expected is not None:
                expected += 1  # the next segment starts after at least one lost record
            break
        lost = (HEADER.unpack_from(data, nxt)[2] - expected) if expected is not None else 1
        damage.append(Damage(path.name, offset, nxt - offset, lost))
        offset = nxt
        frame = _frame_at(data, offset, expected, exact=False)
    return _Scan(records, damage, good, len(data), expected)


def segments(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob(SEGMENT_GLOB))


def _scans(folder: Path) -> Iterator[tuple[Path, _Scan]]:
    """Each segment's scan, in order (one segment in memory at a time), the sequence numbers carried from one
    to the next.

    Raises :class:`RecordingError` when the sequence jumps at a segment boundary with no damage to explain it
    (a segment is missing)."""
    segs = segments(folder)
    expected: int | None = 0
    damaged_before = False
    for seg in segs:
        scan = _scan(seg, expected, last=seg == segs[-1])
        if scan.records and expected is not None and scan.records[0][0] != expected:
            first = scan.records[0][0]
            starts_damaged = bool(scan.damage) and scan.damage[0].offset == 0
            if not (damaged_before or starts_damaged) or first < expected:
                raise RecordingError(f"recording {folder}: sequence jumps from {expected - 1} to {first} in "
                                     f"{seg.name} (a segment is missing or out of order)")
            if not starts_damaged:  # more records were lost at the end of the previous segment than counted there
                scan.damage.insert(0, Damage(seg.name, 0, 0, first - expected))
        damaged_before = bool(scan.damage) and scan.damage[-1].offset + scan.damage[-1].length == scan.size
        yield seg, scan
        expected = scan.next_sequence


def scan_log(folder: Path) -> tuple[list[tuple[int, bytes]], list[Damage]]:
    """Every intact record of the log in order, and the damage skipped (a torn tail included)."""
    scans = list(_scans(folder))
    return [r for _, s in scans for r in s.records], [d for _, s in scans for d in s.damage]


def repair(folder: Path) -> int:
    """Truncate a torn tail at the very end of the last segment (with a warning). Returns the bytes cut.

    Only bytes after which no valid frame follows are cut: damage followed by durable records is left in place
    (the reader skips it and counts what it lost), so nothing durable is ever truncated."""
    scans = _tail_scans(folder)
    if not scans:
        return 0
    for _, scan in scans:
        for d in scan.damage:
            if not d.tail:
                log.warning("recording %s: %d damaged byte(s) at offset %d of %s (%d record(s) lost) are kept in "
                            "place and skipped when reading", folder, d.length, d.offset, d.segment, d.records)
    seg, scan = scans[-1]
    if scan.good < scan.size:
        log.warning("recording %s: truncating a torn tail of %d bytes in %s (written during a crash)",
                    folder, scan.size - scan.good, seg.name)
        with open(seg, "r+b") as fh:
            fh.truncate(scan.good)
            os.fsync(fh.fileno())
    return scan.size - scan.good


def read_records(folder: Path, damage: list[Damage] | None = None) -> Iterator[Record]:
    """Every intact record in order (reading never modifies the files). Damaged records are skipped; pass a
    list as ``damage`` to learn what was skipped (a torn tail included)."""
    for _, scan in _scans(folder):
        if damage is not None:
            damage.extend(scan.damage)
        for seq, payload in scan.records:
            yield Record(seq, payload[:1], orjson.loads(payload[1:]))


def _tail_scans(folder: Path) -> list[tuple[Path, _Scan]]:
    """The scans of the last two segments, the sequence numbers carried from the one to the other, which is all
    a resume needs (reading a long log whole would make every resume slower); the whole log when the earlier of
    the two starts with damage (no sequence number to resynchronise on) or holds no record."""
    segs = segments(folder)
    if len(segs) >= 2:
        try:
            before = _scan(segs[-2], None, last=False)
        except _Unanchored:
            before = None
        if before is not None and before.records:
            return [(segs[-2], before), (segs[-1], _scan(segs[-1], before.next_sequence, last=True))]
    return list(_scans(folder))


def _last_sequence(folder: Path) -> int:
    """Sequence number of the newest intact record, or -1 for an empty log."""
    last = -1
    for _, scan in _tail_scans(folder):
        if scan.records:
            last = scan.records[-1][0]
    return last


@dataclass(frozen=True)
class DamagedLog:
    """A recording :func:`verify_recordings` found damaged, and why."""

    path: Path
    reason: str


def verify_recordings(*roots: str | Path) -> tuple[int, list[DamagedLog]]:
    """Scan every recording (a folder holding ``seg-*.mflog``) under ``roots``: how many were checked, and those
    with damaged records (a torn tail alone is not damage: the recorder cuts it on resume)."""
    folders = sorted({seg.parent for root in map(Path, roots) if root.is_dir() for seg in root.rglob(SEGMENT_GLOB)})
    bad = []
    for folder in folders:
        try:
            _, damage = scan_log(folder)
        except RecordingError as exc:
            bad.append(DamagedLog(folder, str(exc)))
            continue
        lost = [d for d in damage if not d.tail]
        if lost:
            where = ", ".join(f"{d.segment}@{d.offset}" for d in lost)
            bad.append(DamagedLog(folder, f"{sum(d.records for d in lost)} damaged record(s) skipped ({where})"))
    return len(folders), bad


class SegmentWriter:
    """Appends framed records to the newest segment, rotating by size. Not thread-safe: one writer."""

    def __init__(self, folder: Path, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        repair(self.folder)
        segs = segments(self.folder)
        self.next_sequence = _last_sequence(self.folder) + 1
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
