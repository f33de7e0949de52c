"""Fill models: where a market order fills — the bar's price (``"close"``) or the quotes (``"quotes"``).

``fills="quotes"``: a market buy fills at the **ask** and a sell at the **bid** of the latest quote at the
fill time. Bars carry the last quote of their bucket (recordings, tick history, live streams), and the
fill time of an order placed on a bar is that bar's end (``cheat_on_close``) or the next bar's start —
in both cases the latest quote is the last one known when the signal bar closed (a bar without a
quote of its own carries the previous bar's forward). The same rule in both engines:

* Backtrader: :class:`QuoteBroker` (a ``BackBroker``) takes the quote when the order is submitted and
  fills at it; an order placed before any quote was seen is rejected (there is no price to fill at).
* vectorbt: :func:`quote_fill_prices` gives one price per bar — the ask on entry bars, the bid on exit
  bars — and drops signals on bars with no quote yet, as the broker rejects them.

Bars without quotes refuse the model with :class:`~massive_feeds.errors.NoQuotesError`.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import backtrader as bt
import numpy as np
import pandas as pd

from massive_feeds.errors import InvalidInputError, NoQuotesError

log = logging.getLogger(__name__)

Fills = Literal["close", "quotes"]
FILL_MODELS: tuple[str, ...] = ("close", "quotes")


def check_fills(fills: str) -> Fills:
    """``fills`` itself when it names a fill model, else :class:`InvalidInputError`."""
    if fills not in FILL_MODELS:
        raise InvalidInputError(f"fills must be 'close' or 'quotes', not {fills!r}")
    return fills  # type: ignore[return-value]


def require_quote_columns(bars: pd.DataFrame, what: str = "these bars") -> None:
    """Raise :class:`NoQuotesError` unless ``bars`` has ``bid``/``ask`` columns with at least one quote."""
    if not {"bid", "ask"} <= set(bars.columns):
        raise NoQuotesError(f"fills='quotes' needs bid/ask quotes, and {what} have none (only recordings, tick "
                            "datasets and live streams carry them); use fills='close'")
    if not (bars["bid"].notna() & bars["ask"].notna()).any():
        raise NoQuotesError(f"fills='quotes' needs bid/ask quotes, and every bid/ask of {what} is empty; "
                            "use fills='close'")


def require_quote_lines(feed: Any) -> None:
    """Raise :class:`NoQuotesError` unless the Backtrader feed has ``bid``/``ask`` lines (``MassiveQuoteData``)."""
    aliases = feed.lines.getlinealiases()
    if "bid" not in aliases or "ask" not in aliases:
        raise NoQuotesError(f"fills='quotes' needs a feed with bid/ask lines (MassiveQuoteData), not "
                            f"{type(feed).__name__}; use fills='close'")


def latest_quote(data: Any) -> tuple[float, float]:
    """``(bid, ask)`` of the latest bar of ``data`` that had a quote (NaN, NaN before any)."""
    bid, ask = data.bid, data.ask
    for ago in range(0, -len(data), -1):  # usually the current bar; walks back over bars without a quote
        b, a = bid[ago], ask[ago]
        if b == b and a == a:
            return float(b), float(a)
    return math.nan, math.nan


class QuoteBroker(bt.brokers.BackBroker):
    """Backtrader's simulated broker, filling market orders at the quotes: buys at the ask, sells at the
    bid of the latest quote when the order was placed (see the module docstring). Other order types
    fill as in ``BackBroker``. Orders placed before the feed saw any quote are rejected."""

    def submit(self, order: bt.Order, check: bool = True) -> bt.Order:
        if order.exectype == bt.Order.Market:
            bid, ask = latest_quote(order.data)
            price = ask if order.isbuy() else bid
            if price != price:
                log.warning("%s order rejected: no quote seen yet to fill it at", "buy" if order.isbuy() else "sell")
                order.reject(self)
                self.notify(order)
                return order
            order.addinfo(quote_price=price)
        return super().submit(order, check)

    def _try_exec_market(self, order: bt.Order, popen: float, phigh: float, plow: float) -> None:
        price = order.info.get("quote_price")
        if price is None:
            super()._try_exec_market(order, popen, phigh, plow)
            return
        if self.p.coc and order.info.get("coc", True):
            dtcoc = order.created.dt  # filled at the signal bar's end
        else:
            if not self.p.coo and order.data.datetime[0] <= order.created.dt:
                return  # the next bar's start
            dtcoc = None
        self._execute(order, ago=0, price=price, dtcoc=dtcoc)


def entry_price(strategy: bt.Strategy) -> float:
    """The price a market buy of ``strategy`` would fill at now: the ask under :class:`QuoteBroker`,
    else the close (sizes the position as the fill will price it)."""
    if isinstance(strategy.broker, QuoteBroker):
        return latest_quote(strategy.data)[1]
    return float(strategy.data.close[0])


def quote_fill_prices(bars: pd.DataFrame, entries: np.ndarray, exits: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vectorbt's per-bar fill prices under ``fills="quotes"``: the forward-filled ask on entry bars,
    the bid on exit bars (the close elsewhere, never used), and the entries/exits with the signals on
    bars before the first quote dropped (Backtrader's :class:`QuoteBroker` rejects those orders)."""
    require_quote_columns(bars)
    # the quote of a bar is only used when both sides came together: ffill of each side alone could
    # pair a bid and an ask of different bars, so both are carried from the last bar quoting both
    both = bars["bid"].notna() & bars["ask"].notna()
    bid = bars["bid"].where(both).ffill().to_numpy(dtype=np.float64)
    ask = bars["ask"].where(both).ffill().to_numpy(dtype=np.float64)
    quoted = ~np.isnan(ask)
    entries = np.asarray(entries, dtype=bool) & quoted
    exits = np.asarray(exits, dtype=bool) & quoted
    close = bars["close"].to_numpy(dtype=np.float64)
    price = np.where(entries, ask, np.where(exits, bid, close))
    return price, entries, exits
