"""The sandbox's futures market: quarterly products whose contracts roll, in Massive's futures wire forms.

Products (:data:`PRODUCTS`): ``ES`` (CME, $50 a point, tick 0.25) and ``GC`` (COMEX, 100 oz, tick 0.10), both
listed on the quarterly cycle ``H M U Z`` (real gold also lists G J Q V; the sandbox keeps one cycle so both
roll the same way). A contract's last trade date is the third Friday of its month; it is listed from 400
days before. Sessions follow CME Globex: the session that settles on day D (``session_end_date``) opens
D-1 17:00 Chicago and closes D 16:00 Chicago (1,380 minutes), on NYSE sessions (the sandbox's holiday list); on
NYSE early-close days it closes 12:15 Chicago (1,155 minutes, as CME closes equity and metals futures), and every
form (REST aggs and ticks, flat files, the WebSocket) stops there, as ``/futures/v1/schedules`` says.

Prices: one underlying level per product (a smooth anchor per session joined by a Brownian bridge per
minute, seeded by product and day, so any session is generated alone) and each contract at the underlying
× exp(carry × years to expiry), rounded to the tick: deferred contracts trade higher (contango), so a roll
shows a real gap. Volume sits in the front contract and moves to the next one over the last ~8 sessions
before expiry, so the volume roll (``v``) comes days before the calendar roll (``c``).

Served (see :func:`route`): ``/futures/v1/aggs/{ticker}`` (``resolution`` ``Nmin``/``Nhour``/``1session``,
``window_start`` filters, ns, newest first by default, ``limit``/``next_url``), ``/futures/v1/trades|quotes``,
``/futures/v1/contracts`` (point in time, spreads listed before outrights), ``/futures/v1/products``,
``/futures/v1/schedules``; flat files ``us_futures_cme`` / ``us_futures_comex`` ``minute_aggs_v1``,
``session_aggs_v1`` (:func:`day_table`) and ``trades_v1`` / ``quotes_v1`` (:func:`tick_table`: the REST ticks'
events, named by the session's trade date).

This module is sandbox-only. The library never imports it.
"""

from __future__ import annotations

import base64
import uuid
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa

from .market import _nyse_session, is_nyse_session

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")
MINUTES = 1380
NS_MIN = 60 * 10**9
MONTHS = {3: "H", 6: "M", 9: "U", 12: "Z"}


@dataclass(frozen=True)
class Product:
    """One futures product of the sandbox."""

    code: str
    name: str
    venue: str  # trading venue MIC
    prefix: str  # flat-file prefix
    point_value: float  # dollars per point: the products endpoint's unit_of_measure_qty
    unit: str
    tick: float
    base_price: float
    carry: float  # annual basis rate (deferred contracts trade at exp(carry × years) over the underlying)
    volume: float  # contracts per busy minute


PRODUCTS: dict[str, Product] = {
    "ES": Product("ES", "E-mini S&P 500 Futures", "XCME", "us_futures_cme", 50.0, "IPNT", 0.25, 5000.0, 0.045, 900.0),
    "GC": Product("GC", "Gold Futures", "XCEC", "us_futures_comex", 100.0, "OZ", 0.1, 2000.0, 0.05, 120.0),
}
PREFIX_PRODUCTS = {p.prefix: tuple(c for c, q in PRODUCTS.items() if q.prefix == p.prefix) for p in PRODUCTS.values()}


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


@dataclass(frozen=True)
class Contract:
    ticker: str
    product: Product
    year: int
    month: int
    last_trade: date

    @property
    def first_trade(self) -> date:
        return self.last_trade - timedelta(days=400)


def contract(product: Product, year: int, month: int) -> Contract:
    return Contract(f"{product.code}{MONTHS[month]}{year % 10}", product, year, month, third_friday(year, month))


def listed(product: Product, day: date) -> list[Contract]:
    """The outright contracts trading on ``day``, nearest expiry first."""
    out = []
    for year in range(day.year - 1, day.year + 3):
        for month in MONTHS:
            c = contract(product, year, month)
            if c.first_trade <= day <= c.last_trade:
                out.append(c)
    return sorted(out, key=lambda c: c.last_trade)


def find(ticker: str, day: date | None = None) -> Contract | None:
    """The contract a ticker names (a one-digit year read as the decade nearest ``day``)."""
    code, month_code, digit = ticker[:-2], ticker[-2:-1], ticker[-1:]
    product = PRODUCTS.get(code)
    month = {v: k for k, v in MONTHS.items()}.get(month_code)
    if product is None or month is None or not digit.isdigit():
        return None
    near = (day or date.today()).year
    base = near - 6
    year = base + (int(digit) - base) % 10
    return contract(product, year, month)


