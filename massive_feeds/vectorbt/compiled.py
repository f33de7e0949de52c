"""vectorbt's signal simulation compiled once per installation, not once per process.

vectorbt 1.2 declares its numba kernels with ``cache=True`` except ``simulate_from_signals_nb``, the one
``vbt.Portfolio.from_signals`` runs: every process that backtested on vectorbt (each ``massive-feeds
backtest``/``validate``, each notebook kernel) compiled it again, 5-6 s of CPU before the first result.
Turning numba's on-disk cache on for it keeps the same machine code beside vectorbt's other cached
kernels (or in numba's per-user cache folder when the installation is read-only).
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def cache_signal_simulation() -> bool:
    """Switch numba's on-disk cache on for ``simulate_from_signals_nb``; returns whether it is on.

    Where numba has no writable cache folder it compiles in memory as before (logged at debug level):
    the results are the same either way, only the start-up time differs.
    """
    from vectorbt.portfolio import nb

    dispatcher = getattr(nb, "simulate_from_signals_nb", None)
    enable = getattr(dispatcher, "enable_caching", None)
    if enable is None:  # another vectorbt layout: nothing to switch on
        return False
    try:
        enable()
    except RuntimeError as exc:  # numba: "cannot cache function …: no locator available"
        log.debug("vectorbt's signal simulation compiles in memory: %s", exc)
        return False
    return True
