"""Futures bars: single contracts over ``/futures/v1/aggs`` or the ``us_futures_*`` flat files, and continuous
series (``ES.c.0``, ``ES.c.1``, ``ES.v.0``) stitched from them with the roll applied on read.

Days are **exchange sessions**: a futures session settling on day D (its ``session_end_date``) opens the
evening before (CME Globex: 17:00 Chicago), so ``fetch_data("ESZ4", "2024-12-02", "2024-12-06", "1d")`` is
the five sessions ending on those dates, and minute bars of the session of 2024-12-02 start on the 1st.

Continuous series (Databento's notation):

* ``c`` — calendar roll: on session D the rank-0 contract is the listed outright nearest expiry whose last
  trade date is on or after D (held through its last trading day); rank 1 the one after it.
* ``v`` — volume roll: the contract with the most volume in the previous session (among the two nearest),
  never rolling back to a nearer expiry; rank 1 is the contract after it.

The contract list comes from ``/futures/v1/contracts`` as of each day of the query (``date.gte``/``date.lte``,
outrights only: the listing puts spreads first; one paginated call per product and query, cached by the
runtime). Every bar carries its ``contract``. ``roll_adjust`` (a :class:`~massive_feeds.schema.BarQuery` field):

* ``"none"`` (default): raw prices of the contract held each session, as Databento gives them;
* ``"ratio"``: bars before a roll are multiplied by ``to_price / from_price`` (products over later rolls);
* ``"difference"``: ``to_price - from_price`` is added to bars before a roll (sums over later rolls).

``from_price``/``to_price`` are both contracts' last closes in the session before the roll (the old
contract's last held session). The roll table (``date from to from_price to_price factor offset``) is in
``df.attrs["rolls"]`` as plain records (JSON-safe: the bars still go through ``to_parquet``, ``pd.concat`` and
``merge``); :func:`roll_table` gives it as a DataFrame. After the last roll the series equals that contract's own
bars.

``session="regular"`` keeps, for intraday intervals, the minutes inside each session's ``open``..``close``
of the product's schedule (``/futures/v1/schedules``: one paginated call per product and query, cached by the
runtime), so early closes and holidays come from the exchange, not from XNYS; coarser intraday bars are
rebuilt from those minutes (bins on the UTC clock, as the service aligns them). Day and longer bars are the
exchange's sessions already and are returned as for ``"extended"``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .config import Settings
from .errors import BadResponseError, InvalidInputError, MassiveError, NoDataError
from .futures_symbols import (CHICAGO, back_adjust, ROLL_COLUMNS, futures_root, is_continuous, parse_continuous, parse_contract,
                              roll_records, session_days, session_open)
from .futures_symbols import roll_table as roll_table  # re-exported: massive_feeds.futures.roll_table
from .rest import RestClient
from .rest.futures import (FUTURES_BAR_EXTRA, ContractSpec, futures_bars, parse_contracts, parse_futures_aggs,
                           parse_products, parse_schedules)
from .runtime import current
from .schema import BarQuery, DateRange, Interval, asset_class, finalize_bars
from .source import StoreSource, read_apart

log = logging.getLogger(__name__)

#: our interval → the futures aggs ``resolution``
RESOLUTIONS = {"1m": "1min", "5m": "5min", "15m": "15min", "30m": "30min", "1h": "1hour", "4h": "4hour",
               "1d": "1session", "1w": "1week", "1M": "1month"}


#: where the history store is (``fetch_data(store=…)``): a folder, a URL, a HistoryStore, or None for the default
StoreLocation = Any


@dataclass
class FuturesStore(StoreSource):
    """The history store as a source of futures bars (days ingested from ``us_futures_*`` files): contract and
    continuous queries read their sessions from it (see :func:`contract_bars`)."""

    def unavailable(self, query: Any) -> str | None:
        return super().unavailable(query.replace(range=query.range.in_futures_sessions()))

    def read(self, query: Any, progress: bool | None = None) -> pd.DataFrame:
        return futures_bars_by(query, "store", self.settings, progress=progress, store=self.location)


# --- reference ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContractChain:
    """A product's outright contracts, nearest expiry first (spreads dropped)."""

    root: str
    tickers: tuple[str, ...]
    first_trade: np.ndarray  # datetime64[D]
    last_trade: np.ndarray  # datetime64[D]

    def trading(self, first_day: date, last_day: date) -> "ContractChain":
        """The contracts of this chain that trade at some point in ``first_day..last_day`` (what listing that
        window itself gives)."""
        keep = (self.first_trade <= np.datetime64(last_day, "D")) & (self.last_trade >= np.datetime64(first_day, "D"))
        return ContractChain(self.root, tuple(np.asarray(self.tickers, dtype=object)[keep]), self.first_trade[keep],
                             self.last_trade[keep])


