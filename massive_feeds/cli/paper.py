"""``massive-feeds paper``: paper-trade a strategy on the live stream, save the session, prove the replay.

The session runs on a worker thread (:func:`massive_feeds.strategies.paper.paper_trade`); the main thread waits for
``--seconds`` or Ctrl-C, which asks the session to stop after its next bar. While it trades, stderr shows
the position, open orders, fills, cash/equity and the last bar: redrawn in place on a terminal, one line
per fill (and a status line every :data:`PLAIN_STATUS_EVERY` seconds) otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
from typing import Any, Callable, TextIO

from ..errors import InvalidInputError

#: On a non-terminal stderr, the status line is printed this often (seconds); fills always at once.
PLAIN_STATUS_EVERY = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paper", help="paper-trade a strategy on the live stream, then check the replay's parity",
                       description="Run a strategy in Backtrader on the live feed (REST backfill, then live bars; "
                                   "reconnects repaired over REST) with a simulated broker, record the session while "
                                   "it trades, save it as a dataset, then run the same strategy on the saved session "
                                   "through the same feed path and compare the two order by order. Exit 1 when they "
                                   "differ.")
    p.add_argument("strategy", help="sma_cross, mean_reversion, breakout or spread_capture")
    p.add_argument("symbols", help="the ticker(s) to trade, comma-separated: one session (own cash, own dataset, "
                                   "own parity check) per symbol, side by side")
    p.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0: at Ctrl-C)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter (repeatable)")
    p.add_argument("--interval", default="1m", help="bar size (1m 5m 15m 30m 1h 4h 1d; default 1m)")
    p.add_argument("--fills", default="close", choices=["close", "quotes"],
                   help="close (default): market orders fill at the signal bar's close; quotes: buys at the ask, "
                        "sells at the bid of the latest quote")
    p.add_argument("--cash", type=float, default=100_000.0, help="starting cash (default 100000)")
    p.add_argument("--backfill-bars", type=int, default=100, help="bars of REST history before the stream (default 100)")
    p.add_argument("--name", help="dataset name (default massive_live_paper_<YYYYMMDD>[_N]; with several symbols "
                                  "NAME_<SYMBOL> each)")
    p.add_argument("--save-dir", default="data/live_recorded", help="where the raw event logs go")
    p.add_argument("--json", action="store_true", help="print one JSON object: dataset, orders, trades, equity_final, "
                                                       "parity")
    p.set_defaults(func=cmd_paper)


def check_args(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """Every argument before connecting: the symbols, strategy and params, duration, bar size, cash, name."""
    from ..backtrader.timeframes import timeframe_for
    from ..datasets import validate_name
    from ..schema import normalize_symbols
    from . import _parse_params

    symbols = normalize_symbols(args.symbols)
    params = _parse_params(args.param, args.strategy)
    if not (math.isfinite(args.seconds) and args.seconds >= 0):
        raise InvalidInputError(f"--seconds must be >= 0 (0 = until Ctrl-C), got {args.seconds:g}")
    if not (math.isfinite(args.cash) and args.cash > 0):
        raise InvalidInputError(f"--cash must be a positive amount, got {args.cash:g}")
    if args.backfill_bars < 0:
        raise InvalidInputError(f"--backfill-bars must be >= 0, got {args.backfill_bars}")
    timeframe_for(args.interval)
    if args.name is not None:
        for symbol in symbols:
            validate_name(session_name(args.name, symbol, len(symbols)) or args.name)
    return symbols, params


def session_name(name: str | None, symbol: str, sessions: int) -> str | None:
    """The dataset name of ``symbol``'s session: ``name`` itself for one session, ``name_<SYMBOL>`` for several."""
    if name is None or sessions == 1:
        return name
    return f"{name}_{re.sub(r'[^A-Za-z0-9_-]+', '_', symbol)}"


