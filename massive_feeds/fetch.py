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
from functools import partial
from typing import Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from .buckets import resample
from .cache import ADJUSTED_TTL, SETTLE, ResultCache, stable_origin
from .config import Settings
from .dividends import Corrections, apply_dividends
from .errors import InvalidInputError, QuotaExceededError
from .layout import apply_layout
from .quota import get_quota
from .rest import RestClient, parse_aggs
from .rest.aggs import AggsPage
from .runtime import current, resolve_settings
from .schema import (FLOAT_COLUMNS, INTERVALS, NEW_YORK, BarQuery, DateLike, DateRange, Interval, Ticker, finalize_bars,
                     parse_date_range)
from .sessions import to_regular_session
from .source import (  # noqa: F401 - the Auto rule's limits: also importable from here
    AUTO_MAX_DAYS,
    AUTO_MAX_SYMBOLS,
    choose_method,
    fetch_query,
    rest_quota_short,
    sources,
)

log = logging.getLogger(__name__)

Method = Literal["auto", "rest", "flat_file", "store"]
PAGE_LIMIT = 50_000


def _progress_wanted(progress: bool | None, items: int) -> bool:
    return progress if progress is not None else (items > 1 and sys.stderr.isatty())


# --- REST -------------------------------------------------------------------------------------
def _aggs_path(ticker: str, interval: Interval, window: DateRange) -> str:
    frm, to = window.rest_bounds(interval.is_intraday)
    return f"/v2/aggs/ticker/{ticker}/range/{interval.multiplier}/{interval.timespan}/{frm}/{to}"


def _constant_str(value: str, n: int) -> pd.api.extensions.ExtensionArray:
    """``value`` repeated ``n`` times as pandas' ``str`` array, built from Arrow buffers (no Python objects)."""
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    if offsets[-1] < 2**31:
        array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data * n))
    else:  # pragma: no cover - 2 GB of one symbol's name
        array = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))
    return pd.array(array, dtype="str")


def _final_bars(pages: list[AggsPage], ticker: str, interval: Interval, window: DateRange) -> pd.DataFrame:
    """One symbol's pages as a finished bar frame: the rows inside the window, in the standard schema.

    The norm (strictly increasing times) is built straight from the parsed columns: every array is copied
    once (the parsed ones are read-only views of Arrow buffers, and users edit the frames they get); anything
    else (unsorted or repeated times) goes through :func:`finalize_bars`, which sorts and drops duplicates."""
    cols = {name: np.concatenate([p.columns[name] for p in pages]) if len(pages) > 1 else pages[0].columns[name]
            for name in pages[0].columns}
    ns = cols.pop("timestamp") * 10**6  # epoch ms → ns, a fresh (writeable) array
    if interval.timespan in ("minute", "hour", "day") and len(ns):  # weeks/months may start early by design
        width = (interval.minutes * 60 if interval.is_intraday else 86_400) * 10**9
        inside = (ns + width > window.start.value) & (ns < window.end.value)
        if not inside.all():  # the norm is all inside: no row copy then
            ns, cols = ns[inside], {name: col[inside] for name, col in cols.items()}
    if len(ns) < 2 or not np.all(ns[1:] > ns[:-1]):
        df = pd.DataFrame(cols)
        df.insert(0, "timestamp", pd.to_datetime(ns, unit="ns", utc=True))
        df.insert(1, "symbol", ticker)
        return finalize_bars(df)
    out: dict[str, object] = {
        "timestamp": pd.to_datetime(ns, unit="ns", utc=True),
        "symbol": _constant_str(ticker, len(ns)),
    }
    for name in FLOAT_COLUMNS:
        out[name] = np.array(cols[name], dtype=np.float64, copy=True)
    tx = cols["transactions"]
    out["transactions"] = np.where(np.isnan(tx), 0, tx).astype(np.int64)
    return pd.DataFrame(out, copy=False)


def _cache_entry(base_url: str, cache: ResultCache, ticker: str, interval: Interval, window: DateRange,
                 adjusted: bool, use_cache: bool) -> tuple[str, bool]:
    """The result-cache key of one symbol's query and whether the query may be cached (settled range)."""
    key = cache.key(stable_origin(base_url), _aggs_path(ticker, interval, window), adjusted)
    return key, use_cache and window.end <= pd.Timestamp.now("UTC") - SETTLE


