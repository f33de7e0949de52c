"""download_flat_file against a real sandbox (REST + S3 over sockets): layout, parsing, resampling,
agreement with REST, cache, quota, and every failure a user can meet."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds.config import PLANS, Settings
from massive_feeds.errors import (
    AuthenticationError,
    CorruptFileError,
    MissingCredentialsError,
    NotEntitledError,
    QuotaExceededError,
    ServerError,
)
from massive_feeds.fetch import fetch_data, fetch_ohlcv_rest
from massive_feeds.flatfiles import Dataset, dataset_for, download_flat_file, hold_cache_writes, wait_for_cache_writes
from massive_feeds.flatfiles.reader import file_forms
from massive_feeds.flatfiles.resample import bucket_starts, resample
from massive_feeds.flatfiles.s3 import MissingObjectError, RemoteFile, S3Transport
from massive_feeds.quota import quota_status
from massive_feeds.sandbox import Sandbox
from massive_feeds.schema import BAR_COLUMNS, parse_date_range, parse_interval

FIRST, LAST = date(2024, 1, 25), date(2024, 2, 6)  # Thu .. Tue: two weekends and a month boundary
ALL_ASSETS = ["AAPL", "O:SPY251219C00650000", "I:SPX", "C:EURUSD", "X:BTCUSD"]
INTERVALS = ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1M"]
OHLCV = ["timestamp", "symbol", "open", "high", "low", "close", "volume", "transactions"]
AAPL_DAY = "us_stocks_sip/minute_aggs_v1/2024/01/2024-01-26.csv.gz"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(FIRST, LAST)) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _reset_sandbox(sb: Sandbox) -> Iterator[None]:
    yield
    sb.s3.denied_prefixes.clear()
    sb.s3.cut_next_downloads(0)
    sb.not_entitled.clear()


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", plan="unlimited")


@pytest.fixture
def restore(sb: Sandbox) -> Iterator[list[str]]:
    """Keys a test damages; they are republished with their generated content afterwards."""
    keys: list[str] = []
    yield keys
    for key in keys:
        sb.s3.republish(key)


def object_gets(sb: Sandbox) -> int:
    return sb.s3.count("GET", objects_only=True)


def generator_bars(sb: Sandbox, ticker: str, start: str, end: str, interval: str) -> pd.DataFrame:
    """What the REST semantics give for this query, straight from the sandbox's market generator."""
    window, iv = parse_date_range(start, end), parse_interval(interval)
    bars = sb.market.bars(ticker, window.start.value // 10**6, (window.end.value - 1) // 10**6,
                          iv.multiplier, iv.timespan)
    return pd.DataFrame({
        "timestamp": pd.to_datetime(bars.t, unit="ms", utc=True).astype("datetime64[ns, UTC]"),
        "symbol": ticker, "open": bars.o, "high": bars.h, "low": bars.l, "close": bars.c,
        "volume": bars.v, "transactions": bars.n.astype(np.int64),
    })


def cached_files(settings: Settings, key: str) -> list[Path]:
    """The cache entries of ``key`` once the background parquet writes have settled (temp files too)."""
    assert wait_for_cache_writes(timeout=60)
    stem = settings.cache_dir / "flatfiles" / key.removesuffix(".csv.gz")
    return sorted(p for p in stem.parent.glob(f"{stem.name}*") if p.is_file())


# --- key catalogue ------------------------------------------------------------------------------
@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "30m", "1h", "4h"])
def test_intraday_intervals_read_minute_aggs(interval: str) -> None:
    assert dataset_for("AAPL", parse_interval(interval)).path == "us_stocks_sip/minute_aggs_v1"


@pytest.mark.parametrize("interval", ["1d", "1w", "1M"])
def test_daily_intervals_read_day_aggs(interval: str) -> None:
    assert dataset_for("AAPL", parse_interval(interval)).path == "us_stocks_sip/day_aggs_v1"


