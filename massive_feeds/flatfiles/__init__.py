"""Flat files: Massive's S3 day files as a bulk-history source.

* :mod:`.keys` — which object holds which asset class, bar size and day;
* :mod:`.s3` — the S3 transport (boto3, SigV4, path-style), listing and downloads;
* :mod:`.cache` — the local day-file cache keyed by object key + ETag;
* :mod:`.stream` — streaming gzip CSV reader (bytes in while they download, record batches out);
* :mod:`.reader` — fast pyarrow parsing and the cached parquet days;
* :mod:`.resample` — vectorised resampling to the bigger intervals;
* :mod:`.download` — :func:`download_flat_file`, which puts them together.
"""

from __future__ import annotations

from .download import download_flat_file, flat_file_bars
from .reader import hold_cache_writes, wait_for_cache_writes
from .stream import file_chunks, iter_csv_batches, iter_line_blocks, read_rows_where
from .keys import DATASETS, PREFIXES, Dataset, dataset_for

__all__ = [
    "download_flat_file", "flat_file_bars", "wait_for_cache_writes", "hold_cache_writes",
    "read_rows_where", "iter_csv_batches", "iter_line_blocks", "file_chunks",
    "Dataset", "dataset_for", "PREFIXES", "DATASETS",
]
