"""fetch_ohlcv_rest over real sockets to the sandbox: schema, auth, pagination, retries, errors, cache."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_ohlcv_rest
from massive_feeds.cache import wait_for_result_cache
from massive_feeds.config import Settings
from massive_feeds.errors import (
    AuthenticationError,
    BadResponseError,
    InvalidInputError,
    MissingCredentialsError,
    NotEntitledError,
    RateLimitError,
    ServerError,
)
from massive_feeds.rest import RestClient
from massive_feeds.runtime import Runtime
from massive_feeds.sandbox import Sandbox
from massive_feeds.schema import BAR_COLUMNS, parse_date_range

from .conftest import FAST_RETRY

WEEK = ("2024-03-04", "2024-03-08")


def aggs_requests(sandbox: Sandbox) -> int:
    return sandbox.rest.count("/v2/aggs")


def test_bars_have_the_standard_schema(client: RestClient) -> None:
    df = fetch_ohlcv_rest(["AAPL", "MSFT"], *WEEK, "1h", client=client)
    assert list(df.columns) == list(BAR_COLUMNS)
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(df[c].dtype == "float64" for c in ("open", "high", "low", "close", "volume", "vwap"))
    assert df["transactions"].dtype == "int64"
    assert not df.isna().any().any()
    assert df.equals(df.sort_values(["symbol", "timestamp"]).reset_index(drop=True))
    assert not df.duplicated(["symbol", "timestamp"]).any()


def test_returned_frames_are_editable(client: RestClient) -> None:
    """Single-symbol pages come back already sorted, so no reordering copy is made: the columns must still
    not be read-only views of Arrow buffers (``df.loc[...] = x`` raised ValueError)."""
    df = fetch_ohlcv_rest("AAPL", *WEEK, "1h", client=client)
    df.loc[0, "close"] = 1.25
    df.loc[df.index[-1], "volume"] += 1
    assert df.loc[0, "close"] == 1.25


def test_bars_match_the_generated_market(client: RestClient, sandbox: Sandbox) -> None:
    df = fetch_ohlcv_rest("AAPL", "2024-03-05", "2024-03-05", "1m", client=client)
    truth = sandbox.market.minute_bars("AAPL", date(2024, 3, 5))
    np.testing.assert_array_equal(df["timestamp"].astype("int64") // 10**6, truth.t)
    np.testing.assert_array_equal(df["close"], truth.c)
    np.testing.assert_array_equal(df["volume"], truth.v)


def test_range_is_limited_to_the_requested_new_york_days(client: RestClient) -> None:
    df = fetch_ohlcv_rest("X:BTCUSD", "2024-03-05", "2024-03-05", "1h", client=client)
    assert df["timestamp"].min() == pd.Timestamp("2024-03-05 05:00", tz="UTC")
    assert df["timestamp"].max() == pd.Timestamp("2024-03-06 04:00", tz="UTC")


@pytest.mark.parametrize("symbol", ["AAPL", "O:SPY251219C00650000", "I:SPX", "EURUSD", "BTC-USD"])
def test_every_asset_class_returns_bars(client: RestClient, symbol: str) -> None:
    df = fetch_ohlcv_rest(symbol, *WEEK, "1d", client=client)
    assert len(df) >= 5 and (df["high"] >= df["low"]).all()


def test_index_bars_have_no_volume_but_still_valid_dtypes(client: RestClient) -> None:
    df = fetch_ohlcv_rest("I:SPX", *WEEK, "1h", client=client)
    assert df["volume"].isna().all() and df["vwap"].isna().all()
    assert df["transactions"].eq(0).all()


def test_key_travels_in_the_bearer_header_never_in_the_url(client: RestClient, sandbox: Sandbox) -> None:
    sandbox.max_page_bars = 500  # follow a few next_urls too
    before = len(sandbox.rest.requests)
    fetch_ohlcv_rest("AAPL", *WEEK, "1m", client=client, use_cache=False)
    seen = sandbox.rest.requests[before:]
    assert len(seen) > 2
    assert all(r.auth == "bearer" for r in seen)
    assert all(sandbox.api_key not in r.query and "apiKey" not in r.query for r in seen)


def test_pagination_returns_the_same_bars_as_one_page(client: RestClient, sandbox: Sandbox) -> None:
    whole = fetch_ohlcv_rest("MSFT", *WEEK, "1m", client=client, use_cache=False)
    sandbox.max_page_bars = 333
    before = aggs_requests(sandbox)
    paged = fetch_ohlcv_rest("MSFT", *WEEK, "1m", client=client, use_cache=False)
    assert aggs_requests(sandbox) - before == -(-len(whole) // 333)
    pd.testing.assert_frame_equal(whole, paged)


def test_multi_symbol_calls_reuse_their_connections(client: RestClient, sandbox: Sandbox) -> None:
    """Each multi-symbol call used to start a new thread pool, so every call opened new connections (a new
    TCP/TLS handshake per thread against Massive). Now the runtime's pool keeps its threads and their HTTP
    sessions: four calls of three symbols come from at most the pool's four connections (before: twelve)."""
    symbols = ["AAPL", "MSFT", "NVDA"]
    ports: list[int] = []
    with Runtime():  # a fresh runtime: its REST pool starts empty, whatever earlier tests left in the default one
        for _ in range(4):
            before = len(sandbox.rest.requests)
            fetch_ohlcv_rest(symbols, *WEEK, "1h", client=client, use_cache=False)
            ports += [r.client_port for r in sandbox.rest.requests[before:]]
    assert len(ports) == 4 * len(symbols) and 0 not in ports
    assert len(set(ports)) <= 4, sorted(ports)


