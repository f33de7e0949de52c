"""The one bar schema, intervals, tickers, date ranges and the validated bar query shared by every source.

Bars, whatever their source (REST, flat files, recordings, datasets), are a DataFrame with columns
:data:`BAR_COLUMNS`: ``timestamp`` (tz-aware UTC, bar start), ``symbol``, ``open``, ``high``, ``low``,
``close``, ``volume``, ``vwap`` (float64; NaN where the source has none) and ``transactions`` (int64),
sorted by symbol then time, with no duplicate (symbol, timestamp).

A bar request is parsed once, at the public function the user called, into a :class:`BarQuery`
(tickers, :class:`Interval`, :class:`DateRange`, session, adjusted); every back end and adapter below
carries that object and never parses the user's strings again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Literal, Self, Sequence, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InvalidInputError
from .futures_symbols import (FUTURES_FORMS, is_futures, normalize_futures, session_day, session_open,
                              validate_roll_adjust)

NEW_YORK = ZoneInfo("America/New_York")

BAR_COLUMNS: tuple[str, ...] = (
    "timestamp", "symbol", "open", "high", "low", "close", "volume", "vwap", "transactions",
)
FLOAT_COLUMNS = ("open", "high", "low", "close", "volume", "vwap")
TIMESTAMP_DTYPE = "datetime64[ns, UTC]"


# --- intervals ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A bar size: ``name`` as users write it, and the REST ``multiplier``/``timespan`` pair."""

    name: str
    multiplier: int
    timespan: str  # minute | hour | day | week | month

    @property
    def is_intraday(self) -> bool:
        return self.timespan in ("minute", "hour")

    @property
    def base(self) -> str:
        """The finest bars it is built from: ``minute`` for intraday, ``day`` otherwise."""
        return "minute" if self.is_intraday else "day"

    @property
    def minutes(self) -> int:
        """Length in minutes (intraday intervals only)."""
        return self.multiplier * (60 if self.timespan == "hour" else 1)

    @property
    def pandas_freq(self) -> str:
        return {"minute": f"{self.multiplier}min", "hour": f"{self.multiplier}h",
                "day": f"{self.multiplier}D", "week": "W-SUN", "month": "MS"}[self.timespan]

    def __str__(self) -> str:
        return self.name


INTERVALS: dict[str, Interval] = {
    i.name: i
    for i in (
        Interval("1m", 1, "minute"), Interval("5m", 5, "minute"), Interval("15m", 15, "minute"),
        Interval("30m", 30, "minute"), Interval("1h", 1, "hour"), Interval("4h", 4, "hour"),
        Interval("1d", 1, "day"), Interval("1w", 1, "week"), Interval("1M", 1, "month"),
    )
}
_INTERVAL_ALIASES = {
    "1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60min": "1h", "60m": "1h",
    "1H": "1h", "4H": "4h", "1D": "1d", "1day": "1d", "day": "1d", "1W": "1w", "1week": "1w",
    "week": "1w", "1mo": "1M", "1month": "1M", "month": "1M", "minute": "1m", "hour": "1h",
}


def parse_interval(interval: str | Interval) -> Interval:
    """``"5m"`` → :class:`Interval`; anything unknown is an :class:`InvalidInputError` listing the valid ones."""
    if isinstance(interval, Interval):
        return interval
    key = str(interval).strip()
    key = _INTERVAL_ALIASES.get(key, key)
    try:
        return INTERVALS[key]
    except KeyError:
        raise InvalidInputError(
            f"Invalid interval {interval!r}; valid intervals are {', '.join(INTERVALS)}"
        ) from None


# --- tickers --------------------------------------------------------------------------------------
ASSET_CLASSES = ("stocks", "options", "indices", "forex", "crypto", "futures")
FIAT = frozenset(
    "USD EUR JPY GBP CHF CAD AUD NZD CNH CNY HKD SGD SEK NOK DKK MXN ZAR TRY PLN CZK HUF ILS INR KRW BRL".split()
)
CRYPTO_QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "BTC", "ETH")
_STOCK_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_OCC_RE = re.compile(r"^[A-Z]{1,6}\d?\d{6}[CP]\d{8}$")
_PAIR_RE = re.compile(r"^[A-Z0-9]{2,10}$")


#: Massive's ticker prefix → asset class (a ticker without one is a stock). A new asset class (futures) is
#: one more ticker kind: its prefix here, its pattern in :func:`normalize_symbol`, and in each source the
#: question whether it covers that :attr:`Ticker.asset` (``flatfiles.keys.PREFIXES``, the REST paths).
TICKER_PREFIXES: dict[str, str] = {"O:": "options", "I:": "indices", "C:": "forex", "X:": "crypto"}
#: Asset classes whose bars ``session="regular"`` cuts; crypto and forex trade around the clock.
SESSION_ASSETS = frozenset({"stocks", "options", "indices"})


