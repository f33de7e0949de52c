"""Paper trading on the live stream, and the replay of the saved session that must trade the same.

:func:`paper_trade` runs a strategy in Backtrader on the live feed (REST backfill → LIVE, reconnects
as the live feed does them) with a simulated broker, while it records the session: every batch of
events the feed was handed goes to the recorder's durable log (the feed's own listener feeds both,
so the log holds exactly what the strategy's bars were built from), and every REST backfill the
feed asked for (the initial one, the bucket the stream started in, the holes after reconnects) is
kept with its answer. Stopping (``seconds``, :meth:`threading.Event.set` on ``stop``, Ctrl-C) saves
the session as a dataset: the bars the strategy was fed (backfilled and live), the raw event log and
the backfills beside it.

:func:`replay_session` then runs the same strategy with the same parameters on the saved session
through the same feed path — the same :class:`~massive_feeds.backtrader.live.StreamSource` state
machine over the recorded events, its backfills answered from the saved ones instead of REST — and
stops after the last bar the live run processed. :func:`compare` lists the differences order by order
(times, sides, sizes, fill prices, statuses) and in final equity; none is the expected result.

Both runs fill at the signal bar (``cheat_on_close``): at its close (``fills="close"``) or at the
latest quote (``fills="quotes"``: buys at the ask, sells at the bid, see :mod:`massive_feeds.strategies.fills`).

One limit: live, a bar of a quiet market is completed by the market clock once ``grace`` has passed
after its end; the replay completes bars on the events alone. Only an event of that bar arriving
after the clock closed it (a stall of more than ``grace`` in the event flow) makes the two differ,
and the parity report then says where.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import backtrader as bt
import numpy as np
import pandas as pd

from massive_feeds.config import Settings
from massive_feeds.errors import InvalidInputError, MassiveError, StreamError
from massive_feeds.storage import read_parquet_frame, write_parquet

from .fills import QuoteBroker, check_fills
from .runner import _Trades, bt_nums_to_index
from . import resolve_strategies
from .vectorbt_runner import strategy_params

log = logging.getLogger(__name__)

PAPER_FILE = "paper.json"  # in the session's event folder: what ran, and where it stopped
BACKFILL_FILE = "paper_backfill.parquet"  # every REST backfill of the live run, with its answer
TRADE_COLUMNS = ["entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl"]


# --- records -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperOrder:
    """One order of a run, as it ended: created at ``created`` (the signal bar), filled (or not) at
    ``fill_time`` for ``fill_price``."""

    ref: int
    created: pd.Timestamp
    side: str
    size: float
    status: str
    fill_time: pd.Timestamp | None
    fill_price: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created.isoformat(), "side": self.side, "size": self.size, "status": self.status,
                "fill_time": None if self.fill_time is None else self.fill_time.isoformat(),
                "fill_price": self.fill_price}

    def line(self) -> str:
        fill = f" filled {self.fill_time:%Y-%m-%d %H:%M:%S} @ {self.fill_price!r}" if self.fill_time is not None else ""
        return f"{self.side} {self.size!r} at {self.created:%Y-%m-%d %H:%M:%S} {self.status}{fill}"


@dataclass
class Parity:
    """The replay against the live run: ``identical`` when ``differences`` is empty."""

    identical: bool
    differences: list[str]


@dataclass
class PaperResult:
    """One run (live or replayed) of a strategy on a session."""

    strategy: str
    symbol: str
    params: dict[str, Any]
    fills: str
    cash: float
    orders: list[PaperOrder]
    trades: pd.DataFrame = field(repr=False)
    equity_final: float
    bars: int
    last_bar: pd.Timestamp | None
    dataset: str | None = None
    parity: Parity | None = None
    #: the fed bars (live runs: saved with the dataset), with ``origin`` ``backfill``/``live``
    fed: pd.DataFrame | None = field(default=None, repr=False)
    stats: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object: dataset, orders, trades, equity_final, parity."""
        trades = [{k: (v.isoformat() if isinstance(v, pd.Timestamp) else float(v)) for k, v in row.items()}
                  for row in self.trades[TRADE_COLUMNS].to_dict("records")]
        return {"dataset": self.dataset, "strategy": self.strategy, "symbol": self.symbol, "params": self.params,
                "fills": self.fills, "bars": self.bars, "orders": [o.as_dict() for o in self.orders],
                "trades": trades, "equity_final": self.equity_final,
                "parity": None if self.parity is None else asdict(self.parity)}


