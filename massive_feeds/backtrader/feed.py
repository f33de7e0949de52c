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
from pathlib import Path
from typing import Any, ClassVar, cast

import backtrader as bt
import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from ..schema import Interval, asset_class, parse_date_range
from .bars import BarBlock, BarFormat, Stamp, bt_datenums
from .setup import FeedSetup
from .sources import END, FeedSource, Notice
from .store import MassiveStore
from .timeframes import bar_width_ms, interval_for
from .tz import backtrader_tz

log = logging.getLogger(__name__)

_EMPTY = BarBlock([], (), ())

#: The Backtrader release whose private line buffers (``array``, ``_idx``, ``lencount``, ``_barstack``,
#: ``_barstash``) the fast paths of :meth:`MassiveData.load` and :meth:`MassiveData.preload` write.
#: ``tests/test_backtrader_pin.py`` pins that behaviour; on any other release the feed takes Backtrader's
#: own (public, slower) path instead.
FAST_PATH_BACKTRADER = "1.9.78.123"
_FAST_PATH = bt.__version__ == FAST_PATH_BACKTRADER


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
    - ``method`` (``auto``/``rest``/``flat_file``), ``adjusted``, ``roll_adjust``: passed to ``fetch_data``.
      ``adjusted``: ``True``/``"splits"``, ``"total"`` or ``False``/``"raw"``, one meaning on every path; a
      ``dataset=`` is converted on read to it (``load_dataset(name, adjusted=...)``). Unset (``None``), fetched
      bars are split-adjusted and a dataset's prices are used as stored.
    - Futures (``ESZ4``, ``ES.c.0``): the feed sets its broker's commission scheme from the contract specs
      when added to cerebro — futures-style P&L (marked to market), ``mult`` = the product's point value from
      ``/futures/v1/products`` (ES: $50 a point), ``margin`` per contract (``margin`` param; Massive
      publishes none, default 0 = no margin check), ``commission`` per contract (``commission`` param).
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
      default the market clock read off the stream: newest event time + wall time since it arrived),
      ``start_wait`` (seconds without any event after subscribing — a closed market, an idle symbol —
      before the feed asks the service for its time, backfills up to it and goes on waiting for trades).
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
        ("adjusted", None),
        ("roll_adjust", "none"),
        ("margin", None),
        ("commission", 0.0),
        ("store", None),
        ("settings", None),
        ("bar_time", "auto"),
        ("backfill", True),
        ("backfill_bars", 500),
        ("live_bars", "trades"),
        ("quote_only_bars", False),
        ("grace", 2.0),
        ("clock", None),
        ("start_wait", 5.0),
        ("events", None),
        ("source", None),
        ("qcheck", 0.5),
    )

    #: Extra lines (beyond OHLCV/open interest) this class declares and fills from same-named columns.
    extra_lines: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        p = self.p
        self._setup = FeedSetup(p, self.extra_lines)  # mode, symbol, bar size, window; sources per run
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

    @property
    def interval(self) -> Interval | None:
        """The REST interval of these bars (``None`` for sizes only recordings have, such as seconds)."""
        try:
            return interval_for(self.p.timeframe, self.p.compression)
        except InvalidInputError:
            return None

    @property
    def symbol(self) -> str | None:
        return self._setup.symbol

    @property
    def _symbol(self) -> str | None:
        return self._setup.symbol

    @property
    def _mode(self) -> str:
        return self._setup.mode

    @property
    def _interval_name(self) -> str:
        return self._setup.interval_name

    @property
    def store(self) -> MassiveStore:
        """The store this feed reads through (the shared one for its settings unless given)."""
        return self._setup.store

    @property
    def source(self) -> FeedSource | None:
        """The feed source of the current run (after ``start``)."""
        return self._source

    def islive(self) -> bool:
        """Live and replayed sessions are live to cerebro (no preload, no runonce, qcheck loop)."""
        return self._setup.live

    def haslivedata(self) -> bool:
        return self._i < self._n or (self._source is not None and self._source.pending())

    # --- Backtrader hooks -----------------------------------------------------------------------------
    def _uses_store(self) -> bool:
        """A store reads this feed's data (fetch, live, datasets, recordings, ticks) or was given explicitly."""
        return self._setup.has_store or self._mode in ("fetch", "live", "dataset", "replay", "ticks")

    def setenvironment(self, env: Any) -> None:
        """Backtrader's store idiom (as ``IBData``): the feed adds its store to cerebro, which then starts and
        stops it and hands its messages to ``notify_store``."""
        super().setenvironment(env)
        if self._uses_store():
            env.addstore(self.store)
        if self.symbol is not None and asset_class(self.symbol) == "futures":
            self._set_futures_commission(env.getbroker(), self.symbol)

    def _set_futures_commission(self, broker: Any, symbol: str) -> None:
        """Futures-style commission for this feed: ``mult`` = point value, ``margin`` and ``commission`` per
        contract (see the class docstring). Registered under the feed's name (the symbol when it has none), so
        other feeds keep theirs."""
        from ..futures import point_value

        if not self._name:
            self._name = symbol
        mult = point_value(symbol, self.store.settings)
        broker.setcommission(commission=float(self.p.commission), margin=float(self.p.margin or 0.0), mult=mult,
                             commtype=bt.CommInfoBase.COMM_FIXED, stocklike=False, name=self._name)
        log.info("%s: futures commission scheme, $%g a point, margin %s", symbol, mult, self.p.margin)

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
        start, end = self._setup.window()
        if self.islive() and (start is not None or end is not None):
            window = parse_date_range(start or "1970-01-01", end or "2200-01-01")
            offset = pd.Timedelta(self._fmt.offset_ns, unit="ns")
            first, last = window.start + offset, window.end + offset - pd.Timedelta(1, unit="us")
            nums = bt_datenums(np.array([first.value, last.value], dtype=np.int64))
            self.fromdate = nums[0] if start is not None else self.fromdate
            self.todate = nums[1] if end is not None else self.todate

    def start(self) -> None:
        super().start()
        if self._uses_store():
            self.store.start(data=self)
        if self.islive():
            self._laststatus = None  # so the first CONNECTED reaches notify_data
        self._set_block(_EMPTY)
        self._last_dt = float("-inf")
        self._fmt = BarFormat(self.extra_lines, bar_width_ms(self.p.timeframe, self.p.compression),
                              self._stamp())
        self._source = self._setup.make_source()
        self._source.open(self._fmt)

    def stop(self) -> None:
        if self._source is not None:
            self._source.close()
        super().stop()

    def _stamp(self) -> Stamp:
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
        if not _FAST_PATH or self._filters or self.islive() or any(ln.mode != ln.UnBounded or ln.bindings
                                                                    for ln in lines):
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
            block = cast(BarBlock, item).after(self._last_dt)  # never a bar at or before the last one
            if len(block):
                self._set_block(block)
                return self._load()

    def preload(self) -> None:
        """Preload by extending the line buffers with whole columns when nothing needs per-bar hooks
        (no filters such as resampling, plain buffers); otherwise Backtrader's bar-by-bar preload."""
        lines = list(self.lines)
        plain = all(line.mode == line.UnBounded and not line.extension and not len(line.array) for line in lines)
        if not _FAST_PATH or self._filters or not plain or self._source is None or self._source.live:
            super().preload()
            return
        blocks: list[BarBlock] = []
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

    def _status_name(self) -> str:
        status = getattr(self, "_laststatus", None)
        return "-" if status is None else self._getstatusname(status)


MassiveStore.DataCls = MassiveData  # MassiveStore.getdata builds this feed (Backtrader's DataCls idiom)


class MassiveQuoteData(MassiveData):
    """:class:`MassiveData` with ``vwap``, ``bid``, ``ask``, ``mid`` and ``spread`` lines.

    Filled from same-named columns (recorded sessions carry them; ``mid``/``spread`` are derived from
    bid/ask when missing) or, live and in replays, from the last quote of each bar. Bars without a
    quote have NaN there. Use it for quote-driven strategies such as
    :class:`strategies.SpreadCapture`.
    """

    lines = ("vwap", "bid", "ask", "mid", "spread")
    extra_lines: ClassVar[tuple[str, ...]] = ("vwap", "bid", "ask", "mid", "spread")
