"""Ready-made strategies for Backtrader, with vectorised twins of their signals.

* :class:`SmaCross` — fast SMA crosses the slow SMA (twin: :func:`signals.sma_cross_signals`).
* :class:`MeanReversion` — close ``entry_z`` standard deviations below its mean, out at ``exit_z``
  (:func:`signals.mean_reversion_signals`).
* :class:`MomentumBreakout` — close above the prior N-bar high with positive momentum, out below the
  prior M-bar low (:func:`signals.breakout_signals`).
* :class:`SpreadCapture` — prints at the bid of a wide quote, out at the ask; reads ``bid``/``ask``
  lines when the feed has them (:func:`signals.spread_capture_signals`).

All are long-only :class:`SignalStrategy` subclasses whose per-bar entries/exits equal their twins'
bit for bit (same kernels, see :mod:`massive_feeds.strategies.signals`). :func:`run_strategy` runs one on a feed::

    from massive_feeds.strategies import SmaCross, run_strategy
    result = run_strategy(SmaCross, MassiveData(dataname="AAPL", ...), cash=10_000, fast=5, slow=20)
    print(result); result.save_equity_png("out/sma.png")
"""

from typing import Iterable

from massive_feeds.errors import InvalidInputError

from .base import SignalStrategy
from .breakout import MomentumBreakout
from .mean_reversion import MeanReversion
from .runner import BacktestResult, run_strategy
from .signals import Signals
from .sma_cross import SmaCross
from .spread_capture import SpreadCapture

#: Name → class, for CLIs and validation tables.
STRATEGIES: dict[str, type[SignalStrategy]] = {
    "sma_cross": SmaCross,
    "mean_reversion": MeanReversion,
    "breakout": MomentumBreakout,
    "spread_capture": SpreadCapture,
}


def resolve_strategies(names: Iterable[str] | None) -> dict[str, type[SignalStrategy]]:
    """Name → class for ``names`` (all when empty), or an :class:`InvalidInputError` naming the available ones."""
    chosen = list(names) if names else list(STRATEGIES)
    unknown = [n for n in chosen if n not in STRATEGIES]
    if unknown:
        raise InvalidInputError(f"Unknown strategies {unknown}; available: {', '.join(STRATEGIES)}")
    return {n: STRATEGIES[n] for n in chosen}


__all__ = ["STRATEGIES", "BacktestResult", "resolve_strategies", "MeanReversion", "MomentumBreakout", "SignalStrategy", "Signals",
           "SmaCross", "SpreadCapture", "run_strategy"]
