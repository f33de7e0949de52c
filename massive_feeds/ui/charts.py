"""The app's charts as plain plotly figures (no Streamlit), so their rules are unit tested.

* :func:`rangebreaks` — hide the hours and days a stock does not trade (weekends, NYSE holidays from
  the session calendar, the overnight hours the bars never cover), so candles sit side by side;
* :func:`bars_figure` — candlesticks with a volume panel per symbol, stacked, or several symbols
  overlaid as closes in % since their first bar; trades drawn as ▲ entry / ▼ exit markers;
* :func:`live_candles` — OHLC candles of the live quote board's prices, building as quotes arrive.

Times are shown in New York wall-clock time (the exchange's), naive so plotly draws them as they are.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from ..schema import NEW_YORK
from ..sessions import calendar_bounds, has_sessions, session_schedule

Layout = Literal["stacked", "overlay"]
_ONE_DAY_MS = 86_400_000


def new_york_wall_clock(ts: Any) -> pd.DatetimeIndex:
    """``ts`` (tz-aware, or naive UTC) as naive New York wall-clock times, which plotly draws as they are: the one
    zone of every page's charts and tables."""
    return _local(ts)


def _local(ts: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(ts)
    return (idx if idx.tz is not None else idx.tz_localize("UTC")).tz_convert(NEW_YORK).tz_localize(None)


def rangebreaks(timestamps: pd.Series | pd.DatetimeIndex, symbols: Iterable[str],
                interval: pd.Timedelta | None) -> list[dict[str, Any]]:
    """Plotly ``xaxis.rangebreaks`` for bars of ``symbols`` at ``timestamps`` (UTC), on a New York axis.

    Only when every symbol follows the NYSE sessions (stocks, indices, options): crypto and forex
    trade around the clock and get no breaks. Weekends and the calendar's holidays are hidden; for
    intraday bars so are the hours between the day's last bar end and the next day's first bar (as
    the bars show them: 16:00→09:30 for regular-session bars, 20:00→04:00 for extended hours).
    """
    syms = list(symbols)
    if not syms or not all(has_sessions(s) for s in syms) or len(timestamps) == 0:
        return []
    local = _local(timestamps)
    breaks: list[dict[str, Any]] = [{"bounds": ["sat", "mon"]}]
    first, last = local.min().date(), local.max().date()
    lo, hi = calendar_bounds()
    if lo <= first and last <= hi:
        trading = set(session_schedule(first, last).index)
        days = pd.date_range(first, last, freq="B")
        holidays = [f"{d:%Y-%m-%d}" for d in days if d.date() not in trading]
        if holidays:
            breaks.append({"values": holidays, "dvalue": _ONE_DAY_MS})
    if interval is not None and interval < pd.Timedelta(days=1):
        hours = local.hour + local.minute / 60 + local.second / 3600
        start = float(np.min(hours))
        end = float(np.max(hours)) + interval / pd.Timedelta(hours=1)
        if end < 24 and start > 0 and end > start:
            breaks.append({"bounds": [round(end, 4), round(start, 4)], "pattern": "hour"})
    return breaks


def bars_figure(bars: pd.DataFrame, symbols: Iterable[str] | None = None, *, layout: Layout = "stacked",
                interval: str | None = None, trades: pd.DataFrame | None = None, title: str = "",
                open_positions: pd.DataFrame | None = None) -> Any:
    """Candlesticks + volume per symbol (``stacked``), or closes in % since the first bar with volume
    below (``overlay``). ``trades`` (``entry_time``/``entry_price``/``exit_time``/``exit_price``, one
    symbol) adds ▲/▼ markers on the first symbol's price; ``open_positions`` (``entry_time``/``entry_price``)
    a hollow ▲ per position still held at the end, named ``"N open"``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    syms = list(symbols) if symbols is not None else list(dict.fromkeys(bars["symbol"]))
    parts = {s: bars[bars["symbol"] == s] for s in syms}
    iv = _interval(interval, bars)
    if layout == "overlay" and len(syms) > 1:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=[0.75, 0.25])
        for s, part in parts.items():
            if part.empty:
                continue
            base = float(part["close"].iloc[0])
            fig.add_trace(go.Scatter(x=_local(part["timestamp"]), y=(part["close"] / base - 1) * 100, name=s,
                                     mode="lines", legendgroup=s), row=1, col=1)
            fig.add_trace(go.Bar(x=_local(part["timestamp"]), y=part["volume"], name=f"{s} volume",
                                 legendgroup=s, showlegend=False, opacity=0.6), row=2, col=1)
        fig.update_yaxes(title_text="close, % since first bar", row=1, col=1)
        fig.update_yaxes(title_text="volume", row=2, col=1)
        fig.update_layout(barmode="group", height=520)
        volume_rows = [2]
    else:
        n = len(syms)
        heights = [w for _ in syms for w in (0.75 / n, 0.25 / n)]
        fig = make_subplots(rows=2 * n, cols=1, shared_xaxes=True, vertical_spacing=0.03 if n > 1 else 0.04,
                            row_heights=heights, subplot_titles=[t for s in syms for t in (s, "")])
        for i, (s, part) in enumerate(parts.items()):
            x = _local(part["timestamp"])
            fig.add_trace(go.Candlestick(x=x, open=part["open"], high=part["high"], low=part["low"],
                                         close=part["close"], name=s, showlegend=False), row=2 * i + 1, col=1)
            up = (part["close"] >= part["open"]).to_numpy()
            fig.add_trace(go.Bar(x=x, y=part["volume"], name=f"{s} volume", showlegend=False,
                                 marker_color=np.where(up, "#26a69a", "#ef5350")), row=2 * i + 2, col=1)
            fig.update_yaxes(title_text="price", row=2 * i + 1, col=1)
            fig.update_yaxes(title_text="volume", row=2 * i + 2, col=1)
        fig.update_xaxes(rangeslider_visible=False)
        fig.update_layout(height=max(420, 330 * n))
        volume_rows = [2 * i + 2 for i in range(n)]
    if trades is not None and len(trades) and layout != "overlay":
        for col_t, col_p, sym, colour, name in (("entry_time", "entry_price", "triangle-up", "green", "entry"),
                                                ("exit_time", "exit_price", "triangle-down", "red", "exit")):
            fig.add_trace(go.Scatter(x=_local(trades[col_t]), y=trades[col_p], mode="markers", name=name,
                                     marker={"symbol": sym, "size": 12, "color": colour,
                                             "line": {"width": 1, "color": "black"}}), row=1, col=1)
    if open_positions is not None and len(open_positions) and layout != "overlay":
        fig.add_trace(go.Scatter(x=_local(open_positions["entry_time"]), y=open_positions["entry_price"],
                                 mode="markers", name=f"{len(open_positions)} open (held at the end)",
                                 marker={"symbol": "triangle-up-open", "size": 14, "color": "green",
                                         "line": {"width": 2, "color": "green"}}), row=1, col=1)
    breaks = rangebreaks(bars["timestamp"], syms, iv)
    fig.update_xaxes(rangebreaks=breaks)
    fig.update_xaxes(title_text="New York time", row=max(volume_rows), col=1)
    fig.update_layout(title=title, margin={"l": 10, "r": 10, "t": 50, "b": 10}, hovermode="x unified")
    return fig


def _interval(interval: str | None, bars: pd.DataFrame) -> pd.Timedelta | None:
    if interval:
        from ..schema import parse_interval

        try:
            iv = parse_interval(interval)
        except Exception:  # noqa: BLE001 - a label we cannot read: measure it from the bars
            return _infer(bars)
        if iv.is_intraday:
            return pd.Timedelta(minutes=iv.minutes)
        return pd.Timedelta(days=1)
    return _infer(bars)


def _infer(bars: pd.DataFrame) -> pd.Timedelta | None:
    if len(bars) < 2:
        return None
    steps = bars.sort_values("timestamp").groupby("symbol")["timestamp"].diff().dropna()
    steps = steps[steps > timedelta(0)]
    return None if steps.empty else pd.Timedelta(steps.mode().iloc[0])


def candles_from_prices(history: pd.DataFrame, bar: str = "5s") -> pd.DataFrame:
    """OHLC per symbol and ``bar`` bucket from the quote board's ``(time, symbol, price)`` history
    (epoch-aligned buckets, as every other bar in the project); ``ticks`` counts updates per bar."""
    if history.empty:
        return pd.DataFrame(columns=["symbol", "timestamp", "open", "high", "low", "close", "ticks"])
    width = pd.Timedelta(bar)
    h = history.dropna(subset=["price"]).assign(timestamp=lambda d: pd.DatetimeIndex(d["time"]).floor(width))
    g = h.groupby(["symbol", "timestamp"], sort=True)["price"]
    out = g.agg(open="first", high="max", low="min", close="last", ticks="size").reset_index()
    return out


def live_candles(history: pd.DataFrame, bar: str = "5s") -> Any:
    """Candlesticks of the live prices (mid, else last trade), one row per symbol, building in real time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    candles = candles_from_prices(history, bar)
    syms = list(dict.fromkeys(candles["symbol"]))
    # each symbol names its own y axis: a subplot title sat on the tick labels of the row above
    fig = make_subplots(rows=max(len(syms), 1), cols=1, vertical_spacing=0.1 if len(syms) > 1 else 0.08)
    for i, s in enumerate(syms):
        part = candles[candles["symbol"] == s]
        x = _local(part["timestamp"])  # New York, as the quotes table beside it and every other chart
        fig.add_trace(go.Candlestick(x=x, open=part["open"], high=part["high"], low=part["low"], close=part["close"],
                                     name=s, showlegend=False), row=i + 1, col=1)
        fig.update_yaxes(title_text=s, row=i + 1, col=1)
    fig.update_xaxes(rangeslider_visible=False)
    fig.update_layout(height=max(260, 240 * len(syms)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title=f"Live {bar} candles (mid, else last trade) · New York time")
    return fig
