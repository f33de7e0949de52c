"""Trading sessions: which bars ``session="regular"`` keeps, from the NYSE (XNYS) exchange calendar.

Massive's intraday bars cover the whole extended day (pre-market from 04:00, after-hours until 20:00
New York). ``session`` on every fetch path chooses what you get:

* ``"extended"`` (default): everything the service returns, untouched.
* ``"regular"``: only 09:30–16:00 America/New_York on NYSE trading days, with the early closes
  (13:00 on the day after Thanksgiving, July 3 / Christmas Eve in most years) and holidays taken from
  the ``exchange_calendars`` package (calendar ``XNYS``), not from a hand-written list.

It applies to stocks, options and indices. Crypto and forex trade around the clock and have no
session to cut: their bars are returned unchanged whatever ``session`` says.

How ``regular`` is built: intraday bars are cut at minute resolution and rebuilt, so a ``1h`` bar
never mixes pre-market minutes into its first regular hour (for ``5m 15m 30m 1h 4h`` the fetch asks for
minute bars and resamples them with the same epoch-aligned buckets Massive uses). Day, week and month
bars are rebuilt from the regular-session minutes too, so their open is the first trade at or after
09:30 and their close the last trade before the (possibly early) close, and each day bar carries its
New York **session date** (midnight New York, as Massive stamps day bars). That costs minute data:
about one REST page per 50 trading days per symbol, or minute flat files instead of day files.

The calendar is built once per process (about 0.1 s) and covers 1990-01-01 to a year ahead of today.
"""

from __future__ import annotations

import logging
import threading
import warnings
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .errors import ConfigurationError, InvalidInputError
from .buckets import resample  # same bucket rules as flat files and REST
from .schema import (  # noqa: F401 - Session, SESSIONS, validate_session: also importable from here
    NEW_YORK,
    SESSION_ASSETS,
    SESSIONS,
    Interval,
    Session,
    asset_class,
    finalize_bars,
    parse_interval,
    validate_session,
)

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

log = logging.getLogger(__name__)

CALENDAR = "XNYS"
CALENDAR_START = "1990-01-01"
# lru_cache does not hold back a second caller while the first builds: the flat-file reader's threads
# asked for the calendar together and built it once each (~0.5 s of CPU apiece under one GIL)
_BUILD = threading.Lock()
_EPOCH = date(1970, 1, 1)
DAY_NS = 86_400_000_000_000
MINUTE_NS = 60_000_000_000


def has_sessions(ticker: str) -> bool:
    """Whether ``session="regular"`` cuts this ticker's bars (stocks, options, indices); :attr:`Ticker.has_sessions`
    for a parsed one."""
    return asset_class(ticker) in SESSION_ASSETS


def exchange_calendar() -> "ExchangeCalendar":
    """The NYSE calendar (``exchange_calendars`` ``XNYS``), built once per process (by one thread)."""
    with _BUILD:
        return _build_calendar()


@lru_cache(maxsize=1)
def _build_calendar() -> "ExchangeCalendar":
    try:
        import exchange_calendars
    except ImportError:  # a declared dependency; only a broken install lands here
        raise ConfigurationError(
            "session='regular' and the data-quality report need the exchange_calendars package: "
            "pip install exchange_calendars"
        ) from None
    with warnings.catch_warnings():  # exchange_calendars 4.13 trips a pandas 3.1 deprecation inside itself
        warnings.filterwarnings("ignore", message="Series.values returning")
        return exchange_calendars.get_calendar(CALENDAR, start=CALENDAR_START)