def contract_chain(root: str, first_day: date, last_day: date, client: RestClient) -> ContractChain:
    """The outrights of ``root`` trading at some point in ``first_day..last_day``: one
    ``/futures/v1/contracts`` call (pages followed), cached by the runtime for the process; a later query
    inside a window already listed takes its contracts from that listing (those trading in its own window),
    so a session's queries over one roll make one call, not one each (the free plan has 5 a minute)."""
    listed = current().shared("futures-contracts", (client.base_url, root), _Listings)
    with listed.lock:
        for lo, hi, chain in listed.chains:
            if lo <= first_day and last_day <= hi:
                return chain.trading(first_day, last_day)
        chain = _load_chain(root, first_day, last_day, client)
        listed.chains.append((first_day, last_day, chain))
        return chain


@dataclass
class _Listings:
    """The contract chains of one product listed in this process, each with the window it was listed for."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    chains: list[tuple[date, date, ContractChain]] = field(default_factory=list)


#: The contracts listing's ``type`` exists from this listing date on and is null before it (the spec: "This field
#: only exists on contracts as of 2025-03-12 and later"), so a ``type=single`` filter drops every earlier day.
TYPED_SINCE = date(2025, 3, 12)


def _outright(spec: ContractSpec) -> bool:
    """A single contract: typed "single", or untyped (an early listing) with an outright's ticker (``ESZ4``,
    not ``NGF7-NGF8``)."""
    return spec.type == "single" or (not spec.type and parse_contract(spec.ticker) is not None)


def _load_chain(root: str, first_day: date, last_day: date, client: RestClient) -> ContractChain:
    # the reference is point in time: the listings of every day of the range (one row per contract and day),
    # which also reaches contracts expired since; the server drops the spreads where it can tell them apart
    params = {"product_code": root, "date.gte": first_day.isoformat(), "date.lte": last_day.isoformat(),
              "limit": 1000, **({"type": "single"} if first_day >= TYPED_SINCE else {})}
    specs: list[ContractSpec] = []
    for page, _ in client.paginate("/futures/v1/contracts", params, parse_contracts, lambda p: p[1]):
        specs += page
    singles = sorted({s.ticker: s for s in specs if _outright(s) and s.product_code == root}.values(),
                     key=lambda s: s.last_trade_date)
    if not singles:
        raise NoDataError(f"no {root} futures contracts listed for {first_day}..{last_day} (unknown product "
                          "code?)", symbols={root: "no contracts"}, start=first_day, end=last_day)
    return ContractChain(root, tuple(s.ticker for s in singles),
                         np.array([s.first_trade_date for s in singles], dtype="datetime64[D]"),
                         np.array([s.last_trade_date for s in singles], dtype="datetime64[D]"))


def point_value(ticker: str, settings: Settings) -> float:
    """What one point of a futures ticker's price is worth per contract (:attr:`ProductSpec.point_value`:
    ES → $50, GC → $100, ZC, quoted in cents, → $50), one ``/futures/v1/products`` call per product,
    cached by the runtime. A product traded in another currency than USD is worth that in its currency
    (logged once: Backtrader's broker keeps one currency)."""
    root = futures_root(ticker)

    def load() -> float:
        with RestClient(settings) as client:
            products, _ = client.request("/futures/v1/products", {"product_code": root}, parse_products)
        match = [p for p in products if p.product_code == root]
        if not match:
            raise NoDataError(f"no futures product {root!r} in /futures/v1/products", symbols={ticker: "unknown product"})
        spec = match[0]
        if spec.trade_currency_code != "USD":
            log.warning("%s trades in %s: its point value %g is in %s, not USD", root, spec.trade_currency_code,
                        spec.point_value, spec.trade_currency_code)
        return spec.point_value

    return current().shared("futures-point-value", (settings.rest_url, root), load)


# --- roll rules (vectorised over sessions) ----------------------------------------------------------
def calendar_front(chain: ContractChain, days: np.ndarray) -> np.ndarray:
    """Index in ``chain`` of the contract nearest expiry still trading on each session day."""
    return np.searchsorted(chain.last_trade, days, side="left")


def volume_front(chain: ContractChain, days: np.ndarray, volume: pd.DataFrame) -> np.ndarray:
    """Index of the contract with the most volume in the previous session (``volume``: sessions × contract
    tickers), among the calendar front and the next one, never rolling back; the first session keeps the
    calendar front."""
    cal = calendar_front(chain, days)
    vol = volume.reindex(index=pd.DatetimeIndex(days.astype("datetime64[ns]")), columns=list(chain.tickers))
    prev = vol.shift(1).fillna(0.0).to_numpy()
    rows = np.arange(len(days))
    nxt = np.minimum(cal + 1, len(chain.tickers) - 1)
    pick = np.where(prev[rows, nxt] > prev[rows, np.minimum(cal, len(chain.tickers) - 1)], nxt, cal)
    return np.maximum.accumulate(pick) if len(pick) else pick


# --- fetching -----------------------------------------------------------------------------------------
def rest_contract_bars(client: RestClient, ticker: str, interval: Interval, window: DateRange) -> pd.DataFrame:
    """One contract's bars over ``/futures/v1/aggs`` (``window`` already in sessions), oldest first."""
    resolution = RESOLUTIONS.get(interval.name)
    if resolution is None:
        raise InvalidInputError(f"Interval {interval.name!r} has no futures resolution; use one of "
                                f"{', '.join(RESOLUTIONS)}")
    params = {"resolution": resolution, "window_start.gte": str(window.start.value),
              "window_start.lt": str(window.end.value), "limit": 50_000, "sort": "window_start.asc"}
    pages = list(client.paginate(f"/futures/v1/aggs/{ticker}", params, parse_futures_aggs, lambda p: p.next_url))
    return futures_bars(pages, ticker)


def _strings(codes: np.ndarray, values: list[str]) -> pd.api.extensions.ExtensionArray:
    """``values[codes]`` as pandas' ``str`` array, decoded by Arrow (no Python object per row)."""
    dictionary = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values, pa.string()))
    return pd.array(dictionary.cast(pa.string()), dtype="str")


