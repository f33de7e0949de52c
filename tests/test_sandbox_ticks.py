"""The sandbox's tick history: REST ``/v3/trades`` / ``/v3/quotes`` and the ``trades_v1`` / ``quotes_v1``
flat files, over real sockets, checked against the market generator's ticks, against the WebSocket
events built from the same ticks, against each other, and through the official ``massive`` client."""

from __future__ import annotations

import gzip
import io
import json
import urllib.error
import urllib.request
from datetime import date, datetime, timezone
from typing import Any, Iterator
from urllib.parse import urlencode

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.config import Config

from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.market import TICK_FIELDS
from massive_feeds.sandbox.ws_feed import TickFeed
from massive_feeds.schema import NEW_YORK

DAY = date(2024, 3, 5)  # a Tuesday; the clock sits on the Wednesday after
NEXT = date(2024, 3, 6)
CLOCK = datetime(2024, 3, 6, 15, 30, tzinfo=timezone.utc)  # 10:30 New York


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(date(2024, 3, 4), DAY), clock_start=CLOCK) as sandbox:
        yield sandbox


def get(sb: Sandbox, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    url = path if path.startswith("http") else f"{sb.rest_url}{path}?{urlencode(params)}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {sb.api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def all_pages(sb: Sandbox, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every row of a paginated query, following next_url; also the number of pages."""
    status, body = get(sb, path, **params)
    assert status == 200, body
    rows, pages = list(body["results"]), 1
    while "next_url" in body:
        assert sb.api_key not in body["next_url"]
        status, body = get(sb, body["next_url"])
        assert status == 200, body
        rows.extend(body["results"])
        pages += 1
    return rows, pages


def ns(day: date, hh: int, mm: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hh, mm, tzinfo=NEW_YORK).timestamp()) * 1_000_000_000


def expected(sb: Sandbox, ticker: str, day: date, kind: str) -> list[dict[str, Any]]:
    """The generator's rows, as plain dicts in time order (the oracle the servers must match)."""
    cols = sb.market.tick_columns(ticker, day, kind)
    names = list(cols.columns)
    lists = [[[c] for c in cols.columns[n].tolist()] if n == "conditions" else cols.columns[n].tolist()
             for n in names]
    return [dict(zip(names, row)) for row in zip(*lists)]


# --- REST: shapes, values, order, pagination ------------------------------------------------------
@pytest.mark.parametrize("ticker,kind", [("AAPL", "trades"), ("AAPL", "quotes"), ("X:BTCUSD", "trades"),
                                         ("C:EURUSD", "quotes"), ("O:SPY251219C00650000", "trades"),
                                         ("O:SPY251219C00650000", "quotes")])
def test_a_day_over_rest_pages_is_exactly_the_generators_ticks(sb: Sandbox, ticker: str, kind: str) -> None:
    want = expected(sb, ticker, DAY, kind)
    assert len(want) > 100
    limit = len(want) // 3 + 1  # three pages, the last one short
    rows, pages = all_pages(sb, f"/v3/{kind}/{ticker}", timestamp=DAY.isoformat(), order="asc", limit=limit)
    assert pages == 3
    assert rows == want
    assert set(rows[0]) == set(TICK_FIELDS[(sb.market.universe[ticker].asset, kind)])


def test_stock_trade_rows_carry_the_spec_fields_with_nanosecond_timestamps(sb: Sandbox) -> None:
    status, body = get(sb, "/v3/trades/AAPL", timestamp=DAY.isoformat(), order="asc", limit=1)
    row = body["results"][0]
    assert status == 200 and body["status"] == "OK" and body["request_id"]
    assert sorted(row) == ["exchange", "id", "participant_timestamp", "price", "sequence_number",
                           "sip_timestamp", "size", "tape"]
    assert ns(DAY, 4) <= row["sip_timestamp"] < ns(DAY, 20)  # pre-market starts at 04:00 New York
    assert 0 < row["sip_timestamp"] - row["participant_timestamp"] < 1_000_000
    assert isinstance(row["id"], str) and isinstance(row["size"], int) and row["tape"] == 3


