"""``download_flat_file``: bulk history from Massive's S3 flat files, in the standard bar schema.

Plan → reserve → fetch → read:

1. list the month folders of every dataset involved (one LIST per month; it gives each day file's
   size and ETag, and which days have a file at all — weekends and holidays have none);
2. look every day file up in the local cache by key + ETag; a hit costs no request and no quota;
3. reserve the bytes of all misses against the monthly flat-file quota *before* any download
   (the whole query is refused if it would pass the quota), and give back what was not downloaded;
4. stream the misses from S3 (bounded parallelism): each is inflated and parsed while it downloads and
   filtered to the wanted tickers block by block, its bytes teed into the gzip cache entry and its
   batches into a parquet day finished in the background (see :func:`_fetch_and_read`); then cut to
   the date range, split-adjust (``adjusted=True``), cut to the session (``session="regular"``) and
   resample.

Flat files hold raw prices (as traded). With ``adjusted=True`` (the default, as on REST) the splits of
the stock tickers come from ``/stocks/v1/splits`` (cached for a day, see :mod:`massive_feeds.splits`)
and are applied to the minute/day rows before resampling, so the bars equal REST's adjusted bars.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import defaultdict
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from ..config import Settings
from ..dividends import Corrections
from ..errors import CorruptFileError, InvalidInputError
from ..runtime import resolve_settings
from ..quota import QuotaManager, get_quota
from ..schema import INTERVALS, BarQuery, DateLike, DateRange, Ticker
from ..sessions import trades_on
from .cache import DayFileCache, atomic_file
from .keys import Dataset, dataset_for
from .reader import (
    bars_from_tables,
    convert_in_background,
    file_forms,
    hold_cache_writes,
    read_cached_day,
    stream_day,
)
from .stream import file_chunks, passed_on
from .s3 import MissingObjectError, RemoteFile, S3Transport, shared_transport

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """One day file to read, for the tickers of its dataset."""

    remote: RemoteFile
    forms: dict[str, str]  # file spelling -> REST ticker
    cached: Path | None  # cached parquet or downloaded gzip, if any


@dataclass
class _Plan:
    jobs: list[_Job] = field(default_factory=list)
    missing: dict[str, list[date]] = field(default_factory=dict)  # dataset path -> trading days without a file
    closed: set[date] = field(default_factory=set)  # days without a file on which none of the tickers trades

    @property
    def misses(self) -> list[_Job]:
        return [j for j in self.jobs if j.cached is None]

    @property
    def missing_days(self) -> list[str]:
        return sorted({d.isoformat() for days in self.missing.values() for d in days})


def _group_by_dataset(query: BarQuery) -> dict[Dataset, list[Ticker]]:
    """Tickers by the dataset that serves them; ``regular`` sessions are cut from minute files."""
    groups: dict[Dataset, list[Ticker]] = defaultdict(list)
    for ticker in query.parsed:
        base = INTERVALS["1m"] if query.session == "regular" and ticker.has_sessions else query.interval
        groups[dataset_for(ticker, base)].append(ticker)
    return dict(sorted(groups.items()))


def _plan(transport: S3Transport, cache: DayFileCache, groups: dict[Dataset, list[Ticker]],
          days: list[date], pool: ThreadPoolExecutor) -> _Plan:
    prefixes = [p for ds in groups for p in ds.month_prefixes(days)]
    listed = {f.key: f for files in pool.map(transport.list_files, prefixes) for f in files}
    plan = _Plan()
    for ds, tickers in groups.items():
        forms = file_forms(tickers)
        for day in days:
            remote = listed.get(ds.key(day))
            if remote is None:
                if trades_on(day, {t.asset for t in tickers}):  # a weekend or holiday is not missing
                    plan.missing.setdefault(ds.path, []).append(day)
                else:
                    plan.closed.add(day)
            else:
                plan.jobs.append(_Job(remote, forms, cache.lookup(remote)))
    return plan


@dataclass
class _Run:
    """What every job of one query shares."""

    transport: S3Transport
    cache: DayFileCache
    bar: tqdm
    pending: dict[int, int]  # id(job) -> reserved bytes not yet downloaded
    # A day streams download -> inflate -> parse in one job; pyarrow parses on every core, so on a small
    # machine two days at once (one downloading while the other parses) is enough to keep it busy.
    stream_slots: threading.Semaphore
    quota: QuotaManager | None = None  # reserves a cached day damaged on disk before it is downloaded again

    def refetch(self, job: _Job) -> None:
        """Count a cached day that turned out damaged as a download: reserve its bytes first."""
        if self.quota is not None:
            self.quota.reserve_flatfile_bytes(job.remote.size)  # refuses before anything is downloaded
        self.pending[id(job)] = job.remote.size


def _fetch_and_read(job: _Job, run: _Run) -> pa.Table | None:
    """The wanted rows of one day file, streamed from S3 while it downloads (or from a cached gzip).
    ``None`` when the object vanished after it was listed.

    A download is inflated and scanned as its bytes arrive (only the wanted tickers' lines are parsed)
    and teed to a temp gzip that becomes the cache entry (byte-exact, renamed into place) only once every
    listed byte arrived and the gzip CRC checked out. The rows are returned then; the day's parquet entry
    is written afterwards by a background thread and replaces the gzip once complete. A
    failure anywhere leaves no entry.
    """
    remote, path, cache = job.remote, job.cached, run.cache
    try:
        if path is not None and path.suffix == ".parquet":
            try:
                return read_cached_day(path, job.forms, remote.key)
            except CorruptFileError as exc:  # bit rot on disk (its checksums or seal fail): download it again
                log.warning("discarding damaged cached flat file %s and downloading it again: %s", path.name, exc)
                cache.discard(remote.key)
                run.refetch(job)
                path = None
        parquet = cache.parquet_path(remote)
        with run.stream_slots:
            if path is not None:  # a complete gzip entry (its parquet may be being written right now)
                try:
                    chunks = iter(file_chunks(path))
                    first = next(chunks, b"")
                except FileNotFoundError:  # its parquet landed meanwhile and replaced it
                    return read_cached_day(parquet, job.forms, remote.key)
                table = stream_day(_chain(first, chunks), remote.key, job.forms)
            else:
                gz = path = cache.gzip_path(remote)
                with atomic_file(gz) as tmp, open(tmp, "wb") as fh:
                    # once every byte arrived, the job's reserved quota bytes count as spent (a download
                    # that breaks off for good spends none)
                    chunks = passed_on(run.transport.iter_object(remote, run.bar.update), copy_to=fh,
                                       at_end=lambda: run.pending.pop(id(job), None))
                    table = stream_day(chunks, remote.key, job.forms)
                cache.discard(remote.key, keep_etag=remote.etag)  # older ETags of this day are now stale
        convert_in_background(path, parquet, remote.key)
        return table
    except MissingObjectError:
        log.warning("flat file %s was listed but is gone; skipping that day", remote.key)
        return None
    except CorruptFileError:
        cache.discard(remote.key)
        raise


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _run_jobs(plan: _Plan, transport: S3Transport, cache: DayFileCache, pool: ThreadPoolExecutor,
              quota: QuotaManager, progress: bool) -> tuple[list[tuple[_Job, pa.Table]], list[_Job]]:
    """Read every job; the quota for downloads that did not complete is given back."""
    misses = plan.misses
    pending = {id(j): j.remote.size for j in misses}
    quota_bytes = sum(pending.values())
    quota.reserve_flatfile_bytes(quota_bytes)  # refuses before anything is downloaded
    results: list[tuple[_Job, pa.Table]] = []
    vanished: list[_Job] = []
    try:
        with tqdm(total=quota_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="flat files",
                  disable=not progress or not misses, file=sys.stderr) as bar:
            run = _Run(transport, cache, bar, pending, threading.Semaphore(max(2, (os.cpu_count() or 2) // 2)),
                       quota)
            futures = {pool.submit(_fetch_and_read, job, run): job for job in plan.jobs}
            _, not_done = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in not_done:  # after a failure, start nothing new ...
                fut.cancel()
            wait(futures)  # ... but let running downloads finish, so the quota accounting is exact
            for fut, job in futures.items():  # in plan order; re-raises the first failure
                if fut.cancelled():
                    continue
                table = fut.result()
                if table is None:
                    vanished.append(job)
                else:
                    results.append((job, table))
    finally:
        quota.release_flatfile_bytes(sum(pending.values()))
    return results, vanished


def download_flat_file(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1d",
    *,
    settings: Settings | None = None,
    progress: bool | None = None,
    max_workers: int = 4,
    adjusted: bool | str = True,
    session: str = "extended",
) -> pd.DataFrame:
    """OHLCV bars from Massive's flat files (S3 day files), in the standard bar schema.

    Minute files serve ``1m 5m 15m 30m 1h 4h`` (resampled into epoch-aligned UTC buckets, as REST
    does); day files serve ``1d 1w 1M`` (weeks start Sunday, months on the 1st, both labelled midnight
    New York). Date-only bounds are whole New York days; rows are cut to ``[start, end)`` before
    resampling. Flat files carry no VWAP, so ``vwap`` is NaN; index files have no volume (NaN) or trade
    count (0).

    Flat files hold prices as traded. ``adjusted=True`` (the default, as on REST) applies the stock
    tickers' splits (from ``/stocks/v1/splits``, one market-wide table for every ticker, fetched in
    bulk and refreshed at most daily) to the minute/day rows before resampling, so the bars equal
    REST's ``adjusted=true`` bars; ``adjusted=False`` returns the raw prices; ``adjusted="total"`` applies the cash
    dividends too (total return, :mod:`massive_feeds.dividends`).

    Day files are cached under ``<cache_dir>/flatfiles`` by key and ETag: a repeated query makes no
    download and costs no quota, a republished file is fetched again. Downloads count against the
    plan's monthly flat-file bytes, reserved before the first byte moves.

    Args:
        symbols: tickers in any form :func:`~massive_feeds.schema.normalize_symbols` accepts.
        start, end: dates or datetimes (naive = UTC).
        interval: ``1m 5m 15m 30m 1h 4h 1d 1w 1M``.
        settings: defaults to the configured ones, resolved by :func:`~massive_feeds.runtime.resolve_settings`
            (no key configured: the built-in sandbox).
        progress: byte progress bar; default only when stderr is a terminal.
        max_workers: parallel downloads / parses.
        adjusted: split-adjusted prices (default) or, with ``False``, prices as traded.
        session: ``"extended"`` (default: the whole published day) or ``"regular"`` (09:30–16:00 New York
            on NYSE sessions, early closes included, for stocks, options and indices; read from minute
            files and rebuilt, also for ``1d 1w 1M`` — see :mod:`massive_feeds.sessions`).

    Returns:
        The bars, with ``df.attrs``: ``method="flat_file"``, ``interval``, ``adjusted``, ``session``,
        ``splits`` (how many splits of the symbols were applied), ``splits_as_of``/``splits_age_hours`` (when
        the splits list was fetched: a cached one is used, whatever its age, when the REST quota cannot
        cover a refresh), ``merged_splits`` (near-duplicate split
        rows applied once, see :func:`~massive_feeds.splits.merge_duplicate_splits`),
        ``missing_days`` (ISO trading days without a file, e.g. not yet published; weekends and holidays
        are never missing), ``closed_days`` (days in the range without a session for these symbols),
        ``files``, ``cached_files``, ``downloaded_bytes``, ``empty_symbols``.

    Raises:
        InvalidInputError: bad symbol, interval, dates or session.
        MissingCredentialsError: no S3 credentials configured; or ``adjusted=True`` for stocks with no
            REST API key to fetch the splits with (and no cached splits list).
        QuotaExceededError: the downloads would pass the monthly flat-file quota (nothing was downloaded).
        AuthenticationError: the S3 credentials were rejected.
        NotEntitledError: the plan does not include a dataset (403 on download).
        CorruptFileError: a day file is truncated or not valid gzip/CSV (its cache entry is discarded).
        ServerError: the endpoint is unreachable or a download kept breaking off.
    """
    query = BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted)
    return flat_file_bars(query, settings=settings, progress=progress, max_workers=max_workers)


def flat_file_bars(query: BarQuery, *, settings: Settings | None = None, progress: bool | None = None,
                   max_workers: int = 4) -> pd.DataFrame:
    """:func:`download_flat_file` for a built :class:`~massive_feeds.schema.BarQuery`."""
    tickers, iv, window, session, adjusted = query.symbols, query.interval, query.range, query.session, query.adjusted
    if any(t.asset == "futures" for t in query.parsed):
        window = _futures_window(query)
    settings = resolve_settings(settings, need=("rest", "s3"))  # no key configured: the built-in sandbox
    transport = shared_transport(settings)
    cache = DayFileCache(settings.cache_dir / "flatfiles")
    groups = _group_by_dataset(query)
    # before any download: a missing key fails the query without spending byte quota
    fixes = Corrections.fetch(query.adjustment, [t for t in query.parsed if t.asset == "stocks"],
                              window.first_day, settings)
    splits = fixes.splits
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="flatfiles") as pool:
        plan = _plan(transport, cache, groups, window.calendar_days(), pool)
        for folder in {cache.parquet_path(job.remote).parent for job in plan.jobs}:
            cache.sweep(folder)
        wanted = progress if progress is not None else sys.stderr.isatty()
        # the parquet conversions of the downloaded days start once every day of the query is read,
        # so they never compete with the query for the CPU
        with hold_cache_writes():
            results, vanished = _run_jobs(plan, transport, cache, pool, get_quota(settings), wanted)
    missing = sorted(set(plan.missing_days) | {j.remote.day.isoformat() for j in vanished if j.remote.day})
    df = bars_from_tables([(table, job.forms) for job, table in results], window, iv, splits=splits,
                          session=session, dividends=fixes.dividends)
    _log_summary(plan, missing, window)
    present = set(df["symbol"].unique())
    merged = df.attrs.get("merged_splits", [])
    df.attrs.update(
        method="flat_file", interval=iv.name, adjusted=adjusted, session=session,
        splits=0 if splits is None else int(len(splits)) - sum(len(m["dropped"]) for m in merged),
        merged_splits=merged, missing_days=missing, closed_days=sorted(d.isoformat() for d in plan.closed),
        files=len(plan.jobs), cached_files=len(plan.jobs) - len(plan.misses),
        downloaded_bytes=sum(j.remote.size for j in plan.misses),
        empty_symbols=[t for t in tickers if t not in present], source=settings.source,
    )
    df.attrs.update(fixes.attrs(df.attrs.get("dividends")))  # adjustment, adjusted_as_of, dividends applied
    if splits is not None:  # how old the splits list is (a cached one when the REST quota is used up)
        df.attrs.update(splits_as_of=splits.attrs.get("as_of"), splits_age_hours=splits.attrs.get("age_hours"))
    return df


def _futures_window(query: BarQuery) -> DateRange:
    """Futures day files hold exchange sessions: date bounds mean the sessions ending on those days (the
    first one opened the evening before). Continuous series are built above (:mod:`massive_feeds.futures`), which
    ``massive_feeds.download_flat_file`` and ``fetch_data`` reach."""
    from ..futures_symbols import is_continuous

    if cont := [t.symbol for t in query.parsed if is_continuous(t.symbol)]:
        raise InvalidInputError(f"{', '.join(cont)}: continuous futures series are built above the flat-file layer "
                                "from their contracts' day files: use massive_feeds.download_flat_file (or fetch_data"
                                "(..., method='flat_file')); massive_feeds.flatfiles' takes contract codes like ESZ4")
    if any(t.asset != "futures" for t in query.parsed):
        raise InvalidInputError("futures cannot be mixed with other asset classes in one flat-file query")
    return query.range.in_futures_sessions()


def _log_summary(plan: _Plan, missing: list[str], window: DateRange) -> None:
    hits = len(plan.jobs) - len(plan.misses)
    log.info("flat files: %d day file(s), %d from cache, %d downloaded (%.1f MB)", len(plan.jobs), hits,
             len(plan.misses), sum(j.remote.size for j in plan.misses) / 1e6)
    if plan.closed:
        log.info("no session on %d day(s) (weekends, holidays): %s", len(plan.closed),
                 ", ".join(sorted(d.isoformat() for d in plan.closed)))
    if missing:
        log.info("no flat file for %d trading day(s) (not yet published?): %s", len(missing), ", ".join(missing))
    if not plan.jobs:
        log.warning("no flat files at all for %s..%s", window.first_day, window.last_day)