def asset_class(ticker: str) -> str:
    """Asset class of a normalised ticker: stocks, options, indices, forex, crypto or futures (a contract
    code like ``ESZ4`` or a continuous series like ``ES.c.0``, see :mod:`massive_feeds.futures_symbols`)."""
    prefix = ticker[:2]
    if prefix not in TICKER_PREFIXES and is_futures(ticker):
        return "futures"
    return TICKER_PREFIXES.get(prefix, "stocks")


@dataclass(frozen=True)
class Ticker:
    """A ticker parsed once from user input: Massive's form (``symbol``) and its asset class (``asset``).

    Queries carry these, so no layer below the public functions parses a user string or works the asset
    class out again; ``str(ticker)`` is the Massive form every wire format and file uses."""

    symbol: str
    asset: str

    @classmethod
    def parse(cls, text: "str | Ticker") -> "Ticker":
        """A user's spelling (``aapl``, ``BTC-USD``, ``^SPX`` …) → a :class:`Ticker`; see :func:`normalize_symbol`."""
        if isinstance(text, Ticker):
            return text
        symbol = normalize_symbol(text)
        return cls(symbol, asset_class(symbol))

    @classmethod
    def of(cls, ticker: "str | Ticker") -> "Ticker":
        """An already normalised ticker string (or a :class:`Ticker`) typed, without validating it again."""
        return ticker if isinstance(ticker, Ticker) else cls(ticker, asset_class(ticker))

    @property
    def has_sessions(self) -> bool:
        """Whether ``session="regular"`` cuts its bars (stocks, options, indices)."""
        return self.asset in SESSION_ASSETS

    def __str__(self) -> str:
        return self.symbol


def _split_pair(text: str) -> tuple[str, str] | None:
    for sep in ("-", "/", "_"):
        if sep in text:
            base, _, quote = text.partition(sep)
            return (base, quote) if base and quote else None
    for quote in CRYPTO_QUOTES + tuple(sorted(FIAT)):
        if text.endswith(quote) and len(text) > len(quote) + 1:
            return text[: -len(quote)], quote
    return None


def normalize_symbol(symbol: str) -> str:
    """Massive's ticker form for a symbol: ``aapl``→``AAPL``, ``BTC-USD``→``X:BTCUSD``,
    ``EUR/USD``→``C:EURUSD``, ``^SPX``→``I:SPX``, a bare OCC option symbol → ``O:…``, futures
    ``esz4``/``F:ESZ4``→``ESZ4`` and continuous ``es.c.0``→``ES.c.0``.

    Raises :class:`InvalidInputError` for anything that cannot be a ticker.
    """
    if not isinstance(symbol, str) or not symbol.strip():
        raise InvalidInputError(f"Invalid symbol {symbol!r}: expected a non-empty ticker string")
    if (futures := normalize_futures(symbol)) is not None:
        return futures
    text = symbol.strip().upper()
    bad = InvalidInputError(
        f"Invalid symbol {symbol!r}; use a ticker like AAPL, O:SPY251219C00650000, I:SPX, C:EURUSD or X:BTCUSD, "
        f"or for futures {FUTURES_FORMS}"
    )
    if text.startswith("^"):
        text = "I:" + text[1:]
    if text[:2] in ("O:", "I:", "C:", "X:"):
        prefix, body = text[:2], text[2:]
        if prefix in ("C:", "X:"):
            body = body.replace("-", "").replace("/", "").replace("_", "")
        ok = {"O:": _OCC_RE, "I:": _STOCK_RE, "C:": _PAIR_RE, "X:": _PAIR_RE}[prefix].match(body)
        if not ok:
            raise bad
        return prefix + body
    if _OCC_RE.match(text):
        return "O:" + text
    pair = _split_pair(text) if (len(text) > 5 or any(s in text for s in "-/_")) else None
    if pair:
        base, quote = pair
        if base in FIAT and quote in FIAT:
            return f"C:{base}{quote}"
        if _PAIR_RE.match(base) and quote in CRYPTO_QUOTES:
            return f"X:{base}{quote}"
    if _STOCK_RE.match(text):
        return text
    raise bad


def normalize_symbols(symbols: str | Iterable[str]) -> list[str]:
    """Normalise one symbol, a comma list or an iterable; order kept, duplicates dropped."""
    return [t.symbol for t in parse_tickers(symbols)]


