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

import queue
import threading
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import CorruptFileError
from ..schema import DateRange, Interval, asset_class, empty_bars, finalize_bars, ws_symbol
from .cache import atomic_file
from .resample import finish_base_frame

COLUMN_TYPES: dict[str, pa.DataType] = {
    "ticker": pa.string(), "volume": pa.float64(), "open": pa.float64(), "close": pa.float64(),
    "high": pa.float64(), "low": pa.float64(), "window_start": pa.int64(), "transactions": pa.int64(),
}
REQUIRED = ("ticker", "open", "close", "high", "low", "window_start")
BLOCK_SIZE = 4 << 20  # ~70k rows per block: big enough for parallel parsing, small enough for memory
_END = object()


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


def _corrupt(key: str, exc: BaseException) -> CorruptFileError:
    return CorruptFileError(
        f"Flat file {key} is corrupt or truncated ({exc}); its cached copy was discarded, "
        "so the next run downloads it again", key=key,
    )


class _ParquetSink:
    """Writes record batches to a parquet file from a background thread (pyarrow releases the GIL),
    so compressing the day overlaps with decompressing and parsing it."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        # zstd level 1: smaller than the gzip it replaces and cheap to write; dictionary and min/max
        # statistics only for the ticker column, which is all that reads filter on.
        self._writer = pq.ParquetWriter(path, schema, compression="zstd", compression_level=1,
                                        use_dictionary=["ticker"], write_statistics=["ticker"])
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flatfile-parquet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _END:
            if self._error is None:
                try:
                    self._writer.write_batch(batch)  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - re-raised in close()
                    self._error = exc

    def write(self, batch: pa.RecordBatch) -> None:
        self._queue.put(batch)

    def close(self) -> None:
        self._queue.put(_END)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error


def convert_day_file(gz: Path, target: Path, wanted: Iterable[str], key: str) -> pa.Table:
    """Parse gzip CSV ``gz`` into parquet ``target`` (atomically) and return the rows whose ticker is
    one of ``wanted`` (file spellings). Raises :class:`CorruptFileError` naming ``key``."""
    values = pa.array(sorted(set(wanted)), pa.string())
    kept: list[pa.RecordBatch] = []
    try:
        with atomic_file(target) as tmp:
            reader = pacsv.open_csv(
                pa.input_stream(gz, compression="gzip"),
                read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
                convert_options=pacsv.ConvertOptions(column_types=COLUMN_TYPES),
            )
            _check_columns(reader.schema, key)
            sink = _ParquetSink(tmp, reader.schema)
            try:
                for batch in reader:
                    sink.write(batch)
                    kept.append(batch.filter(pc.is_in(batch.column("ticker"), values)))
            finally:
                sink.close()
            schema = reader.schema
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise _corrupt(key, exc) from exc
    return pa.Table.from_batches(kept, schema=schema)


def read_cached_day(path: Path, wanted: Iterable[str], key: str) -> pa.Table:
    """Rows of the wanted tickers (file spellings) from a cached parquet day."""
    try:
        return pq.read_table(path, filters=[("ticker", "in", sorted(set(wanted)))])
    except (pa.ArrowInvalid, OSError) as exc:
        raise _corrupt(key, exc) from exc


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
