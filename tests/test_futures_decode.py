"""Futures tickers and the futures REST decoders, checked on Massive's official spec examples
(``tests/fixtures/real/rest/futures_spec_examples.json``, see PROVENANCE.md) with hand-computed numbers."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from massive_feeds.errors import BadResponseError, InvalidInputError
from massive_feeds.futures_symbols import futures_root, parse_contract
from massive_feeds.rest.futures import (futures_bars, parse_contracts, parse_futures_aggs, parse_futures_ticks,
                                        parse_products, parse_schedules)
from massive_feeds.schema import asset_class, normalize_symbol

SPEC = json.loads((Path(__file__).parent / "fixtures/real/rest/futures_spec_examples.json").read_text())

# Real US-listed stock and ETF tickers, chosen to sit near the futures form: one and two letters, roots of
# real futures products (ES, GC, CL, NG, ZN, 6E), names ending in a month code letter (F G H J K M N Q U V X Z),
# share classes with a dot, and the examples' own stock tickers.
REAL_STOCKS = ["A", "AA", "AAA", "AAAU", "AAPL", "F", "GE", "GM", "T", "V", "X", "Z", "ZG", "BRK.B", "BF.B", "MU",
               "BAH", "CLF", "GDX", "ESGV", "EZU", "FXF", "NGG", "ZION", "ES", "GC", "CL", "NG", "CZ", "MSFT",
               "SPY", "QQQ", "IWM", "UNH", "LUV", "DXJ", "EWZ", "GLD", "USO", "UNG", "SLV", "MSTR", "NVDA"]


@pytest.mark.parametrize("stock", REAL_STOCKS)
def test_real_stock_tickers_stay_stocks(stock: str) -> None:
    assert normalize_symbol(stock) == stock
    assert asset_class(stock) == "stocks"


@pytest.mark.parametrize(("given", "ticker", "root"), [
    ("ESZ4", "ESZ4", "ES"), ("esz24", "ESZ24", "ES"), ("GCJ5", "GCJ5", "GC"), ("F:ESZ4", "ESZ4", "ES"),
    ("f:gcj25", "GCJ25", "GC"), ("6EZ4", "6EZ4", "6E"), ("M2KZ4", "M2KZ4", "M2K"), ("00CN5", "00CN5", "00C"),
    ("ES.c.0", "ES.c.0", "ES"), ("es.C.1", "ES.c.1", "ES"), ("ES.v.0", "ES.v.0", "ES"), ("GC.c.0", "GC.c.0", "GC"),
])
def test_futures_forms(given: str, ticker: str, root: str) -> None:
    assert normalize_symbol(given) == ticker
    assert asset_class(ticker) == "futures"
    assert futures_root(ticker) == root


def test_contract_year_digits_are_read_near_a_date() -> None:
    c = parse_contract("ESZ4")
    assert c is not None and (c.root, c.month, c.year_digits) == ("ES", 12, "4")
    assert c.year(2024) == 2024 and c.year(2030) == 2034 and c.year(2027) == 2024
    assert parse_contract("ESZ24").year(2025) == 2024  # type: ignore[union-attr]
    assert parse_contract("ESZ") is None and parse_contract("ESA4") is None


@pytest.mark.parametrize("bad", ["ES.x.0", "ES.c.a", "ES.c.10", "F:XYZ", "F:ES", "/ES", "ES=F", "/ESZ4"])
def test_bad_futures_forms_are_one_line_naming_the_valid_ones(bad: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        normalize_symbol(bad)
    text = str(info.value)
    assert "\n" not in text and "ESZ4" in text and "ES.c.0" in text and "ES.v.0" in text


def test_the_general_bad_symbol_message_names_futures_too() -> None:
    with pytest.raises(InvalidInputError, match=r"AAPL.*X:BTCUSD.*ESZ4.*ES\.c\.0"):
        normalize_symbol("$$$")


# --- aggs ----------------------------------------------------------------------------------------
def test_spec_aggs_example_decodes_with_vwap_from_dollar_volume() -> None:
    page = parse_futures_aggs(orjson.dumps(SPEC["/futures/v1/aggs/{ticker}"]))
    df = futures_bars([page], "GCJ5")
    assert list(df.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume", "vwap",
                                "transactions", "settlement_price", "session_end_date"]
    assert df["timestamp"].tolist() == [pd.Timestamp("2025-02-04", tz="UTC"), pd.Timestamp("2025-02-05", tz="UTC")]
    first = df.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (2849.8, 2877.1, 2837.4, 2874.2)
    assert first.volume == 133072 and first.transactions == 74223
    # 380560636.01 / 133072 = 2859.810... (hand-computed); 448429944.1 / 155170 = 2889.927...
    assert first.vwap == pytest.approx(2859.8100, abs=1e-4)
    assert df.iloc[1].vwap == pytest.approx(2889.9268, abs=1e-4)
    assert df["settlement_price"].tolist() == [2875.8, 2893.0]
    assert df["session_end_date"].tolist() == ["2025-02-04", "2025-02-05"]
    assert df["symbol"].tolist() == ["GCJ5", "GCJ5"]


def test_newest_first_aggs_come_out_oldest_first() -> None:
    body = dict(SPEC["/futures/v1/aggs/{ticker}"])
    body["results"] = list(reversed(body["results"]))
    df = futures_bars([parse_futures_aggs(orjson.dumps(body))], "GCJ5")
    assert df["close"].tolist() == [2874.2, 2884.8]


def test_aggs_without_volume_have_nan_vwap_and_bad_rows_are_refused() -> None:
    row = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "window_start": 1_000_000_000, "ticker": "ESZ4"}
    page = parse_futures_aggs(orjson.dumps({"status": "OK", "results": [row]}))
    assert np.isnan(page.columns["vwap"][0]) and page.columns["transactions"][0] == 0
    with pytest.raises(BadResponseError, match=r"got `null` - at `\$\.results\[0\]\.window_start`"):
        parse_futures_aggs(orjson.dumps({"status": "OK", "results": [{**row, "window_start": None}]}))
    with pytest.raises(BadResponseError, match=r"Expected `float`, got `str` - at `\$\.results\[0\]\.open`"):
        parse_futures_aggs(orjson.dumps({"status": "OK", "results": [{**row, "open": "x"}]}))
    with pytest.raises(BadResponseError, match=r"high of result 0 is 2\.0, below its low \(3\.0\)"):
        parse_futures_aggs(orjson.dumps({"status": "OK", "results": [{**row, "low": 3.0}]}))


@pytest.mark.parametrize("body", [{"status": "OK"}, {"status": "OK", "results": []}])
def test_an_empty_aggs_page_is_no_rows_not_an_error(body: dict) -> None:
    # a contract without a bar in the window (not yet listed, or a quiet spread): the high<low message was once
    # built on every page, and on an empty one raised "attempt to get argmax of an empty sequence"
    page = parse_futures_aggs(orjson.dumps(body))
    assert len(page.columns["timestamp"]) == 0 and len(page.columns["close"]) == 0


# --- ticks ---------------------------------------------------------------------------------------
def test_spec_trades_example() -> None:
    page = parse_futures_ticks(orjson.dumps(SPEC["/futures/v1/trades/{ticker}"]), "trades")
    assert page.columns["price"].tolist() == [6052.0, 6051.75, 6052.0]
    assert page.columns["size"].tolist() == [3.0, 1.0, 2.0]
    assert page.columns["timestamp"].tolist() == [1734472799000509200, 1734472798789679900, 1734472797000893000]
    assert page.columns["sequence_number"].tolist() == [27317882, 27317863, 27317826]
    assert page.next_url is not None and page.next_url.startswith("https://api.massive.com/futures/v1/trades/ESZ4?")


def test_spec_quotes_example_keeps_a_missing_ask_as_nan() -> None:
    page = parse_futures_ticks(orjson.dumps(SPEC["/futures/v1/quotes/{ticker}"]), "quotes")
    assert np.isnan(page.columns["ask"][0]) and page.columns["ask"][1] == 2686.0
    assert page.columns["bid"].tolist() == [2660.0, 2684.7]
    assert page.columns["bid_size"].tolist() == [1.0, 1.0] and page.columns["ask_size"].tolist() == [0.0, 1.0]


# --- reference -----------------------------------------------------------------------------------
def test_spec_contracts_products_schedules() -> None:
    specs, nxt = parse_contracts(orjson.dumps(SPEC["/futures/v1/contracts"]))
    assert nxt is not None and len(specs) == 1
    c = specs[0]
    assert (c.ticker, c.product_code, c.type) == ("00CN5", "00C", "single")
    assert (c.first_trade_date, c.last_trade_date, c.as_of) == (date(2025, 1, 15), date(2025, 7, 14), date(2025, 2, 26))
    assert c.trade_tick_size == 0.0025
    products, _ = parse_products(orjson.dumps(SPEC["/futures/v1/products"]))
    assert (products[0].product_code, products[0].unit_of_measure_qty, products[0].trading_venue) == ("EBE", 1000.0,
                                                                                                       "XNYM")
    sched, _ = parse_schedules(orjson.dumps(SPEC["/futures/v1/schedules"]))
    assert sched["event"].tolist() == ["pre_open", "open", "close"]
    assert sched["timestamp"].tolist()[1] == pd.Timestamp("2024-06-09 22:00", tz="UTC")
    assert set(sched["session_end_date"]) == {"2024-06-10"}
