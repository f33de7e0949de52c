"""Spread capture (market-making style): buy prints at the bid of a wide quote, sell at the ask."""

from __future__ import annotations

import math

from . import signals
from .base import SignalStrategy


class SpreadCapture(SignalStrategy):
    """Quote-driven: enter when the bar's last print sits in the bid side of the quote
    (position ≤ −``entry_pos``, where −1 is the bid and +1 the ask) and the spread is at least
    ``min_spread_bps``; exit when prints reach the ask side (position ≥ ``exit_pos``).

    Uses the feed's ``bid``/``ask`` lines when it has them (``MassiveQuoteData``: recorded or live
    sessions); on bars without a quote the bar's low/high stand in for bid/ask, so it also runs on
    plain history. Market orders (or ``cheat_on_close``) only approximate passive fills: treat its
    results as an upper bound on what queue position would allow.

    Vectorised twin: :func:`massive_feeds.strategies.signals.spread_capture_signals`.
    """

    params = (("min_spread_bps", 1.0), ("entry_pos", 0.5), ("exit_pos", 0.5))

    def __init__(self) -> None:
        super().__init__()
        if not -self.p.entry_pos < self.p.exit_pos:
            raise ValueError("exit_pos must be above -entry_pos (else entries and exits overlap)")
        aliases = self.data.lines.getlinealiases()
        self._quotes = (self.data.bid, self.data.ask) if "bid" in aliases and "ask" in aliases else None

    def signal(self) -> tuple[bool, bool]:
        d = self.data
        bid, ask = (self._quotes[0][0], self._quotes[1][0]) if self._quotes else (math.nan, math.nan)
        pos, spread_bps = signals.quote_position(d.close[0], d.high[0], d.low[0], bid, ask)
        return signals.spread_rule(pos, spread_bps, self.p.min_spread_bps, self.p.entry_pos, self.p.exit_pos)
