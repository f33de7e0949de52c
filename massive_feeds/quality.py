"""Data-quality report: per symbol and New York day, what is there, what is missing and what is wrong.

``quality_report(df)`` returns one row per (symbol, day) with:

* **coverage** — ``expected`` bars in the session (NYSE regular hours 09:30–16:00 with early closes and
  holidays from ``exchange_calendars`` for stocks, options and indices; the whole New York day for
  crypto; weekdays for forex; for futures the product's sessions from its ``/futures/v1/schedules``, early
  closes and holidays included, each row a session dated by its ``session_end_date``), ``in_session`` bars
  present, ``extended`` bars outside it (pre-market, after-hours, weekends), ``coverage`` = in_session / expected. The session is clipped to the span the
  data covers, so a 20-minute recording is judged on those 20 minutes.
* **missing bars, sorted in two kinds** — Massive emits no bar for a minute without trades, so short
  runs of missing bars are normal: ``no_trade_minutes`` counts them. A long run (``gap_minutes`` or more,
  default 15) inside the session of a *liquid* symbol (median daily coverage ≥ ``liquid_coverage``,
  default 90 %) is a **suspicious gap**: ``gaps`` / ``gap_total_minutes`` / ``gap_detail`` list them.
  An expected session day with no bar at all is ``missing_day``.
* **integrity** — ``duplicates`` (repeated symbol+timestamp) and ``out_of_order`` (a timestamp earlier
  than the one before it for the same symbol) in the frame *as given*; ``ohlc_errors`` (high below
  open/close/low, low above open/close); ``bad_prices`` (zero, negative or missing open/high/low/close).
* **splits** — with a splits table (:func:`massive_feeds.splits.fetch_splits`), the move from the last
  close before each execution date to the first open on it: a jump by the split ratio in data that
  claims to be adjusted is ``split_unadjusted`` (an error); in raw data (``adjusted=False``) it is
  expected and noted. ``jumps`` counts other bar-to-bar moves beyond ``jump_threshold`` (default 30 %),
  naming those that look like an unknown split.
* **dividends** — for total-return bars (``adjusted="total"``), each dividend applied (``df.attrs["dividends"]``):
  on its ex-date's row, ``dividend`` names the amount, its type and factor; an ex-date where the *raw* price did
  not drop (first open on the ex-date not below the last close before it) is ``dividend_no_drop`` (a warning, a
  sign of a wrong record) when the dividend is material (at least 1 % of the price: smaller ones hide in an
  ordinary overnight move, and are only noted). The notes list every dividend applied (ex-date, amount, factor).
* **recordings** — damaged records the reader skipped (``df.attrs["damaged_records"]``: a note and
  ``report.attrs["damaged_records"]``), and reconnect gaps that live recordings store in their metadata (``df.attrs["gaps"]``
  after :func:`~massive_feeds.datasets.load_dataset`): ``recording_gaps`` and ``recording_gap_seconds``.

``issues`` names what was found and ``status`` is ``error`` (duplicates, order, OHLC, bad prices,
unadjusted split, missing day), ``warn`` (suspicious gaps, jumps, recording gaps, bars on a non-trading
day, an ex-date without a drop) or ``ok``. ``report.attrs["notes"]`` carries notes for the reader — among
them which adjustment the prices carry: Massive adjusts for splits only, so unless the bars are total-return
(``adjusted="total"``) a dividend shows as a drop on the ex-date.
:func:`format_quality_report` renders the report as a terminal table; ``massive-feeds quality DATASET``
prints it.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import InvalidInputError
from .futures_symbols import CHICAGO, futures_root, roll_records, roll_table
from .schema import NEW_YORK, asset_class, parse_interval
from .sessions import DAY_NS, MINUTE_NS, SESSION_ASSETS, ny_day_numbers, session_bounds
from .splits import describe_split, merge_duplicate_splits

log = logging.getLogger(__name__)

DIVIDEND_NOTE = ("Dividends: Massive adjusts prices for splits only, never for dividends (REST adjusted=true "
                 "included), so a dividend shows as a drop of about its amount on the ex-date; "
                 "adjusted='total' gives total-return prices.")
REPORT_COLUMNS: tuple[str, ...] = (
    "symbol", "date", "asset", "session_start", "session_end", "early_close", "expected", "bars", "in_session",
    "extended", "coverage", "no_trade_minutes", "gaps", "gap_total_minutes", "gap_detail", "duplicates",
    "out_of_order", "ohlc_errors", "bad_prices", "split", "dividend", "jumps", "jump_detail", "recording_gaps",
    "recording_gap_seconds", "issues", "status",
)
ERROR_ISSUES = ("duplicates", "out_of_order", "ohlc_errors", "bad_prices", "split_unadjusted", "missing_day")
WARN_ISSUES = ("suspicious_gaps", "jumps", "recording_gaps", "non_trading_day", "split_not_in_raw_data",
               "dividend_no_drop")
_SPLIT_RATIOS = np.array([2, 3, 4, 5, 8, 10, 15, 20, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 8, 1 / 10, 1 / 15, 1 / 20])
_MAX_DETAIL = 3
_NUMBER_RE = re.compile(r"^[-+]?[\d.,]+%?$|^-$|^\d+/[\d-]+$")


# --- helpers -----------------------------------------------------------------------------------
def _bar_width(df: pd.DataFrame, interval: str | None, ts: np.ndarray, codes: np.ndarray) -> int | None:
    """Bar width in ns for intraday data, ``DAY_NS`` for day bars, None for week/month bars."""
    text = interval or df.attrs.get("interval")
    if text:
        try:
            iv = parse_interval(str(text))
            if iv.is_intraday:
                return iv.minutes * MINUTE_NS
            return DAY_NS if iv.timespan == "day" else None
        except InvalidInputError:
            try:
                width = int(pd.Timedelta(str(text)).value)
                if width > 0:
                    return width
            except ValueError:
                pass
    if len(ts) < 2:
        return DAY_NS
    order = np.lexsort((ts, codes))
    d = np.diff(ts[order])
    d = d[(np.diff(codes[order]) == 0) & (d > 0)]
    if not len(d):
        return DAY_NS
    step = int(np.min(d))
    if step >= DAY_NS - 3_600_000_000_000:  # a day (23 h on a DST switch) or more between bars
        return DAY_NS if int(np.median(d)) < 5 * DAY_NS else None
    return step


def _ny_midnight_ns(day_numbers: np.ndarray) -> np.ndarray:
    local = pd.DatetimeIndex(pd.to_datetime(np.asarray(day_numbers, np.int64) * DAY_NS, unit="ns"))
    return local.tz_localize(NEW_YORK).tz_convert("UTC").as_unit("ns").asi8


def futures_day_numbers(ts_ns: np.ndarray) -> np.ndarray:
    """The session (its ``session_end_date``, days since 1970-01-01) of each futures bar start: Chicago time
    + 7 hours moves the 17:00 open onto the day the session settles."""
    local = pd.DatetimeIndex(pd.to_datetime(np.asarray(ts_ns, np.int64), unit="ns", utc=True)).tz_convert(CHICAGO)
    return (local.tz_localize(None).as_unit("ns").asi8 + 7 * 3600 * 10**9) // DAY_NS


def _globex_bounds(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(open ns, close ns) of CME Globex sessions settling on ``days``: 17:00 Chicago the day before to 16:00."""
    local = pd.DatetimeIndex(pd.to_datetime(np.asarray(days, np.int64) * DAY_NS, unit="ns"))
    opens = (local - pd.Timedelta(hours=7)).tz_localize(CHICAGO).tz_convert("UTC").as_unit("ns").asi8
    closes = (local + pd.Timedelta(hours=16)).tz_localize(CHICAGO).tz_convert("UTC").as_unit("ns").asi8
    return opens, closes


