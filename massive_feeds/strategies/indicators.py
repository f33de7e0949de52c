"""Backtrader indicators over the kernels of :mod:`massive_feeds.strategies.signals` (same numbers, bar by bar)."""

from __future__ import annotations

import backtrader as bt


class Rolling(bt.Indicator):
    """``kernel`` (a function of a trailing window, from :mod:`massive_feeds.strategies.signals`) over ``period`` bars.

    ``next`` and the vectorised ``once`` call the same kernel on the same floats, and so does
    :func:`massive_feeds.strategies.signals.rolling`: the three agree to the bit.
    """

    lines = ("value",)
    params = (("period", 20), ("kernel", None))
    plotinfo = {"subplot": False}

    def __init__(self) -> None:
        if self.p.kernel is None:
            raise ValueError("Rolling needs kernel=")
        self.addminperiod(self.p.period)

    def _plotlabel(self) -> list:
        return [getattr(self.p.kernel, "__name__", "kernel"), self.p.period]

    def next(self) -> None:
        self.lines.value[0] = self.p.kernel(self.data.get(size=self.p.period))

    def once(self, start: int, end: int) -> None:
        src, dst = self.data.array, self.lines.value.array
        period, kernel = self.p.period, self.p.kernel
        # With fewer bars than the period Backtrader still calls once() past the end: nothing to compute.
        for i in range(start, min(end, len(src), len(dst))):
            dst[i] = kernel(src[i - period + 1:i + 1])