def _day_strings(days: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """ISO strings of ``datetime64[D]`` days (one conversion per distinct day)."""
    uniq, codes = np.unique(days, return_inverse=True)
    return _strings(codes, [str(d) for d in uniq])


def parsed_days(values: pd.Series) -> np.ndarray:
    """``YYYY-MM-DD`` strings as ``datetime64[D]`` (one parse per distinct day)."""
    codes, uniq = pd.factorize(values)
    return np.asarray(uniq, dtype="datetime64[D]")[codes]


def _with_sessions(df: pd.DataFrame) -> pd.DataFrame:
    """Bars with ``session_end_date`` from the bar start where the source has none (flat-file minute rows)."""
    if "session_end_date" not in df or df["session_end_date"].isna().any():
        df["session_end_date"] = _day_strings(session_days(df["timestamp"]))
    if "settlement_price" not in df:
        df["settlement_price"] = np.nan
    return df


def contract_bars(query: BarQuery, method: str, settings: Settings, *, client: RestClient | None = None,
                  progress: bool | None = None, store: StoreLocation = None) -> pd.DataFrame:
    """Single contracts' bars by ``method`` (``rest``, ``flat_file`` or ``store``: the history store at ``store``,
    ingested from ``us_futures_*`` day files), sessions as days, with the extra columns ``settlement_price`` and
    ``session_end_date``."""
    window = query.range.in_futures_sessions()
    if method == "store":
        from .store.core import HistoryStore

        df = HistoryStore.open(store, settings).bars(query.replace(range=window))
        attrs = dict(df.attrs)
        df = finalize_bars(_with_sessions(df), extra=FUTURES_BAR_EXTRA)
        df.attrs.update(attrs)
        return df
    if method == "flat_file":
        from .flatfiles import flat_file_bars

        df = flat_file_bars(query.replace(range=window), settings=settings, progress=progress)
        attrs = dict(df.attrs)
        df = finalize_bars(_with_sessions(df), extra=FUTURES_BAR_EXTRA)
        df.attrs.update(attrs)
        return df
    own = client is None
    client = client or RestClient(settings)
    try:
        frames = [rest_contract_bars(client, t, query.interval, window) for t in query.tickers]
    finally:
        if own:
            client.close()
    df = frames[0] if len(frames) == 1 else finalize_bars(pd.concat(frames, ignore_index=True),
                                                          extra=FUTURES_BAR_EXTRA)
    df.attrs.update(method="rest", interval=query.interval.name, session=query.session,
                    empty_symbols=[t for t, f in zip(query.tickers, frames) if f.empty])
    return df


@dataclass(frozen=True)
class RollPlan:
    """Which contract each session of a continuous series holds."""

    days: np.ndarray  # datetime64[D], the sessions
    held: np.ndarray  # contract ticker per session (object)


def _sessions(first: date, last: date) -> np.ndarray:
    days = np.arange(np.datetime64(first, "D"), np.datetime64(last, "D") + 1)
    return days[np.is_busday(days)]  # CME holidays have no bars: a day without bars selects nothing


def roll_plan(ticker: str, window: DateRange, chain: ContractChain, volume: pd.DataFrame | None = None) -> RollPlan:
    spec = parse_continuous(ticker)
    assert spec is not None
    days = _sessions(window.first_day, window.last_day)
    front = volume_front(chain, days, volume) if spec.rule == "v" and volume is not None else \
        calendar_front(chain, days)
    idx = front + spec.rank
    if len(idx) and idx.max() >= len(chain.tickers):
        raise NoDataError(f"{ticker}: no contract listed at rank {spec.rank} on "
                          f"{days[int(np.argmax(idx >= len(chain.tickers)))]}", symbols={ticker: "no contract"})
    return RollPlan(days, np.asarray(chain.tickers, dtype=object)[idx])


def continuous_bars(query: BarQuery, ticker: str, method: str, settings: Settings, *,
                    progress: bool | None = None, store: StoreLocation = None) -> pd.DataFrame:
    """One continuous series (``ES.c.0``…) from its contracts' bars by ``method``; see the module docstring."""
    spec = parse_continuous(ticker)
    assert spec is not None
    window = query.range
    lead = window.first_day - timedelta(days=7)  # the session before the first roll inside the range
    with RestClient(settings) as client:
        chain = contract_chain(spec.root, lead, window.last_day, client)
        volume = None
        if spec.rule == "v":
            days_q = query.replace(tickers=chain.tickers[:], interval=_DAY, range=_days_range(lead, window.last_day))
            daily = contract_bars(days_q, method, settings, client=client, store=store)
            daily["day"] = session_days(daily["timestamp"])
            volume = daily.pivot_table(index="day", columns="symbol", values="volume", aggfunc="sum")
            volume.index = pd.DatetimeIndex(volume.index)
        plan = roll_plan(ticker, _days_range(lead, window.last_day), chain, volume)
        bars = _held_bars(query, plan, method, settings, client, progress, store)
    return stitch(bars, plan, ticker, query, query.roll_adjust)


_DAY = Interval("1d", 1, "day")


def held_contract(ticker: str, day: date, settings: Settings) -> str:
    """The contract a continuous series (``ES.c.0``) holds in the session of ``day``: what a live feed
    subscribes to (a contract code is returned as is). The calendar rule needs the contracts reference
    only; the volume rule also the previous sessions' volumes (day bars over REST)."""
    spec = parse_continuous(ticker)
    if spec is None:
        return ticker
    lead = day - timedelta(days=10)
    window = _days_range(lead, day)
    with RestClient(settings) as client:
        chain = contract_chain(spec.root, lead, day, client)
        volume = None
        if spec.rule == "v":
            daily = contract_bars(BarQuery.build(chain.tickers[:4], lead, day, "1d"), "rest", settings, client=client)
            daily["day"] = session_days(daily["timestamp"])
            volume = daily.pivot_table(index="day", columns="symbol", values="volume", aggfunc="sum")
            volume.index = pd.DatetimeIndex(volume.index)
    plan = roll_plan(ticker, window, chain, volume)
    past = plan.days <= np.datetime64(day, "D")
    if not past.any():
        raise NoDataError(f"{ticker}: no session on or before {day}", symbols={ticker: "no session"})
    return str(plan.held[np.flatnonzero(past)[-1]])


def held_plan(ticker: str, first_day: date, last_day: date, settings: Settings) -> RollPlan:
    """Which contract a continuous series (``ES.c.0``) holds in each session ``first_day..last_day``: the
    contracts reference (one call per product, cached); the volume rule also the sessions' day bars over REST."""
    spec = parse_continuous(ticker)
    if spec is None:
        raise InvalidInputError(f"{ticker!r} is not a continuous futures series")
    lead = first_day - timedelta(days=10)  # the volume rule looks at the session before
    with RestClient(settings) as client:
        chain = contract_chain(spec.root, lead, last_day, client)
        volume = None
        if spec.rule == "v":
            daily = contract_bars(BarQuery.build(chain.tickers, lead, last_day, "1d"), "rest", settings, client=client)
            daily["day"] = session_days(daily["timestamp"])
            volume = daily.pivot_table(index="day", columns="symbol", values="volume", aggfunc="sum")
            volume.index = pd.DatetimeIndex(volume.index)
    plan = roll_plan(ticker, _days_range(lead, last_day), chain, volume)
    keep = plan.days >= np.datetime64(first_day, "D")
    return RollPlan(plan.days[keep], plan.held[keep])


def _held_bars(query: BarQuery, plan: RollPlan, method: str, settings: Settings, client: RestClient,
               progress: bool | None, store: StoreLocation = None) -> pd.DataFrame:
    """The bars of every contract the plan holds, over the sessions it holds each one plus the session
    before (whose closes price the roll): each day file is read for the contract held that day (and, the
    session before a roll, for the next one too), each REST contract for its own sessions only."""
    window = query.range
    first = window.first_day if window.start_is_date else window.start.tz_convert(CHICAGO).date()
    q0 = int(np.searchsorted(plan.days, np.datetime64(first, "D")))  # the plan starts a week early (rolls)
    held = plan.held[q0:]
    spans: dict[str, tuple[date, date]] = {}
    for t in dict.fromkeys(held.tolist()):
        i0 = q0 + int(np.argmax(held == t))
        i1 = q0 + len(held) - 1 - int(np.argmax(held[::-1] == t))
        # a contract rolled into inside the window is read from the session before (its close prices the roll)
        spans[t] = (plan.days[i0 - 1 if i0 > q0 else i0].item(), plan.days[i1].item())

    def one(item: tuple[str, tuple[date, date]]) -> pd.DataFrame:
        t, (a, b) = item
        return contract_bars(query.replace(tickers=(t,), range=_days_range(a, b)), method, settings,
                             client=client if method == "rest" else None, progress=progress, store=store)

    if method == "flat_file" and len(spans) > 1:  # the contracts' downloads overlap (I/O and inflate release the GIL)
        with ThreadPoolExecutor(max_workers=min(4, len(spans)), thread_name_prefix="futures") as pool:
            frames = list(pool.map(one, spans.items()))
    else:
        frames = [one(item) for item in spans.items()]
    return pd.concat(frames, ignore_index=True)  # stitch puts the kept rows in time order


def _days_range(first: date, last: date) -> DateRange:
    return DateRange(session_open(first), session_open(last + timedelta(days=1)), first, last, True, True)


def stitch(bars: pd.DataFrame, plan: RollPlan, ticker: str, query: BarQuery, roll_adjust: str) -> pd.DataFrame:
    """Keep each session's bars of the contract held then, build the roll table and apply the adjustment
    (all vectorised: one lookup of the held contract per bar, one cumulative product/sum over rolls)."""
    days = parsed_days(bars["session_end_date"])
    pos = np.searchsorted(plan.days, days)
    valid = (pos < len(plan.days)) & (plan.days[np.minimum(pos, len(plan.days) - 1)] == days)
    held = np.full(len(days), None, dtype=object)
    held[valid] = plan.held[pos[valid]]
    codes, names = pd.factorize(bars["symbol"])
    names = [str(n) for n in names]
    # the last close of each (contract, session), for the prices at each roll
    last_close = pd.Series(bars["close"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [np.asarray(names, dtype=object)[codes], days])).groupby(level=[0, 1], sort=False).last()
    rolls = _roll_table(plan, last_close)
    held_code = pd.Index(names).get_indexer(held)  # -1 where nothing (or a contract without bars) is held
    keep = (held_code == codes) & (held_code >= 0)
    window = query.range
    first = np.datetime64(window.first_day, "D")
    keep &= days >= first if window.start_is_date else (bars["timestamp"] >= window.start).to_numpy()
    if not window.end_is_date:
        keep &= (bars["timestamp"] < window.end).to_numpy()
    rows = np.flatnonzero(keep)
    # the contracts' bars come sorted by contract ticker: put the kept ones back in time order
    rows = rows[np.argsort(bars["timestamp"].to_numpy(dtype="datetime64[ns]")[rows], kind="stable")]
    out = bars.iloc[rows].reset_index(drop=True)
    out_days = days[rows]
    out.insert(len(out.columns), "contract", _strings(codes[rows], names))
    out["symbol"] = _strings(np.zeros(len(rows), dtype=np.int32), [ticker])
    # the plan starts a week early, so it may hold a roll before the first bar kept: that one moves no bar
    # (and its prices may be unknown: the contract rolled out of was not read), so it is not applied
    start = pd.Timestamp(out_days.min() if len(out_days) else first)
    _adjust(out, out_days, rolls[rolls["date"] > start] if len(rolls) else rolls, roll_adjust)
    rolls = rolls[rolls["date"] >= start] if len(rolls) else rolls
    out.attrs["rolls"] = roll_records(rolls)  # plain records: see roll_table
    out.attrs["roll_adjust"] = roll_adjust
    return out


def roll_tables(by_series: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``df.attrs["rolls"]`` of a frame holding these continuous series (each one's records, see
    :func:`~massive_feeds.futures_symbols.roll_records`): one series' records as they are; with several, each
    record led by a ``symbol`` naming its series (sorted by series, then date)."""
    if len(by_series) == 1:
        return list(next(iter(by_series.values())))
    return [{"symbol": s, **r} for s, records in sorted(by_series.items()) for r in records]


def _roll_table(plan: RollPlan, last_close: pd.Series) -> pd.DataFrame:
    change = np.flatnonzero(plan.held[1:] != plan.held[:-1]) + 1
    rows: list[dict[str, Any]] = []
    for i in change:  # one row per roll (a handful a year)
        prev_day, old, new = plan.days[i - 1], plan.held[i - 1], plan.held[i]
        a, b = last_close.get((old, prev_day)), last_close.get((new, prev_day))
        a = float(a) if a is not None else np.nan
        b = float(b) if b is not None else np.nan
        rows.append({"date": pd.Timestamp(plan.days[i]), "from": old, "to": new, "from_price": a, "to_price": b,
                     "factor": b / a if a else np.nan, "offset": b - a})
    return pd.DataFrame(rows, columns=list(ROLL_COLUMNS))


def _adjust(out: pd.DataFrame, days: np.ndarray, rolls: pd.DataFrame, how: str) -> None:
    """Back-adjust the bars before each roll in place (:func:`back_adjust`), refusing a roll whose prices are
    unknown."""
    if how == "none" or rolls.empty or out.empty:
        return
    if rolls[["from_price", "to_price"]].isna().to_numpy().any():
        missing = rolls.loc[rolls[["from_price", "to_price"]].isna().any(axis=1), "date"].iloc[0]
        raise NoDataError(f"cannot {how}-adjust the roll of {missing:%Y-%m-%d}: a contract has no bar in the "
                          "session before it", symbols={str(out['symbol'].iloc[0]): "roll without prices"})
    back_adjust(out, days, rolls, how)


# --- regular session from the product's schedule ---------------------------------------------------
def session_schedule(root: str, first_day: date, last_day: date, settings: Settings) -> pd.DataFrame:
    """The regular ``open``/``close`` (UTC) of each session of ``root`` settling in ``first_day..last_day``,
    indexed by ``session_end_date`` (``datetime64[D]``). Holidays have no row. Loaded a calendar year at a time
    (one ``/futures/v1/schedules`` call per product and year, pages followed) and cached by the runtime, so every
    later query of the product in that year (``session="regular"``, the schedule ``fetch_data`` attaches for
    ``quality_report``) needs no call."""
    tables = [current().shared("futures-schedules", (settings.rest_url, root, year),
                               partial(_load_schedule, root, date(year, 1, 1), date(year, 12, 31), settings))
              for year in range(first_day.year, last_day.year + 1)]
    table = tables[0] if len(tables) == 1 else pd.concat(tables)
    days = table.index.to_numpy()
    return table[(days >= np.datetime64(first_day, "D")) & (days <= np.datetime64(last_day, "D"))]


def _load_schedule(root: str, first_day: date, last_day: date, settings: Settings) -> pd.DataFrame:
    params = {"product_code": root, "session_end_date.gte": first_day.isoformat(),
              "session_end_date.lte": last_day.isoformat(), "limit": 1000}
    with RestClient(settings) as client:
        frames = [f for f, _ in client.paginate("/futures/v1/schedules", params, parse_schedules, lambda p: p[1])]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[(rows["product_code"] == root) & rows["event"].isin(["open", "close"])]
    if rows.empty:
        raise NoDataError(f"no {root} trading schedule for {first_day}..{last_day} in /futures/v1/schedules "
                          "(unknown product code?)", symbols={root: "no schedule"}, start=first_day, end=last_day)
    table = rows.drop_duplicates(["session_end_date", "event"]).pivot(
        index="session_end_date", columns="event", values="timestamp")
    if table.reindex(columns=["open", "close"]).isna().to_numpy().any():
        raise BadResponseError(f"{root} schedule has a session without both an open and a close event")
    table.index = pd.Index(np.asarray(table.index, dtype="datetime64[D]"), name="session_end_date")
    return table[["open", "close"]].sort_index()


def cut_to_schedule(minutes: pd.DataFrame, first_day: date, last_day: date, settings: Settings) -> pd.DataFrame:
    """The minute bars starting inside their session's regular ``open``..``close`` (bars of sessions the
    schedule does not list are dropped); one schedule per product (a handful of roots, vectorised inside)."""
    if minutes.empty:
        return minutes
    codes, symbols = pd.factorize(minutes["symbol"])
    roots = np.array([futures_root(str(s)) for s in symbols], dtype=object)[codes]
    days = parsed_days(minutes["session_end_date"])
    ts = minutes["timestamp"].to_numpy(dtype="datetime64[ns]")
    keep = np.zeros(len(minutes), dtype=bool)
    for root in np.unique(roots):
        rows = np.flatnonzero(roots == root)
        table = session_schedule(str(root), first_day, last_day, settings)
        at = table.index.get_indexer(pd.Index(days[rows]))
        opens = table["open"].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
        closes = table["close"].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
        safe = np.maximum(at, 0)
        keep[rows] = (at >= 0) & (ts[rows] >= opens[safe]) & (ts[rows] < closes[safe])
    out = minutes.iloc[np.flatnonzero(keep)].reset_index(drop=True)
    out.attrs.update(minutes.attrs)
    return out


def _rebin(minutes: pd.DataFrame, interval: Interval) -> pd.DataFrame:
    """Minute bars → ``interval`` bars per symbol and session (UTC-aligned bins, vwap volume-weighted)."""
    width = np.int64(interval.minutes) * np.int64(60 * 10**9)
    ts = minutes["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    df = minutes.assign(timestamp=pd.to_datetime((ts // width) * width, utc=True),
                        _dv=minutes["vwap"] * minutes["volume"])
    df.attrs = {}  # the roll table in attrs would make pandas compare frames while grouping; the caller restores
    keys = ["symbol", "session_end_date", "timestamp"]
    spec: dict[str, Any] = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
                            "transactions": "sum", "_dv": "sum", "settlement_price": "last"}
    if "contract" in df:
        spec["contract"] = "last"
    out = df.groupby(keys, sort=False, observed=True).agg(spec).reset_index()
    out["vwap"] = np.where(out["volume"] > 0, out["_dv"] / out["volume"].where(out["volume"] > 0, 1), out["close"])
    extra = tuple(c for c in ("settlement_price", "session_end_date", "contract") if c in out)
    return finalize_bars(out.drop(columns="_dv"), extra=extra)


def _regular_bars(query: BarQuery, method: str, settings: Settings, *,
                  progress: bool | None, store: StoreLocation) -> pd.DataFrame:
    """``session="regular"``: see the module docstring."""
    base = query.replace(session="extended")
    if not query.interval.is_intraday:
        df = futures_bars_by(base, method, settings, progress=progress, store=store)
    else:
        minutes = futures_bars_by(base.replace(interval=_MINUTE), method, settings, progress=progress, store=store)
        attrs = dict(minutes.attrs)
        # a datetime end after 17:00 Chicago reaches into the next day's session
        df = cut_to_schedule(minutes, query.range.first_day, query.range.last_day + timedelta(days=1), settings)
        df = df if query.interval.name == "1m" else _rebin(df, query.interval)
        df.attrs.update(attrs)
    df.attrs.update(interval=query.interval.name, session="regular")
    return df


_MINUTE = Interval("1m", 1, "minute")


def futures_bars_by(query: BarQuery, method: str, settings: Settings, *,
                    progress: bool | None = None, store: StoreLocation = None) -> pd.DataFrame:
    """Bars for a query of futures tickers (contracts and continuous series, not mixed with other classes)."""
    if query.session == "regular":
        return _regular_bars(query, method, settings, progress=progress, store=store)
    others = [t for t in query.tickers if asset_class(t) != "futures"]
    if others:
        raise InvalidInputError(f"futures cannot be mixed with other asset classes in one query ({', '.join(others)}"
                                "); fetch them separately")
    frames = []
    contracts = tuple(t for t in query.tickers if not is_continuous(t))
    if contracts:
        frames.append(contract_bars(query.replace(tickers=contracts), method, settings, progress=progress,
                                    store=store))
    rolls: dict[str, list[dict[str, Any]]] = {}
    for t in query.tickers:
        if is_continuous(t):
            frames.append(continuous_bars(query, t, method, settings, progress=progress, store=store))
            rolls[t] = frames[-1].attrs["rolls"]
    attrs: dict[str, Any] = {}
    for f in frames:
        attrs.update(f.attrs)
    if rolls:  # each series' roll table, not only the last one's
        attrs["rolls"] = roll_tables(rolls)
    if len(frames) == 1:
        df = frames[0]
    else:
        df = concat_bars(frames)
    df.attrs.update(attrs)
    df.attrs.update(interval=query.interval.name, session=query.session)
    if method != "store" and query.interval.name not in ("1w", "1M"):  # the store's reads make no call
        _attach_schedules(df, query, settings)
    return df


def schedules_for(bars: pd.DataFrame, settings: Settings) -> dict[str, pd.DataFrame]:
    """The schedules of the futures products in ``bars`` (a saved dataset, say) over the sessions they span, for
    ``quality_report(schedules=...)``: one cached ``/futures/v1/schedules`` call per product ({} without futures)."""
    codes, names = pd.factorize(bars["symbol"])
    futures = np.array([asset_class(str(n)) == "futures" for n in names], dtype=bool)  # one test per symbol
    fut = bars[futures[codes]] if len(names) else bars
    if fut.empty:
        return {}
    days = session_days(fut["timestamp"])
    first, last = pd.Timestamp(days.min()).date(), pd.Timestamp(days.max()).date()
    roots = sorted({futures_root(str(n)) for n, f in zip(names, futures) if f})
    return {r: session_schedule(r, first, last, settings) for r in roots}


def schedule_columns(table: pd.DataFrame) -> dict[str, list[str]]:
    """A :func:`session_schedule` table as column lists of ISO strings (``session_end_date``, ``open``, ``close``
    in UTC): the JSON-safe form ``df.attrs`` holds, so the bars still go through ``to_parquet`` (which writes
    ``attrs`` as JSON)."""
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {"session_end_date": [str(d) for d in np.asarray(table.index, dtype="datetime64[D]")],
            "open": table["open"].dt.tz_convert("UTC").dt.strftime(iso).tolist(),
            "close": table["close"].dt.tz_convert("UTC").dt.strftime(iso).tolist()}


def _attach_schedules(df: pd.DataFrame, query: BarQuery, settings: Settings) -> None:
    """``df.attrs["schedules"]``: each product's sessions over the query (:func:`schedule_columns` of
    :func:`session_schedule`, the call
    ``session="regular"`` makes too, cached), so ``quality_report`` judges the bars on the exchange's sessions,
    early closes and holidays. Without one (the call failed) it falls back to the Globex weekday rule and says so."""
    roots = sorted({futures_root(t) for t in query.tickers})
    last = query.range.last_day + timedelta(days=1)  # as _regular_bars asks: one cached call serves both
    try:
        df.attrs["schedules"] = {r: schedule_columns(session_schedule(r, query.range.first_day, last, settings))
                                 for r in roots}
    except MassiveError as exc:
        log.warning("no trading schedule for %s (%s); quality_report will judge their sessions by CME Globex's "
                    "weekday hours", ", ".join(roots), exc)


# --- futures beside other asset classes in one query ---------------------------------------------
FUTURES_EXTRA = ("settlement_price", "session_end_date", "contract")


def concat_bars(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames in one, in the bar schema with the futures columns any of them has (missing elsewhere); their
    attrs are left out (the caller merges them: pandas would keep them only where all are equal)."""
    saved = [f.attrs for f in frames]
    try:
        for f in frames:
            f.attrs = {}
        extra = tuple(c for c in FUTURES_EXTRA if any(c in f for f in frames))
        return finalize_bars(pd.concat(frames, ignore_index=True), extra=extra)
    finally:
        for f, attrs in zip(frames, saved):
            f.attrs = attrs


