"""Near-duplicate split rows from the real service count once (massive_feeds.splits.merge_duplicate_splits).

The oracle is the official client's own mock of /v3/reference/splits (tests/fixtures/real/), which lists
SHOP 1 -> 10 on 2022-06-22 and on 2022-06-29 for Shopify's one 10-for-1 split. The sandbox here prices
one SHOP split on 2022-06-29 and, like the real list, also lists the 2022-06-22 row."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds.config import Settings
from massive_feeds.datasets import load_dataset, save_dataset
from massive_feeds.fetch import fetch_data, fetch_ohlcv_rest
from massive_feeds.flatfiles import download_flat_file
from massive_feeds.quality import quality_report
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.market import DEFAULT_UNIVERSE, SplitInfo, TickerInfo
from massive_feeds.splits import (
    MERGE_WINDOW_DAYS,
    apply_splits,
    bar_prices,
    fetch_splits,
    merge_duplicate_splits,
    splits_frame,
)

REAL = Path(__file__).parent / "fixtures" / "real" / "rest" / "splits.json"
SHOP_SPLIT = SplitInfo("SHOP", date(2022, 6, 29), 1, 10)
SHOP_ECHO = SplitInfo("SHOP", date(2022, 6, 22), 1, 10)


def real_rows() -> pd.DataFrame:
    return splits_frame(json.loads(REAL.read_text())["results"])


def bars(symbol: str, days: list[str], closes: list[float], opens: list[float] | None = None) -> pd.DataFrame:
    ts = pd.to_datetime([f"{d} 04:00" for d in days], utc=True)  # midnight New York, day bars
    opens = opens or closes
    return pd.DataFrame({"timestamp": ts, "symbol": symbol, "open": opens, "high": np.maximum(opens, closes),
                         "low": np.minimum(opens, closes), "close": closes, "volume": 1000.0, "vwap": np.nan,
                         "transactions": 10})


# --- the rule, on the real rows ---------------------------------------------------------------------
def test_real_shop_rows_merge_into_one_split_on_the_later_date() -> None:
    table = real_rows()
    assert len(table) == 10 and (table["ticker"] == "SHOP").sum() == 2
    merged = merge_duplicate_splits(table)
    shop = merged[merged["ticker"] == "SHOP"]
    assert shop["execution_date"].tolist() == [pd.Timestamp("2022-06-29")]
    assert len(merged) == 9  # every other ticker untouched (GOOG and GOOGL share a date: different tickers)
    assert sorted(merged["ticker"]) == sorted(set(table["ticker"]))
    assert merged.attrs["merged"] == [{"ticker": "SHOP", "ratio": "10-for-1", "kept": "2022-06-29",
                                       "dropped": ["2022-06-22"], "reason": "latest listed date"}]
    assert merge_duplicate_splits(merged).attrs["merged"] == []  # idempotent


def test_shop_bars_before_both_rows_are_adjusted_ten_times_not_a_hundred() -> None:
    raw = bars("SHOP", ["2022-06-21", "2022-06-23", "2022-06-28", "2022-06-29"], [400.0, 390.0, 380.0, 38.5])
    adj = apply_splits(raw, real_rows())
    assert adj["close"].tolist() == pytest.approx([40.0, 39.0, 38.0, 38.5])
    assert adj["volume"].tolist() == pytest.approx([10000.0, 10000.0, 10000.0, 1000.0])
    assert apply_splits(adj, real_rows(), inverse=True)["close"].tolist() == pytest.approx(raw["close"].tolist())


def test_the_price_jump_dates_a_merged_split_when_the_bars_show_it() -> None:
    # a series that really split on the earlier listed date: the jump decides, not the default
    raw = bars("SHOP", ["2022-06-21", "2022-06-22", "2022-06-28", "2022-06-29"], [400.0, 40.5, 39.0, 38.5])
    merged = merge_duplicate_splits(real_rows(), bar_prices(raw))
    assert merged.attrs["merged"][0]["kept"] == "2022-06-22"
    assert merged.attrs["merged"][0]["reason"] == "price jump"
    adj = apply_splits(raw, real_rows())
    assert adj["close"].tolist() == pytest.approx([40.0, 40.5, 39.0, 38.5])


@pytest.mark.parametrize(("gap", "rows_left"), [(MERGE_WINDOW_DAYS, 1), (MERGE_WINDOW_DAYS + 1, 2)])
def test_merge_window_boundary(gap: int, rows_left: int) -> None:
    second = (pd.Timestamp("2022-06-01") + pd.Timedelta(days=gap)).date().isoformat()
    table = splits_frame([{"ticker": "SHOP", "execution_date": "2022-06-01", "split_from": 1, "split_to": 10},
                          {"ticker": "SHOP", "execution_date": second, "split_from": 1, "split_to": 10}])
    assert len(merge_duplicate_splits(table)) == rows_left


@pytest.mark.parametrize(("second", "rows_left"), [("2022-06-15", 1), ("2022-06-16", 2)])
def test_rows_14_days_apart_merge_and_15_days_apart_stay_two(second: str, rows_left: int) -> None:
    """The window in literal dates (not relative to the constant): 14 calendar days apart is one split listed
    twice, 15 days apart are two splits. Widening the window to 21 days (or narrowing it) turns this red."""
    table = splits_frame([{"ticker": "SHOP", "execution_date": "2022-06-01", "split_from": 1, "split_to": 10},
                          {"ticker": "SHOP", "execution_date": second, "split_from": 1, "split_to": 10}])
    merged = merge_duplicate_splits(table)
    assert merged["execution_date"].dt.strftime("%Y-%m-%d").tolist() == (
        [second] if rows_left == 1 else ["2022-06-01", second])


def test_same_ticker_different_ratio_close_together_stays_two_splits() -> None:
    table = splits_frame([{"ticker": "ABC", "execution_date": "2022-06-01", "split_from": 1, "split_to": 2},
                          {"ticker": "ABC", "execution_date": "2022-06-03", "split_from": 1, "split_to": 3}])
    assert len(merge_duplicate_splits(table)) == 2
    raw = bars("ABC", ["2022-05-31"], [600.0])
    assert apply_splits(raw, table)["close"].iloc[0] == pytest.approx(100.0)


# --- every path over the sandbox ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    universe = DEFAULT_UNIVERSE + (TickerInfo("SHOP", "Shopify Inc.", 400.0),)
    with Sandbox(rest=True, s3=True, s3_days=(date(2022, 6, 13), date(2022, 7, 8)), universe=universe,
                 splits=(SHOP_SPLIT,), listed_only_splits=(SHOP_ECHO,)) as sandbox:
        yield sandbox


@pytest.fixture
def shop_settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


def test_sandbox_lists_both_rows_like_the_real_service(shop_settings: Settings) -> None:
    table = fetch_splits("SHOP", settings=shop_settings)
    assert table["execution_date"].dt.date.tolist() == [date(2022, 6, 22), date(2022, 6, 29)]


@pytest.mark.parametrize("interval", ["1d", "1h"])
def test_rest_and_flat_file_adjusted_bars_are_equal_across_the_duplicated_split(shop_settings: Settings,
                                                                                  interval: str) -> None:
    rest = fetch_ohlcv_rest("SHOP", "2022-06-15", "2022-07-06", interval, settings=shop_settings)
    flat = download_flat_file("SHOP", "2022-06-15", "2022-07-06", interval, settings=shop_settings)
    assert len(rest) == len(flat) > 10
    cols = ["open", "high", "low", "close", "volume"]
    np.testing.assert_allclose(flat[cols].to_numpy(float), rest[cols].to_numpy(float), rtol=1e-9)
    assert flat.attrs["splits"] == 1
    assert flat.attrs["merged_splits"][0]["dropped"] == ["2022-06-22"]
    # ... and dated by the jump in the data: the raw series falls x0.1 on 2022-06-29
    assert flat.attrs["merged_splits"][0]["reason"] == "price jump"
    raw = download_flat_file("SHOP", "2022-06-15", "2022-07-06", interval, settings=shop_settings, adjusted=False)
    before = raw["timestamp"] < pd.Timestamp("2022-06-22", tz="America/New_York")
    assert (flat.loc[before.to_numpy(), "close"].to_numpy() / raw.loc[before.to_numpy(), "close"].to_numpy()
            == pytest.approx(0.1))


def test_auto_and_datasets_adjust_the_duplicated_split_once(shop_settings: Settings) -> None:
    rest = fetch_ohlcv_rest("SHOP", "2022-06-15", "2022-07-06", "1d", settings=shop_settings)
    auto = fetch_data("SHOP", "2022-06-15", "2022-07-06", "1d", settings=shop_settings)  # 22 days: flat files
    assert auto.attrs["method"] == "flat_file"
    np.testing.assert_allclose(auto["close"].to_numpy(), rest["close"].to_numpy(), rtol=1e-9)
    raw = fetch_ohlcv_rest("SHOP", "2022-06-15", "2022-07-06", "1d", settings=shop_settings, adjusted=False)
    save_dataset(raw, "shop_raw", settings=shop_settings)
    loaded = load_dataset("shop_raw", settings=shop_settings, adjusted=True)
    np.testing.assert_allclose(loaded["close"].to_numpy(), rest["close"].to_numpy(), rtol=1e-9)
    save_dataset(rest, "shop_adj", settings=shop_settings)
    back = load_dataset("shop_adj", settings=shop_settings, adjusted=False)
    np.testing.assert_allclose(back["close"].to_numpy(), raw["close"].to_numpy(), rtol=1e-9)


def test_quality_report_shows_the_merged_rows(shop_settings: Settings) -> None:
    raw = download_flat_file("SHOP", "2022-06-15", "2022-07-06", "1d", settings=shop_settings, adjusted=False)
    report = quality_report(raw, splits=fetch_splits("SHOP", settings=shop_settings))
    texts = report.loc[report["split"] != "", ["date", "split"]]
    assert len(texts) == 1 and str(texts["date"].iloc[0]) == "2022-06-29"
    assert "also listed on 2022-06-22" in texts["split"].iloc[0] and "raw prices jump" in texts["split"].iloc[0]
    assert report.attrs["merged_splits"][0]["kept"] == "2022-06-29"
    assert any("SHOP 10-for-1 is listed on 2022-06-29 and 2022-06-22" in n for n in report.attrs["notes"])
    assert not report["issues"].str.contains("split_unadjusted").any()
