"""Symbol streams over several markets: one :class:`MarketConnection` per market, created on demand.

Turns ``(symbols, kinds)`` into wire params, enforces the plan's symbol-stream cap, and closes a
market's connection when its last symbol goes (so the market slot is freed for other clients).
Async and single-loop; :class:`~massive_feeds.stream.connector.MassiveConnector` runs it on a
background thread, the ``stream_*_websocket`` iterators on the caller's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Iterable

from ..config import Settings
from ..runtime import resolve_settings
from ..errors import InvalidInputError, StreamLimitError
from .backoff import DEFAULT_POLICY, ReconnectPolicy
from .connection import ControlSink, EventsSink, MarketConnection
from .events import DATA_KINDS
from .protocol import market_of, subscription_params

log = logging.getLogger(__name__)

#: Massive's documented cap for options quotes on one connection (no wildcard either).
OPTIONS_QUOTES_LIMIT = 1000


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Validate stream kinds (``trade``, ``quote``, ``agg_second``, ``agg_minute``, ``value``)."""
    out = tuple(dict.fromkeys(kinds))
    bad = [k for k in out if k not in DATA_KINDS]
    if bad or not out:
        raise InvalidInputError(f"Invalid stream kinds {bad or list(out)}; choose from {list(DATA_KINDS)}")
    return out