@pytest.mark.parametrize("ticker, prefix", [
    ("AAPL", "us_stocks_sip"), ("O:SPY251219C00650000", "us_options_opra"), ("I:SPX", "us_indices"),
    ("C:EURUSD", "global_forex"), ("X:BTCUSD", "global_crypto"),
])
def test_each_asset_class_has_its_prefix(ticker: str, prefix: str) -> None:
    assert dataset_for(ticker, parse_interval("1d")).path == f"{prefix}/day_aggs_v1"


def test_day_key_layout() -> None:
    key = Dataset("crypto", "minute").key(date(2024, 8, 5))
    assert key == "global_crypto/minute_aggs_v1/2024/08/2024-08-05.csv.gz"


def test_month_prefixes_cover_the_days() -> None:
    days = [date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2)]
    assert Dataset("stocks", "day").month_prefixes(days) == [
        "us_stocks_sip/day_aggs_v1/2024/01/", "us_stocks_sip/day_aggs_v1/2024/02/"]


def test_crypto_file_tickers_match_in_dash_and_plain_form() -> None:
    forms = file_forms(["X:BTCUSD"])
    assert forms["X:BTC-USD"] == "X:BTCUSD" and forms["X:BTCUSD"] == "X:BTCUSD"


# --- resampling rules ---------------------------------------------------------------------------
def _ns(text: str, tz: str = "UTC") -> int:
    return pd.Timestamp(text, tz=tz).value


def test_intraday_buckets_are_epoch_aligned_utc() -> None:
    starts = bucket_starts(np.array([_ns("2024-01-02 15:30")]), parse_interval("4h"))
    assert starts[0] == _ns("2024-01-02 12:00")


def test_week_buckets_start_sunday_midnight_new_york_across_dst() -> None:
    days = np.array([_ns("2024-03-08", "America/New_York"), _ns("2024-03-11", "America/New_York")])
    starts = bucket_starts(days, parse_interval("1w"))
    assert list(starts) == [_ns("2024-03-03", "America/New_York"), _ns("2024-03-10", "America/New_York")]


def test_month_buckets_start_on_the_first_midnight_new_york() -> None:
    starts = bucket_starts(np.array([_ns("2024-03-29", "America/New_York")]), parse_interval("1M"))
    assert starts[0] == _ns("2024-03-01", "America/New_York")


def test_resample_applies_the_ohlcv_rules() -> None:
    t0 = _ns("2024-01-02 15:00")
    minutes = pd.DataFrame({
        "symbol": ["A"] * 3, "t": [t0, t0 + 60 * 10**9, t0 + 120 * 10**9],
        "open": [10.0, 11.0, 12.0], "high": [10.5, 13.0, 12.5], "low": [9.5, 10.8, 8.0],
        "close": [10.2, 12.1, 9.0], "volume": [100.0, 200.0, 300.0], "transactions": [1, 2, 3],
    })
    bar = resample(minutes, parse_interval("5m")).iloc[0]
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.transactions) == (10, 13, 8, 9, 600, 6)


# --- reading against the sandbox --------------------------------------------------------------
def test_result_has_the_standard_schema(settings: Settings) -> None:
    df = download_flat_file(["AAPL", "MSFT"], "2024-01-29", "2024-01-30", "1h", settings=settings)
    assert list(df.columns) == list(BAR_COLUMNS)
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]" and df["transactions"].dtype == "int64"
    assert df.equals(df.sort_values(["symbol", "timestamp"]).reset_index(drop=True))
    assert df.attrs["method"] == "flat_file"


def test_day_bars_equal_the_generator(sb: Sandbox, settings: Settings) -> None:
    df = download_flat_file("MSFT", "2024-01-25", "2024-02-06", "1d", settings=settings)
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "MSFT", "2024-01-25", "2024-02-06", "1d"))


def test_minute_bars_equal_the_generator(sb: Sandbox, settings: Settings) -> None:
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "AAPL", "2024-01-26", "2024-01-26", "1m"))


