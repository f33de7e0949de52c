"""Ticks → bars, vectorised: trades give OHLCV, quotes give bid/ask/mid/spread on the same bars.

Buckets are epoch-aligned (``time // width * width``), as every other path in the project, so a
recorded minute lines up with the REST minute bar of the same window. A bucket with quotes but no
trade gets a bar from the mid price, marked ``quote_only``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..buckets import fixed_buckets
from ..errors import InvalidInputError
from ..schema import BAR_COLUMNS, finalize_bars

QUOTE_COLUMNS = ("bid", "ask", "bid_size", "ask_size", "mid", "spread", "quote_only")
RECORDED_BAR_COLUMNS = BAR_COLUMNS + QUOTE_COLUMNS


def interval_ms(resample_interval: str | pd.Timedelta) -> int:
    """``"1s"``, ``"1min"``/``"1m"``, ``"5min"``, ``"1h"`` … → milliseconds (fixed widths only)."""
    text = str(resample_interval).strip()
    try:
        width = pd.Timedelta(text.replace("m", "min") if text.endswith("m") and text[:-1].isdigit() else text)
    except ValueError:
        raise InvalidInputError(
            f"Invalid resample interval {resample_interval!r}; use a fixed width like 1s, 1min, 5min, 1h"
        ) from None
    ms = int(width / pd.Timedelta(milliseconds=1))
    if ms <= 0:
        raise InvalidInputError(f"Resample interval must be positive, got {resample_interval!r}")
    return ms


def _group_starts(keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _bucketed(frame: pd.DataFrame, width: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns ordered by (symbol, time) with their bucket start, and the first row of each bucket."""
    time_ms = frame["time_ms"].to_numpy(dtype=np.int64)
    codes, names = pd.factorize(frame["symbol"])
    bucket = fixed_buckets(time_ms, width)
    key = codes.astype(np.int64) * (1 << 44) + bucket  # ms epoch < 2**44 for centuries
    order = np.argsort(key, kind="stable")  # stable: ticks keep their arrival order inside a bucket
    key = key[order]
    cols = {c: frame[c].to_numpy(dtype=float)[order] for c in frame.columns if c in _NUMERIC}
    starts = _group_starts(key)
    cols["symbol_at_start"] = np.asarray(names, dtype=object)[codes[order][starts]]  # names only per bar
    cols["bucket"] = bucket[order]
    return cols, starts


_NUMERIC = ("price", "size", "bid", "ask", "bid_size", "ask_size")


def _trade_bars(trades: pd.DataFrame, width: int) -> pd.DataFrame:
    if trades.empty:
        return pd.DataFrame(columns=["symbol", "bucket", "open", "high", "low", "close", "volume", "vwap",
                                     "transactions"])
    trades, starts = _bucketed(trades, width)
    price = trades["price"]
    size = np.nan_to_num(trades["size"])
    ends = np.r_[starts[1:], len(price)] - 1
    volume = np.add.reduceat(size, starts)
    notional = np.add.reduceat(price * size, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, notional / np.where(volume > 0, volume, 1), np.nan)
    return pd.DataFrame({
        "symbol": trades["symbol_at_start"], "bucket": trades["bucket"][starts],
        "open": price[starts], "high": np.maximum.reduceat(price, starts), "low": np.minimum.reduceat(price, starts),
        "close": price[ends], "volume": volume, "vwap": vwap, "transactions": np.diff(np.r_[starts, len(price)]),
    })


