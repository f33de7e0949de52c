"""Optional dependencies and the extras that provide them.

massive-feeds keeps its core small; Backtrader, vectorbt, boto3, websockets, Streamlit, Dask and the
sandbox's moto arrive with extras (``pip install "massive-feeds[all]"``). A missing one must reach the
user as one line naming the extra to install, never as a bare ``ModuleNotFoundError`` traceback:
:func:`require` turns an import into that, and :func:`as_missing_dependency` translates an
``ImportError`` raised anywhere below (for the CLI's single error handler).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: top-level module -> the extra of pyproject.toml that installs it
EXTRA_OF: dict[str, str] = {
    "backtrader": "backtrader",
    "matplotlib": "backtrader",
    "vectorbt": "vectorbt",
    "boto3": "flatfiles",
    "botocore": "flatfiles",
    "websockets": "live",
    "dask": "store",
    "distributed": "store",
    "streamlit": "ui",
    "plotly": "ui",
    "moto": "sandbox",
    "flask": "sandbox",
    "flask_cors": "sandbox",
}


def _message(module: str, extra: str, feature: str | None) -> str:
    what = f"{feature} needs {module!r}" if feature else f"the optional dependency {module!r} is not installed"
    return f"{what}: pip install \"massive-feeds[{extra}]\" (or \"massive-feeds[all]\")"


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise as_missing_dependency(exc, feature) or exc  # noqa: B904 - replaces the ImportError (kept as context)


def as_missing_dependency(exc: ImportError, feature: str | None = None) -> MissingDependencyError | None:
    """The one-line :class:`MissingDependencyError` for ``exc`` when it is about an optional dependency."""
    if isinstance(exc, MissingDependencyError):
        return exc
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    error = MissingDependencyError(_message(name, extra, feature))
    error.__cause__ = exc
    return error
