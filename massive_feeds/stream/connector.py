"""``MassiveConnector``: the thread-safe live-trading connector (product doc "Live Trading Connector").

Threads::

    caller threads ──start_stream/stop_stream/get_stats──►  lock + LoopThread.run(...)
    stream thread (asyncio) : sockets → parse → rate monitor → EventHub.publish (append only)
    listener threads        : one per listener; start_stream callbacks share one ("orderbook")

Everything public is safe from any thread (Streamlit reruns, worker pools). A slow callback never
stalls reading; when its bounded queue overflows the loss is counted, logged and signalled in-band.

Other consumers (the recorder, the Backtrader live feed) subscribe to the normalised events with
:meth:`MassiveConnector.add_listener`; a replay source offers the same method, so they work unchanged
on recordings.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

from ..config import Settings
from ..errors import InvalidInputError, MassiveError, StreamError
from ..runtime import current, resolve_settings
from ..schema import normalize_symbols
from .backoff import DEFAULT_POLICY, ReconnectPolicy
from .client import StreamClient, check_kinds
from .events import QUOTE, TRADE, GapEvent, StatusEvent
from .hub import DEFAULT_MAX_PENDING, AnyListener, BatchCallback, EventCallback, EventHub
from .loopthread import LoopThread
from .orderbook import BOOK_KINDS, OrderBookCallback, OrderBooks
from .protocol import TypedFrame
from .ratemonitor import RateMonitor

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_KINDS: tuple[str, ...] = (QUOTE, TRADE)
_PLAN = object()


class MassiveConnector:
    """Live Massive.com streams for trading apps, usable from any thread.

    Args:
        api_key: overrides the configured key (else ``MASSIVE_API_KEY`` / ``api_keys.properties``).
        settings: configuration (the configured one when omitted; no key configured → the built-in
            sandbox, see :mod:`massive_feeds.runtime`): ``ws_url`` (real-time or
            delayed host, or the sandbox), ``plan`` limits.
        kinds: what :meth:`start_stream` subscribes per symbol by default (``quote``, ``trade``,
            ``agg_minute``, ``agg_second``, ``value``).
        max_streams: distinct-symbol cap (default: the plan's ``ws_max_streams``; ``None`` = no cap).
        reconnect: backoff policy for dropped sockets.
        stale_after: seconds of silence before a liveness ping (``None`` disables).
        pong_timeout: seconds to wait for that pong before reconnecting.
        connect_timeout: how long :meth:`start_stream` waits for the first authentication.
        callback_queue_size: bound (events) of the start_stream callbacks' queue.
        fight_max_connections: reconnect after a ``max_connections`` kick instead of stopping.
        recorder: the recorder class :meth:`enable_recording` builds (``massive_feeds.record.WebSocketDataRecorder``).

    Example::

        connector = get_connector("massive")
        connector.start_stream(["AAPL", "X:BTCUSD"], callback=lambda sym, book: print(sym, book["bids"][0]))
        print(connector.get_stats())
        connector.stop_stream()
    """

    name = "massive"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        settings: Settings | None = None,
        kinds: Iterable[str] = DEFAULT_KINDS,
        max_streams: int | None = _PLAN,  # type: ignore[assignment]
        reconnect: ReconnectPolicy = DEFAULT_POLICY,
        stale_after: float | None = 30.0,
        pong_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        callback_queue_size: int = DEFAULT_MAX_PENDING,
        fight_max_connections: bool = False,
        symbols_ttl: float = 3600.0,
        recorder: Callable[..., Any] | None = None,
    ) -> None:
        # the keyless default applies here (no key configured: the built-in sandbox's WebSocket and REST)
        self.settings = resolve_settings(settings, api_key=api_key, need=("rest", "websocket"))
        self.kinds = check_kinds(kinds)
        self.max_streams = self.settings.plan.ws_max_streams if max_streams is _PLAN else max_streams
        self.max_messages_per_minute = self.settings.plan.ws_messages_per_minute
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.callback_queue_size = callback_queue_size
        self.symbols_ttl = symbols_ttl
        self.recorder = recorder  # the recorder class enable_recording builds, handed in from above
        self._connection_options = {"stale_after": stale_after, "pong_timeout": pong_timeout,
                                    "open_timeout": connect_timeout, "fight_max_connections": fight_max_connections}
        self._lock = threading.RLock()
        self._loop = LoopThread(f"massive-stream-{id(self):x}")
        self._hub = EventHub()
        self._rate = RateMonitor(self.max_messages_per_minute, name="massive stream",
                                 speed=self.settings.sandbox_speed if self.settings.uses_sandbox else 1.0)
        self._client: StreamClient | None = None
        self._books: OrderBooks | None = None
        self._books_listener: AnyListener | None = None
        self._symbols_cache: dict[tuple[Any, ...], tuple[float, list[str]]] = {}
        self._closed = False
        self._wake_pending = False
        self._aloop: Any = None  # the stream thread's asyncio loop, once started
        self.last_error: str | None = None
        self.last_status: StatusEvent | None = None
        self._recorder: Any = None
        self._recording_tag: str | None = None
        self._control_listeners: tuple[Callable[[GapEvent | StatusEvent], None], ...] = ()

    def __repr__(self) -> str:
        client = self._client
        n = len(client.symbols) if client else 0
        return (f"MassiveConnector(url={self.settings.ws_url!r}, streams={n}/{self.max_streams}, "
                f"listeners={len(self._hub.listeners)}, closed={self._closed})")

    # --- streaming ----------------------------------------------------------------------------------
    def start_stream(
        self,
        symbols: str | Iterable[str],
        callback: OrderBookCallback | None = None,
        *,
        kinds: Iterable[str] | None = None,
        wait: bool = True,
    ) -> list[str]:
        """Stream ``symbols`` and (optionally) call ``callback(symbol, orderbook)`` on each update.

        Adds to what is already streaming; calling it again for a symbol adds kinds. Each symbol has
        one callback: a later call with a callback replaces it (a rerunning Streamlit script does not
        pile them up); for more consumers use :meth:`add_listener`. The callback runs on a worker
        thread (see :mod:`massive_feeds.stream.orderbook` for the dict).

        Args:
            symbols: tickers in any accepted form (``AAPL``, ``BTC-USD``, ``EUR/USD``, ``I:SPX`` …).
            callback: ``callback(symbol, orderbook)``; exceptions are logged and counted, never fatal.
            kinds: per-symbol streams (default: the connector's ``kinds``, quotes and trades).
            wait: block until the market connections authenticated (up to ``connect_timeout``).

        Returns:
            The normalised symbols.

        Raises:
            StreamLimitError: the plan's symbol-stream cap would be passed (nothing is subscribed).
            StreamAuthError: the server refused the key (no reconnect loop).
            MaxConnectionsError: another client with this key holds the market's connection.
            InvalidInputError: a bad symbol or kind. MissingCredentialsError: no API key configured.
        """
        syms = normalize_symbols(symbols)
        use_kinds = check_kinds(kinds) if kinds is not None else self.kinds
        with self._lock:
            client = self._ensure_client()
            books = self._ensure_books() if callback is not None else None
            if books is not None and callback is not None:
                books.set_callback(syms, callback)  # before subscribing: no early update is missed
            try:
                self._loop.run(client.subscribe(syms, use_kinds, wait=self.connect_timeout if wait else None),
                               timeout=self.connect_timeout + 10)
            except BaseException as exc:
                if books is not None:
                    books.remove([s for s in syms if s not in client.symbols])
                if isinstance(exc, MassiveError):
                    self.last_error = str(exc)
                raise
        log.info("streaming %s (%s)", ", ".join(syms), ", ".join(use_kinds))
        return syms

    def stop_stream(self, symbols: str | Iterable[str] | None = None) -> list[str]:
        """Stop streaming ``symbols`` (all when ``None``); returns the symbols that stopped.

        A market whose last symbol stops has its connection closed (freeing Massive's one-per-market
        slot). Listeners stay registered.
        """
        syms = None if symbols is None else normalize_symbols(symbols)
        with self._lock:
            client = self._client
            if client is None or not self._loop.running:
                return []
            gone = self._loop.run(client.unsubscribe(syms), timeout=self.connect_timeout + 10)
            if self._books is not None:
                self._books.remove(gone if syms is not None else None)
        if gone:
            log.info("stopped streaming %s", ", ".join(gone))
        return gone

    @property
    def active_symbols(self) -> list[str]:
        client = self._client
        return list(client.symbols) if client else []

    def get_orderbook(self, symbol: str) -> dict[str, Any] | None:
        """The latest orderbook of a streaming ``symbol`` (``None`` before its first update).

        Handy for polling UIs; books are kept once any callback was registered or after the first
        call of this method.
        """
        (sym,) = normalize_symbols([symbol])
        with self._lock:
            books = self._ensure_books()
        return books.snapshot(sym)

    # --- listeners (recorder, Backtrader live feed, anything else) -----------------------------------
    def add_listener(
        self,
        fn: EventCallback | BatchCallback,
        *,
        batched: bool = False,
        symbols: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        name: str | None = None,
        inline: bool = False,
    ) -> AnyListener:
        """Receive every normalised event of this connector's streams on a dedicated thread.

        ``fn(event)`` gets :class:`StreamEvent`, :class:`GapEvent` and :class:`StatusEvent` objects
        in arrival order (``fn(batch)`` with ``batched=True``: a list per frame, much cheaper).
        Filters: ``symbols`` (data events and gaps touching them), ``kinds`` (data events; gap/status
        always pass). Overflow beyond ``max_pending`` events is dropped, counted in
        ``listener.dropped``/``get_stats()["dropped"]`` and announced by an ``overflow`` status event.

        ``inline=True`` runs ``fn`` on the stream thread itself (no queue, no thread switch; fastest)
        — only for quick, non-blocking work such as counting or handing batches to your own queue:
        while it runs, nothing is read from the socket.

        Returns the listener handle (``.stats()``, ``.wait_idle()``); pass it to
        :meth:`remove_listener`. Listening does not subscribe anything: use :meth:`start_stream`.
        """
        syms = normalize_symbols(symbols) if symbols is not None else None
        return self._hub.add_listener(fn, batched=batched, symbols=syms,
                                      kinds=check_kinds(kinds) if kinds is not None else None,
                                      max_pending=max_pending, name=name, inline=inline)

    def add_control_listener(self, fn: Callable[[GapEvent | StatusEvent], None]) -> None:
        """Call ``fn(event)`` for every connection status and gap event, on the stream thread (keep it quick:
        ``MassiveStore`` queues them as Backtrader store notifications). No data events reach it."""
        with self._lock:
            self._control_listeners = (*self._control_listeners, fn)

    def remove_control_listener(self, fn: Callable[[GapEvent | StatusEvent], None]) -> None:
        with self._lock:
            self._control_listeners = tuple(f for f in self._control_listeners if f != fn)

    def remove_listener(self, listener: AnyListener, *, drain: bool = True) -> None:
        """Unregister a listener (delivering what it has queued first when ``drain``)."""
        self._hub.remove_listener(listener, drain=drain)

    def drain(self, timeout: float | None = 10.0) -> bool:
        """Block until every listener (and callback) delivered what has arrived so far."""
        return self._hub.wait_idle(timeout)

    # --- reference data ---------------------------------------------------------------------------
    def list_symbols(self, market: str | None = None, *, search: str | None = None, limit: int = 1000,
                     refresh: bool = False) -> list[str]:
        """Tickers from ``/v3/reference/tickers`` (active ones; cached for ``symbols_ttl`` seconds).

        ``market``: ``stocks`` | ``crypto`` | ``fx`` | ``otc`` | ``indices``. Each page is one REST
        call counted against the quota, so ``limit`` (default 1,000 = one page) bounds the cost.
        """
        key = (market, search, limit)
        with self._lock:
            cached = self._symbols_cache.get(key)
            if cached is not None and not refresh and cached[0] > monotonic():
                return list(cached[1])
        tickers = _fetch_tickers(self.settings, market=market, search=search, limit=limit)
        with self._lock:
            self._symbols_cache[key] = (monotonic() + self.symbols_ttl, tickers)
        return list(tickers)

    # --- stats --------------------------------------------------------------------------------------
    def get_stats(self) -> dict[str, Any]:
        """Counters for dashboards (cheap; never blocks on the stream thread).

        Keys: ``active_streams``, ``max_streams``, ``messages_this_minute``, ``max_messages_per_minute``,
        ``messages_total``, ``reconnects``, ``dropped`` (events lost by slow listeners/callbacks),
        ``callback_errors``, ``malformed`` (frames + events skipped), ``malformed_by_kind`` (events
        skipped per wire ``ev``, e.g. ``{"T": 2}``: never delivered), ``last_message_age`` (seconds,
        ``None`` before the first frame), ``gaps`` (closed reconnect gaps, oldest first),
        ``open_gaps``, ``connected``, ``markets`` (per-market details), ``listeners``, ``last_error``.
        """
        client = self._client
        markets = client.stats() if client else {}
        hub = self._hub.stats()
        ages = [m["last_message_age"] for m in markets.values() if m["last_message_age"] is not None]
        gaps = sorted((g for m in markets.values() for g in m["gaps"]), key=lambda g: g["disconnected_ns"])
        books = self._books
        errors = [m["last_error"] for m in markets.values() if m["last_error"]]
        return {
            "active_streams": len(client.symbols) if client else 0,
            "max_streams": self.max_streams,
            "symbols": list(client.symbols) if client else [],
            "messages_this_minute": self._rate.count(),
            "max_messages_per_minute": self.max_messages_per_minute,
            "messages_total": self._rate.total,
            "rate_warnings": self._rate.warnings,
            "connected": bool(markets) and all(m["state"] == "connected" for m in markets.values()),
            "reconnects": sum(m["reconnects"] for m in markets.values()),
            "slow_consumer": sum(m["slow_consumer"] for m in markets.values()),
            "dropped": hub["dropped"],
            "callback_errors": hub["errors"] + (books.errors if books else 0),
            "malformed": sum(m["malformed_frames"] + m["malformed_events"] for m in markets.values()),
            "malformed_by_kind": _merged(m["malformed_by_kind"] for m in markets.values()),
            "last_message_age": min(ages) if ages else None,
            "gaps": gaps,
            "open_gaps": [m["open_gap"] for m in markets.values() if m["open_gap"]],
            "markets": markets,
            "listeners": hub["listeners"],
            "last_error": errors[-1] if errors else self.last_error,
        }

    # --- recording (the product document's connector API) ----------------------------------------
    def enable_recording(self, symbols: str | Iterable[str] | None = None, *,
                         save_dir: str | Path = "data/live_recorded", tag: str | None = None,
                         flush_interval: float | None = None, recorder: Callable[..., Any] | None = None) -> Any:
        """Record every quote and trade of ``symbols`` (default: what is streaming now) durably.

        Starts streaming them if needed (callbacks given later to :meth:`start_stream` still work).
        ``recorder`` is the recorder class (``massive_feeds.record.WebSocketDataRecorder``), default the one this
        connector was built with: recording is a layer above streaming, so the caller hands it in
        (:func:`massive_feeds.get_connector` does). ``flush_interval``: the recorder's, default its own.
        Returns the recorder; stop with :meth:`disable_recording`.
        """
        factory = recorder or self.recorder
        if factory is None:
            raise InvalidInputError("enable_recording needs a recorder: MassiveConnector(recorder=WebSocketDataRecorder)"
                                    " (massive_feeds.get_connector passes it) or enable_recording(recorder=...)")
        options = {} if flush_interval is None else {"flush_interval": flush_interval}
        with self._lock:
            if self._recorder is not None and self._recorder.is_recording:
                raise InvalidInputError("recording is already enabled; call disable_recording() first")
            chosen = symbols if symbols is not None else self.active_symbols
            if not chosen:
                raise InvalidInputError("enable_recording needs symbols (nothing is streaming yet)")
            started = factory(chosen, save_dir, connector=self, settings=self.settings, **options)
            self._recorder, self._recording_tag = started.start(), tag
        return started

    def disable_recording(self, resample_interval: str = "1min", name: str | None = None) -> Path | None:
        """Stop recording and save it as a dataset (``massive_live_<tag>_<YYYYMMDD>`` by default).

        Returns the dataset's file path (the raw event log is kept beside it), or ``None`` when nothing
        was being recorded or no quote or trade arrived (then no empty dataset is saved and a warning says
        so). Streaming goes on.
        """
        with self._lock:
            recorder = self._recorder
            if recorder is None or not recorder.is_recording:
                return None
            recorder.stop()
        if recorder.stats().get("events_durable", 0) == 0:
            log.warning("recording of %s stopped with no quote or trade received: no dataset saved",
                        ", ".join(recorder.symbols))
            return None
        return recorder.save_dataset(name, resample_interval, tag=self._recording_tag)

    def get_recorded_dataframe(self, resample_interval: str = "1min") -> pd.DataFrame:
        """Bars of the current (or last) recording so far: OHLCV plus bid/ask/mid/spread."""
        if self._recorder is None:
            raise InvalidInputError("nothing recorded yet: call enable_recording() first")
        return self._recorder.get_dataframe(resample_interval)

    # --- lifecycle ----------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop every stream, deliver what is queued to listeners, and stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if client is not None and self._loop.running:
            try:
                self._loop.run(client.close(), timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - closing must finish
                log.warning("closing streams: %s", exc)
        self._loop.stop(timeout)
        self._hub.close(drain=True, timeout=timeout)
        if self._recorder is not None and self._recorder.is_recording:
            self._recorder.stop()  # everything delivered is made durable; the log stays on disk

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "MassiveConnector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------------
    def _ensure_client(self) -> StreamClient:
        if self._closed:
            raise StreamError("this connector was closed; get a new one with get_connector()")
        if self._client is None:
            self._client = StreamClient(self.settings, on_events=self._on_events, on_control=self._on_control,
                                        max_streams=self.max_streams, policy=self.reconnect,
                                        **self._connection_options)
        self._loop.start()
        self._aloop = self._loop.loop
        return self._client

    def _ensure_books(self) -> OrderBooks:
        if self._books is None:
            self._books = OrderBooks()
            self._books_listener = self._hub.add_listener(
                cast(EventCallback, self._books), kinds=BOOK_KINDS, max_pending=self.callback_queue_size,
                name="massive-callbacks")
        return self._books

    def _on_events(self, batch: TypedFrame) -> None:  # stream thread, once per frame
        self._rate.add(len(batch))
        # Queue now, wake the listener threads once per event-loop pass: in a burst the socket is
        # read frame after frame without yielding, and a thread switch per frame would cost more
        # than parsing it. Latency is unchanged (the wake runs before the loop next waits).
        self._hub.publish(batch, wake=False)
        if not self._wake_pending:
            self._wake_pending = True
            self._aloop.call_soon(self._wake_listeners)

    def _wake_listeners(self) -> None:
        self._wake_pending = False
        self._hub.wake()

    def _on_control(self, event: GapEvent | StatusEvent) -> None:  # stream thread, rare
        if isinstance(event, StatusEvent):
            self.last_status = event
        for fn in self._control_listeners:
            try:
                fn(event)
            except Exception as exc:  # noqa: BLE001 - a watcher never stops the stream
                log.warning("control listener %r raised %s: %s", fn, type(exc).__name__, exc)
        self._hub.publish_control(event)


def _merged(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per-kind counters of several markets added up."""
    out: dict[str, int] = {}
    for c in counts:
        for k, n in c.items():
            out[k] = out.get(k, 0) + n
    return out


def _fetch_tickers(settings: Settings, *, market: str | None, search: str | None, limit: int) -> list[str]:
    """Active tickers from the reference endpoint, through the REST client (Bearer auth, quota, retries)."""
    from ..rest import RestClient  # REST is only needed here; keep streaming importable without it

    params: dict[str, Any] = {"active": "true", "limit": max(1, min(limit, 1000))}
    if market:
        params["market"] = market
    if search:
        params["search"] = search
    out: list[str] = []
    with RestClient(settings) as rest:
        for row in rest.list_json("/v3/reference/tickers", params):
            out.append(row["ticker"])
            if len(out) >= limit:
                break
    return out


# --- registry -------------------------------------------------------------------------------------
_FACTORIES: dict[str, Any] = {"massive": MassiveConnector}


def register_connector(name: str, factory: Any) -> None:
    """Make ``get_connector(name)`` build connectors with ``factory(**kwargs)``."""
    _FACTORIES[name.lower()] = factory


def get_connector(name: str = "massive", *, shared: bool = True, **kwargs: Any) -> MassiveConnector:
    """The connector registered as ``name`` (``"massive"``).

    With ``shared=True`` (default) the same open instance is returned for the same arguments (held by
    the runtime context, :mod:`massive_feeds.runtime`), so a Streamlit script that reruns top to bottom
    keeps one connection per market instead of opening a new one (which would kick the old one with
    ``max_connections``). Unhashable arguments disable sharing. ``kwargs`` go to :class:`MassiveConnector`.
    """
    factory = _FACTORIES.get(name.lower())
    if factory is None:
        raise MassiveError(f"Unknown connector {name!r}; available: {sorted(_FACTORIES)}")
    if not shared:
        return factory(**kwargs)
    try:
        key = (name.lower(), tuple(sorted(kwargs.items())))
        hash(key)
    except TypeError:
        return factory(**kwargs)
    return current().shared("connector", key, lambda: factory(**kwargs), alive=lambda c: not c.closed)


__all__ = ["DEFAULT_KINDS", "MassiveConnector", "get_connector", "register_connector"]
