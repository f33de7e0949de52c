"""``MassiveData``: a :class:`vectorbt.Data` whose symbols come from massive_feeds.

Everything goes through the library's fetch path (auto/REST/flat files, cache, quota, progress);
this module only reshapes the standard bar frame into vectorbt's per-symbol OHLCV frames.

The index stays in UTC: vectorbt 1.2 turns ``tz_convert="America/New_York"`` into a fixed UTC-05:00
offset while ``settings["datetime"]["to_py_timezone"]`` is true, which is wrong across DST.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import vectorbt as vbt

from ..config import Settings
from ..datasets import load_dataset
from ..errors import InvalidInputError
from ..fetch import fetch_data
from ..futures import refuse_unaligned_mix
from ..record.bars import ticks_to_bars
from ..record.library import recording_path
from ..record.reader import RecordingReader
from ..schema import DateLike, normalize_symbols, parse_interval

log = logging.getLogger(__name__)

#: Our columns → vectorbt's names.
COLUMNS = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume",
           "vwap": "VWAP", "transactions": "Trade Count"}
QUOTE_COLUMNS = {"bid": "Bid", "ask": "Ask", "mid": "Mid", "spread": "Spread"}
#: Keywords :meth:`MassiveData.download` accepts beyond its named parameters: passed to ``fetch_data``
#: (``session``, ``store``, ``progress``) or to ``vbt.Data.from_data`` (``missing_index``, ``missing_columns``).
FETCH_KWARGS = ("session", "store", "progress", "roll_adjust")
FROM_DATA_KWARGS = ("missing_index", "missing_columns")


_PERIOD_RE = re.compile(r"^(\d+)(d|wk|mo|y)$")
_PERIOD_UNITS = {"d": "days", "wk": "weeks", "mo": "months", "y": "years"}


def period_window(period: str, end: DateLike | None = None) -> tuple[DateLike, DateLike]:
    """``start, end`` for yfinance's ``period`` spelling (``5d``, ``1mo``, ``3mo``, ``1y``, ``ytd`` …) ending at
    ``end`` (default: today in New York).

    Raises:
        InvalidInputError: an unknown period, or ``max`` (Massive has no "all history" query: give ``start``).
    """
    stop = pd.Timestamp(end) if end is not None else pd.Timestamp.now("America/New_York").tz_localize(None)
    stop = stop.normalize()
    text = str(period).strip()
    if text == "ytd":
        return stop.replace(month=1, day=1).date(), stop.date()
    match = _PERIOD_RE.match(text)
    if not match:
        raise InvalidInputError(f"Invalid period {period!r}: use e.g. 5d, 2wk, 1mo, 3mo, 1y or ytd "
                                "(or start= and end=)")
    start = stop - pd.DateOffset(**{_PERIOD_UNITS[match.group(2)]: int(match.group(1))})
    return start.date(), stop.date()


def _per_symbol(bars: pd.DataFrame, symbols: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """Split a standard bar frame into one OHLCV frame per symbol on a UTC DatetimeIndex."""
    rename = {**COLUMNS, **{k: v for k, v in QUOTE_COLUMNS.items() if k in bars.columns}}
    wanted = list(symbols) if symbols is not None else list(dict.fromkeys(bars["symbol"]))
    out = {}
    for sym in wanted:
        part = bars[bars["symbol"] == sym]
        frame = part[list(rename)].rename(columns=rename).astype("float64")
        frame.index = pd.DatetimeIndex(part["timestamp"], name="Open time")
        # vectorbt concatenates a symbol's frames on update, and pandas compares their attrs then (keeping
        # them only where equal): the fetch's attrs (its rolls, method, ...) are not vectorbt's, so none go in.
        frame.attrs = {}
        out[sym] = frame
    return out


def _repricing(held: dict[Any, pd.DataFrame], fresh: dict[Any, pd.DataFrame]) -> str | None:
    """Why the bars already held are priced differently now, or ``None``: a bar both hold opens at another
    price in the new fetch. A bar's open never changes as the bar forms, so only a re-pricing of history
    moves it: a later roll of a back-adjusted continuous series, a split or ex-dividend date that became
    known since (adjustments are as of the fetch), or another ``adjusted=`` basis."""
    for symbol, new in fresh.items():
        old = held.get(symbol)
        if old is None:
            continue
        common = old.index.intersection(new.index)
        before = old.loc[common, "Open"].to_numpy(dtype="float64")
        after = new.loc[common, "Open"].to_numpy(dtype="float64")
        same = np.isclose(before, after, rtol=1e-9, atol=0.0, equal_nan=True)
        if not same.all():
            i = int(np.argmin(same))
            return f"{symbol}'s bar of {common[i]} now opens at {after[i]:g}, not {before[i]:g}"
    return None


class MassiveData(vbt.Data):
    """vectorbt data from Massive::

        data = MassiveData.download(["AAPL", "MSFT"], start="2024-01-02", end="2024-01-31", timeframe="1h")
        data = MassiveData.download("AAPL", start="2024-01-02", end="2024-01-31", interval="1d")  # YFData spelling
        data = data.update()                      # new bars since the earliest symbol's last bar
        close = data.get("Close")
        MassiveData.from_dataset("my_stocks"); MassiveData.from_recording("massive_live_morning_20250104")
    """

    @classmethod
    def download(cls, symbols: Any, start: DateLike | None = None, end: DateLike | None = None,
                 timeframe: str | None = None, method: str = "auto", adjusted: bool | str = True,
                 settings: Settings | None = None, tz_convert: Any = "UTC", *, interval: str | None = None,
                 period: str | None = None, **kwargs: Any) -> "MassiveData":
        """Fetch all symbols in one query (so auto mode judges the whole request) and wrap them.

        ``interval`` is accepted as an alias of ``timeframe`` (``vbt.YFData`` spells it so); the bar size
        defaults to ``1h``. ``period`` (yfinance's ``5d``, ``1mo``, ``1y``, ``ytd`` …) may stand for ``start``:
        the window ends at ``end`` (default today). Extra keywords: ``session``, ``store``, ``progress``,
        ``roll_adjust`` (for ``fetch_data``), ``missing_index``, ``missing_columns`` (for vectorbt). Anything else
        is refused.

        Raises:
            InvalidInputError: an unknown keyword, ``timeframe`` and ``interval`` that disagree, or no
                ``start``/``end``.
        """
        unknown = sorted(set(kwargs) - set(FETCH_KWARGS) - set(FROM_DATA_KWARGS))
        if unknown:
            raise InvalidInputError(
                f"MassiveData.download got unknown keyword(s) {', '.join(unknown)}; it takes start, end, "
                f"timeframe (or interval), period, method, adjusted, settings, tz_convert, {', '.join(FETCH_KWARGS)}, "
                f"{', '.join(FROM_DATA_KWARGS)}")
        if timeframe is not None and interval is not None and timeframe != interval:
            raise InvalidInputError(f"MassiveData.download got timeframe={timeframe!r} and interval={interval!r}; "
                                    "give one (interval is an alias of timeframe)")
        timeframe = timeframe or interval or "1h"
        tickers = normalize_symbols(symbols)
        if period is not None:
            if start is not None:
                raise InvalidInputError(f"MassiveData.download got start={start!r} and period={period!r}; "
                                        "give one")
            start, end = period_window(period, end)
        if start is None or end is None:
            raise InvalidInputError("MassiveData.download needs start and end (or period=, e.g. '1mo')")
        # futures and stock day bars never share a timestamp: vectorbt's aligned index would interleave them
        refuse_unaligned_mix(tickers, parse_interval(timeframe), "vectorbt's MassiveData")
        fetch_kwargs = {k: kwargs[k] for k in FETCH_KWARGS if k in kwargs}
        bars = fetch_data(tickers, start, end, timeframe, method, adjusted=adjusted, settings=settings,  # type: ignore[arg-type]
                          **fetch_kwargs)
        data = _per_symbol(bars, tickers)
        download_kwargs = {"start": start, "end": end, "timeframe": timeframe, "method": method,
                           "adjusted": adjusted, "settings": settings, **kwargs}
        return cls.from_data(data, tz_convert=tz_convert, download_kwargs=download_kwargs,
                             **{k: v for k, v in kwargs.items() if k in FROM_DATA_KWARGS})

    @classmethod
    def download_symbol(cls, symbol: Any, **kwargs: Any) -> pd.DataFrame:
        """One symbol (vectorbt's per-symbol hook; :meth:`download` batches instead)."""
        return next(iter(cls.download(symbol, **kwargs).data.values()))

    def update(self, end: DateLike | None = None, **kwargs: Any) -> "MassiveData":
        """Fetch new bars up to ``end`` (default: now) for every symbol from one shared start — the
        earliest of the symbols' last bars — so a symbol that ended earlier is filled and none is
        overwritten with NaN. Returns a new instance, as vectorbt's ``update`` does.

        When a bar held and fetched again opens at another price (history re-priced since: a roll of a
        back-adjusted continuous series inside the new bars, a split or ex-dividend date that became known,
        another ``adjusted=``), appending would leave a jump: the whole window is downloaded again instead,
        logged with the reason."""
        opts = {**self.download_kwargs, **kwargs}
        last_bars = [frame["Close"].last_valid_index() for frame in self.data.values()]
        start = min(t for t in last_bars if t is not None)
        stop = end if end is not None else pd.Timestamp.now("UTC").to_pydatetime()
        fresh = fetch_data(list(self.symbols), start.to_pydatetime(), stop, opts["timeframe"], opts["method"],
                           adjusted=opts["adjusted"], settings=opts.get("settings"),
                           **{k: opts[k] for k in FETCH_KWARGS if k in opts})
        self._fresh = _per_symbol(fresh, self.symbols)
        reason = _repricing(self.data, self._fresh)
        if reason is not None:
            del self._fresh
            first = min(frame.index[0] for frame in self.data.values())
            log.info("MassiveData.update: %s re-prices the bars already held; downloading %s..%s again",
                     reason, first, stop)
            return type(self).download(list(self.symbols), **{**opts, "start": first.to_pydatetime(), "end": stop})
        try:
            return super().update()
        finally:
            del self._fresh

    def update_symbol(self, symbol: Any, **kwargs: Any) -> pd.DataFrame:
        return self._fresh[symbol]

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, symbols: Iterable[str] | None = None, **kwargs: Any) -> "MassiveData":
        """Wrap any frame in the standard bar schema (datasets, recordings, your own)."""
        kwargs.setdefault("download_kwargs", {})
        return cls.from_data(_per_symbol(bars, symbols), tz_convert=kwargs.pop("tz_convert", "UTC"), **kwargs)

    @classmethod
    def from_dataset(cls, name: str | Path, symbols: Iterable[str] | None = None,
                     settings: Settings | None = None, adjusted: bool | str | None = None,
                     **kwargs: Any) -> "MassiveData":
        """A saved dataset (historical or recorded); ``adjusted`` (``True``/``"splits"``, ``"total"``,
        ``False``/``"raw"``) converts its prices on read as ``load_dataset`` does, ``None`` keeps them as stored."""
        return cls.from_bars(load_dataset(name, settings=settings, adjusted=adjusted), symbols, **kwargs)

    @classmethod
    def from_recording(cls, path: str | Path, interval: str = "1min", symbols: Iterable[str] | None = None,
                       settings: Settings | None = None, **kwargs: Any) -> "MassiveData":
        """A recorded live session (its folder, or a recording dataset's name) resampled to ``interval``,
        with Bid/Ask/Mid/Spread columns beside OHLCV."""
        events = RecordingReader(recording_path(path, settings)).events()
        return cls.from_bars(ticks_to_bars(events, interval), symbols, **kwargs)

    @classmethod
    def from_ticks(cls, ticks: Any, start: DateLike | None = None, end: DateLike | None = None,
                   interval: str = "1min", kind: Any = ("trades", "quotes"), method: str = "auto",
                   symbols: Iterable[str] | None = None, settings: Settings | None = None,
                   **kwargs: Any) -> "MassiveData":
        """Bars built from historical ticks, with Bid/Ask/Mid/Spread beside OHLCV — the same bars a
        recording of that window gives (:func:`~massive_feeds.record.ticks_to_bars`).

        ``ticks``: a tick frame (``fetch_ticks``), a tick dataset's name, or symbols to fetch between
        ``start`` and ``end`` (``kind``: ``"quotes"``, ``"trades"`` or both; ``method`` as in
        :func:`~massive_feeds.fetch_ticks`). Buckets with quotes but no trade get their OHLC from the mid."""
        if isinstance(ticks, pd.DataFrame):
            frame = ticks
        elif isinstance(ticks, (str, Path)) and start is None and end is None:
            frame = load_dataset(ticks, settings=settings)
        else:
            from ..ticks import fetch_ticks

            if start is None or end is None:
                raise ValueError("MassiveData.from_ticks needs start and end to fetch ticks")
            frame = fetch_ticks(ticks, start, end, kind, method, settings=settings)  # type: ignore[arg-type]
        if "kind" not in frame.columns or "time_ms" not in frame.columns:
            raise ValueError("MassiveData.from_ticks needs a tick frame (massive_feeds.fetch_ticks)")
        bars = ticks_to_bars(frame, interval)
        bars.attrs.update(interval=interval, source="ticks", method=frame.attrs.get("method"))
        return cls.from_bars(bars, symbols, **kwargs)
