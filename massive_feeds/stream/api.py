"""The async iterators of the product document: ``stream_quotes_websocket`` and friends.

They run on the caller's event loop (no threads)::

    async for quote in stream_quotes_websocket(["AAPL", "X:BTCUSD"]):
        print(quote["symbol"], quote["bid"], quote["ask"])

Reconnects happen underneath (with resubscription); a fatal error (bad key, ``max_connections``)
ends the iteration by raising it. Leaving the loop early closes the sockets when the generator is
closed — use ``contextlib.aclosing(...)`` to make that immediate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from math import isnan
from typing import Any, AsyncIterator, Iterable

from ..config import Settings
from ..errors import StreamError
from ..runtime import resolve_settings
from ..schema import normalize_symbols
from .backoff import DEFAULT_POLICY, ReconnectPolicy
from .client import StreamClient, check_kinds
from .events import (
    AGG_MINUTE,
    AGG_SECOND,
    CONTROL_KINDS,
    QUOTE,
    STOPPED,
    TRADE,
    VALUE,
    Event,
    GapEvent,
    StatusEvent,
    StreamEvent,
    ms_to_datetime,
)
from .hub import DEFAULT_MAX_PENDING
from .protocol import TypedFrame
from .throttle import ThrottledLog

log = logging.getLogger(__name__)
_PLAN: Any = object()


def _n(x: Any) -> Any:
    return None if isinstance(x, float) and isnan(x) else x


def quote_dict(ev: StreamEvent) -> dict[str, Any]:
    """``{"symbol", "bid", "ask", "bid_size", "ask_size", "timestamp", "received", "exchange"}``."""
    return {"symbol": ev.symbol, "bid": ev.bid, "ask": ev.ask, "bid_size": _n(ev.bid_size),
            "ask_size": _n(ev.ask_size), "timestamp": ev.time, "received": ev.received, "exchange": ev.exchange}


def trade_dict(ev: StreamEvent) -> dict[str, Any]:
    """``{"symbol", "price", "size", "timestamp", "received", "exchange"}`` (index values: size None)."""
    return {"symbol": ev.symbol, "price": ev.price, "size": _n(ev.size), "timestamp": ev.time,
            "received": ev.received, "exchange": ev.exchange}


def bar_dict(ev: StreamEvent) -> dict[str, Any]:
    """``{"symbol", "timestamp" (window start), "end", "open", "high", "low", "close", "volume", "vwap"}``."""
    return {"symbol": ev.symbol, "timestamp": ev.time, "end": ms_to_datetime(ev.end_ms) if ev.end_ms else None,
            "open": ev.open, "high": ev.high, "low": ev.low, "close": ev.close, "volume": _n(ev.volume),
            "vwap": _n(ev.vwap), "received": ev.received}


def control_dict(ev: GapEvent | StatusEvent) -> dict[str, Any]:
    """A gap or status event as a dict whose ``"kind"`` is ``"gap"`` or ``"status"`` (data dicts have no
    ``"kind"`` key), so ``include_control=True`` consumers can branch on ``d.get("kind")``."""
    return ev.to_dict()


class _Buffer:
    """Bounded hand-off from the socket callbacks to the iterator (same loop, no locks)."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.items: deque[TypedFrame | list[Event]] = deque()
        self.pending = 0
        self.dropped = 0
        self.ready = asyncio.Event()
        self._warn = ThrottledLog(log, interval=5.0)

    def put(self, batch: TypedFrame) -> None:
        if self.pending + len(batch) > self.max_pending:
            self.dropped += len(batch)
            self._warn("stream iterator is %d events behind; dropped %d (total %d): the loop body is too slow",
                       self.pending, len(batch), self.dropped)
            return
        self.items.append(batch)
        self.pending += len(batch)
        self.ready.set()

    def put_control(self, event: GapEvent | StatusEvent) -> None:
        self.items.append([event])
        self.ready.set()


