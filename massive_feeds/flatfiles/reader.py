"""Fast parsing of flat-file day files (gzip CSV) with pyarrow.

The first read of a day streams the gzip (while it downloads) through the inflater and parses only the
lines of the wanted tickers (:func:`stream_day`, :mod:`.stream`); after the query returned, a background
thread writes the whole day to a zstd parquet file (:func:`convert_in_background`).
Later reads of that day open the parquet and read only the row groups whose ticker range can hold the
wanted tickers (the files are sorted by ticker), which is tens of times faster than decompressing the
gzip again. See ``benchmarks/bench_flatfiles.py``.

Tickers: the reader matches both the REST form and the dash/slash pair forms that flat files use
for crypto (``X:BTC-USD``) and possibly forex (``C:EUR-USD``), and reports rows under the REST form.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from contextlib import contextmanager
from typing import ContextManager, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import CorruptFileError
from ..futures_symbols import contract_spellings
from ..runtime import current
from ..schema import DateRange, Interval, Ticker, empty_bars, finalize_bars, ws_symbol
from ..storage import SealedWriter, open_parquet, reading, write_sealed
from .cache import atomic_file
from .stream import corrupt, file_chunks, iter_csv_batches, read_rows_where
from .resample import finish_base_frame

COLUMN_TYPES: dict[str, pa.DataType] = {
    "ticker": pa.string(), "volume": pa.float64(), "open": pa.float64(), "close": pa.float64(),
    "high": pa.float64(), "low": pa.float64(), "window_start": pa.int64(), "transactions": pa.int64(),
    "dollar_volume": pa.float64(),  # futures files only
}
REQUIRED = ("ticker", "open", "close", "high", "low", "window_start")
BLOCK_SIZE = 4 << 20  # ~70k rows per block: big enough for parallel parsing, small enough for memory
CACHE_BLOCK_SIZE = 1 << 20  # blocks (and row groups) of the parquet day written in the background
log = logging.getLogger(__name__)


def file_forms(tickers: "Iterable[str | Ticker]") -> dict[str, str]:
    """Every spelling a ticker may have inside a day file → the REST ticker.

    ``X:BTCUSD`` may be written ``X:BTC-USD`` (reported for crypto files) or ``X:BTC/USD``; forex likewise; a
    futures contract with a one- or a two-digit year (``ESZ6``/``ESZ26``, see :func:`contract_spellings`).
    """
    forms: dict[str, str] = {}
    for t in map(Ticker.of, tickers):
        forms[t.symbol] = t.symbol
        if t.asset == "futures":
            for spelling in contract_spellings(t.symbol)[1:]:
                forms.setdefault(spelling, t.symbol)
        if t.asset in ("crypto", "forex"):
            pair = ws_symbol(t)  # BTC-USD or EUR/USD
            for sep in ("-", "/"):
                forms[t.symbol[:2] + pair.replace("-", sep).replace("/", sep)] = t.symbol
    return forms


def stream_day(chunks: Iterable[bytes], key: str, wanted: Iterable[str]) -> pa.Table:
    """The rows whose ticker is one of ``wanted`` (file spellings) from the gzip CSV whose compressed
    bytes are ``chunks``, inflated and scanned while they arrive; only those rows are parsed (see
    :func:`.stream.read_rows_where`). Raises :class:`CorruptFileError` naming ``key``."""
    return read_rows_where(chunks, key, "ticker", wanted, column_types=COLUMN_TYPES,
                           check_schema=lambda schema: _check_columns(schema, key))


def write_parquet_day(gz: Path, target: Path, key: str, *, use_threads: bool = True) -> None:
    """The whole gzip day ``gz`` as the parquet cache entry ``target``, written under a temp name and
    renamed onto it only when complete. Raises :class:`CorruptFileError` naming ``key``."""
    with atomic_file(target) as tmp:
        writer: SealedWriter | None = None
        try:
            # 1 MB blocks: ~18k rows, one row group each (a repeat read of a few tickers decodes few rows),
            # and little memory in flight while the background thread writes
            for batch in iter_csv_batches(file_chunks(gz), key, column_types=COLUMN_TYPES, use_threads=use_threads,
                                          block_size=CACHE_BLOCK_SIZE,
                                          check_schema=lambda schema: _check_columns(schema, key)):
                if writer is None:
                    # zstd level 1: smaller than the gzip it replaces and cheap to write; dictionary and min/max
                    # statistics only for the ticker column, which is all that reads filter on.
                    writer = SealedWriter(tmp, batch.schema, compression="zstd", compression_level=1,
                                          use_dictionary=["ticker"], write_statistics=["ticker"])
                writer.write_batch(batch)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # a header and no rows: an empty day, still a valid entry
            write_sealed(pa.table({n: pa.array([], t) for n, t in COLUMN_TYPES.items()}), tmp)


class _Converter:
    """Turns downloaded gzip days into parquet cache entries in one background thread, after the query
    that downloaded them returned (the gzip entry is complete and usable meanwhile).

    The thread runs with pyarrow's thread pool off, so it takes one core at most. It is a daemon: a process that exits first leaves the gzip entry
    (and maybe a temp file that :meth:`.cache.DayFileCache.sweep` removes); the next read of that day
    converts it again. A failed conversion is logged and leaves the gzip entry as it is.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queue: list[tuple[Path, Path, str]] = []
        self._busy: set[Path] = set()  # queued or being written
        self._thread: threading.Thread | None = None
        self._holds = 0

    def submit(self, gz: Path, target: Path, key: str) -> None:
        with self._lock:
            if target in self._busy:
                return
            self._busy.add(target)
            self._queue.append((gz, target, key))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flatfile-parquet", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        # Not niced: a low-priority thread holding the GIL would stall every other thread of the process
        # (priority inversion; seen as a CLI that took minutes to exit on a loaded machine).
        while True:
            with self._lock:
                self._lock.wait_for(lambda: not self._holds)
                if not self._queue:
                    self._thread = None
                    self._lock.notify_all()
                    return
                gz, target, key = self._queue.pop(0)
            try:
                if gz.exists() and not target.exists():
                    write_parquet_day(gz, target, key, use_threads=False)
                    gz.unlink(missing_ok=True)  # the parquet entry replaces it
            except Exception as exc:  # noqa: BLE001 - a background thread has nobody to raise to
                log.warning("could not write the cached day %s (%s); it is read from its gzip meanwhile",
                            target.name, exc)
            finally:
                with self._lock:
                    self._busy.discard(target)
                    self._lock.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._busy, timeout)

    # A daemon thread frozen inside pyarrow's CSV reader (which calls back into Python for the gzip chunks)
    # deadlocks interpreter shutdown: the CLI printed its result and never exited. Closing the runtime (the
    # default one at exit, before daemon threads freeze) lets the conversions finish first.
    close = wait

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                self._lock.notify_all()


