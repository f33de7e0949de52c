"""Strategy validation across datasets: historical bars and recorded live sessions, on both engines.

``validate(["sma_cross", "mean_reversion"], ["stocks_2024_q1", "massive_live_morning_20250104"])`` runs
every strategy on every symbol of every dataset and returns one row per run (total return, Sharpe,
max drawdown, trades). Recorded sessions go through Backtrader's *replay* path — the same feed code
that serves live data — so a strategy meets the recording exactly as it would have met the live
stream. Each run leaves a plot (PNG, and interactive HTML when plotly is installed: the price with
entry/exit markers above the equity curve) and its trade log (CSV) in the output folder. The HTML
embeds plotly.js, so it opens offline. Sharpe is ``NaN`` when not meaningful (too few bars, see
:mod:`massive_feeds.strategies.metrics`); tables show it as ``n/a`` and give the reason.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import pandas as pd

from massive_feeds.config import Settings, load_settings
from massive_feeds.datasets import TICKS_INTERVAL, dataset_info, dataset_path, load_dataset
from massive_feeds.errors import InvalidInputError, NoDataError

from . import STRATEGIES, metrics, resolve_strategies  # noqa: F401 - STRATEGIES, resolve_strategies: also importable from here
from .runner import BacktestResult, run_strategy
from .vectorbt_runner import run_vectorbt

log = logging.getLogger(__name__)

Engine = Literal["backtrader", "vectorbt", "both"]
TABLE_COLUMNS = ["strategy", "dataset", "symbol", "engine", "fills", "total_return", "sharpe", "max_drawdown", "trades", "open",
                 "bars", "sharpe_note"]


@dataclass
class Run:
    """One strategy on one symbol of one dataset with one engine, and the files it wrote."""

    strategy: str
    dataset: str
    symbol: str
    engine: str
    result: BacktestResult
    files: dict[str, Path]

    def row(self) -> dict[str, Any]:
        r = self.result
        return {"strategy": self.strategy, "dataset": self.dataset, "symbol": self.symbol, "engine": self.engine,
                "fills": r.fills, "total_return": r.total_return, "sharpe": r.sharpe, "max_drawdown": r.max_drawdown,
                "trades": r.trade_count, "open": r.open_trades, "bars": r.bars, "sharpe_note": r.sharpe_note}


def _engines(engine: Engine) -> list[str]:
    if engine not in ("backtrader", "vectorbt", "both"):
        raise InvalidInputError(f"Invalid engine {engine!r}; use backtrader, vectorbt or both")
    return ["backtrader", "vectorbt"] if engine == "both" else [engine]


def backtrader_input(dataset: str, symbol: str, bars: pd.DataFrame, settings: Settings, replay: bool) -> Any:
    """A replay feed for recorded sessions (the live code path), the bars themselves otherwise."""
    info = dataset_info(dataset_path(dataset, settings=settings))
    if replay and info.get("paper"):  # a paper session: replayed as its strategy was fed, backfills included
        from .paper import paper_feed

        return paper_feed(dataset, settings)
    if info.get("interval") == TICKS_INTERVAL:  # historical ticks replay through the live feed path too
        from massive_feeds.backtrader import MassiveQuoteData

        # quote-only minutes become bars from the mid, as ticks_to_bars makes them for vectorbt
        return MassiveQuoteData(ticks=dataset, dataname=symbol, interval=_feed_interval(bars.attrs), settings=settings,
                                quote_only_bars=True)
    if replay and info.get("source") == "live_recording" and info.get("recording"):
        from massive_feeds.backtrader import MassiveQuoteData

        return MassiveQuoteData(recording=dataset, dataname=symbol, interval=_feed_interval(info), settings=settings)
    return bars


def _feed_interval(info: dict[str, Any]) -> str:
    text = str(info.get("interval") or "1min")
    return {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60min": "1h"}.get(text, text)


def save_run_files(result: BacktestResult, folder: Path, stem: str, title: str,
                   plotlyjs: Path | None = None) -> dict[str, Path]:
    """Plot PNG (+ offline HTML with plotly) and the trade log CSV of one run.

    ``plotlyjs``: where the HTML files of a validation share one copy of plotly.js (written there once, about
    4.9 MB, and linked by a relative path); ``None`` embeds it in the file (a single file that opens anywhere).
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {"png": result.save_equity_png(folder / f"{stem}.png", title=title)}
    trades = folder / f"{stem}_trades.csv"
    result.trades.to_csv(trades, index=False)
    files["trades"] = trades
    try:
        fig = result_figure(result, title.replace("\n", "<br>"))
    except ImportError:
        return files
    files["html"] = folder / f"{stem}.html"
    script: bool | str = True  # embedded: the file opens without a network
    if plotlyjs is not None:  # one shared copy (a demo wrote 191 MB of copies), still offline
        _write_plotlyjs(plotlyjs)
        script = os.path.relpath(plotlyjs, folder)
    fig.write_html(files["html"], include_plotlyjs=script)
    return files


