"""Named datasets: bars saved as parquet in one folder, with metadata readable without the rows.

A dataset is ``<datasets_dir>/<name>.parquet``. Its schema metadata records symbols, time range,
row count, source, interval, tags and creation time, so :func:`list_datasets` is cheap. Writes are
atomic; names are plain (letters, digits, ``_ - .``), never paths.

Split adjustment — the rule: a dataset stores its prices **as they were saved**, and its metadata says
which they are: ``adjusted`` (``True``/``False``, from ``df.attrs["adjusted"]``, which every fetch path
sets) and, for adjusted data, ``adjusted_as_of`` (the day the adjustment was current). Recordings and
flat-file or store data saved raw stay raw. :func:`load_dataset` converts at read time:

* ``adjusted=None`` (default): as stored;
* ``adjusted=True`` on raw data: every split of its stocks is applied (splits from
  ``/stocks/v1/splits``, cached for a day — see :mod:`massive_feeds.splits`); on adjusted data, the
  splits executed after ``adjusted_as_of`` are applied, so it never goes stale;
* ``adjusted=False`` on adjusted data: the adjustment is undone with the splits up to ``adjusted_as_of``;
* ``adjusted="total"`` (total-return prices, :mod:`massive_feeds.dividends`): split-adjusted as above, then the
  cash dividends up to today applied. A dataset saved as total-return (metadata ``adjustment="total"``) is
  turned back into split-adjusted prices first (the dividends up to its ``adjusted_as_of`` undone), so it too
  never goes stale and can be read raw or split-adjusted.

Saving raw data (``adjusted=False``) and asking for ``adjusted=True`` when loading is the most robust
habit. Appending bars whose adjustment differs from the dataset's is refused.

Where the prices came from — the rule: metadata ``data_source`` is ``"massive"`` or ``"sandbox"`` (the
built-in synthetic market; see :mod:`massive_feeds.runtime`), taken from ``df.attrs["source"]`` of
fetched bars (or a recording's log). Sandbox datasets live in the same folder as real ones and are told
apart by this field (``list_datasets`` shows it; backtest tables are headed as sandbox data). Appending
sandbox bars to a real dataset, or the reverse, is refused. (``source`` in the metadata is the method:
``rest``, ``flat_file``, ``store``, ``live_recording``.)

Continuous futures series (``ES.c.0``): the metadata keeps ``roll_adjust`` and the roll table (``rolls``, the
plain records of ``df.attrs["rolls"]``), so a loaded dataset has them in its attrs again
(``massive_feeds.roll_table(df)``). Appending bars of another ``roll_adjust`` is refused; the roll tables of both
are merged (each series' roll on a day once, the newer kept), and a back-adjusted part is re-adjusted for the rolls
of the other part's window (appending September to August moves August by the 09-21 roll), so the dataset equals
one fetch of the whole window.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Literal

import pandas as pd
import pyarrow as pa

from .config import Settings, load_settings
from .errors import CorruptDatasetError, CorruptFileError, DatasetError, DatasetExistsError, IncompatibleDatasetError, InvalidInputError, MassiveError
from .futures_symbols import back_adjust, is_continuous, roll_records, roll_table
from .runtime import settings_for_source
from .schema import BAR_COLUMNS, NEW_YORK, asset_class, finalize_bars, parse_adjustment, parse_interval
from .storage import read_parquet_frame, read_parquet_metadata, write_parquet
from .tickschema import TICK_COLUMNS, finalize_ticks

#: the ``interval`` a dataset of trades/quotes (the tick schema, :mod:`.tickschema`) is saved with
TICKS_INTERVAL = "ticks"


def is_tick_frame(df: pd.DataFrame) -> bool:
    """Whether ``df`` is in the tick schema (``fetch_ticks``) rather than the bar schema."""
    return all(c in df.columns for c in TICK_COLUMNS)


log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
META_KEY = "massive_feeds"
StackMode = Literal["append", "replace", "merge"]
#: Sources whose rows are prices as traded, for datasets saved before ``adjusted`` was recorded.
RAW_SOURCES = frozenset({"flat_file", "live_recording", "store"})


def _datasets_dir(settings: Settings | None, folder: str | Path | None) -> Path:
    if folder is not None:
        return Path(folder)
    return (settings or load_settings()).datasets_dir


def validate_name(name: str) -> str:
    """A dataset name without a ``.parquet`` suffix; anything path-like is an :class:`InvalidInputError`."""
    if not isinstance(name, str):
        raise InvalidInputError(f"Invalid dataset name {name!r}")
    base = name[:-8] if name.endswith(".parquet") else name
    if not _NAME_RE.match(base) or ".." in base:
        raise InvalidInputError(
            f"Invalid dataset name {name!r}: use letters, digits, '_', '-' and '.', no slashes or '..'"
        )
    return base


def dataset_path(name: str, *, settings: Settings | None = None, folder: str | Path | None = None) -> Path:
    return _datasets_dir(settings, folder) / f"{validate_name(name)}.parquet"


def _extra_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in BAR_COLUMNS]


def stack_data(existing: pd.DataFrame | None, new: pd.DataFrame, mode: StackMode = "append") -> pd.DataFrame:
    """Combine two bar frames.

    * ``append``: all rows of both; where (symbol, timestamp) repeats, the newer row wins.
    * ``replace``: ``new`` replaces every row of ``existing`` for the symbols ``new`` holds.
    * ``merge``: like append, but a new row's missing values (NaN) are filled from the existing row.
    """
    if mode not in ("append", "replace", "merge"):
        raise InvalidInputError(f"Invalid stack mode {mode!r}; use 'append', 'replace' or 'merge'")
    if existing is None or existing.empty:
        return finalize_bars(new, extra=_extra_columns(new))
    if mode == "replace":
        existing = existing[~existing["symbol"].isin(set(new["symbol"]))]
    combined = pd.concat([existing, new], ignore_index=True)
    if mode == "merge":
        # groupby().last() takes the last non-null value per column: new values win, gaps get filled
        combined = combined.groupby(["symbol", "timestamp"], as_index=False, sort=False).last()
    extra = [c for c in dict.fromkeys(_extra_columns(existing) + _extra_columns(new)) if c in combined]
    return finalize_bars(combined, extra=extra)


def _metadata(df: pd.DataFrame, source: str | None, tags: Iterable[str], extra: dict | None) -> dict[str, str]:
    ts = df["timestamp"]
    info = {
        "symbols": sorted(map(str, df["symbol"].unique())),
        "start": ts.min().isoformat() if len(df) else None,
        "end": ts.max().isoformat() if len(df) else None,
        "rows": int(len(df)),
        "source": source or "unknown",
        "tags": sorted(set(tags)),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    return {META_KEY: json.dumps(info, default=str)}


def save_dataset(
    df: pd.DataFrame,
    name: str,
    append: bool = False,
    *,
    overwrite: bool = False,
    tags: Iterable[str] = (),
    source: str | None = None,
    metadata: dict | None = None,
    settings: Settings | None = None,
    folder: str | Path | None = None,
) -> Path:
    """Save bars as dataset ``name`` (atomically). With ``append=True`` the rows are stacked onto the
    existing dataset (de-duplicated on symbol+timestamp, newest wins) and its tags are kept.

    An existing dataset is never replaced by accident: saving under a name in use raises
    :class:`DatasetExistsError` unless ``overwrite=True`` (or ``append=True``). Appending rows that do not
    fit the dataset — another interval, bars onto trades/quotes or the reverse, another asset class — raises
    :class:`IncompatibleDatasetError` and leaves the file as it was.

    The read-modify-write holds the dataset's lock (``.<name>.lock`` beside it, a
    :class:`filelock.FileLock`), so processes appending to one dataset at the same time lose no rows.

    Raises:
        InvalidInputError: ``df`` is not a frame of bars (no ``timestamp`` or ``symbol`` column) or the name
            is path-like.
        DatasetExistsError: ``name`` exists and neither ``append`` nor ``overwrite`` was given.
        IncompatibleDatasetError: ``append=True`` with rows of another kind than the dataset's.
        DatasetError: the folder cannot be created or written, or the lock cannot be taken within
            :data:`LOCK_TIMEOUT` seconds.
    """
    path = dataset_path(name, settings=settings, folder=folder)
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"save_dataset needs a pandas DataFrame of bars, got {type(df).__name__}")
    missing = [c for c in ("timestamp", "symbol") if c not in df.columns]
    if missing:
        raise InvalidInputError(f"cannot save dataset {path.stem!r}: the frame has no {' or '.join(missing)} column "
                                f"(columns: {', '.join(map(str, df.columns[:8])) or 'none'})")
    tags = set(tags)
    source = source or df.attrs.get("method")
    metadata = {"interval": df.attrs.get("interval"), **_adjustment_meta(df.attrs), **_origin_meta(df.attrs),
                **_roll_meta(df.attrs), **(metadata or {})}
    with _dataset_lock(path):
        if path.exists() and not append:
            _refuse_overwrite(path, overwrite)
        if append and path.exists():
            old = dataset_info(path)
            _check_appendable(old, df, metadata, path.stem)
            if metadata.get("interval") is None or old.get("interval"):  # checked equal: keep the dataset's label
                metadata["interval"] = old.get("interval") or metadata.get("interval")
        if is_tick_frame(df):  # trades/quotes: ticks share timestamps, so never the bars' (symbol, time) de-dup
            metadata = {**metadata, "interval": TICKS_INTERVAL, "kinds": sorted(map(str, df["kind"].unique()))}
            if append and path.exists():
                tags |= set(dataset_info(path).get("tags", []))
                metadata.update(_merged_origin(dataset_info(path), metadata, path.stem))
                df = pd.concat([load_dataset(path), df], ignore_index=True)
            df = finalize_ticks(df)
        elif append and path.exists():
            old_info = dataset_info(path)
            tags |= set(old_info.get("tags", []))
            source = source or old_info.get("source")
            metadata.update(_merged_origin(old_info, metadata, path.stem))
            metadata.update(_merged_adjustment(old_info, metadata, path.stem))
            rolls = _merged_rolls(old_info, metadata, df, path.stem)
            stored = load_dataset(path)
            if rolls:  # each part was back-adjusted for the rolls of its own window only
                stored = _rebased(stored, old_info.get("rolls") or [], rolls, path.stem)
                df = _rebased(df, metadata.get("rolls") or [], rolls, path.stem)
            metadata.update(rolls)
            df = stack_data(stored, df, mode="append")
        else:
            df = finalize_bars(df, extra=_extra_columns(df))
        try:
            write_parquet(df, path, _metadata(df, source, tags, metadata))
        except OSError as exc:
            raise DatasetError(f"could not write dataset {path.name}: {exc.strerror or exc}") from exc
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DatasetError(f"could not write dataset {path.name}: a column cannot be stored ({exc})") from exc
    log.info("saved dataset %s (%d rows)", path, len(df))
    return path


LOCK_TIMEOUT = 120.0


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Raise DatasetExistsError for a save that would replace ``path``, unless asked to (then log it)."""
    info = dataset_info(path)
    what = f"{info.get('rows', '?')} rows of {_kind_label(info.get('interval'))}"
    if not overwrite:
        raise DatasetExistsError(f"dataset {path.stem!r} already exists ({what}); pass overwrite=True to replace "
                                 "it, append=True to add rows to it, or choose another name")
    log.warning("replacing dataset %s (%s)", path.stem, what)