@pytest.mark.parametrize("interval", INTERVALS)
def test_every_interval_equals_the_generator(sb: Sandbox, settings: Settings, interval: str) -> None:
    df = download_flat_file(["X:BTCUSD", "NVDA"], "2024-01-29", "2024-02-02", interval, settings=settings)
    want = pd.concat([generator_bars(sb, t, "2024-01-29", "2024-02-02", interval) for t in ("NVDA", "X:BTCUSD")],
                     ignore_index=True)
    pd.testing.assert_frame_equal(df[OHLCV], want)


@pytest.mark.parametrize("interval", INTERVALS)
def test_every_interval_equals_rest_for_every_asset_class(settings: Settings, interval: str) -> None:
    flat = download_flat_file(ALL_ASSETS, "2024-01-26", "2024-02-05", interval, settings=settings)
    rest = fetch_ohlcv_rest(ALL_ASSETS, "2024-01-26", "2024-02-05", interval, settings=settings)
    assert len(flat) > 0
    pd.testing.assert_frame_equal(flat[OHLCV], rest[OHLCV])


def test_vwap_is_nan_because_flat_files_carry_none(settings: Settings) -> None:
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1h", settings=settings)
    assert len(df) > 0 and df["vwap"].isna().all()


def test_datetime_bounds_cut_inside_the_day(settings: Settings) -> None:
    start, end = "2024-01-26T15:10:00Z", "2024-01-26T16:40:00Z"
    flat = download_flat_file("AAPL", start, end, "15m", settings=settings)
    rest = fetch_ohlcv_rest("AAPL", start, end, "15m", settings=settings)
    pd.testing.assert_frame_equal(flat[OHLCV], rest[OHLCV])


def test_weekend_days_are_skipped_and_reported(settings: Settings) -> None:
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-29", "1d", settings=settings)
    # only a trading day can be missing; the weekend is reported apart (before: missing_days listed it)
    assert df.attrs["missing_days"] == [] and df.attrs["closed_days"] == ["2024-01-27", "2024-01-28"]
    days = [t.date() for t in df["timestamp"].dt.tz_convert("America/New_York")]
    assert days == [date(2024, 1, 26), date(2024, 1, 29)]


def test_missing_days_are_logged(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="massive_feeds.flatfiles"):
        download_flat_file("AAPL", "2024-01-27", "2024-01-29", "1d", settings=settings)
    assert "2024-01-27, 2024-01-28" in caplog.text


def test_weekend_only_query_is_empty_not_an_error(settings: Settings) -> None:
    df = download_flat_file("AAPL", "2024-01-27", "2024-01-28", "1h", settings=settings)
    assert df.empty and list(df.columns) == list(BAR_COLUMNS)


def test_crypto_weekend_files_are_read(settings: Settings) -> None:
    df = download_flat_file("BTC-USD", "2024-01-27", "2024-01-28", "1d", settings=settings)
    assert list(df["symbol"]) == ["X:BTCUSD", "X:BTCUSD"] and df.attrs["missing_days"] == []


def test_plain_crypto_tickers_in_a_file_are_accepted_too(sb: Sandbox, settings: Settings,
                                                         restore: list[str]) -> None:
    key = "global_crypto/day_aggs_v1/2024/02/2024-02-03.csv.gz"
    restore.append(key)
    ws = pd.Timestamp("2024-02-03", tz="America/New_York").value
    csv = f"ticker,volume,open,close,high,low,window_start,transactions\nX:BTCUSD,2.5,1,2,3,0.5,{ws},7\n"
    sb.s3.put(key, gzip.compress(csv.encode()))
    df = download_flat_file("X:BTCUSD", "2024-02-03", "2024-02-03", "1d", settings=settings)
    assert (df["close"].tolist(), df["transactions"].tolist()) == ([2.0], [7])


def test_unknown_symbol_is_reported_as_empty(settings: Settings) -> None:
    df = download_flat_file(["AAPL", "ZZZZ"], "2024-01-26", "2024-01-26", "1d", settings=settings)
    assert df.attrs["empty_symbols"] == ["ZZZZ"] and set(df["symbol"]) == {"AAPL"}


