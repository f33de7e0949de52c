"""The Live Trading page's engine, free of Streamlit: the stream, the quote board, the recorder.

One :class:`LiveSession` per app process (the page keeps it in ``st.cache_resource``): Massive allows
one connection per market and key, so every browser tab shares it. The connector's stream runs on its
own background thread and calls :meth:`QuoteBoard.on_update` on a worker thread; the page only reads
snapshots, so a rerun never blocks on the stream and never loses it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from ..config import Settings
from ..datasets import list_datasets, load_dataset
from ..errors import InvalidInputError, MassiveError, StreamError
from ..storage import atomic_open
from ..schema import NEW_YORK, normalize_symbols
from .logic import min_bars_needed, recording_dataset_name

log = logging.getLogger(__name__)

QUOTE_COLUMNS = ["Symbol", "Bid", "Ask", "Bid size", "Ask size", "Mid", "Spread", "Last", "Last size",
                 "Market time (New York)", "Updates"]
RECORDING_SOURCE = "live_recording"


def _new_york(when: Any) -> pd.Timestamp:
    """A board time (datetime or Timestamp; tz-aware, or naive UTC) in New York, the zone of the candles beside
    the table."""
    ts = pd.Timestamp(when)
    return (ts if ts.tzinfo is not None else ts.tz_localize("UTC")).tz_convert(NEW_YORK)


class QuoteBoard:
    """Latest top of book per symbol plus a bounded price history, written from the stream's callback
    thread and read by the page (thread-safe)."""

    def __init__(self, history: int = 3000) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._history: dict[str, deque[tuple[Any, float]]] = {}
        self._maxlen = history
        self.updates = 0

    def __repr__(self) -> str:
        return f"QuoteBoard(symbols={len(self._latest)}, updates={self.updates})"

    def on_update(self, symbol: str, book: dict[str, Any]) -> None:
        """``start_stream`` callback: keep the book and append its price (mid, else last trade)."""
        price = book.get("mid")
        if price is None:
            price = book.get("last_price")
        with self._lock:
            self._latest[symbol] = book
            self._counts[symbol] = self._counts.get(symbol, 0) + 1
            self.updates += 1
            if price is not None:
                self._history.setdefault(symbol, deque(maxlen=self._maxlen)).append((book.get("timestamp"), price))

    def clear(self, symbols: Iterable[str] | None = None) -> None:
        """Forget the books (and history) of ``symbols`` (all when ``None``)."""
        with self._lock:
            for sym in list(self._latest) if symbols is None else list(symbols):
                self._latest.pop(sym, None)
                self._counts.pop(sym, None)
                self._history.pop(sym, None)

    def quotes_frame(self, symbols: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per symbol with its latest quote and trade (symbols without an update yet omitted)."""
        with self._lock:
            books = dict(self._latest)
            counts = dict(self._counts)
        wanted = list(books) if symbols is None else [s for s in symbols if s in books]
        rows = []
        for sym in wanted:
            b = books[sym]
            ts = b.get("timestamp")
            rows.append([sym, b.get("bid"), b.get("ask"), b.get("bid_size"), b.get("ask_size"), b.get("mid"),
                         b.get("spread"), b.get("last_price"), b.get("last_size"),
                         _new_york(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if ts is not None else "",
                         counts.get(sym, 0)])
        return pd.DataFrame(rows, columns=QUOTE_COLUMNS)

    def history_frame(self, symbols: Iterable[str] | None = None) -> pd.DataFrame:
        """Long format (``time``, ``symbol``, ``price``) for the price chart."""
        with self._lock:
            hist = {s: list(d) for s, d in self._history.items() if symbols is None or s in set(symbols)}
        frames = [pd.DataFrame({"time": [t for t, _ in pts], "symbol": s, "price": [p for _, p in pts]})
                  for s, pts in hist.items() if pts]
        if not frames:
            return pd.DataFrame({"time": pd.Series(dtype="datetime64[ns, UTC]"), "symbol": pd.Series(dtype=str),
                                 "price": pd.Series(dtype=float)})
        return pd.concat(frames, ignore_index=True)


#: Offered when the symbol list cannot be fetched and none was cached yet (any other symbol can be typed).
FALLBACK_SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "X:BTCUSD", "X:ETHUSD", "C:EURUSD")


@dataclass(frozen=True)
class SymbolList:
    """The symbols offered in the Live Trading page and where they came from.

    ``source``: ``live`` (just fetched), ``cache`` (the last list fetched, kept on disk because the
    reference call failed — e.g. the daily REST quota is used up) or ``fallback`` (a built-in short
    list: nothing was ever cached). ``problem`` is the error that prevented fetching, if any.
    """

    symbols: list[str]
    source: str
    problem: BaseException | None = field(default=None, compare=False)
    fetched_at: str | None = None


