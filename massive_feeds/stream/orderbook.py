"""Top-of-book per symbol from quotes and trades, and the ``callback(symbol, orderbook)`` interface of
:meth:`MassiveConnector.start_stream` built on it.

The orderbook dict a callback receives::

    {"symbol": "AAPL", "bids": [[190.11, 3]], "asks": [[190.15, 2]],
     "bid": 190.11, "ask": 190.15, "bid_size": 3, "ask_size": 2, "mid": 190.13, "spread": 0.04,
     "last_price": 190.12, "last_size": 100, "timestamp": datetime(UTC, provider time),
     "received": datetime(UTC, local), "event": "quote"}

Massive streams top of book only (no depth), so ``bids``/``asks`` hold one level. A callback runs on
every quote, and on every trade once a quote has been seen (so ``bids[0]`` always exists); indices
have no quotes, so their callbacks run on each value with empty ``bids``/``asks``. Forex quotes
carry no sizes (``None``). Aggregates do not touch the book.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from .events import QUOTE, TRADE, VALUE, StreamEvent
from .throttle import ThrottledLog

log = logging.getLogger(__name__)

OrderBookCallback = Callable[[str, dict[str, Any]], Any]
BOOK_KINDS = (QUOTE, TRADE, VALUE)


def _num(x: float) -> float | None:
    return None if x != x else x  # NaN is the only value not equal to itself


class _Book:
    __slots__ = ("ask", "ask_size", "bid", "bid_size", "event", "has_quote", "last_price", "last_size",
                 "received_ns", "time_ms")

    def __init__(self) -> None:
        self.bid = self.ask = self.bid_size = self.ask_size = float("nan")
        self.last_price = self.last_size = float("nan")
        self.time_ms = self.received_ns = 0
        self.event = ""
        self.has_quote = False

    def as_dict(self, symbol: str) -> dict[str, Any]:
        # Runs once per update on the callback thread: plain float arithmetic and fromtimestamp
        # (exact to the microsecond for ms/ns inputs) keep it cheap.
        bid, ask, q = self.bid, self.ask, self.has_quote
        bid_size, ask_size = _num(self.bid_size), _num(self.ask_size)
        return {
            "symbol": symbol,
            "bids": [[bid, bid_size]] if q else [],
            "asks": [[ask, ask_size]] if q else [],
            "bid": bid if q else None, "ask": ask if q else None, "bid_size": bid_size, "ask_size": ask_size,
            "mid": (bid + ask) / 2 if q else None, "spread": ask - bid if q else None,
            "last_price": _num(self.last_price), "last_size": _num(self.last_size),
            "timestamp": datetime.fromtimestamp(self.time_ms / 1000, timezone.utc),
            "received": datetime.fromtimestamp(self.received_ns / 1e9, timezone.utc),
            "event": self.event,
        }


class OrderBooks:
    """A per-event listener keeping each symbol's book and calling the registered callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[str, tuple[OrderBookCallback, ...]] = {}  # replaced, never mutated
        self._books: dict[str, _Book] = {}
        self.calls = 0
        self.errors = 0
        self._warn = ThrottledLog(log, logging.ERROR, interval=10.0)

    def __repr__(self) -> str:
        return f"OrderBooks(symbols={len(self._books)}, callbacks={len(self._callbacks)}, errors={self.errors})"

    def set_callback(self, symbols: Iterable[str], callback: OrderBookCallback) -> None:
        """Make ``callback`` *the* callback of ``symbols`` (replacing an earlier one, so a script
        that reruns, as Streamlit's do, does not pile up callbacks)."""
        with self._lock:
            self._callbacks = {**self._callbacks, **{s: (callback,) for s in symbols}}

    def remove(self, symbols: Iterable[str] | None = None) -> None:
        """Forget callbacks and books of ``symbols`` (all when ``None``)."""
        with self._lock:
            if symbols is None:
                self._callbacks = {}
                self._books = {}
                return
            table = dict(self._callbacks)
            for s in symbols:
                table.pop(s, None)
                self._books.pop(s, None)
            self._callbacks = table

    def snapshot(self, symbol: str) -> dict[str, Any] | None:
        book = self._books.get(symbol)
        return book.as_dict(symbol) if book is not None and book.event else None

    def __call__(self, ev: StreamEvent) -> None:
        kind = ev.kind
        if kind not in BOOK_KINDS:
            return
        symbol = ev.symbol
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book()
        if kind == QUOTE:
            book.bid, book.ask, book.bid_size, book.ask_size = ev.bid, ev.ask, ev.bid_size, ev.ask_size
            book.has_quote = True
        else:
            book.last_price, book.last_size = ev.price, ev.size
            if kind == TRADE and not book.has_quote:
                book.time_ms, book.received_ns, book.event = ev.time_ms, ev.received_ns, kind
                return  # wait for a quote so bids[0]/asks[0] exist
        book.time_ms, book.received_ns, book.event = ev.time_ms, ev.received_ns, kind
        callbacks = self._callbacks.get(symbol)
        if not callbacks:
            return
        snapshot = book.as_dict(symbol)
        for cb in callbacks:
            self.calls += 1
            try:
                cb(symbol, snapshot)
            except Exception as exc:  # noqa: BLE001 - a user callback must not stop the stream
                self.errors += 1
                self._warn("stream callback %s raised %s for %s: %s (errors so far: %d); the stream continues",
                           getattr(cb, "__name__", cb), type(exc).__name__, symbol, exc, self.errors, exc_info=exc)
