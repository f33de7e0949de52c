"""Stock splits: fetched from ``/stocks/v1/splits`` (``/v3/reference/splits`` where v1 is not answered), cached,
and applied to bars — one meaning of ``adjusted`` on every path.

``adjusted=True`` means what Massive's REST aggregates mean by it: prices (open, high, low, close,
VWAP, and bid/ask in recordings) of every bar **before** a split's execution date are multiplied by
``split_from / split_to`` and volumes divided by it, so the series is continuous across the split; a
day bar *on* the execution date is already post-split and stays as it is. Trade counts never change.
Flat files, datasets and recordings hold raw prices (as traded) and this module adjusts them when
they are read with ``adjusted=True``, so stored raw data never goes stale when a split is announced.

Dividends are not adjusted by Massive (not even with ``adjusted=true``): a dividend shows as a drop of about its
amount on the ex-date. ``adjusted="total"`` adds them (:mod:`massive_feeds.dividends`), with the same caching
(:func:`fetch_reference`, shared by both lists).

Near-duplicate rows — one real split, adjusted once:

The service's splits list sometimes holds the same split twice, a few days apart: the official client's own
test mock lists SHOP 1 → 10 on both 2022-06-22 and 2022-06-29, for Shopify's one 10-for-1 split. Applied
twice, every SHOP bar before 2022-06-22 would come out 100× lower instead of 10×. The rule
(:func:`merge_duplicate_splits`, applied by :func:`price_factors`, hence by every path that adjusts: flat
files, the store, datasets, recordings and replay, and by :func:`~massive_feeds.quality.quality_report`):

* rows of the **same ticker** with the **same ratio** (``split_from/split_to``) whose execution dates are at
  most :data:`MERGE_WINDOW_DAYS` (14) calendar days apart (chained: each within 14 days of the previous)
  are **one** split. No real company splits twice by the same ratio within two weeks.
* Its date: when raw bars of the ticker around the candidate dates are at hand, the candidate where the
  prices actually jump by the split ratio (first open on the day against the last close before it; the
  candidate whose move is closest to the ratio, and closer to it than to no move at all). Otherwise the
  **latest** candidate: the extra, earlier row is a provisional date that was superseded — Shopify's
  shares began trading split-adjusted on 2022-06-29 (its press release of 2022-06-07), which is also where
  the raw price falls ×0.1, and a split is never listed before its announcement's first estimate.
* The merged rows are logged, listed in ``df.attrs["merged_splits"]`` of flat-file and store results and
  shown by ``quality_report``.

Fetching and caching:

* Only stock tickers have splits (crypto, forex and indices never split; option contracts are
  adjusted by the OCC, not here).
* Adjusting bars (flat files, the store, datasets: ``since`` = the bars' first day) uses one
  **market-wide table**: every split of every ticker since that day, in one bulk listing
  (``execution_date.gte``, 1,000 rows per page, about two pages per year of history), cached and refreshed
  at most daily. Any later query starting on or after that day, for any ticker, is served from it — so
  a ticker never asked for before is covered even when the REST quota is gone. Without ``since`` (the
  whole history of a ticker) it is one ``/stocks/v1/splits?ticker=…`` call per ticker. Every call goes
  through :class:`~massive_feeds.rest.RestClient`, so it counts against the REST quota like any other.
* Answers are cached under ``<cache_dir>/splits/<host hash>/`` and reused for :data:`SPLITS_TTL`
  (24 hours), so the list is refreshed at most daily. When a refresh fails (quota used up, server
  down) an older cached list is used with a warning; without any list and without an API key the
  call fails with a :class:`~massive_feeds.errors.MissingCredentialsError` that says so — prices are
  never silently left unadjusted.
* When the REST calls left today cannot cover a refresh, no call is made at all: the cached lists are
  used whatever their age (the market-wide table serves every ticker), and the result says how old it
  is: ``attrs["as_of"]`` / ``attrs["age_hours"]``
  of the table, copied by flat files and the store into ``df.attrs["splits_as_of"]`` /
  ``df.attrs["splits_age_hours"]``. Without any cached list the query fails with a
  :class:`~massive_feeds.errors.QuotaExceededError` naming the reset time.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from datetime import date
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import pandas as pd

from .cache import stable_origin
from .config import Settings
from .errors import (BadResponseError, InvalidInputError, MassiveError, MissingCredentialsError, NotEntitledError,
                     NotFoundError, QuotaExceededError)
from .runtime import resolve_settings
from .schema import DateLike, Ticker, asset_class, parse_date_range, parse_tickers
from .sessions import DAY_NS, ny_day_numbers
from .storage import ensure_dir, read_parquet_frame, write_parquet

if TYPE_CHECKING:
    from .rest import RestClient

log = logging.getLogger(__name__)

SPLIT_COLUMNS: tuple[str, ...] = ("ticker", "execution_date", "split_from", "split_to", "id")
SPLITS_TTL = 24 * 3600.0
PAGE_LIMIT = 1000
#: Bar columns that hold prices (multiplied by the factor) and sizes (divided by it).
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "vwap", "bid", "ask", "mid", "spread")
SIZE_COLUMNS: tuple[str, ...] = ("volume", "bid_size", "ask_size")

NO_KEY_MESSAGE = (
    "Split-adjusting these bars needs Massive's list of splits (REST /stocks/v1/splits), and no API key "
    "is configured. Set MASSIVE_API_KEY (or pass api_key=...), or ask for prices as traded with adjusted=False."
)


# --- the splits table ------------------------------------------------------------------------------
def empty_splits() -> pd.DataFrame:
    """A zero-row splits table with the standard columns."""
    return splits_frame([])


def splits_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """``/stocks/v1/splits`` or ``/v3/reference/splits`` result rows as a table: ``ticker`` (str), ``execution_date``
    (datetime64, midnight), ``split_from``/``split_to`` (float64), ``id`` (str); sorted by ticker,
    then date; rows without a positive ratio are dropped with a warning."""
    df = pd.DataFrame(list(rows), columns=list(SPLIT_COLUMNS))
    df["ticker"] = df["ticker"].astype("str")
    df["execution_date"] = pd.to_datetime(df["execution_date"], errors="coerce").astype("datetime64[ns]")
    for col in ("split_from", "split_to"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["id"] = df["id"].astype(object).where(df["id"].notna(), "").astype("str")
    bad = df["execution_date"].isna() | ~(df["split_from"] > 0) | ~(df["split_to"] > 0)
    if bad.any():
        log.warning("ignoring %d split row(s) without a date or a positive ratio", int(bad.sum()))
        df = df[~bad]
    df = df.drop_duplicates(["ticker", "execution_date", "split_from", "split_to"])
    return df.sort_values(["ticker", "execution_date"], kind="stable").reset_index(drop=True)


MERGE_WINDOW_DAYS = 14


def merge_duplicate_splits(splits: pd.DataFrame | None, prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per real split: near-duplicate rows (same ticker, same ratio, execution dates at most
    :data:`MERGE_WINDOW_DAYS` apart) merged into one, dated as the module docstring says.

    Args:
        splits: a splits table (:data:`SPLIT_COLUMNS`), as the service sent it.
        prices: optional raw (as traded) bars to date a merged split by its price jump: columns ``symbol``,
            ``t`` (int64 ns, UTC) and ``open``/``close``. Adjusted bars show no jump; pass ``None`` for them.

    Returns:
        The table without the extra rows (same columns, sorted by ticker and date). ``attrs["merged"]``
        lists each merge as a dict: ``ticker``, ``ratio`` (``"10-for-1"``), ``kept`` and ``dropped``
        (ISO dates) and ``reason`` (``"price jump"`` or ``"latest listed date"``). Idempotent.
    """
    if splits is None:
        return empty_splits()
    if splits.empty:
        out = splits.copy()
        out.attrs["merged"] = []
        return out
    df = splits.sort_values(["ticker", "execution_date"], kind="stable").reset_index(drop=True)
    ratio = (df["split_from"] / df["split_to"]).round(12)
    days = df["execution_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
    # group rows by (ticker, ratio), in date order; a new event starts where the gap passes the window
    order = np.lexsort((days, ratio.to_numpy(), pd.factorize(df["ticker"])[0]))
    t_sorted, r_sorted, d_sorted = df["ticker"].to_numpy()[order], ratio.to_numpy()[order], days[order]
    new_event = np.r_[True, (t_sorted[1:] != t_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1])
                      | (d_sorted[1:] - d_sorted[:-1] > MERGE_WINDOW_DAYS)]
    event = np.empty(len(df), dtype=np.int64)
    event[order] = np.cumsum(new_event) - 1
    sizes = np.bincount(event)
    drop = np.zeros(len(df), dtype=bool)
    merged: list[dict] = []
    for ev in np.flatnonzero(sizes > 1):  # rare: a handful in the whole market's history
        rows = np.flatnonzero(event == ev)
        rows = rows[np.argsort(days[rows], kind="stable")]
        keep, reason = rows[-1], "latest listed date"
        if prices is not None:
            jumped = _jump_day(prices, str(df.at[rows[0], "ticker"]), days[rows], float(ratio.iloc[rows[0]]))
            if jumped is not None:
                keep, reason = rows[jumped], "price jump"
        drop[rows[rows != keep]] = True
        merged.append({
            "ticker": str(df.at[keep, "ticker"]),
            "ratio": describe_split(float(df.at[keep, "split_from"]), float(df.at[keep, "split_to"])),
            "kept": pd.Timestamp(df.at[keep, "execution_date"]).date().isoformat(),
            "dropped": [pd.Timestamp(df.at[r, "execution_date"]).date().isoformat() for r in rows if r != keep],
            "reason": reason,
        })
    out = df[~drop].reset_index(drop=True)
    out.attrs["merged"] = merged
    for m in merged:
        log.info("splits: %s %s listed on %s and %s is one split; applied once on %s (%s)", m["ticker"],
                 m["ratio"], m["kept"], ", ".join(m["dropped"]), m["kept"], m["reason"])
    return out


