"""``MassiveStore``: the one place a Backtrader session gets Massive data from.

A Backtrader store (``bt.Store``, like ``IBStore`` and ``OandaStore``): it owns the
:class:`~massive_feeds.config.Settings`, and through them the fetch path (cache, quota, auto
REST/flat-file choice), a REST client for live backfills, and — on first live use — the shared
streaming connector. Feeds built without a store use :meth:`MassiveStore.shared`, so every feed of one
configuration shares one connector (Massive allows one connection per market and key: a second one would
kick the first).

Backtrader's store idiom: ``cerebro.addstore(store)`` (a feed adds its store itself), ``store.getdata(...)``;
cerebro calls :meth:`~MassiveStore.start`/:meth:`~MassiveStore.stop` and hands :meth:`put_notification`
messages to ``notify_store`` — stream connection changes and reconnects, and REST quota warnings.
Unlike ``IBStore`` it is not a singleton: one store per configuration.
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import backtrader as bt
import pandas as pd
from backtrader.store import MetaSingleton

from ..config import Settings
from ..datasets import load_dataset
from ..fetch import Method, fetch_bars, fetch_rest_bars
from ..quota import QuotaStatus, get_quota
from ..runtime import current, resolve_settings
from ..stream.events import GapEvent, StatusEvent
from ..schema import BarQuery, DateLike, Interval

if TYPE_CHECKING:
    from ..rest import RestClient

log = logging.getLogger(__name__)


class _MetaStore(MetaSingleton):
    """``bt.Store``'s metaclass (params, Backtrader's construction steps) without its one-instance-per-class rule."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return super(MetaSingleton, cls).__call__(*args, **kwargs)


