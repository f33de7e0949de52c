"""Damaged recordings: a flipped bit costs the record it hits and nothing else, and resuming never truncates a
durable record after the damage (only a torn tail at the very end of the last segment may be cut).

Each recording here is written by the real recorder (a hub as its event source, one record per published batch)
into real segment files; bits are flipped on disk at offsets inside every part of the frames.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from massive_feeds.errors import InvalidInputError
from massive_feeds.record import RecordingReader, WebSocketDataRecorder
from massive_feeds.record.log import HEADER, SegmentWriter, segments, verify_recordings
from massive_feeds.stream.events import make_event
from massive_feeds.stream.hub import EventHub

N = 200
T0 = 1_709_562_600_000


class _Source(EventHub):
    """The recorder's event source (a real hub) with the connector's stream calls as no-ops."""

    def start_stream(self, symbols: Any) -> None:
        pass

    def stop_stream(self, symbols: Any) -> None:
        pass


def _record(save_dir: Path, times: range, **kwargs: Any) -> Path:
    hub = _Source()
    rec = WebSocketDataRecorder(["AAPL"], save_dir, connector=hub, session="s", **kwargs)
    rec.start()
    try:
        for t in times:  # one batch (one record) per event
            hub.publish([make_event("quote", "AAPL", T0 + t, bid=100.0 + t, ask=101.0 + t)])
            if t % 40 == 39:  # several flushes: the log rotates at the first append past segment_bytes
                while rec.stats()["events_durable"] < t + 1 - times.start:
                    assert rec.wait_for_flush(timeout=30)
    finally:
        rec.stop()
    return rec.path


def _frames(folder: Path) -> list[tuple[Path, int, int]]:
    """(segment, start, end) of every frame, in order, walking the clean log's headers."""
    out = []
    for seg in segments(folder):
        data, offset = seg.read_bytes(), 0
        while offset < len(data):
            length = HEADER.unpack_from(data, offset)[0]
            out.append((seg, offset, offset + HEADER.size + length))
            offset += HEADER.size + length
    return out


def _flipped(clean: Path, where: Path, segment: str, offset: int, bit: int) -> Path:
    copy = where / f"{segment}-{offset}-{bit}" / "s"
    shutil.copytree(clean, copy)
    seg = copy / segment
    data = bytearray(seg.read_bytes())
    data[offset] ^= 1 << bit
    seg.write_bytes(bytes(data))
    return copy


def _times(folder: Path) -> list[int]:
    return [t - T0 for t in RecordingReader(folder).events()["time_ms"].tolist()]


@pytest.fixture(scope="module")
def one_segment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _record(tmp_path_factory.mktemp("rec1"), range(N))
    assert len(segments(path)) == 1 and _times(path) == list(range(N))
    return path


@pytest.fixture(scope="module")
def three_segments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _record(tmp_path_factory.mktemp("rec3"), range(N), segment_bytes=4_000)
    assert len(segments(path)) >= 3 and _times(path) == list(range(N))
    return path


def _offsets(frames: list[tuple[Path, int, int]]) -> list[tuple[int, int]]:
    """(frame index, offset) pairs covering every header field and the payload of many frames."""
    picks = []
    for k in range(0, len(frames), 7):
        seg, start, end = frames[k]
        # length, crc, sequence (low and high bytes), the kind byte, the middle and the last byte of the payload
        for rel in (0, 2, 4, 7, 8, 15, HEADER.size, (HEADER.size + end - start) // 2, end - start - 1):
            picks.append((k, start + rel))
    return picks


@pytest.mark.parametrize("layout", ["one_segment", "three_segments"])
def test_a_flipped_bit_costs_exactly_the_record_it_hits(layout: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    clean = request.getfixturevalue(layout)
    frames = _frames(clean)
    assert len(frames) == N
    last_seg = segments(clean)[-1]
    checked = 0
    for k, offset in _offsets(frames):
        seg, start, end = frames[k]
        for bit in (0, 5):
            copy = _flipped(clean, tmp_path, seg.name, offset, bit)
            reader = RecordingReader(copy)
            times = _times(copy)
            assert times == [t for t in range(N) if t != k], (seg.name, offset, bit)  # exactly 199: all but k
            tail = seg == last_seg and end == seg.stat().st_size  # the last frame of the log: a torn tail
            assert reader.events().attrs["damaged_records"] == (0 if tail else 1), (seg.name, offset, bit)
            # resuming cuts at most that torn tail; every durable record after the damage stays
            SegmentWriter(copy).close()
            assert _times(copy) == times
            assert (copy / seg.name).stat().st_size == (start if tail else seg.stat().st_size)
            checked += 1
    assert checked >= 2 * 9 * (N // 7)


def test_resuming_the_session_after_damage_keeps_every_durable_record(one_segment: Path, tmp_path: Path) -> None:
    """The issue's case: one bit in the middle of the last segment, then the recorder resumes the session."""
    frames = _frames(one_segment)
    seg, start, end = frames[N // 2]
    copy = _flipped(one_segment, tmp_path, seg.name, (start + end) // 2, 3)
    assert len(_times(copy)) == N - 1
    _record(copy.parent, range(N, N + 5))  # the same session again: resumes the log
    assert _times(copy) == [t for t in range(N + 5) if t != N // 2]
    reader = RecordingReader(copy)
    assert reader.damaged_records == 1 and [d.records for d in reader.damage()] == [1]
    count, bad = verify_recordings(copy.parent)
    assert count == 1 and [b.path for b in bad] == [copy] and "1 damaged record" in bad[0].reason


def test_a_torn_tail_is_cut_on_resume_and_is_not_damage(one_segment: Path, tmp_path: Path) -> None:
    copy = tmp_path / "s"
    shutil.copytree(one_segment, copy)
    seg = segments(copy)[-1]
    whole = seg.stat().st_size
    with open(seg, "ab") as fh:  # a crash mid-append: half a frame
        fh.write(HEADER.pack(100, 0, N) + b"D[")
    assert _times(copy) == list(range(N))
    assert RecordingReader(copy).damaged_records == 0
    assert verify_recordings(copy) == (1, [])
    SegmentWriter(copy).close()
    assert seg.stat().st_size == whole


@pytest.mark.parametrize("session", ["../x", "a/b", "/tmp/elsewhere", "..", ".hidden/../../x", ""])
def test_session_names_are_validated_like_dataset_names(session: str, tmp_path: Path) -> None:
    save_dir = tmp_path / "rec"
    with pytest.raises(InvalidInputError, match="Invalid session name"):
        WebSocketDataRecorder(["AAPL"], save_dir, connector=_Source(), session=session)
    assert not save_dir.exists() and not (tmp_path / "x").exists()


def test_a_saved_damaged_recording_says_so_in_quality(one_segment: Path, tmp_path: Path) -> None:
    from massive_feeds.datasets import load_dataset
    from massive_feeds.quality import quality_report
    from massive_feeds.record.library import save_recording_dataset

    frames = _frames(one_segment)
    seg, start, end = frames[10]
    copy = _flipped(one_segment, tmp_path, seg.name, (start + end) // 2, 1)
    path = save_recording_dataset(copy, "damaged", settings=None)
    df = load_dataset(path)
    assert df.attrs["damaged_records"] == 1 and df.attrs["events"] == N - 1
    report = quality_report(df)
    assert report.attrs["damaged_records"] == 1
    assert any("1 damaged record(s)" in note for note in report.attrs["notes"])
