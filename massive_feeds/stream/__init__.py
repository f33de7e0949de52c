"""Live streaming from Massive's WebSocket API.

Layers (each its own module):

* :mod:`.events` — the normalised records: :class:`StreamEvent`, :class:`GapEvent`, :class:`StatusEvent`.
* :mod:`.protocol` — wire channels and field maps, control messages, the frame parser.
* :mod:`.connection` — one self-healing socket per market (auth, resubscribe, backoff, stale detection, gaps).
* :mod:`.client` — symbols → subscriptions across markets, the symbol-stream cap.
* :mod:`.hub` — fan-out to listeners on worker threads with bounded, never-silent queues.
* :mod:`.connector` — :class:`MassiveConnector` (thread-safe, background loop) and :func:`get_connector`.
* :mod:`.api` — ``async for`` iterators: :func:`stream_quotes_websocket` & co.

Consumers that need every event (the recorder, the Backtrader live feed) use
``connector.add_listener(fn)``; a replay source implements the same :class:`EventSource` protocol.
"""

from .api import stream_bars_websocket, stream_events, stream_quotes_websocket, stream_trades_websocket
from .backoff import ReconnectPolicy
from .client import StreamClient
from .connection import MarketConnection
from .connector import MassiveConnector, get_connector, register_connector
from .events import (
    AGG_MINUTE,
    AGG_SECOND,
    DATA_KINDS,
    GAP,
    QUOTE,
    STATUS,
    STATUSES,
    TRADE,
    VALUE,
    Event,
    GapEvent,
    StatusEvent,
    StreamEvent,
    make_event,
)
from .hub import EventHub, EventSource, Listener

__all__ = [
    "AGG_MINUTE", "AGG_SECOND", "DATA_KINDS", "GAP", "QUOTE", "STATUS", "STATUSES", "TRADE", "VALUE",
    "Event", "EventHub", "EventSource", "GapEvent", "Listener", "MarketConnection", "MassiveConnector",
    "ReconnectPolicy", "StatusEvent", "StreamClient", "StreamEvent", "get_connector", "make_event",
    "register_connector", "stream_bars_websocket", "stream_events", "stream_quotes_websocket",
    "stream_trades_websocket",
]
