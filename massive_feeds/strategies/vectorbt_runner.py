"""The built-in strategies on vectorbt: same signals, ``vbt.Portfolio.from_signals``, same result type.

Each Backtrader strategy has a vectorised twin in :mod:`massive_feeds.strategies.signals` computed from the very
same window functions, so entries and exits agree bar for bar (tested). Fills differ by default:
vectorbt fills at the signal bar's close, Backtrader at the next bar's open — run Backtrader with
``cheat_on_close=True`` to compare trades one to one.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from massive_feeds.errors import InvalidInputError

from . import fills as fill_models
from . import metrics, signals
from .breakout import MomentumBreakout
from .mean_reversion import MeanReversion
from .runner import BacktestResult, open_positions_frame
from .sma_cross import SmaCross
from .spread_capture import SpreadCapture

#: strategy class → (vectorised twin, the bar columns it reads, in order)
TWINS: dict[type, tuple[Callable[..., signals.Signals], tuple[str, ...]]] = {
    SmaCross: (signals.sma_cross_signals, ("close",)),
    MeanReversion: (signals.mean_reversion_signals, ("close",)),
    MomentumBreakout: (signals.breakout_signals, ("close", "high", "low")),
    SpreadCapture: (signals.spread_capture_signals, ("close", "high", "low", "bid", "ask")),
}


def strategy_params(strategy_cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """The strategy's Backtrader params with ``overrides`` applied (``stake`` included)."""
    defaults = dict(strategy_cls.params._getpairs())
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(f"{strategy_cls.__name__} has no params {sorted(unknown)}")
    return {**defaults, **overrides}


def compute_signals(strategy_cls: type, bars: pd.DataFrame, **params: Any) -> pd.DataFrame:
    """Per-bar ``entry``/``exit`` booleans of a built-in strategy on one symbol's bars."""
    twin, columns = TWINS[strategy_cls]
    rule_params = {k: v for k, v in strategy_params(strategy_cls, params).items() if k != "stake"}
    arrays = [bars[c].to_numpy(dtype=np.float64) if c in bars else None for c in columns]
    sig = twin(*arrays, **rule_params)
    return pd.DataFrame({"entry": sig.entries, "exit": sig.exits}, index=pd.DatetimeIndex(bars["timestamp"]))


def _open_positions(pf: Any) -> pd.DataFrame:
    """The round trips vectorbt still holds at the last bar (``Status == "Open"``)."""
    rec = pf.trades.records_readable
    held = rec[rec["Status"] == "Open"] if len(rec) else rec
    if held.empty:
        return open_positions_frame([], [], [])
    return open_positions_frame(pd.DatetimeIndex(held["Entry Timestamp"]).tz_convert("UTC"), held["Size"].to_numpy(),
                                held["Avg Entry Price"].to_numpy())


def _trade_log(pf: Any) -> pd.DataFrame:
    rec = pf.trades.records_readable
    cols = ["entry_time", "exit_time", "size", "entry_price", "exit_price", "pnl", "pnl_net", "commission",
            "bars", "return"]
    if rec.empty:
        return pd.DataFrame(columns=cols)
    closed = rec[rec["Status"] == "Closed"]
    index = pf.wrapper.index
    out = pd.DataFrame({
        "entry_time": pd.DatetimeIndex(closed["Entry Timestamp"]), "exit_time": pd.DatetimeIndex(closed["Exit Timestamp"]),
        "size": closed["Size"].to_numpy(), "entry_price": closed["Avg Entry Price"].to_numpy(),
        "exit_price": closed["Avg Exit Price"].to_numpy(),
        "commission": (closed["Entry Fees"] + closed["Exit Fees"]).to_numpy(), "pnl_net": closed["PnL"].to_numpy(),
        "return": closed["Return"].to_numpy(),
    })
    out["pnl"] = out["pnl_net"] + out["commission"]
    out["bars"] = index.get_indexer(out["exit_time"]) - index.get_indexer(out["entry_time"])
    return out[cols].reset_index(drop=True)


#: vectorbt/yfinance column names → the standard bar schema's.
_WIDE_FIELDS = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume", "vwap": "vwap",
                "trade count": "transactions", "transactions": "transactions", "bid": "bid", "ask": "ask",
                "mid": "mid", "spread": "spread"}


def as_long_bars(data: Any, symbol: str | None = None) -> pd.DataFrame:
    """One symbol's bars in the standard long schema from whatever a vectorbt user holds:

    * a bar frame in the standard schema (``timestamp``, ``symbol``, ``open`` … ``close``);
    * a ``vbt.Data`` object such as :class:`massive_feeds.vectorbt.MassiveData` (``symbol`` picks one
      when it holds several);
    * a wide frame on a DatetimeIndex: one symbol's OHLCV columns (``data.data["AAPL"]``, ``Open``/``open``
      …), or a ``(field, symbol)`` column MultiIndex as ``fetch_data(..., layout="wide")`` returns.

    Raises:
        InvalidInputError: several symbols and no ``symbol``, an unknown symbol, or no ``close`` column.
    """
    import vectorbt as vbt

    if isinstance(data, vbt.Data):
        names = [str(s) for s in data.symbols]
        if symbol is None and len(names) != 1:
            raise InvalidInputError(f"the vbt.Data object holds {names}; pass symbol=… to pick one")
        chosen = symbol if symbol is not None else names[0]
        if chosen not in data.data:
            raise InvalidInputError(f"{chosen!r} is not in the vbt.Data object; it holds {names}")
        return _wide_one(data.data[chosen], chosen)
    if not isinstance(data, pd.DataFrame):
        raise InvalidInputError(f"run_vectorbt needs a bar DataFrame or a vbt.Data object, not {type(data).__name__}")
    if "timestamp" in data.columns and "symbol" in data.columns:
        if symbol is not None:
            data = data[data["symbol"] == symbol]
        return data
    if isinstance(data.columns, pd.MultiIndex):
        syms = list(dict.fromkeys(str(s) for s in data.columns.get_level_values(-1)))
        if symbol is None and len(syms) != 1:
            raise InvalidInputError(f"the wide frame holds {syms}; pass symbol=… to pick one")
        chosen = symbol if symbol is not None else syms[0]
        if chosen not in syms:
            raise InvalidInputError(f"{chosen!r} is not in the wide frame; it holds {syms}")
        return _wide_one(data.xs(chosen, axis=1, level=-1), chosen)
    return _wide_one(data, symbol or str(data.attrs.get("symbol") or "?"))