# --- cache ---------------------------------------------------------------------------------------
def test_cache_hit_makes_no_get(sb: Sandbox, settings: Settings) -> None:
    first = download_flat_file("AAPL", "2024-01-29", "2024-01-31", "5m", settings=settings)
    before = object_gets(sb)
    again = download_flat_file("AAPL", "2024-01-29", "2024-01-31", "5m", settings=settings)
    assert object_gets(sb) == before
    pd.testing.assert_frame_equal(again, first)


def test_cache_serves_other_symbols_of_a_cached_day(sb: Sandbox, settings: Settings) -> None:
    download_flat_file("AAPL", "2024-01-29", "2024-01-29", "1h", settings=settings)
    before = object_gets(sb)
    df = download_flat_file("TSLA", "2024-01-29", "2024-01-29", "1h", settings=settings)
    assert object_gets(sb) == before and set(df["symbol"]) == {"TSLA"}


def test_cache_hit_costs_no_quota(settings: Settings) -> None:
    download_flat_file("AAPL", "2024-01-29", "2024-01-30", "1h", settings=settings)
    used = quota_status(settings).flatfile_bytes_used
    download_flat_file("AAPL", "2024-01-29", "2024-01-30", "1h", settings=settings)
    assert quota_status(settings).flatfile_bytes_used == used


def test_downloads_count_their_listed_bytes_against_the_quota(sb: Sandbox, settings: Settings) -> None:
    download_flat_file("AAPL", "2024-01-29", "2024-01-30", "1h", settings=settings)
    keys = [f"us_stocks_sip/minute_aggs_v1/2024/01/2024-01-{d}.csv.gz" for d in (29, 30)]
    assert quota_status(settings).flatfile_bytes_used == sum(len(sb.s3.get(k)) for k in keys)


def test_cached_day_is_a_parquet_file_named_by_etag(sb: Sandbox, settings: Settings) -> None:
    download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1h", settings=settings)
    assert [p.name for p in cached_files(settings, AAPL_DAY)] == [f"2024-01-26.{sb.s3.etag(AAPL_DAY)}.parquet"]


def test_republished_file_is_fetched_again(sb: Sandbox, settings: Settings) -> None:
    key = "us_stocks_sip/day_aggs_v1/2024/02/2024-02-02.csv.gz"
    first = download_flat_file("AAPL", "2024-02-01", "2024-02-02", "1d", settings=settings)
    new_etag = sb.s3.republish(key)
    sb.s3.clear_log()
    again = download_flat_file("AAPL", "2024-02-01", "2024-02-02", "1d", settings=settings)
    assert [r.key for r in sb.s3.requests if r.method == "GET" and r.key] == [key]
    assert [p.name for p in cached_files(settings, key)] == [f"2024-02-02.{new_etag}.parquet"]
    pd.testing.assert_frame_equal(again, first)


def test_leftover_temp_file_of_a_killed_download_is_ignored(sb: Sandbox, settings: Settings) -> None:
    folder = settings.cache_dir / "flatfiles" / "us_stocks_sip/minute_aggs_v1/2024/01"
    folder.mkdir(parents=True)
    (folder / f".2024-01-26.{sb.s3.etag(AAPL_DAY)}.csv.gz.x1y2.partial").write_bytes(b"\x1f\x8b half a download")
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "AAPL", "2024-01-26", "2024-01-26", "1m"))


def test_short_gzip_under_the_final_name_is_not_trusted(sb: Sandbox, settings: Settings) -> None:
    folder = settings.cache_dir / "flatfiles" / "us_stocks_sip/minute_aggs_v1/2024/01"
    folder.mkdir(parents=True)
    (folder / f"2024-01-26.{sb.s3.etag(AAPL_DAY)}.csv.gz").write_bytes(sb.s3.get(AAPL_DAY)[:1000])
    before = object_gets(sb)
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    assert object_gets(sb) == before + 1 and len(df) > 0


