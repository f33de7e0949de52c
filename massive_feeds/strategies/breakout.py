"""Momentum breakout: buy new highs that come with positive momentum, sell new lows (Donchian)."""

from __future__ import annotations

from . import signals
from .base import SignalStrategy
from .indicators import Rolling


class MomentumBreakout(SignalStrategy):
    """Enter when the close breaks above the highest high of the previous ``period`` bars and the
    ``period``-bar return exceeds ``min_momentum``; exit when it breaks below the lowest low of the
    previous ``exit_period`` bars.

    Vectorised twin: :func:`massive_feeds.strategies.signals.breakout_signals`.
    """

    params = (("period", 20), ("exit_period", 10), ("min_momentum", 0.0))

    def __init__(self) -> None:
        super().__init__()
        self.highest = Rolling(self.data.high, period=self.p.period, kernel=signals.highest)
        self.lowest = Rolling(self.data.low, period=self.p.exit_period, kernel=signals.lowest)
        self.momentum = Rolling(self.data.close, period=self.p.period + 1, kernel=signals.momentum)
        self.momentum.plotinfo.subplot = True

    def signal(self) -> tuple[bool, bool]:
        return signals.breakout_rule(self.data.close[0], self.highest[-1], self.lowest[-1], self.momentum[0],
                                     self.p.min_momentum)
