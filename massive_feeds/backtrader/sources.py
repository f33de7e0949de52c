"""What a :class:`~massive_feeds.backtrader.MassiveData` feed reads from: a *feed source*.

A feed source hands the feed, one item per :meth:`FeedSource.poll`:

* a :class:`~massive_feeds.backtrader.bars.BarBlock` — bars to put on the lines, in time order;
* a :class:`Notice` — a Backtrader data status (``DELAYED``, ``LIVE``, ``CONNBROKEN`` …);
* ``None`` — nothing yet (live only: the feed returns ``None`` from ``_load`` and cerebro keeps looping);
* :data:`END` — the source is finished (the feed returns ``False``).

Historical bars are one block then :data:`END` (:class:`FrameSource`). Live and recorded sessions are
:class:`~massive_feeds.backtrader.live.StreamSource` over an event source (the streaming connector or
a recording's replay). The feed itself owns the invariants every source gets for free: bars never go
backwards or repeat, notices are queued only on change, and no pandas is touched per bar.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, NamedTuple, Protocol

import pandas as pd

from .bars import BarBlock, BarFormat

log = logging.getLogger(__name__)


class Notice(NamedTuple):
    """A Backtrader data status to queue (``status`` is e.g. ``DataBase.LIVE``) with a message."""

    status: int
    message: str = ""


class _End:
    """Marker: the source has nothing more, ever."""

    _instance: "_End | None" = None

    def __new__(cls) -> "_End":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "END"


END = _End()

SourceItem = BarBlock | Notice | _End | None


def wall_ms() -> int:
    """The wall clock in epoch milliseconds UTC (the default clock of live sources)."""
    return time.time_ns() // 1_000_000


class FeedSource(Protocol):
    """The interface a feed reads from (see the module docstring).

    ``live`` decides ``islive()``: Backtrader then turns off preloading and ``runonce`` and calls
    ``poll`` with the feed's ``qcheck`` timeout whenever it has no bar queued.
    """

    live: bool

    def open(self, fmt: BarFormat) -> None:
        """Start producing (fetch, subscribe, open a recording); called from the feed's ``start``."""

    def poll(self, timeout: float) -> SourceItem:
        """The next item, waiting at most ``timeout`` seconds when there is none (live sources)."""

    def pending(self) -> bool:
        """True when ``poll`` would return something without waiting."""

    def close(self) -> None:
        """Release what ``open`` acquired; idempotent."""


class FrameSource:
    """Historical bars: ``load()`` returns one symbol's bars in the standard schema; served as one block.

    ``load`` runs in :meth:`open` (the feed's ``start``), not at construction, so building a feed
    costs nothing until cerebro runs it.
    """

    live = False

    def __init__(self, load: Callable[[], pd.DataFrame], description: str) -> None:
        self._load = load
        self.description = description
        self._items: list[SourceItem] = []
        self.frame: pd.DataFrame | None = None

    def __repr__(self) -> str:
        rows = None if self.frame is None else len(self.frame)
        return f"FrameSource({self.description}, rows={rows})"

    def open(self, fmt: BarFormat) -> None:
        self.frame = self._load()
        block = fmt.from_frame(self.frame, label="history")
        log.debug("%s: %d bars ready", self.description, len(block))
        self._items = [block, END]

    def poll(self, timeout: float = 0.0) -> SourceItem:
        return self._items.pop(0) if len(self._items) > 1 else END

    def pending(self) -> bool:
        return len(self._items) > 1

    def close(self) -> None:
        self._items = []
