"""Damaged and hostile REST answers over real sockets (issue 27): a page cut at an object boundary, wrong
values, redirects to another host or in a loop, and ``Retry-After`` values from sane to absurd. Each one is a
typed error naming what was wrong, or the right data; never other data, never a year-long stall."""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import orjson
import pytest

from massive_feeds import fetch_ohlcv_rest
from massive_feeds.cache import wait_for_result_cache
from massive_feeds.config import PLANS, Settings
from massive_feeds.errors import BadResponseError, RateLimitError
from massive_feeds.quota import MAX_SERVER_PAUSE, QuotaManager
from massive_feeds.rest import RestClient, RetryPolicy
from massive_feeds.rest.aggs import parse_aggs
from massive_feeds.rest.client import MAX_REDIRECTS

from .conftest import FAST_RETRY

PATH = "/v2/aggs/ticker/AAPL/range/1/day/2024-03-04/2024-03-08"
T0 = 1_709_528_400_000  # 2024-03-04 05:00 UTC: midnight in New York, the first day's bar


def bars(n: int = 5) -> list[dict[str, object]]:
    return [{"v": 1000.0 + i, "vw": 100.5, "o": 100.0, "c": 101.0, "h": 102.0, "l": 99.0, "t": T0 + 86_400_000 * i,
             "n": 10} for i in range(n)]


def page(results: list[dict[str, object]], **envelope: object) -> bytes:
    return orjson.dumps({"ticker": "AAPL", "queryCount": len(results), "resultsCount": len(results), "adjusted": True,
                         "results": results, "status": "OK", "request_id": "r1", **envelope})


Reply = tuple[int, dict[str, str], bytes]


