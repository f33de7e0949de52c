"""The history store's ingest streams each day from S3 (inflate + parse while it downloads) and merges months by
their symbol runs: checked against the old way of doing each (the whole gzip parsed at once; a full sort by
symbol then time), on sandbox days and on real flat-file samples, and for damaged or broken-off downloads."""

from __future__ import annotations

import errno
import gzip
import io
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from massive_feeds.config import Settings
from massive_feeds.errors import CorruptFileError
from massive_feeds.flatfiles.reader import COLUMN_TYPES, file_forms
from massive_feeds.sandbox import Sandbox
from massive_feeds.store import HistoryStore, IngestError, compact, ingest
from massive_feeds.store.daytask import STORE_SCHEMA, store_table
from massive_feeds.store.monthfile import _GroupWriter, file_index

FIRST, LAST = date(2024, 3, 4), date(2024, 3, 8)  # Mon .. Fri
DAYS = [date(2024, 3, d) for d in range(4, 9)]
MINUTE = "us_stocks_sip/minute_aggs_v1"
REAL = Path(__file__).parent / "fixtures" / "real" / "flatfiles"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=False, s3=True, s3_days=(FIRST, LAST)) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _reset_sandbox(sb: Sandbox) -> Iterator[None]:
    yield
    sb.s3.cut_next_downloads(0)


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", plan="unlimited")


def key(day: date, dataset: str = MINUTE) -> str:
    return f"{dataset}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def parsed_whole(gz: bytes, asset: str, symbols: list[str] | None = None) -> pa.Table:
    """The old ingest path: the whole downloaded gzip parsed at once by pyarrow, filtered, as a store table."""
    raw = pacsv.read_csv(pa.input_stream(pa.BufferReader(gz), compression="gzip"),
                         convert_options=pacsv.ConvertOptions(column_types=COLUMN_TYPES))
    if symbols is not None:
        raw = raw.filter(pc.is_in(raw.column("ticker"), pa.array(sorted(file_forms(symbols)))))
    return store_table(raw, asset)


def sorted_rows(table: pa.Table) -> pa.Table:
    """``table`` sorted by symbol then time by a full sort (the reference order of a store file)."""
    table = table.select(STORE_SCHEMA.names).cast(STORE_SCHEMA).replace_schema_metadata(None)
    return table.take(pc.sort_indices(table, [("symbol", "ascending"), ("timestamp", "ascending")])).combine_chunks()


def stored(store_dir: Path, dataset: str, day: date) -> pa.Table:
    """The rows the store holds for ``day``, from whichever file the manifest names (a month file holds the
    day's rows between its recorded first and last bar time)."""
    entry = HistoryStore(store_dir).manifest(dataset).days[day]
    path = store_dir / dataset / entry.file
    table = pq.ParquetFile(path).read()
    info = file_index(pq.ParquetFile(path)).get("days", {}).get(day.isoformat())
    if info is not None:
        ts = table.column("timestamp").cast(pa.int64())
        table = table.filter(pc.and_(pc.greater_equal(ts, info["lo"]), pc.less_equal(ts, info["hi"])))
    return table.replace_schema_metadata(None).combine_chunks()


def same(got: pa.Table, want: pa.Table) -> bool:
    """Equal rows, columns and types (NaN equal to NaN: index files' missing volume)."""
    pd.testing.assert_frame_equal(got.to_pandas(), want.to_pandas())
    return got.schema.equals(want.schema)


def cache_files(settings: Settings) -> list[Path]:
    return sorted(p for p in (settings.cache_dir / "flatfiles").rglob("*") if p.is_file())