def parse_tickers(symbols: "str | Iterable[str | Ticker]") -> tuple[Ticker, ...]:
    """One symbol, a comma list or an iterable → typed :class:`Ticker` s; order kept, duplicates dropped."""
    if isinstance(symbols, str):
        symbols = [s for s in symbols.split(",") if s.strip()]
    elif isinstance(symbols, (bytes, bytearray, dict)) or not isinstance(symbols, Iterable):
        raise InvalidInputError(f"Invalid symbols {symbols!r}: expected a ticker string, a comma list or a list "
                                "of ticker strings")
    out = tuple(dict.fromkeys(Ticker.parse(s) for s in symbols))
    if not out:
        raise InvalidInputError("No symbols given")
    return out


# --- dates ----------------------------------------------------------------------------------------
DateLike: TypeAlias = str | date | datetime | pd.Timestamp


@dataclass(frozen=True)
class DateRange:
    """A query window. ``start`` inclusive, ``end`` exclusive, both UTC.

    Date-only bounds mean whole New York calendar days (the session date that Massive's day bars and
    day files carry), so ``"2024-01-02".."2024-01-02"`` covers that day's pre-market to after-hours.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    first_day: date
    last_day: date
    start_is_date: bool
    end_is_date: bool

    @property
    def days(self) -> int:
        """Calendar days covered (inclusive)."""
        return (self.last_day - self.first_day).days + 1

    def rest_bounds(self, intraday: bool) -> tuple[str, str]:
        """``from``/``to`` path values for the aggregates endpoint: epoch ms for intraday bars
        (unambiguous whatever day convention the server uses), New York dates for day bars and up."""
        if intraday:
            return str(self.start.value // 1_000_000), str((self.end.value - 1) // 1_000_000)
        return self.first_day.isoformat(), self.last_day.isoformat()

    def in_futures_sessions(self) -> DateRange:
        """This range in futures sessions: date bounds become the sessions ending on those days (the first
        one opened the evening before, 17:00 Chicago); datetime bounds stay, and their first/last days become
        the sessions they fall in (an evening instant belongs to the next day's session, whose file holds it)."""
        start = session_open(self.first_day) if self.start_is_date else self.start
        end = session_open(self.last_day + timedelta(days=1)) if self.end_is_date else self.end
        first = self.first_day if self.start_is_date else session_day(start)
        last = self.last_day if self.end_is_date else session_day(end - pd.Timedelta(1, "ns"))
        return replace(self, start=start, end=end, first_day=first, last_day=max(first, last))

    def calendar_days(self) -> list[date]:
        return [self.first_day + timedelta(days=i) for i in range(self.days)]


def _to_bound(value: DateLike, name: str) -> tuple[pd.Timestamp, bool]:
    if isinstance(value, pd.Timestamp) or isinstance(value, datetime):
        ts = pd.Timestamp(value)
        is_date = False
    elif isinstance(value, date):
        ts, is_date = pd.Timestamp(value), True
    elif isinstance(value, str):
        text = value.strip()
        if not re.match(r"\d{4}-\d{2}-\d{2}(?:[T ]|$)", text):  # 01/02/2024: January 2 or February 1?
            raise InvalidInputError(f"Invalid {name} date {value!r}; use YYYY-MM-DD (e.g. 2024-01-02) or an ISO "
                                    "datetime (other spellings are ambiguous)")
        try:
            ts = pd.Timestamp(text)
        except (ValueError, TypeError):
            raise InvalidInputError(f"Invalid {name} date {value!r}; use YYYY-MM-DD or an ISO datetime") from None
        is_date = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))
    else:
        raise InvalidInputError(f"Invalid {name} date {value!r} of type {type(value).__name__}")
    if ts is pd.NaT or pd.isna(ts):
        raise InvalidInputError(f"Invalid {name} date {value!r}")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")  # naive datetimes are UTC, as everywhere in this library
    return ts.tz_convert("UTC"), is_date


def ny_midnight(day: date) -> pd.Timestamp:
    """Midnight America/New_York of ``day`` as a UTC timestamp (how Massive stamps day bars)."""
    return pd.Timestamp(datetime.combine(day, time(0), NEW_YORK)).tz_convert("UTC")