def test_default_order_is_descending_and_the_reverse_of_ascending(sb: Sandbox) -> None:
    asc, _ = all_pages(sb, "/v3/quotes/AAPL", timestamp=DAY.isoformat(), order="asc", limit=50_000)
    desc, pages = all_pages(sb, "/v3/quotes/AAPL", timestamp=DAY.isoformat(), limit=997)
    assert pages > 1
    assert desc == asc[::-1]


def test_pages_cross_day_boundaries_in_both_orders(sb: Sandbox) -> None:
    lo, hi = ns(date(2024, 3, 4), 19, 30), ns(DAY, 4, 30)  # Monday's after-hours into Tuesday's pre-market
    want = [r for d in (date(2024, 3, 4), DAY) for r in expected(sb, "MSFT", d, "trades")
            if lo <= r["sip_timestamp"] <= hi]
    assert {r["sip_timestamp"] < ns(DAY, 0) for r in want} == {True, False}  # ticks of both days
    asc, pages = all_pages(sb, "/v3/trades/MSFT", **{"timestamp.gte": lo, "timestamp.lte": hi}, order="asc",
                           limit=7)
    assert pages > 2 and asc == want
    desc, _ = all_pages(sb, "/v3/trades/MSFT", **{"timestamp.gte": lo, "timestamp.lte": hi}, limit=7)
    assert desc == want[::-1]


def test_timestamp_filters_at_their_boundaries(sb: Sandbox) -> None:
    rows = expected(sb, "AAPL", DAY, "trades")
    t = rows[500]["sip_timestamp"]
    same = [r for r in rows if r["sip_timestamp"] == t]

    def seqs(**f: Any) -> list[int]:
        got, _ = all_pages(sb, "/v3/trades/AAPL", order="asc", limit=50_000, **f)
        return [r["sequence_number"] for r in got]

    assert seqs(**{"timestamp.gte": t, "timestamp.lte": t}) == [r["sequence_number"] for r in same]
    assert seqs(timestamp=t) == [r["sequence_number"] for r in same]
    assert seqs(**{"timestamp.gt": t, "timestamp.lt": t}) == []
    before = seqs(**{"timestamp.gte": ns(DAY, 0), "timestamp.lt": t})
    assert before == list(range(same[0]["sequence_number"]))
    after = seqs(**{"timestamp.gt": t, "timestamp.lt": ns(NEXT, 0)})
    assert after == list(range(same[-1]["sequence_number"] + 1, len(rows)))


def test_date_filters_mean_new_york_days(sb: Sandbox) -> None:
    day_rows, _ = all_pages(sb, "/v3/trades/AAPL", timestamp=DAY.isoformat(), order="asc", limit=50_000)
    gte_lt, _ = all_pages(sb, "/v3/trades/AAPL", order="asc", limit=50_000,
                          **{"timestamp.gte": DAY.isoformat(), "timestamp.lt": NEXT.isoformat()})
    gte_lte, _ = all_pages(sb, "/v3/trades/AAPL", order="asc", limit=50_000,
                           **{"timestamp.gte": DAY.isoformat(), "timestamp.lte": DAY.isoformat()})
    assert day_rows == gte_lt == gte_lte == expected(sb, "AAPL", DAY, "trades")
    assert ns(DAY, 0) <= day_rows[0]["sip_timestamp"] and day_rows[-1]["sip_timestamp"] < ns(NEXT, 0)


def test_a_page_that_ends_exactly_at_the_last_row_has_no_next_url(sb: Sandbox) -> None:
    n = len(expected(sb, "AAPL", DAY, "quotes"))
    status, exact = get(sb, "/v3/quotes/AAPL", timestamp=DAY.isoformat(), limit=n)
    assert status == 200 and len(exact["results"]) == n and "next_url" not in exact
    status, short = get(sb, "/v3/quotes/AAPL", timestamp=DAY.isoformat(), limit=n - 1, order="asc")
    assert len(short["results"]) == n - 1 and "next_url" in short
    status, rest = get(sb, short["next_url"])
    assert [r["sequence_number"] for r in rest["results"]] == [n - 1] and "next_url" not in rest


def test_limit_bounds_and_bad_parameters_are_400(sb: Sandbox) -> None:
    assert get(sb, "/v3/trades/AAPL", timestamp=DAY.isoformat(), limit=50_000)[0] == 200
    for bad in ({"limit": 50_001}, {"limit": 0}, {"limit": "ten"}, {"order": "up"}, {"sort": "price"},
                {"timestamp.gte": "yesterday"}):
        status, body = get(sb, "/v3/trades/AAPL", **bad)
        assert status == 400 and body["status"] == "ERROR" and body["error"], bad


