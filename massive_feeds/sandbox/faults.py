"""Fault injection shared by the sandbox servers.

Two ways to inject: deterministic, by queueing the exact outcomes of the next requests
(``faults.queue(503, 503, "drop")``), or random, by rates drawn from a seeded generator. Outcomes:
an HTTP status (429, 500, 502, 503, …), ``"drop"`` (close the socket without answering),
``"malformed"`` (200 with a body that is not JSON), ``"truncate"`` (200 with half a body).
A third, by path: ``faults.unanswered.add("/stocks/v1/")`` makes every request whose path starts with it
answer 404 ``NOT_FOUND``, as a server that does not have an endpoint (yet) does.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field

Outcome = int | str


@dataclass
class Faults:
    seed: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    latency: float = 0.0
    retry_after: float | None = None  # seconds sent in Retry-After on 429s, when set
    repeat_cursor: bool = False  # every next_url carries the same cursor (a looping server)
    unanswered: set[str] = field(default_factory=set)  # path prefixes answered 404, as endpoints the server lacks
    _queue: deque[Outcome] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def queue(self, *outcomes: Outcome) -> None:
        """Make the next requests end in these outcomes, in order."""
        with self._lock:
            self._queue.extend(outcomes)

    def next_outcome(self) -> Outcome | None:
        """The fault for the request being served now, or ``None`` to serve it normally."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            roll = self._rng.random()
        if roll < self.drop_rate:
            return "drop"
        if roll < self.drop_rate + self.malformed_rate:
            return "malformed"
        if roll < self.drop_rate + self.malformed_rate + self.error_rate:
            return self.error_status
        return None

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
        self.error_rate = self.drop_rate = self.malformed_rate = self.latency = 0.0
        self.retry_after = None
        self.repeat_cursor = False
        self.unanswered.clear()

    def answers(self, path: str) -> bool:
        """False for a path the server is told not to have (:attr:`unanswered`)."""
        return not any(path.startswith(prefix) for prefix in self.unanswered)
