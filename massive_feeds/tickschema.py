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

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidInputError
from .schema import DateLike, DateRange, Query, Ticker, parse_date_range, parse_tickers

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
    "crypto": ("trades",), "indices": (), "futures": ("trades", "quotes"),
}


def validate_kind(kind: str) -> str:
    """``"trades"``/``"quotes"`` (singular accepted) or an :class:`InvalidInputError`."""
    text = str(kind).strip().lower()
    text = {"trade": "trades", "quote": "quotes"}.get(text, text)
    if text not in TICK_KINDS:
        raise InvalidInputError(f"Invalid tick kind {kind!r}; use 'trades' or 'quotes'")
    return text


def check_kind_exists(ticker: "str | Ticker", kind: str) -> None:
    """Raise :class:`InvalidInputError` when Massive has no ``kind`` ticks for ``ticker``'s asset class."""
    asset = Ticker.of(ticker).asset
    have = KINDS_BY_ASSET.get(asset, ())
    if kind not in have:
        what = ", ".join(have) if have else "no tick data (index values only)"
        raise InvalidInputError(f"Massive has no {kind} for {ticker} ({asset}: {what})")


@dataclass(frozen=True)
class TickQuery(Query):
    """One tick request, validated (the sibling of :class:`~massive_feeds.schema.BarQuery`): parsed tickers, the
    :class:`DateRange` and the kinds (``trades``/``quotes``, each one the tickers' asset classes have).
    Build it once from user input with :meth:`build`; the REST, flat-file and store back ends take it."""

    kinds: tuple[str, ...] = ("quotes",)

    @classmethod
    def build(cls, symbols: str | Iterable[str], start: DateLike, end: DateLike,
              kind: str | Sequence[str] = "quotes") -> "TickQuery":
        """Validate user input; a typed :class:`InvalidInputError` names the first bad value (including a kind
        an asset class does not have, e.g. forex trades)."""
        tickers = parse_tickers(symbols)
        raw = [kind] if isinstance(kind, str) else list(kind)
        if not raw:
            raise InvalidInputError("No tick kind given; use 'trades' and/or 'quotes'")
        kinds = tuple(dict.fromkeys(validate_kind(k) for k in raw))
        for t in tickers:
            for k in kinds:
                check_kind_exists(t, k)
        window = parse_date_range(start, end)
        if any(t.asset == "futures" for t in tickers):
            window = _futures_window(tickers, window)
        return cls(tickers, window, kinds)

    def __repr__(self) -> str:
        return (f"TickQuery({','.join(self.tickers)} {'/'.join(self.kinds)} "
                f"{self.range.first_day}..{self.range.last_day})")


def _futures_window(tickers: tuple[Ticker, ...], window: DateRange) -> DateRange:
    """A futures tick query's range in exchange sessions (date bounds: the sessions ending on those days, the
    first one opened 17:00 Chicago the evening before; its days are the sessions, which name the day files).
    A mix with other asset classes is refused here (a session day is not a New York day);
    :func:`massive_feeds.fetch_ticks` splits such a list into two queries."""
    if others := [t.symbol for t in tickers if t.asset != "futures"]:
        raise InvalidInputError(f"futures ticks are read by exchange session: query {', '.join(others)} apart "
                                "from the futures contracts (fetch_ticks splits such a list itself)")
    return window.in_futures_sessions()


def empty_ticks() -> pd.DataFrame:
    """A zero-row tick frame with every column typed."""
    return finalize_ticks(pd.DataFrame({"timestamp": pd.Series([], dtype="int64"), "symbol": [], "kind": []}))


