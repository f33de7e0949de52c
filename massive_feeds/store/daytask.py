"""One ingest task: one flat-file day → one store day file. Runs on whichever worker the engine picks.

A task is idempotent and retry-safe: it reads the day from the local flat-file cache when that holds it (keyed by
key + ETag, the same cache :func:`~massive_feeds.flatfiles.download_flat_file` uses), else streams it from S3,
inflating and parsing it while it downloads (:func:`day_rows`), builds the store's day table
in memory (one day at a time, so memory per task stays bounded: about 0.5 GB at the peak for a full-market day of
1.6 M rows), and writes it all at once onto a path that depends only on the day. Running it twice, or after a
killed attempt, leaves exactly one complete file. The task never touches the manifest or the quota: the driver
does both, in one place.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Settings
from ..errors import CorruptFileError
from ..flatfiles.cache import DayFileCache, atomic_file
from ..flatfiles.keys import Dataset
from ..flatfiles.reader import COLUMN_TYPES, REQUIRED, file_forms
from ..flatfiles.s3 import MissingObjectError, RemoteFile, S3Transport, shared_transport
from ..flatfiles.stream import file_chunks, iter_csv_batches, passed_on, read_rows_where
from ..quota import get_quota
from ..storage import read_parquet_table
from .location import StoreLocation

log = logging.getLogger(__name__)

#: The columns of a store day file, sorted by symbol then time. ``symbol`` is the REST ticker (crypto files'
#: ``X:BTC-USD`` is stored as ``X:BTCUSD``); index files' missing volume is NaN and trade count 0.
STORE_SCHEMA = pa.schema([
    ("symbol", pa.string()),
    ("timestamp", pa.timestamp("ns", tz="UTC")),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
    ("volume", pa.float64()), ("transactions", pa.int64()),
])
#: The columns of a tick store day file (``trades_v1`` / ``quotes_v1`` ingested for some symbols): the tick
#: schema of :mod:`massive_feeds.tickschema` minus its derived columns, sorted by symbol then time (so each
#: ticker's rows sit in their own row groups, found by the symbol statistics).
TICK_STORE_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("timestamp", pa.timestamp("ns", tz="UTC")), ("kind", pa.string()),
    ("price", pa.float64()), ("size", pa.float64()), ("bid", pa.float64()), ("ask", pa.float64()),
    ("bid_size", pa.float64()), ("ask_size", pa.float64()), ("exchange", pa.int64()), ("ask_exchange", pa.int64()),
    ("sequence_number", pa.int64()), ("conditions", pa.string()), ("id", pa.string()), ("tape", pa.int64()),
])
#: ~20k rows per row group: a full-market minute day (~1.6 M rows) gets ~80 groups, so a 5-symbol query
#: reads a few of them (measured: 16–32k rows read 2–3x faster than 64k+ for 5 symbols, at the same size).
ROW_GROUP_ROWS = 20_000
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=["symbol"],
                       write_statistics=["symbol", "timestamp"])
META_KEY = b"massive_feeds_store"
#: Options of a day file the ingest merges into its month file right after (:attr:`DayTask.transient`).
TRANSIENT_PARQUET_OPTIONS = {**PARQUET_OPTIONS, "compression": "lz4", "compression_level": None}


def day_file_path(day: date) -> str:
    """A day's file, relative to its dataset folder (hive style, so other tools see a ``date`` column)."""
    return f"date={day.isoformat()}/part-0.parquet"


@dataclass(frozen=True)
class DayTask:
    """Everything a worker needs to ingest one day (picklable: it travels to Dask workers)."""

    dataset: Dataset
    remote: RemoteFile
    location: StoreLocation
    settings: Settings
    symbols: tuple[str, ...] | None = None  # None: the whole market
    keep_flatfiles: bool = True
    #: The day file only lives until the ingest merges its month (:mod:`.monthfile`): written with lz4, which
    #: writes and reads a full-market day ~0.5 s of CPU faster than zstd for a file twice the size.
    transient: bool = False

    @property
    def day(self) -> date:
        day = self.remote.day
        assert day is not None, self.remote.key
        return day

    @property
    def path(self) -> str:
        return self.location.path(self.dataset.path, day_file_path(self.day))

    def __repr__(self) -> str:
        return f"DayTask({self.dataset.path} {self.day}, etag={self.remote.etag[:8]}…)"