def test_interrupted_download_is_retried(sb: Sandbox, settings: Settings) -> None:
    sb.s3.cut_next_downloads(1)
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "AAPL", "2024-01-26", "2024-01-26", "1m"))


def test_download_that_keeps_breaking_leaves_nothing_cached(sb: Sandbox, settings: Settings) -> None:
    sb.s3.cut_next_downloads(10)
    with pytest.raises(ServerError, match="2024-01-26"):
        download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    folder = settings.cache_dir / "flatfiles" / "us_stocks_sip/minute_aggs_v1/2024/01"
    assert list(folder.iterdir()) == []


def test_failed_download_gives_its_quota_back(sb: Sandbox, settings: Settings) -> None:
    sb.s3.cut_next_downloads(10)
    with pytest.raises(ServerError):
        download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    assert quota_status(settings).flatfile_bytes_used == 0


# --- pipelined download (streamed into the parser while it arrives) --------------------------------
def gzip_entry(settings: Settings, key: str, etag: str) -> Path:
    stem = settings.cache_dir / "flatfiles" / key.removesuffix(".csv.gz")
    return stem.with_name(f"{stem.name}.{etag}.csv.gz")


def test_streamed_download_leaves_a_byte_exact_gzip_entry_then_its_parquet(sb: Sandbox, settings: Settings) -> None:
    etag = sb.s3.etag(AAPL_DAY)
    with hold_cache_writes():  # the parquet conversion waits, so the gzip entry can be looked at
        df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
        assert gzip_entry(settings, AAPL_DAY, etag).read_bytes() == sb.s3.get(AAPL_DAY)
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "AAPL", "2024-01-26", "2024-01-26", "1m"))
    assert [p.name for p in cached_files(settings, AAPL_DAY)] == [f"2024-01-26.{etag}.parquet"]
    before = object_gets(sb)
    again = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    assert object_gets(sb) == before
    pd.testing.assert_frame_equal(again, df)


def test_gzip_entry_waiting_for_its_parquet_serves_the_next_query(sb: Sandbox, settings: Settings) -> None:
    with hold_cache_writes():
        first = download_flat_file(["AAPL", "MSFT"], "2024-01-26", "2024-01-26", "5m", settings=settings)
        before = object_gets(sb)
        again = download_flat_file(["MSFT", "AAPL"], "2024-01-26", "2024-01-26", "5m", settings=settings)
        assert object_gets(sb) == before
    pd.testing.assert_frame_equal(again, first)


def test_resumed_download_is_byte_exact_and_spends_exactly_the_object_bytes(sb: Sandbox, settings: Settings) -> None:
    sb.s3.cut_next_downloads(1)  # the first GET sends half the body and drops the connection
    sb.s3.clear_log()
    with hold_cache_writes():
        df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
        assert gzip_entry(settings, AAPL_DAY, sb.s3.etag(AAPL_DAY)).read_bytes() == sb.s3.get(AAPL_DAY)
    assert [r.status for r in sb.s3.requests if r.method == "GET" and r.key == AAPL_DAY] == [200, 206]
    assert quota_status(settings).flatfile_bytes_used == len(sb.s3.get(AAPL_DAY))
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "AAPL", "2024-01-26", "2024-01-26", "1m"))


def test_transport_download_resumes_a_cut_transfer_byte_exact(sb: Sandbox, settings: Settings, tmp_path: Path) -> None:
    transport = S3Transport(settings)
    remote = RemoteFile(AAPL_DAY, len(sb.s3.get(AAPL_DAY)), sb.s3.etag(AAPL_DAY))
    sb.s3.cut_next_downloads(2)
    seen: list[int] = []
    transport.download(remote, tmp_path / "day.csv.gz", seen.append)
    assert (tmp_path / "day.csv.gz").read_bytes() == sb.s3.get(AAPL_DAY)
    assert sum(seen) == remote.size  # each byte received once: progress and quota add up exactly


