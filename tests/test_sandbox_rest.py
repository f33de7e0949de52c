"""The sandbox's REST side speaks Massive's wire format (field names, units, errors, cursors)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import requests

from massive_feeds.sandbox import RateLimit, Sandbox

NY = ZoneInfo("America/New_York")


def get(sb: Sandbox, path: str, key: str | None = "bearer", **params: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {sb.api_key}"} if key == "bearer" else {}
    if key == "query":
        params["apiKey"] = sb.api_key
    return requests.get(sb.rest_url + path, headers=headers, params=params, timeout=10)


def test_aggs_envelope_and_bar_fields(sandbox: Sandbox) -> None:
    body = get(sandbox, "/v2/aggs/ticker/AAPL/range/1/day/2024-03-04/2024-03-08").json()
    assert {"ticker", "queryCount", "resultsCount", "adjusted", "results", "status", "request_id", "count"} <= set(body)
    assert body["status"] == "OK" and body["resultsCount"] == 5 == len(body["results"])
    assert set(body["results"][0]) == {"v", "vw", "o", "c", "h", "l", "t", "n"}


def test_day_bars_are_stamped_midnight_new_york_in_ms(sandbox: Sandbox) -> None:
    bar = get(sandbox, "/v2/aggs/ticker/AAPL/range/1/day/2024-03-05/2024-03-05").json()["results"][0]
    assert bar["t"] == int(datetime.combine(date(2024, 3, 5), time(0), NY).timestamp() * 1000)


def test_index_bars_have_no_volume_fields(sandbox: Sandbox) -> None:
    bar = get(sandbox, "/v2/aggs/ticker/I:SPX/range/1/day/2024-03-05/2024-03-05").json()["results"][0]
    assert set(bar) == {"o", "c", "h", "l", "t"}


def test_query_parameter_key_is_accepted_like_the_real_service(sandbox: Sandbox) -> None:
    assert get(sandbox, "/v2/aggs/ticker/AAPL/range/1/day/2024-03-05/2024-03-05", key="query").status_code == 200


def test_missing_and_unknown_keys_get_the_real_401_bodies(sandbox: Sandbox) -> None:
    missing = get(sandbox, "/v2/aggs/ticker/AAPL/range/1/day/2024-03-05/2024-03-05", key=None)
    assert missing.status_code == 401 and missing.json()["error"] == "API Key was not provided"
    wrong = requests.get(sandbox.rest_url + "/v2/aggs/ticker/AAPL/range/1/day/2024-03-05/2024-03-05",
                         headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json() == {**wrong.json(), "status": "ERROR", "error": "Unknown API Key"}


def test_next_url_carries_a_cursor_and_never_the_key(sandbox: Sandbox) -> None:
    sandbox.max_page_bars = 10
    body = get(sandbox, "/v2/aggs/ticker/AAPL/range/1/minute/2024-03-05/2024-03-05", key="query").json()
    assert "cursor=" in body["next_url"] and sandbox.api_key not in body["next_url"]
    nxt = requests.get(body["next_url"], headers={"Authorization": f"Bearer {sandbox.api_key}"}, timeout=10).json()
    assert nxt["results"][0]["t"] > body["results"][-1]["t"]


def test_unknown_ticker_is_an_empty_ok_answer(sandbox: Sandbox) -> None:
    body = get(sandbox, "/v2/aggs/ticker/ZZZZ/range/1/day/2024-03-04/2024-03-08").json()
    assert body["status"] == "OK" and body["resultsCount"] == 0 and "results" not in body


def test_rate_limit_answers_429_with_the_real_body(sandbox: Sandbox) -> None:
    sandbox.rate_limit = RateLimit(2, 60)
    codes = [get(sandbox, "/v3/reference/tickers").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert "exceeded the maximum requests per minute" in get(sandbox, "/v3/reference/tickers").json()["error"]


def test_reference_tickers_paginate_and_filter(sandbox: Sandbox) -> None:
    first = get(sandbox, "/v3/reference/tickers", market="stocks", limit=5).json()
    assert len(first["results"]) == 5 and "next_url" in first
    assert all(r["market"] == "stocks" for r in first["results"])
    crypto = get(sandbox, "/v3/reference/tickers", market="crypto").json()["results"]
    assert {r["ticker"] for r in crypto} >= {"X:BTCUSD", "X:ETHUSD"}


def test_weekends_have_no_stock_bars_but_crypto_trades(sandbox: Sandbox) -> None:
    sat = "/range/1/day/2024-03-09/2024-03-09"
    assert get(sandbox, "/v2/aggs/ticker/AAPL" + sat).json()["resultsCount"] == 0
    assert get(sandbox, "/v2/aggs/ticker/X:BTCUSD" + sat).json()["resultsCount"] == 1


def test_bars_are_built_from_the_same_ticks_at_every_size(sandbox: Sandbox) -> None:
    minute = get(sandbox, "/v2/aggs/ticker/MSFT/range/1/minute/2024-03-05/2024-03-05").json()["results"]
    hour = get(sandbox, "/v2/aggs/ticker/MSFT/range/1/hour/2024-03-05/2024-03-05").json()["results"]
    day = get(sandbox, "/v2/aggs/ticker/MSFT/range/1/day/2024-03-05/2024-03-05").json()["results"][0]
    assert sum(b["v"] for b in minute) == sum(b["v"] for b in hour) == day["v"]
    assert max(b["h"] for b in minute) == day["h"] and minute[-1]["c"] == hour[-1]["c"] == day["c"]