@dataclass(frozen=True)
class DayResult:
    """What a finished task reports back to the driver (small: no rows)."""

    day: date
    key: str
    etag: str
    size: int
    file: str
    rows: int
    file_bytes: int
    symbols: tuple[str, ...] | None
    downloaded_bytes: int
    seconds: float
    vanished: bool = False  # listed, then gone from the bucket (404): nothing was written

    def __repr__(self) -> str:
        what = "vanished" if self.vanished else f"{self.rows:,} rows"
        return f"DayResult({self.day}, {what}, {self.seconds:.2f}s)"


def _transport(settings: Settings) -> S3Transport:
    """The process's transport for the task's endpoint and key (see :func:`.flatfiles.s3.shared_transport`):
    reused across tasks, closed with the runtime."""
    return shared_transport(settings)


def _parse_stream(chunks: Iterable[bytes], key: str, symbols: tuple[str, ...] | None) -> pa.Table:
    """The rows of a gzip day file (only the lines of ``symbols``' tickers when given) from its compressed bytes,
    inflated (ISA-L) and parsed block by block as they arrive (:mod:`massive_feeds.flatfiles.stream`).

    Raises :class:`CorruptFileError` for a truncated or damaged gzip, CSV that does not parse, or a file without
    the required columns, after the last chunk arrived (the gzip trailer is checked)."""
    def check(schema: pa.Schema) -> None:
        missing = [c for c in REQUIRED if c not in schema.names]
        if missing:
            raise CorruptFileError(f"Flat file {key} lacks the column(s) {', '.join(missing)}; its header is "
                                   f"{','.join(schema.names)}", key=key)
        header.append(schema)

    header: list[pa.Schema] = []
    if symbols is not None:
        return read_rows_where(chunks, key, "ticker", file_forms(symbols), column_types=COLUMN_TYPES,
                               check_schema=check)
    batches = list(iter_csv_batches(chunks, key, column_types=COLUMN_TYPES, check_schema=check))
    return pa.Table.from_batches(batches, schema=batches[0].schema if batches else header[0])


def day_rows(task: DayTask) -> tuple[pa.Table, int]:
    """The day's rows (file columns; only the task's tickers when it has some) and the bytes downloaded for them.

    A day already in the local flat-file cache (parquet or a complete gzip, key + ETag) is read from there: no
    request, no quota. Otherwise the object is streamed from S3 and inflated and parsed while it downloads (no
    wait for the whole file on disk); with ``keep_flatfiles`` its bytes are teed into the cache's gzip entry,
    which lands (atomically, byte-exact) only once every listed byte arrived and the gzip CRC checked out, so a
    later ``download_flat_file`` of that day downloads nothing (and keeps its own parquet copy after its first
    read). A truncated or damaged stream raises :class:`CorruptFileError` and leaves no cache entry.
    """
    remote = task.remote
    cache = DayFileCache(task.settings.cache_dir / "flatfiles")
    path = cache.lookup(remote)
    if path is not None and path.suffix == ".parquet":
        try:
            filters = None if task.symbols is None else [("ticker", "in", sorted(file_forms(task.symbols)))]
            return read_parquet_table(path, path.name, filters=filters), 0
        except (CorruptFileError, OSError) as exc:  # bit rot in the cache (checksums, seal): download it again
            log.warning("discarding damaged cached flat file %s and downloading it again: %s", path.name, exc)
            cache.discard(remote.key)
            get_quota(task.settings).reserve_flatfile_bytes(remote.size)  # the plan counted it as cached
            path = None
    arrived = threading.Event()  # set once the whole object came (the transport ends only after every byte)
    try:
        if path is not None:  # a complete downloaded gzip entry
            table = _parse_stream(file_chunks(path), remote.key, task.symbols)
            if not task.keep_flatfiles:
                cache.discard(remote.key)
            return table, 0
        chunks = _transport(task.settings).iter_object(remote)
        if not task.keep_flatfiles:
            table = _parse_stream(passed_on(chunks, at_end=arrived.set), remote.key, task.symbols)
            cache.discard(remote.key)  # an older ETag's copy is stale now
            return table, remote.size
        gz = cache.gzip_path(remote)
        cache.sweep(gz.parent)
        with atomic_file(gz) as tmp, open(tmp, "wb") as fh:
            table = _parse_stream(passed_on(chunks, copy_to=fh, at_end=arrived.set), remote.key, task.symbols)
        cache.discard(remote.key, keep=gz)  # older ETags of this day are stale now
        return table, remote.size
    except BaseException as exc:
        if isinstance(exc, CorruptFileError):
            cache.discard(remote.key)
        # for the driver's quota accounting: a download that broke off for good spent nothing (as before)
        exc.downloaded_bytes = remote.size if arrived.is_set() else 0  # type: ignore[attr-defined]
        raise


