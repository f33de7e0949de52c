"""``MassiveData``: Massive bars as a Backtrader data feed — historical, live, or a replayed recording.

One feed class, one small loop: the feed reads a *feed source* (:mod:`.sources`) and puts its bars
on the lines. Which source depends on the parameters:

==========================================  ===========================================================
``MassiveData(dataname="AAPL", …)``         history through ``fetch_data`` (auto REST/flat files, cache, quota)
``MassiveData(dataset="name")``             a saved dataset (historical or recorded bars)
``MassiveData(bars=df)``                    any frame in the standard bar schema
``MassiveData(dataname=…, historical=False)``  live: REST backfill (DELAYED), then stream bars (LIVE)
``MassiveData(recording=…, replay_speed=…)``   a recorded session through the *same* live state machine
``MassiveQuoteData(dataname=…, ticks="quotes")``  historical trades/quotes (``fetch_ticks``) through that
                                            same state machine, as if streamed (``replay_speed``)
==========================================  ===========================================================

Lines are UTC. By default a bar is stamped at its start, as in the rest of massive_feeds (so bars equal
``fetch_data`` rows); when cerebro resamples or replays the feed (``resampledata``/``replaydata``),
intraday bars are stamped at their end instead, because Backtrader's resampler groups bars by their
right edge (a start-stamped 09:30 minute would otherwise land in the 09:25–09:30 bar). Force either
with ``bar_time="start"``/``"end"``.

Resampling to days follows Backtrader's sessions, which end at midnight of the feed's ``tz``: pass
``tz="America/New_York"`` so a session is a New York day (UTC days would split US after-hours).
Backtrader's resampler also assumes a bar in every period: after a gap (a minute without trades, common
outside regular hours) it merges the bar that lands exactly on the next boundary into the previous
bar. For exact larger bars ask Massive for that interval directly (``interval="5m"``).

Note the two meanings of "replay": ``cerebro.replaydata`` is Backtrader's bar-by-bar construction of
a larger bar; ``recording=…``/``replay_speed`` replays a *recorded live session*.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

import backtrader as bt
import numpy as np
import pandas as pd

from ..datasets import dataset_info, dataset_path
from ..errors import InvalidInputError
from ..schema import DateLike, Interval, asset_class, normalize_symbol, parse_date_range
from .bars import BarBlock, BarFormat, bt_datenums
from .sources import END, FeedSource, FrameSource, Notice, wall_ms
from .store import MassiveStore
from .timeframes import bar_width_ms, interval_for, timeframe_for
from .tz import backtrader_tz, zone_from

log = logging.getLogger(__name__)

_EMPTY = BarBlock([], (), ())
_LOOKBACK = {"minute": pd.Timedelta(days=5), "hour": pd.Timedelta(days=30), "day": pd.Timedelta(days=365),
             "week": pd.Timedelta(days=5 * 365), "month": pd.Timedelta(days=5 * 365)}


class MassiveData(bt.feed.DataBase):
    """Massive bars as a Backtrader feed. See the module docstring for the modes.

    Params (beyond Backtrader's ``name``, ``fromdate``, ``todate``, ``tz``, ``qcheck`` …):

    - ``dataname``: ticker (``AAPL``, ``X:BTCUSD``/``BTC-USD``, ``I:SPX`` …); optional for a
      single-symbol dataset/frame/recording.
    - ``timeframe``/``compression`` or ``interval`` (``"5m"``): the bar size. Sizes Massive serves:
      1/5/15/30/60/240 minutes, 1 day, 1 week, 1 month (others: ``cerebro.resampledata``). Default:
      the dataset's or recording's interval, else 1 day (1 minute for recordings).
    - ``fromdate``/``todate``: date-only bounds are whole New York days (as everywhere in
      massive_feeds); naive datetimes are read in ``tz`` (UTC without one); aware ones as they are.
      Without ``fromdate`` history starts a few days (intraday) or a year (daily) before ``todate``.
    - ``method`` (``auto``/``rest``/``flat_file``), ``adjusted``: passed to ``fetch_data``.
    - ``dataset``, ``bars``: read a saved dataset / a DataFrame instead of fetching.
    - ``historical`` (default ``True``); ``False`` streams live through the store's connector.
    - ``recording``, ``replay_speed``: replay a recorded session (folder, dataset name or file);
      ``None`` = as fast as possible, ``2.0`` = twice real time.
    - ``ticks``: replay *historical* ticks between ``fromdate`` and ``todate`` through the live state
      machine (CONNECTED → LIVE → DISCONNECTED, paced by ``replay_speed``): ``"quotes"``, ``"trades"``
      or ``("trades", "quotes")`` fetched with :func:`massive_feeds.fetch_ticks` (``tick_method``:
      ``auto``/``rest``/``flat_file``), or a tick frame / tick dataset name. Bars are built from the
      events exactly as from a recording; with quotes only, bars come from the mid
      (``quote_only_bars``), as forex bars do.
    - ``store`` or ``settings``: where data comes from (default: ``MassiveStore.shared()``).
    - ``bar_time``: ``auto`` | ``start`` | ``end`` (see the module docstring).
    - ``tz``: output time zone for strategies: a name, ``zoneinfo.ZoneInfo``, pytz zone or tzinfo.
    - Live/replay: ``backfill`` (REST backfill at start and over reconnect gaps), ``backfill_bars``
      (how far back the initial backfill reaches without ``fromdate``), ``live_bars`` (``trades``:
      build bars from trades; ``aggregates``: from Massive's minute aggregates), ``quote_only_bars``,
      ``grace`` (seconds a finished bar waits for straggling trades), ``clock`` (``() -> epoch ms``;
      default the wall clock — pass the sandbox's clock for sandbox sessions).
    - Plug-ins: ``events`` — any event source (``add_listener``/``remove_listener``, e.g. an
      ``EventHub`` you publish into) to read live instead of the store's connector; ``source`` — a
      complete :class:`~massive_feeds.backtrader.sources.FeedSource` of your own.
    """

    params = (
        ("dataname", None),
        ("timeframe", None),
        ("compression", None),
        ("interval", None),
        ("dataset", None),
        ("bars", None),
        ("recording", None),
        ("replay_speed", None),
        ("ticks", None),
        ("tick_method", "auto"),
        ("historical", True),
        ("method", "auto"),
        ("adjusted", True),
        ("store", None),
        ("settings", None),
        ("bar_time", "auto"),
        ("backfill", True),
        ("backfill_bars", 500),
        ("live_bars", "trades"),
        ("quote_only_bars", False),
        ("grace", 2.0),
        ("clock", None),
        ("events", None),
        ("source", None),
        ("qcheck", 0.5),
    )

    #: Extra lines (beyond OHLCV/open interest) this class declares and fills from same-named columns.
    extra_lines: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        p = self.p
        self._mode = self._resolve_mode()
        self._symbol = normalize_symbol(p.dataname) if isinstance(p.dataname, str) and p.dataname else None
        self._raw_window = (p.fromdate, p.todate)  # Backtrader turns dates into datetimes after __init__
        self._interval_name, p.timeframe, p.compression = self._resolve_interval()
        self._store: MassiveStore | None = p.store
        if p.bar_time not in ("auto", "start", "end"):
            raise InvalidInputError(f"bar_time must be 'auto', 'start' or 'end', not {p.bar_time!r}")
        if not p.name and self._symbol is None and isinstance(p.dataset, (str, Path)):
            self._name = Path(str(p.dataset)).stem
        self._source: FeedSource | None = None
        self._clones: list[Any] = []
        self._columns: tuple[tuple[Any, list[float]], ...] = ()
        self._set_block(_EMPTY)

    def __repr__(self) -> str:
        what = {"fetch": f"via {self.p.method}", "dataset": f"dataset={self.p.dataset!r}", "bars": "frame",
                "live": "live", "replay": f"recording={str(self.p.recording)!r}", "source": repr(self.p.source),
                "ticks": f"ticks via {self.p.tick_method}"}[self._mode]
        status = f", status={self._status_name()}" if self.islive() else ""
        return f"{type(self).__name__}({self._symbol or '?'} {self._interval_name} {what}, bars={len(self)}{status})"

    # --- configuration --------------------------------------------------------------------------------
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
        if self._mode in ("fetch", "live"):
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
        if self._mode in ("replay", "ticks"):
            return "1m"
        if self._mode == "dataset":
            return str(dataset_info(self._dataset_file()).get("interval") or "1d")
        if self._mode == "bars":
            return str(p.bars.attrs.get("interval") or _infer_interval(p.bars))
        return "1d"

    @property
    def interval(self) -> Interval | None:
        """The REST interval of these bars (``None`` for sizes only recordings have, such as seconds)."""
        try:
            return interval_for(self.p.timeframe, self.p.compression)
        except InvalidInputError:
            return None

    @property
    def symbol(self) -> str | None:
        return self._symbol

    @property
    def store(self) -> MassiveStore:
        """The store this feed reads through (the shared one for its settings unless given)."""
        if self._store is None:
            self._store = MassiveStore.shared(self.p.settings)
        return self._store

    @property
    def source(self) -> FeedSource | None:
        """The feed source of the current run (after ``start``)."""
        return self._source

    def islive(self) -> bool:
        """Live and replayed sessions are live to cerebro (no preload, no runonce, qcheck loop)."""
        return self._mode in ("live", "replay", "ticks") or (self._mode == "source" and bool(self.p.source.live))

    def haslivedata(self) -> bool:
        return self._i < self._n or (self._source is not None and self._source.pending())

    # --- Backtrader hooks -----------------------------------------------------------------------------
    def _gettz(self) -> Any:
        return backtrader_tz(self.p.tz)

    def _gettzinput(self) -> None:
        return None  # our bars are UTC already; Backtrader's tzinput would shift them

    def _start_finish(self) -> None:
        super()._start_finish()
        # Backtrader's own filter reads date-only bounds as tz-midnight .. 23:59:59 and compares bar
        # stamps: replace it with massive_feeds' window (New York days, bar starts). History sources
        # already applied it; live and replayed sessions are filtered here (todate ends the feed).
        self.fromdate, self.todate = float("-inf"), float("inf")
        start, end = self._window()
        if self.islive() and (start is not None or end is not None):
            window = parse_date_range(start or "1970-01-01", end or "2200-01-01")
            offset = pd.Timedelta(self._fmt.offset_ns, unit="ns")
            first, last = window.start + offset, window.end + offset - pd.Timedelta(1, unit="us")
            nums = bt_datenums(np.array([first.value, last.value], dtype=np.int64))
            self.fromdate = nums[0] if start is not None else self.fromdate
            self.todate = nums[1] if end is not None else self.todate

    def start(self) -> None:
        super().start()
        if self.islive():
            self._laststatus = None  # so the first CONNECTED reaches notify_data
        self._set_block(_EMPTY)
        self._last_dt = float("-inf")
        self._fmt = BarFormat(self.extra_lines, bar_width_ms(self.p.timeframe, self.p.compression),
                              self._stamp())
        self._source = self._make_source()
        self._source.open(self._fmt)

    def stop(self) -> None:
        if self._source is not None:
            self._source.close()
        super().stop()

    def _stamp(self) -> str:
        if bar_width_ms(self.p.timeframe, self.p.compression) is None:
            return "start"  # day bars are identified by their date in every convention
        if self.p.bar_time != "auto":
            return self.p.bar_time
        resampled = self.resampling or self.replaying or any(c.resampling for c in self._clones)
        return "end" if resampled else "start"

    def clone(self, **kwargs: Any) -> Any:
        """Backtrader's clone (``cerebro.resampledata`` of a feed that was also added directly);
        remembered so ``bar_time="auto"`` knows its bars are being resampled."""
        twin = super().clone(**kwargs)
        self._clones.append(twin)
        return twin

    # --- the hot loop -----------------------------------------------------------------------------------
    def _set_block(self, block: BarBlock) -> None:
        self._i, self._n = 0, len(block)
        self._columns = ()
        if not block.names:
            return
        v = dict(zip(block.names, block.values))
        self._v = (block.dt, v["open"], v["high"], v["low"], v["close"], v["volume"], v["openinterest"])
        lines = self.lines
        self._lines = (lines.datetime, lines.open, lines.high, lines.low, lines.close, lines.volume,
                       lines.openinterest)
        self._extras = tuple((getattr(lines, n), v[n]) for n in self.extra_lines)
        if block.dt:
            self._last_dt = block.dt[-1]
        self._columns = self._direct_columns(block)

    def _direct_columns(self, block: BarBlock) -> tuple[tuple[Any, list[float]], ...]:
        """(line, values) for every line when :meth:`load` may append to the buffers directly: plain
        history (no filters, no live filtering by date), unbounded buffers, nothing bound to them."""
        lines = list(self.lines)
        if self._filters or self.islive() or any(ln.mode != ln.UnBounded or ln.bindings for ln in lines):
            return ()
        by_name = {"datetime": block.dt, **dict(zip(block.names, block.values))}
        aliases = self.lines.getlinealiases()
        if any(name not in by_name for name in aliases):
            return ()
        return tuple((line, by_name[name]) for line, name in zip(lines, aliases))

    def _load(self) -> bool | None:
        i = self._i
        if i < self._n:
            self._i = i + 1
            l_dt, l_o, l_h, l_l, l_c, l_v, l_oi = self._lines
            v_dt, v_o, v_h, v_l, v_c, v_v, v_oi = self._v
            l_dt[0] = v_dt[i]
            l_o[0] = v_o[i]
            l_h[0] = v_h[i]
            l_l[0] = v_l[i]
            l_c[0] = v_c[i]
            l_v[0] = v_v[i]
            l_oi[0] = v_oi[i]
            for line, values in self._extras:
                line[0] = values[i]
            return True
        return self._next_block()

    def load(self) -> bool | None:
        """Backtrader's ``load`` — except for plain history, where each line's buffer gets its value
        appended directly: the same effect as ``forward()`` + ``line[0] = value`` (what the base
        does) at a fraction of the cost, since that per-bar overhead is most of a feed's time."""
        columns, i = self._columns, self._i
        if columns and i < self._n and not self._barstack and not self._barstash:
            self._i = i + 1
            for line, values in columns:
                line.array.append(values[i])
                line._idx += 1
                line.lencount += 1
            return True
        return super().load()

    def _tick_lines(self) -> tuple[tuple[str, Any], ...]:
        ticks = self.__dict__.get("_tick_cache")
        if ticks is None:
            lines = self.lines
            ticks = self._tick_cache = tuple(
                ("tick_" + name, getattr(lines, name)) for name in lines.getlinealiases() if name != "datetime")
        return ticks

    def _tick_nullify(self) -> None:
        # Backtrader's own version rebuilds the attribute names from the line aliases on every bar;
        # cerebro calls this and _tick_fill once per bar per feed, so cache them (same effect)
        for attr, _ in self._tick_lines():
            setattr(self, attr, None)
        self.tick_last = None

    def _tick_fill(self, force: bool = False) -> None:
        ticks = self._tick_lines()
        if force or getattr(self, ticks[0][0], None) is None:
            for attr, line in ticks:
                setattr(self, attr, line[0])
            self.tick_last = ticks[0][1][0]

    def _next_block(self) -> bool | None:
        source = self._source
        if source is None:
            return False
        while True:
            item = source.poll(self._qcheck)
            if item is None:
                return None  # live: nothing yet; cerebro loops (notifications, timers, resampler checks)
            if item is END:
                return False
            if isinstance(item, Notice):
                self.put_notification(item.status, *((item.message,) if item.message else ()))
                continue
            block = item.after(self._last_dt)  # never a bar at or before the last one
            if len(block):
                self._set_block(block)
                return self._load()

    def preload(self) -> None:
        """Preload by extending the line buffers with whole columns when nothing needs per-bar hooks
        (no filters such as resampling, plain buffers); otherwise Backtrader's bar-by-bar preload."""
        lines = list(self.lines)
        plain = all(line.mode == line.UnBounded and not line.extension and not len(line.array) for line in lines)
        if self._filters or not plain or self._source is None or self._source.live:
            super().preload()
            return
        blocks = []
        while (item := self._source.poll(0.0)) is not END:
            if isinstance(item, BarBlock):
                blocks.append(item.after(blocks[-1].dt[-1] if blocks and len(blocks[-1]) else float("-inf")))
        for alias_index, line in enumerate(lines):
            name = self.lines._getlinealias(alias_index)
            for block in blocks:
                if name == "datetime":
                    line.array.extend(block.dt)
                elif name in block.names:
                    line.array.extend(block.values[block.names.index(name)])
                else:
                    line.array.extend([float("nan")] * len(block))
        self._set_block(_EMPTY)
        self._last()
        self.home()

    # --- sources ----------------------------------------------------------------------------------------
    def _make_source(self) -> FeedSource:
        if self.p.source is not None:
            return self.p.source
        mode = self._mode
        label = f"{self._symbol or '?'} {self._interval_name}"
        if mode == "fetch":
            return FrameSource(self._fetch_frame, f"{label} via {self.p.method}")
        if mode == "dataset":
            return FrameSource(lambda: self._one_symbol(self.store.load_dataset(self._dataset_file())),
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
        settings = self._store.settings if self._store is not None else self.p.settings
        return dataset_path(str(ds), settings=settings)

    def _window(self) -> tuple[DateLike | None, DateLike | None]:
        zone = zone_from(self.p.tz)
        return _bound(self._raw_window[0], zone), _bound(self._raw_window[1], zone)

    def _fetch_frame(self) -> pd.DataFrame:
        start, end = self._window()
        iv = interval_for(self.p.timeframe, self.p.compression)
        end = end if end is not None else pd.Timestamp.now("UTC").floor("min")
        if start is None:
            start = _as_timestamp(end) - _LOOKBACK[iv.timespan]
        return self.store.fetch_bars(self._symbol, start, end, iv, self.p.method, self.p.adjusted)  # type: ignore[arg-type]

    def _one_symbol(self, df: pd.DataFrame) -> pd.DataFrame:
        symbols = list(dict.fromkeys(df["symbol"])) if len(df) else []
        if self._symbol is None:
            if len(symbols) > 1:
                raise InvalidInputError(f"the bars hold {len(symbols)} symbols ({', '.join(map(str, symbols[:10]))}); "
                                        "pick one with dataname=")
            self._symbol = str(symbols[0]) if symbols else None
        elif self._symbol not in symbols:
            raise InvalidInputError(f"{self._symbol} is not in these bars (symbols: {', '.join(map(str, symbols))})")
        df = df[df["symbol"] == self._symbol] if len(symbols) > 1 else df
        start, end = self._window()
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
        if self._symbol is None:
            symbols = RecordingReader(folder).meta().get("symbols") or []
            if len(symbols) != 1:
                raise InvalidInputError(f"recording {folder} holds symbols {symbols}; pick one with dataname=")
            self._symbol = normalize_symbol(symbols[0])
        replay = RecordingSource(folder, speed=self.p.replay_speed)
        return StreamSource(replay, self._symbol, self._builder(), subscribe=replay.start, unsubscribe=replay.close,
                            backfill=None, clock=None, market=asset_class(self._symbol), name=f"replay {self._symbol}")

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
            start, end = self._window()
            if start is None or end is None:
                raise InvalidInputError("ticks= needs fromdate and todate (the historical window to replay)")
            kinds = self._tick_kinds()
            frame = self.store.fetch_ticks(self._symbol, start, end, kinds, self.p.tick_method)  # type: ignore[arg-type]
            return frame, f"{self._symbol} {'/'.join(kinds)} via {frame.attrs.get('method', self.p.tick_method)}"
        if "kind" not in frame.columns or "time_ms" not in frame.columns:
            raise InvalidInputError(f"{what} is not a tick frame (see massive_feeds.tickschema)")
        symbols = list(dict.fromkeys(frame["symbol"])) if len(frame) else []
        if self._symbol is None:
            if len(symbols) != 1:
                raise InvalidInputError(f"{what} holds symbols {symbols[:10]}; pick one with dataname=")
            self._symbol = normalize_symbol(str(symbols[0]))
        start, end = self._window()
        if start is not None or end is not None:
            window = parse_date_range(start or "1970-01-01", end or "2200-01-01")
            ts = frame["timestamp"]
            frame = frame[((ts >= window.start) & (ts < window.end)).to_numpy()]
        return frame, what

    def _tick_source(self) -> FeedSource:
        from ..record.history import TickReplaySource
        from .live import StreamSource

        frame, what = self._tick_frame()
        assert self._symbol is not None
        frame = frame[(frame["symbol"] == self._symbol).to_numpy()]
        if len(frame) == 0:
            log.warning("%s: no ticks to replay (%s)", self._symbol, what)
        replay = TickReplaySource(frame, speed=self.p.replay_speed, description=what)
        builder = self._builder(quotes_only=bool(len(frame)) and not (frame["kind"] == "trade").any())
        return StreamSource(replay, self._symbol, builder, subscribe=replay.start, unsubscribe=replay.close,
                            backfill=None, clock=None, market=asset_class(self._symbol), name=f"ticks {self._symbol}")

    def _live_source(self) -> FeedSource:
        from .live import StreamSource, live_kinds

        store, symbol, clock = self.store, self._symbol, self.p.clock or wall_ms
        assert symbol is not None
        kinds = live_kinds(symbol, self.p.live_bars, quotes=bool(self.extra_lines))
        own = self.p.events is None  # our connector: we subscribe; a given event source is the caller's
        return StreamSource(store.connector if own else self.p.events, symbol, self._builder(),
                            subscribe=(lambda: store.subscribe(symbol, kinds)) if own else None,
                            unsubscribe=(lambda: store.unsubscribe(symbol)) if own else None,
                            backfill=self._backfill_fn(), backfill_start=self._backfill_start(clock), clock=clock,
                            grace_ms=int(self.p.grace * 1000), market=asset_class(symbol), name=f"live {symbol}")

    def _backfill_fn(self) -> Any:
        """REST bars of this feed's symbol and interval for a window (``None`` without backfill)."""
        if not self.p.backfill:
            return None
        store, symbol, iv = self.store, self._symbol, interval_for(self.p.timeframe, self.p.compression)
        return lambda start, end: store.backfill_bars(symbol, start, end, iv, self.p.adjusted)  # type: ignore[arg-type]

    def _backfill_start(self, clock: Any) -> pd.Timestamp:
        """``fromdate``, else ``backfill_bars`` bars before now."""
        start, _ = self._window()
        if start is not None:
            return _as_timestamp(start)
        width = pd.Timedelta(milliseconds=bar_width_ms(self.p.timeframe, self.p.compression) or 86_400_000)
        return pd.Timestamp(clock(), unit="ms", tz="UTC") - width * int(self.p.backfill_bars)

    def _builder(self, quotes_only: bool = False) -> Any:
        from .live import BarBuilder

        if self.p.timeframe > bt.TimeFrame.Days:
            raise InvalidInputError("live and replayed bars go up to 1 day; resample for weeks or months")
        # forex streams quotes only: its bars are built from the mid, as Massive's own forex bars
        forex = self._symbol is not None and asset_class(self._symbol) == "forex"
        return BarBuilder(bar_width_ms(self.p.timeframe, self.p.compression), self.p.live_bars,
                          self.p.quote_only_bars or forex or quotes_only)

    def _status_name(self) -> str:
        status = getattr(self, "_laststatus", None)
        return "-" if status is None else self._getstatusname(status)


class MassiveQuoteData(MassiveData):
    """:class:`MassiveData` with ``vwap``, ``bid``, ``ask``, ``mid`` and ``spread`` lines.

    Filled from same-named columns (recorded sessions carry them; ``mid``/``spread`` are derived from
    bid/ask when missing) or, live and in replays, from the last quote of each bar. Bars without a
    quote have NaN there. Use it for quote-driven strategies such as
    :class:`strategies.SpreadCapture`.
    """

    lines = ("vwap", "bid", "ask", "mid", "spread")
    extra_lines: ClassVar[tuple[str, ...]] = ("vwap", "bid", "ask", "mid", "spread")


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
