"""Split adjustment with one meaning on every path: the sandbox's splits (endpoint, raw ticks, REST
``adjusted``), the splits list (fetch, cache, quota, failures), ``apply_splits``, and REST = flat
files = auto = datasets across each split, adjusted and raw, for minute and day bars.

Sandbox splits used here: GOOGL 4-for-1 on 2024-03-06, INTC 1-for-10 reverse on 2024-01-31."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
import requests

from massive_feeds.config import Settings
from massive_feeds.datasets import load_dataset, save_dataset
from massive_feeds.errors import InvalidInputError, MissingCredentialsError
from massive_feeds.fetch import fetch_data, fetch_ohlcv_rest
from massive_feeds.flatfiles import download_flat_file
from massive_feeds.quota import quota_status
from massive_feeds.rest import RestClient
from massive_feeds.sandbox import Sandbox
from massive_feeds.splits import apply_splits, fetch_splits, splits_cache_dir, splits_frame

from .conftest import FAST_RETRY

OHLCV = ["timestamp", "symbol", "open", "high", "low", "close", "volume", "transactions"]
# 11 calendar days around each split: more than 7 days, so method="auto" chooses flat files.
RANGES = {"GOOGL": ("2024-02-27", "2024-03-08"), "INTC": ("2024-01-25", "2024-02-04")}
SPLIT_DAY = {"GOOGL": date(2024, 3, 6), "INTC": date(2024, 1, 31)}
FACTOR = {"GOOGL": 1 / 4, "INTC": 10.0}  # adjusted = raw x factor before the split


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(date(2024, 1, 25), date(2024, 3, 8))) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _reset(sb: Sandbox) -> Iterator[None]:
    yield
    sb.faults.reset()


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


def splits_calls(sb: Sandbox) -> int:
    return sb.rest.count("/stocks/v1/splits")


def get(sb: Sandbox, path: str, **params: object) -> dict:
    return requests.get(sb.rest_url + path, headers={"Authorization": f"Bearer {sb.api_key}"}, params=params,
                        timeout=10).json()


def ny_dates(df: pd.DataFrame) -> np.ndarray:
    return df["timestamp"].dt.tz_convert("America/New_York").dt.date.to_numpy()


# --- the sandbox serves splits consistently ---------------------------------------------------------
def test_splits_endpoint_has_the_real_shape(sb: Sandbox) -> None:
    rows = get(sb, "/v3/reference/splits", ticker="INTC")["results"]
    assert rows == [{"execution_date": "2024-01-31", "id": rows[0]["id"], "split_from": 10, "split_to": 1,
                     "ticker": "INTC"}]


def test_splits_endpoint_filters_by_date_and_paginates(sb: Sandbox) -> None:
    first = get(sb, "/v3/reference/splits", **{"execution_date.gte": "2024-01-01", "execution_date.lte": "2024-12-31",
                                               "limit": 1, "order": "asc"})
    second = requests.get(first["next_url"], headers={"Authorization": f"Bearer {sb.api_key}"}, timeout=10).json()
    assert [r["ticker"] for r in first["results"] + second["results"]] == ["INTC", "GOOGL"]
    assert "next_url" not in second and sb.api_key not in first["next_url"]


def test_rest_adjusted_divides_prices_and_multiplies_volumes_before_the_split(sb: Sandbox) -> None:
    path = "/v2/aggs/ticker/GOOGL/range/1/day/2024-03-05/2024-03-06"
    adj, raw = (get(sb, path, adjusted=a)["results"] for a in ("true", "false"))
    assert adj[0]["c"] == raw[0]["c"] / 4 and adj[0]["v"] == raw[0]["v"] * 4 and adj[0]["n"] == raw[0]["n"]
    assert adj[1] == raw[1]  # the bar on the execution date is already post-split


def test_raw_series_jumps_by_the_split_ratio_while_the_adjusted_one_is_continuous(settings: Settings) -> None:
    raw = fetch_ohlcv_rest("GOOGL", "2024-03-05", "2024-03-06", "1d", settings=settings, adjusted=False)
    adj = fetch_ohlcv_rest("GOOGL", "2024-03-05", "2024-03-06", "1d", settings=settings, adjusted=True)
    assert raw["open"].iloc[1] / raw["close"].iloc[0] == pytest.approx(0.25, rel=0.05)
    assert adj["open"].iloc[1] / adj["close"].iloc[0] == pytest.approx(1.0, rel=0.05)


# --- the splits list: fetch, cache, quota, failures ---------------------------------------------------
def test_fetch_splits_returns_the_table_for_stock_tickers_only(sb: Sandbox, settings: Settings) -> None:
    before = splits_calls(sb)
    table = fetch_splits(["GOOGL", "AAPL", "X:BTCUSD"], settings=settings)
    assert table[["ticker", "split_from", "split_to"]].values.tolist() == [["GOOGL", 1.0, 4.0]]
    assert table["execution_date"].tolist() == [pd.Timestamp("2024-03-06")]
    assert splits_calls(sb) - before == 2  # GOOGL and AAPL; crypto never splits


def test_splits_list_is_cached_and_counted_against_the_quota(sb: Sandbox, settings: Settings) -> None:
    fetch_splits("GOOGL", settings=settings)
    used, before = quota_status(settings).rest_used_today, splits_calls(sb)
    again = fetch_splits("GOOGL", settings=settings)
    assert splits_calls(sb) == before and quota_status(settings).rest_used_today == used == 1
    assert len(again) == 1


def test_splits_list_is_refreshed_after_a_day(sb: Sandbox, settings: Settings) -> None:
    fetch_splits("GOOGL", settings=settings)
    for path in splits_cache_dir(settings).glob("*.parquet"):
        old = time.time() - 25 * 3600
        os.utime(path, (old, old))
    before = splits_calls(sb)
    fetch_splits("GOOGL", settings=settings)
    assert splits_calls(sb) == before + 1


def test_many_tickers_use_one_market_wide_listing(sb: Sandbox, settings: Settings) -> None:
    sb.rest.requests.clear()
    table = fetch_splits(["GOOGL", "INTC", "AAPL", "MSFT", "NVDA", "KO"], "2024-01-02", settings=settings)
    calls = [r for r in sb.rest.requests if r.path == "/stocks/v1/splits"]
    assert len(calls) == 1 and "execution_date.gte=2024-01-02" in calls[0].query and "ticker=" not in calls[0].query
    assert sorted(table["ticker"]) == ["GOOGL", "INTC"]


def test_stale_list_is_used_when_the_refresh_fails(sb: Sandbox, settings: Settings,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    fetch_splits("GOOGL", settings=settings)
    for path in splits_cache_dir(settings).glob("*.parquet"):
        os.utime(path, (0, 0))
    sb.faults.queue(503, 503, 503, 503)
    with RestClient(settings, retry=FAST_RETRY) as client:
        table = fetch_splits("GOOGL", settings=settings, client=client)
    assert len(table) == 1 and "using the cached one" in caplog.text


def test_adjusted_flat_files_without_an_api_key_fail_clearly_before_any_download(sb: Sandbox,
                                                                                 settings: Settings) -> None:
    keyless = dataclasses.replace(settings, api_key=None)
    before = sb.s3.count("GET", objects_only=True)
    with pytest.raises(MissingCredentialsError, match="adjusted=False") as err:
        download_flat_file("GOOGL", "2024-03-04", "2024-03-08", "1d", settings=keyless)
    assert "MASSIVE_API_KEY" in str(err.value) and sb.s3.count("GET", objects_only=True) == before


def test_raw_or_non_stock_flat_files_need_no_api_key(settings: Settings) -> None:
    keyless = dataclasses.replace(settings, api_key=None)
    raw = download_flat_file("GOOGL", "2024-03-04", "2024-03-08", "1d", settings=keyless, adjusted=False)
    crypto = download_flat_file("X:BTCUSD", "2024-03-04", "2024-03-08", "1d", settings=keyless)
    assert len(raw) == 5 and len(crypto) == 5 and crypto.attrs["adjusted"] is True


# --- apply_splits ----------------------------------------------------------------------------------
def _day_bars(symbol: str, days: list[str], close: list[float], volume: list[float]) -> pd.DataFrame:
    ts = pd.DatetimeIndex([pd.Timestamp(d, tz="America/New_York") for d in days]).tz_convert("UTC")
    return pd.DataFrame({"timestamp": ts, "symbol": symbol, "open": close, "high": close, "low": close,
                         "close": close, "volume": volume, "vwap": close, "transactions": [7] * len(days)})


def test_apply_splits_adjusts_bars_before_the_execution_date_only() -> None:
    bars = _day_bars("GOOGL", ["2024-03-05", "2024-03-06"], [600.0, 151.0], [100.0, 400.0])
    table = splits_frame([{"ticker": "GOOGL", "execution_date": "2024-03-06", "split_from": 1, "split_to": 4}])
    out = apply_splits(bars, table)
    assert out["close"].tolist() == [150.0, 151.0] and out["vwap"].tolist() == [150.0, 151.0]
    assert out["volume"].tolist() == [400.0, 400.0] and out["transactions"].tolist() == [7, 7]


def test_apply_splits_multiplies_successive_splits_and_inverse_undoes_them() -> None:
    bars = _day_bars("X", ["2020-01-02", "2021-01-04", "2022-01-03"], [800.0, 400.0, 100.0], [1.0, 1.0, 1.0])
    table = splits_frame([{"ticker": "X", "execution_date": "2020-06-01", "split_from": 1, "split_to": 2},
                          {"ticker": "X", "execution_date": "2021-06-01", "split_from": 1, "split_to": 4}])
    out = apply_splits(bars, table)
    assert out["close"].tolist() == [100.0, 100.0, 100.0] and out["volume"].tolist() == [8.0, 4.0, 1.0]
    pd.testing.assert_frame_equal(apply_splits(out, table, inverse=True), bars)


# --- one meaning everywhere: REST = flat files = auto, adjusted and raw, minute and day ----------------
@pytest.mark.parametrize("adjusted", [True, False], ids=["adjusted", "raw"])
@pytest.mark.parametrize("interval", ["1m", "1d"])
@pytest.mark.parametrize("ticker", ["GOOGL", "INTC"])
def test_rest_flat_files_and_auto_agree_across_the_split(settings: Settings, ticker: str, interval: str,
                                                         adjusted: bool) -> None:
    start, end = RANGES[ticker]
    rest = fetch_ohlcv_rest(ticker, start, end, interval, settings=settings, adjusted=adjusted)
    flat = download_flat_file(ticker, start, end, interval, settings=settings, adjusted=adjusted)
    auto = fetch_data(ticker, start, end, interval, settings=settings, adjusted=adjusted)
    assert auto.attrs["method"] == "flat_file" and flat.attrs["adjusted"] is adjusted
    assert (ny_dates(rest) < SPLIT_DAY[ticker]).any() and (ny_dates(rest) >= SPLIT_DAY[ticker]).any()
    pd.testing.assert_frame_equal(flat[OHLCV], rest[OHLCV])
    pd.testing.assert_frame_equal(auto[OHLCV], rest[OHLCV])


@pytest.mark.parametrize("ticker", ["GOOGL", "INTC"])
def test_adjusted_and_raw_differ_by_the_factor_before_the_split_only(settings: Settings, ticker: str) -> None:
    start, end = RANGES[ticker]
    adj = download_flat_file(ticker, start, end, "1h", settings=settings, adjusted=True)
    raw = download_flat_file(ticker, start, end, "1h", settings=settings, adjusted=False)
    before = ny_dates(raw) < SPLIT_DAY[ticker]
    np.testing.assert_allclose(adj["close"][before], raw["close"][before] * FACTOR[ticker])
    np.testing.assert_allclose(adj["volume"][before], raw["volume"][before] / FACTOR[ticker])
    pd.testing.assert_frame_equal(adj[~before], raw[~before])


def test_weekly_bars_straddling_a_split_are_adjusted_before_resampling(settings: Settings) -> None:
    rest = fetch_ohlcv_rest("GOOGL", "2024-03-03", "2024-03-09", "1w", settings=settings)
    flat = download_flat_file("GOOGL", "2024-03-03", "2024-03-09", "1w", settings=settings)
    assert len(rest) == 1
    pd.testing.assert_frame_equal(flat[OHLCV], rest[OHLCV])


# --- datasets and recordings store raw or adjusted and convert on read ---------------------------------
def test_raw_dataset_loads_adjusted_like_rest(settings: Settings) -> None:
    raw = download_flat_file("GOOGL", *RANGES["GOOGL"], "1d", settings=settings, adjusted=False)
    save_dataset(raw, "googl_raw", settings=settings)
    stored = load_dataset("googl_raw", settings=settings)
    adjusted = load_dataset("googl_raw", settings=settings, adjusted=True)
    rest = fetch_ohlcv_rest("GOOGL", *RANGES["GOOGL"], "1d", settings=settings, adjusted=True)
    assert stored.attrs["adjusted"] is False and adjusted.attrs["adjusted"] is True
    pd.testing.assert_frame_equal(stored[OHLCV], raw[OHLCV])
    pd.testing.assert_frame_equal(adjusted[OHLCV], rest[OHLCV])


def test_adjusted_dataset_loads_raw_like_rest(settings: Settings) -> None:
    save_dataset(fetch_ohlcv_rest("INTC", *RANGES["INTC"], "1d", settings=settings), "intc_adj", settings=settings)
    raw = load_dataset("intc_adj", settings=settings, adjusted=False)
    rest = fetch_ohlcv_rest("INTC", *RANGES["INTC"], "1d", settings=settings, adjusted=False)
    pd.testing.assert_frame_equal(raw[OHLCV], rest[OHLCV])


def test_recording_datasets_count_as_raw_and_adjust_on_read(settings: Settings) -> None:
    raw = fetch_ohlcv_rest("GOOGL", "2024-03-05", "2024-03-06", "1m", settings=settings, adjusted=False)
    raw.attrs.clear()  # as a recording's bars: nothing but their source says what they are
    save_dataset(raw, "massive_live_test_20240305", source="live_recording", settings=settings)
    adjusted = load_dataset("massive_live_test_20240305", settings=settings, adjusted=True)
    rest = fetch_ohlcv_rest("GOOGL", "2024-03-05", "2024-03-06", "1m", settings=settings, adjusted=True)
    pd.testing.assert_frame_equal(adjusted[OHLCV], rest[OHLCV])


def test_appending_raw_bars_to_an_adjusted_dataset_is_refused(settings: Settings) -> None:
    save_dataset(fetch_ohlcv_rest("GOOGL", "2024-03-04", "2024-03-05", "1d", settings=settings), "g", settings=settings)
    raw = fetch_ohlcv_rest("GOOGL", "2024-03-06", "2024-03-07", "1d", settings=settings, adjusted=False)
    with pytest.raises(InvalidInputError, match="would mix"):
        save_dataset(raw, "g", append=True, settings=settings)