def bar_prices(bars: pd.DataFrame) -> pd.DataFrame | None:
    """``symbol``/``t``/``open``/``close`` of standard bars, the ``prices`` argument of
    :func:`merge_duplicate_splits` (None when the bars lack those columns)."""
    if bars.empty or not {"symbol", "timestamp", "open", "close"} <= set(bars.columns):
        return None
    return pd.DataFrame({"symbol": bars["symbol"].to_numpy(),
                         "t": bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64"),
                         "open": bars["open"].to_numpy(np.float64), "close": bars["close"].to_numpy(np.float64)})


def _jump_day(prices: pd.DataFrame, ticker: str, candidates: np.ndarray, factor: float) -> int | None:
    """Index into ``candidates`` (New York day numbers) of the day the raw prices of ``ticker`` jump by
    ``factor`` (open on the day / last close before it), or None when the bars do not show it."""
    mine = prices[prices["symbol"].astype("str").to_numpy() == ticker]
    if mine.empty:
        return None
    t = mine["t"].to_numpy(np.int64)
    order = np.argsort(t, kind="stable")
    bar_day = ny_day_numbers(t[order])
    opens = mine["open"].to_numpy(np.float64)[order]
    closes = mine["close"].to_numpy(np.float64)[order]
    first_on = np.searchsorted(bar_day, candidates, side="left")  # first bar on/after each candidate
    best, best_score = None, math.inf
    for i, j in enumerate(first_on):
        if j == 0 or j >= len(bar_day):
            continue  # the bars do not straddle this date
        move = opens[j] / closes[j - 1] if closes[j - 1] > 0 else np.nan
        if not (np.isfinite(move) and move > 0):
            continue
        score = abs(math.log(move) - math.log(factor))
        if score < abs(math.log(move)) and score < best_score:  # closer to the ratio than to no move
            best, best_score = i, score
    return best


