"""Run one strategy on one feed and get the numbers, the trade log and the equity curve back."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from massive_feeds.errors import InvalidInputError

from . import fills as fill_models
from . import metrics

log = logging.getLogger(__name__)

_EPOCH_BT = 719_163.0  # backtrader date number of 1970-01-01


def bt_nums_to_index(nums: list[float] | np.ndarray) -> pd.DatetimeIndex:
    """Backtrader date numbers (UTC) → a tz-aware UTC index, exact to the millisecond.

    A date number's float error is ~10 µs, so rounding to whole milliseconds (the resolution of every
    Massive timestamp) recovers the bar times exactly.
    """
    ms = np.rint((np.asarray(nums, dtype=np.float64) - _EPOCH_BT) * 86_400_000).astype(np.int64)
    return pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True))


class _Equity(bt.Analyzer):
    """Portfolio value after every bar (what the strategy saw at that bar's close)."""

    def start(self) -> None:
        self.times: list[float] = []
        self.values: list[float] = []
        self.closes: list[float] = []

    def next(self) -> None:
        self.times.append(self.strategy.datetime[0])
        self.values.append(self.strategy.broker.getvalue())
        self.closes.append(self.strategy.data.close[0])

    def get_analysis(self) -> pd.Series:
        return pd.Series(self.values, index=bt_nums_to_index(self.times), name="equity", dtype="float64")

    def prices(self) -> pd.Series:
        """The close the strategy saw at each bar (for the price panel of the plots)."""
        return pd.Series(self.closes, index=bt_nums_to_index(self.times), name="close", dtype="float64")


def open_positions_frame(times: Any, sizes: Any, prices: Any, *, bt_nums: bool = False) -> pd.DataFrame:
    """Open round trips as a frame: ``entry_time`` (UTC), ``size``, ``entry_price``."""
    stamps = (bt_nums_to_index(np.asarray(times, dtype=np.float64)) if bt_nums
              else pd.DatetimeIndex(times, tz="UTC") if len(times) else pd.DatetimeIndex([], tz="UTC"))
    return pd.DataFrame({"entry_time": pd.DatetimeIndex(stamps).as_unit("ns"), "size": np.asarray(sizes, dtype=np.float64),
                         "entry_price": np.asarray(prices, dtype=np.float64)})


class _Trades(bt.Analyzer):
    """Closed round trips: entry/exit time and price, size, P&L before and after commission.

    Times and prices come from the filling orders (``order.executed``): with cheat-on-close the fill
    belongs to the signal bar, while Backtrader's ``Trade.dtopen`` would name the bar it was booked on.
    """

    def start(self) -> None:
        self.fills: dict[Any, tuple[float, float]] = {}  # data → last fill (date number, price)
        self.opened: dict[int, tuple[float, float, float]] = {}
        self.rows: list[dict[str, Any]] = []

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            self.fills[order.data] = (order.executed.dt, order.executed.price)

    def notify_trade(self, trade: bt.Trade) -> None:
        fill = self.fills.get(trade.data, (trade.dtopen, trade.price))
        if trade.justopened:
            self.opened[trade.ref] = (fill[0], trade.size, fill[1])
        if not trade.isclosed:
            return
        entry_time, size, entry_price = self.opened.pop(trade.ref, (trade.dtopen, float("nan"), trade.price))
        self.rows.append({
            "entry_time": entry_time, "exit_time": fill[0], "size": size, "entry_price": entry_price,
            "exit_price": fill[1], "pnl": trade.pnl, "pnl_net": trade.pnlcomm, "commission": trade.commission,
            "bars": trade.barlen,
        })

    def open_positions(self) -> pd.DataFrame:
        """The round trips still open when the data ended: entry time (UTC), size and price."""
        rows = list(self.opened.values())
        return open_positions_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], bt_nums=True)

    def get_analysis(self) -> pd.DataFrame:
        cols = ["entry_time", "exit_time", "size", "entry_price", "exit_price", "pnl", "pnl_net", "commission", "bars"]
        df = pd.DataFrame(self.rows, columns=cols)
        for col in ("entry_time", "exit_time"):
            df[col] = bt_nums_to_index(df[col].to_numpy(dtype=np.float64)) if len(df) else pd.Series(
                [], dtype="datetime64[ns, UTC]")
        df["return"] = df["pnl_net"] / (df["size"] * df["entry_price"])
        return df