# --- streamed ingest ----------------------------------------------------------------------------
def test_streamed_ingest_stores_what_parsing_the_whole_file_gives(sb: Sandbox, settings: Settings,
                                                                  tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    report = ingest(MINUTE, FIRST, FIRST, store=store_dir, settings=settings, compact=False)
    assert report.ingested == [FIRST] and report.downloaded_bytes == len(sb.s3.get(key(FIRST)))
    want = parsed_whole(sb.s3.get(key(FIRST)), "stocks")
    got = stored(store_dir, MINUTE, FIRST)
    assert want.num_rows > 1000 and same(got, want.replace_schema_metadata(None))
    # keep_flatfiles: the downloaded bytes became the cache's gzip entry, byte for byte, and nothing else
    remote_etag = HistoryStore(store_dir).manifest(MINUTE).days[FIRST].etag
    (entry,) = cache_files(settings)
    assert entry.name.endswith(".csv.gz") and remote_etag.strip('"')[:8] in entry.name
    assert entry.read_bytes() == sb.s3.get(key(FIRST))


def test_streamed_ingest_of_some_symbols_parses_only_theirs_and_keeps_nothing_without_keep_flatfiles(
        sb: Sandbox, settings: Settings, tmp_path: Path) -> None:
    symbols = ["AAPL", "MSFT", "SPY"]
    store_dir = tmp_path / "store"
    ingest(MINUTE, FIRST, FIRST, symbols=symbols, store=store_dir, settings=settings, compact=False,
           keep_flatfiles=False)
    want = parsed_whole(sb.s3.get(key(FIRST)), "stocks", symbols)
    got = stored(store_dir, MINUTE, FIRST)
    assert sorted(set(got.column("symbol").to_pylist())) == symbols
    assert same(got, want.replace_schema_metadata(None))
    assert cache_files(settings) == []


def test_a_download_that_breaks_off_is_resumed_into_the_same_rows(sb: Sandbox, settings: Settings,
                                                                  tmp_path: Path) -> None:
    gets = sb.s3.count("GET", key(LAST), objects_only=True)
    sb.s3.cut_next_downloads(1)  # half the body, then the connection drops: the stream resumes with a Range GET
    ingest(MINUTE, LAST, LAST, store=tmp_path / "store", settings=settings, compact=False)
    assert sb.s3.count("GET", key(LAST), objects_only=True) == gets + 2  # cut, then resumed
    assert same(stored(tmp_path / "store", MINUTE, LAST),
                parsed_whole(sb.s3.get(key(LAST)), "stocks").replace_schema_metadata(None))
    (entry,) = cache_files(settings)
    assert entry.read_bytes() == sb.s3.get(key(LAST))


def test_truncated_gzip_fails_typed_and_leaves_no_entry_anywhere(sb: Sandbox, settings: Settings,
                                                                 tmp_path: Path) -> None:
    day = date(2024, 3, 6)
    good = sb.s3.get(key(day))
    sb.s3.put(key(day), good[: len(good) // 2])  # a truncated object: every listed byte arrives, the gzip ends early
    store_dir = tmp_path / "store"
    try:
        with pytest.raises(IngestError, match="2024-03-06") as err:
            ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
        report = err.value.report
        assert list(report.failed) == [day] and CorruptFileError.__name__ in report.failed[day]
        assert "truncated" in report.failed[day]
        assert report.downloaded_bytes == sum(len(sb.s3.get(key(d))) for d in DAYS)  # it was downloaded whole
        manifest = HistoryStore(store_dir).manifest(MINUTE)
        assert day not in manifest.days and sorted(manifest.days) == [d for d in DAYS if d != day]
        assert not any(p.name.startswith(f"{day.isoformat()}.") for p in cache_files(settings))  # no cache entry
        assert not [p for p in store_dir.rglob("*") if "2024-03-06" in str(p) or p.name.endswith(".partial")]
    finally:
        sb.s3.put(key(day), good)
    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    assert report.ingested == [day]
    assert same(stored(store_dir, MINUTE, day), parsed_whole(good, "stocks").replace_schema_metadata(None))


def test_a_cached_gzip_entry_is_parsed_without_a_download(sb: Sandbox, settings: Settings, tmp_path: Path) -> None:
    ingest(MINUTE, FIRST, FIRST, store=tmp_path / "a", settings=settings, compact=False)
    gets = sb.s3.count("GET", objects_only=True)
    report = ingest(MINUTE, FIRST, FIRST, store=tmp_path / "b", settings=settings, compact=False)
    assert sb.s3.count("GET", objects_only=True) == gets and report.downloaded_bytes == 0
    assert same(stored(tmp_path / "b", MINUTE, FIRST), stored(tmp_path / "a", MINUTE, FIRST))


@pytest.mark.parametrize(("dataset", "asset", "sample", "day"), [
    ("us_indices/minute_aggs_v1", "indices", "indices_minute_aggs_sample.csv", date(2023, 3, 28)),
    ("us_options_opra/day_aggs_v1", "options", "options_day_aggs_sample.csv", date(2023, 3, 27)),
    ("us_stocks_sip/minute_aggs_v1", "stocks", "stocks_minute_aggs_header.csv", date(2023, 3, 28)),  # no rows
])
def test_real_flat_file_samples_stream_into_the_same_rows(sb: Sandbox, settings: Settings, tmp_path: Path,
                                                          dataset: str, asset: str, sample: str, day: date) -> None:
    """Real published rows (index files have no volume/transactions; long decimals), gzipped as Massive ships
    them, streamed through the ingest: the same rows as parsing the whole file, volume NaN / trades 0 for indices."""
    text = (REAL / sample).read_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(text)
    sb.s3.put(key(day, dataset), buf.getvalue())
    store_dir = tmp_path / "store"
    ingest(dataset, day, day, store=store_dir, settings=settings, compact=False)
    got = stored(store_dir, dataset, day)
    want = parsed_whole(buf.getvalue(), asset)
    assert got.num_rows == text.count(b"\n") - 1 and same(got, want.replace_schema_metadata(None))
    assert HistoryStore(store_dir).manifest(dataset).days[day].rows == got.num_rows
    if asset == "indices":
        assert got.column("volume").is_nan().to_pylist() == [True] * got.num_rows
        assert got.column("transactions").to_pylist() == [0] * got.num_rows
        assert got.column("open")[0].as_py() == pytest.approx(69.8616)
    elif asset == "options":
        assert got.column("symbol").to_pylist() == sorted(got.column("symbol").to_pylist())


# --- month merge by symbol runs -----------------------------------------------------------------
def month_rows(store_dir: Path) -> tuple[pa.Table, pq.ParquetFile]:
    (path,) = sorted((store_dir / MINUTE).rglob("month=*/*.parquet"))
    pf = pq.ParquetFile(path)
    return pf.read().replace_schema_metadata(None).combine_chunks(), pf


def test_month_merge_equals_a_full_sort_of_its_days(sb: Sandbox, settings: Settings, tmp_path: Path) -> None:
    """Five day files merged by their symbol runs (no row sort), then a sixth... day appended to the month file
    (a month source and a day source), then a day in the middle republished (overlapping sources: the full sort):
    each month file equals its days' rows fully sorted, with row groups cut at symbol boundaries."""
    store_dir = tmp_path / "store"
    ingest(MINUTE, FIRST, date(2024, 3, 7), store=store_dir, settings=settings, compact=False)
    days = {d: stored(store_dir, MINUTE, d) for d in DAYS[:4]}
    assert compact(MINUTE, store=store_dir) == ["2024-03"]
    got, pf = month_rows(store_dir)
    assert same(got, sorted_rows(pa.concat_tables(days.values())))
    groups = file_index(pf)["groups"]
    for i, (lo, hi) in enumerate(groups):  # the index matches the groups, cut at symbol boundaries
        column = pf.read_row_group(i, columns=["symbol"]).column("symbol")
        assert [column[0].as_py(), column[-1].as_py()] == [lo, hi]
        assert i == 0 or groups[i - 1][1] != lo or groups[i - 1][1] == hi  # a symbol spans groups only alone

    ingest(MINUTE, LAST, LAST, store=store_dir, settings=settings)  # append: old month file + the new day
    days[LAST] = stored(store_dir, MINUTE, LAST)
    got, _ = month_rows(store_dir)
    assert same(got, sorted_rows(pa.concat_tables(days.values())))

    middle = date(2024, 3, 6)
    sb.s3.republish(key(middle))  # same rows, new ETag: the month file's other days around a new day file
    try:
        report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    finally:
        sb.s3.republish(key(middle))
    assert report.ingested == [middle] and report.merged_months == ["2024-03"]
    got, _ = month_rows(store_dir)
    assert same(got, sorted_rows(pa.concat_tables(days.values())))
    assert [p.parent.name for p in sorted((store_dir / MINUTE).rglob("*.parquet"))] == ["month=2024-03"]


class _FillingDisk(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: the write that does not fit fails as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_row_group_write_failing_on_the_writer_thread_stops_the_merge_with_its_error() -> None:
    """Row groups are encoded and written on a background thread: a disk that fills up mid-merge must surface
    as that OSError in the merge (which then drops the file and leaves the days where they were), not vanish."""
    rows = 50_000
    table = pa.table({
        "symbol": pa.array(["A"] * rows), "timestamp": pa.array(range(rows), pa.int64()).cast(pa.timestamp("ns", "UTC")),
        **{c: pa.array([1.0] * rows) for c in ("open", "high", "low", "close", "volume")},
        "transactions": pa.array([1] * rows, pa.int64()),
    }, schema=STORE_SCHEMA)
    writer = pq.ParquetWriter(pa.PythonFile(_FillingDisk(20_000), mode="w"), STORE_SCHEMA)
    groups = _GroupWriter(writer, 1_000)
    with pytest.raises(OSError) as err:
        try:
            groups.add(table, np.array([0]))
            groups.flush()
        except BaseException:
            groups.finish(failed=True)
            raise
        groups.finish()
    assert err.value.errno == errno.ENOSPC
    assert 0 < len(groups.groups) < rows // 1_000  # it stopped at the first failed group, not after all of them


@pytest.mark.parametrize(("tickers", "minutes"), [
    (["AAPL", "AAPL", "MSFT", "MSFT"], [0, 1, 0, 1]),  # sorted: kept as it is
    (["MSFT", "MSFT", "AAPL", "AAPL"], [0, 1, 0, 1]),  # symbols out of order
    (["AAPL", "AAPL", "MSFT", "MSFT"], [1, 0, 0, 1]),  # time going back inside a symbol
    (["AAPL", "AAPL", "MSFT", "MSFT"], [0, 0, 0, 1]),  # the same minute twice: not strictly sorted
    (["X:BTC-USD", "X:BTCAUD"], [0, 0]),  # sorted as the file spells them, not once stored as X:BTCUSD
])
def test_store_table_sorts_exactly_when_the_rows_are_not_sorted(tickers: list[str], minutes: list[int]) -> None:
    asset = "crypto" if tickers[0].startswith("X:") else "stocks"
    n = len(tickers)
    raw = pa.table({"ticker": tickers, "volume": [1.0] * n, "open": [float(i) for i in range(n)],
                    "close": [1.0] * n, "high": [1.0] * n, "low": [1.0] * n,
                    "window_start": pa.array([1_700_000_000_000_000_000 + m * 60_000_000_000 for m in minutes]),
                    "transactions": pa.array([1] * n, pa.int64())})
    got = store_table(raw, asset)
    assert same(got, sorted_rows(got))  # sorted by symbol then time ...
    assert sorted(got.column("open").to_pylist()) == [float(i) for i in range(n)]  # ... holding every row once
    if tickers == sorted(tickers) and all(a < b for a, b in zip(minutes, minutes[1:])):
        assert got.column("open").to_pylist() == [float(i) for i in range(n)]


def test_a_day_larger_than_one_parse_block_streams_into_the_same_rows(sb: Sandbox, settings: Settings,
                                                                      tmp_path: Path) -> None:
    """A day of several 4 MB CSV blocks (parsed as separate batches while it downloads) stores the same rows as
    parsing it whole; tickers and prices of every row are kept exactly."""
    day = date(2024, 3, 11)
    tickers = np.repeat(np.array([f"T{i:03d}" for i in range(120)], dtype=object), 700)
    minute = np.tile(np.arange(700, dtype=np.int64), 120)
    rng = np.random.default_rng(5)
    price = np.round(rng.uniform(1, 500, len(tickers)), 4)
    raw = pa.table({"ticker": tickers, "volume": rng.integers(1, 10_000, len(tickers)).astype(float),
                    "open": price, "close": price + 0.01, "high": price + 0.02, "low": price - 0.01,
                    "window_start": 1_710_158_400_000_000_000 + minute * 60_000_000_000,
                    "transactions": rng.integers(1, 50, len(tickers))})
    sink = pa.BufferOutputStream()
    pacsv.write_csv(raw, sink, pacsv.WriteOptions(quoting_style="none"))
    text = sink.getvalue().to_pybytes().replace(b'"', b"")
    assert len(text) > (4 << 20)  # more than one parse block
    body = gzip.compress(text, compresslevel=1, mtime=0)
    sb.s3.put(key(day), body)
    store_dir = tmp_path / "store"
    report = ingest(MINUTE, day, day, store=store_dir, settings=settings, compact=False)
    got = stored(store_dir, MINUTE, day)
    assert report.rows == got.num_rows == len(tickers) and report.downloaded_bytes == len(body)
    assert same(got, parsed_whole(body, "stocks").replace_schema_metadata(None))
    assert got.column("open").to_pylist() == price.tolist()