def _write_plotlyjs(path: Path) -> None:
    """plotly.js at ``path`` (once; atomically, so a reader never sees half of it)."""
    if path.exists():
        return
    from plotly.offline import get_plotlyjs

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    partial.write_text(get_plotlyjs(), encoding="utf-8")
    partial.replace(path)


def result_figure(result: BacktestResult, title: str = "") -> Any:
    """A plotly figure of a run: the price with ▲ entries and ▼ exits on top, the equity curve below,
    times in the result's ``tz``. Raises ImportError without plotly."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    def local(index: Any) -> pd.DatetimeIndex:
        idx = pd.DatetimeIndex(index)
        return (idx if idx.tz is not None else idx.tz_localize("UTC")).tz_convert(result.tz).tz_localize(None)

    has_prices = result.prices is not None and len(result.prices) > 0
    rows = 2 if has_prices else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        row_heights=[0.55, 0.45] if has_prices else None)
    if has_prices:
        prices = result.prices
        assert prices is not None  # has_prices
        fig.add_trace(go.Scatter(x=local(prices.index), y=prices.to_numpy(), name=result.symbol or "close",
                                 line={"color": "#444", "width": 1}), row=1, col=1)
        trades = result.trades
        if len(trades):
            fig.add_trace(go.Scatter(x=local(trades["entry_time"]), y=trades["entry_price"], mode="markers",
                                     name="entry", marker={"symbol": "triangle-up", "size": 10, "color": "green"}),
                          row=1, col=1)
            fig.add_trace(go.Scatter(x=local(trades["exit_time"]), y=trades["exit_price"], mode="markers",
                                     name="exit", marker={"symbol": "triangle-down", "size": 10, "color": "red"}),
                          row=1, col=1)
        held = result.open_positions
        if held is not None and len(held):  # a position still open at the end: its entry, hollow
            fig.add_trace(go.Scatter(x=local(held["entry_time"]), y=held["entry_price"], mode="markers",
                                     name=f"{len(held)} open (held at the end)",
                                     marker={"symbol": "triangle-up-open", "size": 12, "color": "green"}),
                          row=1, col=1)
        fig.update_yaxes(title_text="price", row=1, col=1)
    fig.add_trace(go.Scatter(x=local(result.equity.index), y=result.equity.to_numpy(), name="equity",
                             line={"color": "#1f77b4"}), row=rows, col=1)
    fig.update_yaxes(title_text="portfolio value", row=rows, col=1)
    fig.update_xaxes(title_text=f"time ({result.tz})", row=rows, col=1)
    fig.update_layout(title=title, height=640 if has_prices else 420)
    return fig


def validate(
    strategies: Iterable[str] | None,
    datasets: Iterable[str],
    *,
    engine: Engine = "both",
    output: str | Path = "output/validation",
    cash: float = 100_000.0,
    commission: float = 0.0,
    replay_recordings: bool = True,
    symbols: Iterable[str] | None = None,
    params: dict[str, Any] | None = None,
    settings: Settings | None = None,
    tick_interval: str = "1min",
    progress: bool | None = None,
    fills: str = "close",
) -> pd.DataFrame:
    """Run strategies × datasets × symbols × engines; return the results table (``df.attrs["runs"]``
    holds the :class:`Run` objects with their result files).

    ``symbols`` limits the symbols taken from each dataset; ``params`` are strategy parameters passed to
    every chosen strategy (meant for a single strategy, as ``massive-feeds backtest`` does).

    Tick datasets (``massive-feeds ticks … --dataset``) are run on bars of ``tick_interval`` built from
    the ticks: in Backtrader by replaying the ticks through the live feed path (``MassiveQuoteData(ticks=…)``),
    in vectorbt with :func:`massive_feeds.record.ticks_to_bars` — the same bars.

    ``progress`` shows a bar over the runs on stderr (default: when stderr is a terminal).

    ``fills`` is the fill model of both engines (column ``fills`` of the table): ``"close"`` fills at
    the signal bar's close, ``"quotes"`` buys at the ask and sells at the bid of the latest quote
    (recordings and tick datasets; bars without quotes raise :class:`~massive_feeds.errors.NoQuotesError`)."""
    from tqdm.auto import tqdm

    from .fills import check_fills

    check_fills(fills)
    settings = settings or load_settings()
    chosen = resolve_strategies(strategies)
    engines = _engines(engine)
    datasets = list(datasets)
    out = Path(output)
    runs: list[Run] = []
    data_sources: dict[str, str] = {}  # dataset -> "massive" / "sandbox" / "unknown"
    show = sys.stderr.isatty() if progress is None else progress
    per_symbol = len(chosen) * len(engines)
    bar = tqdm(total=len(datasets) * per_symbol, desc="validate", unit="run", disable=not show, file=sys.stderr)
    try:
        runs = _validate_runs(chosen, datasets, engines, out, cash, commission, replay_recordings, symbols, params,
                              settings, bar, per_symbol, tick_interval, data_sources, fills)
    finally:
        bar.close()
    table = pd.DataFrame([r.row() for r in runs], columns=TABLE_COLUMNS)
    table.attrs["runs"] = runs
    table.attrs["output"] = str(out)
    table.attrs["data_sources"] = data_sources
    return table


def _validate_runs(chosen: dict[str, type], datasets: list[str], engines: list[str], out: Path, cash: float,
                   commission: float, replay_recordings: bool, symbols: Iterable[str] | None,
                   params: dict[str, Any] | None, settings: Settings, bar: Any, per_symbol: int,
                   tick_interval: str, data_sources: dict[str, str], fills: str = "close") -> list[Run]:
    runs: list[Run] = []
    for name in datasets:
        bars_all = load_dataset(name, settings=settings)
        data_sources[name] = str(bars_all.attrs.get("data_source") or "unknown")
        if bars_all.attrs.get("interval") == TICKS_INTERVAL:  # a tick dataset: bars of tick_interval
            from massive_feeds.record import ticks_to_bars

            bars_all = ticks_to_bars(bars_all, tick_interval)
            bars_all.attrs["interval"] = tick_interval
        if bars_all.empty:  # nothing to run on is a failure, not an empty table with exit code 0
            raise NoDataError(f"dataset {name} holds no bars: nothing to backtest", symbols={})
        if fills == "quotes":  # before any run: a dataset of plain bars cannot fill at quotes
            from .fills import require_quote_columns

            require_quote_columns(bars_all, f"the bars of dataset {name}")
        available = sorted(bars_all["symbol"].unique())
        wanted = available if symbols is None else [s for s in symbols if s in available]
        if symbols is not None and not wanted:
            raise InvalidInputError(f"dataset {name} has none of {list(symbols)}; it holds {available}")
        bar.total += (len(wanted) - 1) * per_symbol  # the total assumed one symbol per dataset
        bar.refresh()
        for symbol in wanted:
            bars = bars_all[bars_all["symbol"] == symbol].reset_index(drop=True)
            for strat_name, cls in chosen.items():
                for eng in engines:
                    if eng == "backtrader":
                        # fills at the signal bar's close, as vectorbt does, so the two engines compare
                        feed = backtrader_input(name, symbol, bars, settings, replay_recordings)
                        result = run_strategy(cls, feed, cash, commission, cheat_on_close=True, fills=fills,
                                              **(params or {}))
                    else:
                        result = run_vectorbt(cls, bars, cash, commission, fills=fills, **(params or {}))
                    stem = f"{strat_name}_{eng}" + ("_quotes" if fills == "quotes" else "")
                    title = f"{strat_name} on {name} {symbol} ({eng}, fills at {fills})\n{result}"
                    files = save_run_files(result, out / name / symbol.replace(":", "_"), stem, title,
                                           plotlyjs=out / "plotly.min.js")
                    runs.append(Run(strat_name, name, symbol, eng, result, files))
                    log.info("%s %s %s %s: %s", strat_name, name, symbol, eng, result)
                    bar.set_postfix_str(f"{name} {symbol} {strat_name} {eng}", refresh=False)
                    bar.update(1)
    return runs


def sandbox_heading(table: pd.DataFrame) -> str | None:
    """The warning line that heads a table whose datasets came from the built-in sandbox, else ``None``."""
    fake = sorted(name for name, src in table.attrs.get("data_sources", {}).items() if src == "sandbox")
    if not fake:
        return None
    return (f"*** SANDBOX DATA: {', '.join(fake)} came from the built-in sandbox, a synthetic market; "
            "these results say nothing about real prices ***")


def format_table(table: pd.DataFrame) -> str:
    """The validation table for a terminal, one block per strategy."""
    if table.empty:
        return "(no runs)"
    notes = table["sharpe_note"] if "sharpe_note" in table else pd.Series(None, index=table.index, dtype=object)
    shown = table.assign(
        total_return=table["total_return"].map("{:+.2%}".format),
        sharpe=table["sharpe"].map(metrics.format_sharpe),
        max_drawdown=table["max_drawdown"].map("{:.2%}".format),
    ).drop(columns=["sharpe_note"], errors="ignore")
    heading = sandbox_heading(table)
    blocks = [heading] if heading else []
    for strategy, part in shown.groupby("strategy", sort=False):
        body = part.drop(columns="strategy").to_string(index=False)
        blocks.append(f"== {strategy} ==\n{body}")
    reasons = sorted({str(n) for n in notes.dropna()})
    if reasons:
        blocks.append("Sharpe n/a = not meaningful on so small a sample: " + "; ".join(reasons[:5])
                      + (f" (+{len(reasons) - 5} more)" if len(reasons) > 5 else "")
                      + f". It needs at least {metrics.MIN_RETURNS} bar returns covering one full session.")
    return "\n\n".join(blocks)
