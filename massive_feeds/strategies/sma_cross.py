"""SMA crossover: long while the fast simple moving average is above the slow one."""

from __future__ import annotations

from . import signals
from .base import SignalStrategy
from .indicators import Rolling


class SmaCross(SignalStrategy):
    """Enter when the ``fast`` SMA crosses above the ``slow`` SMA; exit when it crosses below.

    Vectorised twin: :func:`massive_feeds.strategies.signals.sma_cross_signals`.
    """

    params = (("fast", 10), ("slow", 30))

    def __init__(self) -> None:
        super().__init__()
        if not 0 < self.p.fast < self.p.slow:
            raise ValueError(f"need 0 < fast < slow, got fast={self.p.fast}, slow={self.p.slow}")
        self.fast = Rolling(self.data.close, period=self.p.fast, kernel=signals.mean)
        self.slow = Rolling(self.data.close, period=self.p.slow, kernel=signals.mean)

    def signal(self) -> tuple[bool, bool]:
        return signals.cross_rule(self.fast[0] - self.slow[0], self.fast[-1] - self.slow[-1])
