"""vectorbt adapter: ``from massive_feeds.vectorbt import MassiveData``."""

from .._optional import require

require("vectorbt", "The vectorbt adapter")

from .compiled import cache_signal_simulation
from .data import MassiveData

cache_signal_simulation()  # from_signals compiles once per installation (see .compiled)

__all__ = ["MassiveData"]
