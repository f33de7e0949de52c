"""The tick schema: trades and quotes as one typed frame, the same columns a recording's events have.

Every tick source (REST ``/v3/trades`` ``/v3/quotes``, the ``trades_v1``/``quotes_v1`` flat files, the
history store) ends in :func:`finalize_ticks`, so a tick frame is the same whichever path built it, and
its event columns are exactly those of :meth:`massive_feeds.record.RecordingReader.events` (the
recorder's frame of :class:`~massive_feeds.stream.events.StreamEvent` rows): a recorded session, a REST
fetch and a flat-file fetch of the same window compare column for column.

========================  =============================================================================
``timestamp``             SIP timestamp, ``datetime64[ns, UTC]`` (nanoseconds as the service sends them)
``symbol``                our ticker form (``AAPL``, ``O:…``, ``C:EURUSD``, ``X:BTCUSD``)
``kind``                  ``"trade"`` or ``"quote"`` (the recorder's ``kind``)
``time_ms``               ``timestamp`` in epoch milliseconds (what the WebSocket sends; the recorder's)
``received_ns``           history has no local receive time: the SIP timestamp in ns
``price`` ``size``        trades (NaN on quotes)
``bid`` ``ask``           quotes (NaN on trades); ``bid_size``/``ask_size`` as the service sends them
``bid_size`` ``ask_size`` (stock quote sizes are round lots, as on the WebSocket)
``exchange``              trade exchange; the *bid* exchange for quotes (as the recorder's events)
``ask_exchange``          quotes' ask exchange (0 on trades)
``sequence_number``       the service's per-ticker sequence number (0 when absent)
``conditions``            condition codes joined by ``,`` (``""`` for none)
``id``                    trade id (``""`` on quotes)
``tape``                  1 NYSE, 2 AMEX, 3 Nasdaq (0 when absent)
========================  =============================================================================

Order: by ``timestamp``, then ``symbol``, then ``sequence_number``, trades before quotes on a tie
(the order the WebSocket delivers a print and the quote it moved). Duplicates — the same
(symbol, kind, timestamp, sequence_number, values) seen twice, e.g. where two pages or days overlap —
are dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import InvalidInputError
from .schema import asset_class

TickKind = Literal["trades", "quotes"]
TICK_KINDS: tuple[str, ...] = ("trades", "quotes")
#: ``fetch_ticks`` kind → the recorder's event kind
EVENT_KIND = {"trades": "trade", "quotes": "quote"}

TICK_COLUMNS: tuple[str, ...] = (
    "timestamp", "symbol", "kind", "time_ms", "received_ns", "price", "size", "bid", "ask", "bid_size",
    "ask_size", "exchange", "ask_exchange", "sequence_number", "conditions", "id", "tape",
)
#: the columns a tick frame shares with a recording's event frame
EVENT_COLUMNS: tuple[str, ...] = ("kind", "symbol", "time_ms", "price", "size", "bid", "ask", "bid_size",
                                  "ask_size", "exchange")
FLOAT_TICK_COLUMNS = ("price", "size", "bid", "ask", "bid_size", "ask_size")
INT_TICK_COLUMNS = ("time_ms", "received_ns", "exchange", "ask_exchange", "sequence_number", "tape")
STR_TICK_COLUMNS = ("conditions", "id")

#: Which tick kinds the service has per asset class (massive-api-facts §3: forex has quotes only,
#: crypto trades only; indices have values, not ticks).
KINDS_BY_ASSET: dict[str, tuple[str, ...]] = {
    "stocks": ("trades", "quotes"), "options": ("trades", "quotes"), "forex": ("quotes",),
    "crypto": ("trades",), "indices": (),
}


def validate_kind(kind: str) -> str:
    """``"trades"``/``"quotes"`` (singular accepted) or an :class:`InvalidInputError`."""
    text = str(kind).strip().lower()
    text = {"trade": "trades", "quote": "quotes"}.get(text, text)
    if text not in TICK_KINDS:
        raise InvalidInputError(f"Invalid tick kind {kind!r}; use 'trades' or 'quotes'")
    return text


def check_kind_exists(ticker: str, kind: str) -> None:
    """Raise :class:`InvalidInputError` when Massive has no ``kind`` ticks for ``ticker``'s asset class."""
    asset = asset_class(ticker)
    have = KINDS_BY_ASSET.get(asset, ())
    if kind not in have:
        what = ", ".join(have) if have else "no tick data (index values only)"
        raise InvalidInputError(f"Massive has no {kind} for {ticker} ({asset}: {what})")


