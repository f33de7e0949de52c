"""The sandbox's REST side: a real HTTP/1.1 server with Massive's JSON shapes.

Serves, each in the real wire form (sources: the official client's test mocks under
``massive-com/client-python`` ``test_rest/mocks/`` and the OpenAPI examples in its ``.massive/rest.json``):

* ``/v2/aggs/ticker/{t}/range/{m}/{span}/{from}/{to}`` (``adjusted`` — split-adjusted by default, raw
  with ``adjusted=false`` —, ``sort``, ``limit``, ``cursor``; ``next_url`` without the key); today's
  day bar holds only the minutes finished by the sandbox clock;
* ``/v3/reference/tickers`` and ``/v3/reference/splits`` (filters ``ticker``/``execution_date`` with
  ``.gt/.gte/.lt/.lte``, ``reverse_split``, ``sort``, ``order``, ``limit`` ≤ 1000, ``next_url``);
* ``/v3/trades/{t}`` and ``/v3/quotes/{t}``: the generator's ticks (the WebSocket's events), per asset
  class as the spec has them (crypto trades only, forex quotes only), ``timestamp`` and
  ``.gte/.gt/.lte/.lt`` filters (ns integers, ``YYYY-MM-DD`` New York days, ISO datetimes), ``order``
  (default ``desc``), ``sort=timestamp``, ``limit`` ≤ 50,000 (default 1000), ``next_url`` cursors;
* ``/v2/last/trade/{t}``, ``/v2/last/nbbo/{t}``, ``/v2/aggs/ticker/{t}/prev``,
  ``/v1/open-close/{t}/{date}``, ``/v2/aggs/grouped/locale/us/market/stocks/{date}``,
  ``/v3/reference/tickers/{t}``, ``/v2/snapshot/locale/us/markets/stocks/tickers/{t}``,
  ``/v3/reference/dividends`` and ``/v1/marketstatus/now``, all as of the sandbox clock;
* ``/futures/v1/...`` (aggs, trades, quotes, contracts, products, schedules): :mod:`.futures`.
* ``/stocks/v1/splits`` and ``/stocks/v1/dividends``, the current corporate-action endpoints (OpenAPI
  spec of massive-com/client-jvm ``src/openapi.json``): ``historical_adjustment_factor`` (cumulative, as of
  the clock), ``adjustment_type``/``distribution_type``, ``split_adjusted_cash_amount``; filters with
  ``.gt/.gte/.lt/.lte`` and ``.any_of``, ``sort=<field>.<asc|desc>``, ``limit`` ≤ 5000 (default 100),
  ``next_url``. ``faults.unanswered.add("/stocks/v1/")`` makes them answer 404, as a server without them.

Authenticates with either ``Authorization: Bearer`` or ``?apiKey=`` as the real service does, answers
401/403/404/429 with the real error bodies, and applies the sandbox's rate limit and injected faults.
"""

from __future__ import annotations

import base64
import gzip
import logging
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit

import numpy as np
import orjson
import pandas as pd

from ..schema import NEW_YORK, asset_class
from .market import HISTORY_START, Bars, TickColumns

if TYPE_CHECKING:
    from . import Sandbox

log = logging.getLogger(__name__)

