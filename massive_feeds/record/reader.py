"""Reading a recording back: the raw events as a DataFrame, or as the original event objects."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ..errors import RecordingError
from ..stream.events import GapEvent, StatusEvent, StreamEvent
from .log import DATA, GAP, STATUS, Damage, Record, read_records, segments

log = logging.getLogger(__name__)

EVENT_FIELDS = StreamEvent._fields
_FLOAT_FIELDS = [f for f, t in StreamEvent.__annotations__.items() if t == "float"]


def _event(row: list[Any]) -> StreamEvent:
    return StreamEvent._make(np.nan if v is None else v for v in row)


class RecordingReader:
    """Read-only view of a recording folder (safe while the recorder is still writing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir() or not segments(self.path):
            raise RecordingError(f"no recording found at {self.path}")
        self._damage: list[Damage] | None = None

    def __repr__(self) -> str:
        return f"RecordingReader('{self.path}')"

    def meta(self) -> dict[str, Any]:
        meta_path = self.path / "meta.json"
        return json.loads(meta_path.read_text()) if meta_path.exists() else {}

    def _records(self) -> Iterator[Record]:
        """Every intact record, in order; damaged ones are skipped, counted in :meth:`damage` and logged."""
        found: list[Damage] = []
        yield from read_records(self.path, found)
        self._damage = found
        lost = [d for d in found if not d.tail]
        if lost:
            log.warning("recording %s: %d damaged record(s) skipped (%s); every other record is read",
                        self.path, sum(d.records for d in lost),
                        ", ".join(f"{d.length} bytes at {d.segment}@{d.offset}" for d in lost))

    def damage(self) -> list[Damage]:
        """What the last read skipped (the log is scanned when nothing was read yet): damaged bytes with the
        records lost there, and a torn tail (``tail=True``: a crash cut the last record short; not durable)."""
        if self._damage is None:
            for _ in self._records():
                pass
        return list(self._damage or [])

    @property
    def damaged_records(self) -> int:
        """Durable records lost to damage (a torn tail is not counted: it was never durable)."""
        return sum(d.records for d in self.damage() if not d.tail)

    def batches(self) -> Iterator[list[StreamEvent | GapEvent | StatusEvent]]:
        """The recorded batches, in order, as the same event objects the live stream delivered (damaged records
        skipped: see :meth:`damage`)."""
        for record in self._records():
            if record.kind == DATA:
                yield [_event(row) for row in record.body]
            elif record.kind == GAP:
                body = dict(record.body)
                body["symbols"] = tuple(body["symbols"])
                yield [GapEvent(**body)]
            elif record.kind == STATUS:
                yield [StatusEvent(**record.body)]

    def events(self) -> pd.DataFrame:
        """Every recorded market-data event, one row each, columns as :class:`StreamEvent`. Damaged records are
        skipped: ``df.attrs["damaged_records"]`` counts them and ``df.attrs["damage"]`` says where."""
        rows = [row for record in self._records() if record.kind == DATA for row in record.body]
        df = pd.DataFrame(rows, columns=list(EVENT_FIELDS))
        for col in _FLOAT_FIELDS:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        for col in ("time_ms", "received_ns", "end_ms", "exchange"):
            df[col] = df[col].astype("int64")
        lost = [d for d in self._damage or [] if not d.tail]
        df.attrs.update(damaged_records=sum(d.records for d in lost), damage=[asdict(d) for d in lost])
        return df

    def gaps(self) -> list[dict[str, Any]]:
        """Reconnect gaps recorded during the session (start/end provider ms, reason, downtime)."""
        return [dict(r.body) for r in self._records() if r.kind == GAP]

    def count(self) -> int:
        return sum(len(r.body) for r in self._records() if r.kind == DATA)