@pytest.mark.parametrize("path", ["/v3/trades/C:EURUSD", "/v3/quotes/X:BTCUSD", "/v3/trades/I:SPX"])
def test_kinds_an_asset_class_does_not_have_are_not_found(sb: Sandbox, path: str) -> None:
    status, body = get(sb, path)
    assert status == 404 and body["status"] == "NOT_FOUND"


def test_unknown_ticker_is_an_empty_ok_page(sb: Sandbox) -> None:
    assert get(sb, "/v3/trades/NOPE", timestamp=DAY.isoformat())[1]["results"] == []


def test_ticks_after_the_sandbox_clock_do_not_exist_yet(sb: Sandbox) -> None:
    before = sb.clock.now_ms() * 10**6
    rows, _ = all_pages(sb, "/v3/trades/AAPL", timestamp=NEXT.isoformat(), order="asc", limit=50_000)
    after = sb.clock.now_ms() * 10**6
    day = expected(sb, "AAPL", NEXT, "trades")
    assert rows == [r for r in day if r["sip_timestamp"] <= rows[-1]["sip_timestamp"]]
    assert before - 60 * 10**9 <= rows[-1]["sip_timestamp"] <= after  # up to "now" (ticks come every few s)
    assert len(day) > len(rows) + 1000  # the rest of the day exists in the generator, not yet on REST


def test_default_query_returns_the_latest_ticks_first(sb: Sandbox) -> None:
    status, body = get(sb, "/v3/trades/AAPL", limit=3)
    after = sb.clock.now_ms() * 10**6
    today = [r for r in expected(sb, "AAPL", NEXT, "trades") if r["sip_timestamp"] <= after]
    assert status == 200 and "next_url" in body
    first = body["results"][0]["sequence_number"]
    assert [r["sequence_number"] for r in body["results"]] == [first, first - 1, first - 2]
    assert today[-1]["sip_timestamp"] - body["results"][0]["sip_timestamp"] < 60 * 10**9


def test_not_entitled_asset_class_is_403(sb: Sandbox) -> None:
    sb.not_entitled.add("stocks")
    try:
        status, body = get(sb, "/v3/quotes/AAPL")
    finally:
        sb.not_entitled.discard("stocks")
    assert status == 403 and body["status"] == "NOT_AUTHORIZED"


# --- the WebSocket stream carries the same ticks ---------------------------------------------------
def test_websocket_events_are_the_same_ticks_as_rest(sb: Sandbox) -> None:
    lo_ms, hi_ms = ns(DAY, 10) // 10**6, ns(DAY, 10, 20) // 10**6
    events = TickFeed(sb.market).collect("stocks", ["T.AAPL", "Q.AAPL"], lo_ms, hi_ms)
    trades = [e for e in events if e["ev"] == "T"]
    quotes = [e for e in events if e["ev"] == "Q"]
    window = {"timestamp.gt": lo_ms * 10**6, "timestamp.lte": hi_ms * 10**6, "order": "asc", "limit": 50_000}
    rest_t, _ = all_pages(sb, "/v3/trades/AAPL", **window)
    rest_q, _ = all_pages(sb, "/v3/quotes/AAPL", **window)
    assert len(trades) == len(rest_t) > 50 and len(quotes) == len(rest_q)
    assert [(e["t"] * 10**6, e["p"], e["s"], e["x"], e["q"], e["i"], e["z"]) for e in trades] == [
        (r["sip_timestamp"], r["price"], r["size"], r["exchange"], r["sequence_number"], r["id"], r["tape"])
        for r in rest_t]
    assert [(e["t"] * 10**6, e["bp"], e["bs"], e["bx"], e["ap"], e["as"], e["ax"], e["q"]) for e in quotes] == [
        (r["sip_timestamp"], r["bid_price"], r["bid_size"], r["bid_exchange"], r["ask_price"], r["ask_size"],
         r["ask_exchange"], r["sequence_number"]) for r in rest_q]


