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

Each decoder checks types as it decodes: a row it cannot type (no ``window_start``, a price that is not a
number) makes the page a :class:`~massive_feeds.errors.BadResponseError` naming the row, never a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

import numpy as np
import orjson
import pandas as pd

from ..errors import BadResponseError
from ..schema import finalize_bars

#: The extra bar columns futures keep after the standard ones.
FUTURES_BAR_EXTRA = ("settlement_price", "session_end_date")


@dataclass
class FuturesPage:
    """One decoded page: its rows as typed column arrays and the envelope."""

    columns: dict[str, np.ndarray]
    next_url: str | None
    request_id: str | None

    @property
    def size(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _envelope(body: bytes, what: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    try:
        meta = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadResponseError(f"malformed futures {what} response ({len(body)} bytes): {exc}") from None
    if not isinstance(meta, dict) or meta.get("status") not in ("OK", "DELAYED"):
        status = meta.get("status") if isinstance(meta, dict) else None
        raise BadResponseError(f"futures {what} response with status {status!r}",
                               request_id=meta.get("request_id") if isinstance(meta, dict) else None)
    rows = meta.get("results") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadResponseError(f"futures {what} response whose 'results' is not a list of objects")
    return rows, meta


def _numbers(rows: list[dict[str, Any]], key: str, what: str, *, required: bool, integer: bool = False) -> np.ndarray:
    """One numeric field of every row; a missing optional value is NaN, a wrong type is refused."""
    values = [r.get(key) for r in rows]
    for i, v in enumerate(values):
        if v is None:
            if required:
                raise BadResponseError(f"futures {what} row {i} has no {key!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BadResponseError(f"futures {what} row {i}: {key}={v!r} is not a number")
    if integer:
        return np.array(values, dtype=np.int64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _strings(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([str(r.get(key) or "") for r in rows], dtype=object)


def parse_futures_aggs(body: bytes) -> FuturesPage:
    """``/futures/v1/aggs/{ticker}`` → columns ``timestamp`` (ns), ``open high low close volume vwap
    transactions settlement_price`` (float; ``transactions`` int) and ``session_end_date``, ``symbol``."""
    rows, meta = _envelope(body, "aggs")
    cols: dict[str, np.ndarray] = {"timestamp": _numbers(rows, "window_start", "aggs", required=True, integer=True)}
    for key in ("open", "high", "low", "close"):
        cols[key] = _numbers(rows, key, "aggs", required=True)
    volume = _numbers(rows, "volume", "aggs", required=False)
    dollars = _numbers(rows, "dollar_volume", "aggs", required=False)
    bad = np.flatnonzero(cols["high"] < cols["low"])
    if bad.size:
        raise BadResponseError(f"futures aggs row {int(bad[0])}: high {cols['high'][bad[0]]} below low "
                               f"{cols['low'][bad[0]]}")
    cols["volume"] = volume
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["vwap"] = np.where(volume > 0, dollars / volume, np.nan)
    cols["transactions"] = np.nan_to_num(_numbers(rows, "transactions", "aggs", required=False)).astype(np.int64)
    cols["settlement_price"] = _numbers(rows, "settlement_price", "aggs", required=False)
    cols["session_end_date"] = _strings(rows, "session_end_date")
    cols["symbol"] = _strings(rows, "ticker")
    return FuturesPage(cols, meta.get("next_url"), meta.get("request_id"))


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
    rows, meta = _envelope(body, kind)
    cols: dict[str, np.ndarray] = {
        "timestamp": _numbers(rows, "timestamp", kind, required=True, integer=True),
        "sequence_number": np.nan_to_num(_numbers(rows, "sequence_number", kind, required=False)).astype(np.int64),
    }
    if kind == "trades":
        cols["price"] = _numbers(rows, "price", kind, required=True)
        cols["size"] = _numbers(rows, "size", kind, required=True)
    else:
        cols["bid"] = _numbers(rows, "bid_price", kind, required=False)
        cols["ask"] = _numbers(rows, "ask_price", kind, required=False)
        cols["bid_size"] = _numbers(rows, "bid_size", kind, required=False)
        cols["ask_size"] = _numbers(rows, "ask_size", kind, required=False)
    cols["session_end_date"] = _strings(rows, "session_end_date")
    return FuturesPage(cols, meta.get("next_url"), meta.get("request_id"))


@dataclass(frozen=True)
class ContractSpec:
    """One contract as ``/futures/v1/contracts`` lists it on a ``date`` (point in time)."""

    ticker: str
    product_code: str
    type: str  # "single" (an outright) or "spread"
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


def _spec(i: int, r: dict[str, Any]) -> ContractSpec:
    first, last = _day(r.get("first_trade_date")), _day(r.get("last_trade_date"))
    if not r.get("ticker") or first is None or last is None:
        raise BadResponseError(f"futures contracts row {i} lacks ticker/first_trade_date/last_trade_date: {r!r}")
    tick = r.get("trade_tick_size")
    return ContractSpec(str(r["ticker"]), str(r.get("product_code") or ""), str(r.get("type") or "single"),
                        first, last, _day(r.get("settlement_date")),
                        float(tick) if isinstance(tick, (int, float)) else float("nan"),
                        bool(r.get("active", True)), _day(r.get("date")))


def parse_contracts(body: bytes) -> tuple[list[ContractSpec], str | None]:
    """``/futures/v1/contracts`` → its rows (spreads included, as listed) and ``next_url``."""
    rows, meta = _envelope(body, "contracts")
    return [_spec(i, r) for i, r in enumerate(rows)], meta.get("next_url")


@dataclass(frozen=True)
class ProductSpec:
    """One product from ``/futures/v1/products``: its code, venue and contract size."""

    product_code: str
    name: str
    trading_venue: str
    unit_of_measure: str
    unit_of_measure_qty: float  # the contract size: the dollars one point of price is worth, for ES 50


def parse_products(body: bytes) -> tuple[list[ProductSpec], str | None]:
    rows, meta = _envelope(body, "products")
    out = []
    for i, r in enumerate(rows):
        qty = r.get("unit_of_measure_qty")
        if not r.get("product_code") or not isinstance(qty, (int, float)) or isinstance(qty, bool):
            raise BadResponseError(f"futures products row {i} lacks product_code or a numeric unit_of_measure_qty")
        out.append(ProductSpec(str(r["product_code"]), str(r.get("name") or ""), str(r.get("trading_venue") or ""),
                               str(r.get("unit_of_measure") or ""), float(qty)))
    return out, meta.get("next_url")


def parse_schedules(body: bytes) -> tuple[pd.DataFrame, str | None]:
    """``/futures/v1/schedules`` → a frame ``product_code session_end_date event timestamp`` (UTC)."""
    rows, meta = _envelope(body, "schedules")
    df = pd.DataFrame({
        "product_code": _strings(rows, "product_code"),
        "session_end_date": _strings(rows, "session_end_date"),
        "event": _strings(rows, "event"),
        "timestamp": pd.to_datetime(_strings(rows, "timestamp"), utc=True, format="ISO8601") if rows
        else pd.to_datetime(pd.Series([], dtype=str), utc=True),
    })
    return df, meta.get("next_url")


def next_of(page: Any) -> str | None:
    """The ``next_url`` of a decoded page (for :meth:`~massive_feeds.rest.RestClient.paginate`)."""
    return page.next_url if isinstance(page, FuturesPage) else page[1]


Decoder = Callable[[bytes], Any]

__all__ = ["FUTURES_BAR_EXTRA", "ContractSpec", "FuturesPage", "ProductSpec", "futures_bars", "next_of",
           "parse_contracts", "parse_futures_aggs", "parse_futures_ticks", "parse_products", "parse_schedules"]