class StreamClient:
    """Manage subscriptions across market connections. Use on one running asyncio loop.

    Args:
        settings: resolved settings (``ws_url``, ``api_key``, ``plan.ws_max_streams``).
        on_events / on_control: sinks handed to every connection (called on the loop thread).
        max_streams: cap on distinct symbols (default: the plan's ``ws_max_streams``; ``None`` = no cap).
        connection_options: passed to each :class:`MarketConnection` (policy, stale_after, ...).
    """

    _PLAN_DEFAULT: Any = object()

    def __init__(
        self,
        settings: Settings,
        *,
        on_events: EventsSink,
        on_control: ControlSink,
        max_streams: int | None = _PLAN_DEFAULT,
        policy: ReconnectPolicy = DEFAULT_POLICY,
        **connection_options: Any,
    ) -> None:
        settings = resolve_settings(settings, need=("websocket",))  # idempotent; a sandbox's WS side on demand
        self.settings = settings
        self._key = settings.require_api_key()
        self.base_url = settings.ws_url.rstrip("/")
        self.max_streams = settings.plan.ws_max_streams if max_streams is self._PLAN_DEFAULT else max_streams
        self._on_events = on_events
        self._on_control = on_control
        self._policy = policy
        self._options = connection_options
        self.connections: dict[str, MarketConnection] = {}
        self._streams: dict[str, tuple[str, ...]] = {}  # ticker -> kinds
        self._params: dict[str, list[str]] = {}  # ticker -> wire params

    def __repr__(self) -> str:
        return (f"StreamClient(url={self.base_url!r}, streams={len(self._streams)}/{self.max_streams}, "
                f"markets={sorted(self.connections)})")

    @property
    def symbols(self) -> list[str]:
        return list(self._streams)

    def kinds_of(self, symbol: str) -> tuple[str, ...]:
        return self._streams.get(symbol, ())

    # --- subscribe / unsubscribe ------------------------------------------------------------------
    async def subscribe(self, symbols: list[str], kinds: Iterable[str], *, wait: float | None = 10.0) -> None:
        """Stream ``kinds`` of ``symbols`` (normalised tickers). Adds to what is already streaming.

        Raises :class:`StreamLimitError` (cap passed; nothing is subscribed),
        :class:`InvalidInputError` (a symbol cannot stream those kinds) and, when ``wait`` is set,
        the fatal error of a market that failed to authenticate (:class:`StreamAuthError`, …).
        """
        kinds = check_kinds(kinds)
        new_params = {s: subscription_params(s, kinds) for s in symbols}  # validates before any change
        self._check_limits(symbols, new_params)
        by_market: dict[str, dict[str, str]] = defaultdict(dict)
        for sym, params in new_params.items():
            merged = list(dict.fromkeys(self._params.get(sym, []) + params))
            self._params[sym] = merged
            self._streams[sym] = tuple(dict.fromkeys(self._streams.get(sym, ()) + kinds))
            by_market[market_of(sym)].update({p: sym for p in merged})
        touched = []
        for market, wanted in by_market.items():
            conn = self._connection(market)
            await conn.add(wanted)
            touched.append(conn)
        if wait is not None:
            await self._wait(touched, wait)

    async def unsubscribe(self, symbols: Iterable[str] | None = None) -> list[str]:
        """Stop streaming ``symbols`` (all when ``None``); returns those that were streaming."""
        gone = list(self._streams) if symbols is None else [s for s in symbols if s in self._streams]
        by_market: dict[str, list[str]] = defaultdict(list)
        for sym in gone:
            self._streams.pop(sym)
            by_market[market_of(sym)].extend(self._params.pop(sym, []))
        for market, params in by_market.items():
            conn = self.connections.get(market)
            if conn is None:
                continue
            await conn.remove(params)
            if not conn.params:  # free the market slot
                del self.connections[market]
                await conn.close()
        return gone

    async def close(self) -> None:
        """Close every connection."""
        conns, self.connections = list(self.connections.values()), {}
        self._streams.clear()
        self._params.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    # --- helpers ----------------------------------------------------------------------------------
    def _check_limits(self, symbols: list[str], new_params: dict[str, list[str]]) -> None:
        added = [s for s in symbols if s not in self._streams]
        total = len(self._streams) + len(added)
        if self.max_streams is not None and total > self.max_streams:
            raise StreamLimitError(
                f"Streaming {total} symbols would pass the plan's cap of {self.max_streams} concurrent "
                f"symbol streams ({len(self._streams)} active: {', '.join(self._streams) or 'none'}; "
                f"requested {len(added)} more). Stop some with stop_stream([...]) or raise the cap "
                f"(MASSIVE_PLAN_WS_MAX_STREAMS / MASSIVE_PLAN)."
            )
        option_quotes = sum(1 for s, ps in {**self._params, **new_params}.items()
                            if market_of(s) == "options" and any(p.startswith("Q.") for p in ps))
        if option_quotes > OPTIONS_QUOTES_LIMIT:
            raise StreamLimitError(f"Massive allows at most {OPTIONS_QUOTES_LIMIT} option contracts' quotes "
                                   f"per connection; {option_quotes} requested")

    def _connection(self, market: str) -> MarketConnection:
        conn = self.connections.get(market)
        if conn is not None and (conn.running or conn.state == "idle"):
            return conn
        if conn is not None:  # failed or stopped earlier: start afresh with everything wanted
            log.info("%s: replacing the %s connection", market, conn.state)
        conn = MarketConnection(
            market, f"{self.base_url}/{market}", self._key, on_events=self._on_events,
            on_control=self._on_control, policy=self._policy, **self._options,
        )
        for sym, params in self._params.items():
            if market_of(sym) == market:
                conn._wanted.update({p: sym for p in params})
        self.connections[market] = conn
        conn.start()
        return conn

    async def _wait(self, conns: list[MarketConnection], timeout: float) -> None:
        for conn in conns:
            try:
                await conn.wait_settled(timeout)
            except TimeoutError:
                log.warning("%s: not connected after %.1fs; still trying in the background (%s)",
                            conn.market, timeout, conn.last_error or conn.state)
            except Exception:
                # Fatal (bad key, max_connections): forget that market's streams so the caller's
                # bookkeeping matches what is really streaming, then surface the error.
                await self.unsubscribe([s for s in self._streams if market_of(s) == conn.market])
                raise

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-market connection stats."""
        return {m: c.stats() for m, c in list(self.connections.items())}