def describe_split(split_from: float, split_to: float) -> str:
    """``"4-for-1"`` for split_from=1, split_to=4; ``"1-for-10 reverse"`` for 10 → 1."""
    def num(x: float) -> str:
        return f"{x:g}"
    text = f"{num(split_to)}-for-{num(split_from)}"
    return text + (" reverse" if split_from > split_to else "")


# --- applying --------------------------------------------------------------------------------------
def price_factors(symbols: np.ndarray | pd.Series, ts_ns: np.ndarray, splits: pd.DataFrame, *,
                  opens: np.ndarray | None = None, closes: np.ndarray | None = None) -> np.ndarray:
    """Per bar: the product of ``split_from / split_to`` over the symbol's splits executed after the
    bar's New York session date (1.0 when none). Adjusted price = raw price × factor.

    Near-duplicate split rows count once (:func:`merge_duplicate_splits`); ``opens``/``closes`` (the
    bars' raw prices) let it date a merged split by its price jump."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    factors = np.ones(len(ts_ns))
    if len(ts_ns) == 0 or splits is None or splits.empty:
        return factors
    prices = None
    if opens is not None and closes is not None:
        prices = pd.DataFrame({"symbol": np.asarray(symbols), "t": ts_ns, "open": opens, "close": closes})
    splits = merge_duplicate_splits(splits, prices)
    codes, names = pd.factorize(np.asarray(symbols))
    wanted = splits[splits["ticker"].isin(set(map(str, names)))]
    if wanted.empty:
        return factors
    lookup = {str(n): i for i, n in enumerate(names)}
    for ticker, group in wanted.groupby("ticker", sort=False):
        rows = np.flatnonzero(codes == lookup[str(ticker)])
        group = group.sort_values("execution_date")
        exec_days = group["execution_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
        ratio = (group["split_from"] / group["split_to"]).to_numpy(dtype=np.float64)
        suffix = np.r_[np.cumprod(ratio[::-1])[::-1], 1.0]  # suffix[i] = product of ratio[i:]
        later = np.searchsorted(exec_days, ny_day_numbers(ts_ns[rows]), side="right")  # first split after the bar
        factors[rows] = suffix[later]
    return factors


def apply_splits(bars: pd.DataFrame, splits: pd.DataFrame, *, inverse: bool = False) -> pd.DataFrame:
    """Split-adjust bars (standard schema, or with extra quote columns): for each bar before a
    split's execution date, prices × ``split_from/split_to`` and volumes ÷ it; bars on or after the
    execution date are untouched. Vectorised; returns a new frame (``bars`` is not modified).

    ``inverse=True`` undoes an adjustment made with the same splits (adjusted → raw).

    Near-duplicate rows of one split are applied once (:func:`merge_duplicate_splits`; the bars' own
    price jump dates it when they straddle it).

    Apply it to base bars (minute or day) before resampling: a week or month bar that straddles a
    split cannot be adjusted after the fact, because only part of it traded before the split.
    """
    out = bars.copy()
    if out.empty or splits is None or splits.empty:
        return out
    ts_ns = out["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    raw = not inverse and "open" in out.columns and "close" in out.columns  # raw bars show a split's jump
    factor = price_factors(out["symbol"].to_numpy(), ts_ns, splits,
                           opens=out["open"].to_numpy(np.float64) if raw else None,
                           closes=out["close"].to_numpy(np.float64) if raw else None)
    if inverse:
        factor = 1.0 / factor
    touched = factor != 1.0
    if not touched.any():
        return out
    for col in PRICE_COLUMNS:
        if col in out.columns:
            out[col] = out[col].to_numpy(dtype=np.float64) * factor
    for col in SIZE_COLUMNS:
        if col in out.columns:
            out[col] = out[col].to_numpy(dtype=np.float64) / factor
    log.debug("split-adjusted %d of %d bars", int(touched.sum()), len(out))
    return out


# --- fetching --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceKind:
    """One corporate-action list and where it comes from: the current ``/stocks/v1/…`` endpoint, with the
    deprecated ``/v3/reference/…`` one as the fallback where v1 is not answered (see :func:`fetch_reference`)."""

    name: str  #: "splits" or "dividends": also the cache folder
    v1_path: str
    v3_path: str
    date_field: str  #: the row date the market-wide listing filters on (``execution_date``, ``ex_dividend_date``)
    frame: Callable[[Iterable[dict]], pd.DataFrame]  #: rows → the table (empty rows → an empty table)
    purpose: str  #: what needs the list, for messages: "split-adjusting"
    no_key_message: str


V1_PAGE_LIMIT = 5000  # /stocks/v1/* allow up to 5,000 rows a page; /v3/reference/* 1,000
#: Answers after which the v1 endpoint counts as "not answered" and the v3 one is asked instead: 404 (a server
#: without it), 403 (a plan without it) or a body that is not the v1 form. A 5xx is an outage, not a missing
#: endpoint: the v3 one would be down too, and the cached list is the better answer.
V1_NOT_ANSWERED: tuple[type[MassiveError], ...] = (NotFoundError, NotEntitledError, BadResponseError)

SPLITS_KIND = ReferenceKind(
    "splits", "/stocks/v1/splits", "/v3/reference/splits", "execution_date", lambda rows: splits_frame(rows),
    "split-adjusting", NO_KEY_MESSAGE)


def splits_cache_dir(settings: Settings, kind: str = "splits") -> Path:
    """Where ``kind`` lists (splits, dividends) are cached for this settings' REST host."""
    host = hashlib.sha256(stable_origin(settings.rest_url).encode()).hexdigest()[:12]  # no sandbox port
    return settings.cache_dir / kind / host


