"""Historical bars from any source, in the one bar schema: REST, flat files, or the automatic choice.

``fetch_data(..., method="auto")`` follows the product rule — at most 5 symbols and at most 7 days go
over REST, anything larger over flat files — and falls back when the chosen path cannot serve:
to REST when boto3 or S3 credentials are missing, to flat files when the REST quota left today
cannot cover the query. The method used, and why, is in ``df.attrs`` and the log.

``adjusted`` and ``session`` mean the same on every path (see :mod:`massive_feeds.splits` and
:mod:`massive_feeds.sessions`): REST passes ``adjusted`` to the server, flat files apply the same splits
themselves; ``session="regular"`` is cut at minute resolution and rebuilt on both.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .cache import ADJUSTED_TTL, SETTLE, ResultCache
from .config import Settings
from .errors import InvalidInputError, MassiveError, MissingCredentialsError
from .quota import get_quota
from .rest import RestClient, parse_aggs
from .rest.aggs import AggsPage
from .runtime import SANDBOX_EXTRA, current, resolve_settings, side_available
from .schema import (
    INTERVALS,
    NEW_YORK,
    DateLike,
    DateRange,
    Interval,
    finalize_bars,
    normalize_symbols,
    parse_date_range,
    parse_interval,
)
from .sessions import has_sessions, to_regular_session, validate_session

log = logging.getLogger(__name__)

Method = Literal["auto", "rest", "flat_file", "store"]
AUTO_MAX_SYMBOLS = 5
AUTO_MAX_DAYS = 7
PAGE_LIMIT = 50_000


def _progress_wanted(progress: bool | None, items: int) -> bool:
    return progress if progress is not None else (items > 1 and sys.stderr.isatty())


# --- REST -------------------------------------------------------------------------------------
def _aggs_path(ticker: str, interval: Interval, window: DateRange) -> str:
    frm, to = window.rest_bounds(interval.is_intraday)
    return f"/v2/aggs/ticker/{ticker}/range/{interval.multiplier}/{interval.timespan}/{frm}/{to}"


def _pages_to_frame(pages: list[AggsPage], ticker: str) -> pd.DataFrame:
    cols = {name: np.concatenate([p.columns[name] for p in pages]) for name in pages[0].columns}
    ms = cols.pop("timestamp")
    df = pd.DataFrame(cols)
    df.insert(0, "timestamp", pd.to_datetime(ms, unit="ms", utc=True))
    df.insert(1, "symbol", ticker)
    return df


def _fetch_symbol(client: RestClient, cache: ResultCache, ticker: str, interval: Interval,
                  window: DateRange, adjusted: bool, use_cache: bool) -> pd.DataFrame:
    path = _aggs_path(ticker, interval, window)
    key = cache.key(client.base_url, path, adjusted)
    cacheable = use_cache and window.end <= pd.Timestamp.now("UTC") - SETTLE
    if cacheable and (hit := cache.get(key, ADJUSTED_TTL if adjusted else None)) is not None:
        log.debug("cache hit for %s", path)
        return hit
    params = {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": PAGE_LIMIT}
    pages = list(client.paginate(path, params, parse_aggs, lambda page: page.next_url))
    df = _pages_to_frame(pages, ticker)
    if interval.timespan in ("minute", "hour", "day"):  # weeks/months may start before the range by design
        width = pd.Timedelta(minutes=interval.minutes) if interval.is_intraday else pd.Timedelta(days=1)
        df = df[(df["timestamp"] + width > window.start) & (df["timestamp"] < window.end)]
    df = finalize_bars(df)
    if cacheable:
        cache.put(key, df)
    return df


def fetch_ohlcv_rest(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1h",
    api_key: str | None = None,
    adjusted: bool = True,
    *,
    settings: Settings | None = None,
    client: RestClient | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
    max_workers: int = 4,
    session: str = "extended",
) -> pd.DataFrame:
    """OHLCV bars over REST (``/v2/aggs``) for one or many symbols, in the standard bar schema.

    Args:
        symbols: tickers (``AAPL``, ``O:…``, ``I:SPX``, ``C:EURUSD``/``EURUSD``, ``X:BTCUSD``/``BTC-USD``).
        start, end: dates or datetimes; date-only bounds are whole New York days, naive datetimes UTC.
        interval: one of ``1m 5m 15m 30m 1h 4h 1d 1w 1M``.
        api_key: overrides the configured ``MASSIVE_API_KEY``.
        adjusted: split-adjusted prices (Massive's default; ``False`` = prices as traded). Dividends are
            never adjusted.
        use_cache: serve identical settled queries from the local cache (no call, no quota).
        session: ``"extended"`` (default: what the service returns, pre-market to after-hours) or
            ``"regular"`` (09:30–16:00 New York on NYSE sessions with early closes, for stocks, options and
            indices; fetched as minute bars and rebuilt — see :mod:`massive_feeds.sessions`).

    Raises:
        InvalidInputError: bad symbol, interval, dates or session (before any call).
        MissingCredentialsError: no API key configured.
        QuotaExceededError: the daily REST quota is used up.
        AuthenticationError, NotEntitledError, RateLimitError, ServerError, BadResponseError.
    """
    tickers = normalize_symbols(symbols)
    iv = parse_interval(interval)
    window = parse_date_range(start, end)
    session = validate_session(session)
    own_client = client is None
    client = client or RestClient(settings, api_key=api_key)
    cache = ResultCache(client.settings.cache_dir / "rest")

    def one(ticker: str) -> pd.DataFrame:
        if session == "regular" and has_sessions(ticker):
            minutes = _fetch_symbol(client, cache, ticker, INTERVALS["1m"], window, adjusted, use_cache)
            return to_regular_session(minutes, iv)
        return _fetch_symbol(client, cache, ticker, iv, window, adjusted, use_cache)

    try:
        with tqdm(total=len(tickers), desc="REST", unit="symbol",
                  disable=not _progress_wanted(progress, len(tickers))) as bar:
            if len(tickers) == 1:
                frames = [one(tickers[0])]
            else:
                with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(tickers)))) as pool:
                    frames = []
                    for frame in pool.map(one, tickers):
                        frames.append(frame)
                        bar.update()
    finally:
        if own_client:
            client.close()
    empty = [t for t, f in zip(tickers, frames) if f.empty]
    if empty:
        log.warning("no bars for %s in %s..%s (unknown ticker, or no trades)", ", ".join(empty),
                    window.first_day, window.last_day)
    df = frames[0] if len(frames) == 1 else finalize_bars(pd.concat(frames, ignore_index=True))
    df.attrs.update(method="rest", interval=iv.name, adjusted=adjusted, session=session, empty_symbols=empty,
                    source=client.settings.source)
    if adjusted:
        df.attrs["adjusted_as_of"] = pd.Timestamp.now(NEW_YORK).date().isoformat()
    return df


# --- method choice ------------------------------------------------------------------------------
def choose_method(n_symbols: int, days: int) -> str:
    """The product rule: at most 5 symbols and at most 7 days → ``rest``; otherwise ``flat_file``."""
    return "rest" if n_symbols <= AUTO_MAX_SYMBOLS and days <= AUTO_MAX_DAYS else "flat_file"


def estimate_rest_calls(n_symbols: int, interval: Interval, window: DateRange, session: str = "extended") -> int:
    """Upper estimate of REST calls: one per page per symbol (a page holds 50,000 base bars); a
    ``regular`` session is built from minute bars whatever the interval."""
    base_bars = window.days * (1440 if interval.is_intraday or session == "regular" else 1)
    return n_symbols * max(1, math.ceil(base_bars / PAGE_LIMIT))


def _flat_files_unavailable(settings: Settings) -> str | None:
    """Why flat files cannot serve right now, or None when they can."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        return "boto3 is not installed (pip install 'massive-feeds[flatfiles]')"
    try:
        settings.require_s3_credentials()
    except MissingCredentialsError:
        if settings.source == "sandbox" and not side_available("s3"):
            return f"no S3 credentials: this sandbox serves no flat files (its S3 side needs moto: {SANDBOX_EXTRA})"
        return "no S3 credentials (MASSIVE_S3_ACCESS_KEY_ID / MASSIVE_S3_SECRET_ACCESS_KEY)"
    return None


def _store_covers(store: "str | os.PathLike[str] | None", settings: Settings, tickers: list[str], start: DateLike,
                  end: DateLike, interval: Interval, session: str) -> bool:
    """Whether a local history store exists and holds every day of this query (reads manifests only)."""
    from pathlib import Path

    from .store.core import HistoryStore, default_store_path

    location = store if store is not None else default_store_path(settings)
    if isinstance(location, (str, os.PathLike)) and "://" not in str(location) and not Path(location).exists():
        return False
    try:
        base = "1m" if session == "regular" else interval.name
        return HistoryStore.open(location, settings).covers(tickers, start, end, base)
    except (MassiveError, OSError, ValueError) as exc:
        log.debug("history store not usable for this query: %s", exc)
        return False


def _rest_quota_short(settings: Settings, calls: int) -> str | None:
    remaining = get_quota(settings).status().rest_remaining_today
    if remaining is not None and remaining < calls:
        return f"the REST quota left today ({remaining} calls) cannot cover ~{calls} calls"
    return None


def fetch_data(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1h",
    method: Method = "auto",
    *,
    api_key: str | None = None,
    adjusted: bool = True,
    settings: Settings | None = None,
    progress: bool | None = None,
    session: str = "extended",
    store: "str | os.PathLike[str] | None" = None,
) -> pd.DataFrame:
    """Historical bars by the best method. ``method``: ``auto`` (default), ``rest``, ``flat_file`` or
    ``store`` (the local history store built by ``massive-feeds ingest``: zero calls for bars).

    In ``auto`` mode a history store that already holds every day of the query is used first; otherwise
    the product rule applies (≤ 5 symbols and ≤ 7 days → REST, larger → flat files) with its fallbacks.
    ``store`` is the store's location (default ``$MASSIVE_FEEDS_STORE`` or ``<home>/store``).

    ``adjusted`` (split-adjusted, default ``True``) and ``session`` (``"extended"`` default, or
    ``"regular"``) give the same bars whichever method runs: REST passes ``adjusted`` to the server,
    flat files apply the same splits themselves (which needs the API key for ``/v3/reference/splits``).

    The method actually used is ``df.attrs["method"]``; ``df.attrs["method_reason"]`` says why;
    ``df.attrs["source"]`` is ``"massive"``, or ``"sandbox"`` when the built-in sandbox served the bars
    (no key configured, or ``MASSIVE_SANDBOX=1``; see :mod:`massive_feeds.runtime`).
    """
    tickers = normalize_symbols(symbols)
    iv = parse_interval(interval)
    window = parse_date_range(start, end)
    session = validate_session(session)
    settings = resolve_settings(settings, api_key=api_key)  # no key configured: the built-in sandbox
    if method not in ("auto", "rest", "flat_file", "store"):
        raise InvalidInputError(f"Invalid method {method!r}; use 'auto', 'rest', 'flat_file' or 'store'")

    chosen, reason = method, "requested explicitly"
    if method == "auto" and _store_covers(store, settings, tickers, start, end, iv, session):
        chosen, reason = "store", "the local history store holds every day of the query"
    elif method == "auto":
        chosen = choose_method(len(tickers), window.days)
        reason = (f"{len(tickers)} symbol(s) over {window.days} day(s): "
                  + ("small query → REST" if chosen == "rest" else "large query → flat files"))
        if chosen == "flat_file" and (why := _flat_files_unavailable(settings)):
            chosen, reason = "rest", f"fell back to REST: {why}"
            log.warning("auto method: %s", reason)
        elif chosen == "rest" and settings.api_key and (
            why := _rest_quota_short(settings, estimate_rest_calls(len(tickers), iv, window, session))
        ) and _flat_files_unavailable(settings) is None:
            chosen, reason = "flat_file", f"fell back to flat files: {why}"
            log.warning("auto method: %s", reason)
    log.info("fetch_data: %s via %s (%s)", ",".join(tickers), chosen, reason)

    if chosen == "rest":
        df = fetch_ohlcv_rest(tickers, start, end, iv.name, adjusted=adjusted, settings=settings, progress=progress,
                              session=session)
    elif chosen == "store":
        from .store import load_store

        df = load_store(tickers, start, end, iv.name, store=store, settings=settings, adjusted=adjusted,
                        session=session)
    else:
        from .flatfiles import download_flat_file

        df = download_flat_file(tickers, start, end, iv.name, settings=settings, progress=progress,
                                adjusted=adjusted, session=session)
    df.attrs.update(method=chosen, method_reason=reason, source=settings.source)
    return df


SOURCES = ("auto", "massive", "sandbox")


def fetch_intraday_data(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1h",
    source: str = "auto",
    *,
    session: str = "extended",
    **kwargs: object,
) -> pd.DataFrame:
    """The unified entry point of the product document: ``source="auto"`` or ``"massive"`` fetch through
    :func:`fetch_data`, ``"sandbox"`` forces the built-in sandbox (like ``MASSIVE_SANDBOX=1``); ``session`` and extra keyword arguments
    (``method``, ``adjusted``, ``settings`` …) are passed on."""
    if source not in SOURCES:
        raise InvalidInputError(f"Unknown source {source!r}; available: {', '.join(SOURCES)}")
    if source == "sandbox":
        given = kwargs.pop("settings", None) or current().load_settings()
        kwargs["settings"] = given.with_overrides(sandbox="on")  # type: ignore[union-attr]
    return fetch_data(symbols, start, end, interval, session=session, **kwargs)  # type: ignore[arg-type]