def parse_date_range(start: DateLike, end: DateLike) -> DateRange:
    """Validate and normalise a start/end pair; ``end`` before ``start`` is an :class:`InvalidInputError`."""
    s, s_is_date = _to_bound(start, "start")
    e, e_is_date = _to_bound(end, "end")
    first = s.date() if s_is_date else s.tz_convert(NEW_YORK).date()
    last = e.date() if e_is_date else e.tz_convert(NEW_YORK).date()
    start_ts = ny_midnight(first) if s_is_date else s
    end_ts = ny_midnight(last + timedelta(days=1)) if e_is_date else e + pd.Timedelta(1, "ns")
    if end_ts <= start_ts:
        raise InvalidInputError(f"end ({end}) is before start ({start})")
    return DateRange(start_ts, end_ts, first, last, s_is_date, e_is_date)


# --- sessions -------------------------------------------------------------------------------------
Session = Literal["extended", "regular"]
SESSIONS: tuple[str, ...] = ("extended", "regular")


def validate_session(session: str) -> Session:
    """``"extended"`` or ``"regular"``; anything else is an :class:`InvalidInputError`."""
    if session not in SESSIONS:
        raise InvalidInputError(f"Invalid session {session!r}; use 'extended' (the default) or 'regular'")
    return session  # type: ignore[return-value]


# --- price adjustment -------------------------------------------------------------------------------
Adjustment = Literal["raw", "splits", "total"]
#: What ``adjusted=`` accepts, and the adjustment each value names (see :mod:`massive_feeds.dividends`).
ADJUSTMENTS: dict[object, str] = {True: "splits", "splits": "splits", "total": "total", False: "raw", "raw": "raw"}


def parse_adjustment(adjusted: object) -> Adjustment:
    """``True``/``"splits"`` → ``"splits"``, ``"total"`` → ``"total"`` (splits and cash dividends),
    ``False``/``"raw"`` → ``"raw"``; anything else is an :class:`InvalidInputError` naming the valid values."""
    name = ADJUSTMENTS.get(adjusted) if isinstance(adjusted, (bool, str)) else None  # 1 is not True here
    if name is None:
        raise InvalidInputError(
            f"Invalid adjusted={adjusted!r}; use True or 'splits' (split-adjusted, the default), 'total' (splits and "
            "cash dividends: total-return prices) or False or 'raw' (prices as traded)")
    return name  # type: ignore[return-value]


# --- queries --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """What every query has: the parsed tickers (``parsed``) and the :class:`DateRange` (UTC ``start``
    inclusive, ``end`` exclusive, New York days). :class:`BarQuery` and ``tickschema.TickQuery`` add their kind's
    fields; a source (``massive_feeds.source``) answers for either."""

    parsed: tuple[Ticker, ...]
    range: DateRange

    @property
    def tickers(self) -> tuple[str, ...]:
        """The tickers in Massive's form."""
        return tuple(t.symbol for t in self.parsed)

    @property
    def symbols(self) -> list[str]:
        """The tickers as a list (as the rest of the library passes them)."""
        return [t.symbol for t in self.parsed]

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (``tickers=``, ``interval=``, ``range=`` …), still validated by type."""
        from dataclasses import replace

        if "tickers" in changes:
            changes["parsed"] = parse_tickers(changes.pop("tickers"))
        return replace(self, **changes)


@dataclass(frozen=True)
class BarQuery(Query):
    """One bar request, validated: what every back end (REST, flat files, the history store) and adapter
    carries. Build it once from user input with :meth:`build`; nothing below parses it again.

    ``session`` is ``"extended"`` or ``"regular"``; ``adjusted`` means split-adjusted prices and ``total`` cash
    dividends on top (total return, see :mod:`massive_feeds.dividends`; :attr:`adjustment` names the two together:
    ``"raw"``, ``"splits"``, ``"total"``); ``roll_adjust`` (continuous futures only) is ``"none"``, ``"ratio"`` or
    ``"difference"`` (see :mod:`massive_feeds.futures`).
    """

    interval: Interval = INTERVALS["1h"]
    session: Session = "extended"
    adjusted: bool = True
    roll_adjust: str = "none"
    total: bool = False

    def __post_init__(self) -> None:
        if self.total and not self.adjusted:
            raise InvalidInputError("total-return prices are split-adjusted too: total=True needs adjusted=True")

    @classmethod
    def build(cls, symbols: str | Iterable[str], start: DateLike, end: DateLike, interval: str | Interval = "1h",
              *, session: str = "extended", adjusted: bool | str = True, roll_adjust: str = "none") -> "BarQuery":
        """Validate user input (tickers, dates, interval, session, adjustment, roll adjustment) into a query; a
        typed :class:`InvalidInputError` names the first bad value. ``adjusted``: ``True``/``"splits"``,
        ``"total"`` or ``False``/``"raw"`` (:func:`parse_adjustment`)."""
        adjustment = parse_adjustment(adjusted)
        return cls(parse_tickers(symbols), parse_date_range(start, end), parse_interval(interval),
                   validate_session(session), adjustment != "raw", validate_roll_adjust(roll_adjust),
                   adjustment == "total")

    @property
    def adjustment(self) -> Adjustment:
        """``"raw"``, ``"splits"`` or ``"total"``."""
        return "total" if self.total else "splits" if self.adjusted else "raw"

    def __repr__(self) -> str:
        return (f"BarQuery({','.join(self.tickers)} {self.interval.name} {self.range.first_day}..{self.range.last_day}"
                f", session={self.session}, adjusted={'total' if self.total else self.adjusted})")


# --- frames ---------------------------------------------------------------------------------------
def empty_bars() -> pd.DataFrame:
    """A zero-row frame with the standard columns and dtypes."""
    return finalize_bars(pd.DataFrame({c: [] for c in BAR_COLUMNS}))


def _sorted_unique_order(codes: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Row order that sorts by (symbol code, time) keeping the last of duplicates; None if already so."""
    if len(ts) < 2:
        return None
    dc, dt = np.diff(codes), np.diff(ts)
    if np.all((dc > 0) | ((dc == 0) & (dt > 0))):
        return None  # the common case (one REST/flat-file symbol): no sort, no copy
    order = np.lexsort((np.arange(len(ts)), ts, codes))
    c, t = codes[order], ts[order]
    last = np.r_[(c[1:] != c[:-1]) | (t[1:] != t[:-1]), True]
    return order[last]


