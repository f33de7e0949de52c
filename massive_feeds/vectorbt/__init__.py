"""vectorbt adapter: ``from massive_feeds.vectorbt import MassiveData``."""

from .data import MassiveData

__all__ = ["MassiveData"]
