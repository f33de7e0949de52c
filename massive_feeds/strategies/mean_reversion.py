"""Mean reversion: buy closes stretched below their moving mean (Bollinger-style z-score)."""

from __future__ import annotations

from . import signals
from .base import SignalStrategy
from .indicators import Rolling


class MeanReversion(SignalStrategy):
    """Enter when the close is ``entry_z`` standard deviations below its ``period`` mean (the lower
    Bollinger band for ``entry_z`` = 2); exit once the z-score is back to ``exit_z`` (0: the mean).

    Vectorised twin: :func:`massive_feeds.strategies.signals.mean_reversion_signals`.
    """

    params = (("period", 20), ("entry_z", 2.0), ("exit_z", 0.0))

    def __init__(self) -> None:
        super().__init__()
        if not -self.p.entry_z < self.p.exit_z:
            raise ValueError("exit_z must be above -entry_z (else entries and exits overlap)")
        self.z = Rolling(self.data.close, period=self.p.period, kernel=signals.zscore)
        self.z.plotinfo.subplot = True

    def signal(self) -> tuple[bool, bool]:
        return signals.zscore_rule(self.z[0], self.p.entry_z, self.p.exit_z)
