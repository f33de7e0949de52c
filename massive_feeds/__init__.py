"""massive_feeds: Massive.com (ex-Polygon.io) market data for Backtrader and vectorbt.

The public API is importable from here; heavy parts load on first use::

    from massive_feeds import fetch_data, quota_status
    df = fetch_data(["AAPL", "MSFT"], "2024-01-02", "2024-01-05", interval="5m")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import *  # noqa: F401,F403 - the exception tree is part of the public API
from .errors import MassiveError

_EXPORTS = {
    "load_settings": "config", "Settings": "config", "Plan": "config", "PLANS": "config",
    "fetch_ohlcv_rest": "fetch", "fetch_data": "fetch", "fetch_intraday_data": "fetch",
    "quota_status": "quota", "print_free_tier_info": "quota", "get_quota": "quota",
    "save_dataset": "datasets", "load_dataset": "datasets", "list_datasets": "datasets",
    "stack_data": "datasets",
    "download_flat_file": "fetch",
    "fetch_ticks": "ticks", "fetch_ticks_rest": "ticks", "fetch_ticks_flat_file": "ticks",
    "ticks_to_bars": "record",
    "stream_quotes_websocket": "stream", "stream_trades_websocket": "stream", "stream_bars_websocket": "stream",
    "MassiveConnector": "stream", "stream_events": "stream",
    "StreamEvent": "stream", "GapEvent": "stream", "StatusEvent": "stream", "ReconnectPolicy": "stream",
    "load_store": "store", "ingest": "store",
    "WebSocketDataRecorder": "record",
    "RestClient": "rest",
    "BAR_COLUMNS": "schema", "normalize_symbol": "schema", "parse_interval": "schema",
    "fetch_splits": "splits", "apply_splits": "splits", "quality_report": "quality",
    "fetch_dividends": "dividends", "apply_dividends": "dividends",
    "Runtime": "runtime", "resolve_settings": "runtime",
    "to_wide": "layout",
    "roll_table": "futures_symbols",
    "verify_files": "storage",
}

__all__ = ["MassiveError", "__version__", "get_connector", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'massive_feeds' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def get_connector(name: str = "massive", *, shared: bool = True, **kwargs: Any) -> "MassiveConnector":
    """:func:`massive_feeds.stream.get_connector`, the ``"massive"`` connector built with its recorder
    (``WebSocketDataRecorder``) handed in, so that ``enable_recording`` records: the stream layer never imports
    the recording layer above it."""
    from .record import WebSocketDataRecorder
    from .stream import get_connector as stream_connector

    if name.lower() == "massive":
        kwargs.setdefault("recorder", WebSocketDataRecorder)
    return stream_connector(name, shared=shared, **kwargs)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # let type checkers and IDEs see the lazy names
    from .config import PLANS, Plan, Settings, load_settings  # noqa: F401
    from .datasets import list_datasets, load_dataset, save_dataset, stack_data  # noqa: F401
    from .fetch import download_flat_file, fetch_data, fetch_intraday_data, fetch_ohlcv_rest  # noqa: F401
    from .record import ticks_to_bars  # noqa: F401
    from .ticks import fetch_ticks, fetch_ticks_flat_file, fetch_ticks_rest  # noqa: F401
    from .quota import get_quota, print_free_tier_info, quota_status  # noqa: F401
    from .rest import RestClient  # noqa: F401
    from .runtime import Runtime, resolve_settings  # noqa: F401
    from .layout import to_wide  # noqa: F401
    from .futures_symbols import roll_table  # noqa: F401
    from .quality import quality_report  # noqa: F401
    from .schema import BAR_COLUMNS, normalize_symbol, parse_interval  # noqa: F401
    from .splits import apply_splits, fetch_splits  # noqa: F401
    from .stream import MassiveConnector  # noqa: F401
    from .dividends import apply_dividends, fetch_dividends  # noqa: F401