@dataclass(frozen=True)
class RecordingResult:
    """A finished recording saved as a dataset."""

    name: str
    path: Path
    bars: int
    events: int
    symbols: tuple[str, ...]


class LiveSession:
    """The stream, the quote board and the recorder of one app process.

    Args:
        settings: where to connect (the real service or the sandbox) and where datasets go.
        recordings_dir: folder for the recorder's raw event logs.
        tags: extra tags for recorded datasets (``sandbox`` in sandbox mode).
        connector_factory: builds the connector (default ``get_connector("massive", settings=…)``).
    """

    def __init__(self, settings: Settings, recordings_dir: Path, *, tags: Iterable[str] = (),
                 connector_factory: Callable[[Settings], Any] | None = None) -> None:
        self.settings = settings
        self.recordings_dir = Path(recordings_dir)
        self.tags = tuple(tags)
        self.board = QuoteBoard()
        self._factory = connector_factory
        self._connector: Any = None
        self._recorder: Any = None
        self._recording_opts: tuple[str, str] = ("session", "1min")
        self._counter: Any = None
        self._counter_listener: Any = None
        self._recording_started: float | None = None
        self._lock = threading.RLock()
        self.last_recording: RecordingResult | None = None
        self.paper: PaperRun | None = None  # the paper session of the Paper Trading tab, running or done

    def __repr__(self) -> str:
        return f"LiveSession(streaming={self.streaming_symbols}, recording={self.is_recording})"

    # --- connector --------------------------------------------------------------------------------
    @property
    def connector(self) -> Any:
        """The connector, created on first use (so opening the page makes no connection)."""
        with self._lock:
            if self._connector is None or getattr(self._connector, "closed", False):
                if self._factory is not None:
                    self._connector = self._factory(self.settings)
                else:
                    from ..stream import get_connector

                    self._connector = get_connector("massive", settings=self.settings)
            return self._connector

    def list_symbols(self) -> list[str]:
        """Tradable symbols from the reference endpoint (one REST call, cached by the connector for an hour)."""
        return sorted(self.connector.list_symbols())

    @property
    def symbols_cache_file(self) -> Path:
        """Where the last fetched symbol list is kept (beside the recordings)."""
        return self.recordings_dir.parent / "ui_symbols.json"

    def symbol_list(self) -> SymbolList:
        """The symbols to offer, never failing: fetched (and cached on disk), else the cached list, else
        :data:`FALLBACK_SYMBOLS`. Streaming does not need REST, so a spent quota must not block it."""
        try:
            symbols = self.list_symbols()
        except MassiveError as exc:
            cached = self._read_symbol_cache()
            if cached is not None:
                return SymbolList(cached[0], "cache", exc, cached[1])
            return SymbolList(sorted(FALLBACK_SYMBOLS), "fallback", exc)
        if symbols:
            self._write_symbol_cache(symbols)
        return SymbolList(symbols, "live")

    def _read_symbol_cache(self) -> tuple[list[str], str | None] | None:
        try:
            data = json.loads(self.symbols_cache_file.read_text())
            return [str(s) for s in data["symbols"]], data.get("fetched_at")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_symbol_cache(self, symbols: list[str]) -> None:
        payload = {"symbols": symbols, "fetched_at": pd.Timestamp.now("UTC").strftime("%Y-%m-%d %H:%M UTC")}
        try:
            self.symbols_cache_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(self.symbols_cache_file) as fh:
                fh.write(json.dumps(payload).encode())
        except OSError as exc:  # a cache is a convenience
            log.warning("could not cache the symbol list: %s", exc)

    @property
    def streaming_symbols(self) -> list[str]:
        with self._lock:
            conn = self._connector
        return list(conn.active_symbols) if conn is not None and not conn.closed else []

    @property
    def is_streaming(self) -> bool:
        return bool(self.streaming_symbols)

    def start(self, symbols: Iterable[str]) -> list[str]:
        """Stream ``symbols`` (added to those already streaming); quotes go to :attr:`board`."""
        syms = normalize_symbols(list(symbols))
        with self._lock:
            return self.connector.start_stream(syms, callback=self.board.on_update)

    def stop(self, symbols: Iterable[str] | None = None) -> list[str]:
        """Stop streaming ``symbols`` (all when ``None``). A running recording is stopped and saved first
        when the stream it records ends (see :attr:`last_recording`)."""
        with self._lock:
            if self._connector is None:
                return []
            remaining = set(self.streaming_symbols) - (set(normalize_symbols(list(symbols))) if symbols else set())
            if self.is_recording and not remaining:
                self.stop_recording()
            gone = self._connector.stop_stream(None if symbols is None else list(symbols))
            self.board.clear(gone)
            return gone

    def stats(self) -> dict[str, Any]:
        """``connector.get_stats()``, or the plan's limits with zero counters before any connection."""
        with self._lock:
            conn = self._connector
        if conn is not None and not conn.closed:
            return conn.get_stats()
        plan = self.settings.plan
        return {"active_streams": 0, "max_streams": plan.ws_max_streams, "messages_this_minute": 0,
                "max_messages_per_minute": plan.ws_messages_per_minute, "reconnects": 0, "dropped": 0,
                "connected": False, "last_error": None}

    # --- recording --------------------------------------------------------------------------------
    @property
    def is_recording(self) -> bool:
        rec = self._recorder
        return rec is not None and rec.is_recording

    def start_recording(self, tag: str = "session", interval: str = "1min") -> Any:
        """Record every quote and trade of the streaming symbols (the stream must be running)."""
        from ..record import WebSocketDataRecorder

        with self._lock:
            if self.is_recording:
                return self._recorder
            symbols = self.streaming_symbols
            if not symbols:
                raise StreamError("Start trading first: recording captures the symbols being streamed.")
            from ..record.bars import BarCounter

            counter = BarCounter(interval)  # validates the bar size now, not after minutes of recording
            self._recorder = WebSocketDataRecorder(symbols, self.recordings_dir, connector=self.connector,
                                                   settings=self.settings).start()
            self._counter = counter
            self._counter_listener = self.connector.add_listener(counter, batched=True, symbols=symbols,
                                                                 kinds=BarCounter.KINDS, name="massive-ui-bar-counter")
            self._recording_started = time.monotonic()
            self._recording_opts = (tag.strip() or "session", interval)
            return self._recorder

    def recording_stats(self) -> dict[str, Any] | None:
        """The recorder's counters plus ``elapsed`` (wall seconds), ``bars`` so far (all symbols),
        ``bars_per_symbol`` and ``interval``."""
        rec = self._recorder
        if rec is None:
            return None
        counter = self._counter
        elapsed = time.monotonic() - self._recording_started if self._recording_started is not None else 0.0
        per_symbol = counter.per_symbol() if counter is not None else {}
        return {**rec.stats(), "symbols": list(rec.symbols), "recording": rec.is_recording, "elapsed": elapsed,
                "bars": counter.bars if counter is not None else 0, "bars_per_symbol": per_symbol,
                "interval": self._recording_opts[1]}

    def _drop_counter(self) -> None:
        listener, self._counter_listener = self._counter_listener, None
        self._counter, self._recording_started = None, None
        conn = self._connector
        if listener is not None and conn is not None and not conn.closed:
            try:
                conn.remove_listener(listener, drain=False)
            except Exception as exc:  # noqa: BLE001 - a display counter must not fail a stop
                log.warning("removing the bar counter: %s", exc)

    def stop_recording(self) -> RecordingResult:
        """Stop recording and save the bars as a tagged dataset (``massive_live_<tag>_<YYYYMMDD>``,
        with a time suffix when that name is taken) beside the raw event log."""
        from ..record.library import default_name

        with self._lock:
            rec = self._recorder
            if rec is None:
                raise StreamError("Nothing is being recorded.")
            tag, interval = self._recording_opts
            self._drop_counter()
            rec.stop()
            events = rec.reader().events()
            if len(events) == 0:
                self._recorder = None
                raise StreamError("The recording holds no quotes or trades yet; record a little longer.")
            existing = list_datasets(settings=self.settings)["name"].tolist()
            name = recording_dataset_name(default_name(events, tag), existing)
            path = rec.save_dataset(name, interval, tags=self.tags, tag=tag)
            bars = len(load_dataset(path))
            self.last_recording = RecordingResult(name, path, bars, int(len(events)), tuple(rec.symbols))
            self._recorder = None
            log.info("recording saved as dataset %s (%d bars, %d events)", name, bars, len(events))
            return self.last_recording

    def close(self) -> None:
        """Stop recording (saving nothing more), streaming and the connector's threads."""
        with self._lock:
            rec, self._recorder = self._recorder, None
            conn, self._connector = self._connector, None
            paper, self.paper = self.paper, None
        if paper is not None and paper.running:
            paper.stop()
        if rec is not None and rec.is_recording:
            try:
                rec.stop()
            except Exception as exc:  # noqa: BLE001 - closing must finish
                log.warning("stopping the recorder: %s", exc)
        if conn is not None:
            conn.close()