def finalize_bars(df: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Coerce a frame to the standard schema: dtypes, sort by (symbol, timestamp), drop duplicates
    keeping the last, fresh RangeIndex. ``extra`` names further columns to keep after the standard ones."""
    ts = df["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = pd.to_datetime(ts, utc=True)
    ts_ns = ts.astype(TIMESTAMP_DTYPE).to_numpy(dtype="datetime64[ns]").view("int64")
    # the symbols as codes into their sorted names: no Python string per row is made (a year of minute
    # bars is ~350k rows; the object round trip was a large share of a flat-file read)
    codes, names = pd.factorize(df["symbol"].astype("str"), sort=True)
    columns: dict[str, Any] = {"timestamp": ts_ns}
    for col in FLOAT_COLUMNS:
        columns[col] = (pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                        if col in df else np.full(len(df), np.nan))
    columns["transactions"] = (
        pd.to_numeric(df["transactions"], errors="coerce").fillna(0).to_numpy(dtype="int64")
        if "transactions" in df else np.zeros(len(df), dtype="int64")
    )
    order = _sorted_unique_order(codes, ts_ns)
    if order is not None:
        columns = {k: v[order] for k, v in columns.items()}
        codes = codes[order]
    else:  # zero-copy views of Arrow buffers are read-only: users must be able to edit the frame they get
        columns = {k: v if v.flags.writeable else v.copy() for k, v in columns.items()}
    picked = slice(None) if order is None else order
    for col in extra:  # a typed column keeps its dtype (no object round trip); object columns are inferred
        values = df[col].array[picked]
        columns[col] = values.to_numpy() if values.dtype == object else values.copy()
    columns = {"timestamp": columns.pop("timestamp"), "symbol": _str_array(codes, names), **columns}
    out = pd.DataFrame(columns, copy=False)
    out["timestamp"] = pd.to_datetime(out["timestamp"], unit="ns", utc=True)
    return out


def _str_array(codes: np.ndarray, names: pd.Index) -> pd.api.extensions.ExtensionArray:
    """The pandas ``str`` column whose row ``i`` is ``names[codes[i]]`` (missing where the code is -1),
    taken in Arrow from the few distinct names."""
    values = pa.array(names.to_numpy(dtype=object), pa.large_string())
    return pd.array(values.take(pa.array(codes, mask=codes < 0)), dtype="str")


def ws_symbol(ticker: "str | Ticker") -> str:
    """The WebSocket subscription form of a ticker: forex ``EUR/USD``, crypto ``BTC-USD``, others as-is."""
    cls, ticker = (ticker.asset, ticker.symbol) if isinstance(ticker, Ticker) else (asset_class(ticker), ticker)
    if cls in ("forex", "crypto"):
        body = ticker[2:]
        pair = _split_pair(body)
        base, quote = pair if pair else (body[:3], body[3:])
        return f"{base}/{quote}" if cls == "forex" else f"{base}-{quote}"
    return ticker


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
