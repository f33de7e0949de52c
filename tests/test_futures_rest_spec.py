"""The futures REST endpoints as Massive's spec defines them (client-jvm/client-go ``openapi.json``, the docs
pages ``massive.com/docs/rest/futures/*``): the sandbox's bodies have the spec examples' keys and JSON types
(``tests/fixtures/real/rest/futures_spec_examples.json``), and our reading of ``/futures/v1/contracts`` follows
its ``type`` field, which is ``"single"`` or ``"combo"`` and **null on listings dated before 2025-03-12**: a
``type=single`` filter there returns nothing, so continuous series over earlier sessions must not send it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson
import pandas as pd
import pytest

from massive_feeds import fetch_data, roll_table
from massive_feeds.rest import RestClient
from massive_feeds.rest.futures import parse_contracts
from massive_feeds.sandbox import Sandbox

from .test_real_payloads import _assert_same_form

SPEC: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures/real/rest/futures_spec_examples.json").read_text())
CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as box:
        yield box


def _get(sb: Sandbox, path: str, **params: Any) -> dict[str, Any]:
    with RestClient(sb.settings()) as client:
        body: dict[str, Any] = client.get_json(path, params)
    return body


# --- contracts: the "type" field --------------------------------------------------------------------------
def test_the_listing_types_spreads_combo_and_nothing_before_2025_03_12(sb: Sandbox) -> None:
    typed = _get(sb, "/futures/v1/contracts", product_code="ES", date="2025-03-12")["results"]
    assert [(r["ticker"], r["type"]) for r in typed][:5] == [
        ("ESH5-ESM5", "combo"), ("ESM5-ESU5", "combo"), ("ESU5-ESZ5", "combo"), ("ESZ5-ESH6", "combo"),
        ("ESH5", "single")]
    untyped = _get(sb, "/futures/v1/contracts", product_code="ES", date="2025-03-11")["results"]
    assert len(untyped) == 9 and {r["type"] for r in untyped} == {None}
    assert _get(sb, "/futures/v1/contracts", product_code="ES", date="2025-03-11", type="single")["results"] == []


def test_an_untyped_row_parses_with_its_type_unstated() -> None:
    body = dict(SPEC["/futures/v1/contracts"])
    body["results"] = [{**body["results"][0], "type": None, "date": "2025-02-26"}]
    specs, _ = parse_contracts(orjson.dumps(body))
    assert (specs[0].ticker, specs[0].type) == ("00CN5", "")


def test_a_continuous_series_before_the_listing_had_types(sb: Sandbox) -> None:
    """ESZ4's last trade date is Friday 2024-12-20: the calendar front rolls to ESH5 on Monday 12-23. With
    ``type=single`` sent, every listing of 2024 comes back empty and there is no series at all."""
    before = sb.rest.count("/futures/v1/contracts")
    df = fetch_data("ES.c.0", "2024-12-16", "2024-12-27", "1d", settings=sb.settings())
    assert sb.rest.count("/futures/v1/contracts") - before == 1
    assert df["contract"].tolist() == ["ESZ4"] * 5 + ["ESH5"] * 4
    assert df["session_end_date"].tolist() == ["2024-12-16", "2024-12-17", "2024-12-18", "2024-12-19", "2024-12-20",
                                               "2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27"]  # no 12-25
    rolls = roll_table(df)
    assert rolls[["date", "from", "to"]].values.tolist() == [[pd.Timestamp("2024-12-23"), "ESZ4", "ESH5"]]


def test_a_continuous_series_across_the_day_the_types_start(sb: Sandbox) -> None:
    """2025-03-10 .. 03-25 spans 2025-03-12: untyped listings before it, combos and singles from it on; the
    spreads are never taken for contracts and ESH5 (last trade 03-21) rolls into ESM5 on 03-24."""
    df = fetch_data("ES.c.0", "2025-03-10", "2025-03-25", "1d", settings=sb.settings())
    assert df["contract"].tolist() == ["ESH5"] * 10 + ["ESM5"] * 2
    assert df["session_end_date"].iloc[[0, 9, 10, 11]].tolist() == ["2025-03-10", "2025-03-21", "2025-03-24",
                                                                     "2025-03-25"]
    assert roll_table(df)[["date", "from", "to"]].values.tolist() == [[pd.Timestamp("2025-03-24"), "ESH5", "ESM5"]]


# --- the sandbox's bodies have the spec examples' forms ---------------------------------------------------------
def _first(body: dict[str, Any]) -> dict[str, Any]:
    assert body["status"] == "OK" and isinstance(body["request_id"], str) and body["results"]
    row: dict[str, Any] = body["results"][0]
    return row


def _ns(row: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert 10**18 <= row[key] < 10**19, f"{key} is not epoch ns: {row[key]}"


def test_sandbox_futures_rest_bodies_have_the_spec_forms(sb: Sandbox) -> None:
    agg = _first(_get(sb, "/futures/v1/aggs/ESZ6", resolution="1session", **{"window_start.gte": "2026-12-01",
                                                                             "window_start.lt": "2026-12-03"}))
    _assert_same_form("aggs", SPEC["/futures/v1/aggs/{ticker}"]["results"][0], agg,
                      ints={"volume", "transactions", "window_start"})
    _ns(agg, "window_start")
    window = {"timestamp.gte": "2026-12-02", "timestamp.lt": "2026-12-03", "limit": 5}
    trade = _first(_get(sb, "/futures/v1/trades/ESZ6", **window))
    # the spec's schema requires "channel" though its trades example has none (its quotes example has it)
    _assert_same_form("trades", SPEC["/futures/v1/trades/{ticker}"]["results"][0], trade, optional={"channel"},
                      ints={"size", "sequence_number", "report_sequence", "timestamp", "channel"})
    assert type(trade["channel"]) is int
    _ns(trade, "timestamp")
    quote = _first(_get(sb, "/futures/v1/quotes/ESZ6", **window))
    _assert_same_form("quotes", SPEC["/futures/v1/quotes/{ticker}"]["results"][1], quote,
                      ints={"ask_size", "bid_size", "ask_timestamp", "bid_timestamp", "timestamp", "channel",
                            "sequence_number", "report_sequence"})
    _ns(quote, "timestamp", "ask_timestamp", "bid_timestamp")
    listing = _get(sb, "/futures/v1/contracts", product_code="ES", date="2026-12-01", type="single")
    _assert_same_form("contracts", SPEC["/futures/v1/contracts"]["results"][0], _first(listing),
                      ints={"days_to_maturity", "max_order_quantity", "min_order_quantity"})
    # the spec requires only "date" of a product; the sandbox leaves out the classification fields
    product = _first(_get(sb, "/futures/v1/products", product_code="ES"))
    _assert_same_form("products", SPEC["/futures/v1/products"]["results"][0], product,
                      optional={"asset_sub_class", "sector", "sub_sector", "settlement_method", "settlement_type"})
    schedule = _first(_get(sb, "/futures/v1/schedules", product_code="ES", session_end_date="2026-12-02"))
    _assert_same_form("schedules", SPEC["/futures/v1/schedules"]["results"][0], schedule)
    assert datetime.fromisoformat(schedule["timestamp"]).utcoffset() is not None


def test_sandbox_futures_rest_defaults_are_the_specs(sb: Sandbox) -> None:
    """Without a ``limit``: 10 trades, 100 quotes, 10 schedule rows a page; ``resolution`` defaults to
    ``1session`` and ``sort`` to newest first."""
    day = {"timestamp.gte": "2026-12-02", "timestamp.lt": "2026-12-03"}
    assert len(_get(sb, "/futures/v1/trades/ESZ6", **day)["results"]) == 10
    assert len(_get(sb, "/futures/v1/quotes/ESZ6", **day)["results"]) == 100
    assert len(_get(sb, "/futures/v1/schedules", product_code="ES")["results"]) == 10
    bars = _get(sb, "/futures/v1/aggs/ESZ6", **{"window_start.gte": "2026-11-30", "window_start.lt": "2026-12-03"})
    assert [r["session_end_date"] for r in bars["results"]] == ["2026-12-03", "2026-12-02", "2026-12-01"]
