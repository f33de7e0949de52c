"""Cash dividends: fetched from ``/stocks/v1/dividends``, cached, and applied to bars for total-return prices
(``adjusted="total"``) — one meaning on every path.

The three adjustments (:func:`~massive_feeds.schema.parse_adjustment`):

* ``"raw"`` (``False``): prices as traded.
* ``"splits"`` (``True``, the default): split-adjusted, what Massive's REST ``adjusted=true`` means
  (:mod:`massive_feeds.splits`). A dividend shows as a drop of about its amount on the ex-date.
* ``"total"``: split-adjusted, and every bar **before** a dividend's ex-date scaled by ``1 - dividend /
  previous close`` (the close of the last session before the ex-date), chained over every later ex-date up to
  today: the CRSP-style total-return series, and exactly the service's ``historical_adjustment_factor`` (for a
  price on day D, the factor of the first dividend whose ex-date is after D). A holder's reinvested dividends
  are in the price, so a backtest's return is the total return. Volumes and trade counts are untouched.

Where the factor comes from: each v1 row carries the service's cumulative ``historical_adjustment_factor``;
a dividend's own factor is its cumulative factor over the next one's (they telescope back to the service's
number). Where a ticker's rows lack it (the deprecated ``/v3/reference/dividends``, used where v1 is not
answered, has none), the factor is ``1 - cash / previous close`` with the previous close read from the ticker's
raw REST day bars (one ``/v2/aggs`` call per ticker, :func:`previous_closes`), so it is the same for every
interval, path and window — also for a window that ends long before the ex-date. Those closes are cached
(:func:`cached_previous_closes`: a past day's raw close never changes), so a second run makes no call, also with
the REST quota gone.

Which dividends: every cash distribution the service lists — ``distribution_type`` ``recurring``,
``special``, ``supplemental``, ``irregular``, ``unknown`` (v3 ``dividend_type`` ``CD``, ``SC``, and the funds'
capital-gain distributions ``LT``/``ST``) — because each is cash paid to holders on the ex-date, and the service's
factor covers them all. Two distributions on one ex-date (a regular and a special one) both apply; a row listed
twice (same ticker, ex-date, amount and type) applies once. Ex-dates after today (declared, not yet gone ex) do
not apply. A dividend in another currency than the prices (US stocks trade in USD) is refused with a
:class:`~massive_feeds.errors.CorporateActionError` rather than applied, as is one at least as large as the
previous close. Stock dividends (shares, not cash) are splits (``adjustment_type="stock_dividend"``).

Stored data (flat files, the store, recordings, raw datasets) stays raw: the adjustment is applied on read, so a
new dividend never makes anything stale. REST bars are split-adjusted by the server and the dividends applied
here; REST week and month bars with ``"total"`` are built from day bars (a week that straddles an ex-date cannot be
adjusted after the fact), as flat files do.

The list is cached and refreshed like the splits list (:func:`~massive_feeds.splits.fetch_reference`: a
market-wide table since the bars' first day, at most daily, an older cached table used with its age stated when
the REST quota is gone). ``df.attrs``: ``adjustment`` (``"raw"``/``"splits"``/``"total"``), ``adjusted_as_of``,
``dividends`` (each applied dividend: ``ticker``, ``ex_date``, ``cash_amount``, ``factor``, ``factor_source``,
``distribution_type``, ``prev_close``/``ex_open`` (raw) and ``dropped``), ``dividends_as_of`` /
``dividends_age_hours``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from .config import Settings
from .errors import CorporateActionError
from .schema import NEW_YORK, DateLike, Ticker, asset_class, parse_tickers
from .sessions import DAY_NS, ny_day_numbers
from .splits import PRICE_COLUMNS, ReferenceKind, fetch_reference, fetch_splits, price_factors, splits_cache_dir
from .storage import ensure_dir, read_parquet_frame, write_parquet

if TYPE_CHECKING:
    from .rest import RestClient

log = logging.getLogger(__name__)

DIVIDEND_COLUMNS: tuple[str, ...] = (
    "ticker", "ex_dividend_date", "cash_amount", "currency", "distribution_type", "dividend_type", "frequency",
    "historical_adjustment_factor", "id", "source")
#: The currency of US stock prices: a dividend in another one is refused, not applied.
PRICE_CURRENCY = "USD"
#: v3 ``dividend_type`` → the v1 ``distribution_type`` it corresponds to (for display; all of them apply).
V3_TYPES = {"CD": "recurring", "SC": "special", "LT": "capital gain (long-term)", "ST": "capital gain (short-term)"}
#: Dividends at least this share of the previous close are expected to show as a raw price drop; smaller ones
#: are hidden by an ordinary overnight move, so a missing drop is flagged only from here on.
MATERIAL_YIELD = 0.01

NO_KEY_MESSAGE = (
    "Total-return prices (adjusted='total') need Massive's list of dividends (REST /stocks/v1/dividends), and no "
    "API key is configured. Set MASSIVE_API_KEY (or pass api_key=...), or ask for split-adjusted prices "
    "(adjusted=True) or prices as traded (adjusted=False).")


# --- the dividends table ---------------------------------------------------------------------------
def dividends_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """``/stocks/v1/dividends`` or ``/v3/reference/dividends`` rows as a table with :data:`DIVIDEND_COLUMNS`:
    ``ex_dividend_date`` datetime64 (midnight), ``cash_amount``/``frequency``/``historical_adjustment_factor``
    float64 (NaN when absent), the rest str (``currency`` ``""`` when the row has none); a v3 row's
    ``distribution_type`` is named from its ``dividend_type``. Rows without an ex-date or a positive amount are
    dropped with a warning, exact repeats once; sorted by ticker, then ex-date."""
    df = pd.DataFrame(list(rows), columns=list(DIVIDEND_COLUMNS))
    for col in ("ticker", "currency", "distribution_type", "dividend_type", "id", "source"):
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype("str")
    df["currency"] = df["currency"].str.upper()
    df["ex_dividend_date"] = pd.to_datetime(df["ex_dividend_date"], errors="coerce").astype("datetime64[ns]")
    for col in ("cash_amount", "frequency", "historical_adjustment_factor"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    v3 = (df["distribution_type"] == "") & (df["dividend_type"] != "")
    df.loc[v3, "distribution_type"] = df.loc[v3, "dividend_type"].map(V3_TYPES).fillna(df.loc[v3, "dividend_type"])
    bad = df["ex_dividend_date"].isna() | ~(df["cash_amount"] > 0)
    if bad.any():
        log.warning("ignoring %d dividend row(s) without an ex-date or a positive cash amount", int(bad.sum()))
        df = df[~bad]
    df = df.drop_duplicates(["ticker", "ex_dividend_date", "cash_amount", "distribution_type", "dividend_type"])
    return df.sort_values(["ticker", "ex_dividend_date"], kind="stable").reset_index(drop=True)


def empty_dividends() -> pd.DataFrame:
    """A zero-row dividends table with the standard columns."""
    return dividends_frame([])


DIVIDENDS_KIND = ReferenceKind(
    "dividends", "/stocks/v1/dividends", "/v3/reference/dividends", "ex_dividend_date", dividends_frame,
    "total-return adjusting", NO_KEY_MESSAGE)


def fetch_dividends(symbols: "str | Iterable[str | Ticker]", since: DateLike | None = None, *, settings: Settings | None = None,
                    client: "RestClient | None" = None, refresh: bool = False) -> pd.DataFrame:
    """The cash dividends of ``symbols`` (only stocks have any) as a table with :data:`DIVIDEND_COLUMNS`, from
    ``/stocks/v1/dividends`` (``/v3/reference/dividends`` where v1 is not answered), cached and refreshed at most
    daily exactly like :func:`~massive_feeds.splits.fetch_splits` (``since``: the market-wide table from that day;
    ``None``: each ticker's whole history). ``attrs``: ``as_of``/``age_hours`` of the list used.

    Raises:
        MissingCredentialsError: a list is needed and there is neither a cached one nor an API key.
        QuotaExceededError: the REST calls left today cannot fetch it and no cached list covers the tickers.
    """
    return fetch_reference(DIVIDENDS_KIND, symbols, since, settings=settings, client=client, refresh=refresh)


# --- factors ---------------------------------------------------------------------------------------
def _today_day() -> int:
    return (pd.Timestamp.now(NEW_YORK).normalize().tz_localize(None).value) // DAY_NS


def _service_chain(h: np.ndarray) -> np.ndarray | None:
    """Each row's own factor from the cumulative ``historical_adjustment_factor`` ``h`` (rows of one ticker, sorted
    by ex-date then factor): its factor over the next row's, the last one's its own; NaN for the newest rows when
    the service has not given them one yet (they went ex after its last update: computed from the previous
    close). None when the chain is not whole (a row without one before a row with one, a factor outside (0, 1],
    or one row's above the next one's): every factor of the ticker is then computed."""
    known = ~np.isnan(h)
    n = int(known.sum())
    if n == 0 or not known[:n].all() or not np.all((h[:n] > 0) & (h[:n] <= 1.0 + 1e-9)):
        return None
    own = h[:n] / np.r_[h[1:n], 1.0]
    if np.any(own > 1.0 + 1e-5):  # a later cumulative factor below an earlier one: not one chain
        return None
    return np.r_[np.minimum(own, 1.0), np.full(len(h) - n, np.nan)]


@dataclass(frozen=True)
class _Table:
    """The dividends that count (ex-date not after today), as arrays sorted by ticker, ex-date and factor, with
    ``bounds`` the start of each ticker's rows (and the end)."""

    rows: pd.DataFrame
    ticker: np.ndarray
    ex_day: np.ndarray
    cash: np.ndarray
    h: np.ndarray
    prev_close: np.ndarray
    currency: np.ndarray
    bounds: np.ndarray

    @classmethod
    def of(cls, dividends: pd.DataFrame, last_day: int, tickers: Iterable[str] | None = None) -> "_Table":
        ex = dividends["ex_dividend_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
        keep = ex <= last_day
        if tickers is not None:
            keep &= dividends["ticker"].isin(list(tickers)).to_numpy()
        rows = dividends[keep].sort_values(["ticker", "ex_dividend_date", "historical_adjustment_factor"],
                                           kind="stable")
        ticker = rows["ticker"].to_numpy(dtype=object)
        starts = np.flatnonzero(np.r_[True, ticker[1:] != ticker[:-1]]) if len(rows) else np.empty(0, np.int64)
        prev = rows["prev_close"].to_numpy(np.float64) if "prev_close" in rows else np.full(len(rows), np.nan)
        return cls(rows, ticker, rows["ex_dividend_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS,
                   rows["cash_amount"].to_numpy(np.float64), rows["historical_adjustment_factor"].to_numpy(np.float64),
                   prev, rows["currency"].to_numpy(dtype=object), np.r_[starts, len(rows)].astype(np.int64))

    def groups(self) -> Iterable[tuple[str, slice]]:
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            yield str(self.ticker[lo]), slice(int(lo), int(hi))

    def own_factors(self, ticker: str, at: slice, first_day: int) -> tuple[np.ndarray, np.ndarray]:
        """The own factor and its source (``service``/``previous close``) of each of one ticker's rows that scales
        a bar (ex-date after ``first_day``); as boolean mask ``scales`` the second item is returned with it."""
        ex, cash = self.ex_day[at], self.cash[at]
        scales = ex > first_day
        foreign = scales & (self.currency[at] != "") & (self.currency[at] != PRICE_CURRENCY)
        if foreign.any():
            i = int(np.flatnonzero(foreign)[0])
            day = pd.Timestamp(ex[i] * DAY_NS).date().isoformat()
            raise CorporateActionError(
                f"{ticker}'s dividend of {cash[i]:g} {self.currency[at][i]} (ex-date {day}) is not in {PRICE_CURRENCY}, "
                f"the currency of its prices, so it cannot be applied; ask for adjusted=True (splits only) instead",
                ticker=ticker, ex_date=day, currency=str(self.currency[at][i]))
        service = _service_chain(self.h[at])
        computed = 1.0 - cash / self.prev_close[at]
        use = ~np.isnan(service) if service is not None else np.zeros(len(ex), dtype=bool)
        own = np.where(use, service if service is not None else 1.0, computed)
        bad = scales & ~use & ~((computed > 0.0) & (computed < 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            day = pd.Timestamp(ex[i] * DAY_NS).date().isoformat()
            raise CorporateActionError(
                f"{ticker}'s dividend of {cash[i]:g} (ex-date {day}) has no usable previous close "
                f"({self.prev_close[at][i]:g}) and no historical_adjustment_factor from the service, so its factor is "
                "unknown; ask for adjusted=True (splits only) instead", ticker=ticker, ex_date=day)
        return own, np.where(use, "service", "previous close")


def needs_previous_closes(dividends: pd.DataFrame | None) -> list[str]:
    """The tickers whose factors cannot all come from the service (a row without a usable
    ``historical_adjustment_factor`` chain): their previous closes must be read (:func:`previous_closes`)."""
    if dividends is None or dividends.empty:
        return []
    table = _Table.of(dividends, _today_day())
    out = []
    for ticker, at in table.groups():
        service = _service_chain(table.h[at])
        if service is None or np.isnan(service).any():
            out.append(ticker)
    return out


def previous_closes(dividends: pd.DataFrame, tickers: list[str], client: "RestClient") -> pd.DataFrame:
    """``dividends`` with a ``prev_close`` column for ``tickers``' rows: the raw close of the last REST day bar
    before each ex-date (``/v2/aggs/.../1/day/...?adjusted=false``, one call per ticker from its first ex-date
    to today). Rows of other tickers get NaN."""
    from .rest import parse_aggs

    out = dividends.copy()
    out["prev_close"] = np.nan
    today = pd.Timestamp.now(NEW_YORK).date()
    for ticker in tickers:
        mine = out.index[out["ticker"] == ticker]
        first = (pd.Timestamp(out.loc[mine, "ex_dividend_date"].min()) - pd.Timedelta(days=10)).date()
        path = f"/v2/aggs/ticker/{ticker}/range/1/day/{first.isoformat()}/{today.isoformat()}"
        pages = list(client.paginate(path, {"adjusted": "false", "sort": "asc", "limit": 50_000}, parse_aggs,
                                     lambda page: page.next_url))
        t_ms = np.concatenate([pg.columns["timestamp"] for pg in pages]).astype(np.int64)
        close = np.concatenate([pg.columns["close"] for pg in pages]).astype(np.float64)
        days = ny_day_numbers(t_ms * 1_000_000)
        ex_days = out.loc[mine, "ex_dividend_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
        at = np.searchsorted(days, ex_days, side="left") - 1  # the last day bar before the ex-date
        out.loc[mine, "prev_close"] = np.where(at >= 0, close[np.maximum(at, 0)], np.nan)
        log.info("dividends: %s has no historical_adjustment_factor from the service; read %d previous close(s) "
                 "from its raw day bars", ticker, len(mine))
    return out


#: Cache folder kind (under ``splits_cache_dir``) of the previous closes read for the v3 fallback's factors.
PREV_CLOSES_KIND = "prev_closes"


def cached_previous_closes(dividends: pd.DataFrame, tickers: list[str], settings: Settings) -> pd.DataFrame:
    """:func:`previous_closes`, cached per ticker beside the reference tables (``prev_closes/<host>/<T>.parquet``).

    A raw close before an ex-date that has passed never changes (stored data stays raw), so a cached one is used
    at any age, with no call; only a ticker with an ex-date (up to today) not in its cache is read again (its
    whole range, one call) and its file rewritten. With the REST quota gone and a close not cached, the
    :class:`~massive_feeds.errors.QuotaExceededError` names the ticker and ex-dates it lacks.
    """
    from .errors import QuotaExceededError
    from .rest import RestClient

    folder = ensure_dir(splits_cache_dir(settings, PREV_CLOSES_KIND), "previous closes cache")
    out = dividends.copy()
    out["prev_close"] = np.nan
    today = pd.Timestamp.now(NEW_YORK).date().isoformat()
    ex_iso = pd.to_datetime(out["ex_dividend_date"]).dt.strftime("%Y-%m-%d")
    need: dict[str, list[str]] = {}
    for ticker in tickers:
        mine = (out["ticker"] == ticker).to_numpy()
        cached = _read_closes(folder / f"ticker-{ticker}.parquet")
        past = sorted(set(ex_iso[mine & (ex_iso <= today).to_numpy()]))
        missing = [d for d in past if d not in cached.index]
        if missing:
            need[ticker] = missing
        else:
            out.loc[mine, "prev_close"] = cached.reindex(ex_iso[mine]).to_numpy()
            log.info("dividends: %s's %d previous close(s) from the cache (no call)", ticker, int(mine.sum()))
    if not need:
        return out
    try:
        with RestClient(settings) as client:
            fresh = previous_closes(out, list(need), client)
    except QuotaExceededError as exc:
        lacking = "; ".join(f"{t} ex {', '.join(days)}" for t, days in need.items())
        raise QuotaExceededError(
            f"{exc.message}, and no cached previous close covers {lacking}: total-return factors without the "
            "service's historical_adjustment_factor need them. Ask for adjusted=True (splits only) or retry after "
            "the reset", resource=exc.resource, resets_at=exc.resets_at) from None
    for ticker in need:
        mine = (fresh["ticker"] == ticker).to_numpy()
        out.loc[mine, "prev_close"] = fresh.loc[mine, "prev_close"].to_numpy()
        keep = mine & (ex_iso <= today).to_numpy() & fresh["prev_close"].notna().to_numpy()
        table = pd.DataFrame({"ex_date": ex_iso[keep].to_numpy(), "prev_close": fresh.loc[keep, "prev_close"]})
        try:  # a full disk must not fail the adjustment that already has its closes
            write_parquet(table.drop_duplicates("ex_date").reset_index(drop=True), folder / f"ticker-{ticker}.parquet")
        except OSError as exc:
            log.warning("could not cache %s's previous closes: %s", ticker, exc)
    return out


def _read_closes(path: Path) -> pd.Series:
    """A ticker's cached previous closes by ex-date (ISO day); empty when none or damaged (read again)."""
    try:
        df = read_parquet_frame(path, path.name)
        return pd.Series(df["prev_close"].to_numpy(np.float64), index=df["ex_date"].astype(str).to_numpy())
    except FileNotFoundError:
        return pd.Series(dtype=np.float64)
    except Exception as exc:  # bit rot fails its checksums: a miss, read from the service again
        log.warning("discarding damaged previous-close cache %s: %s", path.name, exc)
        path.unlink(missing_ok=True)
        return pd.Series(dtype=np.float64)


def dividend_factors(symbols: np.ndarray | pd.Series, ts_ns: np.ndarray, closes: np.ndarray, opens: np.ndarray,
                     dividends: pd.DataFrame | None, *, basis: np.ndarray | None = None,
                     today: date | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Per bar: the product of the factors of the symbol's dividends whose ex-date is after the bar's New York
    day and not after ``today`` (1.0 when none); and the dividends applied, for ``df.attrs["dividends"]``.

    Vectorised: the bars are sorted once by (symbol, time) and every bar finds its first later ex-date with one
    ``searchsorted`` over (symbol, day) keys; Python loops run per ticker and per dividend, never per bar.

    Args:
        symbols, ts_ns, closes, opens: the bars (any order), ``ts_ns`` int64 ns UTC.
        dividends: a dividends table (:func:`fetch_dividends`).
        basis: per bar, what its prices were multiplied by since they traded (the split factor of split-adjusted
            bars; ``None`` = raw bars), so the drop on the ex-date is checked on raw prices.
        today: the last ex-date that counts (default: today in New York).

    Raises:
        CorporateActionError: a dividend to apply is in another currency than the prices, or its factor is
            unknown (no service factor and no previous close, or a cash amount not below it).
    """
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    factors = np.ones(len(ts_ns))
    if len(ts_ns) == 0 or dividends is None or dividends.empty:
        return factors, []
    codes, uniques = pd.factorize(np.asarray(symbols))
    names = [str(u) for u in uniques]
    table = _Table.of(dividends, _today_day() if today is None else pd.Timestamp(today).value // DAY_NS,
                      [n for n in names if asset_class(n) == "stocks"])
    if not len(table.rows):
        return factors, []
    order = np.lexsort((ts_ns, codes))  # the bars sorted by (symbol, time) once
    s_code, s_day = codes[order].astype(np.int64), ny_day_numbers(ts_ns[order])
    first_day = s_day[np.searchsorted(s_code, np.arange(len(names)), side="left")]
    code_of = {name: i for i, name in enumerate(names)}
    keys, cum, own, src, row_at = [], [], [], [], []
    bigger = np.int64(1 << 24)  # > any New York day number: (symbol, day) as one sortable key
    for ticker, at in table.groups():  # per ticker with dividends: numpy on its few rows
        code = code_of[ticker]
        factor, source = table.own_factors(ticker, at, int(first_day[code]))
        scales = table.ex_day[at] > first_day[code]
        if not scales.any():
            continue
        mine = factor[scales]
        keys.append(code * bigger + table.ex_day[at][scales])
        cum.append(np.cumprod(mine[::-1])[::-1])  # this dividend's factor × every later one's
        own.append(mine)
        src.append(source[scales])
        row_at.append(np.arange(at.start, at.stop)[scales])
    if not keys:
        return factors, []
    ev_key, ev_cum = np.concatenate(keys), np.concatenate(cum)  # sorted: tickers in order, ex-dates in order
    ev_order = np.argsort(ev_key, kind="stable")  # by symbol code (the tickers' order may differ from the codes')
    ev_key, ev_cum = ev_key[ev_order], ev_cum[ev_order]
    ev_code = ev_key // bigger
    bar_key = s_code * bigger + s_day
    nxt = np.minimum(np.searchsorted(ev_key, bar_key, side="right"), len(ev_key) - 1)  # first ex-date after it
    same = (ev_key[nxt] > bar_key) & (ev_code[nxt] == s_code)
    factors[order] = np.where(same, ev_cum[nxt], 1.0)
    basis_s = np.ones(len(ts_ns)) if basis is None else np.asarray(basis, dtype=np.float64)[order]
    first_on = np.searchsorted(bar_key, ev_key, side="left")  # each dividend's first bar on or after its ex-date
    return factors, _describe(table, np.concatenate(row_at)[ev_order], np.concatenate(own)[ev_order],
                              np.concatenate(src)[ev_order], ev_key, first_on, bar_key,
                              np.asarray(closes, np.float64)[order] / basis_s,
                              np.asarray(opens, np.float64)[order] / basis_s)


def _describe(table: _Table, rows: np.ndarray, own: np.ndarray, source: np.ndarray, ev_key: np.ndarray,
              first_on: np.ndarray, bar_key: np.ndarray, raw_close: np.ndarray,
              raw_open: np.ndarray) -> list[dict[str, Any]]:
    """One dict per applied dividend: what it was, its own factor, the previous close that implies (``cash / (1 -
    factor)``) and, when the bars hold the ex-date, whether the raw price dropped from the bar before."""
    out = []
    kinds = table.rows["distribution_type"].to_numpy(dtype=object)
    ex_dates = pd.to_datetime(table.ex_day[rows] * DAY_NS).strftime("%Y-%m-%d")
    for k, i in enumerate(rows):  # one per dividend, never per bar
        cash, f = float(table.cash[i]), float(own[k])
        implied = cash / (1.0 - f) if f < 1.0 else math.nan
        j = int(first_on[k])
        on = j < len(bar_key) and bar_key[j] == ev_key[k]  # a bar on the ex-date itself
        out.append({
            "ticker": str(table.ticker[i]), "ex_date": ex_dates[k],
            "cash_amount": cash, "currency": str(table.currency[i]) or PRICE_CURRENCY,
            "distribution_type": str(kinds[i]), "factor": round(f, 8),
            "factor_source": str(source[k]), "prev_close": None if math.isnan(implied) else round(implied, 4),
            "ex_open": round(float(raw_open[j]), 6) if on else None,
            "last_close": round(float(raw_close[j - 1]), 6) if on else None,
            # None: the bars do not hold the ex-date; False is flagged by quality for material dividends
            "dropped": bool(raw_open[j] < raw_close[j - 1]) if on else None,
            "material": bool(cash >= MATERIAL_YIELD * implied) if not math.isnan(implied) else False,
        })
    return out


def apply_dividends(bars: pd.DataFrame, dividends: pd.DataFrame | None, *, basis: np.ndarray | None = None,
                    today: date | None = None, inverse: bool = False) -> pd.DataFrame:
    """Total-return-adjust standard bars: prices (open, high, low, close, VWAP; bid/ask in recordings) of every
    bar before an ex-date × the dividends' chained factor; volumes and trade counts untouched. Returns a new frame
    with ``attrs["dividends"]`` (the dividends applied). ``basis``: see :func:`dividend_factors` (``None``: the
    bars are raw; for split-adjusted bars, the split factor of each bar). ``today``: the last ex-date that counts
    (default today). ``inverse=True`` undoes an adjustment made with the same dividends up to ``today``."""
    out = bars.copy()
    if out.empty or dividends is None or dividends.empty:
        out.attrs["dividends"] = []
        return out
    ts_ns = out["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    factor, applied = dividend_factors(out["symbol"].to_numpy(), ts_ns, out["close"].to_numpy(np.float64),
                                       out["open"].to_numpy(np.float64), dividends, basis=basis, today=today)
    if inverse:
        factor = 1.0 / factor
    for col in PRICE_COLUMNS:
        if col in out.columns and (factor != 1.0).any():
            out[col] = out[col].to_numpy(dtype=np.float64) * factor
    out.attrs["dividends"] = applied
    return out


# --- what a query needs ------------------------------------------------------------------------------
@dataclass
class Corrections:
    """The reference tables one query's adjustment needs (``adjustment``: ``"raw"``, ``"splits"``, ``"total"``),
    fetched once before any bar is read (:meth:`fetch`), and the ``df.attrs`` that say what was applied."""

    adjustment: str
    splits: pd.DataFrame | None = None
    dividends: pd.DataFrame | None = None

    @classmethod
    def fetch(cls, adjustment: str, tickers: "Iterable[str | Ticker]", first_day: date,
              settings: Settings | None) -> "Corrections":
        """The tables for ``tickers``' stocks since ``first_day``: splits for ``"splits"`` and ``"total"``,
        dividends for ``"total"`` (with their previous closes where the service gives no factor). Parsed
        :class:`~massive_feeds.schema.Ticker` s (a query's) are passed on as they are, never parsed again."""
        names = list(tickers)
        # crypto, forex, indices and options have neither list
        stocks = [t for t in parse_tickers(names) if t.asset == "stocks"] if names else []
        out = cls(adjustment)
        if not stocks or adjustment == "raw":
            return out
        out.splits = fetch_splits(stocks, first_day, settings=settings)
        if adjustment == "total":
            table = fetch_dividends(stocks, first_day, settings=settings)
            lacking = needs_previous_closes(table)
            if lacking:
                from .runtime import resolve_settings

                attrs = dict(table.attrs)
                table = cached_previous_closes(table, lacking, resolve_settings(settings))
                table.attrs.update(attrs)
            out.dividends = table
        return out

    def split_basis(self, bars: pd.DataFrame) -> np.ndarray | None:
        """Per bar of split-adjusted ``bars``, its split factor (so raw prices = adjusted / it); None without
        a splits table."""
        if self.splits is None or self.splits.empty or bars.empty:
            return None
        ts = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
        return price_factors(bars["symbol"].to_numpy(), ts, self.splits)

    def attrs(self, applied: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """``df.attrs`` entries: ``adjustment``, ``adjusted_as_of``, and for ``"total"`` the dividends applied and
        the age of their list (``dividends_as_of``/``dividends_age_hours``)."""
        out: dict[str, Any] = {"adjustment": self.adjustment}
        if self.adjustment != "raw":
            out["adjusted_as_of"] = pd.Timestamp.now(NEW_YORK).date().isoformat()
        if self.adjustment == "total":
            out["dividends"] = list(applied or [])
            if self.dividends is not None:
                out.update(dividends_as_of=self.dividends.attrs.get("as_of"),
                           dividends_age_hours=self.dividends.attrs.get("age_hours"))
        return out