def test_repeated_cursor_is_detected(client: RestClient, sandbox: Sandbox) -> None:
    sandbox.max_page_bars = 100
    sandbox.faults.repeat_cursor = True
    with pytest.raises(BadResponseError, match="repeated a cursor"):
        fetch_ohlcv_rest("AAPL", *WEEK, "1m", client=client, use_cache=False)


def test_identical_settled_query_is_served_from_cache(client: RestClient, sandbox: Sandbox) -> None:
    first = fetch_ohlcv_rest(["AAPL", "NVDA"], *WEEK, "15m", client=client)
    before = aggs_requests(sandbox)
    used = client.quota.status().rest_used_today
    again = fetch_ohlcv_rest(["AAPL", "NVDA"], *WEEK, "15m", client=client)
    assert aggs_requests(sandbox) == before
    assert client.quota.status().rest_used_today == used
    pd.testing.assert_frame_equal(first, again)


def test_result_cache_entry_lands_on_disk_whole(client: RestClient, sandbox: Sandbox, settings: Settings) -> None:
    first = fetch_ohlcv_rest("AAPL", *WEEK, "30m", client=client)
    [entry] = cache_files(settings)  # written in the background; complete once it has its name
    assert not list((settings.cache_dir / "rest").rglob("*.partial"))
    pd.testing.assert_frame_equal(pd.read_parquet(entry), first)
    before = aggs_requests(sandbox)
    again = fetch_ohlcv_rest("AAPL", *WEEK, "30m", client=client)
    assert aggs_requests(sandbox) == before
    pd.testing.assert_frame_equal(again, first)


