"""``ingest``: build or update the history store from Massive's flat files, locally or on a Dask cluster.

List → plan → reserve → run → record:

1. list the bucket's month folders for the range (one LIST per month: sizes, ETags, which days have a file);
   with ``refresh=False`` only the days the manifest does not settle are listed, so a repeated ingest of an
   up-to-date range makes no S3 request at all;
2. plan one task per day that is new, republished (its ETag changed), missing its file, or lacks symbols now
   asked for; days already in the manifest with the listed ETag are skipped;
3. reserve the bytes of every day not in the local flat-file cache against the monthly flat-file quota before
   anything is downloaded (the whole ingest is refused if it would pass the quota) and give back what was not
   downloaded;
4. run the tasks on the engine (local pool or Dask); each streams its day from S3 (inflated and parsed while it
   downloads) and writes its day file all at once;
5. record each finished day in the manifest (saved at least every second and at the end), after its file is in
   place. A run killed at any point loses at most the last second of manifest entries: those days are simply
   ingested again onto the same paths, so the store never holds a day twice;
6. merge each month of the range whose days are not already in one month file (new days, republished days,
   a store written in the older per-day layout) into a new month file (:mod:`.monthfile`; bar datasets only),
   then point the month's days at it in the manifest, then delete the files no day names any more. The month
   file is written under a new name (temp file + rename locally), so a run killed during the merge leaves the
   manifest naming the old files, all still in place; one killed after the manifest save leaves unreferenced
   files, which the next ingest deletes. A query reads both layouts, so it is right at every step.

Appending a day to a month rewrites that month's file (reading the previous month file and the new day file
row group by row group; memory stays at a few row groups per input): cheap for a bulk ingest (each month once),
and for a daily update a cost that grows with the month (~0.6 s of CPU per full-market day already in it,
measured on 2 cores: the month file is decoded and encoded again; its rows are not sorted again, only the symbol
runs of each input are interleaved). ``compact=False`` skips step 6 (reads stay right, each day then costs a file open).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, ContextManager, Iterable, Iterator

from tqdm.auto import tqdm

from ..config import Settings
from ..errors import InvalidInputError, StoreError
from ..flatfiles.cache import DayFileCache
from ..flatfiles.keys import Dataset, dataset_for
from ..futures_symbols import is_continuous
from ..flatfiles.s3 import RemoteFile, shared_transport
from ..quota import get_quota
from ..runtime import resolve_settings
from ..schema import DateLike, asset_class, normalize_symbols, parse_date_range, utc_now
from ..storage import TEMP_SUFFIX
from .core import HistoryStore, parse_dataset
from .daytask import DayResult, DayTask, day_file_path
from .engines import FATAL_ERRORS, check_engine, make_runner
from .manifest import DayEntry, Manifest, is_month_file
from .monthfile import build_month_file, month_file_path, month_of

log = logging.getLogger(__name__)

#: The manifest is saved after a finished day at most this often (and always at the end).
MANIFEST_SAVE_SECONDS = 1.0
LOCK_NAME = ".ingest.lock"


class IngestError(StoreError):
    """Some days could not be ingested; the others were stored. ``report`` holds the details."""

    def __init__(self, message: str, *, report: "IngestReport | None" = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.report = report


@dataclass
class IngestReport:
    """What one ingest did. ``str()`` gives a one-paragraph summary."""

    dataset: str
    store: str
    engine: str
    days: int
    ingested: list[date] = field(default_factory=list)
    republished: list[date] = field(default_factory=list)  # ingested again because the ETag changed
    skipped: list[date] = field(default_factory=list)  # already in the store with the same ETag
    absent: list[date] = field(default_factory=list)  # no file in the bucket (weekend, holiday, not yet)
    vanished: list[date] = field(default_factory=list)  # listed, then gone before the download
    failed: dict[date, str] = field(default_factory=dict)
    rows: int = 0
    downloaded_bytes: int = 0
    file_bytes: int = 0
    s3_listings: int = 0
    swept_temp_files: int = 0
    swept_unreferenced_files: int = 0  # files no manifest entry names (left by a run killed mid-merge)
    merged_months: list[str] = field(default_factory=list)  # months written as a new month file
    merge_failed: dict[str, str] = field(default_factory=dict)
    merge_seconds: float = 0.0
    seconds: float = 0.0
    dashboard: str | None = None

    @property
    def days_per_second(self) -> float:
        return len(self.ingested) / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return (f"IngestReport({self.dataset!r}, ingested={len(self.ingested)}, skipped={len(self.skipped)}, "
                f"absent={len(self.absent)}, failed={len(self.failed)}, {self.seconds:.1f}s)")

    def __str__(self) -> str:
        parts = [
            f"{self.dataset} -> {self.store} on {self.engine}: {len(self.ingested)} day(s) ingested"
            + (f" ({len(self.republished)} republished)" if self.republished else "")
            + f", {len(self.skipped)} already up to date, {len(self.absent)} without a file"
            + (f", {len(self.vanished)} vanished" if self.vanished else "")
            + (f", {len(self.failed)} FAILED" if self.failed else ""),
            f"{self.rows:,} rows, {self.downloaded_bytes / 1e6:.1f} MB downloaded, {self.file_bytes / 1e6:.1f} MB "
            f"written in {self.seconds:.1f}s ({self.days_per_second:.2f} days/s)",
        ]
        if self.merged_months:
            parts.append(f"merged into month files: {', '.join(self.merged_months)} ({self.merge_seconds:.1f}s of "
                         "the total)")
        if self.dashboard:
            parts.append(f"Dask dashboard: {self.dashboard}")
        for day, why in sorted(self.failed.items()):
            parts.append(f"  {day}: {why}")
        for month, why in sorted(self.merge_failed.items()):
            parts.append(f"  month {month} not merged: {why}")
        return "\n".join(parts)


@dataclass
class _Plan:
    tasks: list[DayTask] = field(default_factory=list)
    republished: set[date] = field(default_factory=set)
    listings: int = 0


def _check_symbols(symbols: str | Iterable[str] | None, ds: Dataset) -> tuple[str, ...] | None:
    if symbols is None:
        if ds.is_ticks:
            raise InvalidInputError(f"{ds.path} holds every ticker's ticks (a stocks quotes day is 6-10 GB): "
                                    "ingest it for some symbols (--symbols AAPL,MSFT)")
        return None
    tickers = normalize_symbols(symbols)
    if ds.is_ticks and (cont := [t for t in tickers if is_continuous(t)]):
        raise InvalidInputError(f"{', '.join(cont)}: tick files hold contracts, not continuous series; ingest the "
                                "contracts (e.g. ESZ6)")
    # futures: the exchange's prefix holds the contract (GCZ6 is in us_futures_comex, ESZ6 in us_futures_cme)
    wrong = [t for t in tickers if (dataset_for(t, ds.base) != ds if ds.asset.startswith("futures")
                                    else asset_class(t) != ds.asset)]
    if wrong:
        raise InvalidInputError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not in {ds.path} "
                                f"({ds.asset}); ingest them with that asset class's dataset")
    return tuple(sorted(tickers))


def _union(old: tuple[str, ...] | None, new: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if old is None or new is None:
        return None
    return tuple(sorted(set(old) | set(new)))


def _list(settings: Settings, ds: Dataset, days: list[date]) -> tuple[dict[str, RemoteFile], int]:
    prefixes = ds.month_prefixes(days)
    if not prefixes:
        return {}, 0
    transport = shared_transport(settings)
    with ThreadPoolExecutor(max_workers=min(8, len(prefixes)), thread_name_prefix="store-list") as pool:
        listed = {f.key: f for files in pool.map(transport.list_files, prefixes) for f in files}
    return listed, len(prefixes)


def _plan(store: HistoryStore, settings: Settings, ds: Dataset, days: list[date], manifest: Manifest,
          files: dict[str, int], symbols: tuple[str, ...] | None, refresh: bool, keep_flatfiles: bool,
          report: IngestReport, transient: bool = False) -> _Plan:
    def up_to_date(entry: DayEntry | None) -> bool:
        # A day file of another size than recorded was damaged (or replaced by hand): ingest it again.
        return (entry is not None and entry.covers(symbols) and entry.file in files
                and (not entry.file_bytes or files[entry.file] == entry.file_bytes))

    to_list = days if refresh else [
        d for d in days if not up_to_date(manifest.days.get(d)) and not manifest.is_settled_absent(d)]
    listed, plan_listings = _list(settings, ds, to_list)
    plan = _Plan(listings=plan_listings)
    checked_at = utc_now()
    wanted = set(to_list)
    for day in days:
        entry = manifest.days.get(day)
        if day not in wanted:  # trusted without listing (refresh=False)
            (report.skipped if entry is not None else report.absent).append(day)
            continue
        remote = listed.get(ds.key(day))
        if remote is None:
            if entry is not None:
                log.info("%s is no longer in the bucket; keeping the stored day", ds.key(day))
                report.skipped.append(day)
            else:
                manifest.mark_absent(day, checked_at)
                report.absent.append(day)
            continue
        if up_to_date(entry) and entry is not None and entry.etag == remote.etag:
            report.skipped.append(day)
            continue
        if entry is not None and entry.etag != remote.etag:
            plan.republished.add(day)
        task_symbols = _union(entry.symbols, symbols) if entry is not None else symbols
        plan.tasks.append(DayTask(ds, remote, store.location, settings, task_symbols, keep_flatfiles, transient))
    return plan


def _sweep(store: HistoryStore, root: str, files: dict[str, int]) -> int:
    """Temp files left by killed runs (we hold the ingest lock, so none belongs to a live writer)."""
    removed = 0
    for rel in files:
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(".") and name.endswith(TEMP_SUFFIX):
            store.location.delete(f"{root}/{rel}")
            removed += 1
    if removed:
        log.info("removed %d temp file(s) left by an interrupted ingest", removed)
    return removed


def _sweep_unreferenced(store: HistoryStore, root: str, files: dict[str, int], manifest: Manifest) -> int:
    """Stored parquet files no manifest entry names (we hold the ingest lock): the inputs of a month merge
    killed after its manifest save, or a day file whose entry was never saved (that day is ingested again)."""
    named = {e.file for e in manifest.days.values()}
    removed = 0
    for rel in files:
        name = rel.rsplit("/", 1)[-1]
        if rel not in named and name.endswith(".parquet") and not name.startswith(".") and (
                rel.startswith("date=") or is_month_file(rel)):
            store.location.delete(f"{root}/{rel}", prune=True)
            removed += 1
    if removed:
        log.info("removed %d stored file(s) the manifest no longer names", removed)
    return removed


def merge_months(store: HistoryStore, ds: Dataset, manifest: Manifest, months: Iterable[str],
                 report: IngestReport | None = None) -> list[str]:
    """Step 6 of the module docstring for ``months`` (the caller holds the ingest lock): each month whose days
    are not all in the month file of exactly these days is merged into a new one. Returns the merged months."""
    merged = []
    for month in sorted(set(months)):
        entries = {d: e for d, e in manifest.days.items() if month_of(d) == month}
        if not entries or all(e.file == month_file_path(month, entries) for e in entries.values()):
            continue
        t0 = time.perf_counter()
        try:
            built = build_month_file(store.location, ds.path, month, entries)
        except (StoreError, OSError, ValueError) as exc:
            log.error("could not merge %s %s into a month file (its days stay readable in their files): %s",
                      ds.path, month, exc)
            if report is not None:
                report.merge_failed[month] = f"{type(exc).__name__}: {exc}"
            continue
        if built is None:
            continue
        for day, entry in entries.items():
            manifest.days[day] = replace(entry, file=built.file, file_bytes=built.file_bytes)
        store.save_manifest(manifest)  # the commit point: readers now use the month file
        still_named = {e.file for e in manifest.days.values()}
        for old in {e.file for e in entries.values()} - still_named:
            store.location.delete(store.location.path(ds.path, old), prune=True)
        merged.append(month)
        seconds = time.perf_counter() - t0
        log.info("merged %d day(s) of %s %s into %s (%d rows) in %.1fs", len(entries), ds.path, month, built.file,
                 built.rows, seconds)
        if report is not None:
            report.merged_months.append(month)
            report.merge_seconds += seconds
    return merged


def compact(dataset: str | Dataset = "us_stocks_sip/minute_aggs_v1", start: DateLike | None = None,
            end: DateLike | None = None, *, store: "str | os.PathLike[str] | HistoryStore | None" = None,
            filesystem: Any = None) -> list[str]:
    """Merge the stored days of ``dataset`` (all of them, or the months of ``start..end``) into month files,
    without any request to Massive: what :func:`ingest` does after downloading, for a store written in the
    older per-day layout (which stays readable, only slower) or one ingested with ``compact=False``.

    Returns:
        The months written as new month files (already merged months are left as they are).

    Raises:
        InvalidInputError: a tick dataset (tick days are kept per day) or bad dates.
        StoreError: another ingest holds the store's lock, or a month could not be written.
    """
    ds = parse_dataset(dataset)
    if ds.is_ticks:
        raise InvalidInputError(f"{ds.path} is kept one file per day; only bar datasets are merged into months")
    hs = HistoryStore.open(store, None, filesystem)
    root = hs.dataset_root(ds)
    with _lock(hs, root):
        manifest = hs.manifest(ds)
        if start is not None or end is not None:
            if start is None or end is None:
                raise InvalidInputError("compact needs both start and end, or neither")
            months = {month_of(d) for d in parse_date_range(start, end).calendar_days()}
        else:
            months = {month_of(d) for d in manifest.days}
        report = IngestReport(ds.path, hs.location.display, "compact", 0)
        merged = merge_months(hs, ds, manifest, months, report)
        _sweep_unreferenced(hs, root, hs.location.list_files(root), manifest)
    if report.merge_failed:
        raise StoreError(f"{len(report.merge_failed)} month(s) of {ds.path} could not be merged "
                         f"({', '.join(sorted(report.merge_failed))}); their days stay readable. First error: "
                         f"{report.merge_failed[min(report.merge_failed)]}")
    return merged


def _lock(store: HistoryStore, root: str) -> ContextManager[Any]:
    """One ingest per dataset of a local store at a time (object stores: one writer is up to you)."""
    if not store.location.is_local:
        return nullcontext()
    from filelock import FileLock, Timeout

    os.makedirs(root, exist_ok=True)
    lock = FileLock(os.path.join(root, LOCK_NAME), timeout=0)

    @contextmanager
    def held() -> Iterator[None]:
        try:
            lock.acquire()
        except Timeout:
            raise StoreError(f"Another ingest is writing {root} right now; wait for it to finish") from None
        try:
            yield
        finally:
            lock.release()

    return held()


class _ManifestWriter:
    """Records finished days and saves the manifest at most every ``MANIFEST_SAVE_SECONDS``."""

    def __init__(self, store: HistoryStore, manifest: Manifest) -> None:
        self.store, self.manifest = store, manifest
        self._dirty = False
        self._saved_at = 0.0

    def record(self, result: DayResult) -> None:
        self.manifest.record(result.day, DayEntry(
            key=result.key, etag=result.etag, size=result.size, file=result.file, rows=result.rows,
            file_bytes=result.file_bytes, symbols=result.symbols, ingested_at=utc_now().isoformat(timespec="seconds")))
        self._dirty = True
        if time.monotonic() - self._saved_at >= MANIFEST_SAVE_SECONDS:
            self.flush()

    def touch(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self.store.save_manifest(self.manifest)
            self._dirty = False
            self._saved_at = time.monotonic()


def ingest(
    dataset: str | Dataset = "us_stocks_sip/minute_aggs_v1",
    start: DateLike | None = None,
    end: DateLike | None = None,
    symbols: str | Iterable[str] | None = None,
    *,
    store: "str | os.PathLike[str] | HistoryStore | None" = None,
    engine: str = "local",
    scheduler: Any = None,
    workers: int | None = None,
    processes: bool | None = None,
    settings: Settings | None = None,
    filesystem: Any = None,
    refresh: bool = True,
    keep_flatfiles: bool = True,
    retries: int | None = None,
    progress: bool | None = None,
    on_day: Callable[[DayResult], None] | None = None,
    compact: bool = True,
) -> IngestReport:
    """Bring ``dataset``'s days ``start..end`` into the history store (incrementally; see the module docstring).

    Args:
        dataset: a bar dataset, ``<prefix>/minute_aggs_v1`` or ``<prefix>/day_aggs_v1``.
        start, end: New York session dates (inclusive), as for every query.
        symbols: only these tickers (default: the whole market). A later ingest of more symbols extends the
            stored days; a whole-market day covers every symbol.
        store: folder, URL (``s3://…``) or :class:`HistoryStore`; default ``<home>/store``. With a remote Dask
            cluster use a location every worker can reach (an object store or a shared folder).
        engine: ``"local"`` (a pool on this machine) or ``"dask"`` (a distributed cluster).
        scheduler: with ``engine="dask"``: a scheduler address (``tcp://host:8786``) or a ``distributed.Client``;
            default a ``LocalCluster`` of ``workers`` single-threaded workers.
        workers: pool size / LocalCluster workers; default one per core (at most 8).
        processes: local pool of processes instead of threads (default threads); for the LocalCluster,
            worker processes (default) or threads.
        settings: S3 credentials, cache folder and plan; defaults to the configured ones, resolved by
            :func:`~massive_feeds.runtime.resolve_settings` (no key configured: the built-in sandbox).
            They are sent to the Dask workers, which download the files themselves.
        filesystem: an explicit pyarrow or fsspec filesystem that ``store`` is a path inside.
        refresh: list the bucket for every day of the range, so republished files (new ETag) are re-ingested.
            ``False`` trusts the manifest: an up-to-date range then costs no S3 request at all.
        keep_flatfiles: keep each downloaded day in the flat-file cache too, as the gzip it was (``download_flat_file``
            then reads it without a download); ``False`` keeps nothing there (each day is parsed while it downloads
            either way), and removes a cached copy once the store has the day.
        retries: attempts after a failed task (default 1 locally, 2 on Dask); credential, entitlement and input
            errors are never retried.
        progress: a day progress bar on stderr; default when stderr is a terminal.
        on_day: called on the driver with each finished day, after the manifest records it.
        compact: merge each month of the range into one month file after the days are stored (bar datasets;
            step 6 of the module docstring), so a query opens one file per month instead of one per day.

    Returns:
        An :class:`IngestReport`.

    Raises:
        InvalidInputError: bad dataset, dates, symbols or engine.
        MissingCredentialsError: no S3 credentials (and the range needs listing or downloading).
        QuotaExceededError: the downloads would pass the monthly flat-file quota (nothing was downloaded).
        AuthenticationError, NotEntitledError: S3 refused the credentials or the dataset (the run stops at once).
        IngestError: some days failed (corrupt file, server errors); the others were stored, rerun to retry.
        StoreError: the store cannot be written, or another ingest holds its lock.
    """
    if start is None or end is None:
        raise InvalidInputError("ingest needs a start and an end date")
    t0 = time.perf_counter()
    ds = parse_dataset(dataset)
    window = parse_date_range(start, end)
    wanted = _check_symbols(symbols, ds)
    check_engine(engine, scheduler)
    settings = resolve_settings(settings, need=("rest", "s3"))  # no key configured: the built-in sandbox
    hs = HistoryStore.open(store, settings, filesystem)
    root = hs.dataset_root(ds)
    days = window.calendar_days()
    report = IngestReport(ds.path, hs.location.display, engine, len(days))
    with _lock(hs, root):
        manifest = hs.manifest(ds)
        files = hs.location.list_files(root)
        report.swept_temp_files = _sweep(hs, root, files)
        if not ds.is_ticks:
            report.swept_unreferenced_files = _sweep_unreferenced(hs, root, files, manifest)
        plan = _plan(hs, settings, ds, days, manifest, files, wanted, refresh, keep_flatfiles, report,
                     transient=compact and not ds.is_ticks)
        report.s3_listings = plan.listings
        writer = _ManifestWriter(hs, manifest)
        try:
            if plan.tasks:
                _run(plan, hs, settings, report, writer, engine=engine, scheduler=scheduler, workers=workers,
                     processes=processes, retries=retries, progress=progress, on_day=on_day)
                if hs.location.is_local:  # a worker killed mid-write leaves a temp file; its retry wrote the day
                    report.swept_temp_files += _sweep(hs, root, hs.location.list_files(root))
        finally:
            if report.absent:
                writer.touch()  # days seen without a file are worth remembering too
            writer.flush()
            report.seconds = time.perf_counter() - t0
        if compact and not ds.is_ticks:
            merge_months(hs, ds, manifest, {month_of(d) for d in days}, report)
            report.seconds = time.perf_counter() - t0
    log.info("%s", report)
    if report.failed:
        raise IngestError(f"{len(report.failed)} day(s) of {ds.path} could not be ingested "
                          f"({', '.join(str(d) for d in sorted(report.failed))}); the other days are stored, run "
                          "the same ingest again to retry them. First error: "
                          f"{report.failed[min(report.failed)]}", report=report)
    if report.merge_failed:
        raise IngestError(f"{len(report.merge_failed)} month(s) of {ds.path} could not be merged into a month file "
                          f"({', '.join(sorted(report.merge_failed))}); every day is stored and readable, run the "
                          f"same ingest again to merge them. First error: "
                          f"{report.merge_failed[min(report.merge_failed)]}", report=report)
    return report


def _run(plan: _Plan, hs: HistoryStore, settings: Settings, report: IngestReport, writer: _ManifestWriter, *,
         engine: str, scheduler: Any, workers: int | None, processes: bool | None, retries: int | None,
         progress: bool | None, on_day: Callable[[DayResult], None] | None) -> None:
    cache = DayFileCache(settings.cache_dir / "flatfiles")
    reserved = {t.day: t.remote.size for t in plan.tasks if cache.lookup(t.remote) is None}
    quota = get_quota(settings)
    quota.reserve_flatfile_bytes(sum(reserved.values()))  # refuses before anything is downloaded
    unused = 0  # reserved bytes that were not downloaded after all
    runner = make_runner(engine, workers=workers, scheduler=scheduler, processes=processes, retries=retries)
    report.engine = runner.description
    report.dashboard = getattr(runner, "dashboard_link", None)
    if report.dashboard and getattr(runner, "remote", False) and hs.location.is_local:
        log.warning("ingesting on a remote Dask cluster into the local folder %s: every worker must see that "
                    "folder (shared disk), or use an object-store URL", hs.location.display)
    show = progress if progress is not None else sys.stderr.isatty()
    try:
        with tqdm(total=len(plan.tasks), unit="day", desc=f"ingest {plan.tasks[0].dataset.path}",
                  disable=not show, file=sys.stderr) as bar:
            for task, outcome in runner.run(plan.tasks):
                bar.update()
                reserved_bytes = reserved.pop(task.day, 0)
                if isinstance(outcome, BaseException):
                    downloaded = int(getattr(outcome, "downloaded_bytes", 0))
                    unused += max(0, reserved_bytes - downloaded)
                    report.downloaded_bytes += downloaded
                    if isinstance(outcome, FATAL_ERRORS) or not isinstance(outcome, Exception):
                        runner.cancel()
                        raise outcome
                    log.error("ingest of %s failed: %s", task.remote.key, outcome)
                    report.failed[task.day] = f"{type(outcome).__name__}: {outcome}"
                    continue
                unused += max(0, reserved_bytes - outcome.downloaded_bytes)
                report.downloaded_bytes += outcome.downloaded_bytes
                if outcome.vanished:
                    report.vanished.append(outcome.day)
                    continue
                writer.record(outcome)
                report.ingested.append(outcome.day)
                if outcome.day in plan.republished:
                    report.republished.append(outcome.day)
                report.rows += outcome.rows
                report.file_bytes += outcome.file_bytes
                if on_day is not None:
                    on_day(outcome)
    except BaseException:
        runner.cancel()
        raise
    finally:
        try:
            runner.close()
        finally:
            quota.release_flatfile_bytes(unused + sum(reserved.values()))
    report.ingested.sort()
    report.republished.sort()
    report.vanished.sort()


__all__ = ["ingest", "compact", "merge_months", "IngestReport", "IngestError", "day_file_path"]