def _schedule_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(session day numbers since 1970, open ns UTC, close ns UTC, early-close flags), sorted."""
    if _schedule_built.cache_info().currsize:  # the usual case: no lock taken
        return _schedule_built()
    with _BUILD:
        return _schedule_built()


@lru_cache(maxsize=1)
def _schedule_built() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cal = _build_calendar()
    sched = cal.schedule
    days = pd.DatetimeIndex(sched.index).as_unit("ns").asi8 // DAY_NS
    opens = pd.DatetimeIndex(sched["open"]).as_unit("ns").asi8
    closes = pd.DatetimeIndex(sched["close"]).as_unit("ns").asi8
    local_close = pd.DatetimeIndex(sched["close"]).tz_convert(NEW_YORK)
    early = (local_close.hour * 60 + local_close.minute).to_numpy() < 16 * 60
    return days, opens, closes, early


def calendar_bounds() -> tuple[date, date]:
    """First and last session the calendar knows."""
    days = _schedule_arrays()[0]
    return (pd.Timestamp(days[0] * DAY_NS).date(), pd.Timestamp(days[-1] * DAY_NS).date())


def _day_numbers(days: np.ndarray | list[date]) -> np.ndarray:
    if isinstance(days, np.ndarray) and days.dtype.kind in "iu":
        return days.astype(np.int64)
    values = list(days) if not isinstance(days, np.ndarray) else days
    return pd.DatetimeIndex(pd.to_datetime(values)).as_unit("ns").asi8 // DAY_NS


def session_schedule(first_day: date, last_day: date) -> pd.DataFrame:
    """NYSE sessions between two dates (inclusive): index ``date`` (``datetime.date``), columns
    ``open`` / ``close`` (tz-aware UTC; early closes included) and ``early_close`` (bool)."""
    days, opens, closes, early = _schedule_arrays()
    lo = np.searchsorted(days, _day_numbers([first_day])[0], side="left")
    hi = np.searchsorted(days, _day_numbers([last_day])[0], side="right")
    _check_bounds(first_day, last_day)
    sel = slice(lo, hi)
    return pd.DataFrame({
        "open": pd.to_datetime(opens[sel], unit="ns", utc=True),
        "close": pd.to_datetime(closes[sel], unit="ns", utc=True),
        "early_close": early[sel],
    }, index=pd.Index([pd.Timestamp(d * DAY_NS).date() for d in days[sel]], name="date"))


def _check_bounds(first_day: date, last_day: date) -> None:
    lo, hi = calendar_bounds()
    if first_day < lo or last_day > hi:
        raise InvalidInputError(
            f"{first_day}..{last_day} is outside the {CALENDAR} calendar ({lo}..{hi}); "
            "use session='extended' for these dates"
        )


def is_trading_day(day: date) -> bool:
    """Whether NYSE holds a session on ``day`` (a lookup in the schedule's day numbers: the flat-file
    planner asks it for every day without a file)."""
    _check_bounds(day, day)
    days = _schedule_arrays()[0]
    number = (day - _EPOCH).days
    i = int(np.searchsorted(days, number))
    return i < len(days) and int(days[i]) == number


def trades_on(day: date, asset_classes: set[str] | frozenset[str]) -> bool:
    """Whether any of ``asset_classes`` trades on ``day``: crypto every day, forex on weekdays, the rest on
    NYSE sessions (weekdays outside the exchange calendar's range are assumed to trade)."""
    if "crypto" in asset_classes or ("forex" in asset_classes and day.weekday() < 5):
        return True
    try:
        return is_trading_day(day)
    except InvalidInputError:  # outside the exchange calendar: assume weekdays
        return day.weekday() < 5


def ny_day_numbers(ts_ns: np.ndarray) -> np.ndarray:
    """New York calendar day (days since 1970-01-01) of each UTC ns timestamp — the session date of a
    bar: a day bar stamped midnight New York maps to its own date, a minute bar to the day it trades in."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    if len(ts_ns) == 0:
        return ts_ns
    local = pd.DatetimeIndex(pd.to_datetime(ts_ns, unit="ns", utc=True)).tz_convert(NEW_YORK).tz_localize(None)
    return local.as_unit("ns").asi8 // DAY_NS


def session_bounds(day_numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each New York day number: (is a session, open ns, close ns); open/close are 0 off sessions.

    Raises :class:`InvalidInputError` when a day lies outside the calendar."""
    days, opens, closes, _ = _schedule_arrays()
    day_numbers = np.asarray(day_numbers, dtype=np.int64)
    if len(day_numbers) and (day_numbers.min() < days[0] or day_numbers.max() > days[-1]):
        lo, hi = day_numbers.min(), day_numbers.max()
        _check_bounds(pd.Timestamp(lo * DAY_NS).date(), pd.Timestamp(hi * DAY_NS).date())
    idx = np.clip(np.searchsorted(days, day_numbers), 0, len(days) - 1)
    found = days[idx] == day_numbers
    return found, np.where(found, opens[idx], 0), np.where(found, closes[idx], 0)


def regular_session_mask(symbols: np.ndarray | pd.Series, ts_ns: np.ndarray, width_ns: int = MINUTE_NS) -> np.ndarray:
    """True for bars to keep under ``session="regular"``: bars of crypto/forex always; bars of
    stocks, options and indices whose ``[start, start + width)`` lies inside a NYSE session."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    keep = np.ones(len(ts_ns), dtype=bool)
    if len(ts_ns) == 0:
        return keep
    codes, names = pd.factorize(np.asarray(symbols))
    bound = np.array([has_sessions(str(n)) for n in names], dtype=bool)
    rows = bound[codes]
    if not rows.any():
        return keep
    t = ts_ns[rows]
    found, opens, closes = session_bounds(ny_day_numbers(t))
    keep[rows] = found & (t >= opens) & (t + width_ns <= closes)
    return keep


def to_regular_session(minute_bars: pd.DataFrame, interval: str | Interval) -> pd.DataFrame:
    """Minute bars (standard schema) cut to the regular session and rebuilt as ``interval`` bars.

    Bars of crypto/forex symbols pass the cut untouched (and are resampled like the others). VWAP is
    volume-weighted from the minutes' VWAP where they have one."""
    iv = parse_interval(interval)
    ts_ns = (minute_bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64") if len(minute_bars)
             else np.empty(0, np.int64))
    keep = regular_session_mask(minute_bars["symbol"].to_numpy(), ts_ns)
    cut = minute_bars.loc[keep]
    if iv.name == "1m" or cut.empty:
        out = finalize_bars(cut.reset_index(drop=True))
    else:
        frame = pd.DataFrame({
            "symbol": cut["symbol"].to_numpy(), "t": ts_ns[keep],
            **{c: cut[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "vwap", "transactions")},
        })
        bars = resample(frame, iv, from_minutes=True)
        bars.insert(0, "timestamp", pd.to_datetime(bars.pop("t"), unit="ns", utc=True))
        out = finalize_bars(bars)
    out.attrs.update(minute_bars.attrs)
    return out