class _SplitsCache:
    """Per-ticker lists (``ticker-<T>.parquet``) and market-wide lists (``market-since-<date>.parquet``) of one
    kind; a file's age is its modification time."""

    def __init__(self, folder: Path, kind: ReferenceKind = SPLITS_KIND) -> None:
        self.folder = ensure_dir(folder, f"{kind.name} cache")
        self.kind = kind

    def _ticker_path(self, ticker: str) -> Path:
        return self.folder / f"ticker-{ticker}.parquet"

    def _read(self, path: Path) -> pd.DataFrame | None:
        """The cached list, with ``attrs["fetched_at"]`` = when it was downloaded (epoch seconds)."""
        try:
            fetched_at = path.stat().st_mtime
            df = self.kind.frame(read_parquet_frame(path, path.name).to_dict("records"))
            df.attrs["fetched_at"] = fetched_at
            return df
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged entry (bit rot fails its checksums) is a miss, fetched again
            log.warning("discarding damaged %s cache %s (it is fetched again): %s", self.kind.name, path.name, exc)
            path.unlink(missing_ok=True)
            return None

    @staticmethod
    def _fresh(path: Path, max_age: float | None) -> bool:
        try:
            return max_age is None or time.time() - path.stat().st_mtime <= max_age
        except FileNotFoundError:
            return False

    def ticker(self, ticker: str, max_age: float | None) -> pd.DataFrame | None:
        path = self._ticker_path(ticker)
        return self._read(path) if self._fresh(path, max_age) else None

    def market(self, since: date, max_age: float | None) -> pd.DataFrame | None:
        """The freshest market-wide list that starts on or before ``since``."""
        candidates = []
        for path in self.folder.glob("market-since-*.parquet"):
            try:
                start = date.fromisoformat(path.stem.removeprefix("market-since-"))
            except ValueError:
                continue
            if start <= since and self._fresh(path, max_age):
                candidates.append((path.stat().st_mtime, path))
        for _, path in sorted(candidates, reverse=True):
            df = self._read(path)
            if df is not None:
                return df
        return None

    def put_ticker(self, ticker: str, df: pd.DataFrame) -> None:
        self._write(self._ticker_path(ticker), df)

    def put_market(self, since: date, df: pd.DataFrame) -> None:
        self._write(self.folder / f"market-since-{since.isoformat()}.parquet", df)

    def _write(self, path: Path, df: pd.DataFrame) -> None:
        try:
            write_parquet(df.reset_index(drop=True), path)
        except OSError as exc:  # a full disk must not fail the fetch that already succeeded
            log.warning("could not cache %s: %s", self.kind.name, exc)


