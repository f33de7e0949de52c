"""The repository's ``strategies/`` folder: an alias of :mod:`massive_feeds.strategies`, where the strategies
live and how the wheel ships them (a top-level ``strategies`` package collided with any user folder of that
name). ``from strategies import SmaCross`` and ``import strategies.validation`` keep working in a checkout;
installed code should import ``massive_feeds.strategies``. Each submodule file here hands over the same module
object, so classes and registries are never duplicated."""

from massive_feeds.strategies import *  # noqa: F401,F403 - the alias re-exports the package
from massive_feeds.strategies import STRATEGIES, __all__  # noqa: F401
