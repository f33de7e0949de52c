"""Stock splits: fetched from ``/v3/reference/splits``, cached, and applied to bars — one meaning of
``adjusted`` on every path.

``adjusted=True`` means what Massive's REST aggregates mean by it: prices (open, high, low, close,
VWAP, and bid/ask in recordings) of every bar **before** a split's execution date are multiplied by
``split_from / split_to`` and volumes divided by it, so the series is continuous across the split; a
day bar *on* the execution date is already post-split and stays as it is. Trade counts never change.
Flat files, datasets and recordings hold raw prices (as traded) and this module adjusts them when
they are read with ``adjusted=True``, so stored raw data never goes stale when a split is announced.

Dividends are **not** adjusted, neither by Massive nor here: a dividend shows as a drop of about its
amount on the ex-date.

Fetching and caching:

* Only stock tickers have splits (crypto, forex and indices never split; option contracts are
  adjusted by the OCC, not here).
* For up to :data:`PER_TICKER_LIMIT` tickers, one ``/v3/reference/splits?ticker=…`` call per ticker
  (its whole history); for more, one market-wide listing of every split since the query's first day
  (``execution_date.gte``, 1,000 rows per page) — about two pages per year of history instead of a call
  per ticker. Every call goes through :class:`~massive_feeds.rest.RestClient`, so it counts against the
  REST quota like any other.
* Answers are cached under ``<cache_dir>/splits/<host hash>/`` and reused for :data:`SPLITS_TTL`
  (24 hours), so the list is refreshed at most daily. When a refresh fails (quota used up, server
  down) an older cached list is used with a warning; without any list and without an API key the
  call fails with a :class:`~massive_feeds.errors.MissingCredentialsError` that says so — prices are
  never silently left unadjusted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import pandas as pd

from .config import Settings
from .errors import InvalidInputError, MassiveError, MissingCredentialsError
from .runtime import resolve_settings
from .schema import DateLike, asset_class, normalize_symbols, parse_date_range
from .sessions import DAY_NS, ny_day_numbers
from .storage import write_parquet

if TYPE_CHECKING:
    from .rest import RestClient

log = logging.getLogger(__name__)

SPLIT_COLUMNS: tuple[str, ...] = ("ticker", "execution_date", "split_from", "split_to", "id")
SPLITS_TTL = 24 * 3600.0
PER_TICKER_LIMIT = 4
PAGE_LIMIT = 1000
#: Bar columns that hold prices (multiplied by the factor) and sizes (divided by it).
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "vwap", "bid", "ask", "mid", "spread")
SIZE_COLUMNS: tuple[str, ...] = ("volume", "bid_size", "ask_size")

NO_KEY_MESSAGE = (
    "Split-adjusting these bars needs Massive's list of splits (REST /v3/reference/splits), and no API key "
    "is configured. Set MASSIVE_API_KEY (or pass api_key=...), or ask for prices as traded with adjusted=False."
)


# --- the splits table ------------------------------------------------------------------------------
def empty_splits() -> pd.DataFrame:
    """A zero-row splits table with the standard columns."""
    return splits_frame([])


def splits_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """``/v3/reference/splits`` result rows as a table: ``ticker`` (str), ``execution_date``
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


def describe_split(split_from: float, split_to: float) -> str:
    """``"4-for-1"`` for split_from=1, split_to=4; ``"1-for-10 reverse"`` for 10 → 1."""
    def num(x: float) -> str:
        return f"{x:g}"
    text = f"{num(split_to)}-for-{num(split_from)}"
    return text + (" reverse" if split_from > split_to else "")


