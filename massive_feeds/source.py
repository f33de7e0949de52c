"""One shape for every source: a typed query, the sources that could answer it, one choice, one diagnosis.

A query is a :class:`~massive_feeds.schema.BarQuery` or a :class:`~massive_feeds.tickschema.TickQuery` (tickers
parsed once into :class:`~massive_feeds.schema.Ticker` s with their asset class). A source answers three questions
about it (:class:`Source`):

* ``unavailable(query)`` — what it covers: ``None`` when it can serve the query now, else why not;
* ``cost(query)`` — what it would spend (:class:`Cost`: REST calls; flat-file bytes once listed);
* ``read(query, progress)`` — the frame, in the bar or the tick schema.

The REST and flat-file sources of bars live in :mod:`massive_feeds.fetch`, those of ticks in
:mod:`massive_feeds.ticks`; the history store serves both (:class:`StoreSource`). :func:`choose` holds the Auto rule
and its two fallbacks for every kind of query, :func:`diagnose_empty` says why symbols came back empty, and
:func:`fetch_query` is the whole way: choose, read, diagnose.

Growing: a new asset class (futures) is a new ticker kind (``schema.TICKER_PREFIXES`` and its pattern) plus, in each
source, whether it covers it (``unavailable``); a new data kind (dividends) is a query type and a mapping of its
sources handed to :func:`fetch_query`. Neither edits the choice or writes a second pipeline.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Generic, Mapping, Protocol, TypeVar

import pandas as pd

from .config import Settings
from .errors import InvalidInputError, MassiveError, MissingCredentialsError, NoDataError
from .flatfiles.keys import PREFIXES
from .quota import get_quota
from .rest import RestClient
from .runtime import SANDBOX_EXTRA, side_available
from .schema import NEW_YORK, SESSION_ASSETS, BarQuery, Ticker
from .sessions import trades_on
from .store.core import HistoryStore, default_store_path
from .tickschema import TickQuery

log = logging.getLogger(__name__)

#: The Auto rule for bars: at most this many symbols and at most this many calendar days go over REST.
AUTO_MAX_SYMBOLS = 5
AUTO_MAX_DAYS = 7
#: The Auto rule for ticks: at most this many symbol-days (symbols × calendar days) go over REST.
AUTO_MAX_SYMBOL_DAYS = 5
UNKNOWN_SYMBOL = "unknown symbol (no active ticker by that name)"
Query = BarQuery | TickQuery
Q = TypeVar("Q", BarQuery, TickQuery)
Q_in = TypeVar("Q_in", bound=Query, contravariant=True)


@dataclass(frozen=True)
class Cost:
    """What reading a query from a source spends: REST calls (quota slots) and flat-file bytes (``None``: only
    known once the day files are listed)."""

    calls: int = 0
    bytes: int | None = None


class Source(Protocol[Q_in]):
    """A back end for one kind of query: ``method`` is its name in ``df.attrs["method"]`` (``rest``, ``flat_file``,
    ``store``)."""

    method: str

    def unavailable(self, query: Q_in) -> str | None:
        """``None`` when this source can serve ``query`` now, else why not (one line)."""

    def cost(self, query: Q_in) -> Cost:
        """What reading ``query`` would spend."""

    def read(self, query: Q_in, progress: bool | None = None) -> pd.DataFrame:
        """The query's rows (bar or tick schema), ``df.attrs`` saying what was (not) found."""


def auto_rule(query: Query) -> tuple[str, str]:
    """The product rule, before fallbacks: (``"rest"`` or ``"flat_file"``, why). Bars: ≤ 5 symbols and ≤ 7 days
    → REST; ticks: ≤ 5 symbol-days → REST; anything larger → flat files."""
    n, days = len(query.parsed), query.range.days
    if isinstance(query, TickQuery):
        if n * days <= AUTO_MAX_SYMBOL_DAYS:
            return "rest", f"{n} symbol(s) × {days} day(s): few symbol-days → REST"
        return "flat_file", f"{n} symbol(s) × {days} day(s): bulk → flat files"
    pick = choose_method(n, days)
    return pick, f"{n} symbol(s) over {days} day(s): " + ("small query → REST" if pick == "rest"
                                                             else "large query → flat files")


