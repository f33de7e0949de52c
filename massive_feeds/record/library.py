"""Recordings as datasets: bars in the dataset folder, the raw event log kept beside them.

A saved session ``massive_live_<tag>_<YYYYMMDD>`` is two things in ``datasets_dir``:
``<name>.parquet`` (bars, the standard schema plus quote columns, listed by ``list_datasets``) and
``<name>.events/`` (a copy of the raw log, so the session can be replayed tick by tick).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..config import Settings, load_settings
from ..datasets import adjusted_like, dataset_info, dataset_path, find_dataset, save_dataset
from ..errors import DatasetError, DatasetExistsError, NoDataError
from .bars import ticks_to_bars
from .reader import RecordingReader

SOURCE = "live_recording"


def default_name(events: pd.DataFrame, tag: str | None) -> str:
    day = pd.to_datetime(events["time_ms"].min(), unit="ms", utc=True) if len(events) else pd.Timestamp.now("UTC")
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", tag or "session").strip("_") or "session"
    return f"massive_live_{clean}_{day:%Y%m%d}"


def _unused(name: str, settings: Settings | None) -> str:
    """``name``, or ``name_2``, ``name_3`` … — the first that no dataset uses yet (several sessions a day)."""
    candidate, n = name, 1
    while dataset_path(candidate, settings=settings).exists() or events_folder(
            dataset_path(candidate, settings=settings)).exists():
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def events_folder(dataset_file: Path) -> Path:
    return dataset_file.with_suffix(".events")


def _gap_summary(reader: RecordingReader) -> list[dict]:
    return [{"market": g["market"], "symbols": list(g.get("symbols") or ()), "start_ms": g["start_ms"],
             "end_ms": g["end_ms"], "reason": g["reason"],
             "downtime_s": round((g["reconnected_ns"] - g["disconnected_ns"]) / 1e9, 3)} for g in reader.gaps()]


def save_recording_dataset(log_path: Path, name: str | None, resample_interval: str = "1min", *,
                           tags: Iterable[str] = (), tag: str | None = None,
                           settings: Settings | None = None, overwrite: bool = False) -> Path:
    """Bars of a recording saved as a dataset, with the event log copied beside it. Returns the parquet path.

    Raises:
        NoDataError: the recording holds no event (nothing arrived), so there is nothing to save.
        DatasetExistsError: ``name`` is in use and ``overwrite`` is not set (the same rule as
            :func:`~massive_feeds.datasets.save_dataset`).
    """
    settings = settings or load_settings()
    reader = RecordingReader(log_path)
    events = reader.events()
    if events.empty:
        raise NoDataError(f"the recording in {log_path} holds no quote or trade, so no dataset was saved")
    if name is None:
        name = _unused(default_name(events, tag), settings)
    target = dataset_path(name, settings=settings)
    copy = events_folder(target)
    if (target.exists() or copy.exists()) and not overwrite:
        # never replace a recorded session silently: its bars and raw events would be gone
        raise DatasetExistsError(f"dataset {name!r} already exists; choose another name, pass overwrite=True to "
                                 f"replace it, or use append_to_dataset({name!r}) to add this session to it")
    if overwrite:
        shutil.rmtree(copy, ignore_errors=True)
    bars = ticks_to_bars(events, resample_interval)
    bars.attrs.update(interval=resample_interval, adjusted=False)  # the stream carries prices as traded
    partial = copy.with_name(copy.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted earlier copy of this very save
    shutil.copytree(log_path, partial)
    partial.rename(copy)  # the copy appears whole or not at all
    data_source = reader.meta().get("data_source")  # sandbox or massive, as the recorder saw it
    return save_dataset(bars, name, tags={*tags, *([tag] if tag else [])}, source=SOURCE, settings=settings,
                        overwrite=overwrite,
                        metadata={"events": int(len(events)), "gaps": _gap_summary(reader),
                                  "damaged_records": int(events.attrs.get("damaged_records", 0)),
                                  "recording": copy.name, "interval": resample_interval,
                                  **({"data_source": data_source} if data_source else {})})


def append_recording(log_path: Path, dataset: str | Path, resample_interval: str = "1min", *,
                     settings: Settings | None = None) -> Path:
    """Add a recording's bars to an existing dataset (by name or ``.parquet`` path; de-duplicated) and merge
    its metadata. The recording's prices are as traded; a split-adjusted or total-return dataset (a fetch's)
    gets them adjusted the same way (see :func:`~massive_feeds.datasets.adjusted_like`).

    Raises:
        DatasetError: no such dataset.
        IncompatibleDatasetError: the dataset holds another interval, ticks, or another asset class.
    """
    dataset_file = find_dataset(dataset, settings=settings)
    reader = RecordingReader(log_path)
    events = reader.events()
    info = dataset_info(dataset_file)
    bars = ticks_to_bars(events, resample_interval)
    bars.attrs["adjusted"] = False
    data_source = reader.meta().get("data_source")
    if data_source:
        bars.attrs["data_source"] = data_source
    bars = adjusted_like(bars, info, settings)
    meta = {"events": int(info.get("events", 0)) + len(events),
            "gaps": list(info.get("gaps", [])) + _gap_summary(reader),
            "interval": resample_interval}
    return save_dataset(bars, dataset_file.stem, append=True, source=info.get("source", SOURCE),
                        folder=dataset_file.parent, metadata=meta)


def recording_path(name_or_path: str | Path, settings: Settings | None = None) -> Path:
    """The event-log folder for a recording folder, a dataset file, or a dataset name."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    if candidate.suffix == ".parquet" and candidate.exists():
        file = candidate
    else:
        file = dataset_path(str(name_or_path), settings=settings)
    folder = events_folder(file)
    if not folder.is_dir():
        raise DatasetError(f"{name_or_path!r} has no recorded events to replay (looked for {folder})")
    return folder


def list_recordings(folder: str | Path = "data/live_recorded") -> pd.DataFrame:
    """The recording folders under ``folder`` (the recorder's ``save_dir``), oldest first.

    Columns: ``session`` (folder name), ``symbols``, ``started``, ``stopped`` (``NaT`` when the recorder
    never stopped — a killed process: its log is intact up to the last flush and can still be saved
    with :func:`save_recording_dataset`), ``state`` (``stopped``/``interrupted``), ``events``,
    ``first_event``/``last_event`` (market time, UTC) and ``path``.
    """
    from .log import SEGMENT_GLOB

    root = Path(folder)
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not any(sub.glob(SEGMENT_GLOB)):
            continue
        reader = RecordingReader(sub)
        meta = reader.meta()
        events = reader.events()
        times = pd.to_datetime(events["time_ms"], unit="ms", utc=True) if len(events) else None
        rows.append({
            "session": sub.name, "symbols": list(meta.get("symbols") or sorted(events["symbol"].unique())),
            "started": pd.Timestamp(meta["started"]) if meta.get("started") else pd.NaT,
            "stopped": pd.Timestamp(meta["stopped"]) if meta.get("stopped") else pd.NaT,
            "state": "stopped" if meta.get("stopped") else "interrupted",
            "events": int(len(events)),
            "first_event": times.min() if times is not None else pd.NaT,
            "last_event": times.max() if times is not None else pd.NaT,
            "path": sub,
        })
    columns = ["session", "symbols", "started", "stopped", "state", "events", "first_event", "last_event", "path"]
    return pd.DataFrame(rows, columns=columns)
