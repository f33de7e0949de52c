"""``MassiveStore``: the one place a Backtrader session gets Massive data from.

A plain class (no Backtrader metaclass): it owns the :class:`~massive_feeds.config.Settings`, and
through them the fetch path (cache, quota, auto REST/flat-file choice), a REST client for live
backfills, and — on first live use — the shared streaming connector. Feeds built without a store use
:meth:`MassiveStore.shared`, so every feed of one configuration shares one connector (Massive allows
one connection per market and key: a second one would kick the first).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from ..config import Settings
from ..datasets import load_dataset
from ..fetch import fetch_data, fetch_ohlcv_rest
from ..quota import QuotaStatus, get_quota
from ..runtime import current, resolve_settings
from ..schema import DateLike, Interval, normalize_symbol

if TYPE_CHECKING:
    from ..rest import RestClient
    from .feed import MassiveData

log = logging.getLogger(__name__)


class MassiveStore:
    """Settings, fetch path, quota and streaming connector shared by Backtrader feeds.

    Build one explicitly (``MassiveStore(settings)``) or take the process-wide instance for a
    configuration with :meth:`shared`. Massive is a data vendor, so there is no broker here: use
    Backtrader's own broker (``cerebro.broker``) for simulated fills.

    Example::

        store = MassiveStore.shared()
        cerebro.adddata(store.getdata(dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=5,
                                      fromdate=datetime(2024, 3, 4), todate=datetime(2024, 3, 8)))
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = resolve_settings(settings)  # no key configured: the built-in sandbox
        self._lock = threading.Lock()
        self._rest: RestClient | None = None
        self._connector: Any = None
        self._closed = False

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
        settings = runtime.settings(settings)
        return runtime.shared("backtrader-store", settings, lambda: cls(settings), alive=lambda s: not s._closed)

    @classmethod
    def close_all(cls) -> None:
        """Close and forget every shared store (tests, notebooks that change configuration)."""
        for store in current().forget("backtrader-store"):
            store.close()

    # --- history ------------------------------------------------------------------------------------
    def fetch_bars(self, symbol: str, start: DateLike, end: DateLike, interval: Interval | str,
                   method: str = "auto", adjusted: bool = True) -> pd.DataFrame:
        """One symbol's bars through :func:`~massive_feeds.fetch.fetch_data` (cache, quota, auto method)."""
        name = interval.name if isinstance(interval, Interval) else interval
        df = fetch_data(symbol, start, end, name, method, adjusted=adjusted, settings=self.settings)  # type: ignore[arg-type]
        return df[df["symbol"] == normalize_symbol(symbol)] if len(df) else df

    def backfill_bars(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, interval: Interval | str,
                      adjusted: bool = True) -> pd.DataFrame:
        """Recent bars over REST on the store's shared HTTP session (live backfill and gap repair)."""
        name = interval.name if isinstance(interval, Interval) else interval
        return fetch_ohlcv_rest(symbol, start.to_pydatetime(), end.to_pydatetime(), name, adjusted=adjusted,
                                client=self.rest_client, progress=False)

    def load_dataset(self, name: str | Path) -> pd.DataFrame:
        """A saved dataset (historical or recorded) from the configured datasets folder, or a parquet path."""
        return load_dataset(name, settings=self.settings)

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
            return self._connector

    def subscribe(self, symbol: str, kinds: Iterable[str]) -> None:
        """Start streaming ``symbol`` (the listener must already be registered)."""
        self.connector.start_stream([symbol], kinds=list(kinds))

    def unsubscribe(self, symbol: str) -> None:
        if self._connector is not None and not self._connector.closed:
            self._connector.stop_stream([symbol])

    # --- Backtrader conventions -----------------------------------------------------------------------
    def getdata(self, *args: Any, **kwargs: Any) -> "MassiveData":
        """A :class:`~massive_feeds.backtrader.MassiveData` bound to this store (Backtrader's store idiom)."""
        from .feed import MassiveData

        return MassiveData(*args, store=self, **kwargs)

    def close(self) -> None:
        """Close the REST session. The connector is shared process-wide and left to its owner."""
        with self._lock:
            self._closed = True
            if self._rest is not None:
                self._rest.close()
                self._rest = None