@dataclass
class BacktestResult:
    """What one run produced. Returns and drawdowns are fractions (0.05 = 5 %).

    ``trades`` has one row per closed round trip; ``open_positions`` one per round trip still open when the
    data ended (entry time, size, price: counted apart as :attr:`open_trades`, both engines alike — an order
    on the last bar has no bar left to fill in); ``equity`` is the portfolio value after each bar (UTC index);
    ``signals`` the raw per-bar entry/exit booleans of signal strategies.
    """

    strategy: str
    params: dict[str, Any]
    start_value: float
    end_value: float
    total_return: float
    sharpe: float
    max_drawdown: float
    trade_count: int
    bars: int
    trades: pd.DataFrame = field(repr=False)
    equity: pd.Series = field(repr=False)
    signals: pd.DataFrame | None = field(default=None, repr=False)
    #: why :attr:`sharpe` is NaN (too few bars, see :mod:`massive_feeds.strategies.metrics`), else ``None``
    sharpe_note: str | None = None
    #: the traded symbol, when known (picks the session used to annualise Sharpe)
    symbol: str | None = None
    #: close price per bar (UTC index), drawn in the plots' price panel with the trades
    prices: pd.Series | None = field(default=None, repr=False)
    #: time zone of the plots' time axis (the feed's ``tz``; UTC when it has none)
    tz: str = "UTC"
    #: the fill model that ran: ``"close"`` (bar prices) or ``"quotes"`` (ask for buys, bid for sells)
    fills: str = "close"
    #: round trips still open at the end (``entry_time``, ``size``, ``entry_price``); ``None``: none
    open_positions: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def open_trades(self) -> int:
        """How many round trips were still open when the data ended (not in :attr:`trade_count`)."""
        return 0 if self.open_positions is None else len(self.open_positions)

    def __str__(self) -> str:
        held = f" (+{self.open_trades} open)" if self.open_trades else ""
        return (f"{self.strategy}: return {self.total_return:+.2%}, Sharpe {self.sharpe_text}, "
                f"max drawdown {self.max_drawdown:.2%}, {self.trade_count} trades{held} over {self.bars} bars")

    @property
    def sharpe_text(self) -> str:
        """The Sharpe ratio for display: ``1.23`` or ``n/a (only 12 bar returns …)``."""
        return metrics.format_sharpe(self.sharpe, self.sharpe_note)

    def summary(self) -> dict[str, Any]:
        """The scalar figures as a dict (one row of a validation table)."""
        return {"strategy": self.strategy, "fills": self.fills, "total_return": self.total_return, "sharpe": self.sharpe,
                "sharpe_note": self.sharpe_note, "max_drawdown": self.max_drawdown, "trades": self.trade_count,
                "open": self.open_trades,
                "bars": self.bars, "start_value": self.start_value, "end_value": self.end_value}

    def save_equity_png(self, path: str | Path, title: str | None = None, dpi: int = 100) -> Path:
        """Plot the price with the trades (▲ entry, ▼ exit), the equity curve and its drawdown to a PNG
        with matplotlib's Agg canvas; the time axis is in :attr:`tz` (the feed's zone).

        The figure is built on ``FigureCanvasAgg`` directly, so it works headless and never switches
        the process-wide backend (Backtrader's own plotting would force TkAgg).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figure(title, dpi).savefig(path, format="png")
        return path

    def figure(self, title: str | None = None, dpi: int = 100) -> Any:
        """The matplotlib figure :meth:`save_equity_png` writes: price with trade markers (when the
        prices are known), equity, drawdown."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        has_prices = self.prices is not None and len(self.prices) > 0
        fig = Figure(figsize=(10, 7 if has_prices else 5), dpi=dpi)
        FigureCanvasAgg(fig)
        ratios = [3, 3, 1] if has_prices else [3, 1]
        axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
        local = _local_naive
        if has_prices:
            price_ax = axes[0]
            prices = self.prices
            assert prices is not None  # has_prices
            price_ax.plot(local(prices.index, self.tz), prices.to_numpy(), lw=1.0, color="0.25",
                          label=self.symbol or "close")
            for col_time, col_price, marker, colour, label in (
                    ("entry_time", "entry_price", "^", "tab:green", "entry"),
                    ("exit_time", "exit_price", "v", "tab:red", "exit")):
                if len(self.trades):
                    price_ax.scatter(local(pd.DatetimeIndex(self.trades[col_time]), self.tz),
                                     self.trades[col_price].to_numpy(dtype=np.float64), marker=marker, s=40,
                                     color=colour, zorder=3, label=label)
            if self.open_trades:  # held at the end: its entry, hollow (not a closed trade, but there)
                held = self.open_positions
                assert held is not None  # open_trades > 0
                price_ax.scatter(local(pd.DatetimeIndex(held["entry_time"]), self.tz),
                                 held["entry_price"].to_numpy(dtype=np.float64), marker="^", s=60,
                                 facecolors="none", edgecolors="tab:green", zorder=3,
                                 label=f"{self.open_trades} open")
            price_ax.set_ylabel("price")
            price_ax.legend(loc="best", fontsize="small")
            price_ax.grid(alpha=0.3)
            price_ax.set_title(title or str(self))
        top, bottom = axes[-2], axes[-1]
        x = local(self.equity.index, self.tz) if len(self.equity) else []
        top.plot(x, self.equity.to_numpy(), lw=1.2, color="tab:blue")
        top.set_ylabel("portfolio value")
        if not has_prices:
            top.set_title(title or str(self))
        top.grid(alpha=0.3)
        values = self.equity.to_numpy(dtype=np.float64)
        drawdown = 1 - values / np.maximum.accumulate(values) if len(values) else values
        bottom.fill_between(x, -drawdown * 100, 0, color="tab:red", alpha=0.4)
        bottom.set_ylabel("drawdown %")
        bottom.set_xlabel(f"time ({self.tz})")
        bottom.grid(alpha=0.3)
        fig.autofmt_xdate()
        return fig