def _kind_label(interval: object) -> str:
    """``'1h bars'``, ``'trades/quotes (ticks)'`` or ``'bars of unknown interval'``."""
    if interval == TICKS_INTERVAL:
        return "trades/quotes (ticks)"
    return f"{interval} bars" if interval else "bars of unknown interval"


def _interval_key(interval: object) -> str:
    """One spelling per bar width, so ``1min`` (a recording's) and ``1m`` (a fetch's) are the same interval."""
    text = str(interval).strip()
    try:
        return parse_interval(text).name
    except InvalidInputError:
        try:
            return str(pd.Timedelta(text))
        except ValueError:
            return text


def _check_appendable(old: dict, df: pd.DataFrame, new_meta: dict, name: str) -> None:
    """Raise IncompatibleDatasetError when ``df`` cannot join the dataset described by ``old``: bars onto
    ticks (or the reverse), another interval, or symbols of an asset class the dataset does not hold (their
    columns and conventions differ). Checked before anything is read or written."""
    old_interval = old.get("interval")
    new_interval = TICKS_INTERVAL if is_tick_frame(df) else new_meta.get("interval")
    old_ticks, new_ticks = old_interval == TICKS_INTERVAL, new_interval == TICKS_INTERVAL
    if old_ticks != new_ticks or (old_interval and new_interval
                                  and _interval_key(old_interval) != _interval_key(new_interval)):
        raise IncompatibleDatasetError(
            f"cannot append {_kind_label(new_interval)} to dataset {name!r}, which holds {_kind_label(old_interval)}; "
            "save them as another dataset")
    old_classes = {asset_class(str(s)) for s in old.get("symbols") or ()}
    new_classes = {asset_class(str(s)) for s in pd.unique(df["symbol"])}
    if old_classes and not new_classes <= old_classes:
        raise IncompatibleDatasetError(
            f"cannot append {', '.join(sorted(new_classes - old_classes))} rows to dataset {name!r}, which holds "
            f"{', '.join(sorted(old_classes))} only; save them as another dataset")


