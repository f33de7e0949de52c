"""Month files: the days of one month of a bar dataset merged into one Parquet file, read by a symbol index.

A query for a few symbols over many days used to open one file per day, parse its footer and decode whole row
groups of every day (a 5-symbol × 20-day query decoded ~2 M rows to keep 53 k). A month file holds the month's
days sorted by symbol then time, cut into row groups **at symbol boundaries** (about :data:`MONTH_ROW_GROUP_ROWS`
rows each; a symbol larger than that gets groups of its own), and its footer carries a small JSON index:

* ``groups``: the first and last symbol of every row group, so a reader picks the groups of its symbols by
  bisection without touching the row-group statistics;
* ``days``: every day the file holds, with the flat file's ETag and the day's first and last bar time, so a
  reader keeps exactly the days the manifest maps to this file (see :func:`read_store_file`).

Files are named by their content (``month=2024-01/part-<hash of days, ETags, symbols>.parquet``): rebuilding
an unchanged month is skipped, and a new month file never overwrites one a reader may be using. Day files
(``date=…/part-0.parquet``) written by the ingest tasks, or by older versions of massive_feeds, are read the same
way (by their row-group statistics), so a store in the old per-day layout stays readable and is merged into
month files by the next ingest of its months (or :func:`massive_feeds.store.compact`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import CorruptFileError, CorruptStoreError, StoreError
from ..storage import SealedWriter, open_parquet, reading
from .daytask import META_KEY, PARQUET_OPTIONS, STORE_SCHEMA
from .location import StoreLocation
from .manifest import MONTH_PREFIX, DayEntry, is_month_file

log = logging.getLogger(__name__)

#: Target rows per row group of a month file. Symbols with at least a quarter of this many rows in the month get
#: groups of their own (a query for them decodes only their rows); smaller ones share groups. Measured on 20
#: full-market days (~1,000 groups): 32 k keeps the footer at 0.6 MB (~6 ms to parse); 16 k doubles the footer
#: and its parse time (~18 ms) for a smaller decode than that saves.
MONTH_ROW_GROUP_ROWS = 32_768
#: A month file's Parquet options: those of day files, with the bar times delta-encoded (a symbol's month of
#: minute times is a near-constant step: 131 MB of timestamps in plain encoding for 20 full-market days, 40 MB
#: delta-encoded; decoding costs the same) and zstd level 1 (the merge's largest cost is compressing: level 1
#: writes ~1.6x faster than level 3 for a file 0.3 % larger; decompression is as fast).
MONTH_PARQUET_OPTIONS = {**PARQUET_OPTIONS, "compression_level": 1,
                         "column_encoding": {"timestamp": "DELTA_BINARY_PACKED"}}


def month_of(day: date) -> str:
    return f"{day:%Y-%m}"


def month_file_path(month: str, entries: dict[date, DayEntry]) -> str:
    """The month file holding exactly ``entries`` (relative to the dataset folder), named by their content."""
    ident = [[d.isoformat(), e.key, e.etag, list(e.symbols) if e.symbols is not None else None]
             for d, e in sorted(entries.items())]
    digest = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    return f"{MONTH_PREFIX}{month}/part-{digest}.parquet"


# --- reading ------------------------------------------------------------------------------------
def corrupt_store_file(path: str, exc: Exception) -> CorruptStoreError:
    """The error for a damaged file of the store (``exc`` says how)."""
    reason = str(exc).removeprefix(f"{path} is damaged ")
    return CorruptStoreError(f"store file {path} is damaged {reason}; delete it, then run the ingest again for its "
                             "days to rewrite it (`massive-feeds verify` lists every damaged file)", path=path)


def file_index(pf: pq.ParquetFile) -> dict[str, Any]:
    """The store's JSON metadata of a file (``{}`` for a file without any)."""
    raw = (pf.metadata.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def _groups_by_statistics(pf: pq.ParquetFile, symbols: list[str]) -> list[int]:
    md = pf.metadata
    col = pf.schema_arrow.get_field_index("symbol")
    out = []
    for i in range(md.num_row_groups):
        stats = md.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            out.append(i)
        elif any(stats.min <= s <= stats.max for s in symbols):
            out.append(i)
    return out


def groups_by_index(groups: list[list[str]], symbols: list[str]) -> list[int]:
    """The row groups that can hold ``symbols``, by the first and last symbol of each group (sorted by symbol)."""
    firsts = [g[0] for g in groups]
    lasts = [g[1] for g in groups]
    picked: set[int] = set()
    for s in symbols:
        picked.update(range(bisect.bisect_left(lasts, s), bisect.bisect_right(firsts, s)))
    return sorted(picked)


def _within(ts: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Which times ``ts`` (int64 ns) lie in one of ``spans`` (``[lo, hi]`` inclusive; the days of a month
    never overlap)."""
    if not spans:
        return np.zeros(len(ts), dtype=bool)
    los, his = (np.array(side, dtype=np.int64) for side in zip(*sorted(spans)))
    at = np.searchsorted(los, ts, side="right") - 1
    return (at >= 0) & (ts <= his[np.maximum(at, 0)])


def read_store_file(location: StoreLocation, path: str, days: Iterable[date], symbols: list[str], start_ns: int,
                    end_ns: int) -> pa.Table:
    """The rows of ``symbols`` in ``[start_ns, end_ns)`` of one stored file (a day file, or the ``days`` of a
    month file that the manifest maps to it: a day the month file holds but the manifest now serves from
    elsewhere, e.g. re-ingested after a republish and not merged yet, is left out by its time range)."""
    try:
        with location.filesystem.open_input_file(path) as source:
            pf = open_parquet(source, path)  # page checksums verified as they are read, the footer's seal now
            with reading(path):
                index = file_index(pf)
                if "groups" in index and len(index["groups"]) != pf.metadata.num_row_groups:
                    raise ValueError(f"its index lists {len(index['groups'])} row groups, the file has "
                                     f"{pf.metadata.num_row_groups}")
                groups = (groups_by_index(index["groups"], symbols) if "groups" in index
                          else _groups_by_statistics(pf, symbols))  # (files written before the index)
                if not groups:
                    return STORE_SCHEMA.empty_table()
                table = pf.read_row_groups(groups, use_threads=False)  # measured: threads cost more than they save
    except CorruptFileError as exc:
        raise corrupt_store_file(path, exc) from exc
    wanted = set(symbols)
    if not ("groups" in index and all(index["groups"][g][0] == index["groups"][g][1] in wanted for g in groups)):
        # (groups of one wanted symbol each need no filter: busy symbols have groups of their own)
        table = table.filter(pc.is_in(table.column("symbol"), pa.array(symbols, pa.string())))
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    keep = (ts >= start_ns) & (ts < end_ns)
    held = index.get("days")
    if held is not None:  # a month file: only the days the manifest maps to it
        wanted = {d.isoformat() for d in days}
        spans = [(v["lo"], v["hi"]) for d, v in held.items() if d in wanted and v.get("lo") is not None]
        if len(spans) < len(held):
            keep &= _within(ts, spans)
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table.cast(STORE_SCHEMA) if table.schema != STORE_SCHEMA else table


# --- building -----------------------------------------------------------------------------------
def _symbol_codes(group: pa.Table) -> tuple[pa.Table, np.ndarray, pa.Array]:
    """``group`` in the store schema, with an integer code per row that changes exactly where the symbol does
    (and the symbols the codes stand for). The files are opened with the symbol column read as a dictionary
    (:data:`_READ_OPTIONS`), whose indices are such codes for free; other cases hash the symbols."""
    column = group.column("symbol")
    if pa.types.is_dictionary(column.type) and column.num_chunks == 1:
        encoded = column.chunk(0)
        group = group.set_column(group.schema.get_field_index("symbol"), "symbol", encoded.cast(pa.string()))
    else:
        encoded = None
    group = group.cast(STORE_SCHEMA) if group.schema != STORE_SCHEMA else group
    if encoded is None:
        encoded = group.column("symbol").combine_chunks().dictionary_encode()
    return group, encoded.indices.to_numpy(), encoded.dictionary


#: How a merge opens its inputs: the symbol column comes as Parquet stored it, dictionary-encoded.
_READ_OPTIONS = {"read_dictionary": ["symbol"]}


@dataclass
class _Source:
    """One input of a month merge: a stored file read row group by row group (each file is sorted by symbol
    then time), keeping only the rows of the days in ``spans`` when it is an older month file. The buffer keeps
    its symbol runs (``syms``, ``offs``) so cutting it is a bisection, not a scan."""

    pf: pq.ParquetFile
    spans: list[tuple[int, int]] | None
    label: str  # the file, for errors
    #: first and last bar time (int64 ns) of the rows this source gives (``None``: it gives none)
    span: tuple[int, int] | None = None
    next_group: int = 0
    buf: pa.Table | None = None
    syms: list[str] | None = None
    offs: list[int] | None = None

    @property
    def done(self) -> bool:
        return self.next_group >= self.pf.metadata.num_row_groups

    @property
    def rows(self) -> int:
        return self.buf.num_rows if self.buf is not None else 0

    def fill(self) -> None:
        """Append row groups to the buffer until it holds rows or the file ends."""
        while not self.done:
            try:
                with reading(self.label):
                    group = self.pf.read_row_group(self.next_group, use_threads=False)
            except CorruptFileError as exc:
                raise corrupt_store_file(self.label, exc) from exc
            self.next_group += 1
            if self.spans is not None:
                ts = group.column("timestamp").cast(pa.int64()).to_numpy()
                group = group.filter(pa.array(_within(ts, self.spans)))
            if group.num_rows == 0:
                continue
            group, codes, dictionary = _symbol_codes(group)
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            names = dictionary.take(pa.array(codes[starts])).to_pylist()
            base = self.rows
            if self.rows == 0:
                self.buf, self.syms, self.offs = group, [], []
            else:
                assert self.buf is not None
                self.buf = pa.concat_tables([self.buf, group])
            assert self.syms is not None and self.offs is not None
            for name, start in zip(names, starts.tolist()):
                if self.syms and self.syms[-1] == name:  # the same symbol goes on in this group
                    continue
                self.syms.append(name)
                self.offs.append(base + start)
            return

    @property
    def last_symbol(self) -> str:
        assert self.syms
        return self.syms[-1]

    def take_below(self, cut: str | None) -> "_Piece | None":
        """The buffered rows of symbols before ``cut`` (all of them for ``None``), removed from the buffer, with
        their symbol runs."""
        if not self.rows:
            return None
        assert self.buf is not None and self.syms is not None and self.offs is not None
        k = len(self.syms) if cut is None else bisect.bisect_left(self.syms, cut)
        if k == 0:
            return None
        n = self.offs[k] if k < len(self.offs) else self.buf.num_rows
        out = _Piece(self.buf.slice(0, n), self.syms[:k], self.offs[:k])
        self.buf = self.buf.slice(n)
        self.syms, self.offs = self.syms[k:], [o - n for o in self.offs[k:]]
        return out


@dataclass
class _Piece:
    """Rows of one source sorted by symbol then time, with the symbol of each run and where it starts."""

    table: pa.Table
    syms: list[str]
    offs: list[int]


def _symbol_time_order(table: pa.Table) -> np.ndarray:
    """The row order by symbol then time, sorting integers (symbol ranks, nanoseconds) rather than strings."""
    encoded = table.column("symbol").combine_chunks().dictionary_encode()
    rank = np.empty(len(encoded.dictionary), dtype=np.int64)
    rank[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(len(encoded.dictionary))
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    return np.lexsort((ts, rank[encoded.indices.to_numpy()]))


def _run_order(pieces: list[_Piece]) -> tuple[np.ndarray, np.ndarray]:
    """The row order by symbol then time of ``pieces`` concatenated, when each piece is sorted and every row of
    a piece comes before (in time) every row of the pieces after it: then a symbol's rows are its runs of each
    piece in piece order, so only the runs are sorted (a few per symbol), never the rows. Also returns where
    each symbol begins in that order."""
    names: list[str] = []
    piece_no, starts, lengths = [], [], []
    base = 0
    for j, piece in enumerate(pieces):
        offs = np.asarray(piece.offs, dtype=np.int64)
        n = piece.table.num_rows
        names.extend(piece.syms)
        piece_no.append(np.full(len(offs), j, dtype=np.int32))
        starts.append(offs + base)
        lengths.append(np.diff(offs, append=n))
        base += n
    runs = pa.table({"symbol": pa.array(names, pa.string()), "piece": np.concatenate(piece_no)})
    order = pc.sort_indices(runs, sort_keys=[("symbol", "ascending"), ("piece", "ascending")]).to_numpy()
    start, length = np.concatenate(starts)[order], np.concatenate(lengths)[order]
    first = np.cumsum(length) - length  # the output row where each run begins
    # row i of the output is row start[r] + (i - first[r]) of the input, r = i's run
    rows = np.repeat(start - first, length) + np.arange(base, dtype=np.int64)
    ranked = runs.column("symbol").take(pa.array(order))
    new_symbol = np.r_[True, pc.not_equal(ranked.slice(1), ranked.slice(0, len(ranked) - 1)).to_numpy(
        zero_copy_only=False)] if len(ranked) else np.zeros(0, bool)
    return rows, first[new_symbol]


def _time_ordered(sources: list[_Source]) -> bool:
    """Whether the sources (in this order) give rows in disjoint, increasing time ranges: a month of day files,
    or an older month file followed by the days after it (the usual append)."""
    spans = [s.span for s in sources if s.span is not None]
    return all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def _merged_chunks(sources: list[_Source]) -> Iterable[tuple[pa.Table, np.ndarray | None]]:
    """The rows of every source, sorted by symbol then time, in chunks that each hold whole symbols, each with
    the row where each of its symbols begins when that is known already (else ``None``)."""
    sources = sorted(sources, key=lambda s: s.span[0] if s.span is not None else -1)
    by_runs = _time_ordered(sources)
    for s in sources:
        s.fill()
    while True:
        pending = [s for s in sources if not s.done]
        cut = min(s.last_symbol for s in pending) if pending else None
        pieces = [t for t in (s.take_below(cut) for s in sources) if t is not None]
        if pieces:
            chunk = pa.concat_tables([p.table for p in pieces])
            if len(pieces) == 1:
                yield chunk, np.asarray(pieces[0].offs, dtype=np.int64)
            elif by_runs:
                rows, symbol_starts = _run_order(pieces)
                yield chunk.take(rows), symbol_starts
            else:
                yield chunk.take(_symbol_time_order(chunk)), None
        if not pending:
            return
        for s in pending:
            if s.last_symbol == cut:
                s.fill()


class _GroupWriter:
    """Writes sorted chunks as row groups cut at symbol boundaries and records each group's symbol range.

    Each group is encoded and compressed by one background thread (pyarrow releases the GIL there) while the
    caller reads and orders the next rows: the two halves of a merge overlap on two cores. Groups are written
    in order, one at a time; a write error comes out of the next :meth:`add`/:meth:`flush`/:meth:`finish`."""

    def __init__(self, writer: SealedWriter, target: int) -> None:
        self.writer, self.target = writer, target
        self.carry: list[pa.Table] = []
        self.carry_rows = 0
        self.groups: list[list[str]] = []
        self.rows = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="month-writer")
        self._writing: Future[None] | None = None

    def finish(self, *, failed: bool = False) -> None:
        """Wait for the group being written and stop the thread; its error is raised unless the merge already
        ``failed`` (the first error is the one to report)."""
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - re-raised below unless another error is on its way out
            if not failed:
                raise
        finally:
            self._pool.shutdown(wait=True)

    def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def add(self, chunk: pa.Table, starts: np.ndarray | None = None) -> None:
        """``chunk`` holds whole symbols (the merge never splits one across chunks), beginning at the rows
        ``starts`` (found here when not given). Groups close before a symbol that would overflow them, around
        every busy symbol (a quarter of a group or more: it gets groups of its own) and every ``target`` rows
        inside a symbol larger than a group."""
        if not chunk.num_rows:
            return
        if starts is None:
            codes = chunk.column("symbol").combine_chunks().dictionary_encode().indices.to_numpy()
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], chunk.num_rows]
        target = self.target
        pos = 0  # the rows of this chunk before ``pos`` are written or in the carry

        def close(at: int) -> None:
            nonlocal pos
            self._push(chunk.slice(pos, at - pos))
            pos = at
            self.flush()

        for a, b in zip(starts.tolist(), ends.tolist()):
            big = 4 * (b - a) >= target
            if self.carry_rows + (a - pos) and (big or self.carry_rows + (b - pos) > target):
                close(a)
            while self.carry_rows + (b - pos) >= target:
                close(pos + target - self.carry_rows)
            if big and self.carry_rows + (b - pos):
                close(b)
        self._push(chunk.slice(pos))

    def _push(self, part: pa.Table) -> None:
        if part.num_rows:
            self.carry.append(part)
            self.carry_rows += part.num_rows

    def flush(self) -> None:
        """Write the carried rows as one row group."""
        if not self.carry_rows:
            return
        group = pa.concat_tables(self.carry).combine_chunks()  # one batch: the writer is slow on many slices
        self._wait()
        self._writing = self._pool.submit(self.writer.write_table, group, row_group_size=group.num_rows)
        symbol = group.column("symbol")
        self.groups.append([str(symbol[0].as_py()), str(symbol[-1].as_py())])
        self.rows += group.num_rows
        self.carry, self.carry_rows = [], 0


def _span_of(pf: pq.ParquetFile) -> tuple[int, int] | None:
    """First and last bar time (int64 ns) of a day file, from its (sealed) index, or for a day file written
    before it had one, from its row-group statistics."""
    index = file_index(pf)
    if "lo" in index:
        return (int(index["lo"]), int(index["hi"])) if index["lo"] is not None else None
    col = pf.schema_arrow.get_field_index("timestamp")
    lo = hi = None
    md = pf.metadata
    for i in range(md.num_row_groups):
        stats = md.row_group(i).column(col).statistics
        if md.row_group(i).num_rows == 0:
            continue
        if stats is None or not stats.has_min_max:
            table = pf.read(columns=["timestamp"])
            ts = table.column("timestamp").cast(pa.int64()).to_numpy()
            return (int(ts.min()), int(ts.max())) if len(ts) else None
        a, b = pa.scalar(stats.min, pa.timestamp("ns", tz="UTC")), pa.scalar(stats.max, pa.timestamp("ns", tz="UTC"))
        a_ns, b_ns = a.cast(pa.int64()).as_py(), b.cast(pa.int64()).as_py()
        lo = a_ns if lo is None else min(lo, a_ns)
        hi = b_ns if hi is None else max(hi, b_ns)
    return (lo, hi) if lo is not None and hi is not None else None


@dataclass(frozen=True)
class MonthBuild:
    """A month file written by :func:`build_month_file`."""

    month: str
    file: str
    file_bytes: int
    rows: int
    days: tuple[date, ...]


def build_month_file(location: StoreLocation, dataset_path: str, month: str,
                     entries: dict[date, DayEntry]) -> MonthBuild | None:
    """Merge the stored days ``entries`` (all the manifest's days of ``month``; each from its day file or an
    older month file) into one new month file, written all at once. ``None`` when the days cannot share a file:
    their time ranges overlap, so a reader could not tell them apart (they then stay in their own files)."""
    rel = month_file_path(month, entries)
    by_file: dict[str, list[date]] = {}
    for day, entry in sorted(entries.items()):
        by_file.setdefault(entry.file, []).append(day)
    handles = []
    sources: list[_Source] = []
    days_meta: dict[str, dict[str, Any]] = {}
    try:
        for file, days in by_file.items():
            label = location.path(dataset_path, file)
            fh = location.filesystem.open_input_file(label)
            handles.append(fh)
            try:
                pf = open_parquet(fh, label, **_READ_OPTIONS)
            except CorruptFileError as exc:
                raise corrupt_store_file(label, exc) from exc
            if is_month_file(file):
                held = file_index(pf).get("days", {})
                spans = []
                for day in days:
                    info = held.get(day.isoformat())
                    if info is None:
                        raise StoreError(f"The month file {file} does not hold {day} although the manifest says so; "
                                         "run the ingest of that day again")
                    days_meta[day.isoformat()] = {"etag": entries[day].etag, "lo": info.get("lo"), "hi": info.get("hi")}
                    if info.get("lo") is not None:
                        spans.append((int(info["lo"]), int(info["hi"])))
                given = (min(a for a, _ in spans), max(b for _, b in spans)) if spans else None
                sources.append(_Source(pf, spans if len(spans) < len(held) else None, label, given))
            else:
                (day,) = days
                span = _span_of(pf)
                days_meta[day.isoformat()] = {"etag": entries[day].etag, "lo": span[0] if span else None,
                                              "hi": span[1] if span else None}
                sources.append(_Source(pf, None, label, span))
        spans = sorted((v["lo"], v["hi"]) for v in days_meta.values() if v["lo"] is not None)
        if any(b[0] <= a[1] for a, b in zip(spans, spans[1:])):
            log.warning("the days of %s/%s overlap in time; they stay in their own files", dataset_path, month)
            return None
        path = location.path(dataset_path, rel)
        with location.parquet_writer(path, STORE_SCHEMA, **MONTH_PARQUET_OPTIONS) as writer:
            out = _GroupWriter(writer, MONTH_ROW_GROUP_ROWS)
            try:
                for chunk, starts in _merged_chunks(sources):
                    out.add(chunk, starts)
                out.flush()
            except BaseException:
                out.finish(failed=True)  # no write may run on once the failed file is dropped
                raise
            out.finish()
            writer.add_key_value_metadata({META_KEY: json.dumps(
                {"dataset": dataset_path, "month": month, "days": days_meta, "groups": out.groups})})
        return MonthBuild(month, rel, location.size(path), out.rows, tuple(sorted(entries)))
    finally:
        for fh in handles:
            fh.close()


__all__ = ["MONTH_ROW_GROUP_ROWS", "MonthBuild", "build_month_file", "month_file_path", "month_of",
           "read_store_file"]