class StatusView:
    """``on_bar`` of the session: the status line on ``out`` (redrawn on a terminal) and a line per fill.

    ``snap`` turns the session's control into a :class:`massive_feeds.strategies.paper.Snapshot` (default
    :func:`massive_feeds.strategies.paper.snapshot`)."""

    def __init__(self, out: TextIO, snap: Callable[[Any], Any] | None = None, prefix: str = "") -> None:
        self.out = out
        self._snap = snap
        self.prefix = prefix  # "AAPL: " when several sessions share the terminal
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._fills = 0
        self._last_plain = -math.inf
        self._lock = threading.Lock()

    def __call__(self, control: Any) -> None:
        if self._snap is None:
            from massive_feeds.strategies.paper import snapshot

            self._snap = snapshot
        snap = self._snap(control)
        with self._lock:
            for order in snap.fills[self._fills:]:
                self._write(f"{self.prefix}fill: {order.side} {order.size:g} @ {order.fill_price:g} "
                            f"({order.fill_time:%H:%M:%S})")
            self._fills = len(snap.fills)
            if self.tty:
                self.out.write("\r\x1b[2K" + self.prefix + snap.line())
                self.out.flush()
            elif time.monotonic() - self._last_plain >= PLAIN_STATUS_EVERY:
                self._last_plain = time.monotonic()
                print(self.prefix + snap.line(), file=self.out, flush=True)

    def _write(self, line: str) -> None:
        prefix = "\r\x1b[2K" if self.tty else ""
        print(prefix + line, file=self.out, flush=True)

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def cmd_paper(args: argparse.Namespace) -> int:
    from massive_feeds.strategies.paper import paper_trade

    symbols, params = check_args(args)
    stop = threading.Event()
    several = len(symbols) > 1
    views = [StatusView(sys.stderr, prefix=f"{s}: " if several else "") for s in symbols]
    outcomes: list[dict[str, Any]] = [{} for _ in symbols]
    # waited on instead of join(): a Ctrl-C inside join() can leave a thread looking finished while it
    # still runs (CPython's interrupted tstate-lock wait)
    finished = [threading.Event() for _ in symbols]

    def session(i: int) -> None:
        symbol = symbols[i]
        try:
            outcomes[i]["result"] = paper_trade(
                args.strategy, symbol, params=params, interval=args.interval, fills=args.fills, cash=args.cash,
                name=session_name(args.name, symbol, len(symbols)), save_dir=args.save_dir, stop=stop,
                on_bar=views[i], backfill_bars=args.backfill_bars,
                tag=f"paper_{symbol}" if several else "paper")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            outcomes[i]["error"] = exc
        finally:
            finished[i].set()

    until = "Ctrl-C" if not args.seconds else f"{args.seconds:g} s (Ctrl-C stops early)"
    print(f"paper trading {args.strategy} on {', '.join(symbols)} ({args.interval} bars, fills at the {args.fills}) "
          f"until {until}; the session is saved and replayed at the end", file=sys.stderr, flush=True)
    for i in range(len(symbols)):
        threading.Thread(target=session, args=(i,), name=f"paper-session-{symbols[i]}", daemon=True).start()
    t0 = time.monotonic()
    try:
        while not all(f.wait(0.2) for f in finished):
            if args.seconds and time.monotonic() - t0 >= args.seconds:
                stop.set()
    except KeyboardInterrupt:
        stop.set()  # each session stops after its next bar, then saves and replays
        print("\nstopping after the next bar, then saving and replaying", file=sys.stderr, flush=True)
        for f in finished:
            f.wait()
    for view in views:
        view.close()
    for outcome in outcomes:
        if "error" in outcome:
            raise outcome["error"]
    results = [o["result"] for o in outcomes]
    return report(results[0], args.json) if not several else report_several(results, args.json)


def report_several(results: list[Any], as_json: bool) -> int:
    """Several sessions: each one's summary (``--json``: one object with ``sessions``, the summed
    ``equity_final`` and one ``parity`` whose differences name their symbol); exit 1 when any replay differed."""
    differences = [f"{r.symbol}: {line}" for r in results for line in (r.parity.differences if r.parity else [])]
    if as_json:
        print(json.dumps({"sessions": [r.as_json() for r in results],
                          "equity_final": sum(r.equity_final for r in results),
                          "parity": {"identical": not differences, "differences": differences}}, indent=2, default=str))
        return 0 if not differences else 1
    codes = [report(r, False) for r in results]
    return max(codes)


def report(result: Any, as_json: bool) -> int:
    """The session's summary (or its JSON object) on stdout; exit 1 when the replay differed."""
    parity = result.parity
    if as_json:
        print(json.dumps(result.as_json(), indent=2, default=str))
    else:
        live = int((result.fed["origin"] == "live").sum()) if result.fed is not None else 0
        print(f"{result.strategy} on {result.symbol}: {result.bars} bars ({result.bars - live} backfilled, {live} live), "
              f"{len(result.orders)} order(s), {len(result.trades)} closed trade(s), fills at the {result.fills}, "
              f"final equity {result.equity_final:,.2f}")
        for order in result.orders:
            print(f"  {order.line()}")
        print(f"saved as dataset {result.dataset}")
        if parity is not None:
            if parity.identical:
                print("replay parity: identical (the saved session replayed through the same feed path gave the "
                      "same orders, fills and final equity)")
            else:
                print(f"replay parity: {len(parity.differences)} difference(s)")
                for line in parity.differences:
                    print(f"  {line}")
    return 0 if parity is None or parity.identical else 1