# --- applying --------------------------------------------------------------------------------------
def price_factors(symbols: np.ndarray | pd.Series, ts_ns: np.ndarray, splits: pd.DataFrame) -> np.ndarray:
    """Per bar: the product of ``split_from / split_to`` over the symbol's splits executed after the
    bar's New York session date (1.0 when none). Adjusted price = raw price × factor."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    factors = np.ones(len(ts_ns))
    if len(ts_ns) == 0 or splits is None or splits.empty:
        return factors
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

    Apply it to base bars (minute or day) before resampling: a week or month bar that straddles a
    split cannot be adjusted after the fact, because only part of it traded before the split.
    """
    out = bars.copy()
    if out.empty or splits is None or splits.empty:
        return out
    ts_ns = out["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    factor = price_factors(out["symbol"].to_numpy(), ts_ns, splits)
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
def splits_cache_dir(settings: Settings) -> Path:
    """Where splits lists are cached for this settings' REST host."""
    host = hashlib.sha256(settings.rest_url.rstrip("/").encode()).hexdigest()[:12]
    return settings.cache_dir / "splits" / host


class _SplitsCache:
    """Per-ticker lists (``ticker-<T>.parquet``) and market-wide lists (``market-since-<date>.parquet``);
    a file's age is its modification time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _ticker_path(self, ticker: str) -> Path:
        return self.folder / f"ticker-{ticker}.parquet"

    @staticmethod
    def _read(path: Path) -> pd.DataFrame | None:
        try:
            return splits_frame(pd.read_parquet(path).to_dict("records"))
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged entry is a miss
            log.warning("discarding unreadable splits cache %s: %s", path.name, exc)
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

    @staticmethod
    def _write(path: Path, df: pd.DataFrame) -> None:
        try:
            write_parquet(df.reset_index(drop=True), path)
        except OSError as exc:  # a full disk must not fail the fetch that already succeeded
            log.warning("could not cache splits: %s", exc)


def stock_tickers(symbols: str | Iterable[str]) -> list[str]:
    """The symbols that can have splits (stocks), normalised."""
    return [t for t in normalize_symbols(symbols) if asset_class(t) == "stocks"]


def fetch_splits(
    symbols: str | Iterable[str],
    since: DateLike | None = None,
    *,
    settings: Settings | None = None,
    client: "RestClient | None" = None,
    refresh: bool = False,
) -> pd.DataFrame:
    """The splits of ``symbols`` (only stocks have any) as a table with :data:`SPLIT_COLUMNS`.

    Args:
        symbols: tickers in any accepted form; non-stock tickers are ignored.
        since: only splits on or after this date are needed (the first day of the bars to adjust);
            ``None`` = the whole history. Used to choose a market-wide listing for many tickers.
        settings: defaults to the configured ones, resolved by :func:`~massive_feeds.runtime.resolve_settings`.
        client: an existing :class:`~massive_feeds.rest.RestClient` to use for the calls.
        refresh: ignore cached lists younger than :data:`SPLITS_TTL`.

    Raises:
        MissingCredentialsError: a list is needed and there is neither a cached one nor an API key.
        MassiveError: the REST calls failed and no older cached list exists.
    """
    tickers = stock_tickers(symbols)
    if not tickers:
        return empty_splits()
    # resolved up front (keyless default: the sandbox), so its splits are cached apart from a real account's
    settings = resolve_settings(settings or (client.settings if client is not None else None))
    since_day = parse_date_range(since, since).first_day if since is not None else None
    cache = _SplitsCache(splits_cache_dir(settings))
    max_age = -1.0 if refresh else SPLITS_TTL  # -1: nothing counts as fresh

    found: dict[str, pd.DataFrame] = {}
    for ticker in tickers:
        hit = cache.ticker(ticker, max_age)
        if hit is not None:
            found[ticker] = hit
    missing = [t for t in tickers if t not in found]
    if missing and since_day is not None and (market := cache.market(since_day, max_age)) is not None:
        for ticker in missing:
            found[ticker] = market[market["ticker"] == ticker]
        missing = []
    if missing:
        try:
            found.update(_download(missing, since_day, settings, client, cache))
        except MassiveError as exc:
            stale = {t: cache.ticker(t, None) for t in missing}
            if since_day is not None and any(v is None for v in stale.values()):
                market = cache.market(since_day, None)
                if market is not None:
                    stale = {t: market[market["ticker"] == t] for t in missing}
            if any(v is None for v in stale.values()):
                if isinstance(exc, MissingCredentialsError):
                    raise MissingCredentialsError(NO_KEY_MESSAGE) from None
                raise
            log.warning("could not refresh the splits list (%s); using the cached one, which may miss "
                        "splits announced since it was fetched", exc)
            found.update({t: v for t, v in stale.items() if v is not None})
    frames = [found[t] for t in tickers if t in found and not found[t].empty]
    if not frames:
        return empty_splits()
    return splits_frame(pd.concat(frames, ignore_index=True).to_dict("records"))


def _download(tickers: list[str], since: date | None, settings: Settings, client: "RestClient | None",
              cache: _SplitsCache) -> dict[str, pd.DataFrame]:
    from .rest import RestClient

    own = client is None
    client = client or RestClient(settings)  # raises MissingCredentialsError without a key
    try:
        if since is None or len(tickers) <= PER_TICKER_LIMIT:
            out = {}
            for ticker in tickers:
                rows = client.list_json("/v3/reference/splits", {
                    "ticker": ticker, "limit": PAGE_LIMIT, "sort": "execution_date", "order": "asc"})
                out[ticker] = splits_frame(rows)
                cache.put_ticker(ticker, out[ticker])
            log.info("fetched the splits of %s", ", ".join(tickers))
            return out
        rows = client.list_json("/v3/reference/splits", {
            "execution_date.gte": since.isoformat(), "limit": PAGE_LIMIT, "sort": "execution_date", "order": "asc"})
        market = splits_frame(rows)
        cache.put_market(since, market)
        log.info("fetched %d market-wide split(s) since %s", len(market), since)
        return {t: market[market["ticker"] == t] for t in tickers}
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