class MassiveStore(bt.Store, metaclass=_MetaStore):
    """Settings, fetch path, quota and streaming connector shared by Backtrader feeds.

    Build one explicitly (``MassiveStore(settings)``) or take the process-wide instance for a
    configuration with :meth:`shared`. Massive is a data vendor, so there is no broker here: use
    Backtrader's own broker (``cerebro.broker``) for simulated fills.

    Example::

        store = MassiveStore.shared()
        cerebro.addstore(store)  # optional: a feed adds its store to cerebro itself
        cerebro.adddata(store.getdata(dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=5,
                                      fromdate=datetime(2024, 3, 4), todate=datetime(2024, 3, 8)))

    ``notify_store(msg, *args)`` of cerebro and strategies receives one-line messages: ``"stocks stream
    connected"``, ``"stocks stream disconnected: …"``, ``"stocks stream reconnected after 2 attempt(s) (…);
    gap … to …"`` (args: the :class:`~massive_feeds.stream.StatusEvent`/:class:`~massive_feeds.stream.GapEvent`)
    and ``"REST quota orange: 35 calls left today"`` (args: the :class:`~massive_feeds.quota.QuotaStatus`).
    Cerebro delivers them from its event loop (live feeds, or ``cerebro.run(runonce=False)``): Backtrader's
    vectorised ``runonce`` loop never calls ``notify_store``; every message is also logged at INFO.
    """

    _started: bool = False  # bt.Store's flag, typed

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = resolve_settings(settings)  # no key configured: the built-in sandbox
        self._lock = threading.Lock()
        self._rest: RestClient | None = None
        self._connector: Any = None
        self._closed = False
        self.notifs: collections.deque[Any] = collections.deque()  # thread-safe appends (stream thread)
        self.datas: list[Any] = []
        self._quota_level = "green"

    def __repr__(self) -> str:
        streaming = "connected" if self._connector is not None else "not streaming"
        return f"MassiveStore(rest={self.settings.rest_url!r}, plan={self.settings.plan.name!r}, {streaming})"

    # --- sharing ------------------------------------------------------------------------------------
    @classmethod
    def shared(cls, settings: Settings | None = None) -> "MassiveStore":
        """The runtime context's store for ``settings`` (default: the configured ones), created on first use.

        Equal settings give the same store, hence the same streaming connector and REST session.
        """
        runtime = current()  # the registry lives in the runtime context
        # with the WebSocket side resolved: the keyless sandbox starts it on demand and the settings name its URL
        # from then on, so a store taken before a stream started and one taken after were two stores, two
        # connectors and two connections (the second kicked the first: multi-symbol paper sessions lost a symbol)
        settings = runtime.settings(settings, need=("rest", "websocket"))
        return runtime.shared("backtrader-store", settings, lambda: cls(settings), alive=lambda s: not s._closed)

    @classmethod
    def close_all(cls) -> None:
        """Close and forget every shared store (tests, notebooks that change configuration)."""
        for store in current().forget("backtrader-store"):
            store.close()

    # --- history ------------------------------------------------------------------------------------
    def fetch_bars(self, symbol: str, start: DateLike, end: DateLike, interval: Interval | str,
                   method: Method = "auto", adjusted: bool | str = True) -> pd.DataFrame:
        """One symbol's bars through :func:`~massive_feeds.fetch.fetch_data` (cache, quota, auto method)."""
        return self.fetch_query(BarQuery.build(symbol, start, end, interval, adjusted=adjusted), method)

    def fetch_query(self, query: BarQuery, method: Method = "auto") -> pd.DataFrame:
        """:meth:`fetch_bars` for a built query (its first ticker's rows)."""
        df = fetch_bars(query, method, settings=self.settings)
        self._check_quota()
        return df[df["symbol"] == query.tickers[0]] if len(df) else df

    def backfill_bars(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, interval: Interval | str,
                      adjusted: bool | str = True) -> pd.DataFrame:
        """Recent bars over REST on the store's shared HTTP session (live backfill and gap repair)."""
        return self.backfill_query(BarQuery.build(symbol, start, end, interval, adjusted=adjusted))

    def backfill_query(self, query: BarQuery) -> pd.DataFrame:
        """:meth:`backfill_bars` for a built query."""
        df = fetch_rest_bars(query, client=self.rest_client, progress=False)
        self._check_quota()
        return df

    def server_time_ms(self) -> int:
        """The service's clock (epoch ms) over REST, one quota-counted call: where a live feed whose
        stream stays silent (a closed market, an idle symbol) starts its bars."""
        from ..rest.reference import server_time_ms

        now = server_time_ms(self.rest_client)
        self._check_quota()
        return now

    def fetch_ticks(self, symbol: str, start: DateLike, end: DateLike, kinds: Any,
                    method: str = "auto") -> pd.DataFrame:
        """One symbol's trades/quotes through :func:`~massive_feeds.ticks.fetch_ticks` (auto REST/flat files/
        store, cache, quota), in the tick schema (feeds with ``ticks=`` replay them)."""
        from ..ticks import fetch_ticks

        df = fetch_ticks(symbol, start, end, kinds, method, settings=self.settings)  # type: ignore[arg-type]
        self._check_quota()
        return df

    def load_dataset(self, name: str | Path, adjusted: bool | str | None = None) -> pd.DataFrame:
        """A saved dataset (historical or recorded) from the configured datasets folder, or a parquet path;
        ``adjusted`` converts its prices on read as :func:`massive_feeds.datasets.load_dataset` does."""
        return load_dataset(name, settings=self.settings, adjusted=adjusted)

    @property
    def rest_client(self) -> "RestClient":
        """The store's REST client (one HTTP session, quota-aware), opened on first use."""
        with self._lock:
            if self._rest is None:
                from ..rest import RestClient

                self._rest = RestClient(self.settings)
            return self._rest

    def quota_status(self) -> QuotaStatus:
        """Used and remaining REST calls / flat-file bytes for this configuration."""
        return get_quota(self.settings).status()

    # --- streaming ----------------------------------------------------------------------------------
    @property
    def connector(self) -> Any:
        """The shared :class:`~massive_feeds.stream.MassiveConnector` for these settings (lazy)."""
        with self._lock:
            if self._connector is None:
                from ..stream import get_connector

                self._connector = get_connector("massive", settings=self.settings)
                self._connector.add_control_listener(self._on_stream_control)
            return self._connector

    def subscribe(self, symbol: str, kinds: Iterable[str]) -> None:
        """Start streaming ``symbol`` (the listener must already be registered)."""
        self.connector.start_stream([symbol], kinds=list(kinds))

    def unsubscribe(self, symbol: str) -> None:
        if self._connector is not None and not self._connector.closed:
            self._connector.stop_stream([symbol])

    # --- Backtrader conventions -----------------------------------------------------------------------
    #: The feed class :meth:`getdata` builds; :mod:`.feed` registers ``MassiveData`` when it loads (Backtrader's
    #: ``DataCls`` idiom, as ``IBStore``/``OandaStore``), so the store never imports the feed.
    DataCls: ClassVar[Any] = None

    def getdata(self, *args: Any, **kwargs: Any) -> Any:
        """A :class:`~massive_feeds.backtrader.MassiveData` bound to this store (Backtrader's store idiom)."""
        return self.DataCls(*args, store=self, **kwargs)

    def start(self, data: Any = None, broker: Any = None) -> None:
        """Backtrader's store start: cerebro calls it once per run, each feed once with ``data=``."""
        if not self._started:
            self._started = True
            self.datas = []
            self.broker = None
            self._check_quota(always=True)
        if data is not None:
            env = getattr(data, "_env", None)
            if env is not getattr(self, "_cerebro", None):  # a new cerebro (an earlier run may have died mid-way)
                self.datas = []
            self._cerebro = self._env = env
            # identity, never `in`: Backtrader overloads == on lines objects (it builds an indicator,
            # which crashes outside a strategy and poisons every later run)
            if not any(d is data for d in self.datas):
                self.datas.append(data)
        elif broker is not None:
            self.broker = broker

    def stop(self) -> None:
        """End of a cerebro run: forget its feeds (the REST session and connector stay for the next run)."""
        self._started = False
        self.datas = []

    def put_notification(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Queue a message for ``notify_store`` (safe from any thread; also logged at INFO)."""
        log.info("store notification: %s", msg)
        self.notifs.append((msg, args, kwargs))

    def _on_stream_control(self, event: GapEvent | StatusEvent) -> None:  # the stream thread: just queue it
        if isinstance(event, GapEvent):
            window = f"{event.start:%H:%M:%S} to {event.end:%H:%M:%S} UTC" if event.start else f"to {event.end:%H:%M:%S} UTC"
            self.put_notification(f"{event.market} stream reconnected after {event.attempts} attempt(s) "
                                  f"({event.reason}); gap {window}", event)
        elif event.market:  # listener-level notices (overflow) belong to their listener's feed
            detail = f": {event.message}" if event.message else ""
            self.put_notification(f"{event.market} stream {event.status}{detail}", event)

    def _check_quota(self, always: bool = False) -> None:
        """Tell ``notify_store`` when the REST quota turns orange, red or exhausted (once per level)."""
        status = self.quota_status()
        level = status.level
        if level != self._quota_level or (always and level != "green"):
            self._quota_level = level
            if level != "green":
                self.put_notification(f"REST quota {level}: {status.rest_remaining_today} calls left today", status)

    def close(self) -> None:
        """Close the REST session. The connector is shared process-wide and left to its owner."""
        with self._lock:
            self._closed = True
            if self._connector is not None:
                self._connector.remove_control_listener(self._on_stream_control)
            if self._rest is not None:
                self._rest.close()
                self._rest = None