def test_websocket_crypto_and_forex_events_match_rest(sb: Sandbox) -> None:
    lo_ms, hi_ms = ns(DAY, 9) // 10**6, ns(DAY, 9, 10) // 10**6
    window = {"timestamp.gt": lo_ms * 10**6, "timestamp.lte": hi_ms * 10**6, "order": "asc", "limit": 50_000}
    xt = TickFeed(sb.market).collect("crypto", ["XT.BTC-USD"], lo_ms, hi_ms)
    rest, _ = all_pages(sb, "/v3/trades/X:BTCUSD", **window)
    assert [(e["t"] * 10**6, e["p"], e["s"], e["x"], e["i"], e["c"]) for e in xt] == [
        (r["participant_timestamp"], r["price"], r["size"], r["exchange"], r["id"], r["conditions"]) for r in rest]
    fx = TickFeed(sb.market).collect("forex", ["C.EUR/USD"], lo_ms, hi_ms)
    rest, _ = all_pages(sb, "/v3/quotes/C:EURUSD", **window)
    assert len(fx) > 10
    assert [(e["t"] * 10**6, e["b"], e["a"], e["x"]) for e in fx] == [
        (r["participant_timestamp"], r["bid_price"], r["ask_price"], str(r["bid_exchange"])) for r in rest]


# --- flat files: the same rows ----------------------------------------------------------------------
def s3_get(sb: Sandbox, key: str) -> pd.DataFrame:
    client = boto3.session.Session().client(
        "s3", endpoint_url=sb.s3.endpoint, region_name="us-east-1", aws_access_key_id=sb.s3_access_key_id,
        aws_secret_access_key=sb.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    body = client.get_object(Bucket="flatfiles", Key=key)["Body"].read()
    return pd.read_csv(io.BytesIO(gzip.decompress(body)), dtype={"ticker": str, "id": str})


def test_stock_trade_file_rows_are_the_rest_rows(sb: Sandbox) -> None:
    df = s3_get(sb, "us_stocks_sip/trades_v1/2024/03/2024-03-05.csv.gz")
    assert list(df.columns) == ["ticker", "conditions", "correction", "exchange", "id", "participant_timestamp",
                                "price", "sequence_number", "sip_timestamp", "size", "tape", "trf_id",
                                "trf_timestamp"]
    assert list(df["ticker"]) == sorted(df["ticker"])  # sorted by ticker, each ticker's rows in time order
    rest, _ = all_pages(sb, "/v3/trades/AAPL", timestamp=DAY.isoformat(), order="asc", limit=50_000)
    aapl = df[df["ticker"] == "AAPL"]
    fields = ["exchange", "id", "participant_timestamp", "price", "sequence_number", "sip_timestamp", "size", "tape"]
    assert aapl[fields].to_dict("records") == [{f: r[f] for f in fields} for r in rest]
    assert aapl["conditions"].isna().all() and aapl["trf_timestamp"].isna().all()  # REST omits them too
    assert set(df["ticker"]) == {t for t, i in sb.market.universe.items() if i.asset == "stocks"}


@pytest.mark.parametrize("key,ticker,kind,header", [
    ("us_stocks_sip/quotes_v1/2024/03/2024-03-05.csv.gz", "MSFT", "quotes",
     "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,conditions,indicators,"
     "participant_timestamp,sequence_number,sip_timestamp,tape,trf_timestamp"),
    ("us_options_opra/trades_v1/2024/03/2024-03-05.csv.gz", "O:SPY251219C00650000", "trades",
     "ticker,conditions,correction,exchange,price,sip_timestamp,size"),
    ("us_options_opra/quotes_v1/2024/03/2024-03-05.csv.gz", "O:SPY251219C00650000", "quotes",
     "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,sequence_number,sip_timestamp"),
    ("global_crypto/trades_v1/2024/03/2024-03-05.csv.gz", "X:BTCUSD", "trades",
     "ticker,conditions,exchange,id,participant_timestamp,price,size"),
    ("global_forex/quotes_v1/2024/03/2024-03-05.csv.gz", "C:EURUSD", "quotes",
     "ticker,ask_exchange,ask_price,bid_exchange,bid_price,participant_timestamp"),
])
def test_tick_files_of_every_class_match_rest(sb: Sandbox, key: str, ticker: str, kind: str, header: str) -> None:
    df = s3_get(sb, key)
    assert ",".join(df.columns) == header
    name = "X:BTC-USD" if ticker == "X:BTCUSD" else ticker
    mine = df[df["ticker"] == name].reset_index(drop=True)
    rest, _ = all_pages(sb, f"/v3/{kind}/{ticker}", timestamp=DAY.isoformat(), order="asc", limit=50_000)
    assert len(mine) == len(rest) > 0
    shared = [f for f in rest[0] if f in df.columns]  # options trade files have no participant_timestamp
    assert {"price", "ask_price", "bid_price"} & set(shared) and len(shared) >= len(rest[0]) - 1
    for field in shared:
        got = mine[field].tolist()
        want = [r[field][0] if field == "conditions" else r[field] for r in rest]
        assert got == want, field


def test_tick_files_are_listed_per_month_and_absent_where_the_service_has_none(sb: Sandbox) -> None:
    client = boto3.session.Session().client(
        "s3", endpoint_url=sb.s3.endpoint, region_name="us-east-1", aws_access_key_id=sb.s3_access_key_id,
        aws_secret_access_key=sb.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def listed(prefix: str) -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket="flatfiles", Prefix=prefix).get("Contents", [])]

    assert listed("us_stocks_sip/trades_v1/2024/03/") == [
        "us_stocks_sip/trades_v1/2024/03/2024-03-04.csv.gz", "us_stocks_sip/trades_v1/2024/03/2024-03-05.csv.gz"]
    assert listed("global_forex/trades_v1/2024/03/") == []
    assert listed("global_crypto/quotes_v1/2024/03/") == []
    assert listed("us_indices/trades_v1/2024/03/") == []
    assert listed("us_stocks_sip/quotes_v1/2024/02/") == []  # outside the sandbox's s3_days


