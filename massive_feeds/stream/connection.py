"""One WebSocket connection to one Massive market cluster (``<ws_url>/<market>``), kept alive.

Lifecycle: connect → ``connected`` status → auth frame → ``auth_success`` (or ``auth_failed``:
fatal, no loop) → subscribe everything wanted → read frames until the socket drops → back off with
jitter → reconnect, re-auth, resubscribe everything still wanted → … until :meth:`close`.

* Server statuses are handled distinctly: ``max_connections`` (another client with our key took the
  slot: stop by default rather than fight it), ``force_disconnect`` and ``slow_consumer`` (reconnect;
  the latter counted and warned about), ``error`` (a rejected subscription, surfaced as a status).
* A silent socket is detected: after ``stale_after`` seconds without a frame we ping; no pong within
  ``pong_timeout`` means the socket is dead and we reconnect. A quiet but alive market is left alone.
* Each drop of an authenticated connection opens a gap (provider time of the last event before it);
  the first event after the reconnect closes it, and a :class:`GapEvent` is published just before
  that event so consumers can backfill the window over REST.

Everything here runs on one asyncio loop; only :meth:`stats` may be read from other threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from time import monotonic, time_ns
from typing import Any, Callable, Iterable, Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..config import Secret
from ..errors import MaxConnectionsError, StreamAuthError, StreamError
from . import events as E
from .backoff import DEFAULT_POLICY, ReconnectPolicy
from .events import GapEvent, StatusEvent
from .protocol import (
    AUTH_FAILED,
    AUTH_OK,
    DISCONNECT_STATUSES,
    HANDSHAKE_OK,
    FrameError,
    FrameParser,
    TypedFrame,
    action_message,
    auth_message,
    chunk_params,
    status_text,
)
from .throttle import ThrottledLog

log = logging.getLogger(__name__)

#: Receives each frame's data: a :class:`~.protocol.TypedFrame` of decoded, validated events, whose
#: :class:`StreamEvent` objects are built by whoever consumes it (``frame.events()``).
EventsSink = Callable[[TypedFrame], None]
ControlSink = Callable[[GapEvent | StatusEvent], None]

#: Connection states, as shown in stats.
IDLE, CONNECTING, AUTHENTICATING, CONNECTED, RECONNECTING, STOPPED, FAILED = (
    "idle", "connecting", "authenticating", "connected", "reconnecting", "stopped", "failed")


class MarketConnection:
    """A self-healing connection to one market. Create and use it on a running asyncio loop.

    Args:
        market: ``stocks`` | ``options`` | ``indices`` | ``forex`` | ``crypto``.
        url: full URL including the market path, e.g. ``wss://socket.massive.com/stocks``.
        api_key: the key, sent only inside the auth frame.
        on_events: called on the loop thread with each frame's data (a :class:`~.protocol.TypedFrame`).
        on_control: called on the loop thread with each gap / status event.
        policy: reconnect backoff.
        stale_after: seconds without frames before a liveness ping (``None``: never).
        pong_timeout: seconds to wait for that pong before declaring the socket dead.
        open_timeout: seconds allowed for TCP + WebSocket + auth handshake.
        fight_max_connections: reconnect after ``max_connections`` instead of stopping. Off by default:
            two clients sharing a key would otherwise kick each other forever.
    """

    def __init__(
        self,
        market: str,
        url: str,
        api_key: Secret,
        *,
        on_events: EventsSink,
        on_control: ControlSink,
        policy: ReconnectPolicy = DEFAULT_POLICY,
        stale_after: float | None = 30.0,
        pong_timeout: float = 10.0,
        open_timeout: float = 10.0,
        fight_max_connections: bool = False,
    ) -> None:
        self.market = market
        self.url = url
        self._key = api_key
        self._on_events = on_events
        self._on_control = on_control
        self.policy = policy
        self.stale_after = stale_after
        self.pong_timeout = pong_timeout
        self.open_timeout = open_timeout
        self.fight_max_connections = fight_max_connections

        self._wanted: dict[str, str] = {}  # wire param -> our ticker ("*" for wildcards)
        self._sent: set[str] = set()  # params sent on the current authenticated socket
        self.confirmed: set[str] = set()  # params the server confirmed on the current socket
        self._ws: ClientConnection | None = None  # set only while authenticated
        self._socket: ClientConnection | None = None  # any open socket (for close)
        self._sync_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # first successful auth, or a fatal error
        self._parser = FrameParser(market)
        self._warn = ThrottledLog(log, interval=10.0)

        self.state = IDLE
        self.error: StreamError | None = None  # the fatal error that stopped us, if any
        self.last_error: str | None = None
        self.frames = 0
        self.events = 0
        self.malformed_frames = 0
        self.reconnects = 0
        self.slow_consumer = 0
        self.connected_ns = 0
        self.last_frame_ns = 0
        self.last_event_ms: int | None = None
        self.gaps: deque[GapEvent] = deque(maxlen=1000)
        self._open_gap: dict[str, Any] | None = None
        self._drop_reason: str | None = None
        self._got_data = False
        self._malformed_seen = 0
        self._liveness_ns = 0

    def __repr__(self) -> str:
        return (f"MarketConnection(market={self.market!r}, url={self.url!r}, state={self.state!r}, "
                f"subscriptions={len(self._wanted)}, reconnects={self.reconnects})")

    # --- public API (loop thread) -----------------------------------------------------------------
    @property
    def params(self) -> tuple[str, ...]:
        """Wire params currently wanted (``Q.AAPL`` …)."""
        return tuple(self._wanted)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(set(self._wanted.values())))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"massive-ws-{self.market}")

    async def add(self, params: Mapping[str, str]) -> None:
        """Want these params (``{"Q.AAPL": "AAPL"}``); sent now if connected, else on (re)connect."""
        self._wanted.update(params)
        await self._sync_quietly()

    async def remove(self, params: Iterable[str]) -> None:
        for p in params:
            self._wanted.pop(p, None)
        await self._sync_quietly()

    async def wait_settled(self, timeout: float | None) -> None:
        """Wait for the first successful auth. Raises the fatal error if the connection failed
        (e.g. :class:`StreamAuthError`), :class:`TimeoutError` if neither happened in time."""
        async with asyncio.timeout(timeout):
            await self._settled.wait()
        if self.error is not None:
            raise self.error

    async def close(self, timeout: float = 5.0) -> None:
        """Stop for good: close the socket (politely, then abruptly) and end the reconnect loop."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None or task.done():
            return
        ws = self._socket
        if ws is not None:
            try:
                async with asyncio.timeout(timeout):
                    await ws.close()
            except (TimeoutError, OSError):
                ws.transport.abort()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception:  # noqa: BLE001 - the loop has logged it
            pass

    def stats(self) -> dict[str, Any]:
        """A snapshot (safe to call from any thread: plain reads of counters)."""
        now = time_ns()
        open_gap = self._open_gap
        return {
            "market": self.market,
            "url": self.url,
            "state": self.state,
            "subscriptions": len(self._wanted),
            "confirmed": len(self.confirmed),
            "frames": self.frames,
            "events": self.events,
            "malformed_frames": self.malformed_frames,
            "malformed_events": self._parser.malformed_events,
            "malformed_by_kind": dict(self._parser.malformed_by_kind),
            "unknown_events": self._parser.unknown_events,
            "reconnects": self.reconnects,
            "slow_consumer": self.slow_consumer,
            "last_message_age": (now - self.last_frame_ns) / 1e9 if self.last_frame_ns else None,
            "last_event_time": E.ms_to_datetime(self.last_event_ms),
            "last_error": self.last_error,
            "gaps": [g.to_dict() for g in list(self.gaps)],
            "open_gap": dict(open_gap) if open_gap else None,
        }

    # --- the reconnect loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        ever_connected = False
        try:
            while not self._closing:
                self.state = RECONNECTING if ever_connected else CONNECTING
                outcome = await self._session(ever_connected, failures)
                if outcome is None or self._closing:
                    break  # fatal (already reported) or closed by us
                reason, up_since = outcome
                ever_connected = ever_connected or up_since is not None
                stayed = up_since is not None and monotonic() - up_since >= self.policy.healthy_after
                healthy = self._got_data or stayed
                failures = 0 if healthy else failures + 1
                self._on_dropped(reason, was_up=up_since is not None)
                if self.policy.exhausted(failures):
                    self._fail(StreamError(f"{self.market}: gave up after {failures} failed attempts; last: {reason}"),
                               E.ERROR)
                    break
                delay = self.policy.delay(failures)
                log.warning("%s stream dropped (%s); reconnecting in %.2fs", self.market, reason, delay)
                self.state = RECONNECTING
                await self._sleep(delay)
        finally:
            self._ws = None
            if self.state != FAILED:
                self.state = STOPPED
            self._settled.set()
            self._control(E.STOPPED, str(self.error) if self.error else "closed")

    async def _session(self, reconnect: bool, failures: int) -> tuple[str, float | None] | None:
        """One connection, from TCP connect until it drops. Returns ``(why it dropped, when it was
        authenticated or None)``, or ``None`` after a fatal error (auth refused, max_connections)."""
        self._drop_reason = None
        up_since: float | None = None
        try:
            async with connect(
                self.url, compression=None, ping_interval=None, open_timeout=self.open_timeout,
                close_timeout=2, max_size=2**24, max_queue=64,
            ) as ws:
                self._socket = ws
                await self._handshake(ws)
                up_since = monotonic()
                self._on_authenticated(ws, reconnect, failures)
                await self._sync(ws)
                self.state = CONNECTED
                self._settled.set()
                await self._read_until_closed(ws)
            return "server closed the connection", up_since
        except StreamAuthError as exc:
            self._fail(exc, E.AUTH_FAILED)
        except MaxConnectionsError as exc:
            if self.fight_max_connections:
                return "max_connections", up_since
            self._fail(exc, E.MAX_CONNECTIONS)
        except InvalidURI as exc:
            self._fail(StreamError(f"invalid WebSocket URL {self.url!r}: {exc}"), E.ERROR)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            return self._drop_reason or f"connection closed ({code or 'no close frame'})", up_since
        except (OSError, TimeoutError, InvalidHandshake, StreamError) as exc:
            return self._drop_reason or f"{type(exc).__name__}: {exc}", up_since
        except Exception as exc:  # noqa: BLE001 - a bug must not end the stream silently
            log.exception("%s: unexpected error in the stream loop", self.market)
            return f"internal error: {type(exc).__name__}: {exc}", up_since
        finally:
            self._ws = self._socket = None
        return None

    async def _sleep(self, delay: float) -> None:
        """Sleep, but wake at once if :meth:`close` is called."""
        self._wake.clear()
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _fail(self, exc: StreamError, status: str) -> None:
        self.error = exc
        self.last_error = str(exc)
        self.state = FAILED
        log.error("%s stream stopped: %s", self.market, exc)
        self._control(status, str(exc))

    # --- handshake ----------------------------------------------------------------------------------
    async def _handshake(self, ws: ClientConnection) -> None:
        self.state = AUTHENTICATING
        async with asyncio.timeout(self.open_timeout):
            await self._expect(ws, HANDSHAKE_OK, "connected")
            await ws.send(auth_message(self._key.reveal()), text=True)
            await self._expect(ws, frozenset({AUTH_OK}), "auth_success")

    async def _expect(self, ws: ClientConnection, ok: frozenset[str], what: str) -> None:
        """Read control frames until one carries a status in ``ok``; raise on refusals."""
        while True:
            raw = await ws.recv(decode=False)
            try:
                _, statuses = self._parser.parse(raw, time_ns())
            except FrameError as exc:
                raise StreamError(f"{self.market}: bad frame while waiting for {what}: {exc}") from None
            for st in statuses:
                status, message = status_text(st)
                if status in ok:
                    return
                if status == AUTH_FAILED:
                    raise StreamAuthError(
                        f"{self.market}: authentication failed at {self.url}; the key is wrong or its plan "
                        f"does not include this market", server_message=message)
                if status == "max_connections":
                    raise MaxConnectionsError(self._max_connections_text(), server_message=message)
                if status in DISCONNECT_STATUSES or status.startswith("auth_"):
                    self._drop_reason = status
                    raise StreamError(f"{self.market}: server sent {status} during the handshake",
                                      server_message=message)

    def _max_connections_text(self) -> str:
        return (f"{self.market}: the server closed this connection with max_connections: another client "
                f"using the same key connected to {self.url}. Massive allows one connection per market per "
                f"key; stop the other client or ask Massive for more connections.")

    def _on_authenticated(self, ws: ClientConnection, reconnect: bool, failures: int) -> None:
        now = time_ns()
        self._ws = ws
        self._sent = set()
        self.confirmed = set()
        self._got_data = False
        self.connected_ns = self._liveness_ns = now
        if reconnect:
            self.reconnects += 1
            if self._open_gap is not None:
                self._open_gap["reconnected_ns"] = now
                self._open_gap["attempts"] = failures + 1
            self._control(E.RECONNECTED, f"resubscribing {len(self._wanted)} subscriptions")
        else:
            self._control(E.CONNECTED, f"authenticated at {self.url}")
        log.info("%s stream %s (%d subscriptions)", self.market, "reconnected" if reconnect else "connected",
                 len(self._wanted))

    def _on_dropped(self, reason: str, *, was_up: bool) -> None:
        self.last_error = reason
        if was_up and self._open_gap is None:
            now = time_ns()
            self._open_gap = {
                "market": self.market, "symbols": self.symbols, "start_ms": self.last_event_ms,
                "disconnected_ns": now, "reconnected_ns": now, "reason": reason, "attempts": 0,
            }
        if was_up:
            self._control(E.DISCONNECTED, reason)

    # --- subscriptions ------------------------------------------------------------------------------
    async def _sync(self, ws: ClientConnection) -> None:
        """Send whatever differs between wanted and sent (everything, right after auth)."""
        async with self._sync_lock:
            while self._ws is ws:
                want = set(self._wanted)
                add, drop = want - self._sent, self._sent - want
                if not add and not drop:
                    return
                for chunk in chunk_params(sorted(add)):
                    await ws.send(action_message("subscribe", chunk), text=True)
                self._sent |= add
                for chunk in chunk_params(sorted(drop)):
                    await ws.send(action_message("unsubscribe", chunk), text=True)
                self._sent -= drop
                self.confirmed -= drop

    async def _sync_quietly(self) -> None:
        ws = self._ws
        if ws is None:
            return  # not authenticated: the (re)connect will send everything wanted
        with contextlib.suppress(ConnectionClosed):  # dropping right now: the reconnect resubscribes
            await self._sync(ws)

    # --- reading ------------------------------------------------------------------------------------
    async def _read_until_closed(self, ws: ClientConnection) -> None:
        watchdog = asyncio.get_running_loop().create_task(self._watchdog(ws))
        try:
            await self._read(ws)
        finally:
            watchdog.cancel()

    async def _read(self, ws: ClientConnection) -> None:
        # The hot loop: one recv, one clock read, one parse, one sink call per frame.
        recv = ws.recv
        parse = self._parser.parse_frame
        on_events = self._on_events
        while True:
            raw = await recv(decode=False)
            now = time_ns()
            self.last_frame_ns = now
            self.frames += 1
            try:
                events, statuses = parse(raw, now)
            except FrameError as exc:
                self._malformed_frame(raw, str(exc), now)
                continue
            if statuses:
                self._handle_statuses(statuses, now)
            if self._parser.malformed_events != self._malformed_seen:
                self._malformed_items(now)
            if events:
                self.last_event_ms = events.last_ms()
                if self._open_gap is not None:
                    self._close_gap(events.first_ms())
                self._got_data = True
                self.events += len(events)
                on_events(events)

    def _handle_statuses(self, statuses: list[dict[str, Any]], now: int) -> None:
        for st in statuses:
            status, message = status_text(st)
            if status == "success":
                verb, _, params = message.partition(":")
                names = {p.strip() for p in params.split(",") if p.strip()}
                if verb.strip().startswith("unsubscribed"):
                    self.confirmed -= names
                    self._control(E.UNSUBSCRIBED, message)
                elif verb.strip().startswith("subscribed"):
                    self.confirmed |= names
                    self._control(E.SUBSCRIBED, message)
            elif status in HANDSHAKE_OK or status == AUTH_OK:
                continue
            elif status == "max_connections":
                self._drop_reason = status
                raise MaxConnectionsError(self._max_connections_text(), server_message=message)
            elif status in DISCONNECT_STATUSES:
                self._drop_reason = status
                if status == "slow_consumer":
                    self.slow_consumer += 1
                    log.warning("%s: the server dropped us as a slow consumer (%s); reconnecting. Fewer "
                                "subscriptions or a faster network may be needed.", self.market, message)
                self._control(status, message)
            elif status == AUTH_FAILED:
                raise StreamAuthError(f"{self.market}: the server revoked authentication", server_message=message)
            else:
                self._warn("%s: server status %s: %s", self.market, status, message)
                self._control(E.ERROR, f"{status}: {message}")

    def _malformed_frame(self, raw: bytes, why: str, now: int) -> None:
        self.malformed_frames += 1
        preview = raw[:80].decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)[:80]
        self._warn("%s: skipped a malformed frame (%s): %r", self.market, why, preview)
        self._control(E.MALFORMED, f"frame skipped: {why}")

    def _malformed_items(self, now: int) -> None:
        # the parser logs the first malformed event of each kind; the count travels in-band and in stats
        n = self._parser.malformed_events - self._malformed_seen
        self._malformed_seen = self._parser.malformed_events
        self._control(E.MALFORMED, f"{n} malformed event(s) skipped")

    def _close_gap(self, first_ms: int) -> None:
        g = self._open_gap
        assert g is not None
        self._open_gap = None
        gap = GapEvent(E.GAP, g["market"], g["symbols"], g["start_ms"], first_ms, g["disconnected_ns"],
                       g["reconnected_ns"], g["reason"], g["attempts"])
        self.gaps.append(gap)
        log.info("%s gap closed: %s → %s (%s, %.2fs down)", self.market, gap.start, gap.end, gap.reason,
                 gap.downtime)
        self._on_control(gap)

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Ping a silent socket; abort it if the pong does not come back (a dead, 'stale' socket)."""
        if not self.stale_after:
            return
        period = min(1.0, self.stale_after / 4)
        while True:
            await asyncio.sleep(period)
            silent = (time_ns() - max(self.last_frame_ns, self._liveness_ns)) / 1e9
            if silent < self.stale_after:
                continue
            try:
                pong = await ws.ping()
                async with asyncio.timeout(self.pong_timeout):
                    await pong
                self._liveness_ns = time_ns()  # alive, just quiet
            except TimeoutError:
                self._drop_reason = f"stale: no frames for {silent:.1f}s and no pong"
                log.warning("%s: %s; dropping the socket", self.market, self._drop_reason)
                ws.transport.abort()
                return
            except ConnectionClosed:
                return

    def _control(self, status: str, message: str) -> None:
        self._on_control(StatusEvent(E.STATUS, self.market, status, message, time_ns()))
