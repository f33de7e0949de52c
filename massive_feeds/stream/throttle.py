"""Rate-limited logging for hot paths: a problem that repeats a million times is logged once per
interval with a count, instead of flooding the log (or being silenced)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class ThrottledLog:
    """Log ``msg % args`` at most once per ``interval`` seconds, reporting how many were suppressed.

    The first occurrence is always logged (with ``exc_info`` when given), so a user sees the
    traceback of the first callback failure.
    """

    __slots__ = ("logger", "level", "interval", "_next", "_suppressed", "_lock")

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval: float = 10.0) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, msg: str, *args: Any, exc_info: Any = None) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self.interval
        if suppressed:
            msg += " (%d similar messages suppressed in the last %.0fs)"
            args = (*args, suppressed, self.interval)
        self.logger.log(self.level, msg, *args, exc_info=exc_info)
