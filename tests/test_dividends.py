"""Total-return prices (``adjusted="total"``) with one meaning on every path, over the sandbox's sockets.

The sandbox's INTC pays quarterly (ex-dates 2024-01-10 and 2024-04-10 here) and splits 1-for-10 (reverse) on
2024-01-31, so the window 2024-01-02..2024-04-19 holds two ex-dates and a split. Raw day closes before the
ex-dates (read from the sandbox's raw REST bars; the same numbers are asserted below): 3.30 on 2024-01-09 (cash
0.0125 per pre-split share) and 26.88 on 2024-04-09 (cash 0.125). Hand-computed factors:
1 - 0.0125 / 3.30 = 0.9962121212… and 1 - 0.125 / 26.88 = 0.9953497023…"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Iterator

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from massive_feeds.backtrader import MassiveData
from massive_feeds.config import Settings
from massive_feeds.dividends import apply_dividends, dividends_frame, fetch_dividends
from massive_feeds.errors import CorporateActionError, InvalidInputError
from massive_feeds.fetch import fetch_data
from massive_feeds.sandbox import Sandbox
from massive_feeds.schema import BarQuery
from massive_feeds.splits import fetch_splits
from massive_feeds.store import ingest, load_store

FIRST, LAST = date(2024, 1, 2), date(2024, 4, 19)
WINDOW = ("2024-01-02", "2024-04-19")
EX1, EX2, SPLIT = "2024-01-10", "2024-04-10", "2024-01-31"
F1 = 1 - 0.0125 / 3.30  # hand-computed: cash / raw previous close
F2 = 1 - 0.125 / 26.88
PRICES = ["open", "high", "low", "close"]


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True) as sandbox:  # flat files generated on first use (all history)
        yield sandbox


@pytest.fixture(autouse=True)
def _reset(sb: Sandbox) -> Iterator[None]:
    yield
    sb.faults.reset()


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


def segment(df: pd.DataFrame, lo: str | None, hi: str | None) -> pd.DataFrame:
    """Rows with New York day in [lo, hi)."""
    day = df["timestamp"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d")
    keep = np.ones(len(df), bool)
    if lo:
        keep &= (day >= lo).to_numpy()
    if hi:
        keep &= (day < hi).to_numpy()
    return df[keep]


def ratio(total: pd.DataFrame, other: pd.DataFrame, lo: str | None, hi: str | None) -> float:
    """The one factor total = other × it over a segment (asserted constant across the segment and columns)."""
    a, b = segment(total, lo, hi), segment(other, lo, hi)
    r = a[PRICES].to_numpy() / b[PRICES].to_numpy()
    assert len(r) > 0 and np.allclose(r, r.flat[0], rtol=1e-12, atol=0)
    return float(r.flat[0])


# --- the value ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["Total", "dividends", "adjusted", 1, None, "true"])
def test_an_unknown_adjustment_is_refused_naming_the_valid_values(value: Any, settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match=r"use True or 'splits'.*'total'.*False or 'raw'"):
        BarQuery.build("INTC", *WINDOW, "1d", adjusted=value)
    with pytest.raises(InvalidInputError, match="Invalid adjusted"):
        fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=value, settings=settings)


@pytest.mark.parametrize(("value", "name"), [(True, "splits"), ("splits", "splits"), ("total", "total"),
                                             (False, "raw"), ("raw", "raw")])
def test_the_three_meanings_and_their_spellings(value: Any, name: str) -> None:
    query = BarQuery.build("INTC", *WINDOW, "1d", adjusted=value)
    assert query.adjustment == name and query.adjusted is (name != "raw") and query.total is (name == "total")


# --- hand-computed factors -------------------------------------------------------------------------
def test_raw_previous_closes_the_hand_numbers_use(settings: Settings) -> None:
    raw = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=False, settings=settings)
    assert segment(raw, "2024-01-09", EX1)["close"].tolist() == [3.30]
    assert segment(raw, "2024-04-09", EX2)["close"].tolist() == [26.88]


def test_two_ex_dates_and_a_split_give_the_hand_computed_factors(sb: Sandbox, settings: Settings) -> None:
    total = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    splits = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=True, settings=settings)
    raw = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=False, settings=settings)
    after = ratio(total, splits, EX2, None)  # every later dividend, up to today
    mid, before = ratio(total, splits, EX1, EX2), ratio(total, splits, None, EX1)
    # the service's factors are rounded to 6 decimals: its chain agrees with the hand numbers to ~1e-7
    assert mid / after == pytest.approx(F2, rel=2e-6) and before / mid == pytest.approx(F1, rel=2e-6)
    # the split changes nothing in the dividend factor, and the total series is the raw one × both
    assert ratio(total, splits, EX1, SPLIT) == ratio(total, splits, SPLIT, EX2)
    assert ratio(total, raw, None, EX1) == pytest.approx(10.0 * before, rel=1e-12)
    assert ratio(total, raw, EX2, None) == pytest.approx(after, rel=1e-12)
    # volumes and trade counts are untouched
    assert total["volume"].tolist() == splits["volume"].tolist()
    assert total["transactions"].tolist() == splits["transactions"].tolist()
    applied = {d["ex_date"]: d for d in total.attrs["dividends"]}
    assert applied[EX1]["cash_amount"] == 0.0125 and applied[EX1]["factor_source"] == "service"
    assert applied[EX1]["factor"] == pytest.approx(F1, rel=2e-6)
    assert total.attrs["adjustment"] == "total" and total.attrs["adjusted"] is True
    assert total.attrs["adjusted_as_of"] and total.attrs["dividends_as_of"]


def test_v3_fallback_computes_the_factors_from_the_raw_previous_closes(sb: Sandbox, settings: Settings) -> None:
    sb.faults.unanswered.add("/stocks/v1/")  # a server without the v1 endpoints: 404
    seen = len(sb.rest.requests)
    total = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    splits = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=True, settings=settings)
    mine = sb.rest.requests[seen:]
    paths = [r.path for r in mine]
    for kind in ("splits", "dividends"):
        asked = paths.index(f"/stocks/v1/{kind}")
        assert mine[asked].status == 404 and f"/v3/reference/{kind}" in paths[asked:]
    before, mid, after = (ratio(total, splits, None, EX1), ratio(total, splits, EX1, EX2),
                          ratio(total, splits, EX2, None))
    assert mid / after == pytest.approx(F2, rel=1e-12) and before / mid == pytest.approx(F1, rel=1e-12)
    applied = {d["ex_date"]: d for d in total.attrs["dividends"]}
    assert applied[EX1]["factor_source"] == "previous close" and applied[EX1]["prev_close"] == 3.30
    # the same series as from the service's factors, to their 6-decimal rounding
    sb.faults.reset()
    v1 = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total",
                    settings=sb.settings(home=settings.home / "other", plan="unlimited"))
    np.testing.assert_allclose(v1[PRICES].to_numpy(), total[PRICES].to_numpy(), rtol=2e-5)


def test_reference_lists_come_from_v1_with_their_source(sb: Sandbox, settings: Settings) -> None:
    divs = fetch_dividends("INTC", "2024-01-02", settings=settings)
    assert set(divs["source"]) == {"v1"} and divs["historical_adjustment_factor"].notna().all()
    assert sb.rest.count("/stocks/v1/dividends") >= 1
    sb.faults.unanswered.add("/stocks/v1/")
    old = fetch_dividends("INTC", "2024-01-02", settings=sb.settings(home=settings.home / "v3", plan="unlimited"))
    assert set(old["source"]) == {"v3"} and old["historical_adjustment_factor"].isna().all()
    assert old["cash_amount"].tolist() == divs["cash_amount"].tolist()
    splits = fetch_splits("INTC", "2024-01-02", settings=sb.settings(home=settings.home / "v3s", plan="unlimited"))
    assert splits[["split_from", "split_to"]].values.tolist() == [[10.0, 1.0]]


# --- every path ----------------------------------------------------------------------------------
def test_rest_flat_files_and_store_agree_on_total_return(sb: Sandbox, settings: Settings, tmp_path: Path) -> None:
    rest = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    flat = fetch_data("INTC", *WINDOW, "1d", "flat_file", adjusted="total", settings=settings)
    ingest("us_stocks_sip/day_aggs_v1", FIRST, LAST, ["INTC"], store=tmp_path / "store", settings=settings)
    store = load_store("INTC", *WINDOW, "1d", store=tmp_path / "store", adjusted="total", settings=settings)
    cols = ["timestamp", "symbol", *PRICES, "volume"]
    pd.testing.assert_frame_equal(rest[cols], flat[cols], rtol=1e-12)
    pd.testing.assert_frame_equal(rest[cols], store[cols], rtol=1e-12)
    assert rest.attrs["dividends"] == flat.attrs["dividends"] == store.attrs["dividends"]
    weeks_rest = fetch_data("INTC", *WINDOW, "1w", "rest", adjusted="total", settings=settings)
    weeks_flat = fetch_data("INTC", *WINDOW, "1w", "flat_file", adjusted="total", settings=settings)
    pd.testing.assert_frame_equal(weeks_rest[cols], weeks_flat[cols], rtol=1e-12)


def test_rest_and_flat_files_agree_on_minute_bars_across_an_ex_date(settings: Settings) -> None:
    span = ("2024-04-09", "2024-04-10")
    rest = fetch_data("INTC", *span, "15m", "rest", adjusted="total", settings=settings, session="regular")
    flat = fetch_data("INTC", *span, "15m", "flat_file", adjusted="total", settings=settings, session="regular")
    splits = fetch_data("INTC", *span, "15m", "rest", adjusted=True, settings=settings, session="regular")
    pd.testing.assert_frame_equal(rest[["timestamp", *PRICES]], flat[["timestamp", *PRICES]], rtol=1e-12)
    assert ratio(rest, splits, "2024-04-09", EX2) / ratio(rest, splits, EX2, None) == pytest.approx(F2, rel=2e-6)


# --- a strategy's return ---------------------------------------------------------------------------
class BuyAndHold(bt.Strategy):
    def next(self) -> None:
        if not self.position:
            self.buy(size=int(self.broker.getcash() / self.data.close[0] * 0.98))


def holding_return(settings: Settings, adjusted: str) -> float:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MassiveData(dataname="INTC", fromdate=FIRST, todate=LAST, timeframe=bt.TimeFrame.Days,
                                method="rest", adjusted=adjusted, settings=settings))
    cerebro.addstrategy(BuyAndHold)
    cerebro.broker.setcash(100_000.0)
    cerebro.run()
    return cerebro.broker.getvalue() / 100_000.0 - 1


def test_a_holder_earns_the_dividends_only_on_total_return(settings: Settings) -> None:
    total, splits = holding_return(settings, "total"), holding_return(settings, "splits")
    total_bars = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    split_bars = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=True, settings=settings)
    # bought at the second bar's open (after 2024-01-02), held past both ex-dates: the price return of the
    # total series exceeds the split-adjusted one by exactly the two dividends' factors
    entry_t, entry_s = total_bars["open"].iloc[1], split_bars["open"].iloc[1]
    exit_t, exit_s = total_bars["close"].iloc[-1], split_bars["close"].iloc[-1]
    assert (exit_t / entry_t) / (exit_s / entry_s) == pytest.approx(1 / (F1 * F2), rel=2e-6)
    assert total > splits
    assert (1 + total) == pytest.approx(1 + splits + 0.98 * (exit_t / entry_t - exit_s / entry_s), abs=2e-3)


# --- refused rather than applied ------------------------------------------------------------------
def bars_around(ex: str) -> pd.DataFrame:
    t = pd.to_datetime(["2024-04-08 04:00", "2024-04-09 04:00", "2024-04-10 04:00"], utc=True)
    return pd.DataFrame({"timestamp": t, "symbol": "INTC", "open": [27.0, 26.9, 26.7], "high": 27.2, "low": 26.5,
                         "close": [26.9, 26.88, 26.8], "volume": 1000.0, "vwap": 26.9, "transactions": 10})


def test_a_dividend_in_another_currency_is_refused() -> None:
    table = dividends_frame([{"ticker": "INTC", "ex_dividend_date": EX2, "cash_amount": 0.17, "currency": "CAD",
                              "historical_adjustment_factor": 0.9937, "distribution_type": "recurring"}])
    with pytest.raises(CorporateActionError, match="0.17 CAD.*not in USD") as err:
        apply_dividends(bars_around(EX2), table, today=date(2024, 5, 1))
    assert err.value.ticker == "INTC" and err.value.ex_date == EX2 and err.value.currency == "CAD"


def test_special_and_regular_on_one_ex_date_both_apply_and_a_repeat_once() -> None:
    rows = [{"ticker": "INTC", "ex_dividend_date": EX2, "cash_amount": 0.125, "currency": "USD",
             "distribution_type": "recurring"},
            {"ticker": "INTC", "ex_dividend_date": EX2, "cash_amount": 1.0, "currency": "USD",
             "distribution_type": "special"}]
    table = dividends_frame(rows + rows[:1])  # the regular one listed twice
    assert len(table) == 2
    table["prev_close"] = 26.88
    out = apply_dividends(bars_around(EX2), table, today=date(2024, 5, 1))
    f = (1 - 0.125 / 26.88) * (1 - 1.0 / 26.88)
    assert out["close"].tolist() == pytest.approx([26.9 * f, 26.88 * f, 26.8], rel=1e-12)
    assert [d["distribution_type"] for d in out.attrs["dividends"]] == ["recurring", "special"]
    future = apply_dividends(bars_around(EX2), table, today=date(2024, 4, 9))  # not gone ex yet
    assert future["close"].tolist() == [26.9, 26.88, 26.8] and future.attrs["dividends"] == []


# --- real payloads (tests/fixtures/real/PROVENANCE.md) ----------------------------------------------
REAL = Path(__file__).parent / "fixtures" / "real" / "rest"


def real(name: str) -> dict[str, Any]:
    import json

    return json.loads((REAL / name).read_text())


def test_real_v1_dividend_row_parses_and_applies_the_service_factor() -> None:
    table = dividends_frame(real("dividends_v1_spec_example.json")["results"])
    row = table.iloc[0]
    assert (row["ticker"], row["ex_dividend_date"], row["cash_amount"], row["currency"]) == \
        ("AAPL", pd.Timestamp("2025-08-11"), 0.26, "USD")
    assert (row["distribution_type"], row["frequency"], row["historical_adjustment_factor"]) == \
        ("recurring", 4.0, 0.997899)
    t = pd.to_datetime(["2025-08-08 04:00", "2025-08-11 04:00"], utc=True)
    bars = pd.DataFrame({"timestamp": t, "symbol": "AAPL", "open": [220.0, 229.0], "high": 230.0, "low": 219.0,
                         "close": [229.35, 228.0], "volume": 5.0, "vwap": 225.0, "transactions": 3})
    out = apply_dividends(bars, table, today=date(2025, 9, 1))
    # the one dividend's own factor is the service's number (the last in its chain): the bar before × 0.997899
    assert out["close"].tolist() == [229.35 * 0.997899, 228.0] and out["volume"].tolist() == [5.0, 5.0]
    assert out.attrs["dividends"][0]["prev_close"] == pytest.approx(0.26 / (1 - 0.997899), abs=1e-4)  # 123.7506
    assert out.attrs["dividends"][0]["dropped"] is True  # 229.0 open < 229.35 close


def test_real_v3_rows_parse_without_currency_or_id() -> None:
    mock = dividends_frame(real("dividends_v3.json")["results"])
    assert len(mock) == 10 and set(mock["ticker"]) == {"CSSEN", "AIRTP"}
    assert set(mock["currency"]) == {""} and set(mock["id"]) == {""}  # the mock has neither: taken as USD
    assert set(mock["distribution_type"]) == {"recurring"} and set(mock["dividend_type"]) == {"CD"}
    assert mock["historical_adjustment_factor"].isna().all()
    assert mock.iloc[0]["ex_dividend_date"] == pd.Timestamp("2023-08-11")  # sorted by ticker, then date
    spec = dividends_frame(real("dividends_v3_spec_example.json")["results"])
    assert spec["cash_amount"].tolist() == [0.22, 0.22] and spec["id"].str.startswith("E").all()


def test_real_v1_split_row_parses() -> None:
    from massive_feeds.splits import splits_frame

    table = splits_frame(real("splits_v1_spec_example.json")["results"])
    assert table[["ticker", "split_from", "split_to"]].values.tolist() == [["AAPL", 1.0, 2.0]]
    assert table.iloc[0]["execution_date"] == pd.Timestamp("2005-02-28")


def _form(value: Any) -> str:
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


@pytest.mark.parametrize(("path", "fixture"), [("/stocks/v1/dividends", "dividends_v1_spec_example.json"),
                                               ("/stocks/v1/splits", "splits_v1_spec_example.json"),
                                               ("/v3/reference/dividends", "dividends_v3_spec_example.json")])
def test_sandbox_corporate_actions_have_the_real_forms(sb: Sandbox, path: str, fixture: str) -> None:
    import requests

    want = real(fixture)["results"][0]
    params = {"ticker": "KO", "limit": 3} if "dividends" in path else {"ticker": "INTC"}
    got = requests.get(f"{sb.rest.url}{path}", params=params, headers={"Authorization": f"Bearer {sb.api_key}"},
                       timeout=30).json()
    assert got["status"] == "OK" and got["results"]
    for row in got["results"]:
        assert set(row) == set(want) | ({"currency"} if path.startswith("/v3") else set())
        assert {k: _form(v) for k, v in row.items() if k in want} == {k: _form(v) for k, v in want.items()}


# --- datasets, quality, the CLI, vectorbt, a quota that is gone ---------------------------------------------
def test_datasets_convert_to_and_from_total_return(sb: Sandbox, settings: Settings) -> None:
    from massive_feeds.datasets import load_dataset, save_dataset

    total = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    splits = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=True, settings=settings)
    raw = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=False, settings=settings)
    cols = ["timestamp", *PRICES, "volume"]
    save_dataset(raw, "intc_raw", settings=settings)
    from_raw = load_dataset("intc_raw", settings=settings, adjusted="total")
    pd.testing.assert_frame_equal(from_raw[cols], total[cols], rtol=1e-12)
    assert from_raw.attrs["adjustment"] == "total" and len(from_raw.attrs["dividends"]) == len(total.attrs["dividends"])
    save_dataset(total, "intc_total", settings=settings)
    stored = load_dataset("intc_total", settings=settings)  # as stored, with what was applied
    assert stored.attrs["adjustment"] == "total" and stored.attrs["dividends"] == total.attrs["dividends"]
    pd.testing.assert_frame_equal(load_dataset("intc_total", settings=settings, adjusted=False)[cols], raw[cols],
                                  rtol=1e-12)
    pd.testing.assert_frame_equal(load_dataset("intc_total", settings=settings, adjusted="splits")[cols],
                                  splits[cols], rtol=1e-12)
    with pytest.raises(InvalidInputError, match="holds total prices and the new bars are splits"):
        save_dataset(splits, "intc_total", settings=settings, append=True)
    with pytest.raises(InvalidInputError, match="Invalid adjusted='dividends'"):
        load_dataset("intc_raw", settings=settings, adjusted="dividends")


def test_quality_shows_the_dividends_applied_and_flags_an_ex_date_without_a_drop(settings: Settings) -> None:
    from massive_feeds.quality import format_quality_report, quality_report

    total = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    report = quality_report(total)
    on = report.set_index(report["date"].astype(str))["dividend"]
    assert on[EX1].startswith("0.0125 USD recurring ex 2024-01-10, factor 0.996212 (service)")
    assert on[EX2].startswith("0.125 USD recurring ex 2024-04-10, factor 0.995350 (service)")
    assert (on.drop([EX1, EX2]) == "").all() and "dividend_no_drop" not in "".join(report["issues"])
    assert report.attrs["notes"][0].startswith("Total-return prices (adjusted='total')")
    assert "INTC 2024-01-10 0.0125 x0.996212" in report.attrs["notes"][0]
    text = format_quality_report(report)
    assert "prices total-return (splits and dividends)" in text and "dividend 0.125 USD" in text
    # a 2 % dividend whose ex-date opens above the previous close: the record is suspect
    bars = bars_around(EX2).assign(open=[27.0, 26.9, 27.1], high=27.3)
    table = dividends_frame([{"ticker": "INTC", "ex_dividend_date": EX2, "cash_amount": 0.54, "currency": "USD",
                              "historical_adjustment_factor": 0.979911, "distribution_type": "special"}])
    flagged = quality_report(apply_dividends(bars, table, today=date(2024, 5, 1)))
    row = flagged[flagged["date"].astype(str) == EX2].iloc[0]
    assert "raw price did NOT drop (open 27.1 vs previous close 26.88)" in row["dividend"]
    assert row["status"] == "warn" and "dividend_no_drop" in row["issues"]


def test_cli_fetch_adjusted_total_and_a_bad_value(sb: Sandbox, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**sb.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_FEEDS_HOME": str(tmp_path / "home"),
           "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, "-m", "massive_feeds.cli", "fetch", "INTC", "--start", WINDOW[0],
                               "--end", WINDOW[1], "--interval", "1d", "--method", "rest", *args],
                              capture_output=True, text=True, env={**os.environ, **env}, timeout=180)

    ok = cli("--adjusted", "total", "--dataset", "intc_cli")
    assert ok.returncode == 0, ok.stderr
    assert "total-return prices: 12 dividend(s) applied" in ok.stderr
    bad = cli("--adjusted", "dividends")
    assert bad.returncode == 2 and "Invalid adjusted='dividends'" in bad.stderr and "Traceback" not in bad.stderr
    both = cli("--adjusted", "total", "--unadjusted")
    assert both.returncode == 2 and "--unadjusted contradicts --adjusted total" in both.stderr


def test_vectorbt_download_total_return(settings: Settings) -> None:
    pytest.importorskip("vectorbt")
    from massive_feeds.vectorbt import MassiveData as VbtData

    total = VbtData.download("INTC", *WINDOW, timeframe="1d", method="rest", adjusted="total", settings=settings)
    splits = VbtData.download("INTC", *WINDOW, timeframe="1d", method="rest", adjusted=True, settings=settings)
    r = (total.get("Close") / splits.get("Close")).to_numpy()
    assert r[0] / r[-1] == pytest.approx(F1 * F2, rel=2e-6)
    with pytest.raises(InvalidInputError, match="Invalid adjusted"):
        VbtData.download("INTC", *WINDOW, timeframe="1d", method="rest", adjusted="yes", settings=settings)


def test_a_cached_dividends_table_is_used_with_its_age_when_the_quota_is_gone(sb: Sandbox, tmp_path: Path) -> None:
    import os
    import time

    from massive_feeds.config import Plan, load_settings
    from massive_feeds.dividends import DIVIDENDS_KIND
    from massive_feeds.quota import quota_status
    from massive_feeds.splits import splits_cache_dir

    home = tmp_path / "home"
    s = load_settings(environ=sb.env(), home=home, datasets_dir=home / "ds", plan=Plan("tiny", None, 4, None, None, None))
    first = fetch_data("INTC", *WINDOW, "1d", "flat_file", adjusted="total", settings=s)  # splits + dividends: 2 calls
    for path in splits_cache_dir(s, DIVIDENDS_KIND.name).glob("*.parquet"):
        os.utime(path, (time.time() - 30 * 3600,) * 2)  # a day and more old: due for a refresh
    for day in ("2024-01-10", "2024-01-11"):
        fetch_data("KO", day, day, "1d", "rest", settings=s)  # spend the rest of the day's calls
    assert quota_status(s).rest_remaining_today == 0
    before = sb.rest.count("/stocks/v1/dividends")
    again = fetch_data("INTC", *WINDOW, "1d", "flat_file", adjusted="total", settings=s)
    assert sb.rest.count("/stocks/v1/dividends") == before  # no call at all
    assert again.attrs["dividends_age_hours"] >= 30 and again.attrs["dividends_as_of"] < first.attrs["dividends_as_of"]
    pd.testing.assert_frame_equal(again[["timestamp", *PRICES]], first[["timestamp", *PRICES]])


def test_v3_previous_closes_are_cached_so_a_run_with_the_quota_gone_needs_no_call(sb: Sandbox, tmp_path: Path) -> None:
    import shutil

    from massive_feeds.config import Plan, load_settings
    from massive_feeds.dividends import PREV_CLOSES_KIND
    from massive_feeds.errors import QuotaExceededError
    from massive_feeds.quota import quota_status
    from massive_feeds.splits import splits_cache_dir

    sb.faults.unanswered.add("/stocks/v1/")  # the v3 fallback: no service factors, closes read from /v2/aggs
    home = tmp_path / "home"
    s = load_settings(environ=sb.env(), home=home, datasets_dir=home / "ds",
                      plan=Plan("tiny", None, 12, None, None, None))
    closes = "/v2/aggs/ticker/INTC/range/1/day/"
    before = sb.rest.count(closes)
    first = fetch_data("INTC", *WINDOW, "1d", "flat_file", adjusted="total", settings=s)
    assert sb.rest.count(closes) == before + 1  # flat-file bars: the one REST day-bar call is the closes'
    applied = {d["ex_date"]: d for d in first.attrs["dividends"]}
    assert applied[EX1]["factor_source"] == "previous close" and applied[EX1]["prev_close"] == 3.30
    left = quota_status(s).rest_remaining_today
    assert left is not None and 0 < left <= 12  # no market holiday in the first 12 weekdays of February 2024
    for day in pd.bdate_range("2024-02-01", periods=left).strftime("%Y-%m-%d"):
        fetch_data("KO", day, day, "1d", "rest", adjusted=False, settings=s)  # spend the rest of the day's calls
    assert quota_status(s).rest_remaining_today == 0
    again = fetch_data("INTC", *WINDOW, "1d", "flat_file", adjusted="total", settings=s)
    assert sb.rest.count(closes) == before + 1  # the closes came from the cache: no call
    pd.testing.assert_frame_equal(again[["timestamp", *PRICES]], first[["timestamp", *PRICES]])
    # without the cache and without calls left: the typed error names what is missing
    shutil.rmtree(splits_cache_dir(s, PREV_CLOSES_KIND))
    with pytest.raises(QuotaExceededError, match=r"no cached previous close covers INTC ex 2024-01-10, "):
        fetch_data("INTC", *WINDOW, "1d", "flat_file", adjusted="total", settings=s)


def test_a_special_dividend_applies_like_a_regular_one_on_both_endpoints(sb: Sandbox, settings: Settings) -> None:
    span = ("2024-02-14", "2024-02-27")  # XOM pays a one-off 2.00 (v1 "special", v3 "SC") on 2024-02-21
    raw = fetch_data("XOM", *span, "1d", "rest", adjusted=False, settings=settings)
    assert segment(raw, "2024-02-20", "2024-02-21")["close"].tolist() == [124.10]
    hand = 1 - 2.0 / 124.10
    total = fetch_data("XOM", *span, "1d", "rest", adjusted="total", settings=settings)
    splits = fetch_data("XOM", *span, "1d", "rest", adjusted=True, settings=settings)
    assert ratio(total, splits, None, "2024-02-21") / ratio(total, splits, "2024-02-21", None) == \
        pytest.approx(hand, rel=2e-6)
    special = next(d for d in total.attrs["dividends"] if d["ex_date"] == "2024-02-21")
    assert (special["distribution_type"], special["cash_amount"], special["dropped"], special["material"]) == \
        ("special", 2.0, True, True)
    sb.faults.unanswered.add("/stocks/v1/")
    old = fetch_data("XOM", *span, "1d", "rest", adjusted="total",
                     settings=sb.settings(home=settings.home / "v3", plan="unlimited"))
    special = next(d for d in old.attrs["dividends"] if d["ex_date"] == "2024-02-21")
    assert special["distribution_type"] == "special" and special["factor"] == pytest.approx(hand, rel=1e-8)


# --- Backtrader and vectorbt on a dataset: adjusted= converts on read ----------------------------------
def dataset_holding_return(settings: Settings, name: str, adjusted: str | None) -> float:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(MassiveData(dataset=name, adjusted=adjusted, settings=settings))
    cerebro.addstrategy(BuyAndHold)
    cerebro.broker.setcash(100_000.0)
    cerebro.run()
    return cerebro.broker.getvalue() / 100_000.0 - 1


def test_backtrader_and_vectorbt_datasets_follow_adjusted(settings: Settings) -> None:
    from massive_feeds.datasets import save_dataset
    from massive_feeds.vectorbt import MassiveData as VbtData

    raw = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=False, settings=settings)
    total_bars = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    split_bars = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=True, settings=settings)
    save_dataset(raw, "intc_raw_bt", settings=settings)
    total = dataset_holding_return(settings, "intc_raw_bt", "total")
    splits = dataset_holding_return(settings, "intc_raw_bt", "splits")
    # the same buy-and-hold as on fetched bars: entry at the second bar's open, the total series' price return
    # exceeds the split-adjusted one by 1 / (F1 × F2), and the position is 98 % of the cash
    entry_t, entry_s = total_bars["open"].iloc[1], split_bars["open"].iloc[1]
    exit_t, exit_s = total_bars["close"].iloc[-1], split_bars["close"].iloc[-1]
    assert (exit_t / entry_t) / (exit_s / entry_s) == pytest.approx(1 / (F1 * F2), rel=2e-6)
    assert (1 + total) == pytest.approx(1 + splits + 0.98 * (exit_t / entry_t - exit_s / entry_s), abs=2e-3)
    assert total - splits > 0.005  # the two dividends: about 0.38 % + 0.47 %
    assert total == pytest.approx(holding_return(settings, "total"), abs=1e-9)
    # unset, the dataset's prices are used as stored (raw here: the reverse split is a tenfold jump)
    as_stored = dataset_holding_return(settings, "intc_raw_bt", None)
    assert as_stored > 5
    vbt_total = VbtData.from_dataset("intc_raw_bt", settings=settings, adjusted="total").get("Close")
    assert vbt_total.to_numpy() == pytest.approx(total_bars["close"].to_numpy(), rel=1e-12)
    with pytest.raises(InvalidInputError, match="Invalid adjusted='dividends'"):
        dataset_holding_return(settings, "intc_raw_bt", "dividends")


def test_raw_bars_append_to_a_total_return_dataset_converted(settings: Settings) -> None:
    from massive_feeds.datasets import adjusted_like, dataset_info, load_dataset, save_dataset

    total = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted="total", settings=settings)
    raw = fetch_data("INTC", *WINDOW, "1d", "rest", adjusted=False, settings=settings)
    cols = ["timestamp", *PRICES, "volume"]
    before, after = segment(total, None, "2024-03-01"), segment(raw, "2024-03-01", None)
    save_dataset(before, "intc_total_part", settings=settings)
    info = dataset_info(settings.datasets_dir / "intc_total_part.parquet")
    # raw bars older than the dataset's day, across the second ex-date: split-adjusted (no split after
    # 2024-01-31) and × F2 before 2024-04-10, i.e. the total series' numbers
    converted = adjusted_like(after.reset_index(drop=True), info, settings)
    assert converted.attrs["adjustment"] == "total"
    assert sorted(d["ex_date"] for d in converted.attrs["dividends"])[0] == EX2  # EX1 is before these bars
    later = ratio(converted, after, EX2, None)  # the dividends after the window, on every bar
    assert ratio(converted, after, "2024-03-01", EX2) / later == pytest.approx(F2, rel=2e-6)
    save_dataset(converted, "intc_total_part", append=True, settings=settings)
    out = load_dataset("intc_total_part", settings=settings)
    pd.testing.assert_frame_equal(out[cols].reset_index(drop=True), total[cols].reset_index(drop=True), rtol=1e-12)
    assert out.attrs["adjustment"] == "total"
    assert sorted(d["ex_date"] for d in out.attrs["dividends"])[:2] == [EX1, EX2]


def test_a_sandbox_dividend_in_another_currency_refuses_total_end_to_end(sb: Sandbox, settings: Settings) -> None:
    span = ("2024-03-04", "2024-03-15")  # the sandbox's NFLX lists one 0.50 CAD dividend, ex 2024-03-12
    listed = fetch_dividends("NFLX", "2024-01-02", settings=settings)
    assert listed[["ex_dividend_date", "cash_amount", "currency"]].astype(str).values.tolist() == \
        [["2024-03-12", "0.5", "CAD"]]
    for method in ("rest", "flat_file"):
        with pytest.raises(CorporateActionError, match=r"^NFLX's dividend of 0\.5 CAD \(ex-date 2024-03-12\) is not "
                                                       r"in USD, the currency of its prices") as err:
            fetch_data("NFLX", *span, "1d", method, adjusted="total", settings=settings)
        assert (err.value.ticker, err.value.ex_date, err.value.currency) == ("NFLX", "2024-03-12", "CAD")
    sb.faults.unanswered.add("/stocks/v1/")  # the v3 rows carry the currency too
    with pytest.raises(CorporateActionError, match=r"^NFLX's dividend of 0\.5 CAD"):
        fetch_data("NFLX", *span, "1d", "rest", adjusted="total",
                   settings=sb.settings(home=settings.home / "v3", plan="unlimited"))
    sb.faults.reset()
    splits = fetch_data("NFLX", *span, "1d", "rest", adjusted="splits", settings=settings)
    raw = fetch_data("NFLX", *span, "1d", "rest", adjusted=False, settings=settings)
    assert len(splits) == 10 and splits.attrs["adjustment"] == "splits"
    pd.testing.assert_frame_equal(splits[["timestamp", *PRICES]], raw[["timestamp", *PRICES]])  # NFLX never split
    with pytest.raises(CorporateActionError, match="NFLX's dividend of 0.5 CAD"):  # the Backtrader path too
        holding = bt.Cerebro(stdstats=False)
        holding.adddata(MassiveData(dataname="NFLX", fromdate=date(2024, 3, 4), todate=date(2024, 3, 15),
                                    timeframe=bt.TimeFrame.Days, method="rest", adjusted="total", settings=settings))
        holding.run()
