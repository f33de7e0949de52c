"""A live continuous futures feed (``MassiveData(dataname="ES.c.0", historical=False)``) that rolls.

:class:`RollingSource` streams the contract the series holds in the current session through one
:class:`~massive_feeds.backtrader.live.StreamSource`. When the stream's market clock enters a session whose
held contract differs (the calendar or volume rule of :func:`massive_feeds.futures.held_contract`), it
closes that source (unsubscribing the old contract), queues a ``CONNECTED`` notice saying
``rolled ESU6 -> ESZ6`` for the strategy's ``notify_data``, and opens a source on the new contract, which
backfills that contract's bars over REST from the open of the session it is held in up to where its stream
starts (as the feed does after a reconnect), so the strategy sees the new session from its first bar however
late the roll is noticed. Prices are the held contract's own (``roll_adjust="none"``), as a trader holding it sees them.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import deque
from datetime import date, datetime, time, timedelta
from typing import Callable

import backtrader as bt
import numpy as np
import pandas as pd

from ..futures_symbols import CHICAGO
from .bars import BarBlock, BarFormat, bt_datenums
from .sources import FeedSource, Notice, SourceItem

log = logging.getLogger(__name__)


def session_of(ms: int) -> date:
    """The CME session (its ``session_end_date``) an epoch-ms instant belongs to: Chicago time + 7 hours."""
    local = pd.Timestamp(ms, unit="ms", tz="UTC").tz_convert("America/Chicago").tz_localize(None)
    return (local + timedelta(hours=7)).date()


class RollingSource:
    """See the module docstring. ``make(contract, rolled_into)`` builds the stream source of a contract
    (``rolled_into``: None for the initial one, else the session it is rolled into, whose bars it backfills);
    ``resolve(session)`` names the contract held in a session."""

    live = True

    def __init__(self, ticker: str, contract: str, make: Callable[[str, date | None], FeedSource],
                 resolve: Callable[[date], str], session: date) -> None:
        self.ticker, self.contract = ticker, contract
        self._make, self._resolve, self._session = make, resolve, session
        self._session_before = session
        self._source: FeedSource | None = None
        self._fmt: BarFormat | None = None
        self._queued: deque[SourceItem] = deque()
        self.rolls: list[tuple[date, str, str]] = []

    def __repr__(self) -> str:
        return f"RollingSource({self.ticker} holding {self.contract}, rolls={self.rolls})"

    def open(self, fmt: BarFormat) -> None:
        self._fmt = fmt
        self._source = self._make(self.contract, None)
        self._source.open(fmt)

    def poll(self, timeout: float) -> SourceItem:
        self._roll_if_due()  # first: a bar of the old contract must not open the new session
        if self._queued:
            return self._queued.popleft()
        assert self._source is not None
        item = self._source.poll(timeout)
        if isinstance(item, BarBlock) and len(item) and self._fmt is not None:
            item = self._cut(item)
        return item

    def _session_close_num(self, session: date) -> float:
        """The Backtrader date number of a session's close (16:00 Chicago), in the feed's stamping."""
        assert self._fmt is not None
        close = pd.Timestamp(datetime.combine(session, time(16), CHICAGO)).tz_convert("UTC")
        return float(bt_datenums(np.array([close.value + self._fmt.offset_ns], dtype=np.int64))[0])

    def _cut(self, block: BarBlock) -> SourceItem:
        """Events arrive in batches: a block of the old contract may reach into a later session. If that
        session holds another contract, its bars are dropped and the roll happens now."""
        assert self._fmt is not None
        cut = bisect_left(block.dt, self._session_close_num(self._session))
        if cut == len(block.dt):
            return block
        later = pd.Timestamp(bt.num2date(block.dt[cut]), tz="UTC") - pd.Timedelta(self._fmt.offset_ns, unit="ns")
        session = session_of(int(later.value // 1_000_000))
        if self._resolve(session) == self.contract:  # no roll there: asked once per session
            self._session_before, self._session = self._session, session
            return block
        self._roll_if_due(force_ms=int(later.value // 1_000_000))
        kept = BarBlock(block.dt[:cut], block.names, tuple(v[:cut] for v in block.values), block.label)
        return kept if len(kept) else (self._queued.popleft() if self._queued else None)

    def _roll_if_due(self, force_ms: int | None = None) -> None:
        now = force_ms if force_ms is not None else getattr(self._source, "now_ms", lambda: None)()
        if now is None:
            return
        session = session_of(int(now))
        if session == self._session:
            return
        self._session_before, self._session = self._session, session
        held = self._resolve(session)
        if held == self.contract:
            return
        old, self.contract = self.contract, held
        log.info("live %s: session %s rolls %s -> %s", self.ticker, session, old, held)
        assert self._source is not None and self._fmt is not None
        closing = self._session_close_num(self._session_before) if self._fmt is not None else None
        while self._source.pending():  # the old contract's finished bars of its sessions still go out
            item = self._source.poll(0.0)
            if isinstance(item, BarBlock) and closing is not None:
                cut = bisect_left(item.dt, closing)
                item = BarBlock(item.dt[:cut], item.names, tuple(v[:cut] for v in item.values), item.label)
                item = item if len(item) else None
            if item is not None:
                self._queued.append(item)
        self._source.close()
        self.rolls.append((session, old, held))
        self._queued.append(Notice(bt.feed.DataBase.CONNECTED, f"rolled {old} -> {held}"))
        self._source = self._make(held, session)
        self._source.open(self._fmt)

    def pending(self) -> bool:
        return bool(self._queued) or (self._source is not None and self._source.pending())

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