def test_download_cut_for_good_after_rows_were_parsed_leaves_no_entry(sb: Sandbox, settings: Settings) -> None:
    sb.s3.cut_next_downloads(10)  # every attempt (whole, then ranged resumes) breaks off half-way
    with pytest.raises(ServerError, match="2024-01-26"):
        download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    assert cached_files(settings, AAPL_DAY) == []
    assert quota_status(settings).flatfile_bytes_used == 0


# --- failures --------------------------------------------------------------------------------------
def test_truncated_gzip_raises_corrupt_file_error_naming_the_key(sb: Sandbox, settings: Settings,
                                                                 restore: list[str]) -> None:
    key = "global_forex/day_aggs_v1/2024/02/2024-02-01.csv.gz"
    restore.append(key)
    sb.s3.corrupt(key, "truncate")
    with pytest.raises(CorruptFileError, match=key) as err:
        download_flat_file("C:EURUSD", "2024-02-01", "2024-02-01", "1d", settings=settings)
    assert err.value.key == key


def test_corrupt_file_leaves_no_cache_entry(sb: Sandbox, settings: Settings, restore: list[str]) -> None:
    key = "global_forex/day_aggs_v1/2024/02/2024-02-02.csv.gz"
    restore.append(key)
    sb.s3.corrupt(key, "garbage")
    with pytest.raises(CorruptFileError):
        download_flat_file("C:EURUSD", "2024-02-02", "2024-02-02", "1d", settings=settings)
    assert cached_files(settings, key) == []


def test_not_entitled_dataset_raises_not_entitled_error(sb: Sandbox, settings: Settings) -> None:
    sb.s3.deny("us_options_opra/")
    with pytest.raises(NotEntitledError, match="us_options_opra/day_aggs_v1") as err:
        download_flat_file("O:SPY251219C00650000", "2024-01-26", "2024-01-26", "1d", settings=settings)
    assert err.value.status == 403


def test_not_entitled_download_gives_its_quota_back(sb: Sandbox, settings: Settings) -> None:
    sb.not_entitled.add("options")
    with pytest.raises(NotEntitledError):
        download_flat_file("O:SPY251219C00650000", "2024-01-26", "2024-01-29", "1d", settings=settings)
    assert quota_status(settings).flatfile_bytes_used == 0


def test_wrong_secret_raises_authentication_error_without_the_secret(sb: Sandbox, tmp_path: Path) -> None:
    bad = sb.settings(home=tmp_path / "home", s3_secret_access_key="not-the-secret-42")
    with pytest.raises(AuthenticationError, match="SignatureDoesNotMatch") as err:
        download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1d", settings=bad)
    assert "not-the-secret-42" not in str(err.value) and "MASSIVE_S3_SECRET_ACCESS_KEY" in str(err.value)


def test_unknown_access_key_raises_authentication_error(sb: Sandbox, tmp_path: Path) -> None:
    bad = sb.settings(home=tmp_path / "home", s3_access_key_id="AKIAUNKNOWN")
    with pytest.raises(AuthenticationError, match="InvalidAccessKeyId"):
        download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1d", settings=bad)


def test_missing_s3_credentials_raise_before_any_request(sb: Sandbox, tmp_path: Path) -> None:
    sb.s3.clear_log()
    bare = Settings(s3_endpoint=sb.s3.endpoint, home=tmp_path / "home", sandbox="off")  # no keyless default
    with pytest.raises(MissingCredentialsError, match="MASSIVE_S3_ACCESS_KEY_ID"):
        download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1d", settings=bare)
    assert sb.s3.count() == 0


def test_quota_refuses_before_any_download(sb: Sandbox, tmp_path: Path) -> None:
    tiny = dataclasses.replace(PLANS["free"], flatfile_bytes_per_month=50_000)
    settings = sb.settings(home=tmp_path / "home", plan=tiny)
    before = object_gets(sb)
    with pytest.raises(QuotaExceededError, match="monthly flat-file quota") as err:
        download_flat_file("AAPL", "2024-01-29", "2024-01-31", "1m", settings=settings)
    assert object_gets(sb) == before
    assert err.value.resource == "flatfile_bytes" and quota_status(settings).flatfile_bytes_used == 0


