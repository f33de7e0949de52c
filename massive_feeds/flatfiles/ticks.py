"""Tick day files (``trades_v1`` / ``quotes_v1``) streamed straight from S3, filtered per block.

A stocks quotes day is 6–10 GB of gzip and a trades day 1.3–3.7 GB, each holding every ticker, so
nothing here lands the file on disk or in memory: the S3 body is streamed (resumed with ranged requests
when a transfer breaks off) into the shared streaming reader (:mod:`.stream`: ISA-L inflate, pyarrow's
CSV reader block by block), and each block is cut to the wanted tickers before the next is read. Peak
memory is a few blocks plus the kept rows, whatever the file's size. Compressed bytes feed the progress bar.

Before anything is downloaded, every day file is sized with a ``HEAD`` (its ``ContentLength``) and the
total is reserved against the monthly flat-file quota: a query the quota cannot cover is refused up
front with :class:`~massive_feeds.errors.QuotaExceededError`, and bytes not downloaded (a failure
half-way) are given back.

The filtered rows of each (day file ETag, ticker) are cached as parquet, so asking again for the same
ticker-day costs one ``HEAD`` and no download. (Unlike bar day files, tick days are never kept whole
on disk: they are too large.)

Futures day files (``us_futures_cme|cbot|nymex|comex`` ``trades_v1``/``quotes_v1``) are named by the CME trade
date (``session_end_date``): the file of day D holds the session that opened D-1 17:00 Chicago, so a futures tick
query's days are sessions (:meth:`~massive_feeds.tickschema.TickQuery.build` puts its range in sessions). Their
headers (``tests/fixtures/real/flatfiles/futures_*_header.csv``): trades ``ticker timestamp sequence_number
report_sequence price size correction exchange session_end_date``; quotes ``ticker timestamp sequence_number
report_sequence ask_timestamp ask_price ask_size bid_timestamp bid_price bid_size exchange session_end_date``
(``timestamp`` ns; an empty book side is an empty field). They are read into the columns the REST path
``/futures/v1/trades|quotes`` gives (``timestamp sequence_number price size`` / ``bid ask bid_size ask_size``),
so both paths return the same frame.

Columns (massive-api-facts §3): stocks ``quotes_v1`` ``ticker ask_exchange ask_price ask_size
bid_exchange bid_price bid_size conditions indicators participant_timestamp sequence_number
sip_timestamp tape trf_timestamp``; ``trades_v1`` ``ticker conditions correction exchange id
participant_timestamp price sequence_number sip_timestamp size tape trf_id trf_timestamp``. Options,
forex and crypto files carry subsets (forex/crypto: no SIP time, the participant time stands in).
"""

from __future__ import annotations

import itertools
import logging
import sys
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ..cache import ResultCache, stable_origin
from ..config import Settings
from ..errors import CorruptFileError
from ..inflate import GzipError, inflate
from ..quota import QuotaManager, get_quota
from ..sessions import trades_on
from ..tickschema import TickQuery, empty_ticks, finalize_ticks
from .keys import TICK_DATASETS, dataset_for
from .reader import file_forms
from .s3 import MissingObjectError, RemoteFile, S3Transport, shared_transport
from .stream import iter_csv_batches

log = logging.getLogger(__name__)

BLOCK_SIZE = 1 << 20  # 1 MiB of CSV per block: ~240 MB peak RSS in all (4 MiB: ~370 MB), same speed
COLUMN_TYPES: dict[str, pa.DataType] = {
    "ticker": pa.string(), "ask_exchange": pa.int64(), "ask_price": pa.float64(), "ask_size": pa.float64(),
    "bid_exchange": pa.int64(), "bid_price": pa.float64(), "bid_size": pa.float64(), "conditions": pa.string(),
    "exchange": pa.int64(), "id": pa.string(), "participant_timestamp": pa.int64(), "price": pa.float64(),
    "sequence_number": pa.int64(), "sip_timestamp": pa.int64(), "size": pa.float64(), "tape": pa.int64(),
    "timestamp": pa.int64(),  # futures files: the exchange time (ns)
}
_WANTED = {"quotes": ("ticker", "ask_exchange", "ask_price", "ask_size", "bid_exchange", "bid_price", "bid_size",
                      "conditions", "participant_timestamp", "sequence_number", "sip_timestamp", "tape"),
           "trades": ("ticker", "conditions", "exchange", "id", "participant_timestamp", "price", "sequence_number",
                      "sip_timestamp", "size", "tape")}
#: futures files: the columns the REST futures ticks have too (REST gives no exchange, correction or conditions)
_FUTURES_WANTED = {"quotes": ("ticker", "timestamp", "sequence_number", "ask_price", "ask_size", "bid_price",
                              "bid_size"),
                   "trades": ("ticker", "timestamp", "sequence_number", "price", "size")}
#: what a futures file cannot be read without (anything else missing is a damaged or foreign file)
_FUTURES_REQUIRED = {"quotes": ("ticker", "timestamp", "ask_price", "bid_price"),
                     "trades": ("ticker", "timestamp", "price", "size")}
