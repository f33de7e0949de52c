"""The Auto rule for futures, at its boundaries, over the sandbox's REST and S3: the same rule as for the other
classes (at most 5 symbols and 7 calendar days over REST, else flat files), for contracts and continuous series."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from massive_feeds import fetch_data
from massive_feeds.sandbox import Sandbox

CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)
COLUMNS = ["timestamp", "symbol", "open", "high", "low", "close", "volume", "transactions"]


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    pytest.importorskip("moto")
    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as box:
        yield box


@pytest.mark.parametrize("ticker", ["ESZ6", "ES.c.0"])
def test_seven_days_go_over_rest_and_eight_over_flat_files(sb: Sandbox, ticker: str) -> None:
    # Mon 11-02 .. Sun 11-08 is 7 calendar days (5 sessions); to Mon 11-09 it is 8 (6 sessions)
    week = fetch_data(ticker, "2026-11-02", "2026-11-08", "1d", settings=sb.settings())
    longer = fetch_data(ticker, "2026-11-02", "2026-11-09", "1d", settings=sb.settings())
    assert week.attrs["method"] == "rest" and longer.attrs["method"] == "flat_file"
    assert week["session_end_date"].tolist() == ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05",
                                                 "2026-11-06"]
    assert longer["session_end_date"].tolist()[-1] == "2026-11-09" and len(longer) == 6
    # the two sources give the same sessions
    pd.testing.assert_frame_equal(longer[COLUMNS].iloc[:5], week[COLUMNS])


def test_five_contracts_go_over_rest_and_six_over_flat_files(sb: Sandbox) -> None:
    five = ["ESZ6", "ESH7", "ESM7", "ESU7", "GCZ6"]
    few = fetch_data(five, "2026-11-05", "2026-11-05", "1d", settings=sb.settings())
    many = fetch_data(five + ["GCH7"], "2026-11-05", "2026-11-05", "1d", settings=sb.settings())
    assert few.attrs["method"] == "rest" and many.attrs["method"] == "flat_file"
    assert sorted(many["symbol"]) == sorted(five + ["GCH7"])
    pd.testing.assert_frame_equal(many.loc[many["symbol"] != "GCH7", COLUMNS].reset_index(drop=True),
                                  few[COLUMNS].reset_index(drop=True))


def test_a_contract_not_yet_listed_is_named_empty_on_both_paths(sb: Sandbox) -> None:
    # ESZ7 is not listed on 2026-11-05 (the sandbox lists four quarters ahead): an empty page, not an error
    for tickers in (["ESZ6", "ESZ7"], ["ESZ6", "ESH7", "ESM7", "ESU7", "GCZ6", "ESZ7"]):
        got = fetch_data(tickers, "2026-11-05", "2026-11-05", "1d", settings=sb.settings())
        assert got.attrs["empty_symbols"] == ["ESZ7"] and "ESZ7" not in set(got["symbol"])
        assert len(got) == len(tickers) - 1


def test_a_two_digit_year_reads_the_files_that_write_one_digit(sb: Sandbox) -> None:
    # Massive writes ESZ6 and ESZ26 for one contract; the sandbox's day files write ESZ6
    one = fetch_data("ESZ6", "2026-11-02", "2026-11-09", "1d", method="flat_file", settings=sb.settings())
    two = fetch_data("ESZ26", "2026-11-02", "2026-11-09", "1d", method="flat_file", settings=sb.settings())
    assert set(two["symbol"]) == {"ESZ26"} and len(two) == 6 and two.attrs["empty_symbols"] == []
    pd.testing.assert_frame_equal(two.drop(columns="symbol"), one.drop(columns="symbol"))
    from massive_feeds import fetch_ticks

    ticks = fetch_ticks("ESZ26", "2026-11-04", "2026-11-04", kind="trades", method="flat_file",
                        settings=sb.settings(plan="unlimited"))
    assert len(ticks) == 1380 and set(ticks["symbol"]) == {"ESZ26"}


def test_a_query_inside_a_window_already_listed_makes_no_contracts_call(sb: Sandbox) -> None:
    from massive_feeds.runtime import Runtime

    settings = sb.settings(plan="unlimited")
    with Runtime():
        before = sb.rest.count("/futures/v1/contracts")
        wide = fetch_data("ES.c.0", "2026-09-08", "2026-09-30", "1d", method="rest", settings=settings)
        inner = fetch_data("ES.c.1", "2026-09-14", "2026-09-25", "1d", method="rest", settings=settings)
        assert sb.rest.count("/futures/v1/contracts") - before == 1  # the second is inside the first's listing
    with Runtime():  # a fresh process lists the inner window itself: the same contracts held
        alone = fetch_data("ES.c.1", "2026-09-14", "2026-09-25", "1d", method="rest", settings=settings)
        assert sb.rest.count("/futures/v1/contracts") - before == 2
    assert inner["contract"].tolist() == alone["contract"].tolist() == ["ESZ6"] * 5 + ["ESH7"] * 5
    assert inner["close"].tolist() == alone["close"].tolist() and len(wide) == 17