def is_mixed(query: BarQuery) -> bool:
    """Whether ``query`` holds futures and tickers of other asset classes together."""
    return len({t.asset == "futures" for t in query.parsed}) == 2


def refuse_unaligned_mix(tickers: tuple[str, ...] | list[str], interval: Interval, what: str) -> None:
    """:class:`InvalidInputError` for futures mixed with other classes in day (or longer) bars laid out side by
    side (``what``: a wide frame, vectorbt's Data): futures day bars start at their session's open, stock day
    bars at midnight New York, so no row would hold both (the long layout keeps each bar as it is)."""
    kinds = {asset_class(t) == "futures" for t in tickers}
    if len(kinds) == 2 and not interval.is_intraday:
        raise InvalidInputError(f"{what} cannot line up {interval.name} bars of futures and other asset classes: "
                                "futures day bars start at their session's open (17:00 Chicago the evening before), "
                                "the others' at midnight New York; use layout='long' or an intraday interval")


def mixed_bars(query: BarQuery, read: Any) -> pd.DataFrame:
    """Bars of a query mixing futures with other asset classes: the futures and the others are two queries read
    apart by ``read`` (a ``BarQuery -> DataFrame``: each part takes its own route, Auto choosing its source), then
    one frame in the one bar schema, ``settlement_price``/``session_end_date``/``contract`` missing (NaN) on the
    others' rows. Each part means its own days: futures sessions, New York days for the others.

    ``df.attrs``: the others' attrs over the futures' (``rolls``/``roll_adjust`` are the futures'); ``method`` is
    the parts' one method or ``"mixed"``, ``method_by_symbol`` each ticker's, ``method_reason`` both parts' reasons;
    ``empty_symbols``/``empty_reasons`` of both. A part without any bar is listed there (its
    :class:`NoDataError` is raised only when no part has a bar)."""
    fut = tuple(t.symbol for t in query.parsed if t.asset == "futures")
    others = tuple(t for t in query.tickers if t not in fut)
    return read_apart([query.replace(tickers=fut), query.replace(tickers=others)], read, concat_bars)
