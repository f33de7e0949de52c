"""Historical trades and quotes from any source, in the one tick schema: REST v3 or flat files.

``fetch_ticks(..., method="auto")`` sends a few symbol-days over REST (``/v3/trades``, ``/v3/quotes``:
paged 50,000 ticks at a time, quota-aware, settled days cached) and anything bigger to the
``trades_v1`` / ``quotes_v1`` flat files (streamed and filtered per block, quota checked up front);
it falls back to REST when flat files are not configured, and to flat files when the REST quota left
today cannot cover the estimated pages. The method used and why are in ``df.attrs``, as for
:func:`massive_feeds.fetch_data`.

The frame is :mod:`massive_feeds.tickschema`'s: the columns a recording's events have (``kind``,
``symbol``, ``time_ms``, ``price``/``size``, ``bid``/``ask``/sizes, ``exchange``) plus ``timestamp``
(ns, UTC), ``sequence_number``, ``conditions``, ``id``, ``tape`` and ``ask_exchange``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, replace
from functools import partial
from datetime import date, timedelta
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from .cache import SETTLE, ResultCache, stable_origin
from .config import Settings
from .errors import InvalidInputError
from .rest import RestClient
from .futures import held_plan
from .futures_symbols import is_continuous, is_futures, session_open
from .rest.futures import parse_futures_ticks
from .rest.ticks import TicksPage, parse_ticks
from .runtime import resolve_settings
from .source import AUTO_MAX_SYMBOL_DAYS, Cost, Source, fetch_query, read_apart, sources
from .schema import DateLike, DateRange, Ticker, ny_midnight, parse_tickers
from .tickschema import EVENT_KIND, TickQuery, empty_ticks, finalize_ticks

log = logging.getLogger(__name__)

TickMethod = Literal["auto", "rest", "flat_file", "store"]
PAGE_LIMIT = 50_000
#: rough REST pages per symbol-day for the quota estimate (a liquid stock: ~2M quotes, ~400k trades)
PAGES_PER_DAY = {"quotes": 40, "trades": 8}


def _query(symbols: "str | Iterable[str] | TickQuery", start: DateLike | None, end: DateLike | None,
           kind: str | Sequence[str]) -> TickQuery:
    """``symbols`` when it is a built :class:`TickQuery`, else the query built (validated) from the arguments."""
    if isinstance(symbols, TickQuery):
        return symbols
    if start is None or end is None:
        raise InvalidInputError("fetching ticks needs a start and an end")
    return TickQuery.build(symbols, start, end, kind)


def _day_windows(window: DateRange, futures: bool = False) -> list[tuple[date, int, int]]:
    """(day, start ns, end ns) pieces of the window, one per New York day, or per exchange session for futures
    (their range's days are sessions, each from 17:00 Chicago the evening before)."""
    edge = session_open if futures else ny_midnight
    out = []
    for day in window.calendar_days():
        lo = max(window.start, edge(day))
        hi = min(window.end, edge(day + timedelta(days=1)))
        if hi > lo:
            out.append((day, int(lo.value), int(hi.value)))
    return out


# --- REST -----------------------------------------------------------------------------------------
def _pages_columns(pages: list[TicksPage], ticker: str, kind: str) -> dict[str, Any]:
    """The pages' columns joined (numpy and arrow text alike), with ``symbol`` and ``kind``."""
    cols: dict[str, Any] = {}
    for name, first in pages[0].columns.items():
        parts = [p.columns[name] for p in pages]
        if isinstance(first, pa.Array):
            cols[name] = pa.concat_arrays(parts) if len(parts) > 1 else first
        else:
            cols[name] = np.concatenate(parts) if len(parts) > 1 else first
    cols["symbol"] = ticker
    cols["kind"] = EVENT_KIND[kind]
    return cols


def _futures_pages(client: RestClient, ticker: str, kind: str, lo: int, hi: int, page_limit: int) -> pd.DataFrame:
    """A futures contract's ticks: ``/futures/v1/trades|quotes`` (their own design, see rest.futures)."""
    # the spec's description caps futures tick pages at 49,999 (its schema says 50,000)
    params = {"timestamp.gte": lo, "timestamp.lt": hi, "sort": "timestamp.asc", "limit": min(page_limit, 49_999)}
    pages = list(client.paginate(f"/futures/v1/{kind}/{ticker}", params, lambda body: parse_futures_ticks(body, kind),
                                 lambda p: p.next_url))
    cols: dict[str, Any] = {name: np.concatenate([p.columns[name] for p in pages])
                            for name in pages[0].columns if name != "session_end_date"}
    return finalize_ticks({**cols, "symbol": ticker, "kind": EVENT_KIND[kind]})


def _rest_piece(client: RestClient, cache: ResultCache, ticker: str, kind: str, lo: int, hi: int,
                use_cache: bool, page_limit: int = PAGE_LIMIT) -> pd.DataFrame:
    if is_futures(ticker):
        return _futures_pages(client, ticker, kind, lo, hi, page_limit)
    path = f"/v3/{kind}/{ticker}"
    key = cache.key(stable_origin(client.base_url), path, lo, hi)
    cacheable = use_cache and pd.Timestamp(hi, unit="ns", tz="UTC") <= pd.Timestamp.now("UTC") - SETTLE
    if cacheable and (hit := cache.get(key)) is not None:
        log.debug("cache hit for %s %d..%d", path, lo, hi)
        return hit
    params = {"timestamp.gte": lo, "timestamp.lt": hi, "order": "asc", "sort": "timestamp", "limit": page_limit}
    pages = list(client.paginate(path, params, lambda body: parse_ticks(body, kind), lambda p: p.next_url))
    df = finalize_ticks(_pages_columns(pages, ticker, kind))
    ts = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    if len(df) and (ts[0] < lo or ts[-1] >= hi):  # the server's filter is the contract; hold it to it
        df = df[(ts >= lo) & (ts < hi)].reset_index(drop=True)
    if cacheable:
        cache.put_later(key, df)  # off the critical path; atomic, and served from memory meanwhile
    return df


def fetch_ticks_rest(
    symbols: "str | Iterable[str] | TickQuery",
    start: DateLike | None = None,
    end: DateLike | None = None,
    kind: str | Sequence[str] = "quotes",
    *,
    api_key: str | None = None,
    settings: Settings | None = None,
    client: RestClient | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
    page_limit: int = PAGE_LIMIT,
) -> pd.DataFrame:
    """Trades or quotes over REST v3, one request chain per symbol, kind and New York day (so settled
    days are cached on their own). Each page is a quota slot; a page holds up to ``page_limit``
    (at most 50,000, the service's maximum) ticks."""
    if not 1 <= page_limit <= PAGE_LIMIT:
        raise InvalidInputError(f"page_limit must be 1..{PAGE_LIMIT}, not {page_limit}")
    q = _query(symbols, start, end, kind)
    tickers, kinds, window = q.symbols, list(q.kinds), q.range
    own = client is None
    client = client or RestClient(settings, api_key=api_key)
    cache = ResultCache(client.settings.cache_dir / "rest_ticks")
    futures = any(t.asset == "futures" for t in q.parsed)  # a futures query holds futures only (TickQuery.build)
    pieces = [(t, k, lo, hi) for t in tickers for k in kinds for _, lo, hi in _day_windows(window, futures)]
    want_bar = progress if progress is not None else (len(pieces) > 1 and sys.stderr.isatty())
    frames = []
    try:
        for t, k, lo, hi in tqdm(pieces, desc="REST ticks", unit="symbol-day", disable=not want_bar, file=sys.stderr):
            frames.append(_rest_piece(client, cache, t, k, lo, hi, use_cache, page_limit))
    finally:
        if own:
            client.close()
    frames = [f for f in frames if len(f)]
    df = finalize_ticks(pd.concat(frames, ignore_index=True)) if frames else empty_ticks()
    df = _annotate(df, tickers, kinds, window, "rest")
    df.attrs["source"] = client.settings.source  # "sandbox" when the built-in sandbox served them
    return df


def _annotate(df: pd.DataFrame, tickers: list[str], kinds: list[str], window: DateRange, method: str,
              missing_days: Sequence[str] = ()) -> pd.DataFrame:
    present = set(df["symbol"].unique()) if len(df) else set()
    empty = [t for t in tickers if t not in present]
    if empty:
        log.info("no %s for %s in %s..%s (unknown ticker, no session, or nothing traded)", "/".join(kinds),
                 ", ".join(empty), window.first_day, window.last_day)
    df.attrs.update(method=method, kinds=kinds, empty_symbols=empty, missing_days=list(missing_days),
                    start=window.start.isoformat(), end=window.end.isoformat())
    return df


# --- flat files -----------------------------------------------------------------------------------
def fetch_ticks_flat_file(
    symbols: "str | Iterable[str] | TickQuery",
    start: DateLike | None = None,
    end: DateLike | None = None,
    kind: str | Sequence[str] = "quotes",
    *,
    settings: Settings | None = None,
    progress: bool | None = None,
    use_cache: bool = True,
) -> pd.DataFrame:
    """Trades or quotes from the ``trades_v1``/``quotes_v1`` day files, streamed and filtered (see
    :mod:`massive_feeds.flatfiles.ticks`), cut to ``[start, end)``."""
    from .flatfiles.ticks import fetch_ticks_flat_file as _flat

    q = _query(symbols, start, end, kind)
    settings = resolve_settings(settings, need=("rest", "s3"))  # no key configured: the built-in sandbox
    df, missing, closed = _flat(q, settings=settings, progress=progress, use_cache=use_cache)
    if missing:
        log.warning("no tick file for %s (a trading day: not published yet, or missing)", ", ".join(missing))
    df = _annotate(df, q.symbols, list(q.kinds), q.range, "flat_file", missing)
    df.attrs.update(source=settings.source, closed_days=closed)
    return df


# --- the sources of ticks -------------------------------------------------------------------------
def estimate_rest_pages(n_symbols: int, days: int, kinds: Sequence[str]) -> int:
    """A rough upper estimate of REST pages (quota slots) for a tick query."""
    return sum(n_symbols * days * PAGES_PER_DAY[k] for k in kinds)


def _rest_pages(query: TickQuery, settings: Settings) -> int:
    return estimate_rest_pages(len(query.parsed), query.range.days, query.kinds)


def _rest_ticks(query: TickQuery, settings: Settings, progress: bool | None, *, use_cache: bool) -> pd.DataFrame:
    return fetch_ticks_rest(query, settings=settings, progress=progress, use_cache=use_cache)


def _flat_file_ticks(query: TickQuery, settings: Settings, progress: bool | None, *, use_cache: bool) -> pd.DataFrame:
    return fetch_ticks_flat_file(query, settings=settings, progress=progress, use_cache=use_cache)


@dataclass
class ContinuousTicks:
    """A tick source that also answers continuous futures series (``ES.c.0``): each session's ticks are those of
    the contract the series holds then (:func:`massive_feeds.futures.held_plan`, the same rule as its bars), read
    from the wrapped source contract by contract over the part of the window each one is held, labelled with the
    series. Prices are raw (ticks are never roll-adjusted). ``df.attrs["contracts"]``: per series, the contract
    held in each session (``{"ES.c.0": {"2026-09-18": "ESU6", "2026-09-21": "ESZ6", …}}``)."""

    inner: Source[TickQuery]
    settings: Settings
    method: str = ""

    def __post_init__(self) -> None:
        self.method = self.inner.method  # df.attrs["method"] names the source that read the contracts

    def unavailable(self, query: TickQuery) -> str | None:
        return self.inner.unavailable(query)

    def cost(self, query: TickQuery) -> Cost:
        return self.inner.cost(query)

    def read(self, query: TickQuery, progress: bool | None = None) -> pd.DataFrame:
        series = [t.symbol for t in query.parsed if is_continuous(t.symbol)]
        if not series:
            return self.inner.read(query, progress)
        frames: list[pd.DataFrame] = []
        attrs: dict[str, Any] = {}
        if contracts := [t.symbol for t in query.parsed if not is_continuous(t.symbol)]:
            frames.append(self.inner.read(query.replace(tickers=contracts), progress))
            attrs.update(frames[0].attrs)
        held: dict[str, dict[str, str]] = {}  # plain values: attrs holding frames break pd.concat of two results
        for ticker in series:
            plan = held_plan(ticker, query.range.first_day, query.range.last_day, self.settings)
            held[ticker] = dict(zip(plan.days.astype(str).tolist(), plan.held.tolist()))
            for contract, piece in _held_pieces(query, plan):
                part = self.inner.read(query.replace(tickers=[contract], range=piece), progress)
                attrs.update({k: v for k, v in part.attrs.items() if k not in attrs})
                attrs["missing_days"] = sorted({*attrs.get("missing_days", []), *part.attrs.get("missing_days", [])})
                frames.append(part.assign(symbol=ticker) if len(part) else part)
        frames = [f for f in frames if len(f)]
        df = finalize_ticks(pd.concat(frames, ignore_index=True)) if frames else empty_ticks()
        df.attrs.update(attrs)
        df.attrs["contracts"] = held
        return df


def _held_pieces(query: TickQuery, plan: Any) -> list[tuple[str, DateRange]]:
    """The window cut at each roll (the open of the first session the next contract is held): (contract, its part
    of the window) for every run of sessions holding one contract. The parts tile the window, so no tick between
    two sessions (a weekend, a halt) is lost or read twice."""
    if not len(plan.held):
        return []
    held = plan.held
    starts = np.r_[0, np.flatnonzero(held[1:] != held[:-1]) + 1]
    edges = [query.range.start, *(max(query.range.start, session_open(plan.days[i].item())) for i in starts[1:]),
             query.range.end]
    window = query.range
    return [(str(held[i]), replace(window, start=lo, end=hi, start_is_date=False, end_is_date=False)
             .in_futures_sessions()) for i, lo, hi in zip(starts, edges[:-1], edges[1:]) if hi > lo]


def _mixed_ticks(parsed: tuple[Ticker, ...], start: DateLike, end: DateLike, kind: str | Sequence[str],
                 read: Callable[[TickQuery], pd.DataFrame]) -> pd.DataFrame:
    """Ticks of futures beside other asset classes: two queries (futures in exchange sessions, the others in New
    York days), each read by ``read`` (its own source choice), then one tick frame. ``df.attrs``: ``method`` the
    parts' one method or ``"mixed"``, ``method_by_symbol``, ``method_reason`` of both, the empties of both; a part
    without any tick is listed there (:class:`NoDataError` only when neither part has one)."""
    fut = [t.symbol for t in parsed if t.asset == "futures"]
    others = [t.symbol for t in parsed if t.symbol not in fut]
    return read_apart([TickQuery.build(fut, start, end, kind), TickQuery.build(others, start, end, kind)], read,
                      lambda frames: finalize_ticks(pd.concat(frames, ignore_index=True)))


def fetch_ticks(
    symbols: "str | Iterable[str] | TickQuery",
    start: DateLike | None = None,
    end: DateLike | None = None,
    kind: str | Sequence[str] = "quotes",
    method: TickMethod = "auto",
    *,
    api_key: str | None = None,
    settings: Settings | None = None,
    progress: bool | None = None,
    use_cache: bool = True,
    store: "str | os.PathLike[str] | None" = None,
) -> pd.DataFrame:
    """Historical ticks (``kind``: ``"quotes"``, ``"trades"`` or both as a list) in the tick schema.

    ``method``: ``auto`` (default), ``rest``, ``flat_file`` or ``store`` (the history store, after
    ``massive-feeds ingest --dataset us_stocks_sip/quotes_v1 --symbols …``: no call at all). Auto uses the
    store when it holds every day of the query for these symbols, else sends at most
    :data:`AUTO_MAX_SYMBOL_DAYS` symbol-days over REST and bigger queries to flat files, with the fallbacks
    of :func:`massive_feeds.fetch_data`; ``df.attrs["method"]`` / ``["method_reason"]`` say what ran and why.
    ``store`` is the store's location (default ``$MASSIVE_FEEDS_STORE`` or ``<home>/store``).

    Symbols without ticks are listed in ``df.attrs["empty_symbols"]`` (and flat-file days without a file in
    ``["missing_days"]``); when no symbol has any, :class:`~massive_feeds.errors.NoDataError` is raised instead
    of returning an empty frame (the lower-level ``fetch_ticks_rest``/``fetch_ticks_flat_file`` return it).

    Raises:
        InvalidInputError: bad symbol, dates or kind, or a kind the asset class does not have
            (forex: quotes only; crypto: trades only; indices: none).
        NoDataError: not one tick for any of the symbols in the range (named, with the likely reason).
        NotEntitledError: the plan does not include these ticks (REST 403 / S3 AccessDenied).
        QuotaExceededError: the flat-file bytes or the REST calls left cannot cover the query.
    """
    if not isinstance(symbols, TickQuery) and start is not None and end is not None:
        parsed = parse_tickers(symbols)
        if len({t.asset == "futures" for t in parsed}) == 2:  # futures beside others: each part its own days
            return _mixed_ticks(parsed, start, end, kind, partial(
                fetch_ticks, method=method, api_key=api_key, settings=settings, progress=progress,
                use_cache=use_cache, store=store))
    q = _query(symbols, start, end, kind)
    settings = resolve_settings(settings, api_key=api_key)  # no key configured: the built-in sandbox
    by_method = sources(settings, store, partial(_rest_ticks, use_cache=use_cache), _rest_pages,
                        partial(_flat_file_ticks, use_cache=use_cache))
    if any(is_continuous(t) for t in q.tickers):  # each session: the contract the series holds
        by_method = {name: ContinuousTicks(src, settings) for name, src in by_method.items()}
    return fetch_query(q, method, by_method, settings, progress)


__all__ = ["AUTO_MAX_SYMBOL_DAYS", "PAGE_LIMIT", "estimate_rest_pages", "fetch_ticks", "fetch_ticks_flat_file",
           "fetch_ticks_rest"]