def test_cached_files_are_served_even_when_the_quota_is_used_up(sb: Sandbox, tmp_path: Path) -> None:
    home = tmp_path / "home"
    download_flat_file("AAPL", "2024-01-29", "2024-01-29", "1m", settings=sb.settings(home=home, plan="unlimited"))
    empty = dataclasses.replace(PLANS["free"], flatfile_bytes_per_month=1)  # 0 is refused at config time
    df = download_flat_file("AAPL", "2024-01-29", "2024-01-29", "1m", settings=sb.settings(home=home, plan=empty))
    assert len(df) > 0


# --- progress and wiring ---------------------------------------------------------------------------
def test_progress_bar_shows_bytes_when_asked(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings, progress=True)
    assert "flat files" in capsys.readouterr().err


def test_no_progress_bar_when_stderr_is_not_a_terminal(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    assert capsys.readouterr().err == ""


def test_fetch_data_flat_file_method_makes_no_rest_call(sb: Sandbox, settings: Settings) -> None:
    before = sb.rest.count("/v2/aggs")
    df = fetch_data(["AAPL", "MSFT"], "2024-01-29", "2024-01-30", "1h", method="flat_file", settings=settings)
    assert df.attrs["method"] == "flat_file" and len(df) > 0 and sb.rest.count("/v2/aggs") == before


def test_damaged_cached_day_is_discarded_and_fetched_again(sb: Sandbox, settings: Settings) -> None:
    download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    [parquet] = cached_files(settings, AAPL_DAY)
    parquet.write_bytes(b"not parquet at all")
    before = object_gets(sb)
    df = download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1m", settings=settings)
    assert object_gets(sb) == before + 1
    pd.testing.assert_frame_equal(df[OHLCV], generator_bars(sb, "AAPL", "2024-01-26", "2024-01-26", "1m"))


def test_stale_temp_files_are_swept_and_fresh_ones_left_alone(sb: Sandbox, settings: Settings) -> None:
    folder = settings.cache_dir / "flatfiles" / "us_stocks_sip/day_aggs_v1/2024/01"
    folder.mkdir(parents=True)
    stale, fresh = folder / ".2024-01-26.x.csv.gz.a.partial", folder / ".2024-01-26.x.csv.gz.b.partial"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"new")
    os.utime(stale, (0, 0))
    download_flat_file("AAPL", "2024-01-26", "2024-01-26", "1d", settings=settings)
    assert (stale.exists(), fresh.exists()) == (False, True)


@pytest.mark.parametrize("adjusted", [True, False])
def test_flat_files_equal_rest_across_a_split_adjusted_or_not(settings: Settings, adjusted: bool) -> None:
    # INTC has a 1-for-10 reverse split in the sandbox on 2024-01-31: flat files are raw, so this
    # only holds if download_flat_file applies the same splits REST does (or none, when raw).
    flat = download_flat_file("INTC", "2024-01-29", "2024-02-02", "1h", settings=settings, adjusted=adjusted)
    rest = fetch_ohlcv_rest("INTC", "2024-01-29", "2024-02-02", "1h", settings=settings, adjusted=adjusted)
    assert flat.attrs["adjusted"] is adjusted and len(flat) > 0
    pd.testing.assert_frame_equal(flat[OHLCV], rest[OHLCV])


def test_object_gone_after_listing_is_a_missing_object(settings: Settings, tmp_path: Path) -> None:
    transport = S3Transport(settings)
    gone = RemoteFile("us_stocks_sip/day_aggs_v1/2024/01/2024-01-27.csv.gz", 100, "0" * 32)
    with pytest.raises(MissingObjectError, match="2024-01-27"):
        transport.download(gone, tmp_path / "x.csv.gz")


def test_transport_repr_shows_no_secret(settings: Settings, sb: Sandbox) -> None:
    text = repr(S3Transport(settings))
    assert sb.s3.endpoint in text and sb.s3_secret_access_key not in text
