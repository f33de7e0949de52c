"""The sandbox's WebSocket side: a real ``websockets`` server speaking Massive's streaming protocol.

``ws://127.0.0.1:<port>/<market>`` for ``stocks``, ``options``, ``indices``, ``forex``, ``crypto``:

* handshake as the real service: ``connected`` status on open, ``{"action":"auth"}`` answered with
  ``auth_success`` or ``auth_failed`` (then closed), ``auth_timeout`` when no auth comes in time;
* ``subscribe`` / ``unsubscribe`` with comma lists and ``<CHANNEL>.*`` wildcards, confirmed per
  param (``subscribed to: Q.AAPL``); an unknown channel gets an ``error`` status;
* one connection per market per key: a newer connection kicks the older with ``max_connections``;
* streams the market generator's ticks (``T``/``XT`` trades, ``Q``/``XQ``/``C`` quotes, ``V`` values)
  and aggregates (``A``/``AM``, ``CAS``/``CA``, ``XAS``/``XA``) at the sandbox clock's pace, in
  JSON-array frames with millisecond timestamps;
* a firehose mode for benchmarks (N events, pre-encoded, as fast as the socket takes them);
* fault injection: :meth:`WebSocketServer.force_disconnect`, :meth:`~WebSocketServer.kick`
  (``max_connections``), :meth:`~WebSocketServer.slow_consumer`, :meth:`~WebSocketServer.drop`
  (abrupt TCP close), :meth:`~WebSocketServer.freeze` (a silent, unresponsive socket) and
  :meth:`~WebSocketServer.send_raw` (malformed frames).

Permessage-deflate is not negotiated, so every client parses the same bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Coroutine

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .ws_feed import MARKET_CHANNELS, TickFeed, firehose_frames

if TYPE_CHECKING:
    from . import Sandbox

log = logging.getLogger(__name__)

MAX_CONNECTIONS_MESSAGE = "Maximum number of connections exceeded."


@dataclass(frozen=True)
class Firehose:
    """Benchmark mode: every connection to ``market`` that subscribes to ``channel`` receives
    ``events`` events in frames of ``batch``, as fast as it reads them, instead of the paced stream."""

    events: int
    batch: int = 100
    channel: str = "Q"
    market: str = "stocks"
    rate: float | None = None  # events per second; None: as fast as the socket takes them


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    market: str
    id: int
    key: str | None = None
    subs: set[str] = field(default_factory=set)
    frozen: bool = False
    firehosed: bool = False
    frames_sent: int = 0
    events_sent: int = 0
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def authed(self) -> bool:
        return self.key is not None

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "market": self.market, "authed": self.authed, "subscriptions": sorted(self.subs),
                "frames_sent": self.frames_sent, "events_sent": self.events_sent, "frozen": self.frozen}


def _status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


class WebSocketServer:
    """The sandbox WebSocket server on its own thread and loop. ``url`` is ``ws://127.0.0.1:<port>``.

    Tunables (plain attributes): ``step_interval`` (seconds between paced frames), ``auth_timeout``,
    ``slow_consumer_after`` (seconds a paced send may block before the client is dropped as a slow
    consumer), ``firehose`` (a :class:`Firehose` or ``None``).
    """

    def __init__(self, sandbox: "Sandbox", *, port: int = 0) -> None:
        self.sandbox = sandbox
        self.host = sandbox.host
        self.port = port
        self.feed = TickFeed(sandbox.market)
        self.step_interval = 0.05
        self.auth_timeout = 10.0
        self.slow_consumer_after = 5.0
        self.firehose: Firehose | None = None
        self.accepted = 0
        self.auth_failures = 0
        self.kicked = 0
        self._ids = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._slots: dict[tuple[str, str], _Conn] = {}  # (key, market) -> the connection holding it
        self._closing: set[asyncio.Task[None]] = set()  # background closes (kept referenced)
        self._firehose_cache: dict[Firehose, tuple[list[bytes], list[dict[str, Any]]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"WebSocketServer(url={self.url if self._server else None!r}, connections={len(self._conns)})"

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, args=(ready, failure), name="sandbox-ws", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        log.info("sandbox WebSocket server on %s", self.url)

    def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._serve())
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _serve(self) -> Server:
        return await serve(self._handle, self.host, self.port, compression=None, max_size=2**20, close_timeout=2)

    async def _shutdown(self) -> None:
        for conn in list(self._conns):
            conn.ws.transport.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
            await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    # --- thread-safe controls (tests, benchmarks, demos) ------------------------------------------
    def _call(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        assert self._loop is not None, "server not started"
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(10)

    def set_firehose(self, hose: Firehose | None) -> None:
        """Arm (or with ``None`` disarm) firehose mode, pre-encoding its frames now so a benchmark
        does not time their construction."""
        if hose is not None and hose not in self._firehose_cache:
            day = self.sandbox.clock.now().date()
            self._firehose_cache[hose] = firehose_frames(self.feed, hose.market, hose.channel, day, hose.batch)
        self.firehose = hose

    def _targets(self, market: str | None) -> list[_Conn]:
        return [c for c in self._conns if c.authed and (market is None or c.market == market)]

    def connections(self, market: str | None = None) -> list[dict[str, Any]]:
        """What each open connection looks like (subscriptions, counts)."""
        async def run() -> list[dict[str, Any]]:
            return [c.info() for c in sorted(self._conns, key=lambda c: c.id) if market in (None, c.market)]
        return self._call(run)

    def subscriptions(self, market: str) -> set[str]:
        """Subscriptions of the newest authenticated connection on ``market`` (empty if none)."""
        conns = [c for c in self.connections(market) if c["authed"]]
        return set(conns[-1]["subscriptions"]) if conns else set()

    def force_disconnect(self, market: str | None = None) -> int:
        """Send ``force_disconnect`` and close (as during maintenance). Returns connections hit."""
        return self._kick_all(market, "force_disconnect", "Forced disconnect by the server", 1001)

    def kick(self, market: str | None = None, status: str = "max_connections",
             message: str = MAX_CONNECTIONS_MESSAGE) -> int:
        """Send a disconnect status (default ``max_connections``) and close."""
        return self._kick_all(market, status, message, 1008)

    def slow_consumer(self, market: str | None = None) -> int:
        """Drop connections as slow consumers."""
        return self._kick_all(market, "slow_consumer", "Slow consumer: the client could not keep up", 1008)

    def _kick_all(self, market: str | None, status: str, message: str, code: int) -> int:
        async def run() -> int:
            targets = self._targets(market)
            for c in targets:
                await self._kick(c, status, message, code)
            return len(targets)
        return self._call(run)

    def drop(self, market: str | None = None) -> int:
        """Abort the TCP connections without a word (a network failure)."""
        async def run() -> int:
            targets = self._targets(market)
            for c in targets:
                c.ws.transport.abort()
            return len(targets)
        return self._call(run)

    def freeze(self, market: str | None = None) -> int:
        """Stop sending and stop reading (so pings go unanswered): a silently dead socket."""
        async def run() -> int:
            targets = self._targets(market)
            for c in targets:
                c.frozen = True
                c.ws.transport.pause_reading()
            return len(targets)
        return self._call(run)

    def send_raw(self, frame: str | bytes, market: str | None = None) -> int:
        """Send ``frame`` verbatim as a text frame (e.g. malformed JSON) to authenticated connections."""
        data = frame.encode() if isinstance(frame, str) else frame

        async def run() -> int:
            targets = [c for c in self._targets(market) if not c.frozen]
            for c in targets:
                await c.ws.send(data, text=True)
            return len(targets)
        return self._call(run)

    # --- protocol ---------------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        market = ws.request.path.split("?")[0].strip("/") if ws.request else ""
        if market not in MARKET_CHANNELS:
            await ws.send(orjson.dumps([_status("error", f"unknown cluster {market!r}")]), text=True)
            await ws.close(1008, "unknown cluster")
            return
        conn = _Conn(ws, market, next(self._ids))
        self._conns.add(conn)
        self.accepted += 1
        conn.tasks.append(asyncio.create_task(self._auth_deadline(conn)))
        try:
            await self._send(conn, [_status("connected", "Connected Successfully")])
            async for raw in ws:
                await self._on_message(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            self._conns.discard(conn)
            if conn.key is not None and self._slots.get((conn.key, market)) is conn:
                del self._slots[(conn.key, market)]
            for task in conn.tasks:
                task.cancel()

    async def _send(self, conn: _Conn, events: list[dict[str, Any]]) -> None:
        await conn.ws.send(orjson.dumps(events), text=True)
        conn.frames_sent += 1

    async def _auth_deadline(self, conn: _Conn) -> None:
        await asyncio.sleep(self.auth_timeout)
        if not conn.authed:
            await self._kick(conn, "auth_timeout", "authentication timed out", 1008)

    async def _kick(self, conn: _Conn, status: str, message: str, code: int) -> None:
        self.kicked += 1
        try:
            await self._send(conn, [_status(status, message)])
        except ConnectionClosed:
            return
        # Close in the background: the close handshake must not hold up the caller (e.g. a new auth).
        task = asyncio.create_task(conn.ws.close(code, status))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _on_message(self, conn: _Conn, raw: str | bytes) -> None:
        try:
            msg = orjson.loads(raw)
            action, params = msg.get("action"), str(msg.get("params", ""))
        except (orjson.JSONDecodeError, AttributeError):
            await self._send(conn, [_status("error", "invalid message")])
            return
        if action == "auth":
            await self._auth(conn, params)
        elif action in ("subscribe", "unsubscribe"):
            if not conn.authed:
                await self._send(conn, [_status("auth_required", "authentication required")])
                return
            await self._subscription(conn, action, params)
        else:
            await self._send(conn, [_status("error", f"unknown action {action!r}")])

    async def _auth(self, conn: _Conn, key: str) -> None:
        if key != self.sandbox.api_key:
            self.auth_failures += 1
            await self._kick(conn, "auth_failed", "authentication failed", 1008)
            return
        if conn.authed:
            await self._send(conn, [_status("auth_success", "authenticated")])
            return
        conn.key = key
        older = self._slots.get((key, conn.market))
        self._slots[(key, conn.market)] = conn
        if older is not None and older is not conn:
            await self._kick(older, "max_connections", MAX_CONNECTIONS_MESSAGE, 1008)
        await self._send(conn, [_status("auth_success", "authenticated")])
        conn.tasks.append(asyncio.create_task(self._stream(conn)))

    async def _subscription(self, conn: _Conn, action: str, params: str) -> None:
        replies = []
        allowed = MARKET_CHANNELS[conn.market]
        for param in (p.strip() for p in params.split(",")):
            if not param:
                continue
            channel, _, symbol = param.partition(".")
            if channel not in allowed or not symbol:
                replies.append(_status("error", f"invalid subscription {param!r} on {conn.market}"))
                continue
            if action == "subscribe":
                conn.subs.add(param)
                replies.append(_status("success", f"subscribed to: {param}"))
            else:
                conn.subs.discard(param)
                replies.append(_status("success", f"unsubscribed to: {param}"))
        hose = self.firehose
        if (action == "subscribe" and hose is not None and not conn.firehosed and hose.market == conn.market
                and any(p.split(".")[0] == hose.channel for p in conn.subs)):
            conn.firehosed = True  # before any await: the paced stream must not slip events in
            conn.tasks.append(asyncio.create_task(self._firehose(conn, hose)))
        if replies:
            await self._send(conn, replies)

    # --- streaming --------------------------------------------------------------------------------
    async def _stream(self, conn: _Conn) -> None:
        """Paced mode: every ``step_interval``, everything that happened since the last step."""
        clock = self.sandbox.clock
        cursor = clock.now_ms()
        while True:
            await asyncio.sleep(self.step_interval)
            now = clock.now_ms()
            if conn.frozen or conn.firehosed or not conn.subs:
                cursor = now
                continue
            events = self.feed.collect(conn.market, conn.subs, cursor, now)
            cursor = now
            for i in range(0, len(events), 1000):
                chunk = events[i:i + 1000]
                try:
                    async with asyncio.timeout(self.slow_consumer_after):
                        await self._send(conn, chunk)
                except TimeoutError:
                    log.info("sandbox: connection %d is a slow consumer; dropping it", conn.id)
                    conn.ws.transport.abort()
                    return
                conn.events_sent += len(chunk)

    async def _firehose(self, conn: _Conn, hose: Firehose) -> None:
        if hose not in self._firehose_cache:
            day = self.sandbox.clock.now().date()
            self._firehose_cache[hose] = await asyncio.to_thread(
                firehose_frames, self.feed, hose.market, hose.channel, day, hose.batch)
        frames, events = self._firehose_cache[hose]
        full, rest = divmod(hose.events, hose.batch)
        send = conn.ws.send
        started = datetime.now(timezone.utc)
        pool = len(frames)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(full):
            await send(frames[i % pool], text=True)
            if hose.rate:  # paced: frame i+1 is due at (i+1) * batch / rate seconds after the start
                ahead = t0 + (i + 1) * hose.batch / hose.rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        if rest:
            await send(orjson.dumps(events[:rest]), text=True)
        conn.frames_sent += full + (1 if rest else 0)
        conn.events_sent += hose.events
        log.info("sandbox firehose: %d events to connection %d in %.2fs", hose.events, conn.id,
                 (datetime.now(timezone.utc) - started).total_seconds())