def choose_method(n_symbols: int, days: int) -> str:
    """The product rule for bars: at most 5 symbols and at most 7 days → ``rest``; otherwise ``flat_file``."""
    return "rest" if n_symbols <= AUTO_MAX_SYMBOLS and days <= AUTO_MAX_DAYS else "flat_file"


def choose(query: Q, method: str, by_method: Mapping[str, Source[Q]], settings: Settings) -> tuple[Source[Q], str]:
    """The source for ``query`` and why. ``method`` names one of ``by_method`` or is ``"auto"``: the store when it
    holds every day of the query, else :func:`auto_rule`, falling back to REST when flat files cannot serve, and to
    flat files when the REST calls left today cannot cover the query's :class:`Cost`."""
    names = ["auto", *by_method]
    if method not in names:
        raise InvalidInputError(f"Invalid method {method!r}; use {', '.join(map(repr, names[:-1]))} or {names[-1]!r}")
    if method != "auto":
        return by_method[method], "requested explicitly"
    store = by_method.get("store")
    if store is not None and store.unavailable(query) is None:
        return store, "the local history store holds every day of the query"
    pick, reason = auto_rule(query)
    flat_why = by_method["flat_file"].unavailable(query)
    if pick == "flat_file" and flat_why is not None:
        pick, reason = "rest", f"fell back to REST: {flat_why}"
    elif pick == "rest" and flat_why is None and settings.api_key and (
            short := rest_quota_short(settings, by_method["rest"].cost(query).calls)):
        # the flat-file path needs REST only for the splits list; with the quota short it uses the cached list
        # (any age, said in df.attrs["splits_as_of"]) and never calls (see massive_feeds.splits)
        pick, reason = "flat_file", f"fell back to flat files: {short}"
    if reason.startswith("fell back"):
        log.warning("auto method: %s", reason)
    return by_method[pick], reason


def fetch_query(query: Q, method: str, by_method: Mapping[str, Source[Q]], settings: Settings,
                progress: bool | None = None) -> pd.DataFrame:
    """Choose a source (:func:`choose`), read the query from it, say what ran and why (``df.attrs["method"]``,
    ``["method_reason"]``, ``["source"]``) and diagnose empty symbols (:func:`diagnose_empty`)."""
    refused = calendar_refusal(query, settings)
    if refused:  # the calendar already knows: no call, and the reason instead of "unknown symbol or no trades"
        window, what = query.range, "/".join(getattr(query, "kinds", ("bars",)))
        raise NoDataError(f"no {what} for {', '.join(query.tickers)} in {window.first_day}..{window.last_day}: "
                          f"{refused}; nothing was asked", symbols={t: refused for t in query.tickers},
                          start=window.first_day, end=window.last_day)
    source, reason = choose(query, method, by_method, settings)
    log.info("%r via %s (%s)", query, source.method, reason)
    try:
        df = source.read(query, progress)
    except MassiveError as exc:
        if method == "auto":  # say which method Auto ran and why, not only what failed inside it
            _name_auto_choice(exc, source.method, reason)
        raise
    if filled := df.attrs.get("filled_over_rest"):  # served by both: the reason says which days REST gave
        reason += f"; {len(filled)} trading day(s) the flat files lack came over REST ({', '.join(filled)})"
    df.attrs.update(method=source.method, method_reason=reason, source=settings.source)
    return diagnose_empty(df, query, source.method, settings)