def rest_calls_needed(tickers: Sequence[str | Ticker], interval: Interval, window: DateRange, session: str,
                      adjusted: bool, settings: Settings, use_cache: bool = True) -> int:
    """REST calls a :func:`fetch_ohlcv_rest` query would make: :func:`estimate_rest_calls` for each
    symbol whose answer is not in the local result cache (a cached symbol costs nothing)."""
    cache = ResultCache(settings.cache_dir / "rest")
    base_url = settings.rest_url.rstrip("/")
    calls = 0
    for t in map(Ticker.of, tickers):
        cut = session == "regular" and t.has_sessions
        key, cacheable = _cache_entry(base_url, cache, t.symbol, INTERVALS["1m"] if cut else interval, window,
                                      adjusted, use_cache)
        if not (cacheable and cache.has(key, ADJUSTED_TTL if adjusted else None)):
            calls += estimate_rest_calls(1, interval, window, "regular" if cut else "extended")
    return calls


def _refuse_if_rest_short(settings: Settings, calls: int, what: str) -> None:
    """QuotaExceededError before any call when the REST calls left today cannot cover ``calls``."""
    status = get_quota(settings).status()
    left = status.rest_remaining_today
    if left is not None and calls > left:
        err = QuotaExceededError(
            f"{what} needs ~{calls} REST call(s) and {left} of {status.rest_daily_limit} are left today (plan "
            f"{status.plan!r}); nothing was fetched. The quota resets at {status.rest_resets_at:%Y-%m-%d %H:%M} "
            "UTC (symbols fetched before are cached, a rerun then resumes); meanwhile use flat files, a saved "
            "dataset or a shorter range", resource="rest_daily", resets_at=status.rest_resets_at)
        err.needed, err.remaining = calls, left  # type: ignore[attr-defined]
        raise err


