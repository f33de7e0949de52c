"""Decoders of Massive's futures REST pages (``/futures/v1/...``), one per endpoint, into typed columns.

Wire forms (OpenAPI examples in ``massive-com/client-jvm`` ``src/openapi.json``, kept verbatim in
``tests/fixtures/real/rest/futures_spec_examples.json``; massive-api-facts §1.7):

* aggs: ``open high low close volume dollar_volume transactions window_start`` (epoch **ns**)
  ``session_end_date settlement_price ticker`` — no ``vw``: the bar's VWAP is ``dollar_volume / volume``
  where both are given (``dollar_volume`` is price × contracts, not × the multiplier). Pages may come back
  newest first; :func:`futures_bars` sorts.
* trades: ``price size timestamp`` (ns) ``sequence_number report_sequence session_end_date ticker``;
  quotes: ``bid_price bid_size bid_timestamp ask_price ask_size ask_timestamp timestamp`` … — a side
  without a price (an empty book side) is missing from the object.
* contracts: point-in-time specs (``date``, ``first_trade_date``, ``last_trade_date``, ``type`` single or
  spread, tick sizes …); products (``unit_of_measure_qty``: the contract size); schedules (``event``,
  ``timestamp`` RFC 3339 UTC, ``session_end_date``).

Every page goes through the one REST page decoder (:mod:`.decode`, msgspec typed structs): a row it cannot
type (no ``window_start``, a price that is not a number) makes the page a
:class:`~massive_feeds.errors.BadResponseError` naming the field and the row, never a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from ..errors import BadResponseError
from ..schema import finalize_bars
from .decode import Page, decode_page, floats, ints, refuse_rows

#: The extra bar columns futures keep after the standard ones.
FUTURES_BAR_EXTRA = ("settlement_price", "session_end_date")


class FuturesAgg(msgspec.Struct, gc=False):
    """One ``/futures/v1/aggs`` result as the wire types it."""

    window_start: int
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None
    dollar_volume: float | None = None
    transactions: int | None = None
    settlement_price: float | None = None
    session_end_date: str | None = None
    ticker: str | None = None


class FuturesTrade(msgspec.Struct, gc=False):
    timestamp: int
    price: float
    size: float
    sequence_number: int | None = None
    session_end_date: str | None = None


class FuturesQuote(msgspec.Struct, gc=False):
    """A side without a price (an empty book side) is missing from the object: NaN."""

    timestamp: int
    bid_price: float | None = None
    ask_price: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    sequence_number: int | None = None
    session_end_date: str | None = None


class _Contract(msgspec.Struct, gc=False):
    ticker: str | None = None
    product_code: str | None = None
    type: str | None = None
    first_trade_date: str | None = None
    last_trade_date: str | None = None
    settlement_date: str | None = None
    trade_tick_size: float | None = None
    active: bool = True
    date: str | None = None


class _Product(msgspec.Struct, gc=False):
    product_code: str | None = None
    name: str | None = None
    trading_venue: str | None = None
    unit_of_measure: str | None = None
    unit_of_measure_qty: float | None = None
    price_quotation: str | None = None
    trade_currency_code: str | None = None


class _Schedule(msgspec.Struct, gc=False):
    product_code: str | None = None
    session_end_date: str | None = None
    event: str | None = None
    timestamp: str | None = None


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "aggs": msgspec.json.Decoder(Page[FuturesAgg]), "trades": msgspec.json.Decoder(Page[FuturesTrade]),
    "quotes": msgspec.json.Decoder(Page[FuturesQuote]), "contracts": msgspec.json.Decoder(Page[_Contract]),
    "products": msgspec.json.Decoder(Page[_Product]), "schedules": msgspec.json.Decoder(Page[_Schedule]),
}


@dataclass
class FuturesPage:
    """One decoded page: its rows as typed column arrays and the envelope."""

    columns: dict[str, np.ndarray]
    next_url: str | None
    request_id: str | None

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _decode(body: bytes, what: str) -> tuple[Page[Any], list[Any]]:
    return decode_page(body, _DECODERS[what], f"futures {what}")


def _strings(rows: list[Any], key: str) -> np.ndarray:
    """A text field of every row as an object array (absent: ``""``)."""
    values = np.array(list(map(attrgetter(key), rows)) or [], dtype=object)
    values[values == None] = ""  # noqa: E711 - numpy's elementwise compare
    return values


def parse_futures_aggs(body: bytes) -> FuturesPage:
    """``/futures/v1/aggs/{ticker}`` → columns ``timestamp`` (ns), ``open high low close volume vwap
    transactions settlement_price`` (float; ``transactions`` int) and ``session_end_date``, ``symbol``.
    Futures prices may be negative (spreads, the 2020 oil contract); a high below its low is refused."""
    page, rows = _decode(body, "aggs")
    cols: dict[str, np.ndarray] = {"timestamp": ints(rows, "window_start", "futures aggs")}
    for key in ("open", "high", "low", "close"):
        cols[key] = floats(rows, key)
    below = cols["high"] < cols["low"]
    if below.any():  # the message names the low, so it is built only for a page that breaks the rule
        refuse_rows(below, "futures aggs", "high", cols["high"], f"below its low ({cols['low'][np.argmax(below)]})")
    volume = cols["volume"] = floats(rows, "volume")
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["vwap"] = np.where(volume > 0, floats(rows, "dollar_volume") / volume, np.nan)
    cols["transactions"] = ints(rows, "transactions", "futures aggs", fill=0)
    cols["settlement_price"] = floats(rows, "settlement_price")
    cols["session_end_date"] = _strings(rows, "session_end_date")
    cols["symbol"] = _strings(rows, "ticker")
    return FuturesPage(cols, page.next_url, page.request_id)


def futures_bars(pages: list[FuturesPage], ticker: str) -> pd.DataFrame:
    """Decoded aggs pages as one bar frame in the standard schema plus ``settlement_price`` and
    ``session_end_date`` (sorted by time whatever order the pages came in)."""
    if not pages or not sum(p.size for p in pages):
        df = pd.DataFrame({"timestamp": pd.Series([], dtype="int64"), "symbol": pd.Series([], dtype=str)})
        df["settlement_price"] = np.array([], dtype=np.float64)
        df["session_end_date"] = np.array([], dtype=object)
        return finalize_bars(df, extra=FUTURES_BAR_EXTRA)
    cols = {k: np.concatenate([p.columns[k] for p in pages]) for k in pages[0].columns}
    cols["symbol"] = np.full(len(cols["timestamp"]), ticker, dtype=object)
    df = pd.DataFrame(cols)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ns", utc=True)
    return finalize_bars(df, extra=FUTURES_BAR_EXTRA)


def parse_futures_ticks(body: bytes, kind: str) -> FuturesPage:
    """``/futures/v1/trades|quotes/{ticker}`` → tick columns (:mod:`massive_feeds.tickschema` names):
    trades ``price size``, quotes ``bid ask bid_size ask_size``; ``timestamp`` ns, ``sequence_number``."""
    page, rows = _decode(body, kind)
    what = f"futures {kind}"
    cols: dict[str, np.ndarray] = {"timestamp": ints(rows, "timestamp", what),
                                   "sequence_number": ints(rows, "sequence_number", what, fill=0)}
    wire = {"price": "price", "size": "size"} if kind == "trades" else \
        {"bid": "bid_price", "ask": "ask_price", "bid_size": "bid_size", "ask_size": "ask_size"}
    for name, key in wire.items():
        cols[name] = floats(rows, key)
    cols["session_end_date"] = _strings(rows, "session_end_date")
    return FuturesPage(cols, page.next_url, page.request_id)


@dataclass(frozen=True)
class ContractSpec:
    """One contract as ``/futures/v1/contracts`` lists it on a ``date`` (point in time)."""

    ticker: str
    product_code: str
    type: str  # "single" (an outright), "combo" (a spread, a butterfly …), "" (not stated: dated before 2025-03-12)
    first_trade_date: date
    last_trade_date: date
    settlement_date: date | None
    trade_tick_size: float
    active: bool
    as_of: date | None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _spec(i: int, r: _Contract) -> ContractSpec:
    first, last = _day(r.first_trade_date), _day(r.last_trade_date)
    if not r.ticker or first is None or last is None:
        raise BadResponseError(f"futures contracts row {i} lacks ticker/first_trade_date/last_trade_date: {r!r}")
    return ContractSpec(r.ticker, r.product_code or "", r.type or "", first, last, _day(r.settlement_date),
                        float("nan") if r.trade_tick_size is None else r.trade_tick_size, r.active, _day(r.date))


def parse_contracts(body: bytes) -> tuple[list[ContractSpec], str | None]:
    """``/futures/v1/contracts`` → its rows (spreads included, as listed) and ``next_url``."""
    page, rows = _decode(body, "contracts")
    return [_spec(i, r) for i, r in enumerate(rows)], page.next_url


@dataclass(frozen=True)
class ProductSpec:
    """One product from ``/futures/v1/products``: its code, venue, contract size and how its price is quoted."""

    product_code: str
    name: str
    trading_venue: str
    unit_of_measure: str
    unit_of_measure_qty: float  # the contract size in units of unit_of_measure: ES 50 (index points), ZC 5000 bushels
    price_quotation: str = ""  # e.g. "U.S. dollars and cents per troy ounce", "U.S. cents per bushel"
    trade_currency_code: str = "USD"

    @property
    def quoted_in_cents(self) -> bool:
        """Whether a price of 1 is one cent (grains, livestock: "U.S. cents per bushel"), not one dollar
        ("U.S. dollars and cents per …" is dollars, written to the cent)."""
        words = self.price_quotation.lower()
        return "cents per" in words and "dollar" not in words

    @property
    def point_value(self) -> float:
        """What one point of price (a move of 1.0) is worth per contract, in ``trade_currency_code``:
        the contract size, divided by 100 for a product quoted in cents (ZC: 5000 bushels x $0.01 = $50)."""
        return self.unit_of_measure_qty / 100 if self.quoted_in_cents else self.unit_of_measure_qty


def parse_products(body: bytes) -> tuple[list[ProductSpec], str | None]:
    page, rows = _decode(body, "products")
    out = []
    for i, r in enumerate(rows):
        if not r.product_code or r.unit_of_measure_qty is None:
            raise BadResponseError(f"futures products row {i} lacks product_code or a numeric unit_of_measure_qty")
        out.append(ProductSpec(r.product_code, r.name or "", r.trading_venue or "", r.unit_of_measure or "",
                               r.unit_of_measure_qty, r.price_quotation or "", r.trade_currency_code or "USD"))
    return out, page.next_url


def parse_schedules(body: bytes) -> tuple[pd.DataFrame, str | None]:
    """``/futures/v1/schedules`` → a frame ``product_code session_end_date event timestamp`` (UTC)."""
    page, rows = _decode(body, "schedules")
    df = pd.DataFrame({
        "product_code": _strings(rows, "product_code"),
        "session_end_date": _strings(rows, "session_end_date"),
        "event": _strings(rows, "event"),
        "timestamp": pd.to_datetime(_strings(rows, "timestamp"), utc=True, format="ISO8601") if rows
        else pd.to_datetime(pd.Series([], dtype=str), utc=True),
    })
    return df, page.next_url


__all__ = ["FUTURES_BAR_EXTRA", "ContractSpec", "FuturesPage", "ProductSpec", "futures_bars",
           "parse_contracts", "parse_futures_aggs", "parse_futures_ticks", "parse_products", "parse_schedules"]
