"""Named datasets: bars saved as parquet in one folder, with metadata readable without the rows.

A dataset is ``<datasets_dir>/<name>.parquet``. Its schema metadata records symbols, time range,
row count, source, interval, tags and creation time, so :func:`list_datasets` is cheap. Writes are
atomic; names are plain (letters, digits, ``_ - .``), never paths.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Literal

import pandas as pd
import pyarrow as pa

from .config import Settings, load_settings
from .errors import DatasetError, InvalidInputError
from .schema import BAR_COLUMNS, finalize_bars
from .storage import read_parquet_metadata, write_parquet

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
META_KEY = "massive_feeds"
StackMode = Literal["append", "replace", "merge"]


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
    tags: Iterable[str] = (),
    source: str | None = None,
    metadata: dict | None = None,
    settings: Settings | None = None,
    folder: str | Path | None = None,
) -> Path:
    """Save bars as dataset ``name`` (atomically). With ``append=True`` the rows are stacked onto the
    existing dataset (de-duplicated on symbol+timestamp, newest wins) and its tags are kept."""
    path = dataset_path(name, settings=settings, folder=folder)
    tags = set(tags)
    source = source or df.attrs.get("method")
    metadata = {"interval": df.attrs.get("interval"), **(metadata or {})}
    if append and path.exists():
        old_info = dataset_info(path)
        tags |= set(old_info.get("tags", []))
        source = source or old_info.get("source")
        df = stack_data(load_dataset(path), df, mode="append")
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


def _resolve(name_or_path: str | Path, settings: Settings | None, folder: str | Path | None) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".parquet" and (candidate.is_absolute() or candidate.parent != Path(".")):
        return candidate  # an explicit file path (e.g. a recording shared by a colleague)
    return dataset_path(str(name_or_path), settings=settings, folder=folder)


def load_dataset(name: str | Path, *, settings: Settings | None = None, folder: str | Path | None = None) -> pd.DataFrame:
    """Read a dataset by name (or a parquet path). ``df.attrs`` carries its metadata."""
    path = _resolve(name, settings, folder)
    if not path.exists():
        raise DatasetError(f"dataset {path.stem!r} not found in {path.parent}")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise DatasetError(f"could not read dataset {path.name}: {exc}") from exc
    df = finalize_bars(df, extra=_extra_columns(df))
    df.attrs.update(dataset_info(path))
    return df


def dataset_info(path: Path) -> dict:
    """The metadata dict stored with a dataset file."""
    try:
        raw = read_parquet_metadata(path).get(META_KEY)
    except Exception as exc:
        raise DatasetError(f"could not read dataset {Path(path).name}: {exc}") from exc
    info = json.loads(raw) if raw else {}
    return {"name": Path(path).stem, "path": str(path), **info}


def list_datasets(*, settings: Settings | None = None, folder: str | Path | None = None) -> pd.DataFrame:
    """One row per dataset: name, symbols, start, end, rows, source, interval, tags, path."""
    root = _datasets_dir(settings, folder)
    rows = []
    for path in sorted(root.glob("*.parquet")):
        try:
            rows.append(dataset_info(path))
        except DatasetError as exc:
            log.warning("skipping unreadable dataset %s: %s", path.name, exc)
    cols = ["name", "symbols", "start", "end", "rows", "source", "interval", "tags", "path"]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)
