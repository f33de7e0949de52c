"""The ``massive-feeds`` command line.

With no API key configured every command uses the built-in sandbox (a synthetic market started in this
process, announced once on stderr); ``--sandbox`` (or ``MASSIVE_SANDBOX=1``) forces it, ``MASSIVE_SANDBOX=0``
forbids it.

Conventions: ``--help`` on every command; results on stdout; errors on stderr as one line; exit code 2
for usage errors and bad input (``InvalidInputError``; ``InvalidSettingError``: a plan limit <= 0, an
unwritable or full home), 1 for other expected failures (missing key, quota, no data, server errors), 130 on
Ctrl-C. No tracebacks for expected errors (``--debug`` shows them). Every argument (symbols, dates,
intervals, dataset and recording names, strategy parameters, durations) is checked before any network
call or recording starts.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .. import redact
from ..errors import InvalidInputError, MassiveError
from .._optional import as_missing_dependency

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("massive_feeds.cli")

Command = Callable[[argparse.Namespace], int]


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="fetch bars into a dataset", description="Fetch historical bars (auto/rest/flat_file) and save them as a dataset.")
    p.add_argument("symbols", help="comma-separated tickers, e.g. AAPL,MSFT,X:BTCUSD")
    p.add_argument("--start", required=True, help="YYYY-MM-DD or ISO datetime (UTC)")
    p.add_argument("--end", required=True, help="YYYY-MM-DD or ISO datetime (UTC), inclusive")
    p.add_argument("--interval", default="1h", help="1m 5m 15m 30m 1h 4h 1d 1w 1M (default 1h)")
    p.add_argument("--method", default="auto", choices=["auto", "rest", "flat_file"])
    p.add_argument("--dataset", help="save under this dataset name (default: print a preview only)")
    p.add_argument("--append", action="store_true", help="append to the dataset (de-duplicated)")
    p.add_argument("--overwrite", action="store_true", help="replace the dataset if it exists (refused otherwise)")
    p.add_argument("--tag", action="append", default=[], help="tag the dataset (repeatable)")
    p.add_argument("--unadjusted", action="store_true", help="raw prices instead of split-adjusted")
    p.add_argument("--adjusted", default=None, metavar="{splits,total,raw}",
                   help="splits (default: split-adjusted, as Massive), total (splits and cash dividends: total-return "
                        "prices) or raw (as traded)")
    p.add_argument("--session", default="extended", choices=["extended", "regular"],
                   help="extended (default: pre-market to after-hours) or regular (09:30-16:00 New York, NYSE days)")
    p.add_argument("--roll-adjust", default="none", choices=["none", "ratio", "difference"],
                   help="continuous futures (ES.c.0): none (default: raw prices), ratio or difference (back-adjusted)")
    p.set_defaults(func=_cmd_fetch)


def _adjustment(args: argparse.Namespace) -> str:
    """``--adjusted`` (validated here, before any call) or ``--unadjusted``; both at once must agree."""
    from ..errors import InvalidInputError
    from ..schema import parse_adjustment

    given, unadjusted = getattr(args, "adjusted", None), getattr(args, "unadjusted", False)  # ticks has neither
    if given is None:
        return "raw" if unadjusted else "splits"
    chosen = parse_adjustment(given)
    if unadjusted and chosen != "raw":
        raise InvalidInputError(f"--unadjusted contradicts --adjusted {given}; give one of them")
    return chosen


def _check_fetch_args(args: argparse.Namespace) -> None:
    """Every fetch argument, before any call: symbols, dates, interval, dataset name."""
    from ..datasets import validate_name
    from ..schema import normalize_symbols, parse_date_range, parse_interval

    normalize_symbols(args.symbols)
    _adjustment(args)
    parse_interval(args.interval)
    parse_date_range(args.start, args.end)
    if args.dataset is not None:
        validate_name(args.dataset)
        _refuse_existing(args)


def _refuse_existing(args: argparse.Namespace) -> None:
    """An existing ``--dataset`` without ``--append``/``--overwrite`` is refused before any call is spent."""
    from ..datasets import dataset_info, dataset_path
    from ..errors import DatasetExistsError

    path = dataset_path(args.dataset)
    if path.exists() and not getattr(args, "append", False) and not getattr(args, "overwrite", False):
        rows = dataset_info(path).get("rows", "?")
        raise DatasetExistsError(f"dataset {args.dataset!r} already exists ({rows} rows in {path.parent}); "
                                 "add --append to add to it or --overwrite to replace it")


def _report_gaps(df: "object") -> None:
    """Name, on stderr, the symbols without bars and the flat-file trading days missing or filled over REST."""
    attrs = getattr(df, "attrs", {})
    for symbol, reason in (attrs.get("empty_reasons") or {}).items():
        print(f"warning: no bars for {symbol}: {reason}", file=sys.stderr)
    if attrs.get("filled_over_rest"):
        print(f"note: no flat file yet for {', '.join(attrs['filled_over_rest'])}; those days came over REST",
              file=sys.stderr)
    if attrs.get("unfilled_days"):
        print(f"warning: no flat file for trading day(s) {', '.join(attrs['unfilled_days'])} (not yet published?); "
              "they are missing from the result", file=sys.stderr)
    if attrs.get("splits_age_hours") and attrs["splits_age_hours"] > 24:
        print(f"warning: split adjustment uses a splits list from {attrs.get('splits_as_of')} "
              f"({attrs['splits_age_hours']:.0f} h old): the REST quota could not refresh it", file=sys.stderr)
    if attrs.get("dividends_age_hours") and attrs["dividends_age_hours"] > 24:
        print(f"warning: total-return adjustment uses a dividends list from {attrs.get('dividends_as_of')} "
              f"({attrs['dividends_age_hours']:.0f} h old): the REST quota could not refresh it", file=sys.stderr)
    if attrs.get("adjustment") == "total":
        print(f"note: total-return prices: {len(attrs.get('dividends') or [])} dividend(s) applied "
              "(df.attrs['dividends'])", file=sys.stderr)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ..datasets import save_dataset
    from ..fetch import fetch_data

    _check_fetch_args(args)
    df = fetch_data(args.symbols, args.start, args.end, args.interval, args.method, adjusted=_adjustment(args),
                    progress=sys.stderr.isatty(), session=args.session, roll_adjust=args.roll_adjust)
    origin = " from the SANDBOX (synthetic market)" if df.attrs.get("source") == "sandbox" else ""
    print(f"{len(df):,} bars for {df['symbol'].nunique()} symbol(s){origin} via {df.attrs.get('method')} "
          f"({df.attrs.get('method_reason', '')})")
    _report_gaps(df)
    print_rolls(df)
    if args.dataset:
        path = save_dataset(df, args.dataset, append=args.append, overwrite=args.overwrite, tags=args.tag)
        print(f"saved dataset {args.dataset} -> {path}")
    else:
        print(df.head(10).to_string(index=False))
    return 0


def print_rolls(df: "pd.DataFrame") -> None:
    """The roll table of a continuous futures series (which contract it holds when), if ``df`` has one."""
    if df.attrs.get("rolls"):  # JSON-safe records (see massive_feeds.roll_table)
        from ..futures_symbols import roll_table

        print(f"futures rolls (roll_adjust={df.attrs.get('roll_adjust', 'none')}):")
        print(roll_table(df).to_string(index=False))


def _add_ticks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ticks", help="fetch historical trades/quotes into a dataset",
                       description="Fetch historical trades or quotes (REST v3 or the trades_v1/quotes_v1 flat files) "
                                   "and save them as a tick dataset, which backtest/validate replay through the live "
                                   "feed path.")
    p.add_argument("symbols", help="comma-separated tickers, e.g. AAPL or AAPL,MSFT")
    p.add_argument("--start", required=True, help="YYYY-MM-DD (a whole New York day) or ISO datetime (UTC)")
    p.add_argument("--end", required=True, help="YYYY-MM-DD (inclusive) or ISO datetime (UTC)")
    p.add_argument("--kind", default="quotes", choices=["quotes", "trades", "both"],
                   help="quotes (default), trades, or both")
    p.add_argument("--method", default="auto", choices=["auto", "rest", "flat_file"])
    p.add_argument("--dataset", help="save under this dataset name (default: print a preview only)")
    p.add_argument("--append", action="store_true", help="append to the dataset (de-duplicated)")
    p.add_argument("--overwrite", action="store_true", help="replace the dataset if it exists (refused otherwise)")
    p.add_argument("--tag", action="append", default=[], help="tag the dataset (repeatable)")
    p.set_defaults(func=_cmd_ticks)


def _cmd_ticks(args: argparse.Namespace) -> int:
    from ..datasets import save_dataset
    from ..ticks import fetch_ticks

    kinds = ["trades", "quotes"] if args.kind == "both" else [args.kind]
    _check_fetch_args(argparse.Namespace(symbols=args.symbols, interval="1m", start=args.start, end=args.end,
                                         dataset=args.dataset, append=args.append,
                                         overwrite=args.overwrite))  # before any call
    df = fetch_ticks(args.symbols.split(","), args.start, args.end, kinds, args.method, progress=sys.stderr.isatty())
    print(f"{len(df):,} {'/'.join(kinds)} for {df['symbol'].nunique()} symbol(s) via {df.attrs.get('method')} "
          f"({df.attrs.get('method_reason', '')})")
    if args.dataset:
        path = save_dataset(df, args.dataset, append=args.append, overwrite=args.overwrite, tags=args.tag,
                            source=f"ticks_{df.attrs.get('method')}")
        print(f"saved tick dataset {args.dataset} -> {path}")
    else:
        cols = ["timestamp", "symbol", "kind", "price", "size", "bid", "ask", "bid_size", "ask_size", "exchange"]
        print(df[cols].head(10).to_string(index=False))
    return 0


def _add_quota(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quota", help="show plan limits and usage", description="Show plan limits, usage and the colour level.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tips", action="store_true", help="also print the free-tier tips")
    p.set_defaults(func=_cmd_quota)


def _cmd_quota(args: argparse.Namespace) -> int:
    import json

    from ..quota import free_tier_info, quota_status

    from ..runtime import resolve_settings

    settings = resolve_settings()
    status = quota_status(settings)
    if args.json:
        print(json.dumps({**status.as_dict(), "source": settings.source}, indent=2))
    else:
        if settings.source == "sandbox":
            print("Sandbox quota (the built-in sandbox's own counters, not a Massive.com account)")
        print(status)
    if args.tips:
        print("\n" + free_tier_info())
    return 0


def _add_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list saved datasets", description="List saved datasets and recordings.")
    p.set_defaults(func=_cmd_datasets)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..datasets import list_datasets

    settings = load_settings()
    print(f"datasets folder: {settings.datasets_dir} (MASSIVE_DATASETS_DIR changes it)")
    table = list_datasets(settings=settings)
    if table.empty:
        print("no datasets yet (massive-feeds fetch ... --dataset NAME)")
        return 0
    print(table.drop(columns=["path"]).to_string(index=False))
    return 0


def _add_symbols(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("symbols", help="list tradable symbols", description="List symbols from the reference tickers endpoint (cached).")
    p.add_argument("--market", choices=["stocks", "crypto", "fx", "indices", "otc"], help="only this market")
    p.add_argument("--search", help="filter by ticker or name")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--plain", action="store_true", help="tickers only, one per line (default: a table with "
                                                         "name, market, type and exchange)")
    p.set_defaults(func=_cmd_symbols)


def _cmd_symbols(args: argparse.Namespace) -> int:
    from .live import cmd_symbols

    return cmd_symbols(args)


def _add_stream(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="print live quotes", description="Print live quotes until Ctrl-C (or --count/--seconds).")
    p.add_argument("symbols", help="comma-separated tickers")
    p.add_argument("--count", type=int, default=0, help="stop after this many quotes (0 = no limit)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0 = no limit)")
    p.add_argument("--wait", type=float, default=10.0,
                   help="give up (exit 1) when no quote arrives within this many seconds (default 10)")
    p.add_argument("--speed", type=float, help="the built-in sandbox's market clock speed (default 30: half a market "
                                               "minute per second; 1 = real time); only without an API key")
    p.set_defaults(func=_cmd_stream)


def _cmd_stream(args: argparse.Namespace) -> int:
    from .live import cmd_stream

    if args.count < 0 or not args.seconds >= 0:
        raise InvalidInputError(f"--count and --seconds must be >= 0 (0 = no limit), got {args.count}, {args.seconds:g}")
    if not args.wait > 0:
        raise InvalidInputError(f"--wait must be a positive number of seconds, got {args.wait:g}")
    _apply_speed(args.speed)
    return cmd_stream(args)


def _apply_speed(speed: float | None) -> None:
    """``--speed``: this process's built-in sandbox runs its clock at ``speed`` (``MASSIVE_SANDBOX_SPEED``);
    refused when an API key (or an external sandbox) decides the clock instead."""
    import math
    import os

    from ..config import load_settings

    if speed is None:
        return
    if not (math.isfinite(speed) and 0 < speed <= 10_000):
        raise InvalidInputError(f"--speed must be between 0 and 10000 (1 = real time), got {speed:g}")
    settings = load_settings()
    if not settings.uses_sandbox or os.environ.get("MASSIVE_REST_URL"):
        raise InvalidInputError("--speed sets the built-in sandbox's clock; this command talks to "
                                f"{settings.rest_url}, whose clock it cannot change")
    os.environ["MASSIVE_SANDBOX_SPEED"] = f"{speed:g}"


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a live session into a dataset",
                       description="Record quotes and trades durably, then save bars (and the raw event log) as a dataset.")
    p.add_argument("symbols", help="comma-separated tickers")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="how long to record (Ctrl-C stops early); a countdown with events and bars so far "
                        "runs on stderr")
    p.add_argument("--tag", default="session", help="dataset tag, e.g. morning, fomc, earnings")
    p.add_argument("--name", help="dataset name (default massive_live_<tag>_<YYYYMMDD>)")
    p.add_argument("--interval", default="1min", help="bar size for the dataset (1s, 1min, 5min ...)")
    p.add_argument("--save-dir", default="data/live_recorded", help="where the raw event logs go")
    p.add_argument("--speed", type=float, help="the built-in sandbox's market clock speed (default 30: half a market "
                                               "minute per second; 1 = real time); only without an API key")
    p.set_defaults(func=_cmd_record)


def _check_record_args(args: argparse.Namespace) -> None:
    """Every record argument, before connecting: symbols, duration, bar size, dataset name (also the
    default one built from --tag)."""
    import math
    from datetime import date

    from ..datasets import validate_name
    from ..record.bars import interval_ms
    from ..schema import normalize_symbols

    normalize_symbols(args.symbols)
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise InvalidInputError(f"--seconds must be a positive number of seconds, got {args.seconds:g}")
    interval_ms(args.interval)
    validate_name(args.name if args.name else f"massive_live_{args.tag}_{date.today():%Y%m%d}")


def _cmd_record(args: argparse.Namespace) -> int:
    from .live import cmd_record

    _check_record_args(args)
    _apply_speed(args.speed)
    return cmd_record(args)


def _parse_params(pairs: list[str], strategy: str | None = None) -> dict[str, float | int | str]:
    """``["fast=5", "entry_z=1.5"]`` → ``{"fast": 5, "entry_z": 1.5}``. With ``strategy``, each name must be
    one of its parameters and each value must have the type of the parameter's default (an int for
    ``fast``, a number for ``entry_z``)."""
    defaults: dict[str, object] | None = None
    if strategy is not None:
        from massive_feeds.strategies.validation import resolve_strategies

        cls = resolve_strategies([strategy])[strategy]
        defaults = dict(cls.params._getpairs())  # type: ignore[attr-defined]
    out: dict[str, float | int | str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"--param needs NAME=VALUE, got {pair!r}")
        if defaults is not None and key not in defaults:
            raise InvalidInputError(f"{strategy} has no parameter {key!r}; its parameters: "
                                    + ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()))
        default = None if defaults is None else defaults[key]
        casts: tuple[type, ...] = ((int,) if isinstance(default, int) and not isinstance(default, bool)
                                   else (float,) if isinstance(default, float) else (int, float))
        for cast in casts:
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            if defaults is not None and default is not None:
                kind = "an integer" if casts == (int,) else "a number"
                raise InvalidInputError(f"--param {key} must be {kind} (default {default!r}), got {value!r}")
            out[key] = value
    return out


def _check_dataset_names(names: list[str]) -> None:
    from ..datasets import validate_name

    for name in names:
        if not (name.endswith(".parquet") and ("/" in name or "\\" in name)):  # a .parquet path is allowed
            validate_name(name)


def _add_backtest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="run one strategy on a dataset or recording",
                       description="Run one strategy on a saved dataset (or recorded session) with Backtrader or vectorbt.")
    p.add_argument("strategy", help="sma_cross, mean_reversion, breakout or spread_capture")
    p.add_argument("dataset", help="dataset name (recorded sessions replay through the live feed path)")
    p.add_argument("--symbol", help="which symbol of the dataset (default: every symbol)")
    p.add_argument("--engine", default="backtrader", choices=["backtrader", "vectorbt", "both"])
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--commission", type=float, default=0.0, help="fraction per fill, e.g. 0.0005")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter (repeatable)")
    p.add_argument("--output", default="output/backtest", help="folder for the equity plot and trade log")
    _add_fills_option(p)
    p.set_defaults(func=_cmd_backtest)


def _add_fills_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fills", default="close", choices=["close", "quotes"],
                   help="close (default): market orders fill at the bar's close; quotes: buys at the ask, sells at "
                        "the bid of the latest quote (recordings and tick datasets only)")


def _cmd_backtest(args: argparse.Namespace) -> int:
    from massive_feeds.strategies.validation import format_table, sandbox_heading, validate

    from .recordings import recording_folder_hint

    params = _parse_params(args.param, args.strategy)  # unknown strategy / parameter / value: before any run
    recording_folder_hint(args.dataset)
    _check_dataset_names([args.dataset])
    table = validate([args.strategy], [args.dataset], engine=args.engine, output=args.output, cash=args.cash,
                     commission=args.commission, symbols=[args.symbol] if args.symbol else None,
                     params=params, fills=args.fills)
    if heading := sandbox_heading(table):
        print(heading)
    for run in table.attrs["runs"]:
        print(f"{run.symbol} ({run.engine}): {run.result}\n  plot: {run.files['png']}\n  trades: {run.files['trades']}")
    print("\n" + format_table(table))
    return 0


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="strategies x datasets table (return, Sharpe, drawdown, trades)",
                       description="Run strategies over historical datasets and recorded live sessions; print a table "
                                   "per strategy and write equity plots (PNG/HTML) and trade logs (CSV).")
    p.add_argument("--datasets", required=True, help="comma-separated dataset names")
    p.add_argument("--strategies", help="comma-separated (default: all)")
    p.add_argument("--engine", default="both", choices=["backtrader", "vectorbt", "both"])
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--commission", type=float, default=0.0)
    p.add_argument("--output", default="output/validation")
    _add_fills_option(p)
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from massive_feeds.strategies.validation import format_table, validate

    from massive_feeds.strategies.validation import resolve_strategies

    names = args.strategies.split(",") if args.strategies else None
    resolve_strategies(names)
    _check_dataset_names(args.datasets.split(","))
    table = validate(names, args.datasets.split(","), engine=args.engine, output=args.output, cash=args.cash,
                     commission=args.commission, fills=args.fills)
    print(format_table(table))
    print(f"\nplots and trade logs: {Path(args.output).resolve()}")
    return 0


def _add_sandbox(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sandbox", help="run (or share) the local Massive-compatible sandbox",
                       description="Run the sandbox servers until Ctrl-C and print, as one line, the exports that "
                                   "point clients at it. --print-env prints that line for the shared sandbox "
                                   "(starting one in the background if none runs), so several shells use one: "
                                   'eval "$(massive-feeds sandbox --print-env)".')
    p.add_argument("--rate-limit", type=int, default=None, help="REST requests per minute the sandbox allows")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-websocket", action="store_true")
    p.add_argument("--no-s3", action="store_true")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--print-env", action="store_true",
                      help="print the export line of the running shared sandbox (start one in the background if none)")
    mode.add_argument("--stop", action="store_true", help="stop the shared sandbox started with --print-env")
    p.set_defaults(func=_cmd_sandbox)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from . import shared_sandbox

    if args.print_env:
        print(shared_sandbox.export_line(shared_sandbox.running_or_start(args)))
        return 0
    if args.stop:
        print(shared_sandbox.stop_running())
        return 0
    return shared_sandbox.serve(args)


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="build or update the Parquet history store from flat files",
                       description="Ingest flat-file days into the history store, incrementally (days already stored "
                                   "are skipped, republished files re-ingested), on a local pool or a Dask cluster.")
    p.add_argument("--dataset", default="us_stocks_sip/minute_aggs_v1",
                   help="<prefix>/minute_aggs_v1 or <prefix>/day_aggs_v1 (default us_stocks_sip/minute_aggs_v1); "
                        "ticks: <prefix>/trades_v1 or <prefix>/quotes_v1 with --symbols")
    p.add_argument("--start", required=True, help="first New York session date, YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last New York session date, YYYY-MM-DD (inclusive)")
    p.add_argument("--symbols", help="only these comma-separated tickers (default: the whole market; "
                                     "required for trades_v1/quotes_v1)")
    p.add_argument("--store", help="folder or s3://bucket/prefix?endpoint_override=… "
                                   "(default: $MASSIVE_FEEDS_STORE or <home>/store)")
    p.add_argument("--engine", default="local", choices=["local", "dask"])
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (default: a LocalCluster)")
    p.add_argument("--workers", type=int, help="pool size or LocalCluster workers (default: one per core)")
    p.add_argument("--processes", action="store_true", help="local engine: a process pool instead of threads")
    p.add_argument("--no-refresh", action="store_true",
                   help="trust the store's manifest: no S3 listing for days it already has")
    p.add_argument("--drop-flatfiles", action="store_true",
                   help="remove each day from the flat-file cache once it is in the store")
    p.set_defaults(func=_cmd_ingest)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ..store import ingest

    report = ingest(args.dataset, args.start, args.end, args.symbols, store=args.store, engine=args.engine,
                    scheduler=args.scheduler, workers=args.workers, processes=True if args.processes else None,
                    refresh=not args.no_refresh, keep_flatfiles=not args.drop_flatfiles, progress=sys.stderr.isatty())
    print(report)
    return 0


def _add_compact(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compact", help="merge a history store's days into month files (no request to Massive)",
                       description="Merge the stored days of a bar dataset into one file per month, sorted by symbol: "
                                   "what ingest does after downloading, for a store written in the older per-day "
                                   "layout (still readable, only slower to query) or ingested with compact=False.")
    p.add_argument("--dataset", default="us_stocks_sip/minute_aggs_v1",
                   help="<prefix>/minute_aggs_v1 or <prefix>/day_aggs_v1 (default us_stocks_sip/minute_aggs_v1)")
    p.add_argument("--start", help="first date, YYYY-MM-DD (with --end; default: every stored month)")
    p.add_argument("--end", help="last date, YYYY-MM-DD (inclusive)")
    p.add_argument("--store", help="folder or s3://bucket/prefix?endpoint_override=… "
                                   "(default: $MASSIVE_FEEDS_STORE or <home>/store)")
    p.set_defaults(func=_cmd_compact)


def _cmd_compact(args: argparse.Namespace) -> int:
    from ..store import compact

    months = compact(args.dataset, args.start, args.end, store=args.store)
    print(f"merged into month files: {', '.join(months)}" if months else "nothing to merge: every month is one file")
    return 0


def _add_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quality", help="data-quality report of a dataset",
                       description="Per symbol and New York day: session coverage, no-trade minutes vs suspicious "
                                   "gaps, duplicates, order, OHLC and price errors, split jumps, recording gaps.")
    p.add_argument("dataset", help="dataset name (massive-feeds datasets) or a .parquet path")
    p.add_argument("--all", action="store_true", help="list every day, not only those with findings")
    p.add_argument("--csv", help="also write the full report to this CSV file")
    p.add_argument("--no-splits", action="store_true",
                   help="do not fetch the splits list (by default it is fetched when an API key is configured)")
    p.add_argument("--gap-minutes", type=float, default=15.0, help="shortest suspicious gap (default 15)")
    p.add_argument("--strict", action="store_true", help="exit with code 1 when any day has an error")
    p.set_defaults(func=_cmd_quality)


def _cmd_quality(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..datasets import load_dataset
    from ..quality import format_quality_report, quality_report
    from ..runtime import settings_for_source

    from .recordings import recording_folder_hint

    recording_folder_hint(args.dataset)
    settings = load_settings()
    df = load_dataset(args.dataset, settings=settings)
    splits, why = None, None
    # the splits come from where the prices came from: the sandbox's for sandbox data, Massive's otherwise
    settings = settings_for_source(settings, df.attrs.get("data_source"))
    if args.no_splits:
        why = "not fetched (--no-splits)"
    elif settings.sandbox == "off" and not settings.api_key:
        why = "not fetched: no API key configured"
    else:
        from ..splits import splits_for

        try:
            splits = splits_for(df, settings=settings)
        except MassiveError as exc:
            why = f"could not be fetched ({exc})"
    schedules, no_schedule = _futures_schedules(df, settings)
    report = quality_report(df, splits=splits, gap_minutes=args.gap_minutes, schedules=schedules)
    if why:
        report.attrs["notes"] = [*report.attrs.get("notes", []), f"Splits list {why}."]
    if no_schedule:
        report.attrs["notes"] = [*report.attrs.get("notes", []), f"Futures schedules could not be fetched ({no_schedule})."]
    print(format_quality_report(report, all_days=args.all))
    if args.csv:
        report.to_csv(args.csv, index=False)
        print(f"full report written to {args.csv}")
    return 1 if args.strict and (report["status"] == "error").any() else 0


def _futures_schedules(df: Any, settings: Any) -> tuple[dict | None, str | None]:
    """The futures products' sessions for the quality report (a dataset keeps no schedule): (schedules, why not)."""
    from ..futures import schedules_for

    if df.attrs.get("schedules") is not None:
        return None, None  # the report reads them from the frame
    try:
        return schedules_for(df, settings) or None, None
    except MassiveError as exc:
        return None, str(exc)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="list damaged files (datasets, store, caches, recordings)",
                       description="Read every page of every Parquet file (saved datasets, the history store, the "
                                   "caches) verifying its checksums and seal, and every record of the recordings "
                                   "found there; list the damaged files. Exit code 1 when any is damaged.")
    p.add_argument("paths", nargs="*", help="folders or files to scan (default: the datasets folder, the local "
                                            "store and the caches)")
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..config import load_settings
    from ..record.log import verify_recordings
    from ..storage import verify_files

    if args.paths:
        roots = [Path(p) for p in args.paths]
    else:
        settings = load_settings()
        store = settings.store or str(settings.data_home / "store")
        roots = [settings.datasets_dir, settings.cache_dir, *([Path(store)] if "://" not in store else [])]
    checked, bad = verify_files(*roots)
    logs, damaged_logs = verify_recordings(*roots)
    for path, reason in [(b.path, b.reason) for b in bad] + [(d.path, d.reason) for d in damaged_logs]:
        print(f"DAMAGED {path}: {reason}")
    print(f"{len(checked)} Parquet file(s) and {logs} recording(s) checked under {', '.join(map(str, roots))}: "
          f"{len(bad) + len(damaged_logs)} damaged")
    return 1 if bad or damaged_logs else 0


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the Streamlit app (Data Loader, Live Trading)",
                       description="Run the Streamlit app headless and print its address. Needs the ui extra: "
                                   "pip install 'massive-feeds[ui]'. With no API key configured the app starts "
                                   "the local sandbox and says so in a banner.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--sandbox", choices=["auto", "on", "off"], default=None,
                   help="auto (default): the sandbox when no key is configured; on: always; off: never")
    p.set_defaults(func=_cmd_ui)


