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
interval, path and window — also for a window that ends long before the ex-date.

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
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from .config import Settings
from .errors import CorporateActionError
from .schema import NEW_YORK, DateLike, Ticker, asset_class, parse_tickers
from .sessions import DAY_NS, ny_day_numbers
from .splits import PRICE_COLUMNS, ReferenceKind, fetch_reference, fetch_splits, price_factors

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
@dataclass(frozen=True)
class _Event:
    """One dividend applied to a symbol's bars."""

    ex_day: int  # New York day number of the ex-date
    factor: float
    source: str  # "service" (historical_adjustment_factor) or "previous close"
    row: int  # index into the dividends table


def _today_day() -> int:
    return (pd.Timestamp.now(NEW_YORK).normalize().tz_localize(None).value) // DAY_NS


def _service_factors(rows: pd.DataFrame) -> np.ndarray | None:
    """Each row's own factor from the cumulative ``historical_adjustment_factor`` (rows of one ticker, sorted by
    ex-date then factor): its factor over the next row's, the last one's its own; NaN for the newest rows when
    the service has not given them one yet (they went ex after its last update: computed from the previous
    close). None when the chain is not whole (a row without one before a row with one, a factor outside (0, 1],
    or one row's above the next one's): every factor of the ticker is then computed."""
    h = rows["historical_adjustment_factor"].to_numpy(np.float64)
    known = ~np.isnan(h)
    n = int(known.sum())
    if n == 0 or not known[:n].all() or not np.all((h[:n] > 0) & (h[:n] <= 1.0 + 1e-9)):
        return None
    own = h[:n] / np.r_[h[1:n], 1.0]
    if np.any(own > 1.0 + 1e-5):  # a later cumulative factor below an earlier one: not one chain
        return None
    return np.r_[np.minimum(own, 1.0), np.full(len(h) - n, np.nan)]


def _check_currency(rows: pd.DataFrame, ticker: str) -> None:
    foreign = rows[(rows["currency"] != "") & (rows["currency"] != PRICE_CURRENCY)]
    if not foreign.empty:
        row = foreign.iloc[0]
        ex = pd.Timestamp(row["ex_dividend_date"]).date().isoformat()
        raise CorporateActionError(
            f"{ticker}'s dividend of {row['cash_amount']:g} {row['currency']} (ex-date {ex}) is not in {PRICE_CURRENCY}, "
            f"the currency of its prices, so it cannot be applied; ask for adjusted=True (splits only) instead",
            ticker=ticker, ex_date=ex, currency=str(row["currency"]))