async def stream_events(
    symbols: str | Iterable[str],
    kinds: Iterable[str] = (QUOTE, TRADE),
    api_key: str | None = None,
    *,
    settings: Settings | None = None,
    include_control: bool = False,
    max_pending: int = DEFAULT_MAX_PENDING,
    max_streams: int | None = _PLAN,
    reconnect: ReconnectPolicy = DEFAULT_POLICY,
    stale_after: float | None = 30.0,
    connect_timeout: float = 10.0,
) -> AsyncIterator[Event]:
    """Yield normalised :class:`StreamEvent` objects for ``symbols`` (and, with ``include_control``,
    the :class:`GapEvent`/:class:`StatusEvent` objects too).

    Raises :class:`~massive_feeds.errors.StreamAuthError` on a refused key,
    :class:`~massive_feeds.errors.StreamLimitError` past the plan's symbol cap, and the fatal error of a
    market whose connection stopped for good.
    """
    settings = resolve_settings(settings, api_key=api_key, need=("rest", "websocket"))
    syms = normalize_symbols(symbols)
    use_kinds = check_kinds(kinds)
    buf = _Buffer(max_pending)
    options: dict[str, Any] = {} if max_streams is _PLAN else {"max_streams": max_streams}
    client = StreamClient(settings, on_events=buf.put, on_control=buf.put_control, policy=reconnect,
                          stale_after=stale_after, open_timeout=connect_timeout, **options)
    try:
        await client.subscribe(syms, use_kinds, wait=connect_timeout)
        while True:
            if not buf.items:
                buf.ready.clear()
                await buf.ready.wait()
            batch = buf.items.popleft()
            if type(batch) is not TypedFrame:  # a gap or status event, alone in its batch
                event = batch[0]
                _raise_if_fatal(client, event)
                if include_control:
                    yield event
                continue
            events = batch.events()  # built here, on the consuming side, from the decoded structs
            buf.pending -= len(batch)
            for event in events:
                yield event
    finally:
        await client.close()


def _raise_if_fatal(client: StreamClient, event: Event) -> None:
    if isinstance(event, StatusEvent) and event.status == STOPPED:
        conn = client.connections.get(event.market)
        if conn is not None and conn.error is not None:
            raise conn.error
        if conn is not None and not conn.running and conn.params:
            raise StreamError(f"{event.market} stream stopped: {event.message}")


async def stream_quotes_websocket(
    symbols: str | Iterable[str], api_key: str | None = None, *, settings: Settings | None = None, **options: Any,
) -> AsyncIterator[dict[str, Any]]:
    """Live quotes as dicts with ``symbol``, ``bid``, ``ask``, ``bid_size``, ``ask_size``,
    ``timestamp`` (tz-aware UTC, provider time), ``received`` and ``exchange``.

    Stocks/options ``Q``, forex ``C`` (no sizes: ``None``), crypto ``XQ``. ``options`` go to
    :func:`stream_events` (``reconnect``, ``stale_after``, ``max_pending`` …). With
    ``include_control=True`` gaps and status changes arrive too, as :func:`control_dict` dicts
    (``d["kind"]`` is ``"gap"`` or ``"status"``); only quotes are yielded as quotes.
    """
    async for ev in stream_events(symbols, (QUOTE,), api_key, settings=settings, **options):
        if ev.kind == QUOTE:
            yield quote_dict(ev)  # type: ignore[arg-type]
        elif ev.kind in CONTROL_KINDS:  # only with include_control=True
            yield control_dict(ev)  # type: ignore[arg-type]


async def stream_trades_websocket(
    symbols: str | Iterable[str], api_key: str | None = None, *, settings: Settings | None = None, **options: Any,
) -> AsyncIterator[dict[str, Any]]:
    """Live trades as dicts with ``symbol``, ``price``, ``size``, ``timestamp``, ``received``,
    ``exchange`` (stocks/options ``T``, crypto ``XT``; indices stream their value ``V`` here)."""
    async for ev in stream_events(symbols, (TRADE,), api_key, settings=settings, **options):
        if ev.kind in (TRADE, VALUE):
            yield trade_dict(ev)  # type: ignore[arg-type]
        elif ev.kind in CONTROL_KINDS:
            yield control_dict(ev)  # type: ignore[arg-type]


async def stream_bars_websocket(
    symbols: str | Iterable[str], api_key: str | None = None, *, settings: Settings | None = None,
    seconds: bool = False, **options: Any,
) -> AsyncIterator[dict[str, Any]]:
    """Live aggregates as bar dicts: minute bars (``AM``/``CA``/``XA``), or per-second bars with
    ``seconds=True`` (``A``/``CAS``/``XAS``). ``timestamp`` is the window start."""
    kind = AGG_SECOND if seconds else AGG_MINUTE
    async for ev in stream_events(symbols, (kind,), api_key, settings=settings, **options):
        if ev.kind == kind:
            yield bar_dict(ev)  # type: ignore[arg-type]
        elif ev.kind in CONTROL_KINDS:
            yield control_dict(ev)  # type: ignore[arg-type]
