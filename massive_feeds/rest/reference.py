"""Reference data over REST: the tickers list with names and markets (``/v3/reference/tickers``) and the
service's own clock (``/v1/marketstatus/now``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..config import Settings
from ..errors import BadResponseError, UnknownSymbolError
from ..schema import asset_class
from .client import RestClient

#: Columns of :func:`ticker_table`, in order (a field the service omits is left empty).
TICKER_COLUMNS = ["ticker", "name", "market", "type", "primary_exchange", "locale", "currency_name"]


def ticker_table(market: str | None = None, *, search: str | None = None, limit: int = 1000,
                 settings: Settings | None = None) -> pd.DataFrame:
    """Active tickers with their name, market, type, primary exchange, locale and currency.

    ``market``: ``stocks`` | ``crypto`` | ``fx`` | ``otc`` | ``indices``; ``search`` matches ticker or
    name. Each page (up to 1,000 rows) is one REST call counted against the quota.
    """
    params: dict[str, Any] = {"active": "true", "limit": max(1, min(limit, 1000))}
    if market:
        params["market"] = market
    if search:
        params["search"] = search
    rows: list[dict[str, Any]] = []
    with RestClient(settings) as rest:  # resolves settings: no key configured → the built-in sandbox
        for row in rest.list_json("/v3/reference/tickers", params):
            rows.append({c: row.get(c) for c in TICKER_COLUMNS})
            if len(rows) >= limit:
                break
    table = pd.DataFrame(rows, columns=TICKER_COLUMNS)
    table.attrs["source"] = rest.settings.source  # "sandbox" when the built-in sandbox answered
    return table


#: asset classes ``/v3/reference/tickers`` lists (options have their own contracts endpoint)
LISTED_CLASSES = frozenset({"stocks", "crypto", "forex", "indices"})


def unknown_tickers(tickers: list[str], *, settings: Settings | None = None) -> list[str]:
    """The ``tickers`` the reference list does not know as active (``/v3/reference/tickers?ticker=…``, one
    quota-counted call per ticker not confirmed today; a confirmed ticker is remembered for the day under
    the cache folder, so checking it again costs nothing). Used before a live subscription, where the
    stream itself would just stay silent for a misspelt symbol."""
    from datetime import datetime, timezone

    unknown: list[str] = []
    with RestClient(settings) as rest:
        marks = rest.settings.cache_dir / "known_tickers"
        today = datetime.now(timezone.utc).date().isoformat()
        for ticker in tickers:
            if asset_class(ticker) not in LISTED_CLASSES:  # options and futures are not in this list
                continue
            mark = marks / f"{ticker.replace(':', '_')}.{today}"
            if mark.exists():
                continue
            found = next(iter(rest.list_json("/v3/reference/tickers", {"ticker": ticker, "limit": 1})), None)
            if found is None:
                unknown.append(ticker)
                continue
            try:
                marks.mkdir(parents=True, exist_ok=True)
                mark.touch()
            except OSError:  # a convenience: the next check just asks again
                pass
    return unknown


def refuse_unknown_tickers(tickers: list[str], *, settings: Settings | None = None) -> None:
    """:class:`~massive_feeds.errors.UnknownSymbolError` naming the ``tickers`` that :func:`unknown_tickers` finds
    (the same calls); nothing when every one is known (or not in the list: options, futures)."""
    unknown = unknown_tickers(tickers, settings=settings)
    if unknown:
        raise UnknownSymbolError(f"unknown symbol(s) {', '.join(unknown)}: no active ticker of that name in the "
                                 "reference list (`massive-feeds symbols --search ...` finds the right spelling)",
                                 symbols=unknown)


def server_time_ms(rest: RestClient) -> int:
    """The service's clock (epoch ms, UTC) from ``/v1/marketstatus/now``, one REST call counted against the
    quota. A sandbox answers at its own market clock, so this is "now" for whichever service the client
    talks to (the live feed places its first bar with it when the stream stays silent)."""
    return parse_server_time(rest.get_json("/v1/marketstatus/now"))


def parse_server_time(body: Any) -> int:
    """``serverTime`` of a market-status body as epoch ms: New York time with its UTC offset
    (``2022-04-28T16:48:08-04:00``); anything else is a :class:`BadResponseError`."""
    text = body.get("serverTime") if isinstance(body, dict) else None
    try:
        stamp = pd.Timestamp(text) if isinstance(text, str) else None
    except ValueError:
        stamp = None
    if stamp is None or pd.isna(stamp) or stamp.tzinfo is None:
        raise BadResponseError(f"/v1/marketstatus/now: serverTime {text!r} is not a time with a UTC offset")
    return int(stamp.value // 1_000_000)