def _name_auto_choice(exc: MassiveError, method: str, reason: str) -> None:
    """Prefix ``exc``'s message with the method Auto ran and why (a fallback included), and log it: a failure
    after a fallback must not read as if the method the rule first picked had failed."""
    exc.message = f"Auto read {METHOD_TITLES.get(method, method)} ({reason}), which failed: {exc.message}"
    exc.args = (exc.message, *exc.args[1:])
    exc.context.update(method=method, method_reason=reason)
    log.warning("auto method: %s failed (%s)", method, reason)


#: how a failure message names each method
METHOD_TITLES = {"rest": "REST", "flat_file": "flat files", "store": "the history store"}

#: the first day the built-in sandbox has history for (``massive_feeds.sandbox.market.HISTORY_START``; the
#: sandbox sits beside the house, so the day is repeated here and a test keeps the two equal)
SANDBOX_FIRST_DAY = date(2003, 9, 10)


def calendar_refusal(query: Query, settings: Settings) -> str | None:
    """Why ``query`` can have no rows whatever the service says, or None: it lies in the future, before the
    sandbox's first day (sandbox settings), or (for session-bound asset classes) holds no trading session."""
    window = query.range
    today = pd.Timestamp.now(NEW_YORK).date()
    if window.first_day > today:
        return f"the range is in the future (today is {today} in New York)"
    if settings.uses_sandbox and window.last_day < SANDBOX_FIRST_DAY:
        return f"the range ends before the sandbox's first day ({SANDBOX_FIRST_DAY}), where its history starts"
    classes = {t.asset for t in query.parsed}
    if classes <= SESSION_ASSETS and window.days <= 400 and not any(
            trades_on(day, classes) for day in window.calendar_days()):
        return "no trading session in the range (a weekend or market holiday)"
    return None


# --- what the sources share -----------------------------------------------------------------------
def flat_files_unavailable(settings: Settings, query: Query | None = None) -> str | None:
    """Why flat files cannot serve (the query's asset classes, boto3, S3 credentials) right now, or None."""
    uncovered = [t.symbol for t in (query.parsed if query is not None else ()) if t.asset not in PREFIXES]
    if uncovered:
        return f"no flat files for {', '.join(uncovered)}"
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


def rest_quota_short(settings: Settings, calls: int) -> str | None:
    """Why the REST calls left today cannot cover ``calls``, or None when they can (or the plan has no limit)."""
    remaining = get_quota(settings).status().rest_remaining_today
    if remaining is not None and remaining < calls:
        return f"the REST quota left today ({remaining} calls) cannot cover ~{calls} calls"
    return None


Reader = Callable[[Q, Settings, "bool | None"], pd.DataFrame]


@dataclass
class RestSource(Generic[Q]):
    """REST (bars ``/v2/aggs``, ticks ``/v3/trades``/``quotes``): every asset class, at a cost in calls; ``calls``
    counts them for a query (cached answers free), ``reader`` reads it."""

    settings: Settings
    reader: Reader[Q]
    calls: Callable[[Q, Settings], int]
    method: str = "rest"

    def unavailable(self, query: Q) -> str | None:
        return None

    def cost(self, query: Q) -> Cost:
        return Cost(calls=self.calls(query, self.settings))

    def read(self, query: Q, progress: bool | None = None) -> pd.DataFrame:
        return self.reader(query, self.settings, progress)


@dataclass
class FlatFileSource(Generic[Q]):
    """The S3 day files: the asset classes they hold, with boto3 and S3 credentials. Their bytes are known (and
    reserved against the monthly quota) once the day files are listed, so ``cost`` says none up front."""

    settings: Settings
    reader: Reader[Q]
    method: str = "flat_file"

    def unavailable(self, query: Q) -> str | None:
        return flat_files_unavailable(self.settings, query)

    def cost(self, query: Q) -> Cost:
        return Cost()

    def read(self, query: Q, progress: bool | None = None) -> pd.DataFrame:
        return self.reader(query, self.settings, progress)


