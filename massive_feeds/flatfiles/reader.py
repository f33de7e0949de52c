"""Fast parsing of flat-file day files (gzip CSV) with pyarrow.

The first read of a day streams the gzip through pyarrow's CSV reader with explicit column types,
keeps the rows of the wanted tickers from each block as it goes, and meanwhile (in a second thread)
writes the whole day to a zstd parquet file. Later reads of that day open the parquet and read only
the row groups whose ticker range can hold the wanted tickers (the files are sorted by ticker), which
is tens of times faster than decompressing the gzip again. See ``benchmarks/bench_flatfiles.py``.

Tickers: the reader matches both the REST form and the dash/slash pair forms that flat files use
for crypto (``X:BTC-USD``) and possibly forex (``C:EUR-USD``), and reports rows under the REST form.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import CorruptFileError
from ..schema import DateRange, Interval, asset_class, empty_bars, finalize_bars, ws_symbol
from .cache import atomic_file
from .stream import corrupt, file_chunks, iter_csv_batches
from .resample import finish_base_frame

COLUMN_TYPES: dict[str, pa.DataType] = {
    "ticker": pa.string(), "volume": pa.float64(), "open": pa.float64(), "close": pa.float64(),
    "high": pa.float64(), "low": pa.float64(), "window_start": pa.int64(), "transactions": pa.int64(),
}
REQUIRED = ("ticker", "open", "close", "high", "low", "window_start")
BLOCK_SIZE = 4 << 20  # ~70k rows per block: big enough for parallel parsing, small enough for memory
_END = object()
log = logging.getLogger(__name__)


def file_forms(tickers: Iterable[str]) -> dict[str, str]:
    """Every spelling a ticker may have inside a day file → the REST ticker.

    ``X:BTCUSD`` may be written ``X:BTC-USD`` (reported for crypto files) or ``X:BTC/USD``; forex likewise.
    """
    forms: dict[str, str] = {}
    for ticker in tickers:
        forms[ticker] = ticker
        if asset_class(ticker) in ("crypto", "forex"):
            pair = ws_symbol(ticker)  # BTC-USD or EUR/USD
            for sep in ("-", "/"):
                forms[ticker[:2] + pair.replace("-", sep).replace("/", sep)] = ticker
    return forms


class _ParquetSink:
    """Writes the record batches of one whole day to a parquet cache entry from a background thread
    (pyarrow releases the GIL), so compressing the day overlaps with downloading and parsing it, and
    finishing it is off the caller's critical path.

    The file is written under a temp name beside ``target`` and renamed onto it only by
    :meth:`commit` (after the last batch); :meth:`abort`, a write error or a crash leave no entry (a
    killed process leaves a ``.partial`` temp file that :meth:`.cache.DayFileCache.sweep` removes).
    The thread is not a daemon: a script that returns before the write finished still gets its cache
    entry, as the interpreter waits for it on exit. At most :data:`MAX_PENDING_WRITES` sinks exist at
    once (a new one waits), which bounds the memory of batches queued for writing.
    """

    def __init__(self, target: Path, schema: pa.Schema, on_landed: Callable[[], None] | None = None) -> None:
        _write_slots.acquire()
        try:
            self.target = Path(target)
            self._on_landed = on_landed
            self._tmp_cm = atomic_file(self.target)
            self._tmp = self._tmp_cm.__enter__()
            # zstd level 1: smaller than the gzip it replaces and cheap to write; dictionary and min/max
            # statistics only for the ticker column, which is all that reads filter on.
            self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd", compression_level=1,
                                            use_dictionary=["ticker"], write_statistics=["ticker"])
            self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name=f"flatfile-parquet {self.target.name}")
            with _pending_lock:
                _pending.add(self._thread)
            self._thread.start()
        except BaseException:
            _write_slots.release()
            raise

    def __repr__(self) -> str:
        return f"_ParquetSink('{self.target}')"

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            while (batch := self._queue.get()) is not _END and batch is not _ABORT:
                if error is None:
                    try:
                        self._writer.write_batch(batch)  # type: ignore[arg-type]
                    except BaseException as exc:  # noqa: BLE001 - logged below, entry not made
                        error = exc
            try:
                self._writer.close()
            except BaseException as exc:  # noqa: BLE001
                error = error or exc
            if batch is _ABORT or error is not None:
                self._tmp_cm.__exit__(RuntimeError, RuntimeError("aborted"), None)  # removes the temp file
                if error is not None:
                    log.warning("could not write the cached day %s (%s); it will be read from the gzip again",
                                self.target.name, error)
                return
            self._tmp_cm.__exit__(None, None, None)  # atomic rename onto the target
            if self._on_landed is not None:
                self._on_landed()
        except BaseException as exc:  # noqa: BLE001 - a background thread has nobody to raise to
            log.warning("could not finish the cached day %s: %s", self.target.name, exc)
        finally:
            _release(self.target)
            with _pending_lock:
                _pending.discard(threading.current_thread())
            _write_slots.release()

    def write(self, batch: pa.RecordBatch) -> None:
        self._queue.put(batch)

    def commit(self) -> None:
        """No more batches: finish the file and rename it onto the target, in the background."""
        self._queue.put(_END)

    def abort(self) -> None:
        """Drop the file: no entry is made."""
        self._queue.put(_ABORT)

    def wait(self) -> None:
        self._thread.join()


#: Day files being written to the cache at once (each holds its queued batches in memory).
MAX_PENDING_WRITES = 2
_write_slots = threading.BoundedSemaphore(MAX_PENDING_WRITES)
_pending: set[threading.Thread] = set()
_pending_lock = threading.Lock()
_ABORT = object()


def wait_for_cache_writes(timeout: float | None = None) -> bool:
    """Wait until every parquet day being written in the background has landed (or was dropped).
    Returns ``False`` when ``timeout`` seconds passed first. Reads never need this (an entry is either
    complete or absent); tests and benchmarks use it to look at the cache when it is settled."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _pending_lock:
            threads = list(_pending)
        if not threads:
            return True
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False


