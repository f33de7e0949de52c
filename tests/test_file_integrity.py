"""Self-checking Parquet files: bit rot in a saved dataset, the store, the REST result cache or the flat-file
cache gives a typed error (dataset, store) or a discarded entry fetched again (caches), never other numbers.

Bits are flipped on disk at offsets spread over the whole file (pages, page headers, the footer); for every
flip the rule is: a typed error, or data identical to the original (a flip in bytes nothing reads may load the
same data). Everything runs over real files written by the library and the sandbox's REST and S3 servers.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import massive_feeds
from massive_feeds import fetch_ohlcv_rest
from massive_feeds.cache import wait_for_result_cache
from massive_feeds.cli import main
from massive_feeds.config import Settings
from massive_feeds.datasets import dataset_info, load_dataset, save_dataset
from massive_feeds.errors import CorruptDatasetError, CorruptStoreError
from massive_feeds.flatfiles import download_flat_file, wait_for_cache_writes
from massive_feeds.rest import RestClient
from massive_feeds.sandbox import Sandbox
from massive_feeds.storage import SEAL_KEY, verify_files
from massive_feeds.store import ingest, load_store

from .conftest import FAST_RETRY

WEEK = ("2024-03-04", "2024-03-08")


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(pd.Timestamp("2024-01-29").date(), pd.Timestamp("2024-01-30").date())
                 ) as sandbox:
        yield sandbox


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


def spread(path: Path, body: int, footer: int) -> list[int]:
    """``body`` offsets spread over the column chunks and ``footer`` over the footer (thrift metadata)."""
    size = path.stat().st_size
    footer_start = size - 8 - struct.unpack("<I", path.read_bytes()[-8:-4])[0]
    return sorted({*np.linspace(4, footer_start - 1, body).astype(int).tolist(),
                   *np.linspace(footer_start, size - 9, footer).astype(int).tolist()})


def flip(path: Path, original: bytes, offset: int, bit: int = 4) -> None:
    data = bytearray(original)
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_dataset_bit_rot_is_a_typed_error_never_other_numbers(settings: Settings) -> None:
    bars = fetch_ohlcv_rest(["AAPL", "MSFT"], *WEEK, "15m", settings=settings)
    path = save_dataset(bars, "week", settings=settings)
    good, info = load_dataset(path), dataset_info(path)
    original = path.read_bytes()
    typed = 0
    offsets = spread(path, 120, 80)
    for offset in offsets:
        flip(path, original, offset)
        try:
            df, again = load_dataset(path), dataset_info(path)
        except CorruptDatasetError as exc:
            assert str(path) in str(exc) and exc.path == str(path)
            typed += 1
            continue
        pd.testing.assert_frame_equal(df, good)  # never other data (e.g. bytes nothing reads)
        assert df.attrs == good.attrs and again == info, offset
    assert typed >= 0.9 * len(offsets)  # nearly every flip is caught (before: 12 of 20 loaded other values)
    path.write_bytes(original)
    pd.testing.assert_frame_equal(load_dataset(path), good)


def test_files_written_before_checksums_still_load(settings: Settings, tmp_path: Path) -> None:
    """A dataset written the old way (plain pq.write_table: no page checksums, no seal) loads as before."""
    bars = fetch_ohlcv_rest("AAPL", *WEEK, "1h", settings=settings)
    path = save_dataset(bars, "old", settings=settings)
    good = load_dataset(path)
    table = pq.read_table(path)
    meta = {k: v for k, v in table.schema.metadata.items() if k != SEAL_KEY}
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")
    assert SEAL_KEY not in pq.read_metadata(path).metadata
    pd.testing.assert_frame_equal(load_dataset(path), good)
    assert load_dataset(path).attrs == good.attrs
    assert verify_files(path) == ([path], [])


def test_result_cache_bit_rot_is_a_miss_fetched_again(sb: Sandbox, settings: Settings,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with RestClient(settings, retry=FAST_RETRY) as client:
        first = fetch_ohlcv_rest("AAPL", *WEEK, "15m", client=client)
        assert wait_for_result_cache(timeout=60)
        [entry] = list((settings.cache_dir / "rest").rglob("*.parquet"))
        original = entry.read_bytes()
        refetched = 0
        for offset in spread(entry, 25, 15):
            flip(entry, original, offset)
            before = sb.rest.count("/v2/aggs")
            again = fetch_ohlcv_rest("AAPL", *WEEK, "15m", client=client)
            pd.testing.assert_frame_equal(again, first)  # the right bars, from the cache or fetched again
            refetched += sb.rest.count("/v2/aggs") > before
            assert wait_for_result_cache(timeout=60)
        assert refetched >= 30
        assert "discarding damaged cache entry" in caplog.text


def test_flat_file_cache_bit_rot_is_a_miss_downloaded_again(sb: Sandbox, settings: Settings) -> None:
    args = ("AAPL", "2024-01-29", "2024-01-29", "1d")
    first = download_flat_file(*args, settings=settings, adjusted=False)
    assert wait_for_cache_writes(timeout=60)
    folder = settings.cache_dir / "flatfiles"
    [entry] = list(folder.rglob("*.parquet"))
    original = entry.read_bytes()
    downloads = 0
    for offset in spread(entry, 20, 12):
        for old in folder.rglob("2024-01-29.*"):
            old.unlink()
        flip(entry, original, offset)
        before = sb.s3.count("GET", objects_only=True)
        again = download_flat_file(*args, settings=settings, adjusted=False)
        pd.testing.assert_frame_equal(again, first)
        downloads += sb.s3.count("GET", objects_only=True) > before
        assert wait_for_cache_writes(timeout=60)
    assert downloads >= 20


@pytest.mark.parametrize("compact", [True, False], ids=["month-file", "day-file"])
def test_store_bit_rot_is_a_typed_error_never_other_numbers(settings: Settings, tmp_path: Path,
                                                            compact: bool) -> None:
    """A month file, and a day file not merged yet (its row groups are picked by its sealed index: a flipped
    min/max statistic, which no checksum covers, cannot hide a symbol's rows)."""
    store = tmp_path / "store"
    ingest("us_stocks_sip/minute_aggs_v1", "2024-01-29", "2024-01-30", symbols=["AAPL", "MSFT"], store=store,
           settings=settings, compact=compact)
    month = sorted(store.rglob("*.parquet"))[0]
    good = load_store(["AAPL", "MSFT"], "2024-01-29", "2024-01-30", "1m", store=store, adjusted=False)
    original = month.read_bytes()
    typed = 0
    offsets = spread(month, 40, 20)
    for offset in offsets:
        flip(month, original, offset)
        try:
            df = load_store(["AAPL", "MSFT"], "2024-01-29", "2024-01-30", "1m", store=store, adjusted=False)
        except CorruptStoreError as exc:
            assert str(month) in str(exc)
            typed += 1
            continue
        pd.testing.assert_frame_equal(df, good)
    assert typed >= 0.8 * len(offsets)


def test_verify_lists_damaged_files_and_exits_non_zero(settings: Settings, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bars = fetch_ohlcv_rest("AAPL", *WEEK, "1h", settings=settings)
    a = save_dataset(bars, "a", settings=settings)
    save_dataset(bars, "b", settings=settings)
    folder = settings.datasets_dir
    assert main(["verify", str(folder)]) == 0
    assert "2 Parquet file(s) and 0 recording(s) checked" in capsys.readouterr().out
    data = bytearray(a.read_bytes())
    data[len(data) // 3] ^= 0x10  # inside a data page
    a.write_bytes(bytes(data))
    checked, bad = massive_feeds.verify_files(folder)  # the public name
    assert len(checked) == 2 and [b.path for b in bad] == [a]
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {a}" in out and "1 damaged" in out
    shutil.rmtree(folder)


def test_store_tick_file_bit_rot_is_a_typed_error_never_other_ticks(settings: Settings, tmp_path: Path) -> None:
    from massive_feeds.store import HistoryStore

    store = tmp_path / "store"
    ingest("us_stocks_sip/quotes_v1", "2024-01-29", "2024-01-29", symbols=["AAPL", "MSFT"], store=store,
           settings=settings)
    [day] = list(store.rglob("*.parquet"))

    def read() -> pd.DataFrame:
        return HistoryStore(store).read_ticks("MSFT", "2024-01-29", "2024-01-30", ("quotes",))

    good = read()
    assert len(good) > 0 and set(good["symbol"]) == {"MSFT"}
    original = day.read_bytes()
    typed = 0
    offsets = spread(day, 40, 30)
    for offset in offsets:
        flip(day, original, offset)
        try:
            df = read()
        except CorruptStoreError as exc:
            assert str(day) in str(exc)
            typed += 1
            continue
        pd.testing.assert_frame_equal(df, good)
    assert typed >= 0.8 * len(offsets)
