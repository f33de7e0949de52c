"""The per-dataset manifest: which day files the store holds, from which flat file (key + ETag).

``<store>/<prefix>/<dataset>/_manifest.json``::

    {"format": 1, "dataset": "us_stocks_sip/minute_aggs_v1",
     "days":   {"2024-01-02": {"key": "...csv.gz", "etag": "...", "size": 21733921,
                               "file": "date=2024-01-02/part-0.parquet", "rows": 1612345,
                               "file_bytes": 15000000, "symbols": null, "ingested_at": "2024-..."}},
     "absent": {"2024-01-06": "2024-03-01T12:00:00+00:00"}}

``file`` is the day's own file (``date=…/part-0.parquet``, as the ingest tasks write it) or, once the ingest has
merged the month (:mod:`.monthfile`), the month file holding it (``month=2024-01/part-<hash>.parquet``; every day
of the month then names the same file and ``file_bytes`` is that file's size). A manifest naming month files has
``"format": 2`` (older versions would read a month file as one day, so they must refuse it); one naming only day
files keeps format 1, which every version reads.

``symbols`` is ``null`` for a whole-market day, or the tickers that day was ingested for. ``absent`` lists
days the bucket had no file for (weekends, holidays) and when that was seen. Only the ingest driver writes the
manifest, after the day file it describes is in place, so a manifest entry always points at a complete file; a
day file without an entry (the run died in between) is simply ingested again, onto the same path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from ..errors import StoreError
from ..schema import ny_midnight

FORMAT = 2
#: Manifest formats this version reads: 1 (day files only), 2 (day and month files).
READABLE_FORMATS = (1, 2)
MANIFEST_NAME = "_manifest.json"
#: Folder prefix of month files (:mod:`.monthfile`), the files a format-2 manifest may name.
MONTH_PREFIX = "month="
#: A day without a file counts as settled (no need to list it again) once it was checked this long after the
#: day began: files land around 11:00 New York the next day.
ABSENT_SETTLES_AFTER = timedelta(days=2)


def is_month_file(rel: str) -> bool:
    """Whether the stored file ``rel`` (relative to its dataset folder) is a month file."""
    return rel.startswith(MONTH_PREFIX)


@dataclass(frozen=True)
class DayEntry:
    """One ingested day."""

    key: str
    etag: str
    size: int
    file: str
    rows: int
    file_bytes: int
    symbols: tuple[str, ...] | None
    ingested_at: str

    def covers(self, symbols: Iterable[str] | None) -> bool:
        """Whether this day holds every ticker of ``symbols`` (``None``: the whole market)."""
        if self.symbols is None:
            return True
        return symbols is not None and set(symbols) <= set(self.symbols)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["symbols"] = list(self.symbols) if self.symbols is not None else None
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "DayEntry":
        symbols = raw.get("symbols")
        return cls(key=raw["key"], etag=raw["etag"], size=int(raw["size"]), file=raw["file"], rows=int(raw["rows"]),
                   file_bytes=int(raw.get("file_bytes", 0)),
                   symbols=tuple(symbols) if symbols is not None else None, ingested_at=raw.get("ingested_at", ""))


@dataclass
class Manifest:
    """The days one dataset of the store holds. See the module docstring."""

    dataset: str
    days: dict[date, DayEntry] = field(default_factory=dict)
    absent: dict[date, datetime] = field(default_factory=dict)

    def __repr__(self) -> str:
        span = f"{min(self.days)}..{max(self.days)}" if self.days else "empty"
        return f"Manifest({self.dataset!r}, {len(self.days)} day(s) {span}, {len(self.absent)} without a file)"

    def is_settled_absent(self, day: date) -> bool:
        """The bucket had no file for ``day`` when checked well after it could have been published."""
        seen = self.absent.get(day)
        return seen is not None and seen >= (ny_midnight(day) + ABSENT_SETTLES_AFTER).to_pydatetime()

    def record(self, day: date, entry: DayEntry) -> None:
        self.days[day] = entry
        self.absent.pop(day, None)

    def mark_absent(self, day: date, checked_at: datetime) -> None:
        if day not in self.days:
            self.absent[day] = checked_at

    # --- JSON -----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT if any(is_month_file(e.file) for e in self.days.values()) else 1,
            "dataset": self.dataset,
            "days": {d.isoformat(): e.as_json() for d, e in sorted(self.days.items())},
            "absent": {d.isoformat(): t.isoformat() for d, t in sorted(self.absent.items())},
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None, dataset: str, where: str = "") -> "Manifest":
        if not data:
            return cls(dataset)
        try:
            doc = json.loads(data)
            if doc.get("format") not in READABLE_FORMATS:
                raise StoreError(f"The store manifest {where} has format {doc.get('format')!r}; this version of "
                                 f"massive_feeds reads formats {', '.join(map(str, READABLE_FORMATS))}: upgrade "
                                 "massive_feeds to read this store")
            return cls(
                dataset=doc.get("dataset", dataset),
                days={date.fromisoformat(d): DayEntry.from_json(e) for d, e in doc.get("days", {}).items()},
                absent={date.fromisoformat(d): datetime.fromisoformat(t) for d, t in doc.get("absent", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"The store manifest {where} is damaged ({exc}); delete it and run the ingest again "
                             "to rebuild it (the day files are re-ingested onto the same paths)") from exc