def _cmd_ui(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from ..ui import require_streamlit, streamlit_command

    require_streamlit()
    if args.sandbox:
        os.environ["MASSIVE_UI_SANDBOX"] = args.sandbox
    cmd = streamlit_command(args.host, args.port)
    print(f"Massive feeds UI on http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if os.name == "posix":
        os.execv(cmd[0], cmd)  # become Streamlit: signals (Ctrl-C, SIGTERM) reach it directly
    return subprocess.call(cmd)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the sandbox (no key, no network)",
                       description="Start the sandbox, record a live session, fetch history over REST and flat files, "
                                   "validate every strategy on Backtrader (replaying the recording) and vectorbt.")
    p.add_argument("--output", default="output/demo", help="folder for datasets, recordings, plots and logs")
    p.add_argument("--record-seconds", type=float, default=40.0, help="length of the live recording")
    p.add_argument("--speed", type=float, default=120.0,
                   help="the demo sandbox's market clock speed (default 120: two market hours a minute)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    import math

    from .demo import run_demo

    if not (math.isfinite(args.speed) and 0 < args.speed <= 10_000):
        raise InvalidInputError(f"--speed must be between 0 and 10000 (1 = real time), got {args.speed:g}")
    return run_demo(args.output, args.record_seconds, speed=args.speed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="massive-feeds",
        description="Massive.com market data for Backtrader and vectorbt: fetch, stream, record, backtest.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug, -vvv also dependencies' debug); keys are always masked")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--sandbox", action="store_true",
                        help="use the built-in sandbox (a synthetic market) even when an API key is configured "
                             "(same as MASSIVE_SANDBOX=1; with no key the sandbox is the default)")
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from .paper import add_parser as _add_paper
    from .recordings import add_parser as _add_recordings

    for add in (_add_fetch, _add_quota, _add_symbols, _add_stream, _add_record, _add_datasets, _add_backtest,
                _add_validate, _add_sandbox, _add_ticks,
                _add_demo, _add_ingest, _add_compact, _add_quality, _add_verify, _add_ui, _add_recordings,
                _add_paper):
        add(sub)
    return parser


_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                          errno.EISDIR, errno.EFBIG})


def _is_bad_input(exc: MassiveError) -> bool:
    """Exit 2: the user's input or a setting's value is wrong (not a missing key or extra, a quota or a
    server answer)."""
    from ..errors import InvalidSettingError

    return isinstance(exc, (InvalidInputError, InvalidSettingError))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.sandbox:
        import os

        os.environ["MASSIVE_SANDBOX"] = "1"  # read by load_settings like every MASSIVE_* variable
    # No credential in any log line, dependencies' included; their DEBUG only with -vvv (still masked).
    redact.install(dependency_debug=args.verbose >= 3)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MassiveError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2 if _is_bad_input(exc) else 1
    except OSError as exc:  # the machine's side (disk full, permissions) in one line; network errors are typed above
        if args.debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}: check free space and permissions (MASSIVE_FEEDS_HOME, "
              "MASSIVE_DATASETS_DIR)", file=sys.stderr)
        return 2 if exc.errno in _DISK_ERRNOS else 1
    except ImportError as exc:  # an optional dependency: name the extra, no traceback
        missing = as_missing_dependency(exc)
        if missing is None or args.debug:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
