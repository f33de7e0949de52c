"""What a :class:`~massive_feeds.backtrader.MassiveData` reads, decided from its parameters.

:class:`FeedSetup` chooses the mode (history through ``fetch_data``, a saved dataset, a frame, live, a
replayed recording, historical ticks, or a source of the caller's own), the symbol, the bar size and the
window, and builds the feed source of a run (:mod:`.sources`, :mod:`.live`). The feed itself
(:mod:`.feed`) only moves bars from that source onto its lines.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from ..datasets import dataset_info, dataset_path
from ..errors import InvalidInputError
from ..futures_symbols import is_continuous
from ..schema import BarQuery, DateLike, asset_class, normalize_symbol, parse_date_range
from .sources import FeedSource, FrameSource
from .store import MassiveStore
from .timeframes import bar_width_ms, interval_for, timeframe_for
from .tz import zone_from

log = logging.getLogger(__name__)

_LOOKBACK = {"minute": pd.Timedelta(days=5), "hour": pd.Timedelta(days=30), "day": pd.Timedelta(days=365),
             "week": pd.Timedelta(days=5 * 365), "month": pd.Timedelta(days=5 * 365)}


class FeedSetup:
    """A feed's mode, symbol, bar size, window and store, resolved once from its params ``p``.

    ``p.timeframe``/``p.compression`` are set to the resolved bar size (Backtrader reads them there).
    ``store`` is the given store, else the shared one of ``p.settings`` (opened on first use).
    """

    def __init__(self, p: Any, extra_lines: tuple[str, ...] = ()) -> None:
        self.p = p
        self.extra_lines = extra_lines
        self.mode = self._resolve_mode()
        self.symbol: str | None = normalize_symbol(p.dataname) if isinstance(p.dataname, str) and p.dataname else None
        self.raw_window = (p.fromdate, p.todate)  # Backtrader turns dates into datetimes after __init__
        self._given_store: MassiveStore | None = p.store
        self.interval_name, p.timeframe, p.compression = self._resolve_interval()

    def __repr__(self) -> str:
        return f"FeedSetup(mode={self.mode!r}, symbol={self.symbol!r}, interval={self.interval_name!r})"

    @property
    def store(self) -> MassiveStore:
        """The store the data comes through (the shared one for the feed's settings unless given)."""
        if self._given_store is None:
            self._given_store = MassiveStore.shared(self.p.settings)
        return self._given_store

    @property
    def has_store(self) -> bool:
        """A store was given or opened already."""
        return self._given_store is not None

    @property
    def live(self) -> bool:
        """Live and replayed sessions are live to cerebro (no preload, no runonce, qcheck loop)."""
        return self.mode in ("live", "replay", "ticks") or (self.mode == "source" and bool(self.p.source.live))

    # --- mode and bar size --------------------------------------------------------------------------------
    def _resolve_mode(self) -> str:
        p = self.p
        given = [k for k in ("dataset", "bars", "recording") if getattr(p, k) is not None]
        if len(given) > 1:
            raise InvalidInputError(f"pass only one of dataset=, bars=, recording= (got {', '.join(given)})")
        if given and not p.historical and given[0] != "recording":
            raise InvalidInputError("historical=False streams from Massive; datasets and frames are history")
        if given and p.ticks is not None:
            raise InvalidInputError(f"ticks= replays history: do not combine it with {given[0]}=")
        if given:
            return {"dataset": "dataset", "bars": "bars", "recording": "replay"}[given[0]]
        if p.ticks is not None:
            if not p.historical:
                raise InvalidInputError("ticks= replays historical ticks; live streams use historical=False alone")
            return "ticks"
        if p.source is not None:
            return "source"
        if not isinstance(p.dataname, str) or not p.dataname:
            raise InvalidInputError("MassiveData needs dataname='TICKER' (or dataset=, bars=, recording=)")
        if p.events is not None and p.historical:
            raise InvalidInputError("events= is a live source: pass historical=False as well")
        return "fetch" if p.historical else "live"

    def _resolve_interval(self) -> tuple[str, int, int]:
        p = self.p
        if p.interval is not None:
            tf, comp = timeframe_for(p.interval)
        elif p.timeframe is not None:
            tf, comp = int(p.timeframe), int(p.compression or 1)
        else:
            tf, comp = timeframe_for(self._default_interval())
        if self.mode in ("fetch", "live"):
            name = interval_for(tf, comp).name  # raises for sizes Massive does not serve
        else:
            name = str(p.interval or f"{bt.TimeFrame.getname(tf, comp)}x{comp}")
            try:
                name = interval_for(tf, comp).name
            except InvalidInputError:
                pass
        return name, tf, comp

    def _default_interval(self) -> str:
        p = self.p
        if self.mode in ("replay", "ticks"):
            return "1m"
        if self.mode == "dataset":
            return str(dataset_info(self._dataset_file()).get("interval") or "1d")
        if self.mode == "bars":
            return str(p.bars.attrs.get("interval") or _infer_interval(p.bars))
        return "1d"

    # --- sources ----------------------------------------------------------------------------------------
    def make_source(self) -> FeedSource:
        if self.p.source is not None:
            return self.p.source
        mode = self.mode
        label = f"{self.symbol or '?'} {self.interval_name}"
        if mode == "fetch":
            return FrameSource(self._fetch_frame, f"{label} via {self.p.method}")
        if mode == "dataset":
            return FrameSource(lambda: self._one_symbol(self.store.load_dataset(self._dataset_file(),
                                                                                  self.p.adjusted)),
                               f"dataset {self.p.dataset}")
        if mode == "bars":
            return FrameSource(lambda: self._one_symbol(self.p.bars), f"frame {label}")
        if mode == "replay":
            return self._replay_source()
        if mode == "ticks":
            return self._tick_source()
        return self._live_source()

    def _dataset_file(self) -> Path:
        ds = self.p.dataset
        candidate = Path(str(ds))
        if candidate.suffix == ".parquet" and (candidate.is_absolute() or candidate.parent != Path(".")):
            return candidate
        settings = self._given_store.settings if self._given_store is not None else self.p.settings
        return dataset_path(str(ds), settings=settings)

    def window(self) -> tuple[DateLike | None, DateLike | None]:
        zone = zone_from(self.p.tz)
        return _bound(self.raw_window[0], zone), _bound(self.raw_window[1], zone)

    def _fetch_frame(self) -> pd.DataFrame:
        start, end = self.window()
        iv = interval_for(self.p.timeframe, self.p.compression)
        end = end if end is not None else pd.Timestamp.now("UTC").floor("min")
        if start is None:
            start = _as_timestamp(end) - _LOOKBACK[iv.timespan]
        assert self.symbol is not None  # fetch mode needs dataname
        return self.store.fetch_query(BarQuery.build(self.symbol, start, end, iv, adjusted=self._fetch_adjusted(),
                                                     roll_adjust=self.p.roll_adjust),
                                      self.p.method)

    def _fetch_adjusted(self) -> bool | str:
        """``adjusted`` for fetched bars: ``None`` (the param's default) means split-adjusted, as in ``fetch_data``;
        for a dataset it means the prices as stored."""
        return True if self.p.adjusted is None else self.p.adjusted

    def _one_symbol(self, df: pd.DataFrame) -> pd.DataFrame:
        symbols = list(dict.fromkeys(df["symbol"])) if len(df) else []
        if self.symbol is None:
            if len(symbols) > 1:
                raise InvalidInputError(f"the bars hold {len(symbols)} symbols ({', '.join(map(str, symbols[:10]))}); "
                                        "pick one with dataname=")
            self.symbol = str(symbols[0]) if symbols else None
        elif self.symbol not in symbols:
            raise InvalidInputError(f"{self.symbol} is not in these bars (symbols: {', '.join(map(str, symbols))})")
        df = df[df["symbol"] == self.symbol] if len(symbols) > 1 else df
        start, end = self.window()
        if start is not None or end is not None:
            window = parse_date_range(start or "1970-01-01", end or "2200-01-01")
            ts = df["timestamp"]
            df = df[(ts >= window.start) & (ts < window.end)]
        return df

    def _replay_source(self) -> FeedSource:
        from ..record import RecordingSource
        from ..record.library import recording_path
        from ..record.reader import RecordingReader
        from .live import StreamSource

        folder = recording_path(self.p.recording, self.store.settings)
        if self.symbol is None:
            symbols = RecordingReader(folder).meta().get("symbols") or []
            if len(symbols) != 1:
                raise InvalidInputError(f"recording {folder} holds symbols {symbols}; pick one with dataname=")
            self.symbol = normalize_symbol(symbols[0])
        replay = RecordingSource(folder, speed=self.p.replay_speed)
        return StreamSource(replay, self.symbol, self._builder(), subscribe=replay.start, unsubscribe=replay.close,
                            backfill=None, clock=None, market=asset_class(self.symbol), name=f"replay {self.symbol}")

    def _tick_kinds(self) -> list[str]:
        from ..tickschema import validate_kind

        ticks = self.p.ticks
        if isinstance(ticks, str) and ticks.strip().lower() in ("both", "all"):
            return ["trades", "quotes"]
        kinds = [ticks] if isinstance(ticks, str) else list(ticks)
        return list(dict.fromkeys(validate_kind(k) for k in kinds))

    def _tick_frame(self) -> tuple[pd.DataFrame, str]:
        """The ticks to replay and a description: a given tick frame, a tick dataset, or ``fetch_ticks``."""
        ticks = self.p.ticks
        if isinstance(ticks, pd.DataFrame):
            frame, what = ticks, "tick frame"
        elif isinstance(ticks, (str, Path)) and str(ticks).strip().lower() not in (
                "quotes", "trades", "quote", "trade", "both", "all"):
            frame, what = self.store.load_dataset(Path(str(ticks)) if str(ticks).endswith(".parquet") else str(ticks)), \
                f"tick dataset {ticks}"
        else:
            start, end = self.window()
            if start is None or end is None:
                raise InvalidInputError("ticks= needs fromdate and todate (the historical window to replay)")
            if self.symbol is None:
                raise InvalidInputError("ticks= fetches one symbol's ticks: pass dataname='TICKER'")
            kinds = self._tick_kinds()
            frame = self.store.fetch_ticks(self.symbol, start, end, kinds, self.p.tick_method)
            return frame, f"{self.symbol} {'/'.join(kinds)} via {frame.attrs.get('method', self.p.tick_method)}"
        if "kind" not in frame.columns or "time_ms" not in frame.columns:
            raise InvalidInputError(f"{what} is not a tick frame (see massive_feeds.tickschema)")
        symbols = list(dict.fromkeys(frame["symbol"])) if len(frame) else []
        if self.symbol is None:
            if len(symbols) != 1:
                raise InvalidInputError(f"{what} holds symbols {symbols[:10]}; pick one with dataname=")
            self.symbol = normalize_symbol(str(symbols[0]))
        start, end = self.window()
        if start is not None or end is not None:
            window = parse_date_range(start or "1970-01-01", end or "2200-01-01")
            ts = frame["timestamp"]
            frame = frame[((ts >= window.start) & (ts < window.end)).to_numpy()]
        return frame, what

    def _tick_source(self) -> FeedSource:
        from ..record.history import TickReplaySource
        from .live import StreamSource

        frame, what = self._tick_frame()
        assert self.symbol is not None
        frame = frame[(frame["symbol"] == self.symbol).to_numpy()]
        if len(frame) == 0:
            log.warning("%s: no ticks to replay (%s)", self.symbol, what)
        replay = TickReplaySource(frame, speed=self.p.replay_speed, description=what)
        builder = self._builder(quotes_only=bool(len(frame)) and not (frame["kind"] == "trade").any())
        return StreamSource(replay, self.symbol, builder, subscribe=replay.start, unsubscribe=replay.close,
                            backfill=None, clock=None, market=asset_class(self.symbol), name=f"ticks {self.symbol}")

    def _live_source(self) -> FeedSource:
        from .live import STREAM_CLOCK, StreamSource, live_kinds

        store, symbol, clock = self.store, self.symbol, self.p.clock
        assert symbol is not None
        if asset_class(symbol) == "futures" and is_continuous(symbol):
            return self._rolling_source(symbol)
        # "now" is the market's: the given clock, else the stream's own (see live.StreamSource)
        fromdate = self.window()[0]
        if clock is not None:
            first: pd.Timestamp | None = self._backfill_start(clock)
        else:  # without fromdate: backfill_bars before the bucket of the stream's first event
            first = _as_timestamp(fromdate) if fromdate is not None else None
        kinds = live_kinds(symbol, self.p.live_bars, quotes=bool(self.extra_lines))
        own = self.p.events is None  # our connector: we subscribe; a given event source is the caller's
        return StreamSource(store.connector if own else self.p.events, symbol, self._builder(),
                            subscribe=(lambda: store.subscribe(symbol, kinds)) if own else None,
                            unsubscribe=(lambda: store.unsubscribe(symbol)) if own else None,
                            backfill=self._backfill_fn(), backfill_start=first, backfill_bars=int(self.p.backfill_bars),
                            clock=clock if clock is not None else STREAM_CLOCK,
                            server_clock=store.server_time_ms if self.p.backfill else None,
                            start_wait=float(self.p.start_wait),
                            grace_ms=int(self.p.grace * 1000), market=asset_class(symbol), name=f"live {symbol}")

    def _rolling_source(self, ticker: str) -> FeedSource:
        """A continuous series live: the contract it holds now, rolled at session changes (see .rolling)."""
        from ..futures import held_contract
        from .rolling import RollingSource, session_of

        store = self.store
        session = session_of(store.server_time_ms())  # the service's clock (the sandbox's)
        held = held_contract(ticker, session, store.settings)
        log.info("live %s: streaming %s, the contract it holds in the session of %s", ticker, held, session)
        return RollingSource(ticker, held, self._contract_source,
                             lambda day: held_contract(ticker, day, store.settings), session)

    def _contract_source(self, contract: str, rolled_into: date | None) -> FeedSource:
        """The stream source of one contract of a continuous series: the first one (``rolled_into`` None)
        backfills the series as any live feed; a contract rolled into backfills its own bars from the open
        of the session it is held in, so the strategy sees that session without a gap (as after a reconnect)."""
        from ..futures_symbols import session_open
        from .live import STREAM_CLOCK, StreamSource, live_kinds

        store, clock = self.store, self.p.clock
        kinds = live_kinds(contract, self.p.live_bars, quotes=bool(self.extra_lines))
        backfill = self._backfill_fn(None if rolled_into is None else contract)
        start = None
        if backfill is not None and rolled_into is not None:
            start = session_open(rolled_into)
        elif backfill is not None and clock is not None:
            start = self._backfill_start(clock)
        return StreamSource(store.connector, contract, self._builder(),
                            subscribe=lambda: store.subscribe(contract, kinds),
                            unsubscribe=lambda: store.unsubscribe(contract),
                            backfill=backfill, backfill_start=start, backfill_bars=int(self.p.backfill_bars),
                            clock=clock if clock is not None else STREAM_CLOCK,
                            server_clock=store.server_time_ms if backfill is not None else None,
                            start_wait=float(self.p.start_wait), grace_ms=int(self.p.grace * 1000),
                            market="futures", name=f"live {self.symbol} ({contract})")

    def _backfill_fn(self, contract: str | None = None) -> Any:
        """REST bars of this feed's symbol (or of ``contract``, one a continuous series holds) and interval
        for a window (``None`` without backfill)."""
        if not self.p.backfill:
            return None
        store, symbol, iv = self.store, contract or self.symbol, interval_for(self.p.timeframe, self.p.compression)
        assert symbol is not None  # live mode needs dataname
        adjusted = self._fetch_adjusted()  # True/"splits", "total", False/"raw": validated by BarQuery.build
        return lambda start, end: store.backfill_query(BarQuery.build(symbol, start, end, iv, adjusted=adjusted))

    def _backfill_start(self, clock: Any) -> pd.Timestamp:
        """``fromdate``, else ``backfill_bars`` bars before now."""
        start, _ = self.window()
        if start is not None:
            return _as_timestamp(start)
        width = pd.Timedelta(milliseconds=bar_width_ms(self.p.timeframe, self.p.compression) or 86_400_000)
        return pd.Timestamp(clock(), unit="ms", tz="UTC") - width * int(self.p.backfill_bars)

    def _builder(self, quotes_only: bool = False) -> Any:
        from .live import BarBuilder

        if self.p.timeframe > bt.TimeFrame.Days:
            raise InvalidInputError("live and replayed bars go up to 1 day; resample for weeks or months")
        # forex streams quotes only: its bars are built from the mid, as Massive's own forex bars
        forex = self.symbol is not None and asset_class(self.symbol) == "forex"
        return BarBuilder(bar_width_ms(self.p.timeframe, self.p.compression), self.p.live_bars,
                          self.p.quote_only_bars or forex or quotes_only)


# --- helpers -----------------------------------------------------------------------------------------------
def _bound(value: Any, zone: Any) -> DateLike | None:
    """A user bound for the fetch: dates stay dates (New York days), naive datetimes are read in ``zone``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime) or isinstance(value, pd.Timestamp):
        ts = pd.Timestamp(value)
        if ts.tzinfo is None:
            ts = ts.tz_localize(zone or "UTC", ambiguous=True, nonexistent="shift_forward")
        return ts.tz_convert("UTC")
    if isinstance(value, date):
        return value
    raise InvalidInputError(f"Invalid date bound {value!r}")


def _as_timestamp(value: DateLike) -> pd.Timestamp:
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return parse_date_range(value, value).start
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _infer_interval(df: pd.DataFrame) -> str:
    """The bar size of a frame without an ``interval`` attribute: its most common spacing."""
    ts = df["timestamp"]
    if len(ts) < 2:
        return "1d"
    steps = np.diff(np.sort(pd.to_datetime(ts, utc=True).to_numpy(dtype="datetime64[ns]").view(np.int64)))
    steps = steps[steps > 0]
    if not len(steps):
        return "1d"
    values, counts = np.unique(steps, return_counts=True)
    seconds = int(values[np.argmax(counts)] // 10**9)
    if seconds >= 86_400:
        return "1d"
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}min"
