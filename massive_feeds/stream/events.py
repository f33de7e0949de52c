"""The normalised live events every consumer sees: market data, gaps and status changes.

Three record types travel the same path (socket → :class:`~massive_feeds.stream.hub.EventHub` →
listeners), and a replay of a recording yields the very same types, so a consumer cannot tell live
from replay except by pacing. All three are ``NamedTuple``\\ s whose first field is ``kind``; branch
on it::

    for ev in batch:
        if ev.kind == "gap":      ...  # GapEvent: backfill ev.start_ms..ev.end_ms over REST
        elif ev.kind == "status": ...  # StatusEvent: connected / disconnected / stopped / ...
        else:                     ...  # StreamEvent: trade, quote, agg_second, agg_minute, value

Times are integers on the hot path (building a ``datetime`` per event would cost more than parsing
it): provider times in epoch **milliseconds** UTC (what the wire sends), local receive times in epoch
**nanoseconds** UTC. The ``.time``/``.received`` properties give tz-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from math import isnan, nan
from itertools import repeat
from typing import Any, Iterable, Iterator, NamedTuple

# --- kinds ---------------------------------------------------------------------------------------
TRADE = "trade"
QUOTE = "quote"
AGG_SECOND = "agg_second"
AGG_MINUTE = "agg_minute"
VALUE = "value"  # index value (V.I:SPX)
GAP = "gap"
STATUS = "status"

DATA_KINDS: tuple[str, ...] = (TRADE, QUOTE, AGG_SECOND, AGG_MINUTE, VALUE)
CONTROL_KINDS: tuple[str, ...] = (GAP, STATUS)

# --- status vocabulary (StatusEvent.status) ------------------------------------------------------
#: Authenticated and subscriptions sent for the first time on this market.
CONNECTED = "connected"
#: Authenticated and every active subscription re-sent after a drop (a GapEvent follows with the data).
RECONNECTED = "reconnected"
#: The socket dropped; we will reconnect (message says why). Backtrader's CONNBROKEN.
DISCONNECTED = "disconnected"
#: This market's connection ended for good (closed by us, auth failed, max_connections, too many attempts).
STOPPED = "stopped"
#: The server refused the key (fatal, no reconnect loop).
AUTH_FAILED = "auth_failed"
#: Another connection with the same key took this market's slot (fatal by default: we do not fight it).
MAX_CONNECTIONS = "max_connections"
#: The server dropped us for reading too slowly (we reconnect).
SLOW_CONSUMER = "slow_consumer"
#: The server dropped us deliberately, e.g. maintenance (we reconnect).
FORCE_DISCONNECT = "force_disconnect"
#: The server confirmed a subscribe / unsubscribe (message: ``subscribed to: Q.AAPL``).
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
#: The server reported an error, e.g. a rejected subscription (Backtrader's NOTSUBSCRIBED).
ERROR = "error"
#: A frame could not be parsed and was skipped (data may be missing around ``received``).
MALFORMED = "malformed"
#: This listener's queue was full and ``message`` events were dropped for it (never silent).
OVERFLOW = "overflow"

STATUSES: tuple[str, ...] = (
    CONNECTED, RECONNECTED, DISCONNECTED, STOPPED, AUTH_FAILED, MAX_CONNECTIONS, SLOW_CONSUMER,
    FORCE_DISCONNECT, SUBSCRIBED, UNSUBSCRIBED, ERROR, MALFORMED, OVERFLOW,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ms_to_datetime(ms: int | float | None) -> datetime | None:
    """Epoch milliseconds → tz-aware UTC datetime (exact: no float rounding)."""
    if ms is None:
        return None
    return _EPOCH + timedelta(milliseconds=int(ms))


def ns_to_datetime(ns: int | None) -> datetime | None:
    """Epoch nanoseconds → tz-aware UTC datetime (microsecond precision)."""
    if ns is None:
        return None
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and isnan(value) else value


class StreamEvent(NamedTuple):
    """One market-data event, whatever the wire channel (built only by :mod:`.protocol`).

    Numeric fields the event does not carry are ``nan`` (``0`` for the integer ``end_ms`` and
    ``exchange``), so a batch converts straight into float64 columns. Numbers are as sent (a stock
    trade size may be an ``int``) and were checked when decoded: prices finite and > 0 (a quote side
    may be 0: no bid/ask), sizes finite and >= 0, times integer epoch ms, symbols non-empty strings
    (see :data:`~massive_feeds.stream.protocol.FIELD_TYPES`). Stock quote sizes are round lots, as
    Massive sends them.

    Fields by kind:

    ========== =============================================================================
    trade      ``price``, ``size``, ``exchange``                     (T, XT)
    quote      ``bid``, ``ask``, ``bid_size``, ``ask_size``, ``exchange`` (Q, C, XQ; forex has no sizes)
    value      ``price`` = the index value                           (V)
    agg_*      ``open``, ``high``, ``low``, ``close``, ``volume``, ``vwap``; ``time_ms`` = window
               start, ``end_ms`` = window end                        (A/AM, CAS/CA, XAS/XA)
    ========== =============================================================================
    """

    kind: str
    symbol: str  # our ticker form: AAPL, O:SPY251219C00650000, I:SPX, C:EURUSD, X:BTCUSD
    time_ms: int  # provider timestamp, epoch ms UTC (aggregates: window start)
    received_ns: int  # local receive time of the frame, epoch ns UTC
    price: float
    size: float
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    end_ms: int  # aggregate window end (epoch ms), 0 otherwise
    exchange: int  # exchange id (trades; bid exchange for quotes), 0 when absent

    @property
    def time(self) -> datetime:
        """Provider timestamp as a tz-aware UTC datetime."""
        return _EPOCH + timedelta(milliseconds=self.time_ms)

    @property
    def received(self) -> datetime:
        """Local receive time as a tz-aware UTC datetime."""
        return _EPOCH + timedelta(microseconds=self.received_ns // 1000)

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def last_price(self) -> float:
        """The price this event reports a print at: trade price, index value or aggregate close."""
        return self.close if self.kind in (AGG_MINUTE, AGG_SECOND) else self.price

    def to_dict(self) -> dict[str, Any]:
        """Every field, ``nan`` → ``None``, plus ``timestamp``/``received`` datetimes."""
        out = {k: _clean(v) for k, v in zip(self._fields, self, strict=True)}
        out["timestamp"] = self.time
        out["received"] = self.received
        return out


class GapEvent(NamedTuple):
    """A window in which a market's connection was down, emitted once data flows again.

    It is published *before* the first event received after the reconnect, so a consumer that
    backfills ``[start_ms, end_ms]`` over REST (dropping bars at or before its last one) sees the
    timeline without a hole. Both bounds are provider event times (an aggregate counts at its window
    end); ``start_ms`` is ``None`` when nothing had been received before the drop.
    """

    kind: str  # always "gap"
    market: str  # stocks | options | indices | forex | crypto
    symbols: tuple[str, ...]  # everything subscribed on that market when it dropped
    start_ms: int | None  # provider time of the last event before the drop
    end_ms: int  # provider time of the first event after the reconnect
    disconnected_ns: int  # local wall clock of the drop, epoch ns UTC
    reconnected_ns: int  # local wall clock when the resubscribe completed
    reason: str  # why it dropped: force_disconnect, slow_consumer, stale, connection closed (1006) ...
    attempts: int  # connection attempts it took to get back

    @property
    def start(self) -> datetime | None:
        return ms_to_datetime(self.start_ms)

    @property
    def end(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.end_ms)

    @property
    def downtime(self) -> float:
        """Seconds between the drop and the resubscribe (local clock)."""
        return (self.reconnected_ns - self.disconnected_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        out = self._asdict()
        out["symbols"] = list(self.symbols)
        out["start"], out["end"] = self.start, self.end
        out["disconnected"] = ns_to_datetime(self.disconnected_ns)
        out["reconnected"] = ns_to_datetime(self.reconnected_ns)
        return out


class StatusEvent(NamedTuple):
    """A change of connection state or a server status; ``status`` is one of :data:`STATUSES`."""

    kind: str  # always "status"
    market: str  # "" for listener-level notices (overflow)
    status: str
    message: str
    received_ns: int

    @property
    def received(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.received_ns // 1000)

    def to_dict(self) -> dict[str, Any]:
        out = self._asdict()
        out["received"] = self.received
        return out


Event = StreamEvent | GapEvent | StatusEvent


def as_event(row: tuple[Any, ...]) -> StreamEvent:
    """A row (a plain tuple in :class:`StreamEvent` field order: a recorded event, a published row) as a
    :class:`StreamEvent`, not checked again.

    Plain tuples are what the garbage collector stops tracking, while every queued tuple-*subclass*
    instance would be rescanned by each collection; listeners receive ``StreamEvent`` objects made
    this way on their own thread."""
    return tuple.__new__(StreamEvent, row)


def as_events(rows: Iterable[tuple[Any, ...]]) -> Iterator[StreamEvent]:
    """Rows as :class:`StreamEvent` objects (see :func:`as_event`), lazily, made in C: ``map`` over
    ``tuple.__new__``, no Python call per row."""
    return map(tuple.__new__, repeat(StreamEvent), rows)

#: A ``StreamEvent`` with every numeric field missing; ``_replace`` it to build test events.
EMPTY_EVENT = StreamEvent("", "", 0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, 0)


def make_event(kind: str, symbol: str, time_ms: int, received_ns: int = 0, **fields: Any) -> StreamEvent:
    """Build a :class:`StreamEvent` by field name (tests, replay, synthetic sources; not the hot path)."""
    return EMPTY_EVENT._replace(kind=kind, symbol=symbol, time_ms=time_ms, received_ns=received_ns, **fields)