def _futures_windows(roots: np.ndarray, days: np.ndarray, schedules: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected, open ns, close ns) of each (product, session day): the product's schedule when given (its
    sessions, early closes and holidays), else CME Globex's weekday sessions (17:00-16:00 Chicago)."""
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    expected = weekday < 5
    start, end = _globex_bounds(days)
    for root in np.unique(roots):  # a handful of products
        table = schedules.get(str(root))
        if table is None:
            continue
        index, opens, closes = _schedule_arrays(table)
        rows = np.flatnonzero(roots == root)
        at = pd.Index(index).get_indexer(days[rows])
        found = at >= 0
        expected[rows] = found
        start[rows] = np.where(found, opens[np.maximum(at, 0)], 0)
        end[rows] = np.where(found, closes[np.maximum(at, 0)], 0)
    return expected, start, end


def _schedule_arrays(table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session day numbers, open ns, close ns) of a product's schedule: a frame indexed by ``session_end_date``
    with ``open``/``close`` columns (``massive_feeds.futures.session_schedule``), or the same as column lists of
    ISO strings (``{"session_end_date": [...], "open": [...], "close": [...]}``, the JSON-safe form in
    ``df.attrs["schedules"]``)."""
    if isinstance(table, pd.DataFrame):
        days, opens, closes = table.index, table["open"], table["close"]
    else:
        days, opens, closes = table["session_end_date"], table["open"], table["close"]
    return (np.asarray(days, dtype="datetime64[D]").astype(np.int64),
            pd.DatetimeIndex(pd.to_datetime(opens, utc=True)).as_unit("ns").asi8,
            pd.DatetimeIndex(pd.to_datetime(closes, utc=True)).as_unit("ns").asi8)


def _day_windows(assets: np.ndarray, days: np.ndarray, roots: np.ndarray | None = None,
                 schedules: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected, start ns, end ns) of each (asset, day): NYSE sessions for session assets, the whole New York
    day for crypto, weekdays for forex; for futures (``days`` their session days, ``roots`` their products) the
    product's sessions (:func:`_futures_windows`)."""
    n = len(days)
    expected = np.zeros(n, dtype=bool)
    start = np.zeros(n, dtype=np.int64)
    end = np.zeros(n, dtype=np.int64)
    fut = assets == "futures"
    if fut.any():
        assert roots is not None
        expected[fut], start[fut], end[fut] = _futures_windows(roots[fut], days[fut], schedules or {})
    bound = np.isin(assets, list(SESSION_ASSETS))
    if bound.any():
        found, opens, closes = session_bounds(days[bound])
        expected[bound], start[bound], end[bound] = found, opens, closes
    free = ~bound & ~fut
    if free.any():
        weekday = (days[free] + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        expected[free] = (assets[free] == "crypto") | (weekday < 5)
        start[free] = _ny_midnight_ns(days[free])
        end[free] = _ny_midnight_ns(days[free] + 1)
    return expected, start, end


def _fmt_ny(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").tz_convert(NEW_YORK).strftime("%H:%M")


def _per_group(group: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(group[mask], minlength=n_groups) if mask.any() else np.zeros(n_groups, dtype=np.int64)


def _join(parts: Iterable[str], limit: int = _MAX_DETAIL) -> str:
    parts = list(parts)
    text = "; ".join(parts[:limit])
    return text + (f"; +{len(parts) - limit} more" if len(parts) > limit else "")


# --- the report -------------------------------------------------------------------------------------
def quality_report(
    df: pd.DataFrame,
    *,
    splits: pd.DataFrame | None = None,
    interval: str | None = None,
    gaps: list[dict[str, Any]] | None = None,
    adjusted: bool | None = None,
    dividends: list[dict[str, Any]] | None = None,
    gap_minutes: float = 15.0,
    liquid_coverage: float = 0.9,
    jump_threshold: float = 0.3,
    schedules: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The data-quality report of bars ``df`` (standard schema): one row per symbol and New York day (per
    session, ``session_end_date``, for futures) with the columns :data:`REPORT_COLUMNS` (see the module
    docstring for their meaning).

    Args:
        df: bars, possibly unsorted or with duplicates (that is reported, not fixed).
        splits: a splits table (:func:`~massive_feeds.splits.fetch_splits`) to check split dates
            against; without one only unexplained jumps are reported.
        interval: bar size; default ``df.attrs["interval"]``, else inferred from the timestamps.
        gaps: reconnect gaps of a recording; default ``df.attrs["gaps"]``.
        adjusted: whether ``df`` claims split-adjusted prices; default ``df.attrs["adjusted"]``.
        dividends: the dividends applied to total-return bars; default ``df.attrs["dividends"]``.
        gap_minutes: a run of missing bars this long (or longer) in a liquid symbol's session is a
            suspicious gap; shorter runs are minutes without trades.
        liquid_coverage: median daily session coverage from which a symbol counts as liquid.
        jump_threshold: bar-to-bar relative move (open against the previous close) reported as a jump.
        schedules: futures product code → its sessions (``session_end_date`` index, ``open``/``close`` UTC, as
            ``massive_feeds.futures.session_schedule`` gives them, or the same as column lists of ISO strings);
            default ``df.attrs["schedules"]``, which ``fetch_data`` sets for futures. A product without one is judged on CME Globex's weekday sessions
            (17:00-16:00 Chicago), holidays and early closes unknown (a note says so).

    The phases run over one :class:`_DayGrid` (the report's cells): rows as given, the grid, coverage and
    runs of missing bars, splits, jumps, recording gaps, then issues and the frame with its notes.
    """
    missing = [c for c in ("timestamp", "symbol", "open", "high", "low", "close") if c not in df.columns]
    if missing:
        raise InvalidInputError(f"quality_report needs bar columns; missing {', '.join(missing)}")
    adjusted = df.attrs.get("adjusted") if adjusted is None else adjusted
    gaps = df.attrs.get("gaps") if gaps is None else gaps
    dividends = df.attrs.get("dividends") if dividends is None else dividends
    adjustment = df.attrs.get("adjustment") or ("total" if dividends else None)
    if df.empty:
        out = pd.DataFrame({c: [] for c in REPORT_COLUMNS})
        out.attrs.update(notes=[DIVIDEND_NOTE, "no bars"], interval=interval, adjusted=adjusted, liquid=[],
                         adjustment=adjustment)
        return out
    schedules = df.attrs.get("schedules") if schedules is None else schedules
    rows = _read_rows(df)
    grid = _day_grid(rows, _bar_width(df, interval, rows.ts, rows.codes), schedules)
    coverage = _coverage(rows, grid, gap_minutes, liquid_coverage)
    split_checks = _check_splits(rows, grid, splits, adjusted)
    jumps = _jumps(rows, grid, split_checks.explained, jump_threshold)
    recording = _recording_gaps(grid, gaps)
    dividend_text, no_drop = _check_dividends(grid, dividends)
    report = _report_frame(rows, grid, coverage, split_checks, jumps, recording, (dividend_text, no_drop))
    notes = _notes(grid, coverage, split_checks, splits, adjusted, gap_minutes, liquid_coverage)
    notes += _futures_notes(grid, schedules)
    if adjustment == "total":
        notes[0] = _dividend_note(dividends, df.attrs.get("dividends_as_of"))
    report.attrs.update(notes=notes, interval=grid.interval_label, adjusted=adjusted, liquid=coverage.liquid_names,
                        merged_splits=split_checks.merged, adjustment=adjustment, dividends=list(dividends or []))
    if damaged := int(df.attrs.get("damaged_records") or 0):  # a recording read past damaged records
        report.attrs["damaged_records"] = damaged
        report.attrs["notes"] = [*report.attrs["notes"], f"The recording had {damaged} damaged record(s) (bit rot: "
                                 "their events are missing from these bars); every other record was read."]
    if (rolls := df.attrs.get("rolls")) is not None and len(rolls):  # a continuous futures series
        table = roll_table(rolls)  # the records fetch_data keeps (or a table, as before they were records)
        report.attrs["rolls"] = roll_records(table)  # JSON-safe, as in the bars' attrs (massive_feeds.roll_table)
        report.attrs["notes"] = [*report.attrs["notes"], *roll_notes(table, df.attrs.get("roll_adjust", "none"))]
    return report


def roll_notes(rolls: pd.DataFrame, how: str) -> list[str]:
    """One line per roll of a continuous futures series (its :func:`~massive_feeds.futures_symbols.roll_table`)."""
    return [f"futures roll {r['date']:%Y-%m-%d}: {r['from']} -> {r['to']} at {r['from_price']:g} / {r['to_price']:g} "
            f"(factor {r['factor']:.6f}, offset {r['offset']:+g}; roll_adjust={how})" for r in rolls.to_dict("records")]


def _check_dividends(grid: "_DayGrid", dividends: list[dict[str, Any]] | None) -> tuple[np.ndarray, np.ndarray]:
    """The dividends applied, on their ex-date's cell: what was applied and whether the raw price dropped
    (text per cell, and the cells whose material dividend shows no drop)."""
    text = np.full(grid.n, "", dtype=object)
    no_drop = np.zeros(grid.n, dtype=bool)
    by_name = {str(nm): i for i, nm in enumerate(grid.names)}
    for d in dividends or []:  # a few per symbol and year
        code = by_name.get(str(d.get("ticker")))
        if code is None:
            continue
        cell = grid.cell_of(code, int(pd.Timestamp(d["ex_date"]).value // DAY_NS))
        if cell < 0:
            continue
        part = (f"{d['cash_amount']:g} {d.get('currency', 'USD')} {d.get('distribution_type') or 'cash'} "
                f"ex {d['ex_date']}, factor {d['factor']:.6f} ({d.get('factor_source', 'service')})")
        if d.get("dropped") is False:
            moved = f"open {d['ex_open']:g} vs previous close {d['last_close']:g}"
            if d.get("material"):
                part += f"; raw price did NOT drop ({moved}): a wrong record?"
                no_drop[cell] = True
            else:
                part += f"; no raw drop ({moved}; small enough to hide in an overnight move)"
        text[cell] = part if not text[cell] else f"{text[cell]}; {part}"
    return text, no_drop


def _dividend_note(dividends: list[dict[str, Any]] | None, as_of: str | None) -> str:
    """The first note of total-return bars: what was applied (ex-date, amount, factor)."""
    if dividends is None:
        return ("Total-return prices (adjusted='total'); the bars do not record which dividends were applied "
                "(df.attrs['dividends']), so ex-dates are not checked.")
    listed = [f"{d['ticker']} {d['ex_date']} {d['cash_amount']:g} x{d['factor']:.6f}" for d in dividends]
    shown = "; ".join(listed[:8]) + (f"; +{len(listed) - 8} more" if len(listed) > 8 else "")
    since = f", dividends list as of {as_of}" if as_of else ""
    return (f"Total-return prices (adjusted='total'): split-adjusted, and every bar before an ex-date scaled by "
            f"1 - dividend / previous close; {len(dividends)} dividend(s) applied{since}"
            + (f": {shown}" if shown else "") + ".")


@dataclass
class _Rows:
    """The bars as given (``ts``…``bad_price``, one entry per input row) and their clean series
    (``s_*``: sorted by symbol then time, one bar per timestamp; ``idx`` maps it back to the rows)."""

    ts: np.ndarray
    symbols: np.ndarray
    codes: np.ndarray
    names: np.ndarray
    open: np.ndarray
    close: np.ndarray
    duplicated: np.ndarray
    out_of_order: np.ndarray
    ohlc_bad: np.ndarray
    bad_price: np.ndarray
    day: np.ndarray
    keep: np.ndarray
    idx: np.ndarray
    s_code: np.ndarray
    s_ts: np.ndarray
    s_day: np.ndarray


def _read_rows(df: pd.DataFrame) -> _Rows:
    """Phase 1, the rows as given: order, duplicates, OHLC consistency, prices; then the clean series."""
    ts = pd.to_datetime(df["timestamp"], utc=True).to_numpy(dtype="datetime64[ns]").view("int64")
    symbols = df["symbol"].astype("str").to_numpy()
    codes, names = pd.factorize(symbols)
    prices = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
              for c in ("open", "high", "low", "close")}
    o, h, lo, c = prices["open"], prices["high"], prices["low"], prices["close"]
    grouped = np.argsort(codes, kind="stable")
    same = codes[grouped][1:] == codes[grouped][:-1]
    out_of_order = np.zeros(len(ts), dtype=bool)
    out_of_order[grouped[1:][same & (ts[grouped][1:] < ts[grouped][:-1])]] = True
    duplicated = pd.DataFrame({"c": codes, "t": ts}).duplicated().to_numpy()
    with np.errstate(invalid="ignore"):
        ohlc_bad = (h < np.fmax(o, c)) | (lo > np.fmin(o, c)) | (h < lo)
    bad_price = ~((o > 0) & (h > 0) & (lo > 0) & (c > 0))
    day = ny_day_numbers(ts)
    futures = np.array([asset_class(str(n)) == "futures" for n in names], dtype=bool)[codes]
    if futures.any():  # a futures bar belongs to its exchange session, not to a New York day
        day[futures] = futures_day_numbers(ts[futures])
    keep = ~duplicated
    order = np.lexsort((ts[keep], codes[keep]))
    idx = np.flatnonzero(keep)[order]
    return _Rows(ts=ts, symbols=symbols, codes=codes, names=np.asarray(names, dtype=object), open=o, close=c,
                 duplicated=duplicated, out_of_order=out_of_order, ohlc_bad=ohlc_bad, bad_price=bad_price, day=day,
                 keep=keep, idx=idx, s_code=codes[idx], s_ts=ts[idx], s_day=day[idx])


@dataclass
class _DayGrid:
    """The report's cells: every (symbol, New York day) with bars, plus every expected day without.

    ``t_*`` are per cell; ``row_cell``/``s_cell`` give the cell of each input row / clean bar; ``cell_of``
    finds the cell of a (symbol code, day) (-1: not in the report)."""

    names: np.ndarray
    assets: np.ndarray
    width: int | None
    first_day: int
    n_days: int
    cell_index: np.ndarray
    t_code: np.ndarray
    t_day: np.ndarray
    t_expected_day: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    win_start: np.ndarray
    win_end: np.ndarray
    row_cell: np.ndarray
    s_cell: np.ndarray
    bars: np.ndarray

    @property
    def n(self) -> int:
        return len(self.t_code)

    @property
    def intraday(self) -> bool:
        return self.width is not None and self.width < DAY_NS

    @property
    def interval_label(self) -> str:
        width = self.width
        if self.intraday:
            assert width is not None
            return f"{width // MINUTE_NS}min" if width % MINUTE_NS == 0 else f"{width / 1e9:g}s"
        return "1d" if width else "1w/1M"

    def cell_of(self, code: int, day: int) -> int:
        if not 0 <= day - self.first_day < self.n_days:
            return -1
        return int(self.cell_index[code * self.n_days + day - self.first_day])


def _day_grid(rows: _Rows, width: int | None, schedules: Mapping[str, Any] | None = None) -> _DayGrid:
    """Phase 2, the day grid: each cell's session window (clipped to the span the data covers) and bars."""
    names = rows.names
    pad = width if width is not None and width < DAY_NS else DAY_NS
    span_lo, span_hi = int(rows.s_ts.min()), int(rows.s_ts.max()) + pad
    assets = np.array([asset_class(str(n)) for n in names], dtype=object)
    first_day, last_day = int(rows.day.min()), int(rows.day.max())
    all_days = np.arange(first_day, last_day + 1, dtype=np.int64)
    grid_code = np.repeat(np.arange(len(names)), len(all_days))
    grid_day = np.tile(all_days, len(names))
    roots = np.array([futures_root(str(n)) if a == "futures" else "" for n, a in zip(names, assets)], dtype=object)
    expected_day, win_start, win_end = _day_windows(assets[grid_code], grid_day, roots[grid_code], schedules)
    has_bars = np.zeros(len(grid_day), dtype=bool)
    cell_of_row = rows.codes * len(all_days) + (rows.day - first_day)
    has_bars[np.unique(cell_of_row)] = True
    cells = np.flatnonzero(has_bars | (expected_day & (width is not None)))
    n = len(cells)
    cell_index = np.full(len(grid_day), -1, dtype=np.int64)
    cell_index[cells] = np.arange(n)
    row_cell = cell_index[cell_of_row]
    return _DayGrid(
        names=names, assets=assets, width=width, first_day=first_day, n_days=len(all_days), cell_index=cell_index,
        t_code=grid_code[cells], t_day=grid_day[cells], t_expected_day=expected_day[cells],
        t_start=np.maximum(win_start[cells], span_lo), t_end=np.minimum(win_end[cells], span_hi),
        win_start=win_start[cells], win_end=win_end[cells], row_cell=row_cell,
        s_cell=cell_index[rows.s_code * len(all_days) + (rows.s_day - first_day)],
        bars=_per_group(row_cell, rows.keep, n))


@dataclass
class _Coverage:
    expected: np.ndarray
    in_session: np.ndarray
    extended: np.ndarray
    no_trade: np.ndarray
    gap_count: np.ndarray
    gap_total: np.ndarray
    gap_detail: np.ndarray
    liquid_names: list[str]


def _coverage(rows: _Rows, grid: _DayGrid, gap_minutes: float, liquid_coverage: float) -> _Coverage:
    """Phase 3, coverage and runs of missing bars: no-trade minutes, and suspicious gaps of liquid symbols."""
    n, width, bars = grid.n, grid.width, grid.bars
    t_expected_day = grid.t_expected_day
    cov = _Coverage(expected=np.full(n, np.nan), in_session=np.zeros(n, dtype=np.int64),
                    extended=np.zeros(n, dtype=np.int64), no_trade=np.zeros(n), gap_count=np.zeros(n, dtype=np.int64),
                    gap_total=np.zeros(n), gap_detail=np.full(n, "", dtype=object), liquid_names=[])
    if width is not None and not grid.intraday:  # day bars: one expected per expected day
        cov.expected = np.where(t_expected_day, 1.0, 0.0)
        cov.in_session = np.where(t_expected_day, np.minimum(bars, 1), 0)
        cov.extended = bars - cov.in_session
        return cov
    if width is None:
        return cov
    s_cell, s_ts, t_code = grid.s_cell, rows.s_ts, grid.t_code
    b0 = np.where(t_expected_day, grid.t_start // width, 0)
    b1 = np.where(t_expected_day, -(-grid.t_end // width), 0)
    exp_n = np.maximum(b1 - b0, 0)
    cov.expected = exp_n.astype(float)
    k = s_ts // width - b0[s_cell]
    inside = t_expected_day[s_cell] & (k >= 0) & (k < exp_n[s_cell])
    in_session_n = cov.in_session = _per_group(s_cell, inside, n)
    cov.extended = bars - in_session_n
    coverage_by_cell = np.where(exp_n > 0, in_session_n / np.maximum(exp_n, 1), np.nan)
    median = pd.Series(coverage_by_cell).groupby(t_code).median().reindex(range(len(grid.names)))
    liquid = (median.to_numpy(dtype=np.float64) >= liquid_coverage)  # NaN (no session) -> False
    cov.liquid_names = [str(grid.names[i]) for i in np.flatnonzero(liquid)]
    # runs: between consecutive in-session bars, and before the first / after the last
    ic, ik = s_cell[inside], k[inside]
    first = np.r_[True, ic[1:] != ic[:-1]]
    last = np.r_[ic[1:] != ic[:-1], True]
    between = np.diff(ik, prepend=ik[:1]) - 1  # the first of each cell is masked below
    run_len = np.where(first, 0, between)
    lead = np.where(first, ik, 0)
    trail = np.where(last, exp_n[ic] - 1 - ik, 0)
    forex = grid.assets[t_code[ic]] == "forex"  # weekend open/close of the forex week: interior runs only
    lead = np.where(forex, 0, lead)
    trail = np.where(forex, 0, trail)
    run_cell = np.r_[ic, ic, ic]
    run_length = np.r_[run_len, lead, trail]
    run_start_k = np.r_[ik - run_len, np.zeros_like(ik), ik + 1]
    has_run = run_length > 0
    run_cell, run_length, run_start_k = run_cell[has_run], run_length[has_run], run_start_k[has_run]
    width_min = width / MINUTE_NS
    gap_bars = max(1, math.ceil(gap_minutes * MINUTE_NS / width))
    suspicious = (run_length >= gap_bars) & liquid[t_code[run_cell]]
    no_trade = np.bincount(run_cell[~suspicious], weights=run_length[~suspicious] * width_min, minlength=n)
    gap_count = np.bincount(run_cell[suspicious], minlength=n)
    gap_total = np.bincount(run_cell[suspicious], weights=run_length[suspicious] * width_min, minlength=n)
    gap_detail = cov.gap_detail
    details: dict[int, list[str]] = {}
    for cell, start_k, length in zip(run_cell[suspicious], run_start_k[suspicious], run_length[suspicious]):
        begin = int((b0[cell] + start_k) * width)
        details.setdefault(int(cell), []).append(
            f"{_fmt_ny(begin)}-{_fmt_ny(begin + int(length) * width)} ({length * width_min:g} min)")
    for cell, parts in details.items():
        gap_detail[cell] = _join(parts)
    no_gap_cells = (in_session_n == 0) & (exp_n > 0)  # a whole missing day is reported as such
    cov.no_trade = np.where(no_gap_cells, 0.0, no_trade)
    cov.gap_count = np.where(no_gap_cells, 0, gap_count)
    cov.gap_total = np.where(no_gap_cells, 0.0, gap_total)
    cov.gap_detail = np.where(no_gap_cells, "", gap_detail)
    return cov


@dataclass
class _SplitChecks:
    text: np.ndarray
    unadjusted: np.ndarray
    unexpected: np.ndarray
    explained: np.ndarray  # per clean bar: its move is a known split's
    merged: list[dict]


def _check_splits(rows: _Rows, grid: _DayGrid, splits: pd.DataFrame | None, adjusted: bool | None) -> _SplitChecks:
    """Phase 4, splits: the move from the last close before each execution date to the first open on it."""
    n = grid.n
    out = _SplitChecks(text=np.full(n, "", dtype=object), unadjusted=np.zeros(n, dtype=bool),
                       unexpected=np.zeros(n, dtype=bool), explained=np.zeros(len(rows.s_ts), dtype=bool), merged=[])
    if splits is None or splits.empty:
        return out
    s_code, s_day, s_cell = rows.s_code, rows.s_day, grid.s_cell
    s_open, s_close = rows.open[rows.idx], rows.close[rows.idx]
    # one row per real split, as every adjusting path applies them; raw bars date a merged one by their jump
    splits = merge_duplicate_splits(splits, None if adjusted is not False else pd.DataFrame(
        {"symbol": rows.symbols, "t": rows.ts, "open": rows.open, "close": rows.close}))
    out.merged = splits.attrs["merged"]
    merged_note = {(m["ticker"], m["kept"]): m for m in out.merged}
    by_name = {str(nm): i for i, nm in enumerate(grid.names)}
    for row in splits.itertuples(index=False):  # few rows: one per split
        code = by_name.get(str(row.ticker))
        if code is None:
            continue
        e_day = int(pd.Timestamp(row.execution_date).value // DAY_NS)
        where = np.flatnonzero(s_code == code)
        after = where[s_day[where] >= e_day]
        before = where[s_day[where] < e_day]
        if not len(after) or not len(before):
            continue
        i_prev, i_next = before[-1], after[0]
        out.explained[i_next] = True
        ratio = s_open[i_next] / s_close[i_prev] if s_close[i_prev] > 0 else np.nan
        factor = row.split_from / row.split_to
        # closer to the split ratio than to 1: the jump is still in the prices
        looks_raw = bool(np.isfinite(ratio) and ratio > 0
                         and abs(math.log(ratio) - math.log(factor)) < abs(math.log(ratio)))
        cell = s_cell[i_next]
        name = describe_split(row.split_from, row.split_to)
        when = pd.Timestamp(row.execution_date).date().isoformat()
        if (m := merged_note.get((str(row.ticker), when))) is not None:
            when += f" (also listed on {', '.join(m['dropped'])}: one split, applied once; {m['reason']})"
        if looks_raw and adjusted is False:
            out.text[cell] = f"{name} {when}: raw prices jump x{ratio:.3g} (expected; adjusted=True removes it)"
        elif looks_raw:
            out.text[cell] = f"{name} {when}: NOT adjusted (jump x{ratio:.3g})"
            out.unadjusted[cell] = True
        elif adjusted is False:
            out.text[cell] = f"{name} {when}: no jump although the data says raw (x{ratio:.3g})"
            out.unexpected[cell] = True
        else:
            out.text[cell] = f"{name} {when}: adjusted (x{ratio:.3g})"
    return out


def _jumps(rows: _Rows, grid: _DayGrid, explained: np.ndarray, jump_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Phase 5, jumps: bar-to-bar moves beyond the threshold that no known split explains (count, detail)."""
    n, s_ts, s_code, s_cell = grid.n, rows.s_ts, rows.s_code, grid.s_cell
    jump_count = np.zeros(n, dtype=np.int64)
    jump_detail = np.full(n, "", dtype=object)
    if len(s_ts) <= 1:
        return jump_count, jump_detail
    s_open, s_close = rows.open[rows.idx], rows.close[rows.idx]
    prev_close = np.r_[np.nan, s_close[:-1]]
    same_symbol = np.r_[False, s_code[1:] == s_code[:-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        move = s_open / prev_close
        big = same_symbol & np.isfinite(move) & (move > 0) & (np.abs(np.log(move)) > math.log1p(jump_threshold))
    big &= ~explained
    jump_count = _per_group(s_cell, big, n)
    texts: dict[int, list[str]] = {}
    for i in np.flatnonzero(big):  # rare by construction
        ratio = float(move[i])
        near = _SPLIT_RATIOS[np.argmin(np.abs(np.log(_SPLIT_RATIOS) - math.log(ratio)))]
        hint = " (looks like an unadjusted split)" if abs(math.log(ratio / near)) < 0.03 else ""
        texts.setdefault(int(s_cell[i]), []).append(f"{_fmt_ny(int(s_ts[i]))} x{ratio:.3g}{hint}")
    for cell, parts in texts.items():
        jump_detail[cell] = _join(parts)
    return jump_count, jump_detail


def _recording_gaps(grid: _DayGrid, gaps: list[dict[str, Any]] | None) -> tuple[np.ndarray, np.ndarray]:
    """Phase 6, a recording's reconnect gaps spread over the days they touch (count, seconds per cell)."""
    rec_count = np.zeros(grid.n, dtype=np.int64)
    rec_seconds = np.zeros(grid.n)
    for gap in gaps or []:
        end_ms = gap.get("end_ms")
        if end_ms is None:
            continue
        start_ms = gap.get("start_ms")
        if start_ms is None:
            start_ms = end_ms - int(float(gap.get("downtime_s") or 0) * 1000)
        g_lo, g_hi = int(start_ms) * 1_000_000, int(end_ms) * 1_000_000
        wanted = set(gap.get("symbols") or ())
        market = gap.get("market")
        targets = [i for i, nm in enumerate(grid.names)
                   if (str(nm) in wanted) or (not wanted and (market is None or grid.assets[i] == market))]
        for day in range(int(ny_day_numbers(np.array([g_lo]))[0]), int(ny_day_numbers(np.array([g_hi]))[0]) + 1):
            lo_ns, hi_ns = _ny_midnight_ns(np.array([day, day + 1]))
            overlap = max(0, min(g_hi, hi_ns) - max(g_lo, lo_ns)) / 1e9
            for code in targets:
                if (cell := grid.cell_of(code, day)) >= 0:
                    rec_count[cell] += 1
                    rec_seconds[cell] += overlap
    return rec_count, rec_seconds


def _report_frame(rows: _Rows, grid: _DayGrid, cov: _Coverage, split_checks: _SplitChecks,
                  jumps: tuple[np.ndarray, np.ndarray], recording: tuple[np.ndarray, np.ndarray],
                  dividend: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    """Phase 7, per-row counts to cells, issues and status, and the report frame (sorted by symbol, date)."""
    n, t_code, t_expected_day = grid.n, grid.t_code, grid.t_expected_day
    jump_count, jump_detail = jumps
    rec_count, rec_seconds = recording
    dups = _per_group(grid.row_cell, rows.duplicated, n)
    ooo = _per_group(grid.row_cell, rows.out_of_order, n)
    ohlc = _per_group(grid.row_cell, rows.ohlc_bad & rows.keep, n)
    badp = _per_group(grid.row_cell, rows.bad_price & rows.keep, n)
    if grid.intraday:  # no bar inside the session (bars outside it do not count)
        missing_day = t_expected_day & (cov.in_session == 0) & (np.nan_to_num(cov.expected) > 0)
    else:
        missing_day = t_expected_day & (grid.bars == 0)
    session_asset = np.isin(grid.assets[t_code], list(SESSION_ASSETS))
    futures = grid.assets[t_code] == "futures"
    flags = {
        "duplicates": dups > 0, "out_of_order": ooo > 0, "ohlc_errors": ohlc > 0, "bad_prices": badp > 0,
        "split_unadjusted": split_checks.unadjusted, "missing_day": missing_day, "suspicious_gaps": cov.gap_count > 0,
        "jumps": jump_count > 0, "recording_gaps": rec_count > 0,
        "non_trading_day": ~t_expected_day & (grid.bars > 0) & (session_asset | futures),
        "split_not_in_raw_data": split_checks.unexpected, "dividend_no_drop": dividend[1],
    }
    issues = np.full(n, "", dtype=object)
    for name, flag in flags.items():
        issues = np.where(flag, np.where(issues == "", name, issues + ", " + name), issues)
    is_error = np.column_stack([flags[k] for k in ERROR_ISSUES]).any(axis=1)
    is_warn = np.column_stack([flags[k] for k in WARN_ISSUES]).any(axis=1)
    status = np.where(is_error, "error", np.where(is_warn, "warn", "ok"))

    session_known = t_expected_day & (grid.width is not None)
    nat = np.iinfo(np.int64).min  # NaT as int64
    known = np.nan_to_num(cov.expected)
    report = pd.DataFrame({
        "symbol": grid.names[t_code].astype(str),
        "date": pd.DatetimeIndex(pd.to_datetime(grid.t_day * DAY_NS, unit="ns")).date,
        "asset": grid.assets[t_code].astype(str),
        "session_start": pd.to_datetime(np.where(session_known, grid.win_start, nat), unit="ns", utc=True),
        "session_end": pd.to_datetime(np.where(session_known, grid.win_end, nat), unit="ns", utc=True),
        "early_close": session_known & _closes_early(grid.win_end, session_asset, futures),
        "expected": cov.expected,
        "bars": grid.bars.astype(np.int64),
        "in_session": cov.in_session.astype(np.int64),
        "extended": cov.extended.astype(np.int64),
        "coverage": np.where(known > 0, cov.in_session / np.maximum(known, 1), np.nan),
        "no_trade_minutes": cov.no_trade,
        "gaps": cov.gap_count.astype(np.int64),
        "gap_total_minutes": cov.gap_total,
        "gap_detail": cov.gap_detail.astype(str),
        "duplicates": dups.astype(np.int64),
        "out_of_order": ooo.astype(np.int64),
        "ohlc_errors": ohlc.astype(np.int64),
        "bad_prices": badp.astype(np.int64),
        "split": split_checks.text.astype(str),
        "dividend": dividend[0].astype(str),
        "jumps": jump_count.astype(np.int64),
        "jump_detail": jump_detail.astype(str),
        "recording_gaps": rec_count,
        "recording_gap_seconds": rec_seconds,
        "issues": issues.astype(str),
        "status": status.astype(str),
    }, columns=list(REPORT_COLUMNS))
    return report.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def _closes_early(win_end: np.ndarray, session_asset: np.ndarray, futures: np.ndarray) -> np.ndarray:
    """Sessions ending before the venue's normal close: 16:00 New York (NYSE), 16:00 Chicago (CME Globex)."""
    ends = pd.DatetimeIndex(pd.to_datetime(win_end, unit="ns", utc=True))
    return (session_asset & (ends.tz_convert(NEW_YORK).hour < 16)) | (futures & (ends.tz_convert(CHICAGO).hour < 16))


def _futures_notes(grid: _DayGrid, schedules: Mapping[str, Any] | None) -> list[str]:
    """Where the futures sessions come from: each product's schedule, or the Globex weekday rule."""
    roots = sorted({futures_root(str(n)) for n, a in zip(grid.names, grid.assets) if a == "futures"})
    given = [r for r in roots if r in (schedules or {})]
    notes = []
    if given:
        notes.append(f"Futures days are exchange sessions (session_end_date); {', '.join(given)}: sessions, early "
                     "closes and holidays from the product's schedule (/futures/v1/schedules).")
    if missing := [r for r in roots if r not in given]:
        notes.append(f"Futures days are exchange sessions (session_end_date); no schedule for {', '.join(missing)}: "
                     "sessions taken as CME Globex's 17:00-16:00 Chicago on weekdays, holidays and early closes "
                     "unknown (pass schedules=, or fetch the bars with fetch_data, which attaches them).")
    return notes


def _notes(grid: _DayGrid, cov: _Coverage, split_checks: _SplitChecks, splits: pd.DataFrame | None,
           adjusted: bool | None, gap_minutes: float, liquid_coverage: float) -> list[str]:
    """The notes for the reader (``report.attrs["notes"]``)."""
    notes = [DIVIDEND_NOTE]
    if adjusted is None:
        notes.append("The bars do not say whether they are split-adjusted (df.attrs['adjusted']); split checks "
                     "assume adjusted prices.")
    if splits is None:
        notes.append("No splits table given: split dates were not checked (jumps are still reported).")
    for m in split_checks.merged:
        notes.append(f"Splits: {m['ticker']} {m['ratio']} is listed on {m['kept']} and {', '.join(m['dropped'])}; "
                     f"one split, applied once on {m['kept']} ({m['reason']}).")
    if grid.width is None:
        notes.append("Week/month bars: coverage is not computed.")
    if grid.intraday:
        liquid = ", ".join(cov.liquid_names) or "none"
        notes.append(f"Suspicious gap: >= {gap_minutes:g} min missing in the session of a liquid symbol "
                     f"(median coverage >= {liquid_coverage:.0%}); liquid here: {liquid}.")
    return notes


# --- rendering ---------------------------------------------------------------------------------------
def _summary(report: pd.DataFrame) -> pd.DataFrame:
    rank = {"ok": 0, "warn": 1, "error": 2}
    g = report.groupby("symbol", sort=True)
    out = pd.DataFrame({
        "days": g.size(),
        "bars": g["bars"].sum(),
        "coverage": g["coverage"].median(),
        "no-trade min": g["no_trade_minutes"].sum(),
        "gaps": g["gaps"].sum(),
        "missing days": g["issues"].apply(lambda s: int(s.str.contains("missing_day").sum())),
        "dup": g["duplicates"].sum(),
        "order": g["out_of_order"].sum(),
        "ohlc": g["ohlc_errors"].sum(),
        "bad px": g["bad_prices"].sum(),
        "splits": g["split"].apply(_split_summary),
        "dividends": g["dividend"].apply(lambda s: int((s != "").sum())),
        "jumps": g["jumps"].sum(),
        "rec gaps": g["recording_gaps"].sum(),
        "status": g["status"].apply(lambda s: max(s, key=rank.__getitem__)),
    })
    out["coverage"] = out["coverage"].map(lambda x: "-" if pd.isna(x) else f"{x:.1%}")
    out["no-trade min"] = out["no-trade min"].map(lambda x: f"{x:g}")
    return out.reset_index()


def _split_summary(texts: pd.Series) -> str:
    texts = texts[texts != ""]
    if texts.empty:
        return "-"
    unadjusted = int(texts.str.contains("NOT adjusted").sum())
    raw = int(texts.str.contains("raw prices jump").sum())
    parts = [f"{unadjusted} NOT adjusted" if unadjusted else "", f"{raw} raw jump" if raw else "",
             f"{len(texts) - unadjusted - raw} ok" if len(texts) - unadjusted - raw else ""]
    return ", ".join(p for p in parts if p)


def _table(df: pd.DataFrame) -> str:
    """Plain-text table: numbers right-aligned, text left-aligned, two spaces between columns."""
    cols = []
    for name in df.columns:
        values = [str(v) for v in df[name]]
        width = max([len(str(name))] + [len(v) for v in values])
        numeric = pd.api.types.is_numeric_dtype(df[name]) or all(_NUMBER_RE.match(v) for v in values)
        align = str.rjust if numeric else str.ljust
        cols.append([align(str(name), width)] + [align(v, width) for v in values])
    return "\n".join("  ".join(parts).rstrip() for parts in zip(*cols))


def format_quality_report(report: pd.DataFrame, *, all_days: bool = False, max_rows: int = 200) -> str:
    """A terminal rendering of :func:`quality_report`: a per-symbol summary, then the days with
    findings (every day with ``all_days``), then the notes."""
    lines = []
    interval, adjusted = report.attrs.get("interval"), report.attrs.get("adjusted")
    state = {True: "split-adjusted", False: "raw (as traded)"}.get(adjusted, "adjustment unknown")
    if report.attrs.get("adjustment") == "total":
        state = "total-return (splits and dividends)"
    if report.empty:
        return "Data quality: no bars.\n" + "\n".join(f"note: {n}" for n in report.attrs.get("notes", []))
    counts = report["status"].value_counts()
    lines.append(f"Data quality: {report['symbol'].nunique()} symbol(s), {report['date'].nunique()} day(s), "
                 f"bars {interval}, prices {state} — {counts.get('error', 0)} day(s) with errors, "
                 f"{counts.get('warn', 0)} with warnings, {counts.get('ok', 0)} ok")
    lines.append("")
    lines.append(_table(_summary(report)))
    shown = report if all_days else report[(report["status"] != "ok") | (report["split"] != "")
                                           | (report["dividend"] != "")]
    if len(shown):
        lines.append("")
        lines.append("Days" + ("" if all_days else " with findings, splits or dividends") + " (times New York):")
        table = pd.DataFrame({
            "date": shown["date"].astype(str), "symbol": shown["symbol"], "status": shown["status"],
            "bars": shown["in_session"].astype(str) + "/"
            + shown["expected"].map(lambda x: "-" if pd.isna(x) else f"{x:g}"),
            "session": [("early close" if e else "") for e in shown["early_close"]],
            "findings": [_findings(r) for r in shown.itertuples(index=False)],
        })
        if len(table) > max_rows:
            lines.append(_table(table.head(max_rows)))
            lines.append(f"... {len(table) - max_rows} more day(s); use the DataFrame for all of them")
        else:
            lines.append(_table(table))
    lines.append("")
    lines.extend(f"note: {n}" for n in report.attrs.get("notes", []))
    return "\n".join(lines)


def _findings(row: Any) -> str:
    parts = []
    if "missing_day" in row.issues:
        parts.append("no bars on a trading day")
    if row.gaps:
        parts.append(f"gaps {row.gap_detail}")
    if row.duplicates:
        parts.append(f"{row.duplicates} duplicate(s)")
    if row.out_of_order:
        parts.append(f"{row.out_of_order} out of order")
    if row.ohlc_errors:
        parts.append(f"{row.ohlc_errors} OHLC inconsistent")
    if row.bad_prices:
        parts.append(f"{row.bad_prices} zero/negative/missing price(s)")
    if row.split:
        parts.append(f"split {row.split}")
    if row.dividend:
        parts.append(f"dividend {row.dividend}")
    if row.jumps:
        parts.append(f"jump {row.jump_detail}")
    if row.recording_gaps:
        parts.append(f"{row.recording_gaps} recording gap(s), {row.recording_gap_seconds:.1f}s")
    if "non_trading_day" in row.issues:
        parts.append("bars on a non-trading day")
    if not parts and row.no_trade_minutes:
        parts.append(f"{row.no_trade_minutes:g} no-trade min")
    return "; ".join(parts) or "-"