def _events(ticker: str, rows: pd.DataFrame, day_no: np.ndarray) -> list[_Event]:
    """The dividends of one symbol that scale some of its bars (``day_no`` sorted), with their factors: the
    service's where its chain is whole, else ``1 - cash / prev_close`` (the table's ``prev_close`` column,
    :func:`previous_closes`)."""
    ex_days = rows["ex_dividend_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
    service = _service_factors(rows)
    closes = rows["prev_close"].to_numpy(np.float64) if "prev_close" in rows else np.full(len(rows), np.nan)
    computed = 1.0 - rows["cash_amount"].to_numpy(np.float64) / closes
    events = []
    for i, ex_day in enumerate(ex_days):
        if ex_day <= day_no[0]:
            continue  # no bar before it: nothing to scale
        if service is not None and not np.isnan(service[i]):
            events.append(_Event(int(ex_day), float(service[i]), "service", int(rows.index[i])))
            continue
        if not (0.0 < computed[i] < 1.0):
            ex = pd.Timestamp(rows["ex_dividend_date"].iloc[i]).date().isoformat()
            raise CorporateActionError(
                f"{ticker}'s dividend of {rows['cash_amount'].iloc[i]:g} (ex-date {ex}) has no usable previous close "
                f"({closes[i]:g}) and no historical_adjustment_factor from the service, so its factor is unknown; "
                "ask for adjusted=True (splits only) instead", ticker=ticker, ex_date=ex)
        events.append(_Event(int(ex_day), float(computed[i]), "previous close", int(rows.index[i])))
    return events


def needs_previous_closes(dividends: pd.DataFrame | None) -> list[str]:
    """The tickers whose factors cannot come from the service (a row without a usable
    ``historical_adjustment_factor`` chain): their previous closes must be read (:func:`previous_closes`)."""
    if dividends is None or dividends.empty:
        return []
    due = dividends[dividends["ex_dividend_date"] <= pd.Timestamp.now(NEW_YORK).normalize().tz_localize(None)]
    out = []
    for ticker, rows in due.groupby("ticker", sort=True):
        service = _service_factors(rows.sort_values(["ex_dividend_date", "historical_adjustment_factor"],
                                                    kind="stable"))
        if service is None or np.isnan(service).any():
            out.append(str(ticker))
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


def dividend_factors(symbols: np.ndarray | pd.Series, ts_ns: np.ndarray, closes: np.ndarray, opens: np.ndarray,
                     dividends: pd.DataFrame | None, *, basis: np.ndarray | None = None,
                     today: date | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Per bar: the product of the factors of the symbol's dividends whose ex-date is after the bar's New York
    day and not after ``today`` (1.0 when none); and the dividends applied, for ``df.attrs["dividends"]``.

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
    applied: list[dict[str, Any]] = []
    if len(ts_ns) == 0 or dividends is None or dividends.empty:
        return factors, applied
    basis = np.ones(len(ts_ns)) if basis is None else np.asarray(basis, dtype=np.float64)
    last_day = _today_day() if today is None else (pd.Timestamp(today).value // DAY_NS)
    due = dividends[dividends["ex_dividend_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
                    <= last_day]
    codes, names = pd.factorize(np.asarray(symbols))
    day_all = ny_day_numbers(ts_ns)
    for code, name in enumerate(map(str, names)):
        mine = due[due["ticker"] == name]
        if mine.empty or asset_class(name) != "stocks":
            continue
        rows = np.flatnonzero(codes == code)
        order = rows[np.argsort(ts_ns[rows], kind="stable")]
        day_no = day_all[order]
        mine = mine.sort_values(["ex_dividend_date", "historical_adjustment_factor"], kind="stable")
        ex_mine = mine["ex_dividend_date"].to_numpy(dtype="datetime64[ns]").view("int64") // DAY_NS
        _check_currency(mine[ex_mine > day_no[0]], name)  # only those that would scale a bar
        events = _events(name, mine, day_no)
        if not events:
            continue
        ex_days = np.array([e.ex_day for e in events], dtype=np.int64)
        own = np.array([e.factor for e in events])
        suffix = np.r_[np.cumprod(own[::-1])[::-1], 1.0]  # suffix[i] = product of own[i:]
        factors[order] = suffix[np.searchsorted(ex_days, day_no, side="right")]
        applied.extend(_describe(name, events, dividends, day_no, np.asarray(closes, np.float64)[order],
                                 np.asarray(opens, np.float64)[order], basis[order]))
    return factors, applied


def _describe(ticker: str, events: list[_Event], dividends: pd.DataFrame, day_no: np.ndarray, closes: np.ndarray,
              opens: np.ndarray, basis: np.ndarray) -> list[dict[str, Any]]:
    """One dict per applied dividend: what it was, its factor, the previous close it implies (``cash / (1 -
    factor)``) and, when the bars hold the ex-date and the bar before it, whether the raw price dropped."""
    out = []
    for e in events:
        row = dividends.loc[e.row]
        cash = float(row["cash_amount"])
        implied = cash / (1.0 - e.factor) if e.factor < 1.0 else math.nan
        before = int(np.searchsorted(day_no, e.ex_day, side="left"))
        on = before < len(day_no) and day_no[before] == e.ex_day  # a bar on the ex-date itself
        last_close = float(closes[before - 1] / basis[before - 1])
        ex_open = float(opens[before] / basis[before]) if on else math.nan
        out.append({
            "ticker": ticker, "ex_date": pd.Timestamp(row["ex_dividend_date"]).date().isoformat(),
            "cash_amount": cash, "currency": str(row["currency"]) or PRICE_CURRENCY,
            "distribution_type": str(row["distribution_type"]), "factor": round(e.factor, 8),
            "factor_source": e.source, "prev_close": None if math.isnan(implied) else round(implied, 4),
            "ex_open": None if math.isnan(ex_open) else round(ex_open, 6),
            "last_close": round(last_close, 6) if on else None,
            # None: the bars do not hold the ex-date; False is flagged by quality for material dividends
            "dropped": None if not on else bool(ex_open < last_close),
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
                from .rest import RestClient
                from .runtime import resolve_settings

                with RestClient(resolve_settings(settings)) as client:
                    attrs = dict(table.attrs)
                    table = previous_closes(table, lacking, client)
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