def is_session(day: date) -> bool:
    return day.weekday() < 5 and is_nyse_session(day)


def session_open_ns(day: date) -> int:
    """The first minute of the session settling on ``day``: 17:00 Chicago the calendar day before."""
    start = datetime.combine(day - timedelta(days=1), time(17), CHICAGO)
    return int(start.timestamp()) * 10**9


def session_minutes(day: date) -> int:
    """Minutes the session settling on ``day`` trades: 17:00 Chicago the day before to its schedule's close
    (1,380; 1,155 on an early close)."""
    close = datetime.combine(day, _close_time(day), CHICAGO)
    return int((close.timestamp() * 10**9 - session_open_ns(day)) // NS_MIN)


def session_close_ns(day: date) -> int:
    """The end of the last minute of the session settling on ``day`` (its schedule's ``close``)."""
    return session_open_ns(day) + session_minutes(day) * NS_MIN


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _anchor(product: Product, day: date) -> float:
    """The underlying's level at a session's close: slow sinusoids of the day number (no history needed)."""
    x = day.toordinal()
    wave = 0.06 * np.sin(x / 53.0 + len(product.code)) + 0.03 * np.sin(x / 11.0) + 0.015 * np.sin(x / 3.1)
    return float(product.base_price * np.exp(wave))


def _previous_session(day: date) -> date:
    d = day - timedelta(days=1)
    while not is_session(d):
        d -= timedelta(days=1)
    return d


@lru_cache(maxsize=64)
def _underlying(code: str, day: date) -> np.ndarray:
    """The underlying's 1,380 minute closes of a session: a Brownian bridge between two anchors."""
    product = PRODUCTS[code]
    lo, hi = np.log(_anchor(product, _previous_session(day))), np.log(_anchor(product, day))
    rng = np.random.default_rng(_seed(code, day))
    steps = rng.normal(0.0, 0.0004, MINUTES)
    walk = np.cumsum(steps)
    frac = np.arange(1, MINUTES + 1) / MINUTES
    bridge = walk - frac * walk[-1]
    return np.exp(lo + (hi - lo) * frac + bridge)


def _volume_share(front_days_left: int) -> float:
    """The front contract's share of the product's volume, by sessions (calendar days) to its expiry."""
    return float(1.0 / (1.0 + np.exp((6.0 - front_days_left) / 1.5)))


@dataclass
class MinuteBars:
    """One contract's bars of one session as arrays (``t`` ns)."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - the wire's own name
    c: np.ndarray
    v: np.ndarray
    n: np.ndarray

    @property
    def size(self) -> int:
        return len(self.t)


@lru_cache(maxsize=256)
def minute_bars(ticker: str, day: date) -> MinuteBars | None:
    """A contract's minute bars of the session settling on ``day`` (None when it does not trade then), up to
    the session's close (an early close cuts the day's path; the minutes before it are as on a full day)."""
    c = find(ticker, day)
    if c is None or not is_session(day) or not c.first_trade <= day <= c.last_trade:
        return None
    product = c.product
    chain = listed(product, day)
    rank = next(i for i, x in enumerate(chain) if x.ticker == c.ticker)
    share = _volume_share((chain[0].last_trade - day).days)
    weight = share if rank == 0 else (1 - share) if rank == 1 else 0.01
    years = (c.last_trade - day).days / 365.0
    close = _underlying(product.code, day) * np.exp(product.carry * years)
    rng = np.random.default_rng(_seed(ticker, day))
    opens = np.r_[close[0] * (1 - 0.0002), close[:-1]]
    wiggle = np.abs(rng.normal(0.0, 0.0003, (2, MINUTES))) * close
    tick = product.tick
    o, c_ = np.round(opens / tick) * tick, np.round(close / tick) * tick
    h = np.maximum(np.maximum(o, c_), np.round((np.maximum(opens, close) + wiggle[0]) / tick) * tick)
    lo = np.minimum(np.minimum(o, c_), np.round((np.minimum(opens, close) - wiggle[1]) / tick) * tick)
    minute = np.arange(MINUTES)
    busy = ((minute >= 930) & (minute <= 1320)).astype(float) * 3.0 + 1.0  # 08:30-15:00 Chicago is busiest
    v = np.maximum(1, np.round(product.volume * weight * busy * rng.uniform(0.5, 1.5, MINUTES)))
    n = np.maximum(1, np.round(v / 3)).astype(np.int64)
    t = session_open_ns(day) + minute.astype(np.int64) * NS_MIN
    end = session_minutes(day)
    return MinuteBars(t[:end], o[:end], h[:end], lo[:end], c_[:end], v[:end], n[:end])


def session_bar(ticker: str, day: date) -> dict[str, Any] | None:
    """The ``1session`` bar (Massive's long names) of a contract's session settling on ``day``."""
    b = minute_bars(ticker, day)
    if b is None:
        return None
    vwap = float(np.sum(b.c * b.v) / np.sum(b.v))
    return {"close": float(b.c[-1]), "dollar_volume": round(vwap * float(b.v.sum()), 2), "high": float(b.h.max()),
            "low": float(b.l.min()), "open": float(b.o[0]), "session_end_date": day.isoformat(),
            "settlement_price": float(b.c[-1]), "ticker": ticker, "transactions": int(b.n.sum()),
            "volume": int(b.v.sum()), "window_start": int(b.t[0])}


def _minute_rows(ticker: str, day: date, b: MinuteBars, per: int) -> list[dict[str, Any]]:
    """Bars of ``per`` minutes (1 = as generated) in the aggs endpoint's form."""
    rows = []
    for i in range(0, b.size, per):
        s = slice(i, i + per)
        v = int(b.v[s].sum())  # a count of contracts: integer, as the spec types volume (int64)
        rows.append({"close": float(b.c[s][-1]), "dollar_volume": round(float(np.sum(b.c[s] * b.v[s])), 2),
                     "high": float(b.h[s].max()), "low": float(b.l[s].min()), "open": float(b.o[s][0]),
                     "session_end_date": day.isoformat(), "ticker": ticker, "transactions": int(b.n[s].sum()),
                     "volume": v, "window_start": int(b.t[i])})
    return rows


class _Reply(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body


def _error(status: int, text: str) -> _Reply:
    return _Reply(status, {"status": "ERROR", "request_id": uuid.uuid4().hex, "error": text})


def _bound(text: str) -> int:
    """A ``window_start``/``timestamp`` filter value (ns, ``YYYY-MM-DD`` = UTC midnight, RFC 3339) → ns."""
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            return int(datetime.combine(date.fromisoformat(text), time(0), timezone.utc).timestamp()) * 10**9
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 10**9)
    except ValueError:
        raise _error(400, f"Could not parse '{text}': use nanoseconds, YYYY-MM-DD or RFC 3339.") from None


def _window(query: dict[str, str], field: str) -> tuple[int, int]:
    lo, hi = 0, 2**62
    if field in query:
        lo = _bound(query[field])
        hi = lo + (86_400 * 10**9 - 1 if len(query[field]) == 10 else 0)
    if f"{field}.gte" in query:
        lo = max(lo, _bound(query[f"{field}.gte"]))
    if f"{field}.gt" in query:
        lo = max(lo, _bound(query[f"{field}.gt"]) + 1)
    if f"{field}.lte" in query:
        hi = min(hi, _bound(query[f"{field}.lte"]))
    if f"{field}.lt" in query:
        hi = min(hi, _bound(query[f"{field}.lt"]) - 1)
    return lo, hi


def _sessions_between(ticker: str, lo_ns: int, hi_ns: int, now_ns: int) -> list[date]:
    """The contract's sessions with a minute in [lo, hi], up to the clock's (only finished minutes exist)."""
    today = datetime.fromtimestamp(now_ns / 1e9, timezone.utc).date()
    c = find(ticker, today)
    if c is None:
        return []
    lo_ns = max(lo_ns, session_open_ns(c.first_trade))
    hi_ns = min(hi_ns, now_ns, session_close_ns(c.last_trade))
    if hi_ns < lo_ns:
        return []
    first = datetime.fromtimestamp(lo_ns / 1e9, timezone.utc).date()
    last = datetime.fromtimestamp(hi_ns / 1e9, timezone.utc).date() + timedelta(days=1)
    return [first + timedelta(days=i) for i in range((last - first).days + 1) if is_session(first + timedelta(days=i))]


def _page(rows: list[dict[str, Any]], query: dict[str, str], base_url: str, path: str,
          default_limit: int) -> dict[str, Any]:
    """One page of ``rows`` (already ordered) at the cursor's offset, ``next_url`` when more remain."""
    state = _cursor(query)
    offset = int(state.get("offset", 0))
    limit = int(state.get("limit", query.get("limit", default_limit)))
    if not 1 <= limit <= 50_000:
        raise _error(400, "limit must be between 1 and 50000")
    body: dict[str, Any] = {"request_id": uuid.uuid4().hex, "results": rows[offset:offset + limit], "status": "OK"}
    if offset + limit < len(rows):
        params = {k: v for k, v in query.items() if k not in ("cursor", "apiKey")}
        token = base64.urlsafe_b64encode(orjson.dumps({**params, "offset": offset + limit, "limit": limit}))
        body["next_url"] = f"{base_url}{path}?{urlencode({'cursor': token.decode().rstrip('=')})}"
    return body


def _cursor(query: dict[str, str]) -> dict[str, Any]:
    token = query.get("cursor")
    if not token:
        return {}
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise _error(400, "Invalid cursor.") from None
    query.update({k: str(v) for k, v in state.items() if k not in ("offset", "limit")})
    return dict(state)


def _descending(query: dict[str, str], field: str) -> bool:
    sort = query.get("sort", f"{field}.desc")
    if sort not in ("asc", "desc", f"{field}.asc", f"{field}.desc"):
        raise _error(400, f"Invalid sort '{sort}'.")
    return sort.endswith("desc")


def _resolution(text: str) -> int | None:
    """Minutes per bar of a ``resolution`` (None = one session); an unsupported size is a 400."""
    for unit, minutes, top in (("min", 1, 59), ("hour", 60, 23), ("session", 0, 1)):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            size = int(text[: -len(unit)])
            if 1 <= size <= top:
                return size * minutes if minutes else None
    raise _error(400, f"Unsupported resolution '{text}'.")


def aggs(ticker: str, query: dict[str, str], now_ns: int, base_url: str) -> dict[str, Any]:
    lo, hi = _window(query, "window_start")
    per = _resolution(query.get("resolution", "1session"))  # the spec's default
    rows: list[dict[str, Any]] = []
    for day in _sessions_between(ticker, lo - 86_400 * 10**9, hi, now_ns):
        if per is None:
            bar = session_bar(ticker, day)
            if bar is not None and session_close_ns(day) <= now_ns:  # finished sessions
                rows.append(bar)
        elif (b := minute_bars(ticker, day)) is not None:
            rows.extend(_minute_rows(ticker, day, b, per))
    rows = [r for r in rows if lo <= r["window_start"] <= hi and r["window_start"] + NS_MIN <= now_ns]
    if _descending(query, "window_start"):
        rows.reverse()
    return _page(rows, query, base_url, f"/futures/v1/aggs/{ticker}", 1000)


#: The CME multicast channel a trade or quote row names (the spec requires ``channel``); one value for every product
#: here, the spec example's (GCJ5 quotes: 360).
CHANNEL = 360


def tick_arrays(ticker: str, day: date) -> dict[str, np.ndarray] | None:
    """A contract's ticks of the session settling on ``day`` as arrays: one print per minute 56 s in, at the
    minute's close, and the book one tick wide around it (bid at the close). The one source of the REST
    ``/futures/v1/trades|quotes`` rows, the ``trades_v1``/``quotes_v1`` day files and the WebSocket ``T``/``Q``."""
    b = minute_bars(ticker, day)
    if b is None:
        return None
    tick = find(ticker, day).product.tick  # type: ignore[union-attr]
    return {"timestamp": b.t + 56 * 10**9, "sequence_number": 1000 + (b.t // NS_MIN) % 10**7, "price": b.c,
            "size": np.maximum(1, b.v // 20), "bid_price": b.c, "ask_price": b.c + tick}


def ticks(kind: str, ticker: str, query: dict[str, str], now_ns: int, base_url: str) -> dict[str, Any]:
    """Trades: one print at each minute's close (4 s before the minute ends); quotes: the book around it."""
    lo, hi = _window(query, "timestamp")
    if "session_end_date" in query:
        day = date.fromisoformat(query["session_end_date"])
        lo, hi = max(lo, session_open_ns(day)), min(hi, session_close_ns(day))
    rows: list[dict[str, Any]] = []
    for day in _sessions_between(ticker, lo - 86_400 * 10**9, hi, now_ns):
        a = tick_arrays(ticker, day)
        if a is None:
            continue
        ts = a["timestamp"]
        for i in np.flatnonzero((ts >= lo) & (ts <= hi) & (ts <= now_ns)).tolist():
            t, seq, price = int(ts[i]), int(a["sequence_number"][i]), float(a["price"][i])
            if kind == "trades":
                rows.append({"channel": CHANNEL, "price": price, "report_sequence": seq, "sequence_number": seq,
                             "session_end_date": day.isoformat(), "size": int(a["size"][i]), "ticker": ticker,
                             "timestamp": t})
            else:
                rows.append({"ask_price": float(a["ask_price"][i]), "ask_size": 5, "ask_timestamp": t,
                             "bid_price": float(a["bid_price"][i]), "bid_size": 7, "bid_timestamp": t,
                             "channel": CHANNEL, "report_sequence": seq, "sequence_number": seq,
                             "session_end_date": day.isoformat(), "ticker": ticker, "timestamp": t})
    if _descending(query, "timestamp"):
        rows.reverse()
    default_limit = 10 if kind == "trades" else 100  # the spec's defaults
    return _page(rows, query, base_url, f"/futures/v1/{kind}/{ticker}", default_limit)


#: The contracts listing's ``type`` ("single" or "combo") exists from this listing date on; before it, it is null
#: (the spec's field text: "This field only exists on contracts as of 2025-03-12 and later").
TYPED_SINCE = date(2025, 3, 12)


def contract_rows(day: date, product_codes: list[str]) -> list[dict[str, Any]]:
    """The listing as of ``day``: per product its calendar spreads first (``type`` "combo"), then the outrights
    ("single"); ``type`` null on days before :data:`TYPED_SINCE`."""
    single, combo = ("single", "combo") if day >= TYPED_SINCE else (None, None)
    rows: list[dict[str, Any]] = []
    for code in product_codes:
        product = PRODUCTS[code]
        chain = listed(product, day)
        spreads = [{"active": True, "date": day.isoformat(), "days_to_maturity": (a.last_trade - day).days,
                    "first_trade_date": b.first_trade.isoformat(), "last_trade_date": a.last_trade.isoformat(),
                    "name": f"{a.ticker}-{b.ticker} Calendar Spread", "product_code": code,
                    "settlement_date": a.last_trade.isoformat(), "ticker": f"{a.ticker}-{b.ticker}",
                    "trade_tick_size": product.tick / 5, "trading_venue": product.venue, "type": combo}
                   for a, b in zip(chain, chain[1:])]
        singles = [{"active": True, "date": day.isoformat(), "days_to_maturity": (c.last_trade - day).days,
                    "first_trade_date": c.first_trade.isoformat(), "group_code": code,
                    "last_trade_date": c.last_trade.isoformat(), "max_order_quantity": 2000,
                    "min_order_quantity": 1, "name": f"{c.ticker} Future", "product_code": code,
                    "settlement_date": c.last_trade.isoformat(), "settlement_tick_size": product.tick,
                    "spread_tick_size": product.tick / 5, "ticker": c.ticker, "trade_tick_size": product.tick,
                    "trading_venue": product.venue, "type": single} for c in chain]
        rows += spreads + singles
    return rows


def _date_filter(query: dict[str, str], field: str) -> Callable[[str], bool]:
    exact, gte, gt = query.get(field), query.get(f"{field}.gte"), query.get(f"{field}.gt")
    lte, lt = query.get(f"{field}.lte"), query.get(f"{field}.lt")

    def keep(v: str) -> bool:  # ISO dates compare as strings
        return ((exact is None or v == exact) and (gte is None or v >= gte) and (gt is None or v > gt)
                and (lte is None or v <= lte) and (lt is None or v < lt))

    return keep


def contracts(query: dict[str, str], today: date, base_url: str) -> dict[str, Any]:
    """``/futures/v1/contracts``: point in time. ``date`` (one day's listing), ``date.gte/.gt/.lte/.lt`` (each
    session's listing in the range, one row per contract and day) and, with no date filter, every contract
    ever listed that the ``first_trade_date``/``last_trade_date`` filters keep; ``product_code``, ``ticker``,
    ``type`` (a row whose type is null is not "single": it is left out by ``type=single``)."""
    _cursor(query)
    codes = [query["product_code"]] if "product_code" in query else sorted(PRODUCTS)
    codes = [c for c in codes if c in PRODUCTS]
    ranged = [k for k in ("date.gte", "date.gt", "date.lte", "date.lt") if k in query]
    if "date" in query:
        rows = contract_rows(date.fromisoformat(query["date"]), codes)
    elif ranged:
        keep_day = _date_filter(query, "date")
        lo = date.fromisoformat(query.get("date.gte", query.get("date.gt", (today - timedelta(days=30)).isoformat())))
        hi = min(date.fromisoformat(query.get("date.lte", query.get("date.lt", today.isoformat()))), today)
        rows = []
        d = lo
        while d <= hi:
            if is_session(d) and keep_day(d.isoformat()):
                rows += contract_rows(d, codes)
            d += timedelta(days=1)
    else:  # the whole history the trade-date filters reach, as of each contract's own listing
        since = query.get("last_trade_date.gte", (today - timedelta(days=800)).isoformat())
        until = query.get("first_trade_date.lte", today.isoformat())
        rows = []
        for code in codes:
            seen: dict[str, dict[str, Any]] = {}
            d = min(date.fromisoformat(since), today)
            while d.isoformat() <= until and d <= today:
                for r in contract_rows(d, [code]):  # as of today: typed
                    seen.setdefault(r["ticker"], {**r, "date": today.isoformat(),
                                                  "active": r["last_trade_date"] >= today.isoformat(),
                                                  "type": None if today < TYPED_SINCE
                                                  else "combo" if "-" in r["ticker"] else "single"})
                d += timedelta(days=30)
            rows += sorted(seen.values(), key=lambda r: ("-" not in r["ticker"], r["last_trade_date"]))
    keep_last, keep_first = _date_filter(query, "last_trade_date"), _date_filter(query, "first_trade_date")
    rows = [r for r in rows if keep_last(r["last_trade_date"]) and keep_first(r["first_trade_date"])
            and r["type"] == query.get("type", r["type"]) and r["ticker"] == query.get("ticker", r["ticker"])]
    return _page(rows, query, base_url, "/futures/v1/contracts", 100)


def products(query: dict[str, str], today: date, base_url: str) -> dict[str, Any]:
    rows = [{"asset_class": "equity" if p.code == "ES" else "commodity", "date": today.isoformat(),
             "last_updated": today.isoformat(), "name": p.name, "price_quotation": "U.S. dollars per point",
             "product_code": p.code, "settlement_currency_code": "USD", "trade_currency_code": "USD",
             "trading_venue": p.venue, "type": "single", "unit_of_measure": p.unit,
             "unit_of_measure_qty": p.point_value}
            for p in PRODUCTS.values() if query.get("product_code", p.code) == p.code]
    return _page(rows, query, base_url, "/futures/v1/products", 100)


def schedules(query: dict[str, str], today: date, base_url: str) -> dict[str, Any]:
    """Per session: ``pre_open`` (16:45 Chicago), ``open`` (17:00) the day before, ``close`` (16:00; 12:15 on
    NYSE early-close days such as the day after Thanksgiving, as CME closes its equity and metals futures)."""
    keep = _date_filter(query, "session_end_date")
    first = date.fromisoformat(query.get("session_end_date", query.get("session_end_date.gte", (today - timedelta(
        days=14)).isoformat())))
    last = date.fromisoformat(query.get("session_end_date", query.get("session_end_date.lte", today.isoformat())))
    rows = []
    for code in ([query["product_code"]] if "product_code" in query else sorted(PRODUCTS)):
        product = PRODUCTS.get(code)
        if product is None:
            continue
        d = first
        while d <= last:
            if is_session(d) and keep(d.isoformat()):
                for event, when in (("pre_open", datetime.combine(d - timedelta(days=1), time(16, 45), CHICAGO)),
                                    ("open", datetime.combine(d - timedelta(days=1), time(17), CHICAGO)),
                                    ("close", datetime.combine(d, _close_time(d), CHICAGO))):
                    rows.append({"event": event, "product_code": code, "product_name": product.name,
                                 "session_end_date": d.isoformat(), "timestamp": when.astimezone(timezone.utc)
                                 .isoformat(), "trading_venue": product.venue})
            d += timedelta(days=1)
    return _page(rows, query, base_url, "/futures/v1/schedules", 10)  # the spec's default limit


def _close_time(day: date) -> time:
    session = _nyse_session(day)
    early = session is not None and session[1] < int(datetime.combine(day, time(16), NEW_YORK).timestamp() * 1000)
    return time(12, 15) if early else time(16)


def route(path: str, query: dict[str, str], now_ms: int, base_url: str) -> tuple[int, dict[str, Any]]:
    """Answer one ``/futures/v1/...`` request: (status, JSON body)."""
    now_ns = now_ms * 10**6
    today = datetime.fromtimestamp(now_ms / 1000, timezone.utc).date()
    parts = path.split("/")
    try:
        if len(parts) == 5 and parts[3] == "aggs":
            return 200, aggs(parts[4], query, now_ns, base_url)
        if len(parts) == 5 and parts[3] in ("trades", "quotes"):
            return 200, ticks(parts[3], parts[4], query, now_ns, base_url)
        endpoint = {"contracts": contracts, "products": products, "schedules": schedules}.get(parts[-1])
        if len(parts) == 4 and endpoint is not None:
            return 200, endpoint(query, today, base_url)
    except _Reply as reply:
        return reply.status, reply.body
    return 404, {"status": "NOT_FOUND", "request_id": uuid.uuid4().hex, "message": "Data not found."}


# --- flat files ---------------------------------------------------------------------------------------
AGG_COLUMNS = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions", "dollar_volume",
               "exchange", "session_end_date")
SESSION_COLUMNS = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions",
                   "dollar_volume", "settlement_price", "session_end_date")
EXCHANGE_IDS = {"XCME": 1, "XCEC": 4}


def day_table(prefix: str, base: str, day: date) -> pa.Table:
    """A ``us_futures_*`` day file's rows (``base``: ``minute`` or ``day`` = ``session_aggs_v1``, or a tick kind
    ``trades``/``quotes``: :func:`tick_table`), sorted by ticker then time, every contract of the exchange's
    products that trades that session."""
    if base in TICK_COLUMNS:
        return tick_table(prefix, base, day)
    tickers = sorted(c.ticker for code in PREFIX_PRODUCTS.get(prefix, ()) for c in listed(PRODUCTS[code], day))
    if base == "day":
        rows = [r for t in tickers if (r := session_bar(t, day)) is not None]
        # volume as a float, as in the minute files (the REST rows carry it as an integer, as the spec types it)
        return pa.table({name: pa.array([r[name] for r in rows], pa.float64() if name == "volume" else None)
                         for name in SESSION_COLUMNS}) if rows else \
            pa.table({name: pa.array([], pa.string()) for name in SESSION_COLUMNS})
    parts = [(t, b) for t in tickers if (b := minute_bars(t, day)) is not None]
    sizes = [b.size for _, b in parts]
    cat = (lambda f: np.concatenate([getattr(b, f) for _, b in parts])) if parts else (lambda f: np.empty(0))
    venue = PRODUCTS[PREFIX_PRODUCTS[prefix][0]].venue if PREFIX_PRODUCTS.get(prefix) else "XCME"
    n = sum(sizes)
    return pa.table({
        "ticker": pa.array(np.repeat([t for t, _ in parts], sizes) if parts else [], pa.string()),
        "volume": pa.array(cat("v"), pa.float64()), "open": pa.array(cat("o"), pa.float64()),
        "close": pa.array(cat("c"), pa.float64()), "high": pa.array(cat("h"), pa.float64()),
        "low": pa.array(cat("l"), pa.float64()), "window_start": pa.array(cat("t").astype(np.int64), pa.int64()),
        "transactions": pa.array(cat("n").astype(np.int64), pa.int64()),
        "dollar_volume": pa.array(np.round(cat("c") * cat("v"), 2), pa.float64()),
        "exchange": pa.array(np.full(n, EXCHANGE_IDS.get(venue, 1)), pa.int64()),
        "session_end_date": pa.array(np.full(n, day.isoformat()), pa.string()),
    })



#: the real ``trades_v1`` / ``quotes_v1`` headers (tests/fixtures/real/flatfiles/futures_*_header.csv)
TICK_COLUMNS = {
    "trades": ("ticker", "timestamp", "sequence_number", "report_sequence", "price", "size", "correction", "exchange",
               "session_end_date"),
    "quotes": ("ticker", "timestamp", "sequence_number", "report_sequence", "ask_timestamp", "ask_price", "ask_size",
               "bid_timestamp", "bid_price", "bid_size", "exchange", "session_end_date"),
}


def tick_table(prefix: str, kind: str, day: date) -> pa.Table:
    """A ``us_futures_*`` ``trades_v1``/``quotes_v1`` day file's rows: every contract of the exchange's products
    trading in the session settling on ``day`` (the file's name), sorted by ticker then time, the same events as
    :func:`ticks` serves over REST (prices written in shortest round-trip form, sizes as integers)."""
    tickers = sorted(c.ticker for code in PREFIX_PRODUCTS.get(prefix, ()) for c in listed(PRODUCTS[code], day))
    parts = [(t, a) for t in tickers if (a := tick_arrays(t, day)) is not None]
    n = sum(len(a["timestamp"]) for _, a in parts)

    def cat(field: str) -> np.ndarray:
        return np.concatenate([a[field] for _, a in parts]) if parts else np.empty(0)

    venue = PRODUCTS[PREFIX_PRODUCTS[prefix][0]].venue if PREFIX_PRODUCTS.get(prefix) else "XCME"
    ts, seq = pa.array(cat("timestamp").astype(np.int64)), pa.array(cat("sequence_number").astype(np.int64))
    cols: dict[str, pa.Array] = {
        "ticker": pa.array(np.repeat([t for t, _ in parts], [len(a["timestamp"]) for _, a in parts]) if parts
                           else [], pa.string()),
        "timestamp": ts, "sequence_number": seq, "report_sequence": seq,
        "exchange": pa.array(np.full(n, EXCHANGE_IDS.get(venue, 1), dtype=np.int64)),
        "session_end_date": pa.array(np.full(n, day.isoformat()), pa.string()),
    }
    if kind == "trades":
        cols.update(price=pa.array(cat("price"), pa.float64()), size=pa.array(cat("size").astype(np.int64)),
                    correction=pa.array(np.zeros(n, dtype=np.int64)))
    else:
        cols.update(ask_timestamp=ts, ask_price=pa.array(cat("ask_price"), pa.float64()),
                    ask_size=pa.array(np.full(n, 5, dtype=np.int64)), bid_timestamp=ts,
                    bid_price=pa.array(cat("bid_price"), pa.float64()), bid_size=pa.array(np.full(n, 7, dtype=np.int64)))
    return pa.table({name: cols[name] for name in TICK_COLUMNS[kind]})


# --- the /futures WebSocket ------------------------------------------------------------------------
WS_CHANNELS = frozenset({"T", "Q", "A", "AM"})


def ws_events(subs: set[str], lo_ms: int, hi_ms: int) -> list[dict[str, Any]]:
    """The ``/futures`` events of ``subs`` (``AM.ESZ6``, ``T.*`` …) with event time in ``(lo_ms, hi_ms]``, in
    time order: ``AM`` when a minute closes (``sym v dv o c h l n s e``), ``T`` (``sym p s t q``) and ``Q``
    (``sym bp bs bt ap as at t``) 56 s into each minute, as :func:`ticks` serves them over REST, and ``A`` (the
    per-second bar of that print) a second later."""
    first = datetime.fromtimestamp(lo_ms / 1000, timezone.utc).date()
    last = datetime.fromtimestamp(hi_ms / 1000, timezone.utc).date() + timedelta(days=1)
    wanted: dict[str, set[str]] = {}
    timed: list[tuple[int, dict[str, Any]]] = []
    day = first
    while day <= last:
        if is_session(day):
            listed_now = [c.ticker for p in PRODUCTS.values() for c in listed(p, day)]
            wanted = {}
            for param in subs:
                channel, _, wire = param.partition(".")
                for t in (listed_now if wire == "*" else [wire] if wire in listed_now else []):
                    wanted.setdefault(t, set()).add(channel)
            for ticker, channels in wanted.items():
                timed += _ws_ticker_events(ticker, channels, day, lo_ms, hi_ms)
        day += timedelta(days=1)
    timed.sort(key=lambda x: x[0])
    return [e for _, e in timed]


def _ws_ticker_events(ticker: str, channels: set[str], day: date, lo_ms: int, hi_ms: int
                      ) -> list[tuple[int, dict[str, Any]]]:
    b = minute_bars(ticker, day)
    if b is None:
        return []
    start = b.t // 10**6
    out: list[tuple[int, dict[str, Any]]] = []
    tick = PRODUCTS[ticker[:-2]].tick
    for i in np.flatnonzero((start + 60_000 > lo_ms) & (start < hi_ms)).tolist():
        s, e, print_ms = int(start[i]), int(start[i]) + 60_000, int(start[i]) + 56_000
        c = float(b.c[i])
        if "AM" in channels and lo_ms < e <= hi_ms:
            # "v" is a count of contracts: an integer, as on the docs page's example (and REST's int64 volume)
            out.append((e, {"ev": "AM", "sym": ticker, "v": int(b.v[i]), "dv": round(c * float(b.v[i]), 2),
                            "o": float(b.o[i]), "c": c, "h": float(b.h[i]), "l": float(b.l[i]), "n": int(b.n[i]),
                            "s": s, "e": e}))
        size = int(max(1, b.v[i] // 20))
        if "A" in channels and lo_ms < print_ms + 1000 <= hi_ms:  # the second of the print below, as it ends
            out.append((print_ms + 1000, {"ev": "A", "sym": ticker, "v": size, "dv": round(c * size, 2), "o": c,
                                          "c": c, "h": c, "l": c, "n": 1, "s": print_ms, "e": print_ms + 1000}))
        if not lo_ms < print_ms <= hi_ms:
            continue
        seq = 1000 + s // 60_000 % 10**7
        if "T" in channels:
            out.append((print_ms, {"ev": "T", "sym": ticker, "p": c, "s": size, "t": print_ms, "q": seq}))
        if "Q" in channels:
            out.append((print_ms, {"ev": "Q", "sym": ticker, "bp": c, "bs": 7, "bt": print_ms, "ap": c + tick,
                                   "as": 5, "at": print_ms, "t": print_ms}))
    return out