@contextlib.contextmanager
def server(answer: Callable[[str, int], Reply]) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP/1.1 server answering each GET with ``answer(path, n)`` (``n``: requests so far).
    Yields (base URL, paths served)."""
    served: list[str] = []

    class Scripted(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            served.append(self.path)
            status, headers, body = answer(self.path, len(served))
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    # poll 0.05 s: shutdown() waits up to one poll (the default 0.5 s was most of this file's run time)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def client_for(settings: Settings, url: str, retry: RetryPolicy = FAST_RETRY) -> RestClient:
    return RestClient(settings.with_overrides(rest_url=url), retry=retry)


def stored(client: RestClient, key: str) -> float | None:
    """A value of the shared quota database, read from the file itself."""
    with contextlib.closing(sqlite3.connect(client.quota.path)) as db:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


# --- pages that are not what they claim ---------------------------------------------------------------
@pytest.mark.parametrize("count, ok", [(5, True), (4, False), (6, False), (390, False)])
def test_results_count_must_equal_the_bars_held(settings: Settings, count: int, ok: bool) -> None:
    """A page cut at an object boundary is valid JSON: only its own resultsCount tells. 5 bars with
    resultsCount 5 are a page; 4, 6 or 390 a BadResponseError naming the field, after the retries, and
    nothing is cached. (queryCount counts base aggregates and may differ: 50197 here is fine.)"""
    body = page(bars(5), resultsCount=count, queryCount=50_197)
    with server(lambda path, n: (200, {}, body)) as (url, served):
        client = client_for(settings, url)
        if ok:
            df = fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", client=client)
            assert df["volume"].tolist() == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
            return
        with pytest.raises(BadResponseError, match=f"resultsCount is {count} but the page holds 5 results"):
            fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", client=client)
        assert len(served) == FAST_RETRY.max_attempts
    assert wait_for_result_cache(timeout=30)
    assert not list((settings.cache_dir / "rest").rglob("*.parquet"))


@pytest.mark.parametrize("change, message", [
    ({"o": None}, "Expected `float`, got `null` - at `$.results[3].o`"),
    ({"c": "101.0"}, "Expected `float`, got `str` - at `$.results[3].c`"),
    ({"t": 1_709_787_600_000.0}, "Expected `int`, got `float` - at `$.results[3].t`"),
    ({"l": -0.01}, "l of result 3 is -0.01, not a finite number >= 0"),
    ({"o": -5}, "o of result 3 is -5.0, not a finite number >= 0"),
    ({"h": 98.99}, "h of result 3 is 98.99, below its low 'l' (99.0)"),
    ({"v": -1}, "v of result 3 is -1.0, not a finite number >= 0"),
    ({"n": -1}, "n of result 3 is -1.0, a negative trade count"),
    ({"t": 4_102_444_800_000}, "t of result 3 is 4102444800000, not an epoch-ms time in 1970-2100"),
])
def test_wrong_bar_values_are_refused_naming_field_result_and_value(settings: Settings, change: dict,
                                                                    message: str) -> None:
    results = bars(5)
    results[3] = {**results[3], **change}
    with server(lambda path, n: (200, {}, page(results))) as (url, _):
        with pytest.raises(BadResponseError) as err:
            fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", client=client_for(settings, url))
    assert message in str(err.value)


@pytest.mark.parametrize("change", [{"l": 0.0, "o": 0.0, "c": 0.0}, {"h": 99.0}, {"v": 0, "n": 0},
                                    {"vw": None, "n": None}, {"t": T0 + 3 * 86_400_000}])
def test_values_on_the_edge_of_the_rules_are_bars(change: dict) -> None:
    """The other side of each boundary above: zero prices, high equal to low, zero volume, null vwap and
    count (indices send none), a plain time."""
    results = bars(5)
    results[3] = {**results[3], **change}
    got = parse_aggs(page(results)).columns
    assert got["low"][3] == change.get("l", 99.0) and got["high"][3] == change.get("h", 102.0)
    assert math.isnan(got["vwap"][3]) == ("vw" in change)


def test_an_infinite_number_is_refused() -> None:
    """1e400 is valid JSON but no price: not read as inf."""
    body = page(bars(5)).replace(b'"c":101.0', b'"c":1e400', 1)
    with pytest.raises(BadResponseError, match=r"results\[0\]\.c"):
        parse_aggs(body)


# --- redirects ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_is_refused(settings: Settings, status: int) -> None:
    """The other host would be asked without the key, and whatever it sends is not the service's data: a
    BadResponseError naming the host, and the other host is never contacted."""
    with server(lambda path, n: (200, {}, page(bars(5)))) as (elsewhere, theirs):
        with server(lambda path, n: (status, {"Location": f"{elsewhere}{path}"}, b"")) as (url, ours):
            with pytest.raises(BadResponseError, match=f"redirects to another host \\({elsewhere}\\)"):
                fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", client=client_for(settings, url))
    assert len(ours) == 1 and theirs == []  # not retried, not followed


def test_a_redirect_on_our_host_is_followed_and_counted(settings: Settings) -> None:
    def answer(path: str, n: int) -> Reply:
        return (302, {"Location": "/moved" + path}, b"") if not path.startswith("/moved") else (200, {}, page(bars(5)))

    with server(answer) as (url, served):
        client = client_for(settings, url)
        used = client.quota.status().rest_used_today
        df = fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", client=client, use_cache=False)
        assert len(df) == 5 and served[1].startswith("/moved/v2/aggs/")
        assert client.quota.status().rest_used_today - used == 2  # the hop took a quota slot too


def test_a_redirect_loop_stops_after_a_few_hops_each_one_counted(settings: Settings) -> None:
    """A server redirecting to itself forever: MAX_REDIRECTS (3) hops are followed, each with a quota slot,
    then a BadResponseError; not retried (before: 93 requests against 3 quota slots)."""
    assert MAX_REDIRECTS == 3
    with server(lambda path, n: (307, {"Location": f"/loop/{n}"}, b"")) as (url, served):
        client = client_for(settings, url)
        used = client.quota.status().rest_used_today
        with pytest.raises(BadResponseError, match="more than 3 redirects"):
            client.request(PATH, None, parse_aggs)
        assert len(served) == 4 and client.quota.status().rest_used_today - used == 4


# --- Retry-After -------------------------------------------------------------------------------------
def rate_limited(retry_after: str) -> Callable[[str, int], Reply]:
    """429 with ``retry_after`` on the first request, then the page."""
    body = orjson.dumps({"status": "ERROR", "request_id": "x", "error": "You've exceeded the maximum requests"})
    return lambda path, n: (429, {"Retry-After": retry_after}, body) if n == 1 else (200, {}, page(bars(5)))


def test_retry_after_at_the_maximum_is_honoured_and_shared(settings: Settings) -> None:
    """Retry-After: 120 (exactly MAX_SERVER_PAUSE) is a pause every process keeps: stored in the quota
    database as 120 s from now (one attempt only here, so the test does not wait it out)."""
    assert MAX_SERVER_PAUSE == 120.0
    with server(rate_limited("120")) as (url, served):
        client = client_for(settings, url, RetryPolicy(max_attempts=1))
        before = time.time()
        with pytest.raises(RateLimitError) as err:
            client.request(PATH, None, parse_aggs)
        assert err.value.retry_after == 120.0 and len(served) == 1
        assert before + 120 <= stored(client, "blocked_until") <= time.time() + 120


def test_retry_after_one_second_over_the_maximum_is_raised_at_once_and_not_stored(settings: Settings) -> None:
    """Retry-After: 121 is not waited for (nor a year, nor stored for every process): a RateLimitError at
    once carrying the server's value, although retries were left."""
    with server(rate_limited("121")) as (url, served):
        client = client_for(settings, url)
        with pytest.raises(RateLimitError, match="asks for a pause of 121 s, longer than the 120 s") as err:
            client.request(PATH, None, parse_aggs)
        assert err.value.retry_after == 121.0 and err.value.status == 429 and len(served) == 1
        assert stored(client, "blocked_until") is None
        later = client_for(settings, url)  # the next call is not blocked by it
        t0 = time.monotonic()
        assert later.request(PATH, None, parse_aggs).size == 5
        assert time.monotonic() - t0 < 5


