"""Tick history: REST v3 trades/quotes, tick flat files, the tick schema, and the equivalence of a
recorded live window with the same window fetched over REST and over flat files (real sockets)."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path
from typing import Iterator

import backtrader as bt
import numpy as np
import orjson
import pandas as pd
import pytest

from massive_feeds import fetch_ticks
from massive_feeds.backtrader import MassiveData, MassiveQuoteData
from massive_feeds.cli import main as cli_main
from massive_feeds.config import Settings
from massive_feeds.datasets import load_dataset, save_dataset
from massive_feeds.errors import (BadResponseError, CorruptFileError, InvalidInputError, NoDataError, NotEntitledError,
                                  QuotaExceededError)
from massive_feeds.flatfiles.ticks import stream_filter, table_to_ticks
from massive_feeds.quota import get_quota
from massive_feeds.record import WebSocketDataRecorder, ticks_to_bars
from massive_feeds.record.history import tick_events
from massive_feeds.record.reader import RecordingReader
from massive_feeds.rest.ticks import parse_ticks
from massive_feeds.sandbox import Sandbox, default_clock_start
from massive_feeds.tickschema import EVENT_COLUMNS, TICK_COLUMNS, finalize_ticks
from strategies import SpreadCapture, run_strategy
from strategies.vectorbt_runner import run_vectorbt

from ._stream_support import wait_until

# Three results of the official client's mock of GET /v3/quotes/AAPL (polygon-io/client-python
# test_rest/mocks/v3/quotes/AAPL.json, captured from the real service; pretty-printed as there, newest first).
REAL_QUOTES_PAGE = b"""{
    "results": [
        {
            "ask_exchange": 15,
            "ask_price": 155.87,
            "ask_size": 3,
            "bid_exchange": 19,
            "bid_price": 155.85,
            "bid_size": 4,
            "participant_timestamp": 1652191872800402200,
            "sequence_number": 19288684,
            "sip_timestamp": 1652191872800638700,
            "tape": 3
        },
        {
            "ask_exchange": 15,
            "ask_price": 155.87,
            "ask_size": 3,
            "bid_exchange": 15,
            "bid_price": 155.85,
            "bid_size": 5,
            "participant_timestamp": 1652191872774195000,
            "sequence_number": 19288618,
            "sip_timestamp": 1652191872774441200,
            "tape": 3
        },
        {
            "ask_exchange": 19,
            "ask_price": 155.87,
            "ask_size": 2,
            "bid_exchange": 21,
            "bid_price": 155.86,
            "bid_size": 2,
            "participant_timestamp": 1652191872690425000,
            "sequence_number": 19288166,
            "sip_timestamp": 1652191872690661000,
            "tape": 3
        }
    ],
    "status": "OK",
    "request_id": "280bc9f4c6d0ba24a819f0d153b15d85",
    "next_url": "https://api.massive.com/v3/quotes/AAPL?cursor=YXA9MTkyODgxNjYmYXM9"
}"""


# --- parsing the wire forms ----------------------------------------------------------------------------
def test_real_quotes_page_parses_to_typed_columns_with_the_bid_exchange_as_exchange() -> None:
    page = parse_ticks(REAL_QUOTES_PAGE, "quotes")
    cols = page.columns
    assert page.size == 3 and page.status == "OK" and page.next_url.endswith("cursor=YXA9MTkyODgxNjYmYXM9")
    assert cols["timestamp"].tolist() == [1652191872800638700, 1652191872774441200, 1652191872690661000]
    assert cols["bid"].tolist() == [155.85, 155.85, 155.86] and cols["ask"].tolist() == [155.87] * 3
    assert cols["exchange"].tolist() == [19, 15, 21] and cols["ask_exchange"].tolist() == [15, 15, 19]
    assert cols["sequence_number"].tolist() == [19288684, 19288618, 19288166]


def test_compact_and_pretty_bodies_parse_alike_and_lists_become_condition_text() -> None:
    rows = [{"conditions": [12, 37], "exchange": 4, "id": "52983525", "participant_timestamp": 1,
             "price": 171.5, "sequence_number": 1063, "sip_timestamp": 1_700_000_000_000_000_001, "size": 100,
             "tape": 3},
            {"exchange": 11, "id": "7", "price": 171.51, "sip_timestamp": 1_700_000_000_000_000_002, "size": 5}]
    compact = orjson.dumps({"results": rows, "status": "OK"})
    pretty = orjson.dumps({"results": rows, "status": "OK"}, option=orjson.OPT_INDENT_2)
    for body in (compact, pretty):
        cols = parse_ticks(body, "trades").columns
        assert cols["conditions"].tolist() == ["12,37", ""]
        assert cols["id"].tolist() == ["52983525", "7"] and cols["size"].tolist() == [100.0, 5.0]
        assert cols["tape"].tolist() == [3, 0]


def test_forex_quotes_without_sip_time_use_the_participant_time() -> None:
    body = orjson.dumps({"results": [{"ask_exchange": 48, "ask_price": 1.0851, "bid_exchange": 48,
                                      "bid_price": 1.085, "participant_timestamp": 1_700_000_000_123_456_789}],
                         "status": "OK"})
    cols = parse_ticks(body, "quotes").columns
    assert cols["timestamp"].tolist() == [1_700_000_000_123_456_789] and np.isnan(cols["bid_size"][0])


@pytest.mark.parametrize("body", [b'{"status":"ERROR","error":"boom"}', b'{"results":[{"price":1}]',
                                  b'{"results":[{"price":1.0,"size":1}],"status":"OK"}'])
def test_bad_tick_bodies_are_typed_errors(body: bytes) -> None:
    # the last one has no timestamp at all: a tick without a time is never silently kept
    with pytest.raises(BadResponseError):
        parse_ticks(body, "trades")


# --- the tick schema ----------------------------------------------------------------------------------
def test_finalize_orders_by_time_then_sequence_trade_first_and_drops_exact_duplicates() -> None:
    t = 1_700_000_000_000_000_000
    raw = pd.DataFrame({
        "timestamp": [t + 5, t, t, t, t],
        "symbol": ["AAPL"] * 5,
        "kind": ["trade", "quote", "trade", "quote", "quote"],
        "sequence_number": [9, 2, 2, 1, 1],
        "price": [np.nan, np.nan, 10.0, np.nan, np.nan],
        "bid": [np.nan, 9.9, np.nan, 9.8, 9.8],
    })
    raw.loc[0, "price"] = 11.0
    df = finalize_ticks(raw)
    assert list(df.columns) == list(TICK_COLUMNS)
    assert list(zip(df["sequence_number"], df["kind"])) == [(1, "quote"), (2, "trade"), (2, "quote"), (9, "trade")]
    assert df["time_ms"].tolist() == [t // 10**6] * 3 + [(t + 5) // 10**6]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize("arrangement", ["in-order", "ties-out-of-sequence", "quote-before-trade-on-a-tie"])
def test_one_symbol_with_repeated_timestamps_comes_out_in_the_documented_order(arrangement: str) -> None:
    """Many ticks share a timestamp (a page of quotes does): the frame must come out by (timestamp,
    sequence_number, trades first) whether it arrives in that order (no sort needed) or not."""
    rng = np.random.default_rng(25)
    n = 4000
    ts = 1_700_000_000_000_000_000 + np.sort(rng.integers(0, 300, n)) * 1000  # ~13 ticks per timestamp
    seq = np.arange(n) * 2
    kind = np.where(rng.random(n) < 0.3, "trade", "quote")
    if arrangement == "ties-out-of-sequence":
        seq = seq[np.lexsort((-seq, ts))]  # within each timestamp, sequence numbers fall
    elif arrangement == "quote-before-trade-on-a-tie":
        seq[1::2] = seq[::2]  # pairs share timestamp and sequence number...
        ts[1::2] = ts[::2]
        kind[::2], kind[1::2] = "quote", "trade"  # ...with the quote first
    raw = pd.DataFrame({"timestamp": ts, "symbol": "AAPL", "kind": kind, "sequence_number": seq,
                        "price": np.arange(n, dtype=float)})
    want = raw.assign(rank=(raw["kind"] != "trade").astype(int)).sort_values(
        ["timestamp", "sequence_number", "rank"], kind="stable")
    df = finalize_ticks(raw)
    assert df["price"].tolist() == want["price"].tolist()  # the rows' identities, in the expected order


def test_same_time_and_sequence_with_different_values_is_kept() -> None:
    t = 1_700_000_000_000_000_000
    raw = pd.DataFrame({"timestamp": [t, t], "symbol": ["AAPL"] * 2, "kind": ["quote"] * 2,
                        "sequence_number": [0, 0], "bid": [1.0, 1.01]})
    assert len(finalize_ticks(raw)) == 2


def test_ticks_become_the_recorders_events() -> None:
    t = 1_700_000_000_123_456_789
    df = finalize_ticks(pd.DataFrame({"timestamp": [t], "symbol": ["AAPL"], "kind": ["quote"], "bid": [1.0],
                                      "ask": [1.1], "bid_size": [3], "ask_size": [4], "exchange": [12]}))
    (ev,) = next(tick_events(df))
    assert (ev.kind, ev.symbol, ev.time_ms, ev.bid, ev.ask, ev.bid_size, ev.exchange) == \
        ("quote", "AAPL", t // 10**6, 1.0, 1.1, 3.0, 12)
    assert np.isnan(ev.price) and ev.end_ms == 0


# --- flat files: the per-block filter ------------------------------------------------------------------
def _quotes_csv(tickers: list[str], n: int) -> bytes:
    header = ("ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,conditions,indicators,"
              "participant_timestamp,sequence_number,sip_timestamp,tape,trf_timestamp\n")
    lines = [header]
    for t in tickers:
        for i in range(n):
            ts = 1_700_000_000_000_000_000 + i * 1_000_000
            lines.append(f'{t},11,{100 + i / 100:.2f},3,12,{99 + i / 100:.2f},4,"1,2",,{ts - 5},{i},{ts},3,\n')
    return "".join(lines).encode()


def test_stream_filter_keeps_only_the_wanted_ticker_across_many_small_blocks() -> None:
    data = gzip.compress(_quotes_csv(["AAL", "AAPL", "ZZZ"], 3000))
    table = stream_filter([data[:5000], data[5000:]], {"AAPL": "AAPL"}, "quotes", "test-key", block_size=1 << 14)
    ticks = table_to_ticks(table, "quotes")
    assert len(ticks) == 3000 and set(ticks["symbol"]) == {"AAPL"}
    assert ticks["sequence_number"].tolist() == list(range(3000))
    assert ticks["conditions"].iloc[0] == "1,2" and ticks["exchange"].iloc[0] == 12
    assert ticks["ask_exchange"].iloc[0] == 11 and ticks["bid"].iloc[1] == 99.01


def test_stream_filter_maps_crypto_file_spellings_to_our_tickers() -> None:
    csv = ("ticker,conditions,exchange,id,participant_timestamp,price,size\n"
           "X:BTC-USD,1,1,a,1700000000000000000,65000.5,0.01\nX:ETH-USD,2,1,b,1700000000000000001,3200,1\n")
    table = stream_filter([gzip.compress(csv.encode())], {"X:BTC-USD": "X:BTCUSD", "X:BTCUSD": "X:BTCUSD"},
                          "trades", "k")
    ticks = table_to_ticks(table, "trades")
    assert ticks["symbol"].tolist() == ["X:BTCUSD"] and ticks["price"].tolist() == [65000.5]


# --- asset classes and entitlements ---------------------------------------------------------------------
@pytest.mark.parametrize("symbol,kind", [("C:EURUSD", "trades"), ("X:BTCUSD", "quotes"), ("I:SPX", "trades")])
def test_kinds_the_service_does_not_have_are_refused_before_any_call(symbol: str, kind: str) -> None:
    with pytest.raises(InvalidInputError, match=f"no {kind} for {symbol}"):
        fetch_ticks(symbol, "2024-03-04", "2024-03-04", kind, method="rest")


def test_tick_query_validates_once_and_names_the_bad_value() -> None:
    from massive_feeds.tickschema import TickQuery

    q = TickQuery.build(["aapl", "BTC-USD"], "2024-03-05", "2024-03-05", "trade")
    assert q.tickers == ("AAPL", "X:BTCUSD") and q.kinds == ("trades",)
    assert q.range.first_day == q.range.last_day == date(2024, 3, 5)
    with pytest.raises(InvalidInputError, match="Invalid tick kind 'bars'"):
        TickQuery.build("AAPL", "2024-03-05", "2024-03-05", "bars")
    with pytest.raises(InvalidInputError, match="no quotes for X:BTCUSD"):
        TickQuery.build(["AAPL", "X:BTCUSD"], "2024-03-05", "2024-03-05", ["trades", "quotes"])


# --- REST and flat files on the sandbox ----------------------------------------------------------------
DAY = date(2024, 3, 5)


@pytest.fixture(scope="module")
def s3_sandbox() -> Iterator[Sandbox]:
    with Sandbox(s3=True, s3_days=(date(2024, 3, 4), date(2024, 3, 6))) as sb:
        yield sb


@pytest.fixture
def s3_settings(s3_sandbox: Sandbox, tmp_path: Path) -> Settings:
    return s3_sandbox.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")


def test_rest_pages_and_flat_file_give_the_same_ticks(s3_settings: Settings) -> None:
    from massive_feeds.ticks import fetch_ticks_rest

    window = ("2024-03-05T14:30:00", "2024-03-05T15:29:59.999999999")
    rest = fetch_ticks_rest("AAPL", *window, ["trades", "quotes"], settings=s3_settings, page_limit=500,
                            use_cache=False)
    flat = fetch_ticks("AAPL", *window, ["trades", "quotes"], method="flat_file", settings=s3_settings)
    assert len(rest) > 1000  # several pages of 500 per kind were chained
    assert get_quota(s3_settings).status().rest_used_today >= 2 * (len(rest) // 2 // 500)
    pd.testing.assert_frame_equal(rest, flat)
    assert (rest["timestamp"] >= pd.Timestamp(window[0], tz="UTC")).all()
    assert rest["timestamp"].max() < pd.Timestamp("2024-03-05T15:30:00", tz="UTC")
    assert flat.attrs["method"] == "flat_file" and rest.attrs["method"] == "rest"


@pytest.mark.parametrize("symbol,kind", [("C:EURUSD", "quotes"), ("X:BTCUSD", "trades"),
                                         ("O:SPY251219C00650000", "trades"), ("O:SPY251219C00650000", "quotes")])
def test_other_asset_classes_agree_between_rest_and_flat_files(s3_settings: Settings, symbol: str, kind: str) -> None:
    # forex/crypto carry no SIP time (participant time instead) and crypto files spell X:BTC-USD
    window = ("2024-03-05T14:00", "2024-03-05T16:00")
    rest = fetch_ticks(symbol, *window, kind, method="rest", settings=s3_settings)
    flat = fetch_ticks(symbol, *window, kind, method="flat_file", settings=s3_settings)
    assert len(rest) > 10 and set(rest["symbol"]) == {symbol}
    pd.testing.assert_frame_equal(rest, flat)


def test_settled_rest_ticks_are_served_from_the_cache(s3_settings: Settings) -> None:
    first = fetch_ticks("MSFT", "2024-03-05T15:00", "2024-03-05T15:05", "quotes", method="rest", settings=s3_settings)
    used = get_quota(s3_settings).status().rest_used_today
    again = fetch_ticks("MSFT", "2024-03-05T15:00", "2024-03-05T15:05", "quotes", method="rest", settings=s3_settings)
    assert get_quota(s3_settings).status().rest_used_today == used and len(first) > 0
    pd.testing.assert_frame_equal(first, again)


def test_flat_file_quota_refuses_before_downloading(s3_sandbox: Sandbox, tmp_path: Path) -> None:
    settings = s3_sandbox.settings(home=tmp_path / "home", plan="free")
    quota = get_quota(settings)
    quota.reserve_flatfile_bytes(10 * 10**9 - 1000)  # almost all of the free plan's 10 GB used
    before = quota.status().flatfile_bytes_used
    with pytest.raises(QuotaExceededError, match="monthly flat-file quota"):
        fetch_ticks("AAPL", "2024-03-05", "2024-03-05", "quotes", method="flat_file", settings=settings)
    assert quota.status().flatfile_bytes_used == before  # nothing reserved, nothing downloaded


def test_broken_transfer_resumes_and_a_corrupt_day_is_loud_never_cached(tmp_path: Path) -> None:
    with Sandbox(s3=True, s3_days=(DAY, DAY)) as sb:
        settings = sb.settings(home=tmp_path / "home", plan="unlimited")
        key = f"us_stocks_sip/trades_v1/{DAY:%Y/%m}/{DAY}.csv.gz"
        clean = fetch_ticks("AAPL", DAY, DAY, "trades", method="flat_file", settings=settings, use_cache=False)
        size = len(sb.s3.get(key))
        assert get_quota(settings).status().flatfile_bytes_used == size  # counted once, exactly
        sb.s3.cut_next_downloads(1)  # half the body, then the connection drops: resumed with a ranged GET
        resumed = fetch_ticks("AAPL", DAY, DAY, "trades", method="flat_file", settings=settings, use_cache=False)
        pd.testing.assert_frame_equal(resumed, clean)
        assert get_quota(settings).status().flatfile_bytes_used == 2 * size
        sb.s3.corrupt(key)  # a truncated gzip
        for _ in range(2):  # nothing half-read was cached: the second try is as loud as the first
            with pytest.raises(CorruptFileError, match=key):
                fetch_ticks("AAPL", DAY, DAY, "trades", method="flat_file", settings=settings)


def test_a_day_without_a_file_is_reported_not_silently_empty(s3_settings: Settings) -> None:
    from massive_feeds.ticks import fetch_ticks_flat_file
    from massive_feeds.tickschema import TickQuery

    # the top-level call raises, naming symbol, kind, days, method and the missing file
    # (a Saturday is refused by the calendar before any call: test_a_weekend_or_a_future_range_asks_nothing)
    with pytest.raises(NoDataError, match=r"no trades for AAPL in 2024-03-09\.\.2024-03-09: "
                                          r"no trading session in the range") as caught:
        fetch_ticks("AAPL", "2024-03-09", "2024-03-09", "trades", method="flat_file", settings=s3_settings)
    assert caught.value.symbols == {"AAPL": "no trading session in the range (a weekend or market holiday)"}
    # the lower-level reader returns the annotated empty frame (as fetch_ohlcv_rest does for bars)
    df = fetch_ticks_flat_file(TickQuery.build("AAPL", "2024-03-09", "2024-03-09", "trades"), settings=s3_settings)
    assert len(df) == 0 and df.attrs["empty_symbols"] == ["AAPL"]
    # a Saturday has no file because nothing trades: closed, not missing (a missing trading day is loud)
    assert df.attrs["missing_days"] == [] and df.attrs["closed_days"] == ["2024-03-09"]


def test_one_empty_symbol_of_two_is_listed_and_the_other_returned(s3_settings: Settings) -> None:
    df = fetch_ticks(["AAPL", "ZZZZ"], "2024-03-05T14:30", "2024-03-05T14:35", "trades", method="rest",
                     settings=s3_settings)
    assert set(df["symbol"]) == {"AAPL"} and len(df) > 0 and df.attrs["empty_symbols"] == ["ZZZZ"]


def test_cli_ticks_over_a_weekend_fails_and_saves_nothing(s3_sandbox: Sandbox, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in s3_sandbox.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MASSIVE_PLAN", "unlimited")
    monkeypatch.setenv("MASSIVE_FEEDS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "ds"))
    rc = cli_main(["ticks", "AAPL", "--start", "2024-03-09", "--end", "2024-03-10", "--kind", "trades",
                   "--method", "rest", "--dataset", "weekend"])
    captured = capsys.readouterr()
    assert rc == 1 and captured.out == ""
    assert captured.err.strip().endswith("no trades for AAPL in 2024-03-09..2024-03-10: no trading session in the "
                                         "range (a weekend or market holiday); nothing was asked")
    assert "Traceback" not in captured.err and not list(tmp_path.rglob("weekend*"))


def test_not_entitled_is_typed_on_rest_and_on_flat_files(tmp_path: Path) -> None:
    with Sandbox(s3=True, s3_days=(DAY, DAY), not_entitled=("options",)) as sb:
        settings = sb.settings(home=tmp_path / "home", plan="unlimited")
        for method in ("rest", "flat_file"):
            with pytest.raises(NotEntitledError):
                fetch_ticks("O:SPY251219C00650000", DAY, DAY, "trades", method=method, settings=settings)


def test_auto_sends_a_few_symbol_days_to_rest_and_bulk_to_flat_files(s3_settings: Settings) -> None:
    small = fetch_ticks("AAPL", "2024-03-05T15:00", "2024-03-05T15:01", "trades", settings=s3_settings)
    assert small.attrs["method"] == "rest" and "few symbol-days" in small.attrs["method_reason"]
    bulk = fetch_ticks(["AAPL", "MSFT", "NVDA"], "2024-03-04", "2024-03-05", "trades", settings=s3_settings)
    assert bulk.attrs["method"] == "flat_file" and "bulk" in bulk.attrs["method_reason"]
    assert set(bulk["symbol"]) == {"AAPL", "MSFT", "NVDA"}


def test_tick_auto_boundary_is_five_symbol_days_inclusive(s3_settings: Settings) -> None:
    """5 symbols × 1 day (5 symbol-days) still go over REST, 6 × 1 (6 symbol-days) over flat files: the rule is
    ``symbol_days <= 5``, and these literal counts fail if it became ``< 5`` or ``<= 6``."""
    six = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "NFLX"]
    window = ("2024-03-05T15:00", "2024-03-05T15:01")
    five = fetch_ticks(six[:5], *window, "trades", settings=s3_settings)
    assert (five.attrs["method"], five.attrs["method_reason"]) == (
        "rest", "5 symbol(s) × 1 day(s): few symbol-days → REST")
    bulk = fetch_ticks(six, *window, "trades", settings=s3_settings)
    assert (bulk.attrs["method"], bulk.attrs["method_reason"]) == (
        "flat_file", "6 symbol(s) × 1 day(s): bulk → flat files")
    assert set(five["symbol"]) == set(six[:5]) and set(bulk["symbol"]) == set(six)
    pd.testing.assert_frame_equal(bulk[bulk["symbol"] != "NFLX"].reset_index(drop=True), five)


def test_ingested_ticks_come_back_from_the_store_with_no_call(s3_settings: Settings, tmp_path: Path) -> None:
    from massive_feeds.store import ingest

    store = tmp_path / "store"
    report = ingest("us_stocks_sip/quotes_v1", "2024-03-04", "2024-03-05", symbols=["AAPL", "MSFT"], store=store,
                    settings=s3_settings, progress=False)
    assert report.ingested == [date(2024, 3, 4), date(2024, 3, 5)] and report.rows > 0
    flat = fetch_ticks(["AAPL", "MSFT"], "2024-03-04", "2024-03-05", "quotes", method="flat_file",
                       settings=s3_settings)
    quota = get_quota(s3_settings).status()
    stored = fetch_ticks(["AAPL", "MSFT"], "2024-03-04", "2024-03-05", "quotes", settings=s3_settings, store=store)
    assert stored.attrs["method"] == "store" and "history store holds every day" in stored.attrs["method_reason"]
    pd.testing.assert_frame_equal(stored, flat)
    after = get_quota(s3_settings).status()
    assert (after.rest_used_today, after.flatfile_bytes_used) == (quota.rest_used_today, quota.flatfile_bytes_used)
    # a day or a symbol the store lacks sends auto elsewhere, and method="store" says what is missing
    assert fetch_ticks("NVDA", "2024-03-05", "2024-03-05T15:00", "quotes", settings=s3_settings,
                       store=store).attrs["method"] == "rest"
    partial = fetch_ticks("AAPL", "2024-03-05", "2024-03-06", "quotes", method="store", settings=s3_settings,
                          store=store)
    assert partial.attrs["not_ingested_days"] == ["2024-03-06"]


def test_tick_ingest_needs_symbols_and_an_existing_kind(s3_settings: Settings, tmp_path: Path) -> None:
    from massive_feeds.store import ingest

    with pytest.raises(InvalidInputError, match="--symbols"):
        ingest("us_stocks_sip/trades_v1", "2024-03-04", "2024-03-04", store=tmp_path / "s", settings=s3_settings)
    with pytest.raises(InvalidInputError, match="no trades for forex"):
        ingest("global_forex/trades_v1", "2024-03-04", "2024-03-04", symbols=["C:EURUSD"], store=tmp_path / "s",
               settings=s3_settings)


def test_tick_dataset_round_trip_keeps_ticks_sharing_a_timestamp(s3_settings: Settings) -> None:
    ticks = fetch_ticks("AAPL", "2024-03-05T15:00", "2024-03-05T15:10", ["trades", "quotes"], method="rest",
                        settings=s3_settings)
    save_dataset(ticks, "aapl_ticks", settings=s3_settings)
    back = load_dataset("aapl_ticks", settings=s3_settings)
    assert back.attrs["interval"] == "ticks"
    pd.testing.assert_frame_equal(back.reset_index(drop=True), ticks.reset_index(drop=True), check_dtype=False)


# --- the equivalence: recorded live window == REST == flat files -------------------------------------
class Notices(bt.Strategy):
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.rows: list[tuple] = []

    def notify_data(self, data, status, *args, **kwargs) -> None:
        self.notices.append(data._getstatusname(status))

    def next(self) -> None:
        d = self.data
        self.rows.append((d.datetime[0], d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0], d.bid[0], d.ask[0]))


def _run(feed: bt.feed.DataBase) -> Notices:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed)
    cerebro.addstrategy(Notices)
    return cerebro.run()[0]


@pytest.fixture(scope="module")
def recorded_window(tmp_path_factory: pytest.TempPathFactory):
    """A live sandbox window recorded over the WebSocket, with the sandbox (REST + S3) still up."""
    folder = tmp_path_factory.mktemp("ticks_eq")
    day = default_clock_start().date()  # the market day the sandbox below starts on (no probe sandbox)
    with Sandbox(websocket=True, s3=True, s3_days=(day, day), clock_speed=240) as sb:
        settings = sb.settings(home=folder / "home", datasets_dir=folder / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], folder / "rec", settings=settings).start()
        try:
            # enough ticks for a dozen minute bars (the stream runs 4 market minutes per second)
            wait_until(lambda: len({e // 60_000 for e in _recorded_times(rec.path)}) >= 14, timeout=60,
                       what="14 recorded minutes")
        finally:
            rec.stop()
        events = RecordingReader(rec.path).events()
        yield sb, settings, rec.path, events


def _recorded_times(path: Path) -> list[int]:
    try:
        return RecordingReader(path).events()["time_ms"].tolist()
    except Exception:  # nothing durable yet
        return []


def test_recorded_rest_and_flat_file_event_sequences_are_identical(recorded_window) -> None:
    _, settings, _, events = recorded_window
    first, last = int(events["time_ms"].min()), int(events["time_ms"].max())
    start = pd.Timestamp(first, unit="ms", tz="UTC")
    end = pd.Timestamp((last + 1) * 10**6 - 1, unit="ns", tz="UTC")
    kinds = ["trades", "quotes"]
    rest = fetch_ticks("AAPL", start, end, kinds, method="rest", settings=settings)
    flat = fetch_ticks("AAPL", start, end, kinds, method="flat_file", settings=settings)
    recorded = events[list(EVENT_COLUMNS)].reset_index(drop=True)
    assert len(recorded) > 100 and set(recorded["kind"]) == {"trade", "quote"}
    for fetched in (rest, flat):
        pd.testing.assert_frame_equal(fetched[list(EVENT_COLUMNS)].reset_index(drop=True), recorded,
                                      check_dtype=False)


def _fetched(recorded_window, method: str) -> pd.DataFrame:
    """The recorded window's ticks fetched by ``method``: from its first to its last event (ms)."""
    _, settings, _, events = recorded_window
    first, last = int(events["time_ms"].min()), int(events["time_ms"].max())
    start = pd.Timestamp(first, unit="ms", tz="UTC")
    end = pd.Timestamp((last + 1) * 10**6 - 1, unit="ns", tz="UTC")
    return fetch_ticks("AAPL", start, end, ["trades", "quotes"], method=method, settings=settings)


