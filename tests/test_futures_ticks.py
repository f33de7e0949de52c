"""Futures tick history from the ``us_futures_*`` ``trades_v1`` / ``quotes_v1`` flat files: the real headers
(``tests/fixtures/real/flatfiles/futures_*_header.csv``, see PROVENANCE.md) read with hand-computed numbers, and the
sandbox's day files over real sockets: REST and flat files agree row for row, the Auto boundary, session days
(a file is named by its session's trade date), the history store, and the typed failures."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from massive_feeds import fetch_data, fetch_ticks
from massive_feeds.config import Settings
from massive_feeds.errors import CorruptFileError, InvalidInputError, NoDataError
from massive_feeds.flatfiles.ticks import stream_filter, table_to_ticks
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.futures import TICK_COLUMNS
from massive_feeds.store import ingest
from massive_feeds.tickschema import TICK_COLUMNS as SCHEMA_COLUMNS
from massive_feeds.tickschema import TickQuery

REAL = Path(__file__).parent / "fixtures" / "real" / "flatfiles"
CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)
KEY = "us_futures_cme/{kind}_v1/2026/11/{day}.csv.gz"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(s3=True, clock_start=CLOCK, clock_speed=0.001) as box:
        yield box


@pytest.fixture
def s(sb: Sandbox, tmp_path: Path) -> Settings:
    """The sandbox on a paid plan (no REST rate limit) with a home (caches, quota) of the test's own."""
    return sb.settings(home=tmp_path / "home", plan="unlimited")


def _header(name: str) -> str:
    return (REAL / name).read_text().strip()


# --- the real headers, rows written by hand ------------------------------------------------------------
def test_sandbox_tick_files_use_the_real_headers() -> None:
    assert ",".join(TICK_COLUMNS["trades"]) == _header("futures_trades_header.csv")
    assert ",".join(TICK_COLUMNS["quotes"]) == _header("futures_quotes_header.csv")


def _read(kind: str, rows: list[str], tickers: dict[str, str]) -> pd.DataFrame:
    header = _header(f"futures_{kind}_header.csv")
    body = gzip.compress(("\n".join([header, *rows]) + "\n").encode())
    key = KEY.format(kind=kind, day="2026-11-02")
    return table_to_ticks(stream_filter([body[:20], body[20:]], tickers, kind, key), kind)


def test_a_trades_file_under_the_real_header_reads_to_the_rest_columns() -> None:
    # 1793574056000000000 ns = 2026-11-01 23:00:56 UTC (Sunday 17:00:56 Chicago: the session of Monday 11-02)
    df = _read("trades", ["ESH7,1793574060000000000,9893901,9893901,5190.5,3,0,1,2026-11-02",
                          "ESZ6,1793574056000000000,9893900,9893900,5167.25,33,0,1,2026-11-02",
                          "ESZ6,1793574116000000000,9893901,9893901,5166,23,0,1,2026-11-02"], {"ESZ6": "ESZ6"})
    assert list(df.columns) == list(SCHEMA_COLUMNS)
    assert df["timestamp"].tolist() == [pd.Timestamp("2026-11-01 23:00:56", tz="UTC"),
                                        pd.Timestamp("2026-11-01 23:01:56", tz="UTC")]
    assert df["price"].tolist() == [5167.25, 5166.0] and df["size"].tolist() == [33.0, 23.0]
    assert df["sequence_number"].tolist() == [9893900, 9893901]
    assert df["kind"].tolist() == ["trade", "trade"] and df["bid"].isna().all()
    assert df["exchange"].tolist() == [0, 0]  # REST gives no exchange: both paths leave it 0


def test_a_one_sided_quote_has_nan_on_its_empty_side() -> None:
    df = _read("quotes", ["GCZ6,1793574056000000000,12,12,1793574055000000000,2650.1,4,,,,4,2026-11-02",
                          "GCZ6,1793574057000000000,13,13,1793574055000000000,2650.1,4,1793574057000000000,2649.9,2,"
                          "4,2026-11-02"], {"GCZ6": "GCZ6"})
    assert df["ask"].tolist() == [2650.1, 2650.1]
    assert df["bid"].isna().tolist() == [True, False] and df["bid"].iloc[1] == 2649.9
    assert df["bid_size"].iloc[1] == 2.0 and df["ask_size"].tolist() == [4.0, 4.0]
    assert round(df["ask"].iloc[1] - df["bid"].iloc[1], 2) == 0.2  # two gold ticks