def _converter() -> _Converter:
    """The current runtime's converter (per process id: a forked child has none of its parent's threads)."""
    return current().shared("flatfile-converter", os.getpid(), _Converter)


def convert_in_background(gz: Path, target: Path, key: str) -> None:
    """Queue the gzip day ``gz`` for conversion into the parquet entry ``target`` (see :class:`_Converter`)."""
    _converter().submit(gz, target, key)


def wait_for_cache_writes(timeout: float | None = None) -> bool:
    """Wait until every day queued for background conversion into a parquet entry was written (or failed).
    Returns ``False`` when ``timeout`` seconds passed first. Reads never need this (a cache entry is either
    complete or absent); tests and benchmarks use it to look at a settled cache."""
    return _converter().wait(timeout)


def hold_cache_writes() -> ContextManager[None]:
    """While in this block, no queued gzip day starts its conversion to parquet (one already being
    written finishes): the downloaded gzip entries stay as they are, e.g. to look at them, or to keep a
    timed section free of background work. Conversions resume after the block."""
    return _converter().hold()


def convert_day_file(gz: Path, target: Path, wanted: Iterable[str], key: str) -> pa.Table:
    """Parse gzip CSV ``gz`` into the parquet entry ``target`` and return the rows whose ticker is one of
    ``wanted`` (file spellings). Raises :class:`CorruptFileError` naming ``key``."""
    write_parquet_day(gz, target, key)
    return read_cached_day(target, wanted, key)


def read_cached_day(path: Path, wanted: Iterable[str], key: str) -> pa.Table:
    """Rows of the wanted tickers (file spellings) from a cached parquet day (page checksums and seal verified).
    Raises :class:`CorruptFileError` naming ``key`` (the caller discards the entry and downloads the day again)."""
    try:
        return _rows_of(path, sorted(set(wanted)))
    except CorruptFileError as exc:
        raise corrupt(key, exc) from exc
    except OSError as exc:
        raise corrupt(key, exc) from exc


def _rows_of(path: Path, wanted: list[str]) -> pa.Table:
    """The rows of ``wanted`` tickers. Row groups are picked by their (checksummed, dictionary-encoded and cheap)
    ticker column, not by the footer's min/max statistics, which no checksum covers: a flipped bit there would
    silently skip a ticker's rows."""
    pf = open_parquet(path, path.name, read_dictionary=["ticker"])
    keys = pa.array(wanted, pa.string())
    with reading(path.name):
        groups = [i for i in range(pf.metadata.num_row_groups) if _holds(pf, i, keys)]
        table = pf.read_row_groups(groups, use_threads=False) if groups else pf.schema_arrow.empty_table()
        table = table.filter(pc.is_in(table.column("ticker").cast(pa.string()), value_set=keys))
        return table.cast(pa.schema([f.with_type(pa.string()) if f.name == "ticker" else f for f in table.schema]))


