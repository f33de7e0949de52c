"""Deterministic, realistic synthetic markets: the single source every sandbox server serves from.

Everything is derived from ticks. For each (ticker, New York calendar day) the generator draws a
seeded stream of trades (or index values / forex quotes) over that asset's trading hours; minute bars
are aggregated from those ticks, day bars from the minute bars' ticks, larger bars from those. So the
REST aggregates, the S3 flat files and the WebSocket stream all agree with each other, and a recording
of the stream resamples to exactly the bars REST serves.

Prices follow a smooth daily anchor (a sum of slow sinusoids, so any day can be generated without the
days before it) joined by a Brownian bridge inside the day; activity is U-shaped over the regular
session, sparse in pre-/after-hours, and minutes without a trade produce no bar, as on the real service.

Calendar: stocks, options and indices trade on NYSE (XNYS) sessions from ``exchange_calendars``: no
ticks on exchange holidays, and on early-close days (e.g. 2024-07-03, 2024-11-29) the regular session
ends at 13:00 New York and after-hours runs to 17:00. Forex trades on weekdays, crypto every day.

Splits: the anchor is the *split-adjusted* price level, and ticks are **raw** prices as traded — before
a split, the adjusted level divided by the cumulative factor (``split_from / split_to``) of every split
executed later. So raw series jump at each split while the adjusted series stays continuous.
:meth:`MarketGenerator.bars` and friends give raw bars by default and adjusted bars (prices × factor,
volumes ÷ factor, trade counts unchanged, applied to minute/day bars before any aggregation, as
Massive's REST ``adjusted=true``) on request. The WebSocket stream and the flat files carry raw prices.
:data:`DEFAULT_SPLITS` are fixed; :func:`recent_splits` adds two relative to the sandbox clock.

Any day from :data:`HISTORY_START` (2003-09-10) on can be generated, lazily and in about a millisecond
per ticker-day; ticks are kept in an LRU of recent ticker-days and day bars in an LRU of ticker-months,
so memory stays small whatever range is asked. :meth:`MarketGenerator.tick_columns` gives a day's
trades or quotes in REST ``/v3`` field names (the rows REST, the ``trades_v1``/``quotes_v1`` files and
the WebSocket events share); :meth:`~MarketGenerator.dividends` a regular dividend table.

Dividends: raw prices drop on each ex-dividend date, as a holder's shares do: the day's level is scaled by
``1 - cash / price`` for every ex-date since :data:`DIVIDEND_REFERENCE` (and divided by it for ex-dates
between a day and that reference), so prices near 2024 stay where they were and a total-return series (raw ×
the service's ``historical_adjustment_factor``, :meth:`MarketGenerator.dividend_adjustment_factor`) stays
smooth across ex-dates. REST aggregates are never dividend-adjusted, as on the real service.

This module is sandbox-only. The library never imports it.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from ..schema import NEW_YORK, asset_class

MINUTE_MS = 60_000
DAY_MS = 86_400_000

#: The first day the sandbox serves history for (Massive's tick history reaches back to 2003). REST
#: tick queries and the flat-file bucket start here; any later day up to the sandbox clock is generated
#: on demand.
HISTORY_START = date(2003, 9, 10)

#: Tick kinds each asset class has on REST ``/v3/trades``/``/v3/quotes`` and as ``trades_v1``/
#: ``quotes_v1`` flat files (the OpenAPI spec has no crypto quotes, no forex trades, nothing for indices).
TICK_KINDS: dict[str, tuple[str, ...]] = {
    "stocks": ("trades", "quotes"), "options": ("trades", "quotes"), "forex": ("quotes",),
    "crypto": ("trades",), "indices": (),
}

#: REST ``/v3/trades``/``/v3/quotes`` result fields per (asset, kind), in the spec's (alphabetical)
#: order; from ``.massive/rest.json`` of massive-com/client-python (the official OpenAPI spec).
TICK_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stocks", "trades"): ("exchange", "id", "participant_timestamp", "price", "sequence_number",
                           "sip_timestamp", "size", "tape"),
    ("options", "trades"): ("exchange", "participant_timestamp", "price", "sip_timestamp", "size"),
    ("crypto", "trades"): ("conditions", "exchange", "id", "participant_timestamp", "price", "size"),
    ("stocks", "quotes"): ("ask_exchange", "ask_price", "ask_size", "bid_exchange", "bid_price", "bid_size",
                           "participant_timestamp", "sequence_number", "sip_timestamp", "tape"),
    ("options", "quotes"): ("ask_exchange", "ask_price", "ask_size", "bid_exchange", "bid_price", "bid_size",
                            "sequence_number", "sip_timestamp"),
    ("forex", "quotes"): ("ask_exchange", "ask_price", "bid_exchange", "bid_price", "participant_timestamp"),
}

#: Tape per primary exchange (1 NYSE, 2 NYSE Arca/AMEX, 3 Nasdaq), as the WebSocket ``z`` field.
TAPES = {"XNYS": 1, "ARCX": 2, "XNAS": 3}


@dataclass(frozen=True)
class TickerInfo:
    """One instrument the sandbox knows, with the reference fields ``/v3/reference/tickers`` returns."""

    ticker: str
    name: str
    base_price: float
    type: str = "CS"
    primary_exchange: str = "XNAS"

    @property
    def asset(self) -> str:
        return asset_class(self.ticker)

    @property
    def market(self) -> str:
        return {"stocks": "stocks", "options": "options", "indices": "indices", "forex": "fx",
                "crypto": "crypto"}[self.asset]


DEFAULT_UNIVERSE: tuple[TickerInfo, ...] = (
    TickerInfo("AAPL", "Apple Inc.", 190.0),
    TickerInfo("MSFT", "Microsoft Corp", 410.0),
    TickerInfo("GOOGL", "Alphabet Inc. Class A", 150.0),
    TickerInfo("AMZN", "Amazon.com Inc", 180.0),
    TickerInfo("NVDA", "NVIDIA Corp", 120.0),
    TickerInfo("TSLA", "Tesla Inc", 220.0),
    TickerInfo("META", "Meta Platforms Inc. Class A", 500.0),
    TickerInfo("NFLX", "Netflix Inc", 650.0),
    TickerInfo("AMD", "Advanced Micro Devices", 160.0),
    TickerInfo("INTC", "Intel Corp", 30.0),
    TickerInfo("JPM", "JPMorgan Chase & Co", 200.0, primary_exchange="XNYS"),
    TickerInfo("V", "Visa Inc", 280.0, primary_exchange="XNYS"),
    TickerInfo("XOM", "Exxon Mobil Corp", 115.0, primary_exchange="XNYS"),
    TickerInfo("KO", "Coca-Cola Co", 62.0, primary_exchange="XNYS"),
    TickerInfo("DIS", "Walt Disney Co", 100.0, primary_exchange="XNYS"),
    TickerInfo("WMT", "Walmart Inc", 68.0, primary_exchange="XNYS"),
    TickerInfo("SPY", "SPDR S&P 500 ETF Trust", 520.0, type="ETF", primary_exchange="ARCX"),
    TickerInfo("QQQ", "Invesco QQQ Trust", 440.0, type="ETF"),
    TickerInfo("IWM", "iShares Russell 2000 ETF", 210.0, type="ETF", primary_exchange="ARCX"),
    TickerInfo("O:SPY251219C00650000", "SPY Dec 19 2025 650 Call", 8.0, type="call", primary_exchange=""),
    TickerInfo("O:AAPL250117C00200000", "AAPL Jan 17 2025 200 Call", 5.0, type="call", primary_exchange=""),
    TickerInfo("I:SPX", "S&P 500", 5200.0, type="INDEX", primary_exchange=""),
    TickerInfo("I:NDX", "Nasdaq-100", 18000.0, type="INDEX", primary_exchange=""),
    TickerInfo("I:DJI", "Dow Jones Industrial Average", 39000.0, type="INDEX", primary_exchange=""),
    TickerInfo("I:VIX", "CBOE Volatility Index", 15.0, type="INDEX", primary_exchange=""),
    TickerInfo("C:EURUSD", "Euro - United States Dollar", 1.08, type="", primary_exchange=""),
    TickerInfo("C:GBPUSD", "British Pound - United States Dollar", 1.27, type="", primary_exchange=""),
    TickerInfo("C:USDJPY", "United States Dollar - Japanese Yen", 150.0, type="", primary_exchange=""),
    TickerInfo("X:BTCUSD", "Bitcoin - United States Dollar", 65000.0, type="", primary_exchange=""),
    TickerInfo("X:ETHUSD", "Ethereum - United States Dollar", 3200.0, type="", primary_exchange=""),
    TickerInfo("X:SOLUSD", "Solana - United States Dollar", 150.0, type="", primary_exchange=""),
)


@dataclass(frozen=True)
class SplitInfo:
    """One split the sandbox serves on ``/v3/reference/splits``: ``split_to`` new shares for every
    ``split_from`` old ones, effective at the open of ``execution_date``."""

    ticker: str
    execution_date: date
    split_from: float
    split_to: float

    @property
    def price_factor(self) -> float:
        """Adjusted = raw × this, for bars before the execution date (0.25 for a 4-for-1 split)."""
        return self.split_from / self.split_to

    @property
    def id(self) -> str:
        return "E" + hashlib.sha1(f"{self.ticker}:{self.execution_date}".encode()).hexdigest()[:31]


#: Fixed splits inside the date ranges the tests use:
#: GOOGL 4-for-1 forward on Wed 2024-03-06 (REST test week 2024-03-04..08),
#: INTC 1-for-10 reverse on Wed 2024-01-31 (flat-file test range 2024-01-25..02-06).
DEFAULT_SPLITS: tuple[SplitInfo, ...] = (
    SplitInfo("GOOGL", date(2024, 3, 6), 1, 4),
    SplitInfo("INTC", date(2024, 1, 31), 10, 1),
)


@dataclass(frozen=True)
class DividendInfo:
    """One cash dividend ``/v3/reference/dividends`` lists (fields as the OpenAPI spec names them)."""

    ticker: str
    ex_dividend_date: date
    declaration_date: date
    record_date: date
    pay_date: date
    cash_amount: float
    frequency: int
    dividend_type: str = "CD"
    currency: str = "USD"

    @property
    def id(self) -> str:
        return "E" + hashlib.sha1(f"div:{self.ticker}:{self.ex_dividend_date}".encode()).hexdigest()[:31]


#: Dividend payers: (cash amount per payment in 2024, on today's share basis, payments per year). Amounts grow
#: ~5 % a year (smaller in 2003); before a split the cash per (old) share is scaled like the price. Raw prices
#: drop by about the amount on each ex-date (REST aggregates are never dividend-adjusted, as on the real service).
DIVIDEND_PAYERS: dict[str, tuple[float, int]] = {
    "AAPL": (0.25, 4), "MSFT": (0.75, 4), "JPM": (1.15, 4), "V": (0.52, 4), "XOM": (0.95, 4),
    "KO": (0.485, 4), "WMT": (0.2075, 4), "DIS": (0.45, 2), "INTC": (0.125, 4),
    "SPY": (1.59, 4), "QQQ": (0.66, 4), "IWM": (0.75, 4),
}


#: One-off distributions besides the regular ones (v3 ``dividend_type`` ``SC``, v1 ``distribution_type``
#: ``special``, ``frequency`` 0), as the real lists hold them: (ticker, ex-date, cash per share).
SPECIAL_DIVIDENDS: tuple[tuple[str, date, float], ...] = (("XOM", date(2024, 2, 21), 2.0),)

#: Cash dividends declared in another currency than the prices (as a cross-listed issuer's are), so a keyless
#: ``adjusted="total"`` run shows the refusal: (ticker, ex-date, cash per share, currency). NFLX pays nothing
#: else, so its prices carry no drop for it and no other test counts its dividends.
FOREIGN_DIVIDENDS: tuple[tuple[str, date, float, str], ...] = (("NFLX", date(2024, 3, 12), 0.5, "CAD"),)

#: The day the dividend drops are counted from: raw prices of a payer are the smooth level scaled by its
#: ex-date drops since this day (or lifted by those between a day before it and it), so 2024 prices barely move.
DIVIDEND_REFERENCE = date(2024, 1, 1)


def recent_splits(clock_day: date) -> tuple[SplitInfo, ...]:
    """Two splits near the sandbox clock, so demo ranges (the last week or two) show them:
    TSLA 3-for-1 three NYSE sessions before ``clock_day`` and AMD 1-for-5 reverse six sessions before."""
    sessions: list[date] = []
    day = clock_day
    while len(sessions) < 6:
        day -= timedelta(days=1)
        if is_nyse_session(day):
            sessions.append(day)
    return (SplitInfo("TSLA", sessions[2], 1, 3), SplitInfo("AMD", sessions[5], 5, 1))


@lru_cache(maxsize=1)
def _nyse_schedule() -> tuple[dict[date, tuple[int, int]], date, date]:
    """NYSE sessions → (open ms, close ms) UTC, and the calendar's first/last day, straight from
    exchange_calendars (independent of the library's own session code, which the sandbox tests)."""
    import exchange_calendars

    with warnings.catch_warnings():  # exchange_calendars 4.13 trips a pandas 3.1 deprecation inside itself
        warnings.filterwarnings("ignore", message="Series.values returning")
        sched = exchange_calendars.get_calendar("XNYS", start="2000-01-01").schedule
    opens = pd.DatetimeIndex(sched["open"]).as_unit("ms").asi8
    closes = pd.DatetimeIndex(sched["close"]).as_unit("ms").asi8
    days = [d.date() for d in sched.index]
    return {d: (int(o), int(c)) for d, o, c in zip(days, opens, closes)}, days[0], days[-1]


def _calendar_covers(day: date) -> bool:
    _, first, last = _nyse_schedule()
    return first <= day <= last


def _nyse_session(day: date) -> tuple[int, int] | None:
    """(open ms, close ms) of the NYSE session on ``day``, or None on holidays and weekends."""
    return _nyse_schedule()[0].get(day)


def is_nyse_session(day: date) -> bool:
    """Whether stocks trade in the sandbox on ``day`` (weekdays outside the calendar's range)."""
    return _nyse_session(day) is not None if _calendar_covers(day) else day.weekday() < 5


# Per asset: (session open, session close) in New York local time, busy window inside it,
# ticks per minute in the busy window and outside it, daily volatility.
_SESSIONS = {
    "stocks": (time(4), time(20), (time(9, 30), time(16)), 12.0, 0.35, 0.015),
    "options": (time(9, 30), time(16), (time(9, 30), time(16)), 1.2, 1.2, 0.06),
    "indices": (time(9, 30), time(16), (time(9, 30), time(16)), 12.0, 12.0, 0.01),
    "forex": (time(0), None, (time(3), time(12)), 20.0, 8.0, 0.005),
    "crypto": (time(0), None, (time(8), time(22)), 10.0, 5.0, 0.03),
}


class DayTicks(NamedTuple):
    """One ticker-day of ticks, sorted by time. ``price``/``size`` are the prints bars are built from
    (trades; index values with size 0; forex mid quotes with size 1). Quotes ride along each print."""

    t_ms: np.ndarray
    price: np.ndarray
    size: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    exchange: np.ndarray


class TickColumns(NamedTuple):
    """One ticker-day of trades or quotes as REST ``/v3`` columns (wire names, see :data:`TICK_FIELDS`).

    ``t_ns`` is the timestamp the ``timestamp`` filters and the sort use (``sip_timestamp`` for stocks
    and options, ``participant_timestamp`` for crypto and forex), always the generator tick's ms × 10⁶,
    so the REST rows, the flat-file rows and the WebSocket events (ms) of a tick carry the same instant.
    ``columns`` maps field name → array; ``conditions`` (crypto) holds one condition code per row."""

    ticker: str
    kind: str
    t_ns: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.t_ns)


