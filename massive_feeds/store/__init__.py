"""A scale-out history store: flat-file days ingested once into Parquet, queried in milliseconds.

* :func:`ingest` — bring a dataset's days into the store incrementally (skips days it has, re-ingests
  republished files, resumes a killed run without duplicates) on a local pool or a Dask cluster;
* :func:`load_store` / :class:`HistoryStore` — read bars back in the standard schema, resampled like every other
  path, without any call to Massive.

The store may be a local folder or an object-store URL (``s3://…``) shared by a team. See :mod:`.core` for the
layout, :mod:`.ingest` for the ingest steps, :mod:`.engines` for the engines.
"""

from __future__ import annotations

from .core import HistoryStore, default_store_path, load_store, parse_dataset
from .daytask import STORE_SCHEMA, DayResult
from .ingest import IngestError, IngestReport, compact, ingest
from .manifest import DayEntry, Manifest

__all__ = [
    "ingest", "compact", "load_store", "HistoryStore", "IngestReport", "IngestError", "DayResult", "Manifest", "DayEntry",
    "STORE_SCHEMA", "default_store_path", "parse_dataset",
]