def test_a_futures_file_without_its_time_column_is_corrupt() -> None:
    body = gzip.compress(b"ticker,sip_timestamp,price,size\nESZ6,1,5000,1\n")
    with pytest.raises(CorruptFileError, match="lacks timestamp"):
        stream_filter([body], {"ESZ6": "ESZ6"}, "trades", KEY.format(kind="trades", day="2026-11-02"))


# --- the sandbox: REST and flat files ---------------------------------------------------------------
def test_rest_and_flat_files_agree_row_for_row(sb: Sandbox, s: Settings) -> None:
    before = sb.s3.count("GET", "us_futures_cme/trades_v1/", objects_only=True)
    rest = fetch_ticks("ESZ6", "2026-11-02", "2026-11-03", kind=["trades", "quotes"], method="rest", settings=s)
    flat = fetch_ticks("ESZ6", "2026-11-02", "2026-11-03", kind=["trades", "quotes"], method="flat_file",
                       settings=s)
    assert sb.s3.count("GET", "us_futures_cme/trades_v1/", objects_only=True) == before + 2  # one file per session
    assert (rest.attrs["method"], flat.attrs["method"]) == ("rest", "flat_file")
    pd.testing.assert_frame_equal(rest, flat)
    assert len(flat) == 2 * 2 * 1380  # two sessions of 1,380 minutes, a print and a quote each
    trades = flat[flat["kind"] == "trade"]
    # a date means the session settling that day: the first print is Sunday evening (17:00:56 Chicago, CST)
    assert trades["timestamp"].iloc[0] == pd.Timestamp("2026-11-01 23:00:56", tz="UTC")
    assert trades["timestamp"].iloc[-1] == pd.Timestamp("2026-11-03 21:59:56", tz="UTC")  # 15:59:56 Chicago


def test_an_evening_trade_is_in_the_next_days_file(sb: Sandbox, s: Settings) -> None:
    # Tuesday 2026-11-03 17:00-17:03 Chicago (23:00-23:03 UTC): the session that settles Wednesday 11-04
    q = TickQuery.build("ESZ6", "2026-11-03T23:00:00Z", "2026-11-03T23:02:59Z", "trades")
    assert (q.range.first_day, q.range.last_day) == (date(2026, 11, 4), date(2026, 11, 4))
    before = {d: sb.s3.count("GET", KEY.format(kind="trades", day=d), objects_only=True)
              for d in ("2026-11-03", "2026-11-04")}
    flat = fetch_ticks(q, method="flat_file", settings=s)
    assert sb.s3.count("GET", KEY.format(kind="trades", day="2026-11-04"), objects_only=True) == \
        before["2026-11-04"] + 1
    assert sb.s3.count("GET", KEY.format(kind="trades", day="2026-11-03"), objects_only=True) == \
        before["2026-11-03"]
    assert flat["timestamp"].tolist() == [pd.Timestamp(f"2026-11-03 23:0{m}:56", tz="UTC") for m in range(3)]
    pd.testing.assert_frame_equal(fetch_ticks(q, method="rest", settings=s), flat)


def test_a_date_query_starts_the_evening_before(s: Settings) -> None:
    ticks = fetch_ticks("ESZ6", "2026-11-04", "2026-11-04", kind="trades", method="flat_file", settings=s)
    assert len(ticks) == 1380
    assert ticks["timestamp"].iloc[0] == pd.Timestamp("2026-11-03 23:00:56", tz="UTC")
    assert ticks.attrs["start"] == "2026-11-03T23:00:00+00:00" and ticks.attrs["end"] == "2026-11-04T23:00:00+00:00"


def test_auto_sends_five_symbol_days_to_rest_and_six_to_flat_files(sb: Sandbox, s: Settings) -> None:
    five = fetch_ticks("ESZ6", "2026-11-09", "2026-11-13", kind="trades", settings=s)  # Mon..Fri
    assert five.attrs["method"] == "rest"
    assert five.attrs["method_reason"] == "1 symbol(s) × 5 day(s): few symbol-days → REST"
    six = fetch_ticks("ESZ6", "2026-11-09", "2026-11-14", kind="trades", settings=s)  # .. Saturday: no session
    assert six.attrs["method"] == "flat_file"
    assert six.attrs["method_reason"] == "1 symbol(s) × 6 day(s): bulk → flat files"
    assert six.attrs["missing_days"] == [] and six.attrs["closed_days"] == ["2026-11-14"]  # a Saturday: closed
    pd.testing.assert_frame_equal(five, six)  # same five sessions, whichever way
    assert len(five) == 5 * 1380
    two = fetch_ticks(["ESZ6", "ESH7"], "2026-11-09", "2026-11-11", kind="trades", settings=s)  # 2 × 3 = 6
    assert two.attrs["method"] == "flat_file" and set(two["symbol"]) == {"ESZ6", "ESH7"}