def stock_tickers(symbols: "str | Iterable[str | Ticker]") -> list[str]:
    """The symbols that can have splits (stocks), normalised; parsed :class:`Ticker` s are taken as they are."""
    return [t.symbol for t in parse_tickers(symbols) if t.asset == "stocks"]


def fetch_splits(
    symbols: "str | Iterable[str | Ticker]",
    since: DateLike | None = None,
    *,
    settings: Settings | None = None,
    client: "RestClient | None" = None,
    refresh: bool = False,
) -> pd.DataFrame:
    """The splits of ``symbols`` (only stocks have any) as a table with :data:`SPLIT_COLUMNS`, from
    ``/stocks/v1/splits`` (``/v3/reference/splits`` where v1 is not answered).

    Args:
        symbols: tickers in any accepted form; non-stock tickers are ignored.
        since: only splits on or after this date are needed (the first day of the bars to adjust);
            ``None`` = the whole history. With a day, the market-wide table since then (one bulk listing
            for all tickers).
        settings: defaults to the configured ones, resolved by :func:`~massive_feeds.runtime.resolve_settings`.
        client: an existing :class:`~massive_feeds.rest.RestClient` to use for the calls.
        refresh: ignore cached lists younger than :data:`SPLITS_TTL`.

    Raises:
        MissingCredentialsError: a list is needed and there is neither a cached one nor an API key.
        MassiveError: the REST calls failed and no older cached list exists.
    """
    return fetch_reference(SPLITS_KIND, symbols, since, settings=settings, client=client, refresh=refresh)