def _already_sorted(table: pa.Table) -> bool:
    """Whether rows are sorted by symbol then time (flat files usually are), checked without sorting: each row's
    symbol is after the previous one's, or the same with a later time (adjacent string comparisons, no hashing)."""
    n = table.num_rows
    if n < 2:
        return True
    symbol = table.column("symbol")
    before, after = symbol.slice(0, n - 1), symbol.slice(1)
    later = pc.fill_null(pc.less(before, after), False).to_numpy(zero_copy_only=False)
    same = pc.fill_null(pc.equal(before, after), False).to_numpy(zero_copy_only=False)
    ts = table.column("timestamp").cast(pa.int64()).to_numpy()
    return bool(np.all(later | (same & (np.diff(ts) > 0))))


def store_table(raw: pa.Table, asset: str) -> pa.Table:
    """A flat-file day (file columns) as a store day table: REST tickers, typed, sorted by symbol then time."""
    n = raw.num_rows
    ticker = raw.column("ticker")
    if asset in ("crypto", "forex"):  # X:BTC-USD / C:EUR/USD → X:BTCUSD / C:EURUSD
        ticker = pc.replace_substring_regex(ticker, r"[-/]", "")
    names = raw.column_names
    volume = raw.column("volume") if "volume" in names else pa.array(np.full(n, np.nan))
    transactions = (pc.fill_null(raw.column("transactions"), 0) if "transactions" in names
                    else pa.array(np.zeros(n, dtype=np.int64)))
    table = pa.table({
        "symbol": ticker,
        "timestamp": raw.column("window_start").cast(pa.timestamp("ns", tz="UTC")),
        "open": raw.column("open"), "high": raw.column("high"), "low": raw.column("low"),
        "close": raw.column("close"), "volume": volume, "transactions": transactions,
    }, schema=STORE_SCHEMA)
    if _already_sorted(table):
        return table
    order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("timestamp", "ascending")])
    return table.take(order)


def day_index(table: pa.Table, rows: int = ROW_GROUP_ROWS) -> dict[str, object]:
    """A bar day file's index, kept in its (sealed) footer metadata: the first and last symbol of each row group
    of ``rows`` rows (:data:`ROW_GROUP_ROWS`) and the first and last bar time (int64 ns). Readers pick row groups and a
    month merge takes the day's span from it, not from the min/max statistics, which no checksum covers."""
    n = table.num_rows
    if n == 0:
        return {"groups": [], "lo": None, "hi": None}
    starts = np.arange(0, n, rows)
    ends = np.minimum(starts + rows, n) - 1
    symbol = table.column("symbol")
    firsts, lasts = symbol.take(pa.array(starts)).to_pylist(), symbol.take(pa.array(ends)).to_pylist()
    ts = table.column("timestamp").cast(pa.int64())
    bounds = pc.min_max(ts).as_py()
    return {"groups": [[a, b] for a, b in zip(firsts, lasts)], "lo": bounds["min"], "hi": bounds["max"]}


