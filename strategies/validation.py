"""Strategy validation across datasets: historical bars and recorded live sessions, on both engines.

``validate(["sma_cross", "mean_reversion"], ["stocks_2024_q1", "massive_live_morning_20250104"])`` runs
every strategy on every symbol of every dataset and returns one row per run (total return, Sharpe,
max drawdown, trades). Recorded sessions go through Backtrader's *replay* path — the same feed code
that serves live data — so a strategy meets the recording exactly as it would have met the live
stream. Each run leaves an equity plot (PNG, and interactive HTML when plotly is installed) and its
trade log (CSV) in the output folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import pandas as pd

from massive_feeds.config import Settings, load_settings
from massive_feeds.datasets import dataset_info, dataset_path, load_dataset
from massive_feeds.errors import InvalidInputError

from . import STRATEGIES
from .runner import BacktestResult, run_strategy
from .vectorbt_runner import run_vectorbt

log = logging.getLogger(__name__)

Engine = Literal["backtrader", "vectorbt", "both"]
TABLE_COLUMNS = ["strategy", "dataset", "symbol", "engine", "total_return", "sharpe", "max_drawdown", "trades", "bars"]


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
                "total_return": r.total_return, "sharpe": r.sharpe, "max_drawdown": r.max_drawdown,
                "trades": r.trade_count, "bars": r.bars}


def resolve_strategies(names: Iterable[str] | None) -> dict[str, type]:
    chosen = list(names) if names else list(STRATEGIES)
    unknown = [n for n in chosen if n not in STRATEGIES]
    if unknown:
        raise InvalidInputError(f"Unknown strategies {unknown}; available: {', '.join(STRATEGIES)}")
    return {n: STRATEGIES[n] for n in chosen}


def _engines(engine: Engine) -> list[str]:
    if engine not in ("backtrader", "vectorbt", "both"):
        raise InvalidInputError(f"Invalid engine {engine!r}; use backtrader, vectorbt or both")
    return ["backtrader", "vectorbt"] if engine == "both" else [engine]


def backtrader_input(dataset: str, symbol: str, bars: pd.DataFrame, settings: Settings, replay: bool) -> Any:
    """A replay feed for recorded sessions (the live code path), the bars themselves otherwise."""
    info = dataset_info(dataset_path(dataset, settings=settings))
    if replay and info.get("source") == "live_recording" and info.get("recording"):
        from massive_feeds.backtrader import MassiveQuoteData

        return MassiveQuoteData(recording=dataset, dataname=symbol, interval=_feed_interval(info), settings=settings)
    return bars


def _feed_interval(info: dict[str, Any]) -> str:
    text = str(info.get("interval") or "1min")
    return {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60min": "1h"}.get(text, text)


def save_run_files(result: BacktestResult, folder: Path, stem: str, title: str) -> dict[str, Path]:
    """Equity PNG (+ HTML with plotly) and the trade log CSV of one run."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"png": result.save_equity_png(folder / f"{stem}.png", title=title)}
    trades = folder / f"{stem}_trades.csv"
    result.trades.to_csv(trades, index=False)
    files["trades"] = trades
    try:
        import plotly.graph_objects as go
    except ImportError:
        return files
    fig = go.Figure(go.Scatter(x=result.equity.index, y=result.equity.to_numpy(), name="equity"))
    fig.update_layout(title=title, xaxis_title="time (UTC)", yaxis_title="portfolio value")
    files["html"] = folder / f"{stem}.html"
    fig.write_html(files["html"], include_plotlyjs="cdn")
    return files


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
) -> pd.DataFrame:
    """Run strategies × datasets × symbols × engines; return the results table (``df.attrs["runs"]``
    holds the :class:`Run` objects with their result files).

    ``symbols`` limits the symbols taken from each dataset; ``params`` are strategy parameters passed to
    every chosen strategy (meant for a single strategy, as ``massive-feeds backtest`` does)."""
    settings = settings or load_settings()
    chosen = resolve_strategies(strategies)
    engines = _engines(engine)
    out = Path(output)
    runs: list[Run] = []
    data_sources: dict[str, str] = {}
    for name in datasets:
        bars_all = load_dataset(name, settings=settings)
        data_sources[name] = str(bars_all.attrs.get("data_source") or "unknown")
        available = sorted(bars_all["symbol"].unique())
        wanted = available if symbols is None else [s for s in symbols if s in available]
        if symbols is not None and not wanted:
            raise InvalidInputError(f"dataset {name} has none of {list(symbols)}; it holds {available}")
        for symbol in wanted:
            bars = bars_all[bars_all["symbol"] == symbol].reset_index(drop=True)
            for strat_name, cls in chosen.items():
                for eng in engines:
                    if eng == "backtrader":
                        # fills at the signal bar's close, as vectorbt does, so the two engines compare
                        feed = backtrader_input(name, symbol, bars, settings, replay_recordings)
                        result = run_strategy(cls, feed, cash, commission, cheat_on_close=True, **(params or {}))
                    else:
                        result = run_vectorbt(cls, bars, cash, commission, **(params or {}))
                    stem = f"{strat_name}_{eng}"
                    title = f"{strat_name} on {name} {symbol} ({eng})\n{result}"
                    files = save_run_files(result, out / name / symbol.replace(":", "_"), stem, title)
                    runs.append(Run(strat_name, name, symbol, eng, result, files))
                    log.info("%s %s %s %s: %s", strat_name, name, symbol, eng, result)
    table = pd.DataFrame([r.row() for r in runs], columns=TABLE_COLUMNS)
    table.attrs["runs"] = runs
    table.attrs["output"] = str(out)
    table.attrs["data_sources"] = data_sources  # dataset -> "massive" / "sandbox" / "unknown"
    return table


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
    shown = table.assign(
        total_return=table["total_return"].map("{:+.2%}".format), sharpe=table["sharpe"].map("{:.2f}".format),
        max_drawdown=table["max_drawdown"].map("{:.2%}".format),
    )
    heading = sandbox_heading(table)
    blocks = [heading] if heading else []
    for strategy, part in shown.groupby("strategy", sort=False):
        body = part.drop(columns="strategy").to_string(index=False)
        blocks.append(f"== {strategy} ==\n{body}")
    return "\n\n".join(blocks)