def test_gold_reads_the_comex_files(sb: Sandbox, s: Settings) -> None:
    before = sb.s3.count("GET", "us_futures_comex/quotes_v1/2026/11/2026-11-05", objects_only=True)
    flat = fetch_ticks("GCZ6", "2026-11-05", "2026-11-05", kind="quotes", method="flat_file", settings=s)
    assert sb.s3.count("GET", "us_futures_comex/quotes_v1/2026/11/2026-11-05", objects_only=True) == before + 1
    pd.testing.assert_frame_equal(fetch_ticks("GCZ6", "2026-11-05", "2026-11-05", kind="quotes", method="rest",
                                              settings=s), flat)
    assert (flat["ask"] - flat["bid"]).round(2).unique().tolist() == [0.1]


# --- right or loud ------------------------------------------------------------------------------------
def test_futures_beside_stocks_each_take_their_own_days(s: Settings) -> None:
    mixed = fetch_ticks(["ESZ6", "AAPL"], "2026-11-03", "2026-11-03", kind="trades", settings=s)
    es = fetch_ticks("ESZ6", "2026-11-03", "2026-11-03", kind="trades", settings=s)
    aapl = fetch_ticks("AAPL", "2026-11-03", "2026-11-03", kind="trades", settings=s)
    pd.testing.assert_frame_equal(mixed[mixed["symbol"] == "ESZ6"].reset_index(drop=True), es)
    pd.testing.assert_frame_equal(mixed[mixed["symbol"] == "AAPL"].reset_index(drop=True), aapl)
    assert es["timestamp"].iloc[0] == pd.Timestamp("2026-11-02 23:00:56", tz="UTC")  # the session: the evening before
    assert aapl["timestamp"].iloc[0] >= pd.Timestamp("2026-11-03 05:00", tz="UTC")  # the New York day
    assert mixed.attrs["method_by_symbol"] == {"ESZ6": "rest", "AAPL": "rest"} and mixed.attrs["method"] == "rest"
    with pytest.raises(InvalidInputError, match="^futures ticks are read by exchange session: query AAPL apart"):
        TickQuery.build(["ESZ6", "AAPL"], "2026-11-03", "2026-11-03", "trades")  # a built query is one or the other


def test_an_unknown_contract_is_named(sb: Sandbox, s: Settings) -> None:
    with pytest.raises(NoDataError, match="no trades for ESZ9 in 2026-11-05..2026-11-05 via flat_file"):
        fetch_ticks("ESZ9", "2026-11-05", "2026-11-05", kind="trades", method="flat_file", settings=s)
    both = fetch_ticks(["ESZ6", "ESZ9"], "2026-11-05", "2026-11-05", kind="trades", method="flat_file", settings=s)
    assert both.attrs["empty_symbols"] == ["ESZ9"] and len(both) == 1380


def test_a_missing_day_file_is_visible_and_a_corrupt_one_is_refused(sb: Sandbox, s: Settings) -> None:
    sb.s3.delete(KEY.format(kind="trades", day="2026-11-17"))
    ticks = fetch_ticks("ESZ6", "2026-11-16", "2026-11-17", kind="trades", method="flat_file", settings=s)
    assert ticks.attrs["missing_days"] == ["2026-11-17"] and len(ticks) == 1380
    with pytest.raises(NoDataError, match="no flat file for 2026-11-17"):
        fetch_ticks("ESZ6", "2026-11-17", "2026-11-17", kind="trades", method="flat_file", settings=s)
    sb.s3.corrupt(KEY.format(kind="quotes", day="2026-11-18"))
    with pytest.raises(CorruptFileError, match="us_futures_cme/quotes_v1/2026/11/2026-11-18.csv.gz"):
        fetch_ticks("ESZ6", "2026-11-18", "2026-11-18", kind="quotes", method="flat_file", settings=s)