_RENAME = {"bid_price": "bid", "ask_price": "ask", "bid_exchange": "exchange"}


def is_futures_key(key: str) -> bool:
    """Whether an object key is a futures day file (``us_futures_cme/trades_v1/…``)."""
    return key.startswith("us_futures_")


def tick_key(dataset: str, day: date) -> str:
    return f"{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


@dataclass(frozen=True)
class TickFile:
    """One tick day file as sized by ``HEAD``."""

    key: str
    day: date
    size: int
    etag: str


def head_files(transport: S3Transport, dataset: str, days: Iterable[date]) -> tuple[list[TickFile], list[date]]:
    """Size every day's file with ``HEAD``; returns (files that exist, days without a file)."""
    from botocore.exceptions import BotoCoreError, ClientError

    files: list[TickFile] = []
    missing: list[date] = []
    for day in days:
        key = tick_key(dataset, day)
        try:
            head = transport.client.head_object(Bucket=transport.bucket, Key=key)
        except ClientError as exc:
            err = transport.translate(exc, key, "get")
            if isinstance(err, MissingObjectError):
                missing.append(day)
                continue
            raise err from exc
        except BotoCoreError as exc:
            raise transport._unreachable(exc, key) from exc
        files.append(TickFile(key, day, int(head["ContentLength"]), str(head.get("ETag", "")).strip('"')))
    return files, missing


def _header(first: bytes) -> list[str] | None:
    """The CSV header's column names from the first compressed chunk (``None`` if it is not in there)."""
    try:
        head = next(inflate((first,), 1 << 16), b"")
    except GzipError:
        return None  # not gzip: iter_csv_batches reports it as a corrupt file
    line, newline, _ = head.partition(b"\n")
    return line.decode("utf-8", "replace").strip().split(",") if newline else None


def stream_filter(chunks: Iterable[bytes], forms: dict[str, str], kind: str, key: str,
                  block_size: int = BLOCK_SIZE) -> pa.Table:
    """Read a gzip CSV tick file from its compressed ``chunks`` (an S3 body as it downloads, or
    :func:`~massive_feeds.flatfiles.stream.file_chunks`), keeping the rows of ``forms`` (file spelling →
    our ticker) block by block. Returns a table of the wanted columns the file has (``ticker`` in our
    form). Decompression and parsing are the shared streaming reader's (:mod:`.stream`)."""
    values = pa.array(sorted(forms), pa.string())
    it = iter(chunks)
    first = next(it, b"")
    header = _header(first)
    futures = is_futures_key(key)
    wanted = [c for c in (_FUTURES_WANTED if futures else _WANTED)[kind] if header is None or c in header]
    if header is not None and "ticker" not in header:
        raise CorruptFileError(f"Flat file {key} has no 'ticker' column (header: {','.join(header[:8])})", key=key)
    if futures and header is not None and (lack := [c for c in _FUTURES_REQUIRED[kind] if c not in header]):
        raise CorruptFileError(f"Futures {kind} file {key} lacks {', '.join(lack)} (header: {','.join(header[:12])})",
                               key=key)
    kept = []
    schema = None
    for batch in iter_csv_batches(itertools.chain([first], it), key, block_size=block_size,
                                  column_types={k: v for k, v in COLUMN_TYPES.items() if k in wanted},
                                  include_columns=wanted):
        schema = batch.schema
        part = batch.filter(pc.is_in(batch.column("ticker"), values))
        if part.num_rows:
            kept.append(part)
    if schema is None:
        schema = pa.schema([(c, COLUMN_TYPES[c]) for c in wanted])
    table = pa.Table.from_batches(kept, schema=schema)
    if any(f != t for f, t in forms.items()) and table.num_rows:
        mapping = pa.array([forms[f] for f in sorted(forms)], pa.string())
        table = table.set_column(0, "ticker", pc.take(mapping, pc.index_in(table.column("ticker"), values)))
    return table


def table_to_ticks(table: pa.Table, kind: str) -> pd.DataFrame:
    """A filtered day table as a tick frame (see :mod:`massive_feeds.tickschema`)."""
    if table.num_rows == 0:
        return empty_ticks()
    if "timestamp" in table.column_names:  # a futures file (its only time is the exchange's)
        return _futures_ticks(table, kind)
    times = [table.column(c) for c in ("sip_timestamp", "participant_timestamp") if c in table.column_names]
    if not times:
        raise CorruptFileError(f"{kind} file without sip_timestamp or participant_timestamp", key=None)
    ts = pc.coalesce(*times) if len(times) > 1 else times[0]
    if ts.null_count:
        raise CorruptFileError(f"{kind} rows without sip_timestamp or participant_timestamp", key=None)
    cols: dict[str, Any] = {"timestamp": ts.to_numpy(), "symbol": table.column("ticker"),
                            "kind": "trade" if kind == "trades" else "quote"}
    for name in _WANTED[kind][1:]:
        if name in ("sip_timestamp", "participant_timestamp") or name not in table.column_names:
            continue  # absent from this asset's files: finalize_ticks fills the default
        col = table.column(name)
        if pa.types.is_string(col.type):
            cols[name] = pc.fill_null(col, "")
        elif pa.types.is_integer(col.type):
            cols[_RENAME.get(name, name)] = pc.fill_null(col, 0).to_numpy()
        elif pa.types.is_floating(col.type):
            cols[_RENAME.get(name, name)] = col.to_numpy(zero_copy_only=False)
        else:  # a column absent from this file (null type): leave it to finalize_ticks' defaults
            continue
    return finalize_ticks(cols)