def _quote_bars(quotes: pd.DataFrame, width: int) -> pd.DataFrame:
    cols = ["symbol", "bucket", "bid", "ask", "bid_size", "ask_size", "mid_open", "mid_high", "mid_low", "mid_close"]
    if quotes.empty:
        return pd.DataFrame(columns=cols)
    quotes, starts = _bucketed(quotes, width)
    ends = np.r_[starts[1:], len(quotes["bucket"])] - 1
    mid = (quotes["bid"] + quotes["ask"]) / 2
    return pd.DataFrame({
        "symbol": quotes["symbol_at_start"], "bucket": quotes["bucket"][starts],
        **{c: quotes[c][ends] for c in ("bid", "ask", "bid_size", "ask_size")},
        "mid_open": mid[starts], "mid_high": np.fmax.reduceat(mid, starts), "mid_low": np.fmin.reduceat(mid, starts),
        "mid_close": mid[ends],
    })


def ticks_to_bars(events: pd.DataFrame, resample_interval: str = "1min") -> pd.DataFrame:
    """Bars in the standard schema plus ``bid ask bid_size ask_size mid spread quote_only``.

    ``events`` needs ``kind symbol time_ms price size bid ask bid_size ask_size`` (the recorder's
    event frame). Trades and index values make OHLCV; the last quote of each bar gives its bid/ask.
    """
    width = interval_ms(resample_interval)
    kind = events["kind"]  # compared as a (pyarrow-backed) column: no per-row Python strings
    # only the columns each side reads: copying all 18 event columns twice would dominate the cost
    prints = events.loc[kind.isin(["trade", "value"]).to_numpy(), ["symbol", "time_ms", "price", "size"]]
    quotes = events.loc[(kind == "quote").to_numpy(), ["symbol", "time_ms", "bid", "ask", "bid_size", "ask_size"]]
    tb, qb = _trade_bars(prints, width), _quote_bars(quotes, width)
    bars = tb.merge(qb, on=["symbol", "bucket"], how="outer")
    if bars.empty:
        return pd.DataFrame({c: [] for c in RECORDED_BAR_COLUMNS}).pipe(finalize_bars, extra=QUOTE_COLUMNS)
    quote_only = bars["open"].isna().to_numpy()
    for ours, mid in (("open", "mid_open"), ("high", "mid_high"), ("low", "mid_low"), ("close", "mid_close")):
        bars[ours] = bars[ours].where(~quote_only, bars[mid])
    bars["volume"] = bars["volume"].fillna(0.0)
    bars["transactions"] = bars["transactions"].fillna(0)
    bars["mid"] = (bars["bid"] + bars["ask"]) / 2
    bars["spread"] = bars["ask"] - bars["bid"]
    bars["quote_only"] = quote_only
    bars["timestamp"] = pd.to_datetime(bars["bucket"].astype("int64"), unit="ms", utc=True)
    return finalize_bars(bars, extra=QUOTE_COLUMNS)


class BarCounter:
    """How many bars a recording holds so far, counted live as :func:`ticks_to_bars` will build them:
    distinct ``(symbol, bucket)`` pairs of its trades, index values and quotes.

    Use it as a batched connector listener (``connector.add_listener(counter, batched=True, …)``); it is
    thread-safe and costs one set insertion per event.
    """

    KINDS = ("trade", "value", "quote")

    def __init__(self, resample_interval: str = "1min") -> None:
        import threading

        self.interval = str(resample_interval)
        self.width = interval_ms(resample_interval)
        self._keys: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.events = 0

    def __repr__(self) -> str:
        return f"BarCounter({self.interval}, bars={self.bars}, events={self.events})"

    def __call__(self, batch: Sequence[Any]) -> None:
        width, kinds = self.width, self.KINDS
        keys = {(ev.symbol, ev.time_ms // width) for ev in batch if ev.kind in kinds}
        with self._lock:
            self._keys |= keys
            self.events += sum(1 for ev in batch if ev.kind in kinds)

    @property
    def bars(self) -> int:
        """Bars so far, all symbols together."""
        with self._lock:
            return len(self._keys)

    def per_symbol(self) -> dict[str, int]:
        """Bars so far per symbol."""
        with self._lock:
            keys = list(self._keys)
        out: dict[str, int] = {}
        for sym, _ in keys:
            out[sym] = out.get(sym, 0) + 1
        return out