# --- continuous series: each session's held contract ----------------------------------------------------
def test_a_continuous_series_reads_the_contract_it_holds_each_session(sb: Sandbox, s: Settings) -> None:
    # ESU6's last trade date is Friday 2026-09-18: ES.c.0 holds it through then, ESZ6 from Monday's session,
    # which opens Sunday 09-20 17:00 Chicago (22:00 UTC, daylight time)
    rest = fetch_ticks("ES.c.0", "2026-09-17", "2026-09-22", kind="trades", method="rest", settings=s)
    flat = fetch_ticks("ES.c.0", "2026-09-17", "2026-09-22", kind="trades", method="flat_file", settings=s)
    pd.testing.assert_frame_equal(rest, flat)
    assert flat.attrs["contracts"] == {"ES.c.0": {"2026-09-17": "ESU6", "2026-09-18": "ESU6", "2026-09-21": "ESZ6",
                                                  "2026-09-22": "ESZ6"}}
    assert len(pd.concat([flat, rest])) == 2 * len(flat)  # plain attrs: two results concatenate
    assert set(flat["symbol"]) == {"ES.c.0"} and len(flat) == 4 * 1380
    last_u6, first_z6 = pd.Timestamp("2026-09-18 20:59:56", tz="UTC"), pd.Timestamp("2026-09-20 22:00:56", tz="UTC")
    at = flat.set_index("timestamp")["price"]
    u6 = fetch_ticks("ESU6", "2026-09-18", "2026-09-18", kind="trades", method="rest", settings=s)
    z6 = fetch_ticks("ESZ6", "2026-09-21", "2026-09-21", kind="trades", method="rest", settings=s)
    assert (u6["timestamp"].iloc[-1], z6["timestamp"].iloc[0]) == (last_u6, first_z6)
    assert at[last_u6] == u6["price"].iloc[-1] and at[first_z6] == z6["price"].iloc[0]
    assert z6["price"].iloc[0] - u6["price"].iloc[-1] > 10  # the contango gap a roll shows in raw prices
    assert flat["timestamp"].between(last_u6, first_z6, inclusive="neither").sum() == 0  # the weekend


def test_continuous_ticks_follow_the_series_bars_roll_rule(sb: Sandbox, s: Settings) -> None:
    for series in ("ES.c.0", "ES.v.0"):
        bars = fetch_data(series, "2026-09-08", "2026-09-18", "1d", method="rest", settings=s)
        ticks = fetch_ticks(series, "2026-09-08", "2026-09-18", kind="trades", method="rest", settings=s)
        assert list(ticks.attrs["contracts"][series].values()) == bars["contract"].tolist()
    assert bars["contract"].tolist()[-1] == "ESZ6"  # the volume rule has rolled before expiry


# --- the history store --------------------------------------------------------------------------------
def test_the_store_ingests_and_serves_futures_ticks(sb: Sandbox, s: Settings, tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = ingest("us_futures_cme/trades_v1", "2026-11-19", "2026-11-20", symbols=["ESZ6"], store=store,
                    settings=s)
    assert report.ingested == [date(2026, 11, 19), date(2026, 11, 20)]
    flat = fetch_ticks("ESZ6", "2026-11-19", "2026-11-20", kind="trades", method="flat_file", settings=s)
    stored = fetch_ticks("ESZ6", "2026-11-19", "2026-11-20", kind="trades", method="store", store=store, settings=s)
    pd.testing.assert_frame_equal(stored, flat, check_like=False)
    gets = sb.s3.count("GET", objects_only=True)
    auto = fetch_ticks("ESZ6", "2026-11-19T23:00:00Z", "2026-11-19T23:09:59Z", kind="trades", store=store,
                       settings=s)  # the evening of 11-19 is the session of 11-20, which the store holds
    assert auto.attrs["method"] == "store" and sb.s3.count("GET", objects_only=True) == gets
    assert auto["timestamp"].iloc[0] == pd.Timestamp("2026-11-19 23:00:56", tz="UTC") and len(auto) == 10
    with pytest.raises(InvalidInputError, match="GCZ6 is not in us_futures_cme/trades_v1"):
        ingest("us_futures_cme/trades_v1", "2026-11-19", "2026-11-19", symbols=["GCZ6"], store=store, settings=s)
    gold = ingest("us_futures_comex/quotes_v1", "2026-11-19", "2026-11-19", symbols=["GCZ6"], store=store,
                  settings=s)
    assert gold.ingested == [date(2026, 11, 19)]
