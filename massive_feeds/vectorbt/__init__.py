"""vectorbt adapter: ``from massive_feeds.vectorbt import MassiveData``."""

from .._optional import require

require("vectorbt", "The vectorbt adapter")

from .data import MassiveData

__all__ = ["MassiveData"]