class PaperRun:
    """A paper session (:func:`massive_feeds.strategies.paper.paper_trade`) on a background thread, for the page: the
    strategy trades the live stream while the page reads snapshots; :meth:`stop` ends it after its next
    bar, then the session is saved, replayed (parity) and backtested as recorded (``backtest``).

    Thread-safe reads: :meth:`view` (the latest snapshot, bars and fills so far), ``result``, ``error``.
    """

    def __init__(self, settings: Settings, save_dir: Path, strategy: str, symbol: str, params: dict[str, Any],
                 *, fills: str = "close", cash: float = 100_000.0, interval: str = "1m",
                 backfill_bars: int = 100) -> None:
        from massive_feeds.strategies.fills import check_fills

        check_fills(fills)
        self.settings, self.save_dir = settings, Path(save_dir)
        self.strategy, self.symbol, self.params = strategy, normalize_symbols(symbol)[0], dict(params)
        self.fills, self.cash, self.interval, self.backfill_bars = fills, float(cash), interval, int(backfill_bars)
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: Any = None
        self._bars: list[tuple[pd.Timestamp, float, float, float]] = []
        self.result: Any = None  # strategies.paper.PaperResult, with dataset and parity
        self.backtest: Any = None  # strategies.runner.BacktestResult of the saved session
        self.error: BaseException | None = None
        self.stopping = False
        self._thread = threading.Thread(target=self._run, name="ui-paper-session", daemon=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "done"
        return f"PaperRun({self.strategy} on {self.symbol}, fills={self.fills}, {state})"

    def start(self) -> "PaperRun":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the session to stop after its next bar (then it saves, replays and backtests)."""
        self.stopping = True
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def view(self) -> tuple[Any, pd.DataFrame, list[Any]]:
        """The latest snapshot (``None`` before the first bar), the bars so far (``time close bid ask``)
        and the fills so far."""
        with self._lock:
            snap, rows = self._snapshot, list(self._bars)
        bars = pd.DataFrame(rows, columns=["time", "close", "bid", "ask"])
        return snap, bars, list(snap.fills) if snap is not None else []

    def _on_bar(self, control: Any) -> None:
        from massive_feeds.strategies.paper import snapshot

        snap = snapshot(control)
        with self._lock:
            self._snapshot = snap
            self._bars.append((snap.time, snap.close, snap.bid, snap.ask))

    def _run(self) -> None:
        from massive_feeds.strategies import STRATEGIES, run_strategy
        from massive_feeds.strategies.paper import paper_feed, paper_trade

        try:
            self.result = paper_trade(self.strategy, self.symbol, params=self.params, interval=self.interval,
                                      fills=self.fills, cash=self.cash, settings=self.settings,
                                      save_dir=self.save_dir, stop=self.stop_event, on_bar=self._on_bar,
                                      backfill_bars=self.backfill_bars)
            self.backtest = run_strategy(STRATEGIES[self.strategy], paper_feed(self.result.dataset, self.settings),
                                         self.cash, cheat_on_close=True, fills=self.fills, **self.params)
        except BaseException as exc:  # noqa: BLE001 - the page shows it
            log.warning("paper session failed: %s", exc)
            self.error = exc


def recorded_datasets(settings: Settings, include_all: bool = False) -> pd.DataFrame:
    """Datasets recorded from the live stream (every dataset with ``include_all``), newest first."""
    table = list_datasets(settings=settings)
    if not include_all:
        table = table[table["source"] == RECORDING_SOURCE]
    return table.sort_values("end", ascending=False, na_position="last").reset_index(drop=True)


def run_backtest(settings: Settings, dataset: str, symbol: str, strategy: str,
                 params: dict[str, Any] | None = None, cash: float = 100_000.0, fills: str = "close") -> Any:
    """Run ``strategies.STRATEGIES[strategy]`` on one symbol of a saved dataset (``fills="quotes"``: buys
    at the ask, sells at the bid of the latest quote; recordings carry them).

    Raises:
        InvalidInputError: unknown strategy, symbol not in the dataset, or too few bars for it.
        DatasetError: the dataset cannot be read.
    """
    from massive_feeds.strategies import STRATEGIES, run_strategy

    cls = STRATEGIES.get(strategy)
    if cls is None:
        raise InvalidInputError(f"Unknown strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    df = load_dataset(dataset, settings=settings)
    bars = df[df["symbol"] == symbol].reset_index(drop=True)
    if bars.empty:
        raise InvalidInputError(f"{symbol} is not in dataset {dataset!r}")
    bars.attrs = dict(df.attrs)
    params = dict(params or {})
    need = min_bars_needed(params)
    if len(bars) < need:
        raise InvalidInputError(
            f"dataset {dataset!r} holds {len(bars)} bar(s) of {symbol}; {strategy} with these parameters needs "
            f"at least {need}. Record longer, pick a smaller bar size, or shorten the strategy's periods."
        )
    return run_strategy(cls, bars, cash=cash, fills=fills, **params)