def fetch_reference(kind: ReferenceKind, symbols: "str | Iterable[str | Ticker]", since: DateLike | None = None, *,
                    settings: Settings | None = None, client: "RestClient | None" = None,
                    refresh: bool = False) -> pd.DataFrame:
    """A corporate-action list (``kind``: splits or dividends) of the stock ``symbols``, cached and refreshed
    at most daily, exactly as :func:`fetch_splits` describes it. ``attrs``: ``as_of``/``age_hours`` of the oldest
    list used and ``fetched_at`` (epoch seconds)."""
    tickers = stock_tickers(symbols)
    if not tickers:
        return kind.frame([])
    # resolved up front (keyless default: the sandbox), so its lists are cached apart from a real account's
    settings = resolve_settings(settings or (client.settings if client is not None else None))
    since_day = parse_date_range(since, since).first_day if since is not None else None
    cache = _SplitsCache(splits_cache_dir(settings, kind.name), kind)
    max_age = -1.0 if refresh else SPLITS_TTL  # -1: nothing counts as fresh

    found: dict[str, pd.DataFrame] = {}
    for ticker in tickers:
        hit = cache.ticker(ticker, max_age)
        if hit is not None:
            found[ticker] = hit
    missing = [t for t in tickers if t not in found]
    if missing and since_day is not None and (market := cache.market(since_day, max_age)) is not None:
        for ticker in missing:
            found[ticker] = _with_time(market[market["ticker"] == ticker], market.attrs.get("fetched_at"))
        missing = []
    if missing:
        try:
            _refuse_if_quota_short(settings, _calls_for(missing, since_day), kind)  # never spend what is not there
            found.update(_download(kind, missing, since_day, settings, client, cache))
        except MassiveError as exc:
            stale = {t: cache.ticker(t, None) for t in missing}
            if since_day is not None and any(v is None for v in stale.values()):
                market = cache.market(since_day, None)
                if market is not None:
                    stale = {t: _with_time(market[market["ticker"] == t], market.attrs.get("fetched_at"))
                             for t in missing}
            if any(v is None for v in stale.values()):
                if isinstance(exc, MissingCredentialsError):
                    raise MissingCredentialsError(kind.no_key_message) from None
                if isinstance(exc, QuotaExceededError):
                    uncached = ", ".join(t for t, v in stale.items() if v is None)
                    raise QuotaExceededError(
                        f"{exc.message}, and no cached {kind.name} list covers {uncached}: {kind.purpose} needs it. "
                        "Ask for prices as traded (adjusted=False) or retry after the reset",
                        resource=exc.resource, resets_at=exc.resets_at) from None
                raise
            log.warning("could not refresh the %s list (%s); using the cached one, which may miss %s announced "
                        "since it was fetched (df.attrs['%s_as_of'] says when)", kind.name, exc, kind.name, kind.name)
            found.update({t: v for t, v in stale.items() if v is not None})
    frames = [found[t] for t in tickers if t in found and not found[t].empty]
    times = [found[t].attrs.get("fetched_at") for t in tickers if t in found]
    out = kind.frame(pd.concat(frames, ignore_index=True).to_dict("records")) if frames else kind.frame([])
    oldest = min((t for t in times if t is not None), default=time.time())
    out.attrs["fetched_at"] = oldest  # the oldest list used: actions announced since then may be missing
    out.attrs["as_of"] = pd.Timestamp(oldest, unit="s", tz="UTC").isoformat(timespec="seconds")
    out.attrs["age_hours"] = round(max(time.time() - oldest, 0.0) / 3600, 2)
    return out