def stream_day(chunks: Iterable[bytes], key: str, wanted: Iterable[str], target: Path | None = None,
               on_landed: Callable[[], None] | None = None) -> pa.Table:
    """The rows whose ticker is one of ``wanted`` (file spellings) from the gzip CSV whose compressed
    bytes are ``chunks`` (see :func:`.stream.iter_csv_batches`), returned as soon as the last block is
    parsed. With ``target``, the whole day is also written to that parquet cache entry in the background
    (:class:`_ParquetSink`): it appears only once complete, and never when the stream fails; ``on_landed``
    runs after it appeared. Raises :class:`CorruptFileError` naming ``key``."""
    values = pa.array(sorted(set(wanted)), pa.string())
    kept: list[pa.RecordBatch] = []
    sink: _ParquetSink | None = None
    schema: pa.Schema | None = None

    def start(found: pa.Schema) -> None:
        nonlocal sink, schema
        _check_columns(found, key)
        schema = found
        if target is not None and _claim(target):  # else another thread is writing this very entry
            try:
                sink = _ParquetSink(target, found, on_landed)
            except BaseException:
                _release(target)
                raise

    try:
        for batch in iter_csv_batches(chunks, key, column_types=COLUMN_TYPES, check_schema=start):
            if sink is not None:
                sink.write(batch)
            kept.append(batch.filter(pc.is_in(batch.column("ticker"), values)))
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if sink is not None:
        sink.commit()
    return pa.Table.from_batches(kept, schema=schema)


_claimed: set[Path] = set()
_claimed_lock = threading.Lock()


def _claim(target: Path) -> bool:
    """Whether this thread may write ``target`` (no sink of this process is writing it already)."""
    with _claimed_lock:
        if target in _claimed:
            return False
        _claimed.add(target)
        return True


def _release(target: Path) -> None:
    with _claimed_lock:
        _claimed.discard(target)


def convert_day_file(gz: Path, target: Path, wanted: Iterable[str], key: str) -> pa.Table:
    """Parse gzip CSV ``gz`` into parquet ``target`` and return the rows whose ticker is one of ``wanted``
    (file spellings); returns once ``target`` has landed. Raises :class:`CorruptFileError` naming ``key``."""
    landed = threading.Event()
    table = stream_day(file_chunks(gz), key, wanted, target, on_landed=landed.set)
    while not landed.is_set() and not wait_for_cache_writes(0.05):
        pass
    return table


def read_cached_day(path: Path, wanted: Iterable[str], key: str) -> pa.Table:
    """Rows of the wanted tickers (file spellings) from a cached parquet day."""
    try:
        return pq.read_table(path, filters=[("ticker", "in", sorted(set(wanted)))])
    except (pa.ArrowInvalid, OSError) as exc:
        raise corrupt(key, exc) from exc


def _check_columns(schema: pa.Schema, key: str) -> None:
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise CorruptFileError(f"Flat file {key} lacks the column(s) {', '.join(missing)}; "
                               f"its header is {','.join(schema.names)}", key=key)


def _frame(table: pa.Table, forms: dict[str, str], window: DateRange) -> pd.DataFrame:
    """One day's wanted rows as a frame with REST tickers, cut to ``window``."""
    cols = {name: table.column(name).to_numpy() for name in table.column_names}
    n = table.num_rows
    frame = pd.DataFrame({
        "symbol": pd.Series(cols["ticker"]).map(forms).to_numpy(),
        "t": cols["window_start"].astype(np.int64),
        "open": cols["open"], "high": cols["high"], "low": cols["low"], "close": cols["close"],
        # Index files have no volume / trade count: NaN volume and 0 trades, as index REST bars.
        "volume": cols.get("volume", np.full(n, np.nan)),
        "transactions": np.nan_to_num(cols.get("transactions", np.zeros(n)).astype(np.float64)).astype(np.int64),
    })
    return frame[(frame["t"] >= window.start.value) & (frame["t"] < window.end.value)]


def bars_from_tables(parts: list[tuple[pa.Table, dict[str, str]]], window: DateRange,
                     interval: Interval, *, splits: pd.DataFrame | None = None,
                     session: str = "extended") -> pd.DataFrame:
    """Day-file rows (each table with its file-spelling → REST-ticker map) as standard bars of
    ``interval``: cut to ``[window.start, window.end)`` first, then split-adjusted (when ``splits``
    is given), cut to the session and resampled (see :func:`.resample.finish_base_frame`)."""
    frames = [_frame(table, forms, window) for table, forms in parts if table.num_rows]
    if not frames:
        return empty_bars()
    bars = finish_base_frame(pd.concat(frames, ignore_index=True), interval, splits=splits, session=session)
    merged = bars.attrs.get("merged_splits", [])
    if bars.empty:
        return empty_bars()
    bars.insert(0, "timestamp", pd.to_datetime(bars.pop("t"), unit="ns", utc=True))
    out = finalize_bars(bars)
    out.attrs["merged_splits"] = merged
    return out
