"""Alias of :mod:`massive_feeds.strategies.paper` (see :mod:`strategies`): the very same module object."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("massive_feeds.strategies.paper")
