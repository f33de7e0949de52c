"""The shared shape of the built-in strategies: a signal rule, long-only positions, a signal log."""

from __future__ import annotations

import math

import backtrader as bt

from . import fills


class SignalStrategy(bt.Strategy):
    """Long-only strategy driven by a per-bar ``(entry, exit)`` rule (see :mod:`massive_feeds.strategies.signals`).

    Subclasses implement :meth:`signal`. Enter with ``stake`` × portfolio value (sized at the price
    the order will fill at: the close, or the ask under ``fills="quotes"``) when flat and the entry is true; close when long and the exit is true; never while an order is still working.
    Every bar's raw signals are kept in :attr:`signal_log` as ``(datetime number, entry, exit)``, so
    they can be compared with the vectorised twins.

    Params:
        stake: fraction of portfolio value committed per entry (fractional sizes; 0.95 leaves room
            for the next bar's open to gap up).
    """

    params = (("stake", 0.95),)

    def __init__(self) -> None:
        self._working: bt.Order | None = None
        self.signal_log: list[tuple[float, bool, bool]] = []

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.p._getkwargs().items())
        return f"{type(self).__name__}({params})"

    def signal(self) -> tuple[bool, bool]:
        """``(entry, exit)`` for the current bar."""
        raise NotImplementedError

    def next(self) -> None:
        entry, exit_ = self.signal()
        self.signal_log.append((self.data.datetime[0], entry, exit_))
        if self._working is not None:
            return
        if not self.position:
            price = fills.entry_price(self) if entry else math.nan
            if price == price:  # NaN: no quote yet to fill at (fills="quotes"), so no order either
                size = self.p.stake * self.broker.getvalue() / price
                self._working = self.buy(size=size)
        elif exit_:
            self._working = self.close()

    def notify_order(self, order: bt.Order) -> None:
        if order.status in (order.Completed, order.Canceled, order.Margin, order.Rejected, order.Expired):
            self._working = None