def test_spread_capture_trades_identically_on_the_three_sources(recorded_window) -> None:
    _, settings, path, events = recorded_window
    rest, flat = _fetched(recorded_window, "rest"), _fetched(recorded_window, "flat_file")

    def feeds(cls: type) -> list[bt.feed.DataBase]:
        return [cls(recording=path, settings=settings, interval="1m"),
                cls(dataname="AAPL", ticks=rest, interval="1m"), cls(dataname="AAPL", ticks=flat, interval="1m")]

    # the quote feed: the same notices, bars, bid and ask, through the same state machine
    runs = [_run(f) for f in feeds(MassiveQuoteData)]
    assert runs[0].notices == ["CONNECTED", "LIVE", "DISCONNECTED"] and len(runs[0].rows) >= 12
    assert not np.isnan([r[6] for r in runs[0].rows]).any()  # every bar has the bid of its last quote
    for other in runs[1:]:
        assert other.notices == runs[0].notices and other.rows == runs[0].rows
    # SpreadCapture in Backtrader (fills at the signal bar's close, as vectorbt does). The sandbox prints
    # at the quote's mid, so with bid/ask lines the strategy never enters: run it on OHLC feeds, where
    # the bar's low/high stand in for bid/ask, to compare actual trades.
    results = [run_strategy(SpreadCapture, f, cash=10_000, cheat_on_close=True) for f in feeds(MassiveData)]
    assert results[0].trade_count > 0
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.trades, results[0].trades)
        pd.testing.assert_series_equal(other.equity, results[0].equity)
    quote_results = [run_strategy(SpreadCapture, f, cash=10_000, cheat_on_close=True) for f in feeds(MassiveQuoteData)]
    for other in quote_results[1:]:
        assert other.trade_count == quote_results[0].trade_count
        pd.testing.assert_series_equal(other.equity, quote_results[0].equity)
    # ... and in vectorbt, on bars built from each source's ticks (the recorder's frame for the recording)
    bar_sets = [ticks_to_bars(ticks, "1min") for ticks in (events, rest, flat)]
    for bars in bar_sets[1:]:
        pd.testing.assert_frame_equal(bars, bar_sets[0])
    ohlc = [b.drop(columns=["bid", "ask"]) for b in bar_sets]
    vbt_results = [run_vectorbt(SpreadCapture, b, cash=10_000) for b in ohlc]
    assert vbt_results[0].trade_count > 0
    for other in vbt_results[1:]:
        pd.testing.assert_frame_equal(other.trades, vbt_results[0].trades)