def _futures_ticks(table: pa.Table, kind: str) -> pd.DataFrame:
    """A filtered futures day table as a tick frame: the columns (and values) of the REST futures path."""
    ts = table.column("timestamp")
    if ts.null_count:
        raise CorruptFileError(f"futures {kind} rows without a timestamp", key=None)
    cols: dict[str, Any] = {"timestamp": ts.to_numpy(), "symbol": table.column("ticker"),
                            "kind": "trade" if kind == "trades" else "quote"}
    if "sequence_number" in table.column_names:
        cols["sequence_number"] = pc.fill_null(table.column("sequence_number"), 0).to_numpy()
    for name in _FUTURES_WANTED[kind][3:]:
        if name in table.column_names:  # an empty book side is null: NaN, as REST leaves it out
            cols[_RENAME.get(name, name)] = table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return finalize_ticks(cols)


def fetch_ticks_flat_file(
    query: TickQuery,
    *,
    settings: Settings,
    progress: bool | None = None,
    quota: QuotaManager | None = None,
    transport: S3Transport | None = None,
    use_cache: bool = True,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The ticks of a query's tickers and kinds on its New York days from the tick day files, cut to its range.

    Returns (tick frame, trading days without a file, days without a file on which none of the tickers
    trades; both as ISO strings). Refuses with ``QuotaExceededError`` before
    downloading when the monthly flat-file quota cannot cover the files to download."""
    transport = transport or shared_transport(settings)
    quota = quota or get_quota(settings)
    cache = ResultCache(settings.cache_dir / "ticks_flat")
    groups: dict[tuple[str, str], list[str]] = {}  # (dataset, kind) -> its tickers
    for kind in query.kinds:
        for ticker in query.parsed:
            groups.setdefault((dataset_for(ticker, kind).path, kind), []).append(ticker.symbol)
    frames: list[pd.DataFrame] = []
    missing: set[str] = set()
    closed: set[str] = set()
    todo: list[tuple[TickFile, str, list[str]]] = []
    for (dataset, kind), group in groups.items():
        files, absent = head_files(transport, dataset, query.range.calendar_days())
        # a day without a file on which none of these tickers trades (a weekend, a holiday) is closed, not missing
        assets = {t.asset for t in query.parsed if t.symbol in group}
        missing.update(d.isoformat() for d in absent if trades_on(d, assets))
        closed.update(d.isoformat() for d in absent if not trades_on(d, assets))
        for f in files:
            need = []
            for t in group:
                hit = cache.get(cache.key(stable_origin(transport.endpoint), f.key, f.etag, t)) if use_cache else None
                if hit is not None:
                    frames.append(hit)
                else:
                    need.append(t)
            if need:
                todo.append((f, kind, need))
    total = sum(f.size for f, _, _ in todo)
    quota.reserve_flatfile_bytes(total)  # refuses before any byte is downloaded
    transferred = [0]  # bytes actually received: what the quota keeps, even of a transfer that failed
    want_bar = progress if progress is not None else (total > 0 and sys.stderr.isatty())
    try:
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="tick flat files",
                  disable=not want_bar or not todo, file=sys.stderr) as bar:

            def on_bytes(n: int) -> None:
                transferred[0] += n
                bar.update(n)

            for f, kind, need in todo:
                ticks = table_to_ticks(_download_filtered(transport, f, need, kind, on_bytes), kind)
                for t in need:
                    part = ticks[ticks["symbol"] == t].reset_index(drop=True)
                    if use_cache:
                        cache.put(cache.key(stable_origin(transport.endpoint), f.key, f.etag, t), part)
                    frames.append(part)
    finally:
        quota.release_flatfile_bytes(total - transferred[0])
    frames = [f for f in frames if len(f)]
    df = finalize_ticks(pd.concat(frames, ignore_index=True)) if frames else empty_ticks()
    inside = ((df["timestamp"] >= query.range.start) & (df["timestamp"] < query.range.end)).to_numpy()
    return (df if inside.all() else df[inside].reset_index(drop=True)), sorted(missing), sorted(closed)


def _download_filtered(transport: S3Transport, f: TickFile, tickers: list[str], kind: str,
                       on_bytes: Callable[[int], None]) -> pa.Table:
    """Stream one day file through the ticker filter while it downloads (ETag pinned, broken transfers
    resumed with ranged requests by :meth:`S3Transport.iter_object`)."""
    remote = RemoteFile(f.key, f.size, f.etag)
    return stream_filter(transport.iter_object(remote, on_bytes), file_forms(tickers), kind, f.key)


__all__ = ["TICK_DATASETS", "TickFile", "fetch_ticks_flat_file", "head_files", "is_futures_key", "stream_filter",
           "table_to_ticks", "tick_key"]