# --- Backtrader pieces -------------------------------------------------------------------------------------
class _Orders(bt.Analyzer):
    """Every order of the strategy once it is done (filled, rejected, cancelled …), in that order."""

    def start(self) -> None:
        self.orders: list[PaperOrder] = []
        self.working = 0

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        if order.status == order.Partial:
            return
        done = order.status == order.Completed
        self.orders.append(PaperOrder(
            ref=int(order.ref), created=_ts(order.created.dt), side="buy" if order.isbuy() else "sell",
            size=float(abs(order.created.size)), status=order.getstatusname(),
            fill_time=_ts(order.executed.dt) if done else None,
            fill_price=float(order.executed.price) if done else None))


class SessionControl(bt.Strategy):
    """Runs beside the traded strategy (added after it, so it sees each bar once the strategy has): counts
    the bars, keeps what they were (the session's fed bars), reports to ``on_bar``, and stops cerebro
    right after a bar — when ``stop`` is set (live) or at bar time ``stop_at`` (replay) — so both runs end
    at the same point of the event loop."""

    params = (("stop", None), ("stop_at", None), ("on_bar", None))

    def __init__(self) -> None:
        self.rows: list[tuple[float, ...]] = []
        self.origins: list[str] = []
        d = self.datas[0]
        self._quotes = "bid" in d.lines.getlinealiases()

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        d = self.datas[0]
        nan = math.nan
        self.rows.append((d.datetime[0], d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0],
                          d.vwap[0] if self._quotes else nan, d.bid[0] if self._quotes else nan,
                          d.ask[0] if self._quotes else nan))
        self.origins.append("live" if d._laststatus == d.LIVE else "backfill")
        if self.p.on_bar is not None:
            self.p.on_bar(self)
        stop_at = self.p.stop_at
        if (self.p.stop is not None and self.p.stop.is_set()) or (stop_at is not None and d.datetime[0] >= stop_at):
            self.env.runstop()

    def fed_bars(self, symbol: str) -> pd.DataFrame:
        """The bars the strategy was fed, in the standard schema plus quotes and ``origin``."""
        cols = ["open", "high", "low", "close", "volume", "vwap", "bid", "ask"]
        arr = np.array([r[1:] for r in self.rows], dtype=np.float64).reshape(-1, len(cols))
        df = pd.DataFrame(arr, columns=cols)
        df.insert(0, "timestamp", bt_nums_to_index([r[0] for r in self.rows]))
        df.insert(1, "symbol", symbol)
        df["mid"] = (df["bid"] + df["ask"]) / 2
        df["spread"] = df["ask"] - df["bid"]
        df["origin"] = self.origins
        return df


@dataclass(frozen=True)
class Snapshot:
    """The session as the strategy stands after a bar: what the CLI's status line and the UI show."""

    time: pd.Timestamp
    close: float
    bid: float
    ask: float
    status: str
    position: float
    open_orders: int
    fills: tuple[PaperOrder, ...]
    cash: float
    equity: float
    bars: int

    def line(self) -> str:
        quote = f" bid {self.bid:g} ask {self.ask:g}" if self.bid == self.bid else ""
        return (f"{self.time:%H:%M:%S} {self.status} close {self.close:g}{quote} | position {self.position:g} | "
                f"open orders {self.open_orders} | fills {len(self.fills)} | cash {self.cash:,.2f} | "
                f"equity {self.equity:,.2f} | {self.bars} bars")