def _fetch_symbol(client: RestClient, cache: ResultCache, ticker: str, interval: Interval,
                  window: DateRange, adjusted: bool, use_cache: bool) -> pd.DataFrame:
    path = _aggs_path(ticker, interval, window)
    key, cacheable = _cache_entry(client.base_url, cache, ticker, interval, window, adjusted, use_cache)
    if cacheable and (hit := cache.get(key, ADJUSTED_TTL if adjusted else None)) is not None:
        log.debug("cache hit for %s", path)
        return hit
    params = {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": PAGE_LIMIT}
    pages = list(client.paginate(path, params, parse_aggs, lambda page: page.next_url))
    df = _final_bars(pages, ticker, interval, window)
    if cacheable:
        cache.put_later(key, df)  # off the critical path; atomic, and served from memory meanwhile
    return df


def fetch_ohlcv_rest(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1h",
    api_key: str | None = None,
    adjusted: bool | str = True,
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
        adjusted: ``True``/``"splits"``: split-adjusted prices (Massive's default); ``"total"``: splits and cash
            dividends (total return, the dividends applied here: :mod:`massive_feeds.dividends`); ``False``/``"raw"``:
            prices as traded.
        use_cache: serve identical settled queries from the local cache (no call, no quota).
        session: ``"extended"`` (default: what the service returns, pre-market to after-hours) or
            ``"regular"`` (09:30–16:00 New York on NYSE sessions with early closes, for stocks, options and
            indices; fetched as minute bars and rebuilt — see :mod:`massive_feeds.sessions`).

    Symbols without bars are listed in ``df.attrs["empty_symbols"]`` (an empty frame is returned when none
    has any; :func:`fetch_data` raises :class:`~massive_feeds.errors.NoDataError` then).

    Raises:
        InvalidInputError: bad symbol, interval, dates or session (before any call).
        MissingCredentialsError: no API key configured.
        QuotaExceededError: the REST calls left today cannot cover the query's estimated calls
            (:func:`rest_calls_needed`; refused before any call, with calls needed vs left and the reset time).
        AuthenticationError, NotEntitledError, RateLimitError, ServerError, BadResponseError.
    """
    query = BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted)
    return fetch_rest_bars(query, settings=settings, client=client, api_key=api_key, use_cache=use_cache,
                           progress=progress, max_workers=max_workers)


def fetch_rest_bars(query: BarQuery, *, settings: Settings | None = None, client: RestClient | None = None,
                    api_key: str | None = None, use_cache: bool = True, progress: bool | None = None,
                    max_workers: int = 4) -> pd.DataFrame:
    """:func:`fetch_ohlcv_rest` for a built :class:`~massive_feeds.schema.BarQuery` (the same result and errors)."""
    if any(t.asset == "futures" for t in query.parsed):  # their own endpoint: /futures/v1/aggs
        from .futures import futures_bars_by, is_mixed, mixed_bars

        if is_mixed(query):  # the futures and the others apart, then one frame
            return mixed_bars(query, partial(fetch_rest_bars, settings=settings, client=client, api_key=api_key,
                                             use_cache=use_cache, progress=progress, max_workers=max_workers))
        return futures_bars_by(query, "rest", resolve_settings(client.settings if client else settings,
                                                               api_key=api_key), progress=progress)
    tickers, iv, window, session, adjusted = query.symbols, query.interval, query.range, query.session, query.adjusted
    own_client = client is None
    client = client or RestClient(settings, api_key=api_key)
    cache = ResultCache(client.settings.cache_dir / "rest")
    try:  # estimate first: refuse up front rather than spend the day's quota and then fail
        _refuse_if_rest_short(client.settings, rest_calls_needed(query.parsed, iv, window, session, adjusted,
                                                                  client.settings, use_cache),
                              f"REST bars for {len(tickers)} symbol(s) over {window.days} day(s)")
    except BaseException:
        if own_client:
            client.close()
        raise

    try:  # total return: the dividends (and their splits) are fetched before any bar
        fixes = (Corrections.fetch(query.adjustment, [t.symbol for t in query.parsed if t.asset == "stocks"],
                                   window.first_day, client.settings) if query.total else None)
    except BaseException:
        if own_client:
            client.close()
        raise

    def one(ticker: Ticker) -> pd.DataFrame:
        if fixes is not None:
            return _total_return_bars(client, cache, ticker, query, fixes, use_cache)
        if session == "regular" and ticker.has_sessions:
            minutes = _fetch_symbol(client, cache, ticker.symbol, INTERVALS["1m"], window, adjusted, use_cache)
            return to_regular_session(minutes, iv)
        return _fetch_symbol(client, cache, ticker.symbol, iv, window, adjusted, use_cache)

    try:
        with tqdm(total=len(tickers), desc="REST", unit="symbol",
                  disable=not _progress_wanted(progress, len(tickers))) as bar:
            if len(tickers) == 1:
                frames = [one(query.parsed[0])]
            else:
                frames = []
                for frame in _rest_pool(max(1, max_workers)).map(one, query.parsed):
                    frames.append(frame)
                    bar.update()
    finally:
        if own_client:
            client.close()
    empty = [t for t, f in zip(tickers, frames) if f.empty]
    if empty:
        log.info("no bars for %s in %s..%s over REST (unknown ticker, or no trades)", ", ".join(empty),
                 window.first_day, window.last_day)
    applied = [d for f in frames for d in f.attrs.get("dividends", [])]
    df = frames[0] if len(frames) == 1 else finalize_bars(pd.concat(frames, ignore_index=True))
    df.attrs.update(method="rest", interval=iv.name, adjusted=adjusted, session=session, empty_symbols=empty,
                    source=client.settings.source)
    df.attrs.update((fixes or Corrections(query.adjustment)).attrs(applied))  # adjustment, adjusted_as_of, dividends
    return df


def _total_return_bars(client: RestClient, cache: ResultCache, ticker: Ticker, query: BarQuery,
                       fixes: Corrections, use_cache: bool) -> pd.DataFrame:
    """One symbol's total-return bars over REST: the server's split-adjusted base bars (minutes for a regular
    session, days for week and month bars, as flat files build them), the dividends applied to those, then cut
    and rebuilt (see :mod:`massive_feeds.dividends`)."""
    iv, regular = query.interval, query.session == "regular" and ticker.has_sessions
    base_iv = INTERVALS["1m"] if regular else INTERVALS["1d"] if iv.name in ("1w", "1M") else iv
    base = _fetch_symbol(client, cache, ticker.symbol, base_iv, query.range, True, use_cache)
    base = apply_dividends(base, fixes.dividends, basis=fixes.split_basis(base))
    applied = base.attrs["dividends"]
    if regular:
        base = to_regular_session(base, iv)
    elif base_iv is not iv and not base.empty:
        frame = base.assign(t=base["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")).drop(columns="timestamp")
        bars = resample(frame, iv)
        bars.insert(0, "timestamp", pd.to_datetime(bars.pop("t"), unit="ns", utc=True))
        base = finalize_bars(bars)
    base.attrs["dividends"] = applied
    return base


class _RestPool(ThreadPoolExecutor):
    """The runtime's pool for multi-symbol REST calls (closed with the runtime)."""

    def close(self) -> None:
        self.shutdown(wait=False, cancel_futures=True)


def _rest_pool(workers: int) -> ThreadPoolExecutor:
    """A pool kept by the runtime per worker count: its threads keep their HTTP sessions, so the next
    multi-symbol call reuses their connections (no new TCP/TLS handshake per thread and call). Keyed by
    process id, since a forked child has none of its parent's threads."""
    return current().shared("rest-pool", (os.getpid(), workers),
                            lambda: _RestPool(max_workers=workers, thread_name_prefix="rest"))


# --- the sources of bars ---------------------------------------------------------------------------
def estimate_rest_calls(n_symbols: int, interval: Interval, window: DateRange, session: str = "extended") -> int:
    """Upper estimate of REST calls: one per page per symbol (a page holds 50,000 base bars); a
    ``regular`` session is built from minute bars whatever the interval."""
    base_bars = window.days * (1440 if interval.is_intraday or session == "regular" else 1)
    return n_symbols * max(1, math.ceil(base_bars / PAGE_LIMIT))


def _rest_calls(query: BarQuery, settings: Settings) -> int:
    """:func:`rest_calls_needed` of a built query (the REST source's cost)."""
    return rest_calls_needed(query.parsed, query.interval, query.range, query.session, query.adjusted, settings)


def _rest_bars(query: BarQuery, settings: Settings, progress: bool | None) -> pd.DataFrame:
    return fetch_rest_bars(query, settings=settings, progress=progress)


def _flat_file_bars(query: BarQuery, settings: Settings, progress: bool | None, *, fill: bool) -> pd.DataFrame:
    """Bars from the day files; with ``fill`` (Auto mode) the trading days they lack come over REST."""
    from .flatfiles import flat_file_bars

    if any(t.asset == "futures" for t in query.parsed):  # sessions, contracts and rolls: see .futures
        from .futures import futures_bars_by

        return futures_bars_by(query, "flat_file", settings, progress=progress)

    df = flat_file_bars(query, settings=settings, progress=progress)
    return _fill_missing_days(df, query, settings, fill=fill, progress=progress)


def fetch_data(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1h",
    method: Method = "auto",
    *,
    api_key: str | None = None,
    adjusted: bool | str = True,
    settings: Settings | None = None,
    progress: bool | None = None,
    session: str = "extended",
    store: "str | os.PathLike[str] | None" = None,
    layout: str = "long",
    roll_adjust: str = "none",
) -> pd.DataFrame:
    """Historical bars by the best method. ``method``: ``auto`` (default), ``rest``, ``flat_file`` or
    ``store`` (the local history store built by ``massive-feeds ingest``: zero calls for bars).

    In ``auto`` mode a history store that already holds every day of the query is used first; otherwise
    the product rule applies (≤ 5 symbols and ≤ 7 days → REST, larger → flat files) with its fallbacks.
    ``store`` is the store's location (default ``$MASSIVE_FEEDS_STORE`` or ``<home>/store``).

    ``adjusted`` (split-adjusted, default ``True``) and ``session`` (``"extended"`` default, or
    ``"regular"``) give the same bars whichever method runs: REST passes ``adjusted`` to the server,
    flat files apply the same splits themselves (which needs the API key for ``/stocks/v1/splits``).
    ``adjusted="total"`` (total-return prices: splits and cash dividends) is the same on every path too, the
    dividends applied client-side (:mod:`massive_feeds.dividends`).

    The method actually used is ``df.attrs["method"]``; ``df.attrs["method_reason"]`` says why;
    ``df.attrs["source"]`` is ``"massive"``, or ``"sandbox"`` when the built-in sandbox served the bars
    (no key configured, or ``MASSIVE_SANDBOX=1``; see :mod:`massive_feeds.runtime`). Auto's
    choice counts the calls the chosen path needs (:func:`rest_calls_needed`, cached symbols free): when
    the REST quota left cannot cover them it takes flat files, whose only REST need, the splits list,
    then comes from the cache without a call (its age in ``df.attrs["splits_as_of"]``).

    Empty and partial results are loud: symbols without bars are in ``df.attrs["empty_symbols"]`` and
    ``df.attrs["empty_reasons"]`` (unknown symbol / no trades / no file for those days) with a warning;
    flat-file days missing on trading days are in ``df.attrs["missing_trading_days"]`` and, in Auto mode
    with REST calls to spare, fetched over REST (``filled_over_rest``; else ``unfilled_days``).

    ``layout="long"`` (default) is one row per symbol and bar; ``layout="wide"`` is the yfinance/vectorbt
    shape: a DatetimeIndex and ``(field, symbol)`` columns, ``df["Close"]`` one column per symbol (see
    :mod:`massive_feeds.layout`).

    Futures (contract codes ``ESZ4``/``F:ESZ4``, continuous ``ES.c.0``/``ES.c.1``/``ES.v.0``; see
    :mod:`massive_feeds.futures`): days are exchange sessions, bars add ``settlement_price`` and
    ``session_end_date``, continuous series add ``contract`` and their roll table in ``df.attrs["rolls"]``
    (JSON-safe records; ``massive_feeds.roll_table(df)`` gives it as a DataFrame);
    ``roll_adjust`` is ``"none"`` (default, raw prices), ``"ratio"`` or ``"difference"`` (back-adjusted).

    Raises:
        NoDataError: no symbol has any bar in the range (``exc.symbols`` maps each to its reason).
        QuotaExceededError: an explicit REST query needs more calls than are left today (refused up front).
    """
    if layout not in ("long", "wide"):
        apply_layout(pd.DataFrame(), layout)  # raises the typed error before any call is made
    query = BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted, roll_adjust=roll_adjust)
    settings = resolve_settings(settings, api_key=api_key)  # no key configured: the built-in sandbox
    return fetch_bars(query, method, settings=settings, progress=progress, store=store, layout=layout)


def fetch_bars(query: BarQuery, method: Method = "auto", *, settings: Settings | None = None,
               progress: bool | None = None, store: "str | os.PathLike[str] | None" = None,
               layout: str = "long") -> pd.DataFrame:
    """:func:`fetch_data` for a built :class:`~massive_feeds.schema.BarQuery`: the method choice and the
    back ends (REST, flat files, the history store) all take the query as it is."""
    settings = resolve_settings(settings)  # no key configured: the built-in sandbox
    if any(t.asset == "futures" for t in query.parsed):
        from .futures import is_mixed, mixed_bars, refuse_unaligned_mix

        if is_mixed(query):  # futures beside stocks…: each part by its own route (Auto choosing for each), one frame
            if layout == "wide":
                refuse_unaligned_mix(query.tickers, query.interval, "layout='wide'")
            bars = mixed_bars(query, partial(fetch_bars, method=method, settings=settings, progress=progress,
                                             store=store))
            return apply_layout(bars, layout)
    by_method = sources(settings, store, _rest_bars, _rest_calls, partial(_flat_file_bars, fill=method == "auto"))
    if any(t.asset == "futures" for t in query.parsed):  # sessions, contracts and rolls (see massive_feeds.futures)
        from .futures import FuturesStore

        by_method["store"] = FuturesStore(store, settings)
    bars = fetch_query(query, method, by_method, settings, progress)
    return apply_layout(bars, layout)


def download_flat_file(
    symbols: str | Iterable[str],
    start: DateLike,
    end: DateLike,
    interval: str = "1d",
    *,
    settings: Settings | None = None,
    progress: bool | None = None,
    max_workers: int = 4,
    adjusted: bool | str = True,
    session: str = "extended",
    roll_adjust: str = "none",
) -> pd.DataFrame:
    """OHLCV bars from Massive's flat files: :func:`massive_feeds.flatfiles.download_flat_file` (arguments,
    attrs and errors as documented there) for every ticker kind, futures included.

    Futures (contracts ``ESZ4`` and continuous series ``ES.c.0`` with ``roll_adjust`` ``"none"``/``"ratio"``/
    ``"difference"``) go the one futures route, :func:`massive_feeds.futures.futures_bars_by` over the
    ``us_futures_*`` day files, so the bars (``contract`` and ``df.attrs["rolls"]`` included) are exactly
    ``fetch_data(..., method="flat_file")``'s; futures beside other asset classes are read apart and put in one
    frame (:func:`massive_feeds.futures.mixed_bars`). This wrapper lives in the fetch layer because continuous
    series are built above the flat files (from the contracts reference and the contracts' day files); the flat-file
    layer's own ``download_flat_file`` takes stocks, options, indices, forex, crypto and single contracts.
    """
    from .flatfiles import flat_file_bars

    query = BarQuery.build(symbols, start, end, interval, session=session, adjusted=adjusted, roll_adjust=roll_adjust)
    if not any(t.asset == "futures" for t in query.parsed):
        return flat_file_bars(query, settings=settings, progress=progress, max_workers=max_workers)
    from .futures import futures_bars_by, is_mixed, mixed_bars

    settings = resolve_settings(settings, need=("rest", "s3"))  # no key configured: the built-in sandbox

    def read(part: BarQuery) -> pd.DataFrame:
        if any(t.asset == "futures" for t in part.parsed):
            df = futures_bars_by(part, "flat_file", settings, progress=progress)
            df.attrs.update(method="flat_file", source=settings.source)
            return df
        return flat_file_bars(part, settings=settings, progress=progress, max_workers=max_workers)

    return mixed_bars(query, read) if is_mixed(query) else read(query)


def _missing_trading_days(df: pd.DataFrame, query: BarQuery) -> list[str]:
    """The flat-file days without a file on which some of the query's tickers trade (not weekends or holidays)."""
    from datetime import date

    from .sessions import trades_on

    classes = {t.asset for t in query.parsed}
    return [d for d in df.attrs.get("missing_days", []) if trades_on(date.fromisoformat(d), classes)]


def _fill_missing_days(df: pd.DataFrame, query: BarQuery, settings: Settings, *, fill: bool,
                       progress: bool | None) -> pd.DataFrame:
    """Name the trading days the flat files lack (e.g. today's, not yet published) and, with ``fill``
    (Auto mode) and REST calls to spare, fetch those days over REST. ``df.attrs``: ``missing_trading_days``,
    ``filled_over_rest`` (days fetched over REST) and ``unfilled_days``."""
    iv = query.interval
    missing = _missing_trading_days(df, query)
    attrs = dict(df.attrs)
    attrs.update(missing_trading_days=missing, filled_over_rest=[], unfilled_days=missing)
    if not missing:
        df.attrs.update(attrs)
        return df
    why = None
    if not fill:
        why = "method='flat_file' was asked explicitly (method='auto' fills them over REST)"
    elif iv.name in ("1w", "1M"):
        why = "week/month bars cannot be completed from single days"
    elif not settings.api_key:
        why = "no API key for REST"
    else:
        gaps = query.replace(range=parse_date_range(missing[0], missing[-1]))
        why = rest_quota_short(settings, _rest_calls(gaps, settings))
    if why is None:
        extra = fetch_rest_bars(gaps, settings=settings, progress=progress)
        days = extra["timestamp"].dt.tz_convert(NEW_YORK).dt.date.astype(str)
        width = pd.Timedelta(minutes=iv.minutes) if iv.is_intraday else pd.Timedelta(days=1)
        window = query.range
        inside = (extra["timestamp"] + width > window.start) & (extra["timestamp"] < window.end)  # the query's bounds
        extra = extra[(days.isin(set(missing)) & inside).to_numpy()]
        if not extra.empty:
            df = (finalize_bars(pd.concat([df, extra], ignore_index=True)) if not df.empty
                  else extra.reset_index(drop=True))
        attrs.update(filled_over_rest=missing, unfilled_days=[])
        log.warning("flat files lack %d trading day(s) (%s); fetched them over REST", len(missing), ", ".join(missing))
    else:
        log.warning("flat files lack %d trading day(s) (%s: not yet published, or withdrawn); not filled: %s",
                    len(missing), ", ".join(missing), why)
    df.attrs.update(attrs)
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
        given = kwargs.pop("settings", None)
        base = given if isinstance(given, Settings) else current().load_settings()
        kwargs["settings"] = base.with_overrides(sandbox="on")
    return fetch_data(symbols, start, end, interval, session=session, **kwargs)  # type: ignore[arg-type]