@dataclass
class StoreSource:
    """The local history store (``massive-feeds ingest``): bars and ticks with no call to Massive at all.
    ``location``: a folder, URL or :class:`HistoryStore`; ``None`` for the default store."""

    location: "str | os.PathLike[str] | HistoryStore | None"
    settings: Settings
    method: str = "store"

    def unavailable(self, query: Query) -> str | None:
        location = self.location if self.location is not None else default_store_path(self.settings)
        if isinstance(location, (str, os.PathLike)) and "://" not in str(location) and not Path(location).exists():
            return f"no history store at {location}"
        try:  # reads manifests only
            covered = HistoryStore.open(location, self.settings).covers_query(query)
        except (MassiveError, OSError, ValueError) as exc:
            log.debug("history store not usable for %r: %s", query, exc)
            return f"the history store is not usable ({exc})"
        return None if covered else "the history store lacks days of the query"

    def cost(self, query: Query) -> Cost:
        return Cost()

    def read(self, query: Query, progress: bool | None = None) -> pd.DataFrame:
        store = HistoryStore.open(self.location, self.settings)
        return store.ticks(query) if isinstance(query, TickQuery) else store.bars(query)


def sources(settings: Settings, store: "str | os.PathLike[str] | HistoryStore | None", rest: Reader[Q],
            rest_calls: Callable[[Q, Settings], int], flat_file: Reader[Q]) -> dict[str, Source[Q]]:
    """The three sources of one kind of query, by method name, for :func:`fetch_query`."""
    return {"rest": RestSource(settings, rest, rest_calls), "flat_file": FlatFileSource(settings, flat_file),
            "store": StoreSource(store, settings)}


# --- the empty-result diagnosis -------------------------------------------------------------------
def diagnose_empty(df: pd.DataFrame, query: Query, method: str, settings: Settings) -> pd.DataFrame:
    """List symbols without rows (``df.attrs["empty_symbols"]`` and ``["empty_reasons"]``) with a warning naming
    symbol, range and reason; raise :class:`NoDataError` when no symbol has any."""
    present = set(df["symbol"].unique()) if len(df) else set()
    empty = [t for t in query.tickers if t not in present]
    reasons = _empty_reasons(df, query, empty, method, settings) if empty else {}
    window = query.range
    span, what = f"{window.first_day}..{window.last_day}", "/".join(getattr(query, "kinds", ("bars",)))
    df.attrs.update(empty_symbols=empty, empty_reasons=reasons)
    if empty and len(empty) == len(query.parsed):
        # a tick query's reason is about its days, the same for every symbol: said once
        detail = (next(iter(reasons.values())) if isinstance(query, TickQuery)
                  else "; ".join(f"{t}: {r}" for t, r in reasons.items()))
        raise NoDataError(f"no {what} for {', '.join(empty)} in {span} via {method} ({detail})",
                          symbols=reasons, start=window.first_day, end=window.last_day)
    for t, r in reasons.items():
        log.warning("no %s for %s in %s via %s: %s", what, t, span, method, r)
    return df


def _empty_reasons(df: pd.DataFrame, query: Query, empty: list[str], method: str,
                   settings: Settings) -> dict[str, str]:
    """Why each symbol in ``empty`` has no rows."""
    if isinstance(query, TickQuery):
        missing = list(df.attrs.get("missing_days") or [])
        why = (f"no flat file for {', '.join(missing)}" if missing
               else "unknown ticker, no trading session in the range, or nothing traded")
        return {t: why for t in empty}
    if method == "flat_file" and not df.attrs.get("files"):
        return {t: "no flat file for those days (weekend, holiday or not yet published)" for t in empty}
    if method == "store" and df.attrs.get("not_ingested_days"):
        return {t: "the store has not ingested those days" for t in empty}
    where = {"flat_file": "not in the day files", "store": "not in the store", "rest": "no bars over REST"}[method]
    known = _known_tickers([t for t in query.parsed if t.symbol in empty and t.asset not in ("options", "futures")],
                           settings)  # neither is listed in /v3/reference/tickers
    return {t: f"{where}: " + (UNKNOWN_SYMBOL if known.get(t) is False else
                               "no trades in the range" if known.get(t) else "unknown symbol or no trades")
            for t in empty}