def test_historical_ticks_replay_paced_by_replay_speed(recorded_window) -> None:
    _, settings, _, events = recorded_window
    first = pd.Timestamp(int(events["time_ms"].min()), unit="ms", tz="UTC")
    feed = MassiveQuoteData(dataname="AAPL", ticks="quotes", tick_method="rest", settings=settings,
                            fromdate=first.to_pydatetime(), todate=(first + pd.Timedelta(minutes=2)).to_pydatetime(),
                            replay_speed=120.0)
    import time

    t0 = time.monotonic()
    run = _run(feed)
    # two market minutes at 120x take about a second; unpaced, milliseconds
    assert time.monotonic() - t0 > 0.7 and run.notices[0] == "CONNECTED" and len(run.rows) >= 1


# --- CLI: ticks into a dataset, then backtest it ----------------------------------------------------------
def test_cli_ticks_dataset_then_backtest(s3_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in s3_sandbox.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MASSIVE_PLAN", "unlimited")
    rc = cli_main(["ticks", "AAPL", "--start", "2024-03-05T14:30", "--end", "2024-03-05T15:30", "--kind", "both",
                   "--method", "rest", "--dataset", "aapl_day"])
    out = capsys.readouterr().out
    assert rc == 0 and "via rest" in out and "saved tick dataset aapl_day" in out
    rc = cli_main(["backtest", "spread_capture", "aapl_day", "--engine", "both", "--output", str(tmp_path / "bt")])
    out = capsys.readouterr().out
    assert rc == 0 and "AAPL (backtrader)" in out and "AAPL (vectorbt)" in out
    rc = cli_main(["ticks", "C:EURUSD", "--start", "2024-03-05", "--end", "2024-03-05", "--kind", "trades"])
    assert rc == 2 and "no trades for C:EURUSD" in capsys.readouterr().err  # bad input: exit 2


def test_vectorbt_data_from_ticks_has_the_recorded_bars_with_quote_columns(recorded_window) -> None:
    from massive_feeds.vectorbt import MassiveData as VbtData

    _, settings, path, _ = recorded_window
    fetched = VbtData.from_ticks(_fetched(recorded_window, "rest"), interval="1min")
    recorded = VbtData.from_recording(path, "1min", settings=settings)
    pd.testing.assert_frame_equal(fetched.data["AAPL"], recorded.data["AAPL"])
    assert {"Bid", "Ask", "Mid", "Spread"} <= set(fetched.data["AAPL"].columns)
