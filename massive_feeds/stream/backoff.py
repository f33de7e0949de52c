"""Reconnect pacing: exponential backoff with jitter and a cap."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a dropped connection comes back.

    The n-th consecutive failed attempt waits ``min(cap, initial * factor**n)`` scaled by a random
    factor in ``[1 - jitter, 1]`` (so many clients dropped together do not return in lockstep).
    The count resets once a connection has delivered data or stayed up ``healthy_after`` seconds, so
    a server that accepts and immediately kicks us is not hammered at the initial delay.

    Attributes:
        initial: first delay, seconds.
        factor: growth per consecutive failure.
        cap: longest delay, seconds.
        jitter: fraction of each delay that is randomised (0 = none, 1 = full jitter).
        max_attempts: consecutive failures before giving up (``None``: keep trying; the state is
            visible in stats and status events, never a silent stop).
        healthy_after: seconds a connection must stay up (without data) to reset the count.
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5
    max_attempts: int | None = None
    healthy_after: float = 10.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid {self!r}")

    def delay(self, failures: int) -> float:
        """Seconds to wait before attempt number ``failures`` (0-based count of failures so far)."""
        base = min(self.cap, self.initial * self.factor ** min(failures, 64))
        return base * (1.0 - self.jitter * random.random())

    def exhausted(self, failures: int) -> bool:
        return self.max_attempts is not None and failures >= self.max_attempts


#: The default policy: 0.5 s doubling to 30 s, half-jittered, forever.
DEFAULT_POLICY = ReconnectPolicy()