def test_a_year_long_retry_after_is_a_typed_error_not_a_year_long_block(settings: Settings) -> None:
    with server(rate_limited("31536000")) as (url, _):
        client = client_for(settings, url)
        with pytest.raises(RateLimitError) as err:
            client.request(PATH, None, parse_aggs)
    assert err.value.retry_after == 31_536_000.0 and stored(client, "blocked_until") is None


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "soon", "1e999"])
def test_unusable_retry_after_is_ignored_with_a_warning(settings: Settings, value: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Not a finite number of seconds or a date: ignored (warned), the 429 then pauses for the plan's fair
    share and is retried; the stored pause is a finite time within the maximum."""
    with server(rate_limited(value)) as (url, served), caplog.at_level(logging.WARNING):
        client = client_for(settings, url)
        assert client.request(PATH, None, parse_aggs).size == 5
    assert len(served) == 2
    assert f"ignoring the server's Retry-After {value!r}" in caplog.text
    until = stored(client, "blocked_until")
    assert until is not None and math.isfinite(until) and until <= time.time() + MAX_SERVER_PAUSE


def test_an_http_date_retry_after_is_read_as_seconds(settings: Settings) -> None:
    """The other form HTTP allows: a date (here 60 s ahead), stored as a pause of about 60 s."""
    from email.utils import formatdate

    with server(rate_limited(formatdate(time.time() + 60, usegmt=True))) as (url, _):
        client = client_for(settings, url, RetryPolicy(max_attempts=1))
        with pytest.raises(RateLimitError) as err:
            client.request(PATH, None, parse_aggs)
    assert 55 <= err.value.retry_after <= 60
    assert time.time() + 50 <= stored(client, "blocked_until") <= time.time() + 61


@pytest.mark.parametrize("value", [math.inf, 31_536_000.0])
def test_a_damaged_stored_pause_is_ignored_not_slept_on(settings: Settings, value: float,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A pause an older version stored (inf made every later process fail with OverflowError; a year blocked
    every call; a halved rate forever): ignored with a warning, the call goes through at once."""
    with server(lambda path, n: (200, {}, page(bars(5)))) as (url, served):
        client = client_for(settings.with_overrides(plan=PLANS["free"]), url)  # a per-minute limit: tightening counts
        with contextlib.closing(sqlite3.connect(client.quota.path)) as db:
            value_in_db = time.time() + value if value == 31_536_000.0 else value
            db.execute("INSERT INTO state(key, value) VALUES('blocked_until', ?), ('tightened_until', ?)",
                       (value_in_db, value_in_db))
            db.commit()
        with caplog.at_level(logging.WARNING):
            t0 = time.monotonic()
            assert client.request(PATH, None, parse_aggs).size == 5
            assert time.monotonic() - t0 < 5
    assert "ignoring blocked_until" in caplog.text and "ignoring tightened_until" in caplog.text
    assert stored(client, "blocked_until") == stored(client, "tightened_until") == 0.0  # put right for later calls


@pytest.mark.parametrize("given, waited", [(120.0, 120.0), (121.0, 120.0), (-3.0, 1.0), (math.inf, 1.0),
                                           (math.nan, 1.0), (None, 1.0)])
def test_the_quota_clamps_what_it_is_given(tmp_path: Path, given: float | None, waited: float) -> None:
    """record_rate_limited itself keeps a pause within [0, MAX_SERVER_PAUSE] for any caller: 120 s as
    given, 121 s as 120 s, a negative, non-finite or absent one as the plan's fair share (60 s / 60)."""
    plan = PLANS["unlimited"]
    assert plan.rest_window_seconds == 60
    quota = QuotaManager(plan, tmp_path / "q.sqlite3", clock=lambda: 1_000_000.0)
    assert quota.record_rate_limited(given) == waited
    with contextlib.closing(sqlite3.connect(quota.path)) as db:
        assert db.execute("SELECT value FROM state WHERE key = 'blocked_until'").fetchone() == (1_000_000.0 + waited,)