def _local_naive(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """``index`` as wall-clock times in ``tz`` (matplotlib draws naive times as they are)."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return idx.tz_convert(tz).tz_localize(None)


def _feed_tz(feed: Any) -> str:
    """The feed's ``tz`` as a zone name (UTC when it has none)."""
    from massive_feeds.backtrader.tz import zone_from

    try:
        zone = zone_from(getattr(feed.p, "tz", None))
    except Exception:  # noqa: BLE001 - a plot label never fails a run
        return "UTC"
    return str(getattr(zone, "key", None) or zone or "UTC")


def _as_feed(data_or_feed: Any) -> bt.feed.AbstractDataBase:
    if isinstance(data_or_feed, bt.feed.AbstractDataBase):
        return data_or_feed
    if isinstance(data_or_feed, pd.DataFrame):
        from massive_feeds.backtrader import MassiveData, MassiveQuoteData

        cls = MassiveQuoteData if {"bid", "ask"} <= set(data_or_feed.columns) else MassiveData
        return cls(bars=data_or_feed)
    raise TypeError(f"run_strategy needs a Backtrader feed or a bar DataFrame, not {type(data_or_feed).__name__}")


def run_strategy(
    strategy_cls: type[bt.Strategy],
    data_or_feed: Any,
    cash: float = 100_000.0,
    commission: float = 0.0,
    *,
    cheat_on_close: bool = False,
    fills: str = "close",
    **params: Any,
) -> BacktestResult:
    """Run ``strategy_cls(**params)`` on one feed (or a bar DataFrame) and measure it.

    Args:
        strategy_cls: a ``bt.Strategy`` subclass (the built-ins live in :mod:`strategies`).
        data_or_feed: a Backtrader feed (e.g. ``MassiveData``) or a frame in the standard bar schema
            (quote columns make it a ``MassiveQuoteData``).
        cash: starting cash.
        commission: fraction of traded value per fill (0.001 = 10 bp).
        cheat_on_close: fill market orders at the close of the signal bar (as vectorised engines do
            by default) instead of the next bar's open.
        fills: ``"close"`` (default): market orders fill at the bar price (the close with
            ``cheat_on_close``, else the next open); ``"quotes"``: buys at the ask and sells at the bid
            of the latest quote (see :mod:`massive_feeds.strategies.fills`; needs a feed or frame with bid/ask,
            else :class:`~massive_feeds.errors.NoQuotesError`).
        **params: the strategy's params.

    Returns:
        :class:`BacktestResult` with total return, Sharpe, max drawdown, trade count, trade log
        and equity curve.
    """
    if isinstance(data_or_feed, pd.DataFrame) and data_or_feed.empty:
        raise InvalidInputError("run_strategy got no bars: fetch or load a non-empty range first")
    fill_models.check_fills(fills)
    if fills == "quotes" and isinstance(data_or_feed, pd.DataFrame):
        fill_models.require_quote_columns(data_or_feed)
    feed = _as_feed(data_or_feed)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed)
    if fills == "quotes":
        fill_models.require_quote_lines(feed)
        cerebro.broker = fill_models.QuoteBroker()
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=commission)
    if cheat_on_close:
        cerebro.broker.set_coc(True)
    cerebro.addstrategy(strategy_cls, **params)
    cerebro.addanalyzer(_Equity, _name="equity")
    cerebro.addanalyzer(_Trades, _name="trades")
    strat = cerebro.run()[0]
    equity = strat.analyzers.equity.get_analysis()
    prices = strat.analyzers.equity.prices()
    trades = strat.analyzers.trades.get_analysis()
    end_value = float(cerebro.broker.getvalue())
    signals = None
    if hasattr(strat, "signal_log"):
        log_rows = strat.signal_log
        signals = pd.DataFrame({"entry": [r[1] for r in log_rows], "exit": [r[2] for r in log_rows]},
                               index=bt_nums_to_index([r[0] for r in log_rows]))
    feed = strat.datas[0]
    symbol = getattr(feed, "_symbol", None)
    if symbol is None and isinstance(data_or_feed, pd.DataFrame) and "symbol" in data_or_feed:
        symbol = str(data_or_feed["symbol"].iloc[0])
    label = data_or_feed.attrs.get("interval") if isinstance(data_or_feed, pd.DataFrame) else getattr(
        feed, "_interval_name", None)
    interval = metrics.bar_interval(prices.index, label)
    result = BacktestResult(
        strategy=strategy_cls.__name__, params=dict(strat.p._getkwargs()), start_value=float(cash),
        end_value=end_value, total_return=end_value / cash - 1.0,
        sharpe=metrics.sharpe_ratio(equity, interval, symbol), sharpe_note=metrics.sharpe_note(equity, interval, symbol),
        max_drawdown=metrics.max_drawdown(equity), trade_count=len(trades), bars=len(equity),
        trades=trades, equity=equity, signals=signals, symbol=symbol, prices=prices, tz=_feed_tz(feed),
        fills=fills, open_positions=strat.analyzers.trades.open_positions(),
    )
    log.info("%s", result)
    return result