def _with_time(df: pd.DataFrame, fetched_at: float | None) -> pd.DataFrame:
    df = df.copy()
    df.attrs["fetched_at"] = fetched_at
    return df


def _calls_for(tickers: list[str], since: date | None) -> int:
    """REST calls a download of these tickers' lists takes at least (one per ticker, or one market-wide page)."""
    return len(tickers) if since is None else 1


def _refuse_if_quota_short(settings: Settings, calls: int, kind: ReferenceKind = SPLITS_KIND) -> None:
    """Raise QuotaExceededError (before any call) when the REST calls left today are fewer than ``calls``."""
    if not settings.api_key:
        return  # RestClient says MissingCredentialsError itself
    from .quota import get_quota

    status = get_quota(settings).status()
    left = status.rest_remaining_today
    if left is not None and left < calls:
        raise QuotaExceededError(
            f"the {kind.name} list needs {calls} REST call(s) and {left} are left today; resets at "
            f"{status.rest_resets_at:%Y-%m-%d %H:%M} UTC", resource="rest_daily", resets_at=status.rest_resets_at)


def list_rows(client: "RestClient", kind: ReferenceKind, filters: dict[str, str]) -> list[dict]:
    """Every row of ``kind`` matching ``filters`` (``ticker``, ``<date>.gte``), oldest first: from the v1
    endpoint, or from the v3 one when v1 is not answered (404, 403, a body it cannot read). Each row
    gets ``source`` = ``"v1"`` or ``"v3"``. Which answers count as "not answered": :data:`V1_NOT_ANSWERED`."""
    try:
        rows = list(client.list_json(kind.v1_path, {
            **filters, "limit": V1_PAGE_LIMIT, "sort": f"{kind.date_field}.asc"}))
        source = "v1"
    except V1_NOT_ANSWERED as exc:
        log.warning("%s: %s was not answered (%s); using the deprecated %s", kind.name, kind.v1_path, exc,
                    kind.v3_path)
        rows = list(client.list_json(kind.v3_path, {
            **filters, "limit": PAGE_LIMIT, "sort": kind.date_field, "order": "asc"}))
        source = "v3"
    return [{**row, "source": source} for row in rows]


def _download(kind: ReferenceKind, tickers: list[str], since: date | None, settings: Settings,
              client: "RestClient | None", cache: _SplitsCache) -> dict[str, pd.DataFrame]:
    from .rest import RestClient

    own = client is None
    client = client or RestClient(settings)  # raises MissingCredentialsError without a key
    try:
        if since is None:
            out = {}
            for ticker in tickers:
                out[ticker] = kind.frame(list_rows(client, kind, {"ticker": ticker}))
                cache.put_ticker(ticker, out[ticker])
                out[ticker].attrs["fetched_at"] = time.time()
            log.info("fetched the %s of %s", kind.name, ", ".join(tickers))
            return out
        market = kind.frame(list_rows(client, kind, {f"{kind.date_field}.gte": since.isoformat()}))
        cache.put_market(since, market)
        log.info("fetched %d market-wide %s since %s", len(market), kind.name, since)
        return {t: _with_time(market[market["ticker"] == t], time.time()) for t in tickers}
    finally:
        if own:
            client.close()


def splits_for(bars: pd.DataFrame, *, settings: Settings | None = None, client: "RestClient | None" = None,
               refresh: bool = False) -> pd.DataFrame:
    """The splits needed to adjust ``bars``: those of its stock symbols since its first day."""
    if bars.empty:
        return empty_splits()
    symbols = [s for s in pd.unique(bars["symbol"].astype("str")) if s]
    stocks = [s for s in symbols if asset_class(s) == "stocks"]
    if not stocks:
        return empty_splits()
    first = bars["timestamp"].min()
    if pd.isna(first):
        raise InvalidInputError("bars without timestamps cannot be split-adjusted")
    return fetch_splits(stocks, pd.Timestamp(first).tz_convert("America/New_York").date(),
                        settings=settings, client=client, refresh=refresh)
