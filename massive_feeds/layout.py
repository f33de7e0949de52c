"""Bar-frame layouts: the standard *long* frame (one row per symbol and bar) and the *wide* frame
yfinance and vectorbt users expect.

Wide convention (as ``yfinance.download(["AAPL", "MSFT"])`` returns it):

* index: the bar times, a tz-aware UTC ``DatetimeIndex`` named ``timestamp``, the union of every
  symbol's bars (a symbol without a bar at a time has ``NaN`` there — nothing is filled in);
* columns: a ``MultiIndex`` of ``(field, symbol)``, fields capitalised as in yfinance and vectorbt
  (``Open``, ``High``, ``Low``, ``Close``, ``Volume``, ``VWAP``, ``Trade Count``; quote columns
  ``Bid``/``Ask``/``Mid``/``Spread`` when present), so ``wide["Close"]`` is one column per symbol —
  even for a single symbol;
* ``to_wide(bars, field="close")`` gives that one field directly: one column per symbol.

The frame's ``attrs`` (method, interval, …) are kept.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from .errors import InvalidInputError

Layout = Literal["long", "wide"]
#: standard bar columns → wide field names (yfinance / vectorbt spelling), in output order.
WIDE_FIELDS: dict[str, str] = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume",
                               "vwap": "VWAP", "transactions": "Trade Count", "bid": "Bid", "ask": "Ask",
                               "mid": "Mid", "spread": "Spread"}


def to_wide(bars: pd.DataFrame, field: str | None = None) -> pd.DataFrame:
    """The long bar frame ``bars`` in the wide layout (see the module docstring).

    Args:
        bars: a frame in the standard bar schema (``timestamp``, ``symbol``, ``open`` … ``close`` …).
        field: one field only (``"close"`` or ``"Close"``): columns are then the symbols.

    Raises:
        InvalidInputError: ``bars`` lacks ``timestamp``/``symbol``, or ``field`` is not one of its columns.
    """
    if not {"timestamp", "symbol"} <= set(bars.columns):
        raise InvalidInputError("to_wide needs a bar frame with 'timestamp' and 'symbol' columns")
    present = [c for c in WIDE_FIELDS if c in bars.columns]
    symbols = list(dict.fromkeys(bars["symbol"]))
    if field is not None:
        key = {v.lower(): k for k, v in WIDE_FIELDS.items()}.get(field.lower(), field.lower())
        if key not in present:
            raise InvalidInputError(f"to_wide: no field {field!r}; the bars have {[WIDE_FIELDS[c] for c in present]}")
        out = bars.pivot(index="timestamp", columns="symbol", values=key).reindex(columns=symbols)
        out.columns = pd.Index(symbols, name="symbol")
    else:
        out = bars.pivot(index="timestamp", columns="symbol", values=present)
        out = out.reindex(columns=pd.MultiIndex.from_product([present, symbols]))
        out.columns = pd.MultiIndex.from_tuples([(WIDE_FIELDS[f], s) for f, s in out.columns],
                                                names=["field", "symbol"])
    out.index = pd.DatetimeIndex(out.index, name="timestamp")
    out = out.sort_index()
    out.attrs = dict(bars.attrs)
    return out


def apply_layout(bars: pd.DataFrame, layout: str) -> pd.DataFrame:
    """``bars`` as they are (``"long"``) or :func:`to_wide` (``"wide"``).

    Raises:
        InvalidInputError: any other layout.
    """
    if layout == "long":
        return bars
    if layout == "wide":
        return to_wide(bars)
    raise InvalidInputError(f"Invalid layout {layout!r}; use 'long' (one row per symbol and bar) or 'wide'")