# --- the official client ------------------------------------------------------------------------------
def test_official_client_list_trades_and_list_quotes_work_unchanged(sb: Sandbox) -> None:
    from massive import RESTClient

    client = RESTClient(api_key=sb.api_key, base=sb.rest_url, retries=0)
    trades = list(client.list_trades("AAPL", timestamp_gte=DAY, timestamp_lt=NEXT, order="asc", limit=1000))
    want = expected(sb, "AAPL", DAY, "trades")
    assert len(trades) == len(want) > 1000  # several pages followed through next_url
    assert [(t.sip_timestamp, t.price, t.size, t.exchange, t.sequence_number, t.id) for t in trades] == [
        (r["sip_timestamp"], r["price"], r["size"], r["exchange"], r["sequence_number"], r["id"]) for r in want]
    quotes = list(client.list_quotes("AAPL", timestamp=DAY.isoformat(), limit=50_000))
    wantq = expected(sb, "AAPL", DAY, "quotes")[::-1]
    assert [(q.sip_timestamp, q.bid_price, q.ask_price, q.bid_size, q.ask_size) for q in quotes] == [
        (r["sip_timestamp"], r["bid_price"], r["ask_price"], r["bid_size"], r["ask_size"]) for r in wantq]
    fx = list(client.list_quotes("C:EURUSD", timestamp_gte=ns(DAY, 9), timestamp_lt=ns(DAY, 10), order="asc"))
    assert fx and np.all(np.diff([q.participant_timestamp for q in fx]) >= 0) and fx[0].ask_exchange == 48


def test_stock_trades_print_at_the_touch_by_the_tick_rule() -> None:
    from datetime import date

    import numpy as np

    from massive_feeds.sandbox.market import MarketGenerator

    tk = MarketGenerator().ticks("AAPL", date(2024, 3, 5))
    at_ask, at_bid = tk.price == tk.ask, tk.price == tk.bid
    assert (at_ask ^ at_bid).all()  # before: every print sat exactly at the mid
    up = np.r_[False, np.diff(tk.price) > 0]
    down = np.r_[False, np.diff(tk.price) < 0]
    assert at_ask[up].all() and at_bid[down].all()  # an uptick takes the ask, a downtick hits the bid
    assert 0.3 < at_ask.mean() < 0.7
    fx = MarketGenerator().ticks("C:EURUSD", date(2024, 3, 5))
    assert np.allclose((fx.bid + fx.ask) / 2, fx.price, atol=1e-4)  # forex quotes stay centred on the price