def _wide_one(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """One symbol's wide OHLCV frame (any case of column names) → the standard long schema."""
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidInputError("a wide bar frame needs a DatetimeIndex")
    cols = {c: _WIDE_FIELDS[str(c).lower()] for c in frame.columns if str(c).lower() in _WIDE_FIELDS}
    if "close" not in cols.values():
        raise InvalidInputError(f"the bar frame has no close column (columns: {list(frame.columns)})")
    out = frame[list(cols)].rename(columns=cols).astype("float64")
    out = out[out["close"].notna()]
    idx = out.index if out.index.tz is not None else out.index.tz_localize("UTC")
    out.insert(0, "timestamp", idx.tz_convert("UTC"))
    out.insert(1, "symbol", symbol)
    for c in ("open", "high", "low"):
        if c not in out:
            out[c] = out["close"]
    return out.reset_index(drop=True)


def run_vectorbt(strategy_cls: type, bars: Any, cash: float = 100_000.0, commission: float = 0.0,
                 *, symbol: str | None = None, fills: str = "close", **params: Any) -> BacktestResult:
    """Run a built-in strategy on one symbol's bars with ``vbt.Portfolio.from_signals``.

    ``bars`` is a standard bar frame, a ``vbt.Data`` object (``MassiveData``) or a wide frame (see
    :func:`as_long_bars`); ``symbol`` picks one symbol when it holds several.

    Position rule as in Backtrader's :class:`~strategies.base.SignalStrategy`: long only, enter with
    ``stake`` of the portfolio value when flat, exit when long; fills at the signal bar's close, or with
    ``fills="quotes"`` at the ask (entries) and bid (exits) of the latest quote — one price per bar from
    :func:`massive_feeds.strategies.fills.quote_fill_prices`, the rule Backtrader's ``QuoteBroker`` applies.
    """
    import vectorbt as vbt

    from massive_feeds.vectorbt.compiled import cache_signal_simulation

    cache_signal_simulation()  # from_signals below: compiled once per installation, not per process
    fill_models.check_fills(fills)
    bars = as_long_bars(bars, symbol)
    if bars.empty:
        raise InvalidInputError("run_vectorbt got no bars: fetch or load a non-empty range first")
    if bars["symbol"].nunique() > 1:
        raise InvalidInputError("run_vectorbt takes one symbol's bars; filter the frame first")
    full = strategy_params(strategy_cls, params)
    sig = compute_signals(strategy_cls, bars, **params)
    close = pd.Series(bars["close"].to_numpy(dtype=np.float64), index=sig.index, name="close")
    entries, exits, price = sig["entry"], sig["exit"], close
    if fills == "quotes":
        at, ent, ex = fill_models.quote_fill_prices(bars, sig["entry"].to_numpy(), sig["exit"].to_numpy())
        price = pd.Series(at, index=sig.index)
        entries, exits = pd.Series(ent, index=sig.index), pd.Series(ex, index=sig.index)
    # an order on the last bar has no bar left to fill in (Backtrader's rule, even at cheat-on-close): so a
    # position there stays open rather than closing at that bar, and both engines count trades alike
    last = np.arange(len(entries)) == len(entries) - 1
    entries, exits = entries.mask(last, False), exits.mask(last, False)
    pf = vbt.Portfolio.from_signals(close, entries, exits, price=price, size=full["stake"], size_type="percent",
                                    init_cash=cash, fees=commission, accumulate=False)
    equity = pf.value().rename("equity")
    trades = _trade_log(pf)
    end_value = float(equity.iloc[-1]) if len(equity) else cash
    sym = str(bars["symbol"].iloc[0])
    interval = metrics.bar_interval(pd.DatetimeIndex(close.index), bars.attrs.get("interval"))
    return BacktestResult(
        strategy=strategy_cls.__name__, params=full, start_value=float(cash), end_value=end_value,
        total_return=end_value / cash - 1.0, sharpe=metrics.sharpe_ratio(equity, interval, sym),
        sharpe_note=metrics.sharpe_note(equity, interval, sym),
        max_drawdown=metrics.max_drawdown(equity), trade_count=len(trades), bars=len(equity),
        trades=trades, equity=equity, signals=sig, symbol=sym, prices=close.rename("close"),
        tz=str(bars.attrs.get("tz") or "UTC"), fills=fills, open_positions=_open_positions(pf),
    )