TICKS_RE = re.compile(r"^/v3/(?P<kind>trades|quotes)/(?P<ticker>[^/]+)$")
LAST_RE = re.compile(r"^/v2/last/(?P<kind>trade|nbbo)/(?P<ticker>[^/]+)$")
PREV_RE = re.compile(r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/prev$")
OPEN_CLOSE_RE = re.compile(r"^/v1/open-close/(?P<ticker>[^/]+)/(?P<day>[^/]+)$")
GROUPED_RE = re.compile(r"^/v2/aggs/grouped/locale/us/market/stocks/(?P<day>[^/]+)$")
DETAILS_RE = re.compile(r"^/v3/reference/tickers/(?P<ticker>[^/]+)$")
SNAPSHOT_RE = re.compile(r"^/v2/snapshot/locale/us/markets/stocks/tickers/(?P<ticker>[^/]+)$")
AGGS_RE = re.compile(r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>[^/]+)/(?P<span>[^/]+)/(?P<frm>[^/]+)/(?P<to>[^/]+)$")
TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
NOT_ENTITLED_MESSAGE = "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing"
RATE_LIMIT_MESSAGE = ("You've exceeded the maximum requests per minute, please wait or upgrade your "
                      "subscription to continue.")


@dataclass
class LoggedRequest:
    """What the sandbox saw of one request (for tests: was the key in the URL? how many calls?)."""

    at: float
    method: str
    path: str
    query: str
    auth: str  # "bearer" | "query" | "none"
    status: int = 0
    client_port: int = 0  # the client's TCP port: requests on one kept-alive connection share it


class _Reply(Exception):
    """Raised inside a handler to answer with a status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, text: str, key: str = "error", state: str = "ERROR") -> _Reply:
    return _Reply(status, {"status": state, "request_id": uuid.uuid4().hex, key: text})


def _parse_bound(text: str, end: bool) -> int:
    """A ``from``/``to`` path value (``YYYY-MM-DD`` or epoch ms) → epoch ms; dates are New York days."""
    if text.isdigit():
        return int(text)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _error(400, f"Could not parse the time parameter: '{text}'. Use YYYY-MM-DD or a millisecond "
                          "timestamp.") from None
    ms = int(datetime.combine(day, dtime(0), NEW_YORK).timestamp() * 1000)
    return ms + 86_400_000 - 1 if end else ms  # a date `to` covers that whole day


class RestServer:
    """The HTTP server thread. ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self.sandbox = sandbox
        self.requests: list[LoggedRequest] = []
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer((sandbox.host, 0), Handler)
        self._httpd.daemon_threads = True
        # poll 0.05 s (default 0.5): stop() waits up to one poll, and tests start and stop many sandboxes
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sandbox-rest", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, path_prefix: str = "/") -> int:
        """How many requests reached the server whose path starts with ``path_prefix``."""
        with self._lock:
            return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def rate_limited(self, key: str) -> bool:
        """Sliding-window check of the sandbox's own rate limit; records the call when allowed."""
        limit = self.sandbox.rate_limit
        if limit is None:
            return False
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - limit.window:
                calls.popleft()
            if len(calls) >= limit.requests:
                return True
            calls.append(now)
            return False

    # --- endpoints ------------------------------------------------------------------------------
    def aggs(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        sb = self.sandbox
        ticker, span = m["ticker"], m["span"]
        if span not in TIMESPANS:
            raise _error(400, f"Invalid timespan '{span}'. Must be one of: {', '.join(TIMESPANS)}.")
        if not m["mult"].isdigit() or int(m["mult"]) < 1:
            raise _error(400, f"Invalid multiplier '{m['mult']}'.")
        if span == "second":
            raise _error(403, "Your plan doesn't include second aggregates in the sandbox.", "message", "NOT_AUTHORIZED")
        if asset_class(ticker) in sb.not_entitled:
            raise _error(403, NOT_ENTITLED_MESSAGE, "message", "NOT_AUTHORIZED")
        # As on the real service, an aggs cursor is the base64 of the remaining query string
        # ("limit=5000&sort=asc") and the position lives in the next_url's path (``from`` in ms).
        cursor = _decode_aggs_cursor(query.get("cursor"))
        adjusted = cursor.get("adjusted", query.get("adjusted", "true")).lower() != "false"
        sort = cursor.get("sort", query.get("sort", "asc"))
        limit = int(cursor.get("limit", query.get("limit", 5000)))
        if not 1 <= limit <= 50_000:
            raise _error(400, "limit must be between 1 and 50000")
        frm = _parse_bound(m["frm"], end=False)
        to = _parse_bound(m["to"], end=True)
        to = min(to, sb.clock.now_ms() - 60_000)  # only finished minutes exist yet
        base = {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": adjusted,
                "status": "OK", "request_id": uuid.uuid4().hex}
        if not sb.market.knows(ticker) or to < frm:
            return {**base, "count": 0}
        bars = sb.market.bars(ticker, frm, to, int(m["mult"]), span, adjusted=bool(adjusted),
                              until_ms=sb.clock.now_ms())  # today's day bar: finished minutes only
        if sort == "desc":
            bars = bars.slice(slice(None, None, -1))
        page = min(limit, sb.max_page_bars)
        body = {**base, "queryCount": int(bars.size), "resultsCount": min(page, bars.size),
                "results": _bar_dicts(bars.slice(slice(0, page)), asset_class(ticker)),
                "count": min(page, bars.size)}
        if bars.size > page:
            nxt = int(bars.t[page])
            # asc: ``from`` becomes the next bar's ms and ``to`` stays as sent (a date stays a date);
            # desc: the other way round.
            frm_text, to_text = (str(nxt), m["to"]) if sort == "asc" else (m["frm"], str(nxt))
            if sb.faults.repeat_cursor:
                frm_text, to_text = m["frm"], m["to"]
            rest = {"limit": limit, "sort": sort, **({} if adjusted else {"adjusted": "false"})}
            token = base64.urlsafe_b64encode(urlencode(sorted(rest.items())).encode()).decode().rstrip("=")
            path = f"/v2/aggs/ticker/{ticker}/range/{m['mult']}/{span}/{frm_text}/{to_text}"
            body["next_url"] = f"{self.url}{path}?{urlencode({'cursor': token})}"
        return body

    def ticks(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        """``/v3/trades/{ticker}`` and ``/v3/quotes/{ticker}``: the generator's ticks of the asked window
        in the real result shape, ``order`` (default ``desc``) by timestamp, pages of ``limit`` (default
        1000, max 50,000) chained by ``next_url`` whose cursor pins the next row (day, index)."""
        sb = self.sandbox
        kind, ticker = m["kind"], unquote(m["ticker"])
        asset = asset_class(ticker)
        if asset in sb.not_entitled:
            raise _error(403, NOT_ENTITLED_MESSAGE, "message", "NOT_AUTHORIZED")
        if kind not in sb.market.tick_kinds(ticker):
            raise _error(404, "Data not found.", "message", "NOT_FOUND")
        cursor = _decode_cursor(query.get("cursor"))
        params = cursor.get("params", {k: v for k, v in query.items() if k not in ("cursor", "apiKey")})
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _error(400, f"Invalid order '{order}'. Must be one of: asc, desc.")
        if params.get("sort", "timestamp") != "timestamp":
            raise _error(400, f"Invalid sort '{params['sort']}'. Must be one of: timestamp.")
        try:
            limit = int(params.get("limit", 1000))
        except ValueError:
            raise _error(400, f"Invalid limit '{params['limit']}'.") from None
        if not 1 <= limit <= 50_000:
            raise _error(400, "limit must be between 1 and 50000")
        lo, hi = _tick_window(params)
        hi = min(hi, sb.clock.now_ms() * 1_000_000)  # ticks after the sandbox's now have not happened
        body: dict[str, Any] = {"results": [], "status": "OK", "request_id": uuid.uuid4().hex}
        if not sb.market.knows(ticker) or hi < lo:
            return body
        pos = cursor.get("pos")
        rows, nxt = _tick_page(sb.market, ticker, kind, lo, hi, order == "asc", limit,
                               tuple(pos) if pos else None)
        body["results"] = rows
        if nxt is not None:
            token = _encode_cursor({"params": params, "pos": list(nxt)})
            body["next_url"] = f"{self.url}/v3/{kind}/{quote(ticker, safe=':')}?{urlencode({'cursor': token})}"
        return body

    def futures(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        """``/futures/v1/...``: answered by :func:`.futures.route` from the sandbox clock."""
        from . import futures

        if "futures" in self.sandbox.not_entitled:
            raise _error(403, NOT_ENTITLED_MESSAGE, "message", "NOT_AUTHORIZED")
        status, body = futures.route(path, query, self.sandbox.clock.now_ms(), self.url)
        if status != 200:
            raise _Reply(status, body)
        return body

    # --- the official client's other common calls ------------------------------------------------
    # Shapes from the official client's test mocks (massive-com/client-python test_rest/mocks/...,
    # captured from the real service) and the OpenAPI examples in its .massive/rest.json.
    def _known(self, ticker: str, assets: tuple[str, ...]) -> str:
        """The ticker (URL-decoded) when the sandbox has it and the endpoint serves its class; else 404."""
        ticker = unquote(ticker)
        asset = asset_class(ticker)
        if asset in self.sandbox.not_entitled:
            raise _error(403, NOT_ENTITLED_MESSAGE, "message", "NOT_AUTHORIZED")
        if asset not in assets or not self.sandbox.market.knows(ticker):
            raise _error(404, "Data not found.", "message", "NOT_FOUND")
        return ticker

    def last(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        """``/v2/last/trade/{t}`` (stocks, options) and ``/v2/last/nbbo/{t}`` (stocks): the latest tick at
        or before the sandbox clock, single-letter keys, ns timestamps (mocks v2/last/trade/AAPL.json,
        v2/last/nbbo/AAPL.json)."""
        kind = m["kind"]
        ticker = self._known(m["ticker"], ("stocks", "options") if kind == "trade" else ("stocks",))
        sb = self.sandbox
        found = sb.market.last_tick(ticker, sb.clock.now_ms())
        if found is None:
            raise _error(404, "Data not found.", "message", "NOT_FOUND")
        day, i = found
        cols = sb.market.tick_columns(ticker, day, "trades" if kind == "trade" else "quotes").columns
        v = {name: col[i].item() if hasattr(col[i], "item") else col[i] for name, col in cols.items()}
        if kind == "trade":
            res: dict[str, Any] = {"T": ticker, "p": v["price"], "s": v["size"], "x": v["exchange"],
                                   "t": v["sip_timestamp"], "y": v["participant_timestamp"]}
            if "id" in v:
                res.update({"i": v["id"], "q": v["sequence_number"], "z": v["tape"]})
        else:
            res = {"T": ticker, "P": v["ask_price"], "S": v["ask_size"], "X": v["ask_exchange"],
                   "p": v["bid_price"], "s": v["bid_size"], "x": v["bid_exchange"], "t": v["sip_timestamp"],
                   "y": v["participant_timestamp"], "q": v["sequence_number"], "z": v["tape"]}
        return {"request_id": uuid.uuid4().hex, "results": res, "status": "OK"}

    def _adjusted(self, query: dict[str, str]) -> bool:
        return query.get("adjusted", "true").lower() != "false"

    def _clock_day(self) -> date:
        return datetime.fromtimestamp(self.sandbox.clock.now_ms() / 1000, NEW_YORK).date()

    def prev_close(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        """``/v2/aggs/ticker/{t}/prev``: the day bar of the last trading day before the clock's day,
        with ``T`` (mock v2/aggs/ticker/AAPL/prev.json)."""
        ticker = self._known(m["ticker"], ("stocks", "options", "indices", "forex", "crypto"))
        sb, adjusted = self.sandbox, self._adjusted(query)
        base = {"ticker": ticker, "queryCount": 0, "resultsCount": 0, "adjusted": adjusted, "status": "OK",
                "request_id": uuid.uuid4().hex}
        day = sb.market.previous_session(ticker, self._clock_day())
        bar = sb.market.day_bar(ticker, day, adjusted) if day is not None else None
        if bar is None or bar.size == 0:
            return {**base, "count": 0}
        row = {"T": ticker, **_bar_dicts(bar, asset_class(ticker))[0]}
        return {**base, "queryCount": 1, "resultsCount": 1, "results": [row], "count": 1}

    def open_close(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        """``/v1/open-close/{t}/{date}`` (mock v1/open-close/AAPL/2005-04-01&adjusted=true.json):
        ``open``/``close`` the first/last trade of the regular session, ``high``/``low``/``volume`` over
        it, ``preMarket`` the day's first trade and ``afterHours`` its last (when there are trades
        outside the regular session). 404 ``NOT_FOUND`` on days without trading or not finished yet."""
        ticker = self._known(m["ticker"], ("stocks", "options", "indices"))
        try:
            day = date.fromisoformat(m["day"])
        except ValueError:
            raise _error(400, f"Could not parse the date '{m['day']}'. Use YYYY-MM-DD.") from None
        sb = self.sandbox
        if day >= self._clock_day():
            raise _error(404, "Data not found.", "message", "NOT_FOUND")
        tk = sb.market.ticks(ticker, day)
        lo, hi = sb.market.regular_bounds(day)
        i0, i1 = (int(i) for i in np.searchsorted(tk.t_ms, [lo, hi], side="left"))
        if i1 <= i0:
            raise _error(404, "Data not found.", "message", "NOT_FOUND")
        factor = sb.market.price_factor(ticker, day) if self._adjusted(query) else 1.0
        price = tk.price * factor
        body: dict[str, Any] = {"status": "OK", "from": day.isoformat(), "symbol": ticker,
                                "open": float(price[i0]), "high": float(price[i0:i1].max()),
                                "low": float(price[i0:i1].min()), "close": float(price[i1 - 1])}
        if asset_class(ticker) != "indices":
            body["volume"] = _num(np.array([round(float(tk.size[i0:i1].sum()) / factor, 8)]))[0]
        if i0 > 0:
            body["preMarket"] = float(price[0])
        if i1 < len(price):
            body["afterHours"] = float(price[-1])
        return body

    def grouped(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        """``/v2/aggs/grouped/locale/us/market/stocks/{date}``: every stock's day bar with ``T``; ``t``
        is 16:00 New York of the date, as in the real mock (v2/aggs/grouped/.../2005-04-04&adjusted=true.json)."""
        try:
            day = date.fromisoformat(m["day"])
        except ValueError:
            raise _error(400, f"Could not parse the date '{m['day']}'. Use YYYY-MM-DD.") from None
        sb, adjusted = self.sandbox, self._adjusted(query)
        if "stocks" in sb.not_entitled:
            raise _error(403, NOT_ENTITLED_MESSAGE, "message", "NOT_AUTHORIZED")
        rows = []
        if day < self._clock_day():
            for ticker in sorted(t for t in sb.market.universe if asset_class(t) == "stocks"):
                bar = sb.market.day_bar(ticker, day, adjusted)
                if bar.size:
                    row = {"T": ticker, **_bar_dicts(bar, "stocks")[0]}
                    row["t"] = int(datetime.combine(day, dtime(16), NEW_YORK).timestamp() * 1000)
                    rows.append(row)
        body: dict[str, Any] = {"queryCount": len(rows), "resultsCount": len(rows), "adjusted": adjusted}
        if rows:
            body["results"] = rows
        return {**body, "status": "OK", "request_id": uuid.uuid4().hex, "count": len(rows)}

    def ticker_details(self, m: re.Match[str]) -> dict[str, Any]:
        """``/v3/reference/tickers/{t}``: the reference fields the sandbox knows (mock v3/reference/tickers/AAPL.json)."""
        ticker = unquote(m["ticker"])
        info = self.sandbox.market.universe.get(ticker)
        if info is None:
            raise _error(404, "Ticker not found.", "message", "NOT_FOUND")
        row = _ticker_dict(info)
        if info.asset == "stocks":
            row["ticker_root"] = ticker
        return {"results": row, "status": "OK", "request_id": uuid.uuid4().hex}

    def snapshot(self, m: re.Match[str], query: dict[str, str]) -> dict[str, Any]:
        """``/v2/snapshot/locale/us/markets/stocks/tickers/{t}`` at the sandbox clock (mock
        v2/snapshot/locale/us/markets/stocks/tickers/AAPL.json): ``day`` = the current session so far
        (raw, ticks up to now), ``min`` = its last finished minute with ``av`` the day's volume through
        it, ``lastTrade``/``lastQuote`` the latest tick, ``prevDay`` the previous session's bar adjusted
        for splits since, ``todaysChange`` = last trade − previous close."""
        ticker = self._known(m["ticker"], ("stocks",))
        sb = self.sandbox
        now = sb.clock.now_ms()
        found = sb.market.last_tick(ticker, now)
        if found is None:
            raise _error(404, "Data not found.", "message", "NOT_FOUND")
        day, i = found
        trade = {k: (v[i].item() if hasattr(v[i], "item") else v[i])
                 for k, v in sb.market.tick_columns(ticker, day, "trades").columns.items()}
        quote_ = {k: v[i].item() for k, v in sb.market.tick_columns(ticker, day, "quotes").columns.items()}
        dayb = _bar_dicts(sb.market.partial_day_bar(ticker, day, now + 1), "stocks")[0]
        snap: dict[str, Any] = {
            "day": {k: dayb[k] for k in ("c", "h", "l", "o", "v", "vw")},
            "lastQuote": {"P": quote_["ask_price"], "S": quote_["ask_size"], "p": quote_["bid_price"],
                          "s": quote_["bid_size"], "t": quote_["sip_timestamp"]},
            "lastTrade": {"i": trade["id"], "p": trade["price"], "s": trade["size"], "t": trade["sip_timestamp"],
                          "x": trade["exchange"]},
            "ticker": ticker, "updated": trade["sip_timestamp"],
        }
        minutes = sb.market.minute_bars(ticker, day)
        done = np.flatnonzero(minutes.t + 60_000 <= now)
        if len(done):
            k = int(done[-1])
            mrow = _bar_dicts(minutes.slice(slice(k, k + 1)), "stocks")[0]
            snap["min"] = {"av": _num(np.array([round(float(minutes.v[: k + 1].sum()), 8)]))[0], **mrow}
        prev = sb.market.previous_session(ticker, day)
        if prev is not None:
            pbar = sb.market.day_bar(ticker, prev)
            if pbar.size:
                f = sb.market.split_factor_between(ticker, prev, day)
                pbar = pbar._replace(o=pbar.o * f, h=pbar.h * f, l=pbar.l * f, c=pbar.c * f, vw=pbar.vw * f,
                                     v=pbar.v / f)
                prow = _bar_dicts(pbar, "stocks")[0]
                snap["prevDay"] = {k: prow[k] for k in ("c", "h", "l", "o", "v", "vw")}
                change = trade["price"] - prow["c"]
                snap["todaysChange"] = round(change, 4)
                snap["todaysChangePerc"] = round(change / prow["c"] * 100, 4)
        return {"request_id": uuid.uuid4().hex, "status": "OK", "ticker": snap}

    def dividends(self, query: dict[str, str]) -> dict[str, Any]:
        """``/v3/reference/dividends``: the generator's dividends declared by the clock's day, filtered
        (``ticker``, the four dates, ``cash_amount`` with ``.gt/.gte/.lt/.lte``; ``frequency``,
        ``dividend_type``), sorted (``sort`` default ``ex_dividend_date``, ``order`` default ``desc``),
        ``limit`` ≤ 1000 (default 10), ``next_url`` (fields from the OpenAPI spec; mock v3/reference/dividends.json)."""
        cursor = _decode_cursor(query.get("cursor"))
        params = cursor.get("params", {k: v for k, v in query.items() if k not in ("cursor", "apiKey")})
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            raise _error(400, f"Invalid limit '{params['limit']}'.") from None
        if not 1 <= limit <= 1000:
            raise _error(400, "limit must be between 1 and 1000")
        sort = params.get("sort", "ex_dividend_date")
        if sort not in ("ex_dividend_date", "pay_date", "declaration_date", "record_date", "cash_amount", "ticker"):
            raise _error(400, f"Invalid sort field '{sort}'.")
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _error(400, f"Invalid order '{order}'.")
        today = self._clock_day()
        rows = [d for d in self.sandbox.market.dividends(HISTORY_START, today + timedelta(days=60))
                if d.declaration_date <= today and _dividend_matches(d, params)]
        rows.sort(key=lambda d: (getattr(d, sort), d.ticker, d.ex_dividend_date), reverse=order == "desc")
        return self._offset_page("/v3/reference/dividends", rows, cursor, params, limit, _dividend_dict)

    def _offset_page(self, path: str, rows: list[Any], cursor: dict[str, Any], params: dict[str, str], limit: int,
                     to_dict: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """One page of an offset-paginated reference list; ``next_url`` carries the offset and the query
        (never the key) in its cursor."""
        offset = int(cursor.get("offset", 0))
        body: dict[str, Any] = {"results": [to_dict(r) for r in rows[offset: offset + limit]], "status": "OK",
                                "request_id": uuid.uuid4().hex}
        if offset + limit < len(rows):
            state = {"offset": offset + limit, "params": params}
            body["next_url"] = f"{self.url}{path}?{urlencode({'cursor': _encode_cursor(state)})}"
        return body

    def market_status(self) -> dict[str, Any]:
        """``/v1/marketstatus/now`` at the sandbox clock (mock v1/marketstatus/now.json): ``open`` in the
        regular session, ``extended-hours`` in pre-market (04:00) and after-hours (to 20:00, 17:00 on
        early-close days), else ``closed``; forex open on weekdays, crypto always."""
        sb = self.sandbox
        now = sb.clock.now_ms()
        local = datetime.fromtimestamp(now / 1000, NEW_YORK)
        day = local.date()
        state, early, after = "closed", False, False
        if sb.market.is_trading_day("SPY", day):
            lo, hi = sb.market.regular_bounds(day)
            pre = int(datetime.combine(day, dtime(4), NEW_YORK).timestamp() * 1000)
            end = hi + 4 * 3_600_000
            if lo <= now < hi:
                state = "open"
            elif pre <= now < lo:
                state, early = "extended-hours", True
            elif hi <= now < end:
                state, after = "extended-hours", True
        fx = "open" if sb.market.is_trading_day("C:EURUSD", day) else "closed"
        return {"afterHours": after, "currencies": {"crypto": "open", "fx": fx}, "earlyHours": early,
                "exchanges": {"nasdaq": state, "nyse": state, "otc": state}, "market": state,
                "serverTime": local.isoformat(timespec="seconds")}

    def tickers(self, query: dict[str, str]) -> dict[str, Any]:
        cursor = _decode_cursor(query.get("cursor"))
        limit = int(cursor.get("limit", query.get("limit", 100)))
        if not 1 <= limit <= 1000:
            raise _error(400, "limit must be between 1 and 1000")
        offset = int(cursor.get("offset", 0))
        market = cursor.get("market", query.get("market"))
        search = cursor.get("search", query.get("search", "")).lower()
        only = cursor.get("ticker", query.get("ticker"))
        rows = [
            info for info in self.sandbox.market.universe.values()
            if info.asset != "options"  # options live under /v3/reference/options/contracts
            and (market is None or info.market == market)
            and (not search or search in info.ticker.lower() or search in info.name.lower())
            and (only is None or info.ticker == only)
        ]
        rows.sort(key=lambda i: i.ticker)
        page = rows[offset: offset + limit]
        body: dict[str, Any] = {
            "results": [_ticker_dict(i) for i in page], "status": "OK",
            "request_id": uuid.uuid4().hex, "count": len(page),
        }
        if offset + limit < len(rows):
            state = {"offset": offset + limit, "limit": limit, "market": market, "search": search, "ticker": only}
            body["next_url"] = f"{self.url}/v3/reference/tickers?{urlencode({'cursor': _encode_cursor(state)})}"
        return body

    def splits(self, query: dict[str, str]) -> dict[str, Any]:
        """``/v3/reference/splits``: the sandbox's split table, filtered, sorted and paginated."""
        cursor = _decode_cursor(query.get("cursor"))
        params = cursor.get("params", {k: v for k, v in query.items() if k not in ("cursor", "apiKey")})
        limit = int(params.get("limit", 10))
        if not 1 <= limit <= 1000:
            raise _error(400, "limit must be between 1 and 1000")
        rows = [s for s in self.sandbox.market.splits + self.sandbox.listed_only_splits if _split_matches(s, params)]
        sort = params.get("sort", "execution_date")
        if sort not in ("execution_date", "ticker"):
            raise _error(400, f"Invalid sort field '{sort}'.")
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _error(400, f"Invalid order '{order}'.")
        by_date = sort == "execution_date"
        rows.sort(key=lambda s: (s.execution_date, s.ticker) if by_date else (s.ticker, s.execution_date),
                  reverse=order == "desc")
        return self._offset_page("/v3/reference/splits", rows, cursor, params, limit, _split_dict)

    # --- /stocks/v1 corporate actions ---------------------------------------------------------------
    def _v1_page(self, path: str, query: dict[str, str], rows: list[dict[str, Any]], default_sort: str,
                 filters: dict[str, str], finish: Callable[[dict[str, Any]], dict[str, Any]] = dict) -> dict[str, Any]:
        """Filter (``filters``: field → ``date``/``text``/``number``), sort (``sort=a.asc,b.desc``) and page v1
        rows (dicts in the wire form), as the v1 endpoints do; ``finish`` completes each row of the page."""
        cursor = _decode_cursor(query.get("cursor"))
        params = cursor.get("params", {k: v for k, v in query.items() if k not in ("cursor", "apiKey")})
        try:
            limit = int(params.get("limit", 100))
        except ValueError:
            raise _error(400, f"Invalid limit '{params['limit']}'.") from None
        if not 1 <= limit <= 5000:
            raise _error(400, "limit must be between 1 and 5000")
        fields = set(rows[0]) if rows else set(filters)
        rows = [r for r in rows if _v1_matches(r, params, filters)]
        for part in reversed(params.get("sort", default_sort).split(",")):
            field, _, direction = part.strip().partition(".")
            if field not in fields or direction not in ("", "asc", "desc"):
                raise _error(400, f"Invalid sort '{part}'.")
            rows.sort(key=lambda r: (r.get(field) is None, r.get(field) or 0), reverse=direction == "desc")
        return self._offset_page(path, rows, cursor, params, limit, finish)

    def v1_splits(self, query: dict[str, str]) -> dict[str, Any]:
        """``/stocks/v1/splits``: the split table with ``adjustment_type`` and ``historical_adjustment_factor``."""
        market = self.sandbox.market
        rows = [{"adjustment_type": "reverse_split" if s.split_from > s.split_to else "forward_split",
                 "execution_date": s.execution_date.isoformat(),
                 "historical_adjustment_factor": market.split_adjustment_factor(s.ticker, s.execution_date),
                 **{k: v for k, v in _split_dict(s).items() if k != "execution_date"}}
                for s in market.splits + self.sandbox.listed_only_splits]
        return self._v1_page("/stocks/v1/splits", query, rows, "execution_date.desc",
                             {"ticker": "text", "execution_date": "date", "adjustment_type": "text"})

    def v1_dividends(self, query: dict[str, str]) -> dict[str, Any]:
        """``/stocks/v1/dividends``: the dividends declared by the clock's day, with ``distribution_type``,
        ``split_adjusted_cash_amount`` (on today's share basis) and ``historical_adjustment_factor`` (absent
        for an ex-date still ahead of the clock)."""
        market, today = self.sandbox.market, self._clock_day()
        rows = [{"cash_amount": d.cash_amount, "currency": d.currency,
                 "declaration_date": d.declaration_date.isoformat(),
                 "distribution_type": "recurring" if d.dividend_type == "CD" else "special",
                 "ex_dividend_date": d.ex_dividend_date.isoformat(), "frequency": d.frequency,
                 "id": d.id, "pay_date": d.pay_date.isoformat(), "record_date": d.record_date.isoformat(),
                 "split_adjusted_cash_amount": round(d.cash_amount * market.price_factor(d.ticker, d.ex_dividend_date),
                                                     6),
                 "ticker": d.ticker}
                for d in market.dividends(HISTORY_START, today + timedelta(days=60)) if d.declaration_date <= today]

        def finish(row: dict[str, Any]) -> dict[str, Any]:  # computed for the rows of the page only
            factor = market.dividend_adjustment_factor(row["ticker"], date.fromisoformat(row["ex_dividend_date"]),
                                                       today)
            return {**row, "historical_adjustment_factor": factor} if factor is not None else dict(row)

        return self._v1_page("/stocks/v1/dividends", query, rows, "ticker.asc",
                             {"ticker": "text", "ex_dividend_date": "date", "frequency": "number",
                              "distribution_type": "text"}, finish)


def _v1_matches(row: dict[str, Any], params: dict[str, str], filters: dict[str, str]) -> bool:
    """Whether a v1 row passes the query's filters (``field``, ``field.gt/gte/lt/lte``, ``field.any_of``)."""
    for name, value in params.items():
        field, _, op = name.partition(".")
        kind = filters.get(field)
        if kind is None or row.get(field) is None:
            continue
        if op == "any_of":
            if str(row[field]) not in value.split(","):
                return False
            continue
        if op not in _COMPARISONS:
            continue
        want: object = value
        if kind == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise _error(400, f"Could not parse {name} '{value}'. Use YYYY-MM-DD.") from None
        elif kind == "number":
            try:
                want = float(value)
            except ValueError:
                raise _error(400, f"Could not parse {name} '{value}'.") from None
        if not _COMPARISONS[op](row[field], want):
            return False
    return True


def _tick_ns(text: str, name: str) -> tuple[int, int]:
    """A ``timestamp`` filter value → the ``[start, end)`` ns span it names: a nanosecond integer is
    one instant, ``YYYY-MM-DD`` the whole New York day (the sandbox's day convention, as for aggs;
    the real service's is not documented), an ISO datetime (as in real cursors) one instant (UTC if naive)."""
    if text.isdigit():
        return int(text), int(text) + 1
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            raise _error(400, f"Could not parse the {name} parameter '{text}'. Use YYYY-MM-DD or a nanosecond "
                              "timestamp.") from None
        ns = (ts.tz_localize("UTC") if ts.tzinfo is None else ts).value
        return ns, ns + 1
    start = int(datetime.combine(day, dtime(0), NEW_YORK).timestamp()) * 1_000_000_000
    end = int(datetime.combine(day + timedelta(days=1), dtime(0), NEW_YORK).timestamp()) * 1_000_000_000
    return start, end


def _tick_window(params: dict[str, str]) -> tuple[int, int]:
    """The ``timestamp``/``timestamp.gte/.gt/.lte/.lt`` filters → inclusive ``[lo, hi]`` in ns (from the
    first day the sandbox has history for)."""
    lo = int(datetime.combine(HISTORY_START, dtime(0), NEW_YORK).timestamp()) * 1_000_000_000
    hi = 1 << 62
    for name, value in params.items():
        field, _, op = name.partition(".")
        if field != "timestamp":
            continue
        start, end = _tick_ns(value, name)
        if op in ("", "gte"):
            lo = max(lo, start)
        if op in ("", "lt", "lte"):
            hi = min(hi, end - 1 if op in ("", "lte") else start - 1)
        if op == "gt":
            lo = max(lo, end)
        if op not in ("", "gte", "gt", "lte", "lt"):
            raise _error(400, f"Invalid parameter '{name}'.")
    return lo, hi


def _tick_rows(cols: TickColumns, i0: int, i1: int, asc: bool) -> list[dict[str, Any]]:
    """Rows ``i0..i1-1`` (reversed unless ``asc``) as result dicts."""
    sel = slice(i0, i1) if asc else slice(i1 - 1, i0 - 1 if i0 > 0 else None, -1)
    names = list(cols.columns)
    values = []
    for name in names:
        col = cols.columns[name][sel]
        values.append([[c] for c in col.tolist()] if name == "conditions" else col.tolist())
    return [dict(zip(names, row)) for row in zip(*values)]


def _tick_page(market: Any, ticker: str, kind: str, lo: int, hi: int, asc: bool, limit: int,
               pos: tuple[int, int] | None) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """Up to ``limit`` rows with timestamps in ``[lo, hi]`` starting at ``pos`` (day ordinal, index of
    the next row in that day), and the position of the row after the page (None at the end)."""
    first = datetime.fromtimestamp(lo / 1e9, NEW_YORK).date()
    last = datetime.fromtimestamp(hi / 1e9, NEW_YORK).date()
    if pos is not None:
        if asc:
            first = max(first, date.fromordinal(pos[0]))
        else:
            last = min(last, date.fromordinal(pos[0]))
    step = timedelta(days=1 if asc else -1)
    day, end = (first, last) if asc else (last, first)
    rows: list[dict[str, Any]] = []
    while (day <= end) if asc else (day >= end):
        if market.is_trading_day(ticker, day):
            cols = market.tick_columns(ticker, day, kind)
            i0 = int(np.searchsorted(cols.t_ns, lo, side="left"))
            i1 = int(np.searchsorted(cols.t_ns, hi, side="right"))
            if pos is not None and pos[0] == day.toordinal():
                i0, i1 = (max(i0, pos[1]), i1) if asc else (i0, min(i1, pos[1] + 1))
            if i1 > i0:
                if len(rows) == limit:  # the page is full and this row exists: it starts the next page
                    return rows, (day.toordinal(), i0 if asc else i1 - 1)
                take = min(limit - len(rows), i1 - i0)
                if asc:
                    rows.extend(_tick_rows(cols, i0, i0 + take, True))
                    if i0 + take < i1:
                        return rows, (day.toordinal(), i0 + take)
                else:
                    rows.extend(_tick_rows(cols, i1 - take, i1, False))
                    if i1 - take > i0:
                        return rows, (day.toordinal(), i1 - take - 1)
        day += step
    return rows, None


_COMPARISONS = {"": lambda a, b: a == b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _dividend_matches(div: Any, params: dict[str, str]) -> bool:
    for name, value in params.items():
        field, _, op = name.partition(".")
        if op not in _COMPARISONS:
            continue
        want: object
        if field == "ticker":
            have, want = div.ticker, value
        elif field in ("ex_dividend_date", "record_date", "declaration_date", "pay_date"):
            try:
                want = date.fromisoformat(value)
            except ValueError:
                raise _error(400, f"Could not parse {name} '{value}'. Use YYYY-MM-DD.") from None
            have = getattr(div, field)
        elif field in ("cash_amount", "frequency"):
            try:
                want = float(value)
            except ValueError:
                raise _error(400, f"Could not parse {name} '{value}'.") from None
            have = getattr(div, field)
        elif field == "dividend_type" and not op:
            have, want = div.dividend_type, value
        else:
            continue
        if not _COMPARISONS[op](have, want):
            return False
    return True


def _dividend_dict(div: Any) -> dict[str, Any]:
    return {"cash_amount": div.cash_amount, "currency": div.currency,
            "declaration_date": div.declaration_date.isoformat(), "dividend_type": div.dividend_type,
            "ex_dividend_date": div.ex_dividend_date.isoformat(), "frequency": div.frequency, "id": div.id,
            "pay_date": div.pay_date.isoformat(), "record_date": div.record_date.isoformat(), "ticker": div.ticker}


def _split_matches(split: Any, params: dict[str, str]) -> bool:
    for name, value in params.items():
        field, _, op = name.partition(".")
        if field not in ("ticker", "execution_date") or op not in _COMPARISONS:
            if field == "reverse_split" and (value.lower() == "true") != (split.split_from > split.split_to):
                return False
            continue
        want: object
        if field == "ticker":
            have, want = split.ticker, value
        else:
            try:
                want = date.fromisoformat(value)
            except ValueError:
                raise _error(400, f"Could not parse execution_date '{value}'. Use YYYY-MM-DD.") from None
            have = split.execution_date
        if not _COMPARISONS[op](have, want):
            return False
    return True


def _split_dict(split: Any) -> dict[str, Any]:
    def num(x: float) -> int | float:
        return int(x) if float(x).is_integer() else float(x)
    return {"execution_date": split.execution_date.isoformat(), "id": split.id,
            "split_from": num(split.split_from), "split_to": num(split.split_to), "ticker": split.ticker}


def _encode_cursor(state: dict[str, Any]) -> str:
    clean = {k: v for k, v in state.items() if v is not None}
    return base64.urlsafe_b64encode(orjson.dumps(clean)).decode().rstrip("=")


def _decode_aggs_cursor(text: str | None) -> dict[str, str]:
    """An aggs cursor: base64 (URL-safe, unpadded) of a query string such as ``limit=5000&sort=asc``."""
    if not text:
        return {}
    try:
        return dict(parse_qsl(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode(), strict_parsing=True))
    except (ValueError, UnicodeDecodeError):
        raise _error(400, "Invalid cursor") from None


def _decode_cursor(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise _error(400, "Invalid cursor") from None


def _num(values: np.ndarray) -> list[Any]:
    """Whole numbers as ints (as the real service writes volumes), others as floats."""
    if np.all(values == np.floor(values)):
        return values.astype(np.int64).tolist()
    return values.tolist()


def _bar_dicts(bars: Bars, asset: str) -> list[dict[str, Any]]:
    t, o, h, l, c = (a.tolist() for a in (bars.t, bars.o, bars.h, bars.l, bars.c))  # noqa: E741
    if asset == "indices":  # index aggregates carry no volume, vwap or trade count
        return [{"o": o[i], "c": c[i], "h": h[i], "l": l[i], "t": t[i]} for i in range(len(t))]
    v, vw, n = _num(bars.v), bars.vw.tolist(), bars.n.tolist()
    return [{"v": v[i], "vw": vw[i], "o": o[i], "c": c[i], "h": h[i], "l": l[i], "t": t[i], "n": n[i]}
            for i in range(len(t))]


def _ticker_dict(info: Any) -> dict[str, Any]:
    locale = "global" if info.market in ("fx", "crypto") else "us"
    row = {"ticker": info.ticker, "name": info.name, "market": info.market, "locale": locale,
           "active": True, "currency_name": "usd", "last_updated_utc": "2025-01-02T00:00:00Z"}
    if info.primary_exchange:
        row["primary_exchange"] = info.primary_exchange
    if info.type:
        row["type"] = info.type
    return row


class _Handler(BaseHTTPRequestHandler):
    owner: RestServer
    protocol_version = "HTTP/1.1"
    server_version = "MassiveSandbox/1.0"

    def log_message(self, fmt: str, *args: Any) -> None:  # route http.server's chatter to logging
        log.debug("sandbox rest: " + fmt, *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        entry = LoggedRequest(time.time(), "GET", parts.path, parts.query, "none",
                              client_port=int(self.client_address[1]))
        with self.owner._lock:
            self.owner.requests.append(entry)
        try:
            self._serve(parts.path, query, entry)
        except _RawReply as reply:
            entry.status = reply.status
            self._send_raw(reply.status, reply.html, "text/html")
        except _Reply as reply:
            entry.status = reply.status
            self._send_json(reply.status, reply.body, reply.headers)

    def _serve(self, path: str, query: dict[str, str], entry: LoggedRequest) -> None:
        sb = self.owner.sandbox
        key = self._key(query, entry)
        if sb.faults.latency:
            time.sleep(sb.faults.latency)
        if key is None:
            raise _error(401, "API Key was not provided")
        if key != sb.api_key:
            raise _error(401, "Unknown API Key")
        if self.owner.rate_limited(key):
            raise _Reply(429, {"status": "ERROR", "request_id": uuid.uuid4().hex, "error": RATE_LIMIT_MESSAGE},
                         self._retry_after())
        if not sb.faults.answers(path):
            raise self._fault_reply(404)
        outcome = sb.faults.next_outcome()
        if outcome == "drop":
            entry.status = -1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(outcome, int):
            raise self._fault_reply(outcome)
        body = self._route(path, query)
        entry.status = 200
        if outcome == "malformed":
            self._send_raw(200, b'{"status":"OK","results":[{"o":1.0,"c":', "application/json")
        elif outcome == "truncate":
            data = orjson.dumps(body)
            self._send_raw(200, data[: len(data) // 2], "application/json")
        else:
            self._send_json(200, body)

    def _fault_reply(self, status: int) -> _Reply:
        if status == 429:
            return _Reply(429, {"status": "ERROR", "request_id": uuid.uuid4().hex, "error": RATE_LIMIT_MESSAGE},
                          self._retry_after())
        if status == 403:
            return _error(403, NOT_ENTITLED_MESSAGE, "message", "NOT_AUTHORIZED")
        if status == 404:
            return _error(404, "Data not found.", "message", "NOT_FOUND")
        if status >= 500:
            return _RawReply(status)
        return _error(status, "Sandbox fault")

    def _route(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        if path.startswith("/futures/"):  # the futures market's own design (see .futures)
            return self.owner.futures(path, query)
        m = AGGS_RE.match(path)
        if m:
            return self.owner.aggs(m, query)
        m = TICKS_RE.match(path)
        if m:
            return self.owner.ticks(m, query)
        for regex, endpoint in ((LAST_RE, self.owner.last), (PREV_RE, self.owner.prev_close),
                                (OPEN_CLOSE_RE, self.owner.open_close), (GROUPED_RE, self.owner.grouped),
                                (SNAPSHOT_RE, self.owner.snapshot)):
            m = regex.match(path)
            if m:
                return endpoint(m, query)
        if path == "/v3/reference/dividends":
            return self.owner.dividends(query)
        if path == "/v1/marketstatus/now":
            return self.owner.market_status()
        m = DETAILS_RE.match(path)
        if m and m["ticker"] != "types":
            return self.owner.ticker_details(m)
        if path == "/v3/reference/tickers":
            return self.owner.tickers(query)
        if path == "/v3/reference/splits":
            return self.owner.splits(query)
        if path == "/stocks/v1/splits":
            return self.owner.v1_splits(query)
        if path == "/stocks/v1/dividends":
            return self.owner.v1_dividends(query)
        raise _error(404, "Data not found.", "message", "NOT_FOUND")

    def _key(self, query: dict[str, str], entry: LoggedRequest) -> str | None:
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            entry.auth = "bearer"
            return header[len("Bearer "):].strip()
        if "apiKey" in query:
            entry.auth = "query"
            return query["apiKey"]
        return None

    def _retry_after(self) -> dict[str, str]:
        ra = self.owner.sandbox.faults.retry_after
        return {"Retry-After": f"{ra:g}"} if ra is not None else {}

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, orjson.dumps(body) if body else b"", "application/json", headers)

    def _send_raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        gzipped = len(data) > 1024 and "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:
            data = gzip.compress(data, compresslevel=1)
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _RawReply(_Reply):
    """A 5xx with an HTML body, as load balancers in front of the real service send."""

    def __init__(self, status: int) -> None:
        super().__init__(status, {})
        self.html = f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode()