def snapshot(control: "SessionControl") -> Snapshot:
    """The traded strategy's position, orders, cash and equity after the bar ``control`` just saw."""
    strat = control.env.runningstrats[0]
    broker, d = control.broker, control.datas[0]
    orders = strat.analyzers.orders.orders
    row = control.rows[-1]
    return Snapshot(time=_ts(row[0]), close=row[4], bid=row[7], ask=row[8], status=d._getstatusname(d._laststatus),
                    position=float(broker.getposition(d).size), open_orders=len(list(broker.get_orders_open())),
                    fills=tuple(o for o in orders if o.fill_time is not None), cash=float(broker.getcash()),
                    equity=float(broker.getvalue()), bars=len(control.rows))


def _ts(num: float) -> pd.Timestamp:
    return bt_nums_to_index([num])[0]


# --- backfills: captured live, served in replay --------------------------------------------------------------
@dataclass
class BackfillLog:
    """The REST backfills of a live run in call order: the window asked and the bars answered (``None``:
    the call failed)."""

    calls: list[tuple[int, int, pd.DataFrame | None]] = field(default_factory=list)

    def capture(self, fetch: Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame]
                ) -> Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame]:
        """``fetch`` that also keeps each call and its answer."""
        def backfill(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
            window = (int(start.value // 1_000_000), int(end.value // 1_000_000))
            try:
                frame = fetch(start, end)
            except MassiveError:
                self.calls.append((*window, None))
                raise
            self.calls.append((*window, frame.reset_index(drop=True)))
            return frame
        return backfill

    def serve(self, mismatches: list[str]) -> Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame]:
        """A backfill answering call *i* with the live run's answer to call *i*; a call for another
        window (the replay went another way) is noted in ``mismatches`` and fails."""
        pending = iter(enumerate(self.calls))

        def backfill(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
            window = (int(start.value // 1_000_000), int(end.value // 1_000_000))
            i, call = next(pending, (len(self.calls), None))
            if call is None or call[:2] != window:
                asked = f"{_ms_text(window[0])}..{_ms_text(window[1])}"
                live = "none" if call is None else f"{_ms_text(call[0])}..{_ms_text(call[1])}"
                mismatches.append(f"backfill {i + 1}: replay asked {asked}, live asked {live}")
                raise StreamError(f"the replay asked backfill {asked}, which the live session did not")
            if call[2] is None:
                raise StreamError("this backfill failed in the live session too")
            return call[2]
        return backfill

    def save(self, folder: Path) -> None:
        meta = [{"start_ms": s, "end_ms": e, "rows": None if f is None else len(f)} for s, e, f in self.calls]
        frames = [f.assign(call=i) for i, (_, _, f) in enumerate(self.calls) if f is not None and len(f)]
        if frames:
            write_parquet(pd.concat(frames, ignore_index=True), folder / BACKFILL_FILE)  # checksummed, sealed
        (folder / "paper_backfill.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "BackfillLog":
        meta = json.loads((folder / "paper_backfill.json").read_text())
        path = folder / BACKFILL_FILE
        rows = read_parquet_frame(path) if path.exists() else pd.DataFrame({"call": pd.Series([], dtype="int64")})
        parts = {int(k): g.drop(columns="call").reset_index(drop=True) for k, g in rows.groupby("call")}
        calls: list[tuple[int, int, pd.DataFrame | None]] = []
        for i, m in enumerate(meta):
            frame = None if m["rows"] is None else parts.get(i, rows.drop(columns="call").iloc[:0])
            calls.append((int(m["start_ms"]), int(m["end_ms"]), frame))
        return cls(calls)


def _ms_text(ms: int) -> str:
    return f"{pd.Timestamp(ms, unit='ms', tz='UTC'):%H:%M:%S}"


# --- feeds -----------------------------------------------------------------------------------------------
class _TapEvents:
    """An event source handing every batch a listener receives to ``record`` first (the recorder), so
    the session log holds exactly the feed's events, in its order."""

    def __init__(self, events: Any, record: Callable[[Any], None]) -> None:
        self.events, self.record = events, record

    def add_listener(self, fn: Callable[[Any], None], **kwargs: Any) -> Any:
        def both(batch: Any) -> None:
            self.record(batch)
            fn(batch)
        return self.events.add_listener(both, **kwargs)

    def remove_listener(self, listener: Any, **kwargs: Any) -> None:
        self.events.remove_listener(listener, **kwargs)


def _builder(symbol: str, interval: str) -> Any:
    from massive_feeds.backtrader.live import BarBuilder
    from massive_feeds.backtrader.timeframes import bar_width_ms, timeframe_for
    from massive_feeds.schema import asset_class

    tf, comp = timeframe_for(interval)
    if tf > bt.TimeFrame.Days:
        raise InvalidInputError("paper trading builds bars up to 1 day; resample for weeks or months")
    # forex streams quotes only: its bars come from the mid, as the live feed builds them
    return BarBuilder(bar_width_ms(tf, comp), "trades", asset_class(symbol) == "forex")


def live_source(store: Any, symbol: str, interval: str, record: Callable[[Any], None], backfills: BackfillLog,
                *, backfill_bars: int = 100, grace: float = 2.0, start_wait: float = 5.0) -> Any:
    """The live feed's source (as ``MassiveData(historical=False)`` builds it) with the recorder tapped
    into its listener and its REST backfills captured."""
    from massive_feeds.backtrader.live import STREAM_CLOCK, StreamSource, live_kinds
    from massive_feeds.backtrader.timeframes import interval_for, timeframe_for
    from massive_feeds.schema import BarQuery, asset_class

    iv = interval_for(*timeframe_for(interval))
    kinds = live_kinds(symbol, "trades", quotes=True)
    fetch = backfills.capture(lambda start, end: store.backfill_query(BarQuery.build(symbol, start, end, iv)))
    return StreamSource(_TapEvents(store.connector, record), symbol, _builder(symbol, interval),
                        subscribe=lambda: store.subscribe(symbol, kinds), unsubscribe=lambda: store.unsubscribe(symbol),
                        backfill=fetch, backfill_bars=backfill_bars, clock=STREAM_CLOCK,
                        server_clock=store.server_time_ms, start_wait=start_wait, grace_ms=int(grace * 1000),
                        market=asset_class(symbol), name=f"paper {symbol}")


def replay_source(folder: Path, symbol: str, interval: str, backfills: BackfillLog, mismatches: list[str],
                  *, backfill_bars: int, speed: float | None = None) -> Any:
    """The same state machine over the recorded events, backfills answered from the saved ones, bars
    completed on the events' own times."""
    from massive_feeds.backtrader.live import EVENTS_CLOCK, StreamSource
    from massive_feeds.record import RecordingSource
    from massive_feeds.schema import asset_class

    replay = RecordingSource(folder, speed=speed, coalesce=500)
    return StreamSource(replay, symbol, _builder(symbol, interval), subscribe=replay.start, unsubscribe=replay.close,
                        backfill=backfills.serve(mismatches), backfill_bars=backfill_bars, clock=EVENTS_CLOCK,
                        server_clock=None,
                        market=asset_class(symbol), name=f"paper replay {symbol}")


class UntilSource:
    """A feed source that ends after the bar at date number ``last``: a saved session replayed up to the
    last bar its live run processed (the events recorded after it never reached the strategy)."""

    live = True

    def __init__(self, source: Any, last: float) -> None:
        self.source, self.last = source, last
        self._ended = False

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.source.stats)

    def open(self, fmt: Any) -> None:
        self.source.open(fmt)

    def poll(self, timeout: float = 0.0) -> Any:
        from massive_feeds.backtrader import END, BarBlock

        if self._ended:
            return END
        item = self.source.poll(timeout)
        if isinstance(item, BarBlock) and item.dt and item.dt[-1] >= self.last:
            cut = bisect_right(item.dt, self.last)
            self._ended = True
            return BarBlock(item.dt[:cut], item.names, tuple(v[:cut] for v in item.values), item.label)
        return item

    def pending(self) -> bool:
        return self._ended or self.source.pending()

    def close(self) -> None:
        self.source.close()


def paper_feed(dataset: str | Path, settings: Settings | None = None) -> Any:
    """A ``MassiveQuoteData`` replaying a saved paper session as its strategy was fed (backfills included,
    up to its last bar): what ``validate``/``backtest`` run Backtrader on for paper sessions."""
    from massive_feeds.backtrader import MassiveQuoteData
    from massive_feeds.record.library import recording_path

    folder = recording_path(dataset, settings)
    meta = _session_meta(folder, dataset)
    source = replay_source(folder, meta["symbol"], meta["interval"], BackfillLog.load(folder), [],
                           backfill_bars=int(meta["backfill_bars"]))
    return MassiveQuoteData(dataname=meta["symbol"], interval=meta["interval"], qcheck=0.05,
                            source=UntilSource(source, float(meta["stop_at_num"])))


def _session_meta(folder: Path, dataset: str | Path) -> dict[str, Any]:
    meta_file = folder / PAPER_FILE
    if not meta_file.exists():
        raise InvalidInputError(f"{dataset} is not a paper session (no {PAPER_FILE} beside its events)")
    return dict(json.loads(meta_file.read_text()))


def _run(cls: type, source: Any, symbol: str, interval: str, params: dict[str, Any], fills: str, cash: float,
         control: dict[str, Any]) -> tuple[PaperResult, SessionControl]:
    from massive_feeds.backtrader import MassiveQuoteData

    cerebro = bt.Cerebro(stdstats=False, live=True)
    cerebro.adddata(MassiveQuoteData(dataname=symbol, interval=interval, source=source, qcheck=0.05))
    if fills == "quotes":
        cerebro.broker = QuoteBroker()
    cerebro.broker.setcash(cash)
    cerebro.broker.set_coc(True)  # fills at the signal bar: its close, or its latest quote
    cerebro.addstrategy(cls, **params)
    cerebro.addstrategy(SessionControl, **control)
    cerebro.addanalyzer(_Trades, _name="trades")
    cerebro.addanalyzer(_Orders, _name="orders")
    stop = control.get("stop")
    done = threading.Event()
    if stop is not None:  # no bar after the stop request (a silent market): stop between bars instead
        threading.Thread(target=_watchdog, args=(cerebro, stop, done, _bar_seconds(interval) + 10.0),
                         name="paper-watchdog", daemon=True).start()
    try:
        strat, ctl = cerebro.run()
    finally:
        done.set()
    trades = strat.analyzers.trades.get_analysis()
    result = PaperResult(strategy=cls.__name__, symbol=symbol, params=dict(strat.p._getkwargs()), fills=fills,
                         cash=cash, orders=list(strat.analyzers.orders.orders), trades=trades,
                         equity_final=float(cerebro.broker.getvalue()), bars=len(ctl.rows),
                         last_bar=_ts(ctl.rows[-1][0]) if ctl.rows else None,
                         stats={**source.stats, "last_num": ctl.rows[-1][0] if ctl.rows else None})
    return result, ctl


def _watchdog(cerebro: bt.Cerebro, stop: threading.Event, done: threading.Event, patience: float) -> None:
    while not (stop.wait(0.5) or done.is_set()):
        pass
    if not done.wait(patience):
        log.warning("no bar within %.0f s of the stop request: stopping between bars", patience)
        cerebro.runstop()


def _bar_seconds(interval: str) -> float:
    from massive_feeds.backtrader.timeframes import bar_width_ms, timeframe_for

    return (bar_width_ms(*timeframe_for(interval)) or 86_400_000) / 1000


# --- the session ---------------------------------------------------------------------------------------------
def paper_trade(strategy: str, symbol: str, *, seconds: float | None = None, params: dict[str, Any] | None = None,
                interval: str = "1m", fills: str = "close", cash: float = 100_000.0, settings: Settings | None = None,
                name: str | None = None, save_dir: str | Path = "data/live_recorded", stop: threading.Event | None = None,
                on_bar: Callable[[Any], None] | None = None, backfill_bars: int = 100, grace: float = 2.0,
                replay: bool = True, tag: str = "paper") -> PaperResult:
    """Paper-trade ``strategy`` on ``symbol``'s live stream until ``seconds`` pass or ``stop`` is set, save
    the session as a dataset (``name``, default ``massive_live_<tag>_<YYYYMMDD>[_N]``) and (``replay``)
    check the replay's parity (see the module docstring).

    ``on_bar(control)`` is called on every bar after the strategy saw it, on the session's thread (the
    CLI's status line and the UI read :func:`snapshot(control) <snapshot>`). Returns the live run's
    :class:`PaperResult` with ``dataset`` and ``parity`` set (``parity`` ``None`` without ``replay``).
    """
    from massive_feeds.backtrader import MassiveStore
    from massive_feeds.datasets import validate_name
    from massive_feeds.record import WebSocketDataRecorder
    from massive_feeds.schema import normalize_symbol

    cls = resolve_strategies([strategy])[strategy]
    full = strategy_params(cls, params or {})
    check_fills(fills)
    _builder(normalize_symbol(symbol), interval)  # the bar size, before connecting
    if name is not None:
        validate_name(name)
    symbol = normalize_symbol(symbol)
    store = MassiveStore.shared(settings)
    if name is not None:
        _check_unused(name, store.settings)  # before trading: the session must not fail to save
    recorder = WebSocketDataRecorder([symbol], save_dir, connector=store.connector, settings=store.settings)
    backfills = BackfillLog()
    stop = stop or threading.Event()
    timer = threading.Timer(seconds, stop.set) if seconds else None
    recorder.start(listen=False)
    try:
        source = live_source(store, symbol, interval, recorder.record_batch, backfills, backfill_bars=backfill_bars,
                             grace=grace)
        if timer is not None:
            timer.daemon = True
            timer.start()
        started = time.monotonic()
        live, ctl = _run(cls, source, symbol, interval, full, fills, cash, {"stop": stop, "on_bar": on_bar})
        live.stats.update(seconds=time.monotonic() - started, backfill_bars=backfill_bars)
    finally:
        if timer is not None:
            timer.cancel()
        recorder.stop()
    if not ctl.rows:
        raise StreamError(f"no bar of {symbol} reached the strategy; nothing to save (the raw log is at "
                          f"{recorder.path})")
    live.fed = ctl.fed_bars(symbol)
    live.dataset = _save(live, recorder, backfills, interval, name, store.settings, tag)
    if replay:
        replayed = replay_session(live.dataset, settings=store.settings)
        live.parity = compare(live, replayed)
    return live


def _save(live: PaperResult, recorder: Any, backfills: BackfillLog, interval: str, name: str | None,
          settings: Settings, tag: str = "paper") -> str:
    """The session as a dataset: the fed bars, with the event log, the backfills and what ran beside them."""
    import shutil

    from massive_feeds.datasets import dataset_path, save_dataset
    from massive_feeds.record.library import SOURCE, _unused, default_name, events_folder

    folder = recorder.path
    backfills.save(folder)
    assert live.last_bar is not None
    (folder / PAPER_FILE).write_text(json.dumps({
        "strategy": live.strategy, "symbol": live.symbol, "params": live.params, "fills": live.fills,
        "cash": live.cash, "interval": interval, "stop_at": live.last_bar.isoformat(), "stop_at_num": live.stats["last_num"],
        "bars": live.bars, "backfill_bars": live.stats["backfill_bars"],
        "equity_final": live.equity_final, "orders": [o.as_dict() for o in live.orders]}, indent=1, default=str))
    events = recorder.reader().events()
    name = name or _unused(default_name(events, tag), settings)
    target = dataset_path(name, settings=settings)
    copy = events_folder(target)
    _check_unused(name, settings)
    shutil.copytree(folder, copy)
    fed = live.fed
    assert fed is not None
    bars = fed.drop(columns="origin")
    bars.attrs.update(interval=interval, adjusted=False)
    save_dataset(bars, name, tags={"paper"}, source=SOURCE, settings=settings,
                 metadata={"events": int(len(events)), "recording": copy.name, "interval": interval,
                           "paper": {"strategy": live.strategy, "fills": live.fills,
                                     "backfilled_bars": int((fed["origin"] == "backfill").sum())},
                           "data_source": settings.source})
    return name


def _check_unused(name: str, settings: Settings) -> None:
    from massive_feeds.datasets import dataset_path
    from massive_feeds.errors import DatasetError
    from massive_feeds.record.library import events_folder

    target = dataset_path(name, settings=settings)
    if target.exists() or events_folder(target).exists():
        raise DatasetError(f"dataset {name!r} already exists; choose another --name")


def replay_session(dataset: str | Path, *, settings: Settings | None = None, strategy: str | None = None,
                   params: dict[str, Any] | None = None, fills: str | None = None, speed: float | None = None
                   ) -> PaperResult:
    """Run a saved paper session again through the live feed path (see the module docstring): by default
    the strategy, parameters, fill model and cash it was traded with, stopping after its last live bar."""
    from massive_feeds.record.library import recording_path

    folder = recording_path(dataset, settings)
    meta = _session_meta(folder, dataset)
    name = strategy or _strategy_name(meta["strategy"])
    cls = resolve_strategies([name])[name]
    full = strategy_params(cls, params if params is not None else meta["params"])
    mismatches: list[str] = []
    source = replay_source(folder, meta["symbol"], meta["interval"], BackfillLog.load(folder), mismatches,
                           backfill_bars=int(meta["backfill_bars"]), speed=speed)
    result, _ = _run(cls, source, meta["symbol"], meta["interval"], full, fills or meta["fills"], float(meta["cash"]),
                     {"stop_at": float(meta["stop_at_num"])})
    result.dataset = str(dataset)
    result.stats["mismatches"] = mismatches
    return result


def _strategy_name(class_name: str) -> str:
    from . import STRATEGIES

    for key, cls in STRATEGIES.items():
        if cls.__name__ == class_name:
            return key
    raise InvalidInputError(f"the session's strategy {class_name} is not one of {', '.join(STRATEGIES)}")


def compare(live: PaperResult, replayed: PaperResult) -> Parity:
    """Order by order (times, sides, sizes, statuses, fill prices), then bars and final equity."""
    diffs: list[str] = list(replayed.stats.get("mismatches", []))
    for i in range(max(len(live.orders), len(replayed.orders))):
        a = live.orders[i] if i < len(live.orders) else None
        b = replayed.orders[i] if i < len(replayed.orders) else None
        if a is None or b is None or _key(a) != _key(b):
            diffs.append(f"order {i + 1}: live {a.line() if a else '(none)'} | replay {b.line() if b else '(none)'}")
    if live.bars != replayed.bars:
        why = (" (the stream sent no event: a closed market or an idle symbol; the live bars came from REST "
               "on the market clock alone, which a replay of no events cannot follow)"
               if not live.stats.get("events") else "")
        diffs.append(f"bars: live {live.bars}, replay {replayed.bars}{why}")
    if live.equity_final != replayed.equity_final:
        diffs.append(f"final equity: live {live.equity_final!r}, replay {replayed.equity_final!r}")
    return Parity(identical=not diffs, differences=diffs)


def _key(o: PaperOrder) -> tuple[Any, ...]:
    """What must match; a NaN (an order without a price) equals a NaN."""
    return tuple("nan" if isinstance(v, float) and v != v else v
                 for v in (o.created, o.side, o.size, o.status, o.fill_time, o.fill_price))
