"""The history store: flat-file days kept as Parquet, read back in the standard bar schema.

Layout (one folder per flat-file dataset)::

    <store>/us_stocks_sip/minute_aggs_v1/_manifest.json
    <store>/us_stocks_sip/minute_aggs_v1/month=2024-01/part-3f2a….parquet   (the days of a month, merged)
    <store>/us_stocks_sip/minute_aggs_v1/date=2024-02-01/part-0.parquet     (a day not merged yet)
    <store>/us_stocks_sip/day_aggs_v1/...

The ingest tasks write one file per New York trading day; the ingest then merges each month's days into one
month file sorted by symbol then time, with row groups cut at symbol boundaries and a symbol index in its footer
(:mod:`.monthfile`), so a query for a few symbols opens one file per month and decodes little more than their
rows. The manifest maps every day to the file holding it, and a query reads each file it names once: both
layouts are read, including stores written before month files existed. Tick datasets stay one file per day.
Hive-style ``month=`` / ``date=`` folders let other tools (pyarrow, DuckDB, dask.dataframe) read the files
directly; they skip ``_manifest.json`` and the dot-files used for temp writes and locks.

Reads make no network call to Massive at all and return **raw (unadjusted)** prices, like the flat files they came
from. Split adjustment and session cuts belong on top of :meth:`HistoryStore.read_base` (base bars, before
resampling), which is how :meth:`HistoryStore.load` is built.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Settings, load_settings
from ..errors import CorruptFileError, InvalidInputError, StoreError
from ..flatfiles.keys import DATASETS, PREFIXES, TICK_DATASETS, Dataset, dataset_for
from ..flatfiles.resample import finish_base_frame
from ..dividends import Corrections
from ..storage import open_parquet, reading
from ..schema import INTERVALS, BarQuery, DateLike, Interval, empty_bars, finalize_bars
from ..tickschema import KINDS_BY_ASSET, TickQuery, empty_ticks, finalize_ticks
from .daytask import STORE_SCHEMA, TICK_STORE_SCHEMA
from .location import StoreLocation
from .manifest import MANIFEST_NAME, Manifest
from .monthfile import groups_by_index, corrupt_store_file, file_index, read_store_file

log = logging.getLogger(__name__)



def parse_dataset(dataset: str | Dataset) -> Dataset:
    """``"us_stocks_sip/minute_aggs_v1"`` (or a :class:`Dataset`) → :class:`Dataset`."""
    if isinstance(dataset, Dataset):
        return dataset
    prefix, _, name = str(dataset).strip().strip("/").partition("/")
    assets = {v: k for k, v in PREFIXES.items()}
    bases = {v: k for k, v in {**DATASETS, **TICK_DATASETS}.items()}
    if prefix not in assets or name not in bases:
        valid = ", ".join(f"{p}/{d}" for p in PREFIXES.values() for d in DATASETS.values())
        raise InvalidInputError(f"Invalid dataset {dataset!r}; the store ingests bar datasets: {valid}, and the tick "
                                f"datasets trades_v1 / quotes_v1 (e.g. us_stocks_sip/quotes_v1)")
    kinds = KINDS_BY_ASSET["futures" if assets[prefix].startswith("futures") else assets[prefix]]
    if bases[name] in TICK_DATASETS and bases[name] not in kinds:
        raise InvalidInputError(f"Invalid dataset {dataset!r}: Massive has no {bases[name]} for {assets[prefix]}")
    return Dataset(assets[prefix], bases[name])


def default_store_path(settings: Settings | None = None) -> str | Path:
    """Where the store lives when none is given: ``settings.store`` (``MASSIVE_FEEDS_STORE``, resolved in
    :mod:`massive_feeds.config`: an explicit setting wins over the environment), else ``<home>/store``
    (``<home>/sandbox/store`` for sandbox settings). A URL stays a string."""
    settings = settings or load_settings()
    if settings.store:
        return settings.store if "://" in settings.store else Path(settings.store).expanduser()
    return settings.data_home / "store"


class HistoryStore:
    """A Parquet history store at a local folder or filesystem URL (see the module docstring).

    Args:
        location: a folder, a URL (``s3://bucket/prefix?endpoint_override=host:port&scheme=http`` …), or ``None``
            for :func:`default_store_path`.
        filesystem: an explicit pyarrow (``pyarrow.fs.S3FileSystem(endpoint_override=…)``) or fsspec filesystem
            that ``location`` is a path inside.
        settings: finds the default location, and the API key for split adjustment (``adjusted=True``
            needs the splits list; ingest takes its own settings).
    """

    def __init__(self, location: "str | os.PathLike[str] | StoreLocation | HistoryStore | None" = None, *,
                 filesystem: Any = None, settings: Settings | None = None) -> None:
        self.settings = settings
        if isinstance(location, HistoryStore):
            self.location: StoreLocation = location.location
        elif isinstance(location, StoreLocation):
            self.location = location
        else:
            self.location = StoreLocation.resolve(
                location if location is not None else default_store_path(settings), filesystem)

    @classmethod
    def open(cls, store: "str | os.PathLike[str] | HistoryStore | None", settings: Settings | None = None,
             filesystem: Any = None) -> "HistoryStore":
        """``store`` itself when it is a :class:`HistoryStore`, else a store at that location."""
        return store if isinstance(store, HistoryStore) else cls(store, filesystem=filesystem, settings=settings)

    def __repr__(self) -> str:
        return f"HistoryStore({self.location.display!r})"

    # --- manifests ------------------------------------------------------------------------------
    def dataset_root(self, dataset: str | Dataset) -> str:
        return self.location.path(parse_dataset(dataset).path)

    def manifest(self, dataset: str | Dataset) -> Manifest:
        """The manifest of ``dataset`` (empty when the store has none yet)."""
        ds = parse_dataset(dataset)
        path = self.location.path(ds.path, MANIFEST_NAME)
        return Manifest.from_bytes(self.location.read_bytes(path), ds.path, f"{self.location.display}/{ds.path}")

    def save_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest of ``manifest.dataset`` all at once."""
        self.location.write_bytes(self.location.path(manifest.dataset, MANIFEST_NAME), manifest.to_bytes())

    def datasets(self) -> list[str]:
        """The datasets this store holds days of."""
        found = []
        for prefix in PREFIXES.values():
            for name in (*DATASETS.values(), *TICK_DATASETS.values()):
                if self.location.read_bytes(self.location.path(prefix, name, MANIFEST_NAME)) is not None:
                    found.append(f"{prefix}/{name}")
        return found

    def days(self, dataset: str | Dataset) -> list[date]:
        """The ingested days of ``dataset``, in order."""
        return sorted(self.manifest(dataset).days)

    def describe(self) -> pd.DataFrame:
        """One row per dataset: days, first/last day, rows and bytes on disk."""
        rows = []
        for name in self.datasets():
            m = self.manifest(name)
            entries = m.days.values()
            rows.append({"dataset": name, "days": len(m.days), "first_day": min(m.days, default=None),
                         "last_day": max(m.days, default=None), "rows": sum(e.rows for e in entries),
                         "bytes": sum({e.file: e.file_bytes for e in entries}.values()),  # a month file once
                         "partial_days": sum(e.symbols is not None for e in entries)})
        return pd.DataFrame(rows, columns=["dataset", "days", "first_day", "last_day", "rows", "bytes",
                                           "partial_days"])

    # --- reading --------------------------------------------------------------------------------
    @staticmethod
    def _datasets(query: "BarQuery | TickQuery") -> dict[Dataset, list[str]]:
        """The datasets holding a query's rows → its tickers in each: the base bars of its interval (minutes
        for a regular session), or the tick datasets of its kinds."""
        groups: dict[Dataset, list[str]] = defaultdict(list)
        bases = query.kinds if isinstance(query, TickQuery) else (_base_interval(query),)
        for base in bases:
            for t in query.parsed:
                groups[dataset_for(t, base)].append(t.symbol)
        return dict(sorted(groups.items()))

    def _locate(self, query: "BarQuery | TickQuery", strict: bool = True) -> "_Located":
        """Which stored file holds which days of the query, per dataset, and the days it lacks (manifests only).
        ``strict``: a dataset the store holds no day of is a :class:`StoreError` naming the ingest to run."""
        found = _Located(self._datasets(query), {}, {}, set(), set())
        for ds, group in found.groups.items():
            manifest = found.manifests[ds] = self.manifest(ds)
            if strict and not manifest.days:
                symbols = " --symbols …" if ds.is_ticks else ""
                raise StoreError(f"The store {self.location.display} holds no days of {ds.path}; build it with "
                                 f"`massive-feeds ingest --dataset {ds.path}{symbols} --start … --end … --store …`")
            by_file = found.files[ds] = {}
            for day in query.range.calendar_days():
                entry = manifest.days.get(day)
                if entry is not None and entry.covers(group):
                    by_file.setdefault(entry.file, []).append(day)
                    continue
                found.missing.add(day)
                if day not in manifest.absent or entry is not None:
                    found.not_ingested.add(day)
        return found

    def _read_rows(self, query: BarQuery, retry: bool = True) -> tuple[pa.Table, dict[str, Any]]:
        """The stored base rows of the query's tickers inside its range (one table), and what was (not) found:
        each file the manifest maps days of the window to is read once (a month file, or a day file)."""
        found = self._locate(query)
        tables: list[pa.Table] = []
        start_ns, end_ns = int(query.range.start.value), int(query.range.end.value)
        for ds, by_file in found.files.items():
            for rel, days in by_file.items():
                try:
                    tables.append(read_store_file(self.location, self.location.path(ds.path, rel), days, found.groups[ds],
                                                  start_ns, end_ns))
                except (OSError, pa.ArrowInvalid, ValueError, KeyError) as exc:
                    if retry and self.manifest(ds).to_bytes() != found.manifests[ds].to_bytes():
                        # an ingest replaced files while we read: read again from its manifest
                        return self._read_rows(query, retry=False)
                    raise StoreError(f"Cannot read {ds.path}/{rel} from the store {self.location.display} ({exc}); "
                                     "run the ingest again for the range to repair missing or damaged files") from exc
        table = pa.concat_tables(tables) if tables else STORE_SCHEMA.empty_table()
        return table, {"missing_days": _iso(found.missing), "not_ingested_days": _iso(found.not_ingested),
                       "files": sum(map(len, found.files.values()))}

    @staticmethod
    def _frame(table: pa.Table) -> pd.DataFrame:
        """Store rows as the resampler's frame: ``symbol`` (categorical: a query's rows hold a few symbols many
        times, and the resampler factorizes them first), ``t`` (int64 ns) and the value columns."""
        symbols = table.column("symbol").combine_chunks().dictionary_encode()
        return pd.DataFrame({
            "symbol": pd.Categorical.from_codes(symbols.indices.to_numpy(), categories=symbols.dictionary.to_pylist()),
            "t": table.column("timestamp").cast(pa.int64()).to_numpy(),
            **{c: table.column(c).to_numpy() for c in ("open", "high", "low", "close", "volume", "transactions")},
        })

    def bars(self, query: BarQuery, *, resampled: bool = True) -> pd.DataFrame:
        """The bars of a built :class:`~massive_feeds.schema.BarQuery` (:meth:`load`); ``resampled=False``: the
        stored base rows (:meth:`read_base`, never split-adjusted)."""
        tickers, iv, window, session = query.symbols, query.interval, query.range, query.session
        adjusted = query.adjusted
        table, info = self._read_rows(query)
        fixes = Corrections.fetch(query.adjustment if resampled else "raw",
                                  [t for t in query.parsed if t.asset == "stocks"], window.first_day,
                                  self.settings)
        splits = fixes.splits
        if table.num_rows == 0:
            df = empty_bars()
        else:
            frame = self._frame(table)
            bars = (finish_base_frame(frame, iv, splits=splits, session=session, dividends=fixes.dividends)
                    if resampled else frame)
            merged, applied = bars.attrs.get("merged_splits", []), bars.attrs.get("dividends", [])
            bars.insert(0, "timestamp", pd.to_datetime(bars.pop("t"), unit="ns", utc=True))
            df = finalize_bars(bars)
            df.attrs.update(merged_splits=merged, dividends=applied)
        if info["not_ingested_days"]:
            log.warning("the store has no data for %d day(s) of the query (not ingested): %s",
                        len(info["not_ingested_days"]), ", ".join(info["not_ingested_days"]))
        present = set(df["symbol"].unique())
        shown = iv.name if resampled else ("1m" if iv.is_intraday else "1d")
        df.attrs.update(method="store", interval=shown, adjusted=bool(adjusted and resampled), session=session,
                        store=self.location.display, empty_symbols=[t for t in tickers if t not in present], **info)
        df.attrs.update(fixes.attrs(df.attrs.get("dividends")))
        if splits is not None:
            df.attrs.update(splits_as_of=splits.attrs.get("as_of"), splits_age_hours=splits.attrs.get("age_hours"))
        return df

    def read_base(self, symbols: str | Iterable[str], start: DateLike, end: DateLike, interval: str = "1m", *,
                  adjusted: bool = False, session: str = "extended") -> pd.DataFrame:
        """The stored base bars (minute bars for intraday ``interval``, day bars otherwise), not resampled, in
        the standard schema. This is the seam for split adjustment and session cuts, which must happen before
        resampling; :meth:`load` is this plus :func:`~massive_feeds.buckets.resample`."""
        return self.bars(BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted),
                         resampled=False)

    def load(self, symbols: str | Iterable[str], start: DateLike, end: DateLike, interval: str = "1h", *,
             adjusted: bool | str = True, session: str = "extended") -> pd.DataFrame:
        """Bars from the store; see :func:`load_store`."""
        return self.bars(BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted))

    # --- ticks ----------------------------------------------------------------------------------
    def read_ticks(self, symbols: str | Iterable[str], start: DateLike, end: DateLike,
                   kinds: Iterable[str] = ("quotes",)) -> pd.DataFrame:
        """Stored trades/quotes (``massive-feeds ingest --dataset …/quotes_v1 --symbols …``) in the tick schema
        (:mod:`massive_feeds.tickschema`), cut to ``[start, end)``; see :meth:`ticks`."""
        return self.ticks(TickQuery.build(symbols, start, end, tuple(kinds)))

    def ticks(self, query: TickQuery) -> pd.DataFrame:
        """The stored ticks of a built :class:`~massive_feeds.tickschema.TickQuery`, cut to its range. No call to
        Massive. A day the store does not hold for these symbols is listed in ``df.attrs["not_ingested_days"]``
        (and logged), never silently empty."""

        window, found = query.range, self._locate(query)
        tables: list[pa.Table] = []
        for ds, by_file in found.files.items():
            if not by_file:
                continue
            paths = [self.location.path(ds.path, rel) for rel in by_file]
            lo = pa.scalar(window.start.value, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
            hi = pa.scalar(window.end.value, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
            wanted = (pc.field("symbol").isin(pa.array(found.groups[ds], pa.string()))
                      & (pc.field("timestamp") >= lo) & (pc.field("timestamp") < hi))
            try:
                tables.append(self._read_tick_files(paths, list(found.groups[ds]), wanted))
            except (OSError, pa.ArrowInvalid) as exc:
                raise StoreError(f"Cannot read {ds.path} from the store {self.location.display} ({exc}); run the "
                                 "ingest again for the range to repair missing or damaged day files") from exc
        rows = [t for t in tables if t.num_rows]
        if rows:
            table = pa.concat_tables(rows)
            cols = {name: table.column(name) for name in table.column_names}
            cols = {k: (v.cast(pa.int64()).to_numpy() if k == "timestamp"
                        else v if pa.types.is_string(v.type) else v.to_numpy()) for k, v in cols.items()}
            df = finalize_ticks(cols)
        else:
            df = empty_ticks()
        if found.not_ingested:
            log.warning("the store has no ticks for %d day(s) of the query (not ingested): %s",
                        len(found.not_ingested), ", ".join(_iso(found.not_ingested)))
        present = set(df["symbol"].unique()) if len(df) else set()
        df.attrs.update(method="store", store=self.location.display, not_ingested_days=_iso(found.not_ingested),
                        empty_symbols=[t for t in query.tickers if t not in present])
        return df


    def _read_tick_files(self, paths: list[str], symbols: list[str], wanted: pc.Expression) -> pa.Table:
        """The ``wanted`` rows of tick day files (rows of ``symbols``), each file's seal checked and its pages'
        checksums verified. Row groups are picked by the file's sealed index, never by min/max statistics (no
        checksum covers those); a file written before the index is read whole."""
        tables = []
        for path in paths:
            try:
                with self.location.filesystem.open_input_file(path) as source:
                    pf = open_parquet(source, path)
                    with reading(path):
                        index = file_index(pf)
                        if "groups" not in index:
                            table = pf.read(use_threads=False)
                        elif len(index["groups"]) != pf.metadata.num_row_groups:
                            raise ValueError(f"its index lists {len(index['groups'])} row groups, the file has "
                                             f"{pf.metadata.num_row_groups}")
                        else:
                            picks = groups_by_index(index["groups"], symbols)
                            table = (pf.read_row_groups(picks, use_threads=False) if picks
                                     else pf.schema_arrow.empty_table())
                        table = table.filter(wanted)
            except CorruptFileError as exc:
                raise corrupt_store_file(path, exc) from exc
            tables.append(table.cast(TICK_STORE_SCHEMA) if table.schema != TICK_STORE_SCHEMA else table)
        return pa.concat_tables(tables) if tables else TICK_STORE_SCHEMA.empty_table()

    def covers_ticks(self, symbols: str | Iterable[str], start: DateLike, end: DateLike,
                     kinds: Iterable[str] = ("quotes",)) -> bool:
        """Whether every day of the range that has a tick file is in the store for these symbols (manifests only)."""
        return self.covers_query(TickQuery.build(symbols, start, end, tuple(kinds)))

    def covers(self, symbols: str | Iterable[str], start: DateLike, end: DateLike, interval: str = "1h") -> bool:
        """Whether every day of the range that has a flat file is in the store for these symbols (so an automatic
        method choice can prefer the store). Reads only the manifests."""
        return self.covers_query(BarQuery.build(symbols, start, end, interval))

    def covers_query(self, query: "BarQuery | TickQuery") -> bool:
        """:meth:`covers` (bars: the days of their base rows, minutes for ``session="regular"``) or
        :meth:`covers_ticks` for a built query."""
        found = self._locate(query, strict=False)
        return all(m.days for m in found.manifests.values()) and not found.not_ingested


@dataclass
class _Located:
    """Where a query's days are in the store: per dataset its tickers, its files with their days and its manifest;
    the days without rows for the query, and among them those never ingested (not weekends or holidays)."""

    groups: dict[Dataset, list[str]]
    files: dict[Dataset, dict[str, list[date]]]
    manifests: dict[Dataset, Manifest]
    missing: set[date]
    not_ingested: set[date]


def _iso(days: Iterable[date]) -> list[str]:
    return sorted(d.isoformat() for d in days)


def _base_interval(query: BarQuery) -> Interval:
    """The stored rows a bar query is built from: regular sessions are cut from minute rows, also for day bars
    (as the flat files do)."""
    cut = query.session == "regular" and any(t.has_sessions for t in query.parsed)
    return INTERVALS["1m"] if cut else query.interval

def load_store(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1h",
    *,
    store: "str | os.PathLike[str] | HistoryStore | None" = None,
    settings: Settings | None = None,
    filesystem: Any = None,
    adjusted: bool | str = True,
    session: str = "extended",
) -> pd.DataFrame:
    """OHLCV bars from the history store, in the standard bar schema, with **zero** API or S3 calls to Massive.

    The same semantics as :func:`~massive_feeds.flatfiles.download_flat_file` (the store holds the flat files'
    rows): minute days serve ``1m 5m 15m 30m 1h 4h``, day files ``1d 1w 1M``; date-only bounds are whole New York
    days; rows are cut to ``[start, end)``, split-adjusted and session-cut like flat files, then resampled with the
    same vectorised resampler; ``vwap`` is NaN.

    Args:
        symbols: tickers in any form :func:`~massive_feeds.schema.normalize_symbols` accepts.
        start, end: dates or datetimes (naive = UTC).
        interval: ``1m 5m 15m 30m 1h 4h 1d 1w 1M``.
        store: folder, URL or :class:`HistoryStore`; default :func:`default_store_path`.
        settings: only used to find the default store.
        filesystem: an explicit pyarrow or fsspec filesystem that ``store`` is a path inside.
        adjusted: split-adjust at read time (the store keeps raw prices, so a new split never makes it
            stale); needs the splits list (one cached REST call), as flat files do. ``False``: as traded.
        session: ``"extended"`` (the whole published day) or ``"regular"`` (cut from minute rows).

    Returns:
        The bars, with ``df.attrs``: ``method="store"``, ``interval``, ``adjusted=False``, ``store``,
        ``missing_days`` (ISO days without data: weekends, holidays, not ingested), ``not_ingested_days``
        (days the store has never seen: ingest them), ``files``, ``empty_symbols``.

    Raises:
        InvalidInputError: bad symbol, interval, dates or session.
        StoreError: the store holds no days of a dataset the query needs, or a day file is unreadable.
    """
    query = BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted)
    return HistoryStore.open(store, settings, filesystem).bars(query)