def _holds(pf: pq.ParquetFile, group: int, keys: pa.Array) -> bool:
    """Whether row group ``group`` holds one of the tickers ``keys`` (a ticker column shorter than the group, e.g.
    a page whose header lost its type, is damage: never "no rows")."""
    tickers = pf.read_row_group(group, columns=["ticker"], use_threads=False).column(0)
    if len(tickers) != pf.metadata.row_group(group).num_rows:
        raise ValueError(f"row group {group} has {len(tickers)} tickers for {pf.metadata.row_group(group).num_rows} "
                         "rows")
    return bool(pc.any(pc.is_in(tickers.cast(pa.string()), value_set=keys)).as_py())


def _check_columns(schema: pa.Schema, key: str) -> None:
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise CorruptFileError(f"Flat file {key} lacks the column(s) {', '.join(missing)}; "
                               f"its header is {','.join(schema.names)}", key=key)


def _frame(table: pa.Table, forms: dict[str, str], window: DateRange) -> pd.DataFrame:
    """One day's wanted rows as a frame with REST tickers, cut to ``window``."""
    cols = {name: table.column(name).to_numpy() for name in table.column_names if name != "ticker"}
    n = table.num_rows
    frame = pd.DataFrame({
        "symbol": _rest_tickers(table.column("ticker"), forms),
        "t": cols["window_start"].astype(np.int64),
        "open": cols["open"], "high": cols["high"], "low": cols["low"], "close": cols["close"],
        # Index files have no volume / trade count: NaN volume and 0 trades, as index REST bars.
        "volume": cols.get("volume", np.full(n, np.nan)),
        "transactions": np.nan_to_num(cols.get("transactions", np.zeros(n)).astype(np.float64)).astype(np.int64),
    })
    if "dollar_volume" in cols:  # futures files: their VWAP is dollar_volume / volume (see rest.futures)
        with np.errstate(divide="ignore", invalid="ignore"):
            volume = frame["volume"].to_numpy(dtype=np.float64)
            frame["vwap"] = np.where(volume > 0, cols["dollar_volume"].astype(np.float64) / volume, np.nan)
    return frame[(frame["t"] >= window.start.value) & (frame["t"] < window.end.value)]


def _rest_tickers(spellings: pa.ChunkedArray, forms: dict[str, str]) -> pd.api.extensions.ExtensionArray:
    """The REST ticker of each row's file spelling (missing for a spelling not in ``forms``), mapped in
    Arrow: no Python string per row."""
    keys = pa.array(list(forms), pa.string())
    codes = pc.index_in(spellings.cast(pa.string()), value_set=keys)
    return pd.array(pc.take(pa.array(list(forms.values()), pa.large_string()), codes), dtype="str")


def _joined(parts: list[tuple[pa.Table, dict[str, str]]]) -> list[tuple[pa.Table, dict[str, str]]]:
    """The non-empty day tables joined into one per (columns, ticker spellings): a frame is built per
    table, and building one per day cost more than the rows in it (a year of one contract is 250 tables
    of ~1,400 rows)."""
    groups: dict[tuple[pa.Schema, tuple[tuple[str, str], ...]], list[pa.Table]] = {}
    for table, forms in parts:
        if table.num_rows:
            groups.setdefault((table.schema, tuple(sorted(forms.items()))), []).append(table)
    return [(pa.concat_tables(tables), dict(spellings)) for (_, spellings), tables in groups.items()]


def bars_from_tables(parts: list[tuple[pa.Table, dict[str, str]]], window: DateRange,
                     interval: Interval, *, splits: pd.DataFrame | None = None,
                     session: str = "extended", dividends: pd.DataFrame | None = None) -> pd.DataFrame:
    """Day-file rows (each table with its file-spelling → REST-ticker map) as standard bars of
    ``interval``: cut to ``[window.start, window.end)`` first, then split- and dividend-adjusted (when
    ``splits``/``dividends`` are given), cut to the session and resampled (see :func:`.resample.finish_base_frame`)."""
    frames = [_frame(table, forms, window) for table, forms in _joined(parts)]
    if not frames:
        return empty_bars()
    bars = finish_base_frame(pd.concat(frames, ignore_index=True), interval, splits=splits, session=session,
                             dividends=dividends)
    merged, applied = bars.attrs.get("merged_splits", []), bars.attrs.get("dividends", [])
    if bars.empty:
        return empty_bars()
    bars.insert(0, "timestamp", pd.to_datetime(bars.pop("t"), unit="ns", utc=True))
    out = finalize_bars(bars)
    out.attrs.update(merged_splits=merged, dividends=applied)
    return out
