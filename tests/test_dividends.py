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
    with Sandbox(rest=True, s3=True, s3_days=(FIRST, LAST)) as sandbox:
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
