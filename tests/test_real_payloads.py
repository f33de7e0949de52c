"""Real captured Massive/Polygon payloads (``tests/fixtures/real``, see its PROVENANCE.md) as the oracle.

Two halves:

* our parsers read every real payload to numbers checked by hand here (REST pages and error bodies
  served over a real local socket, WebSocket frames through the frame parser, day-file CSVs through
  the flat-file reader);
* the sandbox speaks the same forms: its REST bodies, WebSocket frames and CSV headers are compared
  with the fixtures key by key (keys, value types, units: ms vs ns).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import shutil
import threading
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, parse_qsl, urlsplit

import boto3
import orjson
import pytest
import requests
from botocore.config import Config
from websockets.sync.client import connect

from massive_feeds.config import load_settings
from massive_feeds.errors import AuthenticationError, BadResponseError, NotEntitledError, RateLimitError
from massive_feeds.flatfiles.reader import bars_from_tables, convert_day_file, file_forms
from massive_feeds.rest import RestClient, RetryPolicy
from massive_feeds.rest.aggs import parse_aggs
from massive_feeds.rest.reference import parse_server_time, server_time_ms
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.dayfiles import day_key
from massive_feeds.schema import parse_date_range, parse_interval
from massive_feeds.splits import splits_frame
from massive_feeds.stream import events as E
from massive_feeds.stream.protocol import FrameParser, status_text

REAL = Path(__file__).parent / "fixtures" / "real"
UTC = timezone.utc
ONE_TRY = RetryPolicy(max_attempts=1, base=0.0, cap=0.0)


def real(name: str) -> bytes:
    return (REAL / name).read_bytes()


def real_json(name: str) -> Any:
    return orjson.loads(real(name))


SPEC = json.loads((REAL / "ws" / "spec_examples.json").read_text())


# ==================================================================================================
# Part 1: our parsers on real payloads
# ==================================================================================================
class _Replay(BaseHTTPRequestHandler):
    """Answers with the captured body registered for the request's path+query (or its status)."""

    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        parts = urlsplit(self.path)
        self.seen.append(self.path)
        status, body = self.routes.get(self.path) or self.routes.get(parts.path) or (404, b"")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[tuple[str, dict[str, tuple[int, bytes]], list[str]]]:
    """A local HTTP server replaying captured bodies; yields (base_url, routes, seen paths)."""
    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[str] = []
    handler = type("Handler", (_Replay,), {"routes": routes, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # poll 0.05 s: shutdown() waits up to one poll (default 0.5 s)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes, seen
    finally:
        server.shutdown()
        server.server_close()


def _client(base: str, tmp_path: Path) -> RestClient:
    settings = load_settings(environ={"MASSIVE_API_KEY": "replay-key", "MASSIVE_REST_URL": base},
                             home=tmp_path / "home", plan="unlimited")
    return RestClient(settings, retry=ONE_TRY)


def test_real_aggs_page_pretty_printed_with_float_volumes() -> None:
    page = parse_aggs(real("rest/aggs_AAPL_1_day_2005-04-01_2005-04-04.json"))
    cols = page.columns
    assert (page.status, page.ticker, page.request_id, page.next_url) == \
        ("OK", "AAPL", "12afda77aab3b1936c5fb6ef4241ae42", None)
    assert page.size == 2
    # 1112331600000 ms = 2005-04-01 05:00 UTC = midnight New York (EST); 1112587200000 = 2005-04-04 04:00
    # UTC = midnight New York (EDT began on 2005-04-03): day bars start at midnight ET.
    stamps = [datetime.fromtimestamp(t / 1000, UTC) for t in cols["timestamp"]]
    assert stamps == [datetime(2005, 4, 1, 5, tzinfo=UTC), datetime(2005, 4, 4, 4, tzinfo=UTC)]
    assert cols["open"].tolist() == [1.5032, 1.4639] and cols["close"].tolist() == [1.4604, 1.4675]
    assert cols["high"].tolist() == [1.5064, 1.4754] and cols["low"].tolist() == [1.4489, 1.4343]
    assert cols["volume"].tolist() == [642646396.0, 578172308.0]  # sent as floats ("642646396.0")
    assert cols["vwap"].tolist() == [1.469, 1.4589] and cols["transactions"].tolist() == [82132, 65543]


def test_real_aggs_next_url_is_followed_on_our_own_host(replay: Any, tmp_path: Path) -> None:
    """The spec's page carries ``next_url`` on api.massive.com with ``from`` in ms, ``to`` still a date
    and a base64 query-string cursor; we follow its path and query on our own base URL."""
    spec_page = real("rest/aggs_spec_example_next_url.json")
    page = parse_aggs(spec_page)
    next_url = page.next_url
    assert next_url is not None
    parts = urlsplit(next_url)
    assert parts.netloc == "api.massive.com"
    assert parts.path == "/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10"
    cursor = parse_qs(parts.query)["cursor"][0]
    assert base64.urlsafe_b64decode(cursor + "==").decode() == "limit=2&sort=asc"
    # 1577941200000 ms = 2020-01-02 05:00 UTC (midnight ET); 1578114000000 = 2020-01-04 05:00 UTC.
    assert page.columns["timestamp"].tolist() == [1577941200000, 1578027600000]
    assert page.columns["volume"].tolist() == [135647456.0, 146535512.0]

    base, routes, seen = replay
    last = orjson.loads(spec_page)
    del last["next_url"]
    last["results"] = [{"c": 74.95, "h": 75.144, "l": 74.125, "n": 1, "o": 74.29, "t": 1578114000000,
                        "v": 108872000, "vw": 74.7}]
    last["resultsCount"] = last["queryCount"] = 1  # the service counts the bars of each page
    routes["/v2/aggs/ticker/AAPL/range/1/day/2020-01-02/2020-01-10"] = (200, spec_page)
    routes[f"{parts.path}?{parts.query}"] = (200, orjson.dumps(last))
    with _client(base, tmp_path) as client:
        pages = list(client.paginate("/v2/aggs/ticker/AAPL/range/1/day/2020-01-02/2020-01-10", None,
                                     parse_aggs, lambda p: p.next_url))
    assert [p.size for p in pages] == [2, 1]
    assert seen[-1] == f"{parts.path}?{parts.query}"  # the host api.massive.com was not contacted

    # The observed real next_url (polygon-io/issues#303): same cursor form, from in ms, to a date.
    observed = urlsplit(real("rest/aggs_next_url_observed.txt").decode().strip())
    assert observed.path.endswith("/1658156340000/2023-02-03")
    token = parse_qs(observed.query)["cursor"][0]
    assert dict(parse_qsl(base64.urlsafe_b64decode(token + "==").decode())) == {"limit": "5000", "sort": "asc"}


def test_real_aggs_cursor_repeats_across_pages_without_tripping_the_loop_guard(replay: Any, tmp_path: Path) -> None:
    """The real aggs cursor is identical on every page (the position is the path's ``from``); a loop
    guard keyed on the cursor alone would stop a real three-page fetch."""
    base, routes, _ = replay
    body = real_json("rest/aggs_spec_example_next_url.json")
    cursor = parse_qs(urlsplit(body["next_url"]).query)["cursor"][0]
    pages = []
    for i, start in enumerate((1577941200000, 1578114000000, 1578373200000)):
        page = {**body, "results": [{**body["results"][0], "t": start}], "resultsCount": 1, "queryCount": 1}
        if i < 2:
            nxt = (1578114000000, 1578373200000)[i]
            page["next_url"] = f"https://api.massive.com/v2/aggs/ticker/AAPL/range/1/day/{nxt}/2020-01-10?cursor={cursor}"
        else:
            page.pop("next_url")
        pages.append(page)
    routes["/v2/aggs/ticker/AAPL/range/1/day/2020-01-02/2020-01-10"] = (200, orjson.dumps(pages[0]))
    routes[f"/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10?cursor={cursor}"] = (200, orjson.dumps(pages[1]))
    routes[f"/v2/aggs/ticker/AAPL/range/1/day/1578373200000/2020-01-10?cursor={cursor}"] = (200, orjson.dumps(pages[2]))
    with _client(base, tmp_path) as client:
        got = list(client.paginate("/v2/aggs/ticker/AAPL/range/1/day/2020-01-02/2020-01-10", None,
                                   parse_aggs, lambda p: p.next_url))
    assert [int(p.columns["timestamp"][0]) for p in got] == [1577941200000, 1578114000000, 1578373200000]


def test_real_tickers_two_pages(replay: Any, tmp_path: Path) -> None:
    base, routes, seen = replay
    first = real("rest/tickers_page1.json")
    nxt = urlsplit(orjson.loads(first)["next_url"])
    assert nxt.netloc == "api.massive.com" and nxt.path == "/v3/reference/tickers"
    routes["/v3/reference/tickers"] = (200, first)
    routes[f"{nxt.path}?{nxt.query}"] = (200, real("rest/tickers_page2.json"))
    with _client(base, tmp_path) as client:
        rows = list(client.list_json("/v3/reference/tickers", {"limit": 2}))
    assert [r["ticker"] for r in rows] == ["A", "AA", "AAA", "AAAU"]
    assert rows[0]["primary_exchange"] == "XNYS" and rows[2]["type"] == "ETF"
    assert "cik" not in rows[2]  # optional keys really are absent sometimes
    assert len(seen) == 2  # page 2 has no next_url: the walk stops


def test_real_market_status_server_time(replay: Any, tmp_path: Path) -> None:
    body = real_json("rest/marketstatus_now.json")
    assert body["serverTime"] == "2022-04-28T16:48:08-04:00"
    # 16:48:08 New York daylight time (UTC-4) is 20:48:08 UTC: 1651178888 s after the epoch
    assert parse_server_time(body) == 1_651_178_888_000
    base, routes, seen = replay
    routes["/v1/marketstatus/now"] = (200, real("rest/marketstatus_now.json"))
    with _client(base, tmp_path) as client:
        assert server_time_ms(client) == 1_651_178_888_000
    assert seen == ["/v1/marketstatus/now"]
    for bad in ({}, {"serverTime": "2022-04-28T16:48:08"}, {"serverTime": "soon"}, {"serverTime": 1651178888},
                {"serverTime": ""}, []):
        with pytest.raises(BadResponseError, match="serverTime"):
            parse_server_time(bad)


def test_real_splits_rows_parse() -> None:
    body = real_json("rest/splits.json")
    table = splits_frame(body["results"])
    googl = table[table["ticker"] == "GOOGL"].iloc[0]
    assert googl["execution_date"] == datetime(2022, 7, 18) and (googl["split_from"], googl["split_to"]) == (1, 20)
    brw = table[table["ticker"] == "BRW"].iloc[0]
    assert (brw["split_from"], brw["split_to"]) == (2.0, 1.0)  # a reverse split
    cig = table[table["ticker"] == "CIG.C"].iloc[0]
    assert cig["split_to"] / cig["split_from"] == pytest.approx(4 / 3)
    assert table["split_from"].dtype == "float64" and table["id"].tolist().count("") == len(table)  # no ids here
    shop = table[table["ticker"] == "SHOP"]
    assert set(shop["split_to"] / shop["split_from"]) == {10.0}
    assert {"GOOG", "GOOGL", "CTO", "SHOP", "DXCM", "AMZN", "BRW", "CM", "CIG.C"} == set(table["ticker"])


@pytest.mark.parametrize(("name", "status", "error", "request_id", "text"), [
    ("rest/error_401_unknown_key.json", 401, AuthenticationError, None, "Unknown API Key"),
    ("rest/error_403_not_entitled.json", 403, NotEntitledError, "a32cba9885e469366c897fb0656b1ee1",
     "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing"),
    ("rest/error_403_today_before_eod.json", 403, NotEntitledError, "889c5f07cc40f464b68f8a87098b170e",
     "Attempted to request today's data before end of day."),
    ("rest/error_429_rate_limit.json", 429, RateLimitError, None,
     "You've exceeded the maximum requests per minute"),
])
def test_real_error_bodies_become_typed_errors(replay: Any, tmp_path: Path, name: str, status: int,
                                               error: type, request_id: str | None, text: str) -> None:
    base, routes, _ = replay
    routes["/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05"] = (status, real(name))
    with _client(base, tmp_path) as client, pytest.raises(error) as info:
        client.request("/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-05")
    exc = info.value
    assert exc.status == status and exc.request_id == request_id
    assert exc.server_message is not None and exc.server_message.startswith(text)
    shown = str(exc)
    assert text in shown and f"HTTP {status}" in shown
    assert (f"request_id={request_id}" in shown) == (request_id is not None)
    assert "replay-key" not in shown and "replay-key" not in repr(exc)


# --- WebSocket frames -----------------------------------------------------------------------------
def _one(market: str, channel: str) -> E.StreamEvent:
    rows, statuses = FrameParser(market).parse(orjson.dumps(SPEC[market][channel]), 7)
    assert statuses == [] and len(rows) == 1
    return E.as_event(rows[0])


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_real_stock_and_option_frames() -> None:
    t = _one("stocks", "T")
    assert (t.kind, t.symbol, t.price, t.size, t.exchange) == ("trade", "MSFT", 114.125, 100, 4)
    assert t.time == datetime(2018, 9, 4, 4, 53, 38, 784000, tzinfo=UTC)  # 1536036818784 ms
    q = _one("stocks", "Q")
    assert (q.kind, q.bid, q.ask, q.bid_size, q.ask_size, q.exchange) == ("quote", 114.125, 114.128, 100, 160, 4)
    a = _one("stocks", "A")
    assert (a.kind, a.symbol, a.open, a.high, a.low, a.close, a.volume, a.vwap) == \
        ("agg_second", "SPCE", 25.39, 25.39, 25.39, 25.39, 200, 25.3981)
    assert a.end_ms - a.time_ms == 1000 and a.time == datetime(2021, 1, 8, 22, 27, 48, tzinfo=UTC)
    am = _one("stocks", "AM")
    assert (am.kind, am.symbol, am.volume, am.close) == ("agg_minute", "GTE", 4110, 0.4486)
    assert am.end_ms - am.time_ms == 60_000 and am.time == datetime(2021, 1, 8, 22, 24, tzinfo=UTC)
    ot = _one("options", "T")
    assert (ot.symbol, ot.price, ot.size, ot.exchange) == ("O:AMC210827C00037000", 1.54, 1, 65)
    oq = _one("options", "Q")
    assert (oq.symbol, oq.bid, oq.ask, oq.bid_size, oq.ask_size, oq.exchange) == \
        ("O:SPY241220P00720000", 9.71, 9.81, 17, 24, 302)
    # The spec's options "A" example really carries ev "AM" (a per-minute bar).
    oa = _one("options", "A")
    assert oa.kind == "agg_minute" and oa.symbol == "O:ONEM220121C00025000" and oa.volume == 2


def test_real_index_frames_have_no_volume() -> None:
    v = _one("indices", "V")
    assert (v.kind, v.symbol, v.price) == ("value", "I:SPX", 3988.5) and v.time == _utc(1678220098130)
    am = _one("indices", "AM")
    assert (am.symbol, am.open, am.close) == ("I:SPX", 3985.67, 3985.67)
    assert math.isnan(am.volume) and math.isnan(am.vwap)


def test_real_forex_frames_exchange_string_becomes_int() -> None:
    c = _one("forex", "C")
    assert (c.kind, c.symbol, c.bid, c.ask) == ("quote", "C:USDCNH", 6.83363, 6.83366)
    assert c.exchange == 44 and type(c.exchange) is int  # the wire sends "44"
    assert math.isnan(c.bid_size) and c.time == _utc(1536036818784)
    ca = _one("forex", "CA")
    assert (ca.kind, ca.symbol, ca.open, ca.close, ca.volume) == ("agg_minute", "C:USDEUR", 0.8687, 0.86889, 20)
    cas = _one("forex", "CAS")
    assert cas.kind == "agg_second" and cas.high == 0.86889 and cas.low == 0.8686


def test_real_crypto_frames() -> None:
    xt = _one("crypto", "XT")
    assert (xt.kind, xt.symbol, xt.price, xt.size, xt.exchange) == ("trade", "X:BTCUSD", 33021.9, 0.01616617, 3)
    assert xt.time == _utc(1610462007425)
    # The trade id "i" arrives as an int in the spec and as a string per the official client's model
    # (and the live feed); either way the event is the same: we do not carry the id.
    as_string = [{**SPEC["crypto"]["XT"][0], "i": "14272084"}]
    again = E.as_event(FrameParser("crypto").parse(orjson.dumps(as_string), 7)[0][0])
    assert again == xt and type(again.exchange) is int
    xq = _one("crypto", "XQ")
    assert (xq.bid, xq.ask, xq.bid_size, xq.ask_size, xq.exchange) == (33052.79, 33073.19, 0.48, 0.601, 1)
    xa = _one("crypto", "XA")
    assert (xa.kind, xa.symbol, xa.volume, xa.vwap) == ("agg_minute", "X:BCDUSD", 951.6112, 0.7756)
    assert xa.end_ms - xa.time_ms == 60_000
    assert _one("crypto", "XAS").kind == "agg_second"


def test_real_trade_without_conditions_parses() -> None:
    frame = [{k: v for k, v in SPEC["stocks"]["T"][0].items() if k != "c"}]
    rows, _ = FrameParser("stocks").parse(orjson.dumps(frame), 7)
    assert E.as_event(rows[0]) == _one("stocks", "T")


def test_real_status_frames() -> None:
    parser = FrameParser("crypto")
    for name, expected in (("ws/status_connected.json", ("connected", "Connected Successfully")),
                           ("ws/status_auth_failed.json", ("auth_failed", "authentication failed"))):
        rows, statuses = parser.parse(real(name), 1)
        assert rows == [] and [status_text(s) for s in statuses] == [expected]
    rows, statuses = parser.parse(orjson.dumps(SPEC["status"]["DisconnectEvent"]), 1)
    assert [status_text(s) for s in statuses] == [("max_connections", "Maximum number of connections exceeded.")]


# --- flat files -------------------------------------------------------------------------------------
def _day_bars(tmp_path: Path, name: str, ticker: str, day: str, interval: str) -> Any:
    gz = tmp_path / (name + ".gz")
    with open(REAL / "flatfiles" / name, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    forms = file_forms([ticker])
    table = convert_day_file(gz, tmp_path / (name + ".parquet"), forms, name)
    return bars_from_tables([(table, forms)], parse_date_range(day, day), parse_interval(interval))


def test_real_options_day_file_rows(tmp_path: Path) -> None:
    bars = _day_bars(tmp_path, "options_day_aggs_sample.csv", "O:SPY230327P00390000", "2023-03-13", "1d")
    assert len(bars) == 1
    row = bars.iloc[0]
    # window_start 1678680000000000000 ns = 2023-03-13 04:00 UTC = midnight New York (EDT from 03-12)
    assert row["timestamp"] == datetime(2023, 3, 13, 4, tzinfo=UTC)
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"], row["transactions"]) == \
        (11.82, 11.82, 8.09, 9.83, 200.0, 62)
    # the other two rows are another day (03-27): not in this window
    assert set(bars["symbol"]) == {"O:SPY230327P00390000"}


def test_real_index_minute_file_without_volume(tmp_path: Path) -> None:
    bars = _day_bars(tmp_path, "indices_minute_aggs_sample.csv", "I:AAVE100", "2023-03-28", "1min")
    assert len(bars) == 5
    # 1679988600000000000 ns = 2023-03-28 07:30 UTC (03:30 New York)
    assert bars["timestamp"].iloc[0] == datetime(2023, 3, 28, 7, 30, tzinfo=UTC)
    assert (bars["timestamp"].diff().dropna() == pd_minute()).all()
    assert bars["open"].iloc[0] == 69.8616 and bars["close"].iloc[3] == 69.8414  # "69.84140000000000"
    assert bars["volume"].isna().all() and (bars["transactions"] == 0).all()


def pd_minute() -> Any:
    import pandas as pd

    return pd.Timedelta(minutes=1)


# ==================================================================================================
# Part 2: the sandbox speaks the real forms
# ==================================================================================================
S3_DAY = date(2024, 3, 5)  # a Tuesday


@pytest.fixture(scope="module")
def wire_sandbox() -> Iterator[Sandbox]:
    with Sandbox(rest=True, websocket=True, s3=True, s3_days=(S3_DAY, S3_DAY), clock_speed=60) as sb:
        yield sb


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _assert_same_form(name: str, real_obj: dict, ours: dict, *, optional: set[str] = frozenset(),  # type: ignore[assignment]
                      ints: set[str] = frozenset(), ms: set[str] = frozenset(),  # type: ignore[assignment]
                      any_kind: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """``ours`` has the real object's keys (less documented optional ones, plus nothing unknown),
    the same JSON value kinds, integers where the real one has integers, and ms timestamps."""
    missing = set(real_obj) - set(ours) - optional
    extra = set(ours) - set(real_obj) - optional
    assert not missing and not extra, f"{name}: missing {sorted(missing)}, unknown {sorted(extra)}"
    for key in set(real_obj) & set(ours) - any_kind:
        assert _kind(ours[key]) == _kind(real_obj[key]), f"{name}.{key}: {ours[key]!r} vs real {real_obj[key]!r}"
        if key in ints:
            assert type(ours[key]) is int, f"{name}.{key} should be an int: {ours[key]!r}"
    for key in ms & set(ours):
        assert 10**12 <= ours[key] < 10**13, f"{name}.{key} is not epoch ms: {ours[key]}"


def test_sandbox_rest_bodies_match_the_real_forms(wire_sandbox: Sandbox) -> None:
    sb = wire_sandbox
    headers = {"Authorization": f"Bearer {sb.api_key}"}
    real_aggs = real_json("rest/aggs_AAPL_1_day_2005-04-01_2005-04-04.json")
    first = sb.clock.now().date().replace(day=1)
    url = f"{sb.rest.url}/v2/aggs/ticker/AAPL/range/1/minute/{first.isoformat()}/{sb.clock.now().date().isoformat()}"
    body = requests.get(url, params={"limit": 50}, headers=headers, timeout=10).json()
    envelope = {k: v for k, v in body.items() if k not in ("results", "next_url")}
    _assert_same_form("aggs", {k: v for k, v in real_aggs.items() if k != "results"}, envelope)
    for bar in body["results"][:5]:
        _assert_same_form("aggs.results[]", real_aggs["results"][0], bar, ints={"t", "n"}, ms={"t"})
    # next_url: the service's own host, from rewritten to ms, to kept as the date, base64 query cursor
    nxt = urlsplit(body["next_url"])
    real_next = urlsplit(real_json("rest/aggs_spec_example_next_url.json")["next_url"])
    assert nxt.path.rsplit("/", 2)[-1] == sb.clock.now().date().isoformat()
    assert nxt.path.rsplit("/", 2)[-2].isdigit() and len(nxt.path.rsplit("/", 2)[-2]) == 13
    assert real_next.path.rsplit("/", 2)[-2].isdigit() and not real_next.path.rsplit("/", 2)[-1].isdigit()
    token = parse_qs(nxt.query)["cursor"][0]
    assert dict(parse_qsl(base64.urlsafe_b64decode(token + "==").decode())) == {"limit": "50", "sort": "asc"}
    assert f"{nxt.scheme}://{nxt.netloc}" == sb.rest.url and sb.api_key not in body["next_url"]
    # following it gives the next bars, without gaps or overlap
    page2 = requests.get(body["next_url"], headers=headers, timeout=10).json()
    whole = requests.get(url, params={"limit": 100}, headers=headers, timeout=10).json()
    assert body["results"] + page2["results"][:50] == whole["results"][:100]

    real_splits = real_json("rest/splits.json")
    splits = requests.get(f"{sb.rest.url}/v3/reference/splits", params={"limit": 5}, headers=headers,
                          timeout=10).json()
    _assert_same_form("splits", {k: v for k, v in real_splits.items() if k != "results"},
                      {k: v for k, v in splits.items() if k != "results"}, optional={"next_url", "count"})
    for row in splits["results"]:
        _assert_same_form("splits.results[]", real_splits["results"][0], row, optional={"id"},
                          ints={k for k in ("split_from", "split_to") if float(row[k]).is_integer()})

    real_tickers = real_json("rest/tickers_page1.json")
    tickers = requests.get(f"{sb.rest.url}/v3/reference/tickers", params={"limit": 2}, headers=headers,
                           timeout=10).json()
    _assert_same_form("tickers", real_tickers, {**tickers, "results": tickers["results"]})
    optional_ticker_keys = {"cik", "composite_figi", "share_class_figi", "primary_exchange", "type"}
    for row in tickers["results"]:
        _assert_same_form("tickers.results[]", real_tickers["results"][0], row, optional=optional_ticker_keys)

    before = sb.clock.now_ms()
    status = requests.get(f"{sb.rest.url}/v1/marketstatus/now", headers=headers, timeout=10).json()
    after = sb.clock.now_ms()
    _assert_same_form("marketstatus", real_json("rest/marketstatus_now.json"), status)
    # the sandbox's clock with its UTC offset, to the second as the real one
    assert before - 1_000 < parse_server_time(status) <= after


@pytest.mark.parametrize(("fixture", "status", "fault"), [
    ("rest/error_401_unknown_key.json", 401, "bad-key"),
    ("rest/error_403_not_entitled.json", 403, 403),
    ("rest/error_429_rate_limit.json", 429, 429),
])
def test_sandbox_error_bodies_match_the_real_ones(wire_sandbox: Sandbox, fixture: str, status: int,
                                                  fault: Any) -> None:
    sb = wire_sandbox
    key = "not-a-key" if fault == "bad-key" else sb.api_key
    if fault != "bad-key":
        sb.faults.queue(fault)
    try:
        resp = requests.get(f"{sb.rest.url}/v3/reference/tickers", headers={"Authorization": f"Bearer {key}"},
                            timeout=10)
    finally:
        sb.faults.reset()
    assert resp.status_code == status
    ours, theirs = resp.json(), real_json(fixture)
    _assert_same_form(fixture, theirs, ours, optional={"request_id"})
    assert ours == {**theirs, "request_id": ours["request_id"]}  # same status word, key and text
    assert len(ours["request_id"]) == 32 and int(ours["request_id"], 16) >= 0


# --- WebSocket --------------------------------------------------------------------------------------
_WS_OPTIONAL = {
    "T": {"c", "i", "z", "trfi", "trft", "ds"},  # no "c" without conditions; options T has no i/z
    "Q": {"c", "i", "z"},
    "A": {"av", "op", "vw", "a", "z", "v", "otc"},  # indices carry none of these
    "AM": {"av", "op", "vw", "a", "z", "v", "otc"},
    "XT": {"c"},
    "CA": {"e"},  # documented (window end) though the spec's example omits it
    "CAS": {"e"},
}
_WS_INTS = {"x", "bx", "ax", "q", "t", "s", "e", "r"}  # not "z": tape on T/Q, avg size on aggs
_WS_MS = {"t", "r"}


def _collect(sb: Sandbox, market: str, params: str, wanted: set[str]) -> dict[str, dict]:
    got: dict[str, dict] = {}
    with connect(f"{sb.ws.url}/{market}", open_timeout=10) as ws:
        assert orjson.loads(ws.recv(timeout=10)) == [{"ev": "status", "status": "connected",
                                                       "message": "Connected Successfully"}]
        ws.send(orjson.dumps({"action": "auth", "params": sb.api_key}).decode())
        assert orjson.loads(ws.recv(timeout=10))[0]["status"] == "auth_success"
        ws.send(orjson.dumps({"action": "subscribe", "params": params}).decode())
        while set(got) != wanted:
            for item in orjson.loads(ws.recv(timeout=20)):
                if item["ev"] in wanted:
                    got.setdefault(item["ev"], item)
    return got


@pytest.mark.parametrize(("market", "params", "symbol"), [
    ("stocks", "T.AAPL,Q.AAPL,A.AAPL,AM.AAPL", "AAPL"),
    ("options", "T.O:SPY251219C00650000,Q.O:SPY251219C00650000,AM.O:SPY251219C00650000", None),
    ("indices", "V.I:SPX,A.I:SPX,AM.I:SPX", None),
    ("forex", "C.EUR/USD,CA.EUR/USD,CAS.EUR/USD", None),
    ("crypto", "XT.BTC-USD,XQ.BTC-USD,XA.BTC-USD,XAS.BTC-USD", None),
])
def test_sandbox_frames_match_the_real_forms(wire_sandbox: Sandbox, market: str, params: str,
                                             symbol: str | None) -> None:
    wanted = {p.split(".", 1)[0] for p in params.split(",")}
    got = _collect(wire_sandbox, market, params, wanted)
    for ev, ours in got.items():
        spec = SPEC[market].get(ev) or SPEC[market]["A"]
        theirs = dict(spec[0])
        if market == "options" and ev == "AM":
            theirs = SPEC["options"]["AM"][0]
        ints = _WS_INTS - ({"x"} if ev == "C" else set()) - ({"s"} if ev in ("T", "XT", "XQ", "Q") else set())
        _assert_same_form(f"{market}.{ev}", theirs, ours, optional=_WS_OPTIONAL.get(ev, set()),
                          ints=ints, ms=_WS_MS | ({"s", "e"} if ev not in ("T", "Q", "XT", "XQ", "C", "V") else set()),
                          # XT "i": an int in the spec's example, a string in the official client's model
                          # and on the live feed (issue 13); checked below.
                          any_kind={"i"} if ev == "XT" else set())
        if ev == "C":
            assert isinstance(ours["x"], str) and ours["x"].isdigit()  # as the real "44"
        if ev == "XT":
            assert isinstance(ours["i"], str)
        if ev == "T":
            assert "c" not in ours or ours["c"], "a trade without conditions omits 'c' (never 'c': [])"
        # and our own parser reads the sandbox's frame
        rows, _ = FrameParser(market).parse(orjson.dumps([ours]), 1)
        assert len(rows) == 1


def test_sandbox_status_frames_match_the_real_ones(wire_sandbox: Sandbox) -> None:
    sb = wire_sandbox
    with connect(f"{sb.ws.url}/crypto", open_timeout=10) as ws:
        assert ws.recv(timeout=10) and True
        ws.send(orjson.dumps({"action": "auth", "params": "wrong"}).decode())
        assert orjson.loads(ws.recv(timeout=10)) == real_json("ws/status_auth_failed.json")
    with connect(f"{sb.ws.url}/forex", open_timeout=10) as older:
        older.recv(timeout=10)
        older.send(orjson.dumps({"action": "auth", "params": sb.api_key}).decode())
        older.recv(timeout=10)
        with connect(f"{sb.ws.url}/forex", open_timeout=10) as newer:
            newer.recv(timeout=10)
            newer.send(orjson.dumps({"action": "auth", "params": sb.api_key}).decode())
            newer.recv(timeout=10)
            frames = []
            while not any(i.get("ev") == "status" for f in frames for i in f):
                frames.append(orjson.loads(older.recv(timeout=10)))
    kicked = [i for f in frames for i in f if i.get("ev") == "status"]
    assert kicked == SPEC["status"]["DisconnectEvent"]


# --- flat-file headers --------------------------------------------------------------------------------
@pytest.mark.parametrize(("asset", "base", "fixture"), [
    ("stocks", "minute", "flatfiles/stocks_minute_aggs_header.csv"),
    ("options", "day", "flatfiles/options_day_aggs_sample.csv"),
    ("indices", "minute", "flatfiles/indices_minute_aggs_sample.csv"),
])
def test_sandbox_day_files_have_the_real_columns_and_units(wire_sandbox: Sandbox, asset: str, base: str,
                                                           fixture: str) -> None:
    sb = wire_sandbox
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=sb.s3.endpoint, region_name="us-east-1", aws_access_key_id=sb.s3_access_key_id,
        aws_secret_access_key=sb.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    body = s3.get_object(Bucket="flatfiles", Key=day_key(asset, base, S3_DAY))["Body"].read()
    lines = gzip.decompress(body).decode().splitlines()
    real_lines = (REAL / fixture).read_text().splitlines()
    assert lines[0] == real_lines[0]
    header = lines[0].split(",")
    ours = dict(zip(header, lines[1].split(","), strict=True))
    ns = int(ours["window_start"])
    assert 10**18 <= ns < 10**19  # nanoseconds, as the real files
    if len(real_lines) > 1:
        theirs = dict(zip(header, real_lines[1].split(","), strict=True))
        assert {k: v.lstrip("-").replace(".", "", 1).isdigit() for k, v in ours.items()} == \
            {k: v.lstrip("-").replace(".", "", 1).isdigit() for k, v in theirs.items()}


# --- futures point values from the products reference ---------------------------------------------------
def test_futures_point_value_from_the_real_products_row_and_a_cents_quoted_one(replay: Any, tmp_path: Path) -> None:
    """``unit_of_measure_qty`` is the contract size; what a price point is worth also depends on
    ``price_quotation``: the spec's EBE row ("U.S. dollars and cents per metric ton", 1000 t) is $1,000 a point,
    while a grain quoted in cents (ZC: 5000 bushels, "U.S. cents per bushel") is 5000 x $0.01 = $50 a point, not
    $5,000 (Backtrader's mult; 100x the P&L before this rule)."""
    from massive_feeds.futures import point_value
    from massive_feeds.runtime import Runtime

    spec = json.loads(real("rest/futures_spec_examples.json"))["/futures/v1/products"]
    ebe = spec["results"][0]
    zc = {**ebe, "product_code": "ZC", "name": "Corn Futures", "price_quotation": "U.S. cents per bushel",
          "unit_of_measure": "BU", "unit_of_measure_qty": 5000, "trading_venue": "XCBT"}
    base, routes, _ = replay
    routes["/futures/v1/products?product_code=EBE"] = (200, orjson.dumps({**spec, "next_url": None}))
    routes["/futures/v1/products?product_code=ZC"] = (200, orjson.dumps({**spec, "next_url": None, "results": [zc]}))
    settings = load_settings(environ={"MASSIVE_API_KEY": "replay-key", "MASSIVE_REST_URL": base},
                             home=tmp_path / "home", plan="unlimited")
    with Runtime():
        assert point_value("EBEZ5", settings) == 1000.0
        assert point_value("ZCZ6", settings) == 50.0