class Bars(NamedTuple):
    """Aggregates as parallel arrays; ``t`` is the window start in epoch ms."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - Massive's own key
    c: np.ndarray
    v: np.ndarray
    vw: np.ndarray
    n: np.ndarray

    @property
    def size(self) -> int:
        return len(self.t)

    def slice(self, sel: slice | np.ndarray) -> "Bars":
        return Bars(*(a[sel] for a in self))


def _decimals(asset: str, price: float) -> int:
    if asset == "forex":
        return 3 if price > 20 else 5
    return 2 if price >= 1 else 6


def _utc_ms(day: date, at: time | None) -> int:
    """Epoch ms of New York local ``at`` on ``day`` (``None`` = the next midnight)."""
    if at is None:
        day, at = day + timedelta(days=1), time(0)
    return int(datetime.combine(day, at, NEW_YORK).timestamp() * 1000)


def aggregate(t_ms: np.ndarray, price: np.ndarray, size: np.ndarray, bucket_ms: int) -> Bars:
    """Ticks → bars in epoch-aligned buckets of ``bucket_ms`` (sandbox-side, independent of the library)."""
    if len(t_ms) == 0:
        e = np.empty(0)
        return Bars(np.empty(0, np.int64), e, e, e, e, e, e, np.empty(0, np.int64))
    bucket = t_ms // bucket_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t_ms)] - 1
    v = np.round(np.add.reduceat(size, starts), 8)  # no float dust like 0.10028700000000002
    pv = np.add.reduceat(price * size, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vw = np.where(v > 0, np.round(pv / np.where(v > 0, v, 1), 4), np.nan)
    return Bars(
        bucket[starts] * bucket_ms, price[starts], np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts), price[ends], v, vw, np.diff(np.r_[starts, len(t_ms)]),
    )


_FIRST = np.zeros(1, dtype=np.intp)


def _one_bar(t: int, price: np.ndarray, size: np.ndarray) -> Bars:
    """``aggregate`` of ticks that all fall in one bucket starting at ``t`` (same arithmetic, same
    bits), without the bucketing work: day bars over long ranges are built from thousands of days."""
    v = np.round(np.add.reduceat(size, _FIRST), 8)
    pv = np.add.reduceat(price * size, _FIRST)
    with np.errstate(invalid="ignore", divide="ignore"):
        vw = np.where(v > 0, np.round(pv / np.where(v > 0, v, 1), 4), np.nan)
    return Bars(np.array([t], np.int64), price[:1], np.maximum.reduceat(price, _FIRST),
                np.minimum.reduceat(price, _FIRST), price[-1:], v, vw, np.array([len(price)], np.int64))


@lru_cache(maxsize=64)
def _rate_profile(minutes: int, busy0: int, busy1: int, busy_rate: float, quiet_rate: float) -> np.ndarray:
    """Expected ticks per minute over a session of ``minutes`` minutes whose busy window is minutes
    ``[busy0, busy1)``: U-shaped inside it (more activity near its open and close), flat outside.
    The same for every ordinary day of an asset class, so computed once."""
    m = np.arange(minutes, dtype=np.int64)
    pos = np.clip((m - busy0) / max(busy1 - busy0, 1), 0, 1)
    rate = np.where((m >= busy0) & (m < busy1), busy_rate * (0.55 + 3.6 * (pos - 0.5) ** 2), quiet_rate)
    rate.setflags(write=False)
    return rate


def combine(bars: Bars, keys: np.ndarray) -> Bars:
    """Merge consecutive bars that share a key (window start in ms) into one bar per key."""
    if bars.size == 0:
        return bars
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)] - 1
    v = np.round(np.add.reduceat(bars.v, starts), 8)
    pv = np.add.reduceat(np.nan_to_num(bars.vw) * bars.v, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vw = np.where(v > 0, np.round(pv / np.where(v > 0, v, 1), 4), np.nan)
    return Bars(
        keys[starts], bars.o[starts], np.maximum.reduceat(bars.h, starts), np.minimum.reduceat(bars.l, starts),
        bars.c[ends], v, vw, np.add.reduceat(bars.n, starts),
    )


def _tick_rule(price: np.ndarray) -> np.ndarray:
    """+1 (bought at the ask) or -1 (sold at the bid) per print: the sign of its price change, an unchanged
    print keeping the previous sign, +1 before the first change."""
    move = np.sign(np.diff(price, prepend=price[:1]))
    last = np.maximum.accumulate(np.where(move != 0, np.arange(len(price)), 0))
    side = move[last]
    return np.where(side == 0, 1.0, side)


class MarketGenerator:
    """Seeded synthetic market over a universe of tickers. Same seed → same ticks, forever."""

    def __init__(self, seed: int = 7, universe: tuple[TickerInfo, ...] = DEFAULT_UNIVERSE,
                 splits: Iterable[SplitInfo] = DEFAULT_SPLITS) -> None:
        self.seed = seed
        self.universe = {info.ticker: info for info in universe}
        self.splits: tuple[SplitInfo, ...] = tuple(sorted(splits, key=lambda s: (s.execution_date, s.ticker)))
        # Bounded: any day can be generated again in about a millisecond, so only recent days are kept.
        self._ticks = lru_cache(maxsize=256)(self._make_ticks)
        # Raw day bars by (ticker, year, month): a few KB each, so long daily ranges (2003 to today)
        # are generated once per month and day files / daily REST reuse them.
        self._month_bars = lru_cache(maxsize=2048)(self._make_month_bars)
        self._drops = lru_cache(maxsize=64)(self._make_drops)
        self._event_factor = lru_cache(maxsize=4096)(self._make_event_factor)

    def __repr__(self) -> str:
        return f"MarketGenerator(seed={self.seed}, tickers={len(self.universe)}, splits={len(self.splits)})"

    def knows(self, ticker: str) -> bool:
        return ticker in self.universe

    def is_trading_day(self, ticker: str, day: date) -> bool:
        """Crypto trades every day; forex on weekdays; US stocks, options and indices on NYSE sessions
        (weekdays outside the calendar's range). Nothing trades before :data:`HISTORY_START`."""
        if day < HISTORY_START:
            return False
        asset = asset_class(ticker)
        if asset == "crypto":
            return True
        return day.weekday() < 5 if asset == "forex" else is_nyse_session(day)

    def early_close(self, day: date) -> bool:
        """Whether NYSE closes early (13:00 New York) on ``day``."""
        session = _nyse_session(day)
        return session is not None and session[1] < _utc_ms(day, time(16))

    def price_factor(self, ticker: str, day: date) -> float:
        """Adjusted = raw × this on ``day``: the product of ``split_from / split_to`` over the
        ticker's splits executed after ``day`` (1.0 when none)."""
        factor = 1.0
        for split in reversed(self.splits):
            if split.ticker == ticker and split.execution_date > day:
                factor *= split.price_factor
        return factor

    # --- prices ---------------------------------------------------------------------------------
    def _phase(self, ticker: str, k: int) -> float:
        return (zlib.crc32(f"{self.seed}:{ticker}:{k}".encode()) % 10_000) / 10_000 * 2 * np.pi

    def anchor(self, ticker: str, day: date) -> float:
        """The price level a day opens at: smooth in time and known for any day without the days before."""
        x = day.toordinal()
        base = self.universe[ticker].base_price
        wave = (0.12 * np.sin(2 * np.pi * x / 181 + self._phase(ticker, 1))
                + 0.05 * np.sin(2 * np.pi * x / 23 + self._phase(ticker, 2))
                + 0.008 * np.sin(2 * np.pi * x / 5 + self._phase(ticker, 3)))
        return float(base * np.exp(wave))

    # --- ticks ----------------------------------------------------------------------------------
    def ticks(self, ticker: str, day: date) -> DayTicks:
        """All ticks of ``ticker`` on New York calendar day ``day`` (empty on non-trading days)."""
        return self._ticks(ticker, day)

    def _make_ticks(self, ticker: str, day: date) -> DayTicks:
        return self._draw(ticker, day, full=True)  # type: ignore[return-value]

    def _draw(self, ticker: str, day: date, full: bool) -> DayTicks | tuple[np.ndarray, np.ndarray]:
        """The day's seeded draws: all ticks (``full``), or only ``(price, size)`` in tick order — all a
        day bar needs, about twice as fast (the same random stream, so the very same prices and sizes)."""
        asset = asset_class(ticker)
        if not self.knows(ticker) or not self.is_trading_day(ticker, day):
            e = np.empty(0)
            return DayTicks(np.empty(0, np.int64), e, e, e, e, e, e, np.empty(0, np.int8)) if full else (e, e)
        open_t, close_t, (busy_from, busy_to), busy_rate, quiet_rate, vol = _SESSIONS[asset]
        if asset != "forex" and asset != "crypto" and self.early_close(day):
            # Early close: the regular session ends at 13:00; after-hours run four hours past it.
            busy_to = time(13)
            close_t = time(17) if asset == "stocks" else time(13)
        first_min = _utc_ms(day, open_t) // MINUTE_MS
        last_min = _utc_ms(day, close_t) // MINUTE_MS
        busy0, busy1 = _utc_ms(day, busy_from) // MINUTE_MS, _utc_ms(day, busy_to) // MINUTE_MS
        rate = _rate_profile(last_min - first_min, busy0 - first_min, busy1 - first_min, busy_rate, quiet_rate)

        rng = np.random.default_rng([self.seed, zlib.crc32(ticker.encode()), day.toordinal()])
        counts = rng.poisson(rate)
        n = int(counts.sum())
        offsets = rng.integers(0, MINUTE_MS, n)  # drawn either way: the draws below depend on it

        a0, a1 = self.anchor(ticker, day), self.anchor(ticker, day + timedelta(days=1))
        steps = rng.normal(0.0, vol / np.sqrt(max(n, 1)), n)
        walk = np.cumsum(steps)
        frac = np.arange(1, n + 1) / max(n, 1)
        log_price = np.log(a0) + frac * (np.log(a1) - np.log(a0)) + walk - frac * (walk[-1] if n else 0.0)
        factor = self.price_factor(ticker, day)  # raw = adjusted level / factor before later splits
        decimals = _decimals(asset, a0 / factor)
        tick = 10.0 ** -decimals
        price = np.round(np.exp(log_price) / factor * self.dividend_level(ticker, day), decimals)

        if asset == "stocks":
            lots = np.array([100, 100, 100, 100, 200, 300, 500, 1000, 5, 10, 37, 50])
            size = rng.choice(lots, n).astype(np.float64)
            if factor != 1.0:  # fewer, pricier shares before a forward split: adjusted volume stays level
                size = np.maximum(1.0, np.round(size * factor))
        elif asset == "options":
            size = rng.integers(1, 25, n).astype(np.float64)
        elif asset == "crypto":
            size = np.round(rng.lognormal(-3.0, 1.2, n), 6) + 1e-6
        elif asset == "forex":
            size = np.ones(n)
        else:  # indices have values, not trades
            size = np.zeros(n)
        if not full:
            return price, size
        minutes = np.arange(first_min, last_min, dtype=np.int64)
        t_ms = np.repeat(minutes * MINUTE_MS, counts) + offsets
        t_ms.sort()
        half_spread = np.maximum(np.round(price * 0.0002, decimals), tick)
        if asset in ("stocks", "options"):
            # a print at the touch, as real trades are: an uptick takes the ask, a downtick hits the bid (the
            # tick rule; an unchanged print keeps the last side). No draw: the random stream stays as it was
            side = _tick_rule(price)
            bid = np.round(np.where(side > 0, price - 2 * half_spread, price), decimals)
            ask = np.round(np.where(side > 0, price, price + 2 * half_spread), decimals)
        else:  # forex quotes are the price itself (its mid); crypto has no quotes
            bid = np.round(price - half_spread, decimals)
            ask = np.round(price + half_spread, decimals)
        quote_sizes = rng.integers(1, 20, (2, n)).astype(np.float64)
        exchange = rng.integers(1, 20, n).astype(np.int8)
        return DayTicks(t_ms, price, size, bid, ask, quote_sizes[0], quote_sizes[1], exchange)

    def tick_kinds(self, ticker: str) -> tuple[str, ...]:
        """``("trades", "quotes")``, ``("quotes",)`` (forex), ``("trades",)`` (crypto) or ``()`` (indices)."""
        return TICK_KINDS[asset_class(ticker)]

    def tick_columns(self, ticker: str, day: date, kind: str) -> TickColumns:
        """The day's ``trades`` or ``quotes`` as REST ``/v3`` columns, derived from :meth:`ticks` exactly
        as the WebSocket stream derives its ``T``/``Q``/``XT``/``C`` events (same values, same order;
        ``sequence_number`` and trade ``id`` are the tick's index in the day, as the WS ``q``/``i``).

        Prices are raw (as traded). Fields the stream does not carry are derived deterministically:
        a stock's ``participant_timestamp`` is 0.1–1 ms before its ``sip_timestamp``."""
        asset = asset_class(ticker)
        if kind not in TICK_KINDS[asset]:
            raise ValueError(f"{asset} has no {kind} (only {', '.join(TICK_KINDS[asset]) or 'none'})")
        tk = self.ticks(ticker, day)
        n = len(tk.t_ms)
        t_ns = tk.t_ms * 1_000_000
        seq = np.arange(n, dtype=np.int64)
        tape = np.full(n, TAPES.get(self.universe[ticker].primary_exchange, 3) if self.knows(ticker) else 3,
                       dtype=np.int64)
        participant = t_ns - (100_000 + (seq * 7919) % 900_000) if asset == "stocks" else t_ns
        x = tk.exchange.astype(np.int64)
        if kind == "trades":
            cols = {"exchange": x, "id": seq.astype(str).astype(object), "participant_timestamp": participant,
                    "price": tk.price, "sequence_number": seq, "sip_timestamp": t_ns, "size": tk.size,
                    "tape": tape, "conditions": 1 + seq % 2}
            if asset != "crypto":
                cols["size"] = tk.size.astype(np.int64)
        else:
            ask_x = np.full(n, 48, np.int64) if asset == "forex" else (x % 19) + 1
            bid_x = np.full(n, 48, np.int64) if asset == "forex" else x
            cols = {"ask_exchange": ask_x, "ask_price": tk.ask, "ask_size": tk.ask_size.astype(np.int64),
                    "bid_exchange": bid_x, "bid_price": tk.bid, "bid_size": tk.bid_size.astype(np.int64),
                    "participant_timestamp": participant, "sequence_number": seq, "sip_timestamp": t_ns,
                    "tape": tape}
        fields = TICK_FIELDS[(asset, kind)]
        return TickColumns(ticker, kind, t_ns, {f: cols[f] for f in fields})

    # --- latest state, reference data ---------------------------------------------------------------
    def last_tick(self, ticker: str, at_ms: int, lookback_days: int = 10) -> tuple[date, int] | None:
        """``(day, index)`` of the latest tick at or before ``at_ms`` (epoch ms), looking back up to
        ``lookback_days`` calendar days; None when there is none."""
        day = datetime.fromtimestamp(at_ms / 1000, NEW_YORK).date()
        for _ in range(lookback_days + 1):
            t = self.ticks(ticker, day).t_ms
            i = int(np.searchsorted(t, at_ms, side="right")) - 1
            if i >= 0:
                return day, i
            day -= timedelta(days=1)
        return None

    def previous_session(self, ticker: str, day: date, lookback_days: int = 15) -> date | None:
        """The last trading day of ``ticker`` strictly before ``day``."""
        for k in range(1, lookback_days + 1):
            if self.is_trading_day(ticker, day - timedelta(days=k)):
                return day - timedelta(days=k)
        return None

    def split_factor_between(self, ticker: str, after: date, through: date) -> float:
        """Adjusted-as-of-``through`` = raw × this for prices of day ``after``: the product of
        ``split_from / split_to`` over splits executed in ``(after, through]`` (splits after
        ``through`` have not happened yet as of that day)."""
        factor = 1.0
        for split in self.splits:
            if split.ticker == ticker and after < split.execution_date <= through:
                factor *= split.price_factor
        return factor

    def regular_bounds(self, day: date) -> tuple[int, int]:
        """(open ms, close ms) of the regular session on ``day`` (09:30 to 16:00 New York, 13:00 on
        early-close days)."""
        session = _nyse_session(day) if _calendar_covers(day) else None
        if session is not None:
            return session
        return _utc_ms(day, time(9, 30)), _utc_ms(day, time(16))

    def dividends(self, first: date, last: date, only: str | None = None) -> list[DividendInfo]:
        """Every dividend of the universe's payers (or of ``only``) with an ex-dividend date in ``[first, last]``:
        regular payments (quarterly or semi-annual) whose ex-date is the first trading day on or after
        the 10th of the month; declared 3 weeks before, recorded the next trading day, paid 2 weeks later; and the
        one-off :data:`SPECIAL_DIVIDENDS` and :data:`FOREIGN_DIVIDENDS`. The cash per share is on the basis of its day: before a split it is
        scaled like the price."""
        out: list[DividendInfo] = []
        first = max(first, HISTORY_START)
        for ticker, (amount, per_year) in DIVIDEND_PAYERS.items():
            if not self.knows(ticker) or (only is not None and ticker != only):
                continue
            step = 12 // per_year
            offset = zlib.crc32(f"{self.seed}:div:{ticker}".encode()) % step  # payment months per ticker
            for year in range(first.year, last.year + 1):
                for month in range(1 + offset, 13, step):
                    ex = date(year, month, 10)
                    if ex < HISTORY_START:  # nothing trades yet: no payment (not one moved to the first day)
                        continue
                    while not self.is_trading_day(ticker, ex):
                        ex += timedelta(days=1)
                    if not first <= ex <= last:
                        continue
                    record = ex + timedelta(days=1)
                    while not self.is_trading_day(ticker, record):
                        record += timedelta(days=1)
                    cash = round(amount * 1.05 ** (year - 2024) / self.price_factor(ticker, ex), 4)
                    out.append(DividendInfo(ticker, ex, ex - timedelta(days=21), record, ex + timedelta(days=14),
                                            cash, per_year))
        for ticker, ex, cash in SPECIAL_DIVIDENDS:
            if self.knows(ticker) and (only is None or ticker == only) and first <= ex <= last:
                out.append(DividendInfo(ticker, ex, ex - timedelta(days=14), ex + timedelta(days=1),
                                        ex + timedelta(days=10), cash, 0, dividend_type="SC"))
        for ticker, ex, cash, currency in FOREIGN_DIVIDENDS:
            if self.knows(ticker) and (only is None or ticker == only) and first <= ex <= last:
                out.append(DividendInfo(ticker, ex, ex - timedelta(days=21), ex + timedelta(days=1),
                                        ex + timedelta(days=14), cash, 1, currency=currency))
        return out

    def _payments(self, ticker: str) -> list[DividendInfo]:
        return sorted(self.dividends(HISTORY_START, date(2100, 12, 31), only=ticker), key=lambda d: d.ex_dividend_date)

    def _make_drops(self, ticker: str) -> tuple[np.ndarray, np.ndarray]:
        """(ex-date day numbers, cumulative log of ``1 - cash / level``) of a payer's dividends, for
        :meth:`dividend_level`; the level is the day's raw anchor before any dividend scaling."""
        pays = self._payments(ticker)
        days = np.array([d.ex_dividend_date.toordinal() for d in pays], dtype=np.int64)
        drops = np.array([np.log1p(-d.cash_amount * self.price_factor(ticker, d.ex_dividend_date)
                                   / self.anchor(ticker, d.ex_dividend_date)) for d in pays])
        return days, np.r_[0.0, np.cumsum(drops)]

    def dividend_level(self, ticker: str, day: date) -> float:
        """The factor raw prices carry on ``day`` for the payer's ex-date drops counted from
        :data:`DIVIDEND_REFERENCE` (1.0 for tickers without dividends)."""
        if ticker not in DIVIDEND_PAYERS or not self.knows(ticker):
            return 1.0
        days, cum = self._drops(ticker)
        at = cum[np.searchsorted(days, day.toordinal(), side="right")]
        ref = cum[np.searchsorted(days, DIVIDEND_REFERENCE.toordinal(), side="right")]
        return float(np.exp(at - ref))

    def _make_event_factor(self, ticker: str, ex_date: date, cash: float) -> float:
        """``1 - cash / previous close`` of one dividend: the raw close of the last session before the ex-date."""
        prev = self.previous_session(ticker, ex_date)
        bar = self.day_bar(ticker, prev) if prev is not None else None
        return 1.0 - cash / float(bar.c[0]) if bar is not None and bar.size else 1.0

    def dividend_adjustment_factor(self, ticker: str, ex_date: date, through: date) -> float | None:
        """The service's ``historical_adjustment_factor`` of one dividend as of ``through`` (6 decimals, as the
        service sends it; None when it has not gone ex by then): the product, over it and every later dividend
        that went ex by ``through``, of ``1 - cash / previous close``."""
        if ex_date > through:
            return None
        factor = 1.0
        for div in self.dividends(ex_date, through, only=ticker):
            factor *= self._event_factor(ticker, div.ex_dividend_date, div.cash_amount)
        return round(factor, 6)

    def split_adjustment_factor(self, ticker: str, execution_date: date) -> float:
        """The v1 splits ``historical_adjustment_factor``: the product of ``split_from / split_to`` over the
        ticker's splits executed on or after ``execution_date`` (6 significant decimals)."""
        factor = 1.0
        for split in self.splits:
            if split.ticker == ticker and split.execution_date >= execution_date:
                factor *= split.price_factor
        return float(f"{factor:.6g}")

    # --- bars -----------------------------------------------------------------------------------
    def _adjust(self, bars: Bars, ticker: str, day: date, adjusted: bool) -> Bars:
        """Split-adjust one day's base bars: prices × factor, volumes ÷ factor, counts unchanged."""
        factor = self.price_factor(ticker, day) if adjusted else 1.0
        if factor == 1.0 or bars.size == 0:
            return bars
        return bars._replace(o=bars.o * factor, h=bars.h * factor, l=bars.l * factor, c=bars.c * factor,
                             vw=bars.vw * factor, v=bars.v / factor)

    def minute_bars(self, ticker: str, day: date, adjusted: bool = False) -> Bars:
        """The day's minute bars: raw prices (as traded) unless ``adjusted``."""
        tk = self.ticks(ticker, day)
        return self._adjust(aggregate(tk.t_ms, tk.price, tk.size, MINUTE_MS), ticker, day, adjusted)

    def day_bar(self, ticker: str, day: date, adjusted: bool = False) -> Bars:
        """The day's single bar, stamped midnight New York of the session date (as Massive does)."""
        month = self._month_bars(ticker, day.year, day.month)
        return self._adjust(month.slice(month.t == _utc_ms(day, time(0))), ticker, day, adjusted)

    def day_bars(self, ticker: str, first: date, last: date, adjusted: bool = False) -> Bars:
        """Day bars of every trading day in ``[first, last]`` (New York dates), split-adjusted when
        ``adjusted`` — the same bars as :meth:`day_bar` day by day, built a month at a time."""
        if last < first:
            return self._month_bars(ticker, first.year, first.month).slice(slice(0, 0))
        months = []
        y, m = first.year, first.month
        while (y, m) <= (last.year, last.month):
            months.append(self._month_bars(ticker, y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        bars = Bars(*(np.concatenate(cols) for cols in zip(*months)))
        bars = bars.slice((bars.t >= _utc_ms(first, time(0))) & (bars.t <= _utc_ms(last, time(0))))
        if not adjusted or bars.size == 0:
            return bars
        factor = np.ones(bars.size)
        for split in self.splits:
            if split.ticker == ticker:
                factor = np.where(bars.t < _utc_ms(split.execution_date, time(0)), factor * split.price_factor,
                                  factor)
        if np.all(factor == 1.0):
            return bars
        return bars._replace(o=bars.o * factor, h=bars.h * factor, l=bars.l * factor, c=bars.c * factor,
                             vw=bars.vw * factor, v=bars.v / factor)

    def partial_day_bar(self, ticker: str, day: date, until_ms: int, adjusted: bool = False) -> Bars:
        """The day bar of ``day`` built from its ticks before ``until_ms`` only (empty when none)."""
        tk = self.ticks(ticker, day)
        n = int(np.searchsorted(tk.t_ms, until_ms, side="left"))
        if n == 0:
            return aggregate(np.empty(0, np.int64), np.empty(0), np.empty(0), 1)
        return self._adjust(_one_bar(_utc_ms(day, time(0)), tk.price[:n], tk.size[:n]), ticker, day, adjusted)

    def _cut_today(self, base: Bars, ticker: str, until_ms: int, adjusted: bool) -> Bars:
        """Replace the day bar of ``until_ms``'s day by the bar of its finished minutes."""
        day = datetime.fromtimestamp(until_ms / 1000, NEW_YORK).date()
        stamp = _utc_ms(day, time(0))
        hit = np.flatnonzero(base.t == stamp)
        if len(hit) == 0:
            return base
        part = self.partial_day_bar(ticker, day, (until_ms // MINUTE_MS) * MINUTE_MS, adjusted)
        i = int(hit[0])
        return Bars(*(np.concatenate([a[:i], b, a[i + 1:]]) for a, b in zip(base, part)))

    def _make_month_bars(self, ticker: str, year: int, month: int) -> Bars:
        """Raw day bars of one calendar month (ticks generated without filling the tick cache)."""
        day = date(year, month, 1)
        parts = []
        while day.month == month:
            if self.is_trading_day(ticker, day):
                price, size = self._draw(ticker, day, full=False)  # type: ignore[misc]
                if len(price):
                    parts.append(_one_bar(_utc_ms(day, time(0)), price, size))
            day += timedelta(days=1)
        if not parts:
            return aggregate(np.empty(0, np.int64), np.empty(0), np.empty(0), 1)
        return Bars(*(np.concatenate(cols) for cols in zip(*parts)))

    def bars(self, ticker: str, from_ms: int, to_ms: int, multiplier: int, timespan: str,
             adjusted: bool = False, until_ms: int | None = None) -> Bars:
        """Aggregates whose base bars (minutes, or days for day/week/month/…) start inside
        ``[from_ms, to_ms]``, for any REST ``multiplier``/``timespan``; split-adjusted base bars when
        ``adjusted`` (REST's default), raw otherwise. ``until_ms`` (the sandbox's "now"): the day bar of
        the day it falls in holds only the ticks of the minutes finished by then, not the whole day."""
        first_day = datetime.fromtimestamp(from_ms / 1000, NEW_YORK).date()
        last_day = datetime.fromtimestamp(to_ms / 1000, NEW_YORK).date()
        days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        intraday = timespan in ("minute", "hour")
        if intraday:
            base = Bars(*(np.concatenate(cols) for cols in zip(*(self.minute_bars(ticker, d, adjusted)
                                                                  for d in days))))
        else:
            base = self.day_bars(ticker, first_day, last_day, adjusted)
            if until_ms is not None:
                base = self._cut_today(base, ticker, until_ms, adjusted)
        base = base.slice((base.t >= from_ms) & (base.t <= to_ms))
        if intraday:
            width = multiplier * (MINUTE_MS if timespan == "minute" else 60 * MINUTE_MS)
            return combine(base, (base.t // width) * width)
        if timespan == "day" and multiplier == 1:
            return base
        return combine(base, self._period_keys(base.t, multiplier, timespan))

    @staticmethod
    def _period_keys(t_ms: np.ndarray, multiplier: int, timespan: str) -> np.ndarray:
        """Start (midnight New York, in ms) of the day/week/month period each day bar falls in."""
        days = [datetime.fromtimestamp(t / 1000, NEW_YORK).date() for t in t_ms]
        if timespan == "day":
            epoch = date(1970, 1, 1)
            starts = [epoch + timedelta(days=((d - epoch).days // multiplier) * multiplier) for d in days]
        elif timespan == "week":  # weeks start on Sunday, as Massive's weekly bars do
            starts = [d - timedelta(days=(d.weekday() + 1) % 7) for d in days]
        elif timespan == "month":
            starts = [d.replace(day=1) for d in days]
        elif timespan == "quarter":
            starts = [d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1) for d in days]
        else:  # year
            starts = [d.replace(month=1, day=1) for d in days]
        return np.array([_utc_ms(d, time(0)) for d in starts], dtype=np.int64)
