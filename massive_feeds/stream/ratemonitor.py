"""Messages per sliding minute, with a warning when the plan's messages-per-minute figure is reached.

Massive documents no message-rate cap (it disconnects slow consumers instead), so this only
*monitors*: nothing is dropped or delayed. The limit comes from the plan profile (100/minute on the
default "free" profile from the product document).
"""

from __future__ import annotations

import logging
from time import monotonic

log = logging.getLogger(__name__)


class RateMonitor:
    """Counts events in 60 one-second buckets. :meth:`add` is called from one thread (the stream
    loop); :meth:`count` may be called from any thread."""

    WINDOW = 60

    def __init__(self, limit: int | None, *, name: str = "stream", speed: float = 1.0) -> None:
        self.limit = limit
        self.speed = speed  # a sandbox clock faster than real time: that many market minutes a minute
        self.name = name
        self.total = 0
        self.warnings = 0
        self._counts = [0] * self.WINDOW
        self._stamps = [-1] * self.WINDOW  # the second each bucket holds
        self._running = 0  # sum of the buckets inside the window, kept incrementally
        self._second = -1
        self._quiet_until = -1

    def __repr__(self) -> str:
        return f"RateMonitor(limit={self.limit}, last_minute={self.count()})"

    def add(self, n: int) -> None:
        sec = int(monotonic())
        if sec != self._second:
            self._advance(sec)
        self._counts[sec % self.WINDOW] += n
        self._running += n
        self.total += n
        if self.limit is not None and self._running >= self.limit and sec >= self._quiet_until:
            self._quiet_until = sec + self.WINDOW  # warn at most once a minute
            self.warnings += 1
            if self.speed > 1:  # the sandbox's fast clock, not the symbols, makes the rate
                log.warning(
                    "%s: %d messages in the last minute reached the plan's %d messages/minute because the sandbox's "
                    "clock runs at %gx real time (%g market minutes a minute); a real feed of these symbols sends "
                    "about %d. Nothing is dropped.", self.name, self._running, self.limit, self.speed, self.speed,
                    round(self._running / self.speed))
                return
            log.warning(
                "%s: %d messages in the last minute reached the plan's %d messages/minute. Massive itself "
                "documents no such cap; nothing is dropped, but on a capped plan expect throttling. "
                "Stream fewer symbols or kinds to stay under it.", self.name, self._running, self.limit)

    def _advance(self, sec: int) -> None:
        # Each second reuses slot s % 60, whose old content (a minute or more ago) leaves the window.
        for s in range(max(self._second + 1, sec - self.WINDOW + 1), sec + 1):
            i = s % self.WINDOW
            self._running -= self._counts[i]
            self._counts[i] = 0
            self._stamps[i] = s
        self._second = sec

    def count(self) -> int:
        """Events in the last 60 seconds."""
        now = int(monotonic())
        return sum(c for c, s in zip(list(self._counts), list(self._stamps), strict=True) if 0 <= now - s < self.WINDOW)