@contextmanager
def _dataset_lock(path: Path) -> Iterator[None]:
    """Hold ``path``'s dataset lock (creating the folder), as a one-line DatasetError when impossible."""
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.parent / f".{path.stem}.lock"), timeout=LOCK_TIMEOUT)
        lock.acquire()
    except Timeout:
        raise DatasetError(f"dataset {path.stem!r} is locked by another process for over {LOCK_TIMEOUT:g} s "
                           f"({path.parent / f'.{path.stem}.lock'})") from None
    except OSError as exc:
        raise DatasetError(f"cannot write datasets in {path.parent}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


def _today() -> str:
    return datetime.now(NEW_YORK).date().isoformat()


def _adjustment_meta(attrs: dict) -> dict:
    """``adjusted`` / ``adjusted_as_of`` / ``session`` of bars about to be saved, from their attrs."""
    adjusted = attrs.get("adjusted")
    if adjusted is None and attrs.get("method") in RAW_SOURCES:
        adjusted = False
    meta: dict = {"adjusted": None if adjusted is None else bool(adjusted)}
    if adjusted is not None:  # "raw", "splits" or "total" (total-return prices, see massive_feeds.dividends)
        meta["adjustment"] = attrs.get("adjustment") or ("splits" if adjusted else "raw")
    if meta.get("adjustment") == "total":  # what was applied, for quality_report and the reader
        meta["dividends"] = list(attrs.get("dividends") or [])
    if adjusted:
        meta["adjusted_as_of"] = attrs.get("adjusted_as_of") or _today()
    if attrs.get("session"):
        meta["session"] = attrs["session"]
    return meta


DATA_SOURCES = ("massive", "sandbox")


def _origin_meta(attrs: dict) -> dict:
    """``data_source`` (``massive`` / ``sandbox``) of bars about to be saved, from their attrs."""
    origin = attrs.get("data_source") or attrs.get("source")
    return {"data_source": origin} if origin in DATA_SOURCES else {}


def _merged_origin(old: dict, new: dict, name: str) -> dict:
    """``data_source`` after appending ``new`` rows to a dataset described by ``old``; mixing is refused."""
    before, after = old.get("data_source"), new.get("data_source")
    if before in DATA_SOURCES and after in DATA_SOURCES and before != after:
        what = {"sandbox": "sandbox (synthetic) prices", "massive": "Massive.com prices"}
        raise IncompatibleDatasetError(
            f"dataset {name!r} holds {what[before]} and the new bars are {what[after]}; appending would mix "
            "them. Save them as another dataset"
        )
    origin = after if after in DATA_SOURCES else before
    return {"data_source": origin} if origin else {}


def _roll_meta(attrs: dict) -> dict:
    """``roll_adjust`` and ``rolls`` (the JSON-safe roll records) of a continuous futures series about to be saved."""
    if "rolls" not in attrs:
        return {}
    return {"roll_adjust": attrs.get("roll_adjust", "none"), "rolls": roll_records(roll_table(attrs["rolls"]))}


def _merged_rolls(old: dict, new: dict, df: pd.DataFrame, name: str) -> dict:
    """``roll_adjust``/``rolls`` after appending ``df`` (metadata ``new``) to a dataset described by ``old``:
    another ``roll_adjust`` is refused (one series would hold prices adjusted two ways); the roll records of both,
    each (series, date) once with the newer kept, in the multi-series form (``symbol`` on each) unless one series
    holds them all."""
    if "rolls" not in old and "rolls" not in new:
        return {}
    before, after = old.get("roll_adjust"), new.get("roll_adjust")
    if before is not None and after is not None and before != after:
        raise IncompatibleDatasetError(
            f"dataset {name!r} holds continuous futures with roll_adjust={before!r} and the new bars have "
            f"roll_adjust={after!r}; appending would mix them. Fetch them with roll_adjust={before!r}, or save them "
            "as another dataset")
    merged: dict[tuple[str, str], dict] = {}
    for records, symbols in ((old.get("rolls") or [], old.get("symbols") or []),
                             (new.get("rolls") or [], pd.unique(df["symbol"]))):
        series = [str(s) for s in symbols if is_continuous(str(s))]
        for r in records:  # a handful a year
            symbol = str(r.get("symbol") or (series[0] if len(series) == 1 else ""))
            merged[(symbol, str(r["date"]))] = {"symbol": symbol, **{k: v for k, v in r.items() if k != "symbol"}}
    rows = [merged[k] for k in sorted(merged)]
    if len({s for s, _ in merged}) <= 1:
        rows = [{k: v for k, v in r.items() if k != "symbol"} for r in rows]
    return {"roll_adjust": after or before or "none", "rolls": rows}


def _rebased(bars: pd.DataFrame, own: list[dict], merged: dict, name: str) -> pd.DataFrame:
    """``bars`` of continuous series back-adjusted (``merged["roll_adjust"]`` ratio or difference) for the rolls of
    ``merged["rolls"]`` they were not adjusted for: those outside the window they were fetched over (``own``, their
    roll table). Appending September's bars to August's, the roll of 09-21 moves August's prices too; the bars
    before a roll are multiplied by its factor (ratio) or shifted by its offset (difference), as one fetch of the
    whole window would have done."""
    how = merged.get("roll_adjust")
    if how not in ("ratio", "difference") or "session_end_date" not in bars or bars.empty:
        return bars
    series = [str(s) for s in pd.unique(bars["symbol"]) if is_continuous(str(s))]
    alone = series[0] if len(series) == 1 else ""  # a one-series table's records carry no symbol
    known = {(str(r.get("symbol") or alone), str(r["date"])) for r in own}
    out = bars.copy()
    sessions = out["session_end_date"].astype(str).to_numpy()
    symbols = out["symbol"].astype(str).to_numpy()
    for symbol in series:
        mine = symbols == symbol
        missed = [r for r in merged.get("rolls") or [] if str(r.get("symbol") or alone) == symbol
                  and (symbol, str(r["date"])) not in known and (mine & (sessions < str(r["date"]))).any()]
        for roll in missed:
            if roll["factor" if how == "ratio" else "offset"] is None:
                raise IncompatibleDatasetError(
                    f"dataset {name!r}: the {symbol} roll of {roll['date']} has no prices (a contract without a bar "
                    f"in the session before it), so its {how} adjustment of the earlier bars is unknown; fetch the "
                    "whole window in one call instead of appending")
        if missed:
            back_adjust(out, sessions[mine].astype("datetime64[D]"), roll_table(missed), how, rows=mine)
            log.info("dataset %s: earlier %s bars %s-adjusted for the roll(s) of %s", name, symbol, how,
                     ", ".join(str(r["date"]) for r in missed))
    return out


def _merged_adjustment(old: dict, new: dict, name: str) -> dict:
    """Adjustment metadata after appending ``new`` rows to a dataset described by ``old``."""
    before, after = _stored_adjustment(old), new.get("adjusted")
    if before is not None and after is not None and before != after:
        state = {True: "split-adjusted", False: "raw (unadjusted)"}
        raise IncompatibleDatasetError(
            f"dataset {name!r} holds {state[before]} prices and the new bars are {state[after]}; appending would "
            f"mix them. Fetch the new bars with adjusted={before}, or save them as another dataset"
        )
    names = (_stored_name(old), new.get("adjustment"))
    if None not in names and names[0] != names[1]:
        raise InvalidInputError(
            f"dataset {name!r} holds {names[0]} prices and the new bars are {names[1]}; appending would mix them. "
            f"Fetch the new bars with adjusted={names[0]!r}, or save them as another dataset")
    merged: dict = {"adjusted": before if after is None else after}
    if names[1] or names[0]:
        merged["adjustment"] = names[1] or names[0]
    if merged.get("adjustment") == "total":  # both sides' dividends, each (ticker, ex-date) once, the newer kept
        both = {(d["ticker"], d["ex_date"]): d for d in [*(old.get("dividends") or []), *(new.get("dividends") or [])]}
        merged["dividends"] = [both[k] for k in sorted(both)]
    if merged["adjusted"]:
        dates = [d for d in (old.get("adjusted_as_of"), new.get("adjusted_as_of")) if d]
        if dates:  # the older date: splits after it are re-checked on load (see load_dataset)
            merged["adjusted_as_of"] = min(dates)
            merged["adjusted_as_of_latest"] = max(dates + [old.get("adjusted_as_of_latest") or min(dates)])
    return merged


def _stored_adjustment(info: dict) -> bool | None:
    """Whether a dataset's prices are split-adjusted; None when it does not say."""
    value = info.get("adjusted")
    if value is None and info.get("source") in RAW_SOURCES:
        return False
    return None if value is None else bool(value)


def _stored_name(info: dict) -> str | None:
    """``"raw"``, ``"splits"`` or ``"total"`` for a dataset's prices; None when it does not say."""
    stored = _stored_adjustment(info)
    if stored is None:
        return None
    return str(info.get("adjustment") or ("splits" if stored else "raw"))


def _source_settings(info: dict, settings: Settings | None) -> Settings:
    """Settings for the reference data of the market the prices came from: never the sandbox's for real (or
    unlabelled) data."""
    source_settings = settings_for_source(settings, info.get("data_source"))
    if info.get("data_source") is None and source_settings.sandbox == "auto":
        source_settings = source_settings.with_overrides(sandbox="off")  # no key → a loud error, not a guess
    return source_settings


def _dividends(df: pd.DataFrame, info: dict, settings: Settings | None, *,
               undo_through: str | None = None, through: str | None = None) -> pd.DataFrame:
    """Split-adjusted bars of a dataset with the dividends applied up to ``through`` (default today), or, with
    ``undo_through`` (its ``adjusted_as_of``), total-return bars with the dividends applied as of that day undone."""
    from .dividends import Corrections, apply_dividends

    if df.empty:
        return df
    first = pd.Timestamp(df["timestamp"].min()).tz_convert(NEW_YORK).date()
    table = Corrections.fetch("total", pd.unique(df["symbol"].astype(str)), first,
                              _source_settings(info, settings)).dividends
    last = undo_through or through
    day = date.fromisoformat(last) if last else None
    return apply_dividends(df, table, today=day, inverse=undo_through is not None)


def _convert_adjustment(df: pd.DataFrame, info: dict, adjusted: bool,
                        settings: Settings | None) -> tuple[pd.DataFrame, str | None]:
    """Bars of a dataset described by ``info`` turned into ``adjusted`` prices, and the day that
    adjustment is current as of (None for raw prices)."""
    from .splits import apply_splits, bar_prices, merge_duplicate_splits, splits_for

    stored = _stored_adjustment(info)
    name = info.get("name", "dataset")
    today = _today() if adjusted else None
    if not any(asset_class(str(s)) == "stocks" for s in pd.unique(df["symbol"])):
        return df, today  # crypto, forex, indices and options never split
    if stored is None:
        raise DatasetError(
            f"dataset {name!r} does not record whether its prices are split-adjusted, so it cannot be converted; "
            "load it with adjusted=None (as stored)"
        )
    if info.get("interval") in ("1w", "1M"):
        log.warning("dataset %s holds %s bars: a bar that straddles a split cannot be adjusted exactly",
                    name, info.get("interval"))
    as_of = pd.Timestamp(info.get("adjusted_as_of") or _today())
    source_settings = _source_settings(info, settings)  # splits from the market the prices came from
    try:
        splits = splits_for(df, settings=source_settings)
    except MassiveError as exc:
        if stored and adjusted:  # already adjusted: only splits announced since are at stake
            log.warning("could not check dataset %s for splits after %s (%s); returning it as stored",
                        name, as_of.date(), exc)
            return df, info.get("adjusted_as_of")
        raise
    # one row per real split before any date filter (a near-duplicate pair may straddle as_of);
    # raw data dates a merged split by its own price jump
    splits = merge_duplicate_splits(splits, None if stored else bar_prices(df))
    executed = splits["execution_date"]
    if stored and adjusted:
        latest = pd.Timestamp(info.get("adjusted_as_of_latest") or as_of)
        if ((executed > as_of) & (executed <= latest)).any():
            log.warning("dataset %s was appended with bars adjusted on different days around a split; "
                        "re-fetch it to be exact", name)
        return apply_splits(df, splits[executed > as_of]), today
    if stored:  # adjusted -> raw: undo the splits the adjustment knew about
        return apply_splits(df, splits[executed <= as_of], inverse=True), today
    return apply_splits(df, splits), today  # raw -> adjusted


def adjusted_like(df: pd.DataFrame, info: dict, settings: Settings | None = None) -> pd.DataFrame:
    """Raw bars (``attrs["adjusted"] is False``, e.g. a recording's) in the adjustment of the dataset that
    ``info`` describes, so they can be appended to it; anything else is returned unchanged.

    Bars from the day the dataset's adjustment is current as of (``adjusted_as_of``) or later need no split
    and no dividend (each applies to bars before its date): they are only relabelled, with no call. Older
    ones are adjusted as :func:`load_dataset` would (the splits list, and for a total-return dataset the
    dividends up to its ``adjusted_as_of``, so old and new rows share one basis: an API key, the sandbox or
    cached lists).
    """
    if _stored_adjustment(info) is not True or df.attrs.get("adjusted") is not False or df.empty:
        return df
    total = _stored_name(info) == "total"
    as_of = str(info.get("adjusted_as_of") or _today())
    first_day = df["timestamp"].min().tz_convert(NEW_YORK).date().isoformat()
    dividends: list = []
    if first_day >= as_of:  # no split or ex-date can sit between these bars and the adjustment's day
        out, today = df.copy(), as_of
    else:
        raw_info = {"adjusted": False, "name": info.get("name"), "data_source": df.attrs.get("data_source")}
        out, converted_as_of = _convert_adjustment(df, raw_info, True, settings)
        today = converted_as_of or _today()
        if total and any(asset_class(str(s)) == "stocks" for s in pd.unique(out["symbol"])):
            out = _dividends(out, raw_info, settings, through=as_of)  # the dataset's dividends, not today's
            dividends, today = out.attrs["dividends"], min(today, as_of)
    out.attrs = {**df.attrs, "adjusted": True, "adjusted_as_of": today}
    if total:
        out.attrs.update(adjustment="total", dividends=dividends)
    return out


def find_dataset(name_or_path: str | Path, *, settings: Settings | None = None,
                 folder: str | Path | None = None) -> Path:
    """The file of a dataset given by name (in the datasets folder) or by its ``.parquet`` path.

    Raises:
        DatasetError: there is no such dataset.
    """
    path = _resolve(name_or_path, settings, folder)
    if not path.exists():
        raise DatasetError(f"dataset {path.stem!r} not found in {path.parent}")
    return path


def _resolve(name_or_path: str | Path, settings: Settings | None, folder: str | Path | None) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".parquet" and (candidate.is_absolute() or candidate.parent != Path(".")):
        return candidate  # an explicit file path (e.g. a recording shared by a colleague)
    return dataset_path(str(name_or_path), settings=settings, folder=folder)


def load_dataset(name: str | Path, *, settings: Settings | None = None, folder: str | Path | None = None,
                 adjusted: bool | str | None = None) -> pd.DataFrame:
    """Read a dataset by name (or a parquet path). ``df.attrs`` carries its metadata.

    ``adjusted``: ``None`` (default) returns the prices as stored; ``True``/``"splits"``, ``"total"`` or
    ``False``/``"raw"`` returns them split-adjusted / total-return / as traded, converting at read time (see the
    module docstring; needs the splits and dividends lists, so an API key or cached lists, when the stored prices
    differ from what is asked). ``df.attrs["adjusted"]`` and ``["adjustment"]`` say what you got.
    """
    wanted = None if adjusted is None else parse_adjustment(adjusted)  # a bad value fails before any read
    path = _resolve(name, settings, folder)
    if not path.exists():
        raise DatasetError(f"dataset {path.stem!r} not found in {path.parent}")
    try:
        df = read_parquet_frame(path)  # page checksums and seal verified: bit rot is an error, not other numbers
    except CorruptFileError as exc:
        raise _corrupt(path, exc) from exc
    except Exception as exc:
        raise DatasetError(f"could not read dataset {path.name}: {exc}") from exc
    info = dataset_info(path)
    if info.get("interval") == TICKS_INTERVAL:
        df = finalize_ticks(df)
        df.attrs.update(info)
        return df
    df = finalize_bars(df, extra=_extra_columns(df))
    stored = _stored_name(info)
    if wanted is not None and (stored != wanted or (wanted != "raw" and info.get("adjusted_as_of") != _today())):
        stocks = any(asset_class(str(s)) == "stocks" for s in pd.unique(df["symbol"]))
        if stored == "total" and stocks:  # back to split-adjusted prices as of the day they were saved
            df = _dividends(df, info, settings, undo_through=info.get("adjusted_as_of") or _today())
        df, as_of = _convert_adjustment(df, info, wanted != "raw", settings)
        applied = _dividends(df, info, settings) if wanted == "total" and stocks else None
        if applied is not None:
            df, info["dividends"] = applied, applied.attrs["dividends"]
        info = {k: v for k, v in info.items() if k not in ("adjusted_as_of", "adjusted_as_of_latest")}
        info.update(adjusted=wanted != "raw", adjustment=wanted)
        if as_of:
            info["adjusted_as_of"] = as_of
    df.attrs.update(info)
    return df


def _corrupt(path: Path, exc: CorruptFileError) -> CorruptDatasetError:
    reason = str(exc).removeprefix(f"{path} is damaged ")
    return CorruptDatasetError(f"dataset file {path} is damaged {reason}; restore it from a backup or save the "
                               "data again (massive-feeds verify lists every damaged file)", path=str(path))


def dataset_info(path: Path) -> dict:
    """The metadata dict stored with a dataset file."""
    try:
        raw = read_parquet_metadata(path).get(META_KEY)
    except CorruptFileError as exc:
        raise _corrupt(Path(path), exc) from exc
    except Exception as exc:
        raise DatasetError(f"could not read dataset {Path(path).name}: {exc}") from exc
    info = json.loads(raw) if raw else {}
    return {"name": Path(path).stem, "path": str(path), **info}


def list_datasets(*, settings: Settings | None = None, folder: str | Path | None = None) -> pd.DataFrame:
    """One row per dataset: name, symbols, start, end, rows, source (method), data_source (``massive`` or
    ``sandbox``; empty for datasets saved before it was recorded), interval, tags, path."""
    root = _datasets_dir(settings, folder)
    rows = []
    for path in sorted(root.glob("*.parquet")):
        try:
            rows.append(dataset_info(path))
        except DatasetError as exc:
            log.warning("skipping unreadable dataset %s: %s", path.name, exc)
    cols = ["name", "symbols", "start", "end", "rows", "source", "data_source", "interval", "tags", "path"]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)


def delete_dataset(name: str, *, settings: Settings | None = None, folder: str | Path | None = None) -> list[Path]:
    """Delete a saved dataset (its Parquet file, and the raw event log of a recorded session); returns
    what was removed. Holds the dataset's lock, so it never races a save or an append.

    Raises:
        DatasetError: no such dataset.
    """
    import shutil

    path = dataset_path(name, settings=settings, folder=folder)
    events = path.with_suffix(".events")
    with _dataset_lock(path):
        if not path.exists():
            raise DatasetError(f"dataset {name!r} not found in {path.parent}")
        removed = [path]
        path.unlink()
        if events.is_dir():
            shutil.rmtree(events)
            removed.append(events)
    log.info("deleted dataset %s (%s)", name, ", ".join(p.name for p in removed))
    return removed
