"""Reading a recording back: the raw events as a DataFrame, or as the original event objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from ..errors import RecordingError
from ..stream.events import GapEvent, StatusEvent, StreamEvent
from .log import DATA, GAP, STATUS, read_records, segments

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

    def __repr__(self) -> str:
        return f"RecordingReader('{self.path}')"

    def meta(self) -> dict[str, Any]:
        meta_path = self.path / "meta.json"
        return json.loads(meta_path.read_text()) if meta_path.exists() else {}

    def batches(self) -> Iterator[list[StreamEvent | GapEvent | StatusEvent]]:
        """The recorded batches, in order, as the same event objects the live stream delivered."""
        for record in read_records(self.path):
            if record.kind == DATA:
                yield [_event(row) for row in record.body]
            elif record.kind == GAP:
                body = dict(record.body)
                body["symbols"] = tuple(body["symbols"])
                yield [GapEvent(**body)]
            elif record.kind == STATUS:
                yield [StatusEvent(**record.body)]

    def events(self) -> pd.DataFrame:
        """Every recorded market-data event, one row each, columns as :class:`StreamEvent`."""
        rows = [row for record in read_records(self.path) if record.kind == DATA for row in record.body]
        df = pd.DataFrame(rows, columns=list(EVENT_FIELDS))
        for col in _FLOAT_FIELDS:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        for col in ("time_ms", "received_ns", "end_ms", "exchange"):
            df[col] = df[col].astype("int64")
        return df

    def gaps(self) -> list[dict[str, Any]]:
        """Reconnect gaps recorded during the session (start/end provider ms, reason, downtime)."""
        return [dict(r.body) for r in read_records(self.path) if r.kind == GAP]

    def count(self) -> int:
        return sum(len(r.body) for r in read_records(self.path) if r.kind == DATA)