@contextlib.contextmanager
def gzip_server(body: bytes, *, cut: bool = False) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP/1.1 server answering every GET with ``body`` as a gzip-encoded 200 (its full length
    announced); ``cut`` sends half of it and closes the connection. Yields (base URL, paths served)."""
    served: list[str] = []

    class Fixed(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
            self.close_connection = cut

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fixed)
    # poll 0.05 s: shutdown() waits up to one poll (default 0.5 s)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def test_broken_gzip_transfer_is_a_server_error_not_a_traceback(settings: Settings) -> None:
    body = gzip.compress(b'{"status":"OK","results":[' + b",".join([b'{"t":1,"o":1,"h":1,"l":1,"c":1,"v":1}'] * 500)
                         + b"]}")
    with gzip_server(body, cut=True) as (url, served):  # the connection closes mid-body
        cut = RestClient(settings.with_overrides(rest_url=url), retry=FAST_RETRY)
        with pytest.raises(ServerError, match="failed"):
            cut.request("/v2/aggs/ticker/AAPL/range/1/day/2024-03-04/2024-03-08")
        assert len(served) == FAST_RETRY.max_attempts  # every attempt was made, each one broke off


@pytest.mark.parametrize("damage", ["none", "two-members", "crc", "cut-inside", "trailing-junk"])
def test_gzip_bodies_are_inflated_whole_or_refused(settings: Settings, damage: str) -> None:
    """Over a real socket: a gzip body in one member or two (valid gzip, which a one-shot inflate would cut
    at the first member, silently dropping the rest) is read whole; a wrong CRC, a body ending inside its
    member (Content-Length honest, so HTTP sees a complete transfer) or junk after it is a ServerError after
    the retries, never a half-read page."""
    text = b'{"status":"OK","results":[' + b",".join(
        b'{"t":%d,"o":1.5,"h":2,"l":1,"c":1.25,"v":100}' % (1_709_562_600_000 + 86_400_000 * i) for i in range(400)
    ) + b"]}"
    third = len(text) // 3
    body = {"none": gzip.compress(text), "two-members": gzip.compress(text[:third]) + gzip.compress(text[third:]),
            "crc": bytearray(gzip.compress(text)), "cut-inside": gzip.compress(text)[:-12],
            "trailing-junk": gzip.compress(text) + b"junk"}[damage]
    if damage == "crc":
        body[-6] ^= 0x01  # one bit of the CRC-32 in the trailer
    with gzip_server(bytes(body)) as (url, served):
        client = RestClient(settings.with_overrides(rest_url=url), retry=FAST_RETRY)
        if damage in ("none", "two-members"):
            page = client.request("/v2/aggs/ticker/AAPL/range/1/day/2024-03-04/2025-03-08")
            assert len(page["results"]) == 400 and page["results"][-1]["t"] == 1_709_562_600_000 + 86_400_000 * 399
        else:
            with pytest.raises(ServerError, match="failed"):
                client.request("/v2/aggs/ticker/AAPL/range/1/day/2024-03-04/2025-03-08")
            assert len(served) == FAST_RETRY.max_attempts


def test_transient_failures_are_retried(client: RestClient, sandbox: Sandbox) -> None:
    sandbox.faults.queue(503, "drop", "malformed")
    df = fetch_ohlcv_rest("AAPL", *WEEK, "1d", client=client, use_cache=False)
    assert len(df) == 5


def test_retry_after_is_honoured(client: RestClient, sandbox: Sandbox) -> None:
    import time

    sandbox.faults.retry_after = 0.4
    sandbox.faults.queue(429)
    t0 = time.monotonic()
    fetch_ohlcv_rest("AAPL", *WEEK, "1d", client=client, use_cache=False)
    assert time.monotonic() - t0 >= 0.4


def test_official_client_reads_the_same_bars(client: RestClient, sandbox: Sandbox) -> None:
    from massive import RESTClient

    ours = fetch_ohlcv_rest("AAPL", *WEEK, "5m", client=client)
    official = RESTClient(api_key=sandbox.api_key, base=sandbox.rest_url, retries=0)
    window = parse_date_range(*WEEK)
    aggs = list(official.list_aggs("AAPL", 5, "minute", window.start.value // 10**6,
                                   (window.end.value - 1) // 10**6, limit=50_000))
    assert [a.timestamp for a in aggs] == list(ours["timestamp"].astype("int64") // 10**6)
    assert [a.close for a in aggs] == list(ours["close"])
    assert [a.volume for a in aggs] == list(ours["volume"])
    assert [a.vwap for a in aggs] == list(ours["vwap"])


# --- bad input: each case gets its typed error and nothing partial is written ---------------------
def cache_files(settings: Settings) -> list[Path]:
    assert wait_for_result_cache(timeout=60)
    return list((settings.cache_dir / "rest").rglob("*.parquet"))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"symbols": "AAPL", "interval": "7m"}, InvalidInputError),
        ({"symbols": "NOT A TICKER"}, InvalidInputError),
        ({"symbols": "AAPL", "start": "2024-03-08", "end": "2024-03-01"}, InvalidInputError),
        ({"symbols": "AAPL", "start": "yesterday-ish"}, InvalidInputError),
    ],
    ids=["interval", "symbol", "end-before-start", "unparseable-date"],
)
def test_bad_input_fails_before_any_request(client: RestClient, sandbox: Sandbox, settings: Settings,
                                             kwargs: dict, error: type) -> None:
    args = {"start": WEEK[0], "end": WEEK[1], "interval": "1h", **kwargs}
    before = aggs_requests(sandbox)
    with pytest.raises(error):
        fetch_ohlcv_rest(args.pop("symbols"), args.pop("start"), args.pop("end"), args.pop("interval"), client=client)
    assert aggs_requests(sandbox) == before
    assert cache_files(settings) == []


@pytest.mark.parametrize(
    "faults, error, status",
    [
        (["malformed"] * 4, BadResponseError, None),
        (["truncate"] * 4, BadResponseError, None),
        ([503] * 4, ServerError, 503),
        (["drop"] * 4, ServerError, None),
        ([429] * 4, RateLimitError, 429),
        ([403], NotEntitledError, 403),
    ],
    ids=["malformed-json", "truncated-json", "5xx-storm", "dropped-connections", "429-storm", "not-entitled"],
)
def test_server_failures_raise_typed_errors_and_write_nothing(client: RestClient, sandbox: Sandbox,
                                                              settings: Settings, faults: list, error: type,
                                                              status: int | None) -> None:
    sandbox.faults.queue(*faults)
    with pytest.raises(error) as err:
        fetch_ohlcv_rest("AAPL", *WEEK, "1h", client=client)
    assert err.value.status == status
    assert cache_files(settings) == []


def test_server_error_carries_request_id_and_message(client: RestClient, sandbox: Sandbox) -> None:
    sandbox.faults.queue(403)
    with pytest.raises(NotEntitledError) as err:
        fetch_ohlcv_rest("AAPL", *WEEK, "1h", client=client)
    assert err.value.request_id and "not entitled" in err.value.server_message


def test_bad_key_is_an_authentication_error_without_the_key(settings: Settings, sandbox: Sandbox) -> None:
    wrong = "wrong-key-0123456789"
    before = aggs_requests(sandbox)
    with RestClient(settings.with_overrides(api_key=wrong), retry=FAST_RETRY) as bad:
        with pytest.raises(AuthenticationError) as err:
            fetch_ohlcv_rest("AAPL", *WEEK, "1h", client=bad)
    assert aggs_requests(sandbox) - before == 1  # a 401 is not retried
    assert err.value.server_message == "Unknown API Key"
    assert wrong not in str(err.value) and wrong not in repr(err.value) and wrong not in repr(bad)


def test_missing_key_is_a_clear_error_not_synthetic_data(sandbox: Sandbox) -> None:
    keyless = dataclasses.replace(sandbox.settings(), api_key=None)
    before = aggs_requests(sandbox)
    with pytest.raises(MissingCredentialsError, match="No API key found"):
        fetch_ohlcv_rest("AAPL", *WEEK, "1h", settings=keyless)
    assert aggs_requests(sandbox) == before