def _strings(value: Any, n: int) -> pa.Array:
    """A text column as a pyarrow string array (no per-row Python objects when it already is one)."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Array):
        arr = value if value.type == pa.string() else value.cast(pa.string())
    elif isinstance(value, pd.Series):
        arr = pa.array(value, pa.string(), from_pandas=True)
    elif isinstance(value, str):
        return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))
    else:
        arr = pa.array(np.asarray(value, dtype=object), pa.string(), from_pandas=True)
    return pc.fill_null(arr, "") if arr.null_count else arr


def finalize_ticks(df: pd.DataFrame | dict[str, Any]) -> pd.DataFrame:
    """Coerce a frame (or a dict of columns) to the tick schema: every column present and typed,
    sorted, de-duplicated.

    ``timestamp`` may be epoch nanoseconds (int) or datetimes; missing numeric columns become NaN / 0,
    missing text columns ``""``. ``time_ms`` and ``received_ns`` are always derived from ``timestamp``.
    """
    src = df if isinstance(df, dict) else {c: df[c] for c in df.columns}
    ts = src["timestamp"]
    ts_arr = np.asarray(ts)
    if isinstance(getattr(ts, "dtype", None), pd.DatetimeTZDtype) or ts_arr.dtype.kind == "M":
        ts_ns = pd.to_datetime(ts, utc=True).to_numpy(dtype="datetime64[ns]").view("int64")
    else:
        ts_ns = pd.to_numeric(ts_arr).astype("int64", copy=False)
    n = len(ts_ns)
    num: dict[str, np.ndarray] = {"timestamp": ts_ns, "time_ms": ts_ns // 1_000_000}
    for c in FLOAT_TICK_COLUMNS:
        num[c] = (pd.to_numeric(np.asarray(src[c]), errors="coerce").astype("float64", copy=False)
                  if c in src else np.full(n, np.nan))
    for c in INT_TICK_COLUMNS[2:]:
        if c not in src:
            num[c] = np.zeros(n, dtype="int64")
            continue
        raw = np.asarray(src[c])
        num[c] = (raw.astype("int64", copy=False) if raw.dtype.kind in "iu"
                  else np.nan_to_num(pd.to_numeric(raw, errors="coerce").astype("float64")).astype("int64"))
    text: dict[str, pa.Array] = {c: _strings(src[c], n) if c in src else _strings("", n)
                                 for c in ("symbol", "kind", *STR_TICK_COLUMNS)}
    if n > 1:
        order = _order(num, text)
        if order is not None:
            num = {k: v[order] for k, v in num.items()}
            text = {k: v.take(pa.array(order)) for k, v in text.items()}
        keep = _unique_rows(num, text)
        if keep is not None:
            num = {k: v[keep] for k, v in num.items()}
            text = {k: v.filter(pa.array(keep)) for k, v in text.items()}
    num["received_ns"] = num["timestamp"].copy()
    cols: dict[str, Any] = {}
    for c in TICK_COLUMNS:
        cols[c] = pd.array(text[c], dtype="str") if c in text else num[c]
    out = pd.DataFrame(cols, copy=False)
    out["timestamp"] = pd.to_datetime(num["timestamp"], unit="ns", utc=True)
    return out


def _order(num: dict[str, np.ndarray], text: dict[str, pa.Array]) -> np.ndarray | None:
    """Row order by (timestamp, symbol, sequence_number, trades first); ``None`` when already in order."""
    ts = num["timestamp"]
    single = len(pc.unique(text["symbol"])) == 1
    later = ts[1:] > ts[:-1] if single else None
    if later is not None and bool(later.all()):
        return None  # strictly increasing times (the usual single-symbol page): nothing to sort
    kind_rank = pc.not_equal(text["kind"], "trade").to_numpy(zero_copy_only=False).astype(np.int8)
    seq = num["sequence_number"]
    if later is not None:  # already in (timestamp, sequence_number, kind) order, ties included: no sort (a page
        # of quotes often repeats a timestamp)
        s0, s1 = seq[:-1], seq[1:]
        tied = (ts[1:] == ts[:-1]) & ((s1 > s0) | ((s1 == s0) & (kind_rank[1:] >= kind_rank[:-1])))
        if bool(np.all(later | tied)):
            return None
    keys = [np.arange(len(ts)), kind_rank, seq]
    if not single:
        keys.append(pd.factorize(np.asarray(text["symbol"].to_pylist(), dtype=object), sort=True)[0])
    keys.append(ts)
    order = np.lexsort(keys)
    return None if bool(np.all(order[1:] > order[:-1])) else order


def _unique_rows(num: dict[str, np.ndarray], text: dict[str, pa.Array]) -> np.ndarray | None:
    """Mask keeping the first of rows equal in every column (rows are sorted, so equal rows are adjacent
    once their sort keys tie); ``None`` when there is no duplicate."""
    same = (num["timestamp"][1:] == num["timestamp"][:-1]) & (num["sequence_number"][1:] == num["sequence_number"][:-1])
    if not same.any():
        return None
    for c in FLOAT_TICK_COLUMNS:
        v = num[c]
        same &= (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    for c in ("exchange", "ask_exchange", "tape"):
        same &= num[c][1:] == num[c][:-1]
    for c in ("symbol", "kind", *STR_TICK_COLUMNS):
        if not same.any():
            return None
        v = text[c]
        same &= pc.equal(v.slice(1), v.slice(0, len(v) - 1)).to_numpy(zero_copy_only=False)
    if not same.any():
        return None
    return np.r_[True, ~same]


__all__ = ["EVENT_COLUMNS", "KINDS_BY_ASSET", "TICK_COLUMNS", "TICK_KINDS", "TickKind", "TickQuery", "check_kind_exists",
           "empty_ticks", "finalize_ticks", "validate_kind"]