def _known_tickers(tickers: list[Ticker], settings: Settings) -> dict[str, bool]:
    """Whether each ticker is an active one in /v3/reference/tickers (one call each, only while at least
    20 calls would be left); tickers not looked up (options live elsewhere, no key, quota) are left out."""
    if not tickers or not settings.api_key or len(tickers) > 5 or rest_quota_short(settings, len(tickers) + 20):
        return {}
    out: dict[str, bool] = {}
    try:
        with RestClient(settings) as client:
            for t in map(str, tickers):
                rows = client.get_json("/v3/reference/tickers", {"ticker": t, "limit": 1}).get("results") or []
                out[t] = any(r.get("ticker") == t for r in rows)
    except MassiveError as exc:
        log.debug("could not look up %s: %s", tickers, exc)
    return out



def read_apart(parts: list[Q], read: Callable[[Q], pd.DataFrame],
               join: Callable[[list[pd.DataFrame]], pd.DataFrame]) -> pd.DataFrame:
    """One frame from a query split into ``parts`` (futures beside other asset classes: each part means its own
    days, futures sessions or New York days), each read by ``read`` with its own route and source choice, the
    frames joined by ``join``.

    ``df.attrs``: the parts' attrs, a later part's over an earlier's; ``method`` the parts' one method or
    ``"mixed"``, ``method_by_symbol`` each ticker's, ``method_reason`` both parts' reasons, ``empty_symbols``/
    ``empty_reasons`` and ``missing_days`` of both. A part without any row is listed there; its
    :class:`NoDataError` is raised (with the others') only when no part has a row."""
    frames: list[tuple[Q, pd.DataFrame]] = []
    failed: list[NoDataError] = []
    for part in parts:
        try:
            frames.append((part, read(part)))
        except NoDataError as exc:
            failed.append(exc)
    if not frames:
        window = parts[-1].range
        raise NoDataError("; ".join(e.message for e in failed),
                          symbols={t: r for e in failed for t, r in e.symbols.items()},
                          start=window.first_day, end=window.last_day)
    df = join([f for _, f in frames])
    attrs: dict[str, object] = {}
    for _, f in frames:
        attrs.update(f.attrs)
    methods = {t: str(f.attrs.get("method")) for part, f in frames for t in part.tickers}
    reasons = {t: r for e in failed for t, r in e.symbols.items()}
    for _, f in frames:
        reasons.update(f.attrs.get("empty_reasons") or {t: "no data" for t in f.attrs.get("empty_symbols", [])})
    used = set(methods.values())
    attrs.update(method=used.pop() if len(used) == 1 else "mixed", method_by_symbol=methods,
                 method_reason="; ".join(f"{', '.join(part.tickers)}: {f.attrs.get('method')}"
                                         + (f" ({f.attrs['method_reason']})" if f.attrs.get("method_reason") else "")
                                         for part, f in frames),
                 empty_symbols=[t for part in parts for t in part.tickers if t in reasons], empty_reasons=reasons,
                 missing_days=sorted({d for _, f in frames for d in f.attrs.get("missing_days", [])}))
    df.attrs.update(attrs)
    return df


__all__ = ["AUTO_MAX_DAYS", "AUTO_MAX_SYMBOLS", "AUTO_MAX_SYMBOL_DAYS", "Cost", "FlatFileSource", "RestSource", "Source", "StoreSource", "auto_rule",
           "choose", "choose_method", "diagnose_empty", "fetch_query", "flat_files_unavailable", "read_apart", "rest_quota_short", "sources"]