def empty_ticks() -> pd.DataFrame:
    """A zero-row tick frame with every column typed."""
    return finalize_ticks(pd.DataFrame({"timestamp": pd.Series([], dtype="int64"), "symbol": [], "kind": []}))


def finalize_ticks(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce a frame to the tick schema: every column present and typed, sorted, de-duplicated.

    ``timestamp`` may be epoch nanoseconds (int) or datetimes; missing numeric columns become NaN / 0,
    missing text columns ``""``. ``time_ms`` and ``received_ns`` are always derived from ``timestamp``.
    """
    n = len(df)
    ts = df["timestamp"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype) or ts.dtype.kind == "M":
        ts_ns = pd.to_datetime(ts, utc=True).to_numpy(dtype="datetime64[ns]").view("int64")
    else:
        ts_ns = pd.to_numeric(ts).to_numpy(dtype="int64")
    cols: dict[str, Any] = {"timestamp": ts_ns,
                            "symbol": df["symbol"].astype(str).to_numpy(dtype=object) if n else np.empty(0, object),
                            "kind": df["kind"].astype(str).to_numpy(dtype=object) if n else np.empty(0, object)}
    cols["time_ms"] = ts_ns // 1_000_000
    cols["received_ns"] = ts_ns.copy()
    for c in FLOAT_TICK_COLUMNS:
        cols[c] = (pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                   if c in df else np.full(n, np.nan))
    for c in INT_TICK_COLUMNS[2:]:
        cols[c] = (pd.to_numeric(df[c], errors="coerce").fillna(0).to_numpy(dtype="int64")
                   if c in df else np.zeros(n, dtype="int64"))
    for c in STR_TICK_COLUMNS:
        cols[c] = df[c].fillna("").astype(str).to_numpy(dtype=object) if c in df else np.full(n, "", dtype=object)
    if n > 1:
        cols = {k: v[_order(cols)] for k, v in cols.items()}
        keep = _unique_rows(cols)
        if keep is not None:
            cols = {k: v[keep] for k, v in cols.items()}
    out = pd.DataFrame(cols, columns=list(TICK_COLUMNS), copy=False)
    out["timestamp"] = pd.to_datetime(out["timestamp"], unit="ns", utc=True)
    return out


def _order(cols: dict[str, np.ndarray]) -> np.ndarray:
    sym_codes, _ = pd.factorize(cols["symbol"], sort=True)
    kind_rank = (cols["kind"] != "trade").astype(np.int8)  # trades before quotes on a tie
    return np.lexsort((np.arange(len(sym_codes)), kind_rank, cols["sequence_number"], sym_codes, cols["timestamp"]))


def _unique_rows(cols: dict[str, np.ndarray]) -> np.ndarray | None:
    """Mask keeping the first of rows equal in every column (rows are sorted, so equal rows are adjacent
    once their sort keys tie); ``None`` when there is no duplicate."""
    n = len(cols["timestamp"])
    same = np.ones(n - 1, dtype=bool)
    for c in ("timestamp", "sequence_number", "symbol", "kind"):
        v = cols[c]
        same &= v[1:] == v[:-1]
    if not same.any():
        return None
    for c in FLOAT_TICK_COLUMNS:
        v = cols[c]
        same &= (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    for c in ("exchange", "ask_exchange", "tape", "conditions", "id"):
        v = cols[c]
        same &= v[1:] == v[:-1]
    if not same.any():
        return None
    return np.r_[True, ~same]


__all__ = ["EVENT_COLUMNS", "KINDS_BY_ASSET", "TICK_COLUMNS", "TICK_KINDS", "TickKind", "check_kind_exists",
           "empty_ticks", "finalize_ticks", "validate_kind"]