def tick_rows(task: DayTask) -> tuple[pa.Table, int]:
    """A tick day's rows of the task's tickers, streamed from S3 through the ticker filter (a tick day file is
    never kept whole: a stocks quotes day is 6–10 GB), as a store tick table sorted by symbol then time."""
    from ..flatfiles.ticks import TickFile, _download_filtered, table_to_ticks

    remote = task.remote
    assert task.symbols, "tick datasets are ingested for given symbols"  # ingest() checks this up front
    raw = _download_filtered(_transport(task.settings), TickFile(remote.key, task.day, remote.size, remote.etag),
                             list(task.symbols), task.dataset.base, lambda n: None)
    ticks = table_to_ticks(raw, task.dataset.base)
    order = np.lexsort((np.arange(len(ticks)), ticks["symbol"].to_numpy(dtype=object)))  # stable: time order kept
    ticks = ticks.iloc[order]
    table = pa.Table.from_pandas(ticks[list(TICK_STORE_SCHEMA.names)], schema=TICK_STORE_SCHEMA, preserve_index=False)
    return table, remote.size


def run_day_task(task: DayTask) -> DayResult:
    """Ingest one day (see the module docstring). Safe to run again, on any worker, at any time."""
    t0 = time.perf_counter()
    remote, day = task.remote, task.day
    if task.dataset.is_ticks:
        return _run_tick_task(task, t0)
    try:
        raw, downloaded = day_rows(task)
    except MissingObjectError:
        log.warning("flat file %s was listed but is gone; skipping that day", remote.key)
        return DayResult(day, remote.key, remote.etag, remote.size, "", 0, 0, task.symbols, 0,
                         time.perf_counter() - t0, vanished=True)
    try:
        table = store_table(raw, task.dataset.asset)
        del raw
        meta = {"key": remote.key, "etag": remote.etag, "dataset": task.dataset.path, "day": day.isoformat(),
                "symbols": list(task.symbols) if task.symbols is not None else None, **day_index(table)}
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        options = TRANSIENT_PARQUET_OPTIONS if task.transient else PARQUET_OPTIONS
        size = task.location.write_table(task.path, table, row_group_size=ROW_GROUP_ROWS, **options)
    except BaseException as exc:
        exc.downloaded_bytes = downloaded  # type: ignore[attr-defined] # the driver's quota accounting needs it
        raise
    seconds = time.perf_counter() - t0
    log.debug("ingested %s: %d rows in %.2fs", remote.key, table.num_rows, seconds)
    return DayResult(day, remote.key, remote.etag, remote.size, day_file_path(day), table.num_rows, size,
                     task.symbols, downloaded, seconds)


def _run_tick_task(task: DayTask, t0: float) -> DayResult:
    remote, day = task.remote, task.day
    try:
        table, downloaded = tick_rows(task)
    except MissingObjectError:
        log.warning("flat file %s was listed but is gone; skipping that day", remote.key)
        return DayResult(day, remote.key, remote.etag, remote.size, "", 0, 0, task.symbols, 0,
                         time.perf_counter() - t0, vanished=True)
    except BaseException as exc:
        exc.downloaded_bytes = remote.size  # type: ignore[attr-defined] # streamed: count it as downloaded
        raise
    meta = {"key": remote.key, "etag": remote.etag, "dataset": task.dataset.path, "day": day.isoformat(),
            "symbols": list(task.symbols or ()), **day_index(table, ROW_GROUP_ROWS * 5)}
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    try:
        size = task.location.write_table(task.path, table, row_group_size=ROW_GROUP_ROWS * 5, **PARQUET_OPTIONS)
    except BaseException as exc:
        exc.downloaded_bytes = downloaded  # type: ignore[attr-defined]
        raise
    seconds = time.perf_counter() - t0
    log.debug("ingested %s for %s: %d ticks in %.2fs", remote.key, ", ".join(task.symbols or ()), table.num_rows,
              seconds)
    return DayResult(day, remote.key, remote.etag, remote.size, day_file_path(day), table.num_rows, size,
                     task.symbols, downloaded, seconds)
