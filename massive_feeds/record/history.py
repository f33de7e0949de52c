"""Historical ticks through the same listener interface as the live stream and recordings.

:class:`TickReplaySource` is a :class:`~massive_feeds.record.replay.RecordingSource` whose events come
from a tick frame (``fetch_ticks`` over REST, flat files or the store) instead of a recording folder:
each tick becomes the very :class:`~massive_feeds.stream.events.StreamEvent` the WebSocket would have
delivered (times in ms, quote exchange = the bid exchange), published in the frame's order, paced by
``speed`` like a recording, and ended by a ``stopped`` status (``replay finished``). A feed reading it
goes through the live state machine: CONNECTED → LIVE → DISCONNECTED.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from ..stream.events import EMPTY_EVENT, as_event
from ..tickschema import TICK_COLUMNS
from .replay import RecordingSource

log = logging.getLogger(__name__)

_EVENT_HEAD = ("kind", "symbol", "time_ms", "received_ns", "price", "size", "bid", "ask", "bid_size", "ask_size")
_TAIL = tuple(EMPTY_EVENT[10:17])  # open, high, low, close, volume, vwap (NaN) and end_ms (0)


def _bounds(time_ms: np.ndarray, batch: int, by_time: bool) -> Iterator[tuple[int, int]]:
    n = len(time_ms)
    if not by_time:
        yield from ((lo, min(n, lo + batch)) for lo in range(0, n, batch))
        return
    cuts = np.flatnonzero(np.diff(time_ms)) + 1  # one batch per provider millisecond, as the wire frames them
    edges = np.r_[0, cuts, n].tolist()
    yield from zip(edges[:-1], edges[1:])


def tick_events(ticks: pd.DataFrame, batch: int = 10_000, by_time: bool = False) -> Iterator[list[Any]]:
    """The rows of a tick frame as batches of :class:`StreamEvent` (the recorder's field values):
    ``batch`` events at a time, or (``by_time``) one batch per distinct millisecond, for paced replays."""
    cols = [ticks[c].to_numpy() for c in _EVENT_HEAD]
    exchange = ticks["exchange"].to_numpy()
    tail = _TAIL
    for lo, hi in _bounds(ticks["time_ms"].to_numpy(), batch, by_time):
        parts = [c[lo:hi].tolist() for c in cols]
        yield [as_event((k, s, t, r, p, z, b, a, bz, az, *tail, x))
               for k, s, t, r, p, z, b, a, bz, az, x in zip(*parts, exchange[lo:hi].tolist(), strict=True)]


class TickReplaySource(RecordingSource):
    """An event source replaying a tick frame (see the module docstring).

    Args:
        ticks: a frame in the tick schema (:mod:`massive_feeds.tickschema`), any symbols and kinds.
        speed: ``None`` = as fast as possible, ``2.0`` = twice real time (from the ticks' own times).
        description: what the ticks are (for the repr and logs), e.g. ``"AAPL quotes via rest"``.
    """

    def __init__(self, ticks: pd.DataFrame, speed: float | None = None, description: str = "ticks",
                 batch: int | None = None) -> None:
        missing = [c for c in TICK_COLUMNS if c not in ticks.columns]
        if missing:
            raise ValueError(f"not a tick frame (missing {', '.join(missing)})")
        self._setup(speed)
        self.ticks = ticks
        self.description = description
        self.batch = batch or 10_000

    def __repr__(self) -> str:
        return (f"TickReplaySource({self.description}, ticks={len(self.ticks)}, speed={self.speed}, "
                f"published={self.published})")

    def _batches(self) -> Iterable[list[Any]]:
        # paced replays publish one batch per millisecond: a batch goes out at its events' time
        return tick_events(self.ticks, self.batch, by_time=self.speed is not None)


__all__ = ["TickReplaySource", "tick_events"]
