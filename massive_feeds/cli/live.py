"""CLI commands around the live stream: ``symbols`` (with names and markets), ``stream`` (says so when a
symbol never quotes) and ``record`` (countdown, events and bars so far on stderr)."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, TextIO

from ..errors import StreamError

#: Seconds ``stream`` waits for a first quote before saying the symbols do not quote.
FIRST_QUOTE_WAIT = 10.0
#: On a non-terminal stderr, ``record`` prints its progress line this often (seconds).
PLAIN_PROGRESS_EVERY = 10.0


def cmd_symbols(args: argparse.Namespace) -> int:
    """Tickers with their name, market, type and primary exchange (``--plain``: tickers only)."""
    from ..rest.reference import ticker_table

    table = ticker_table(market=args.market, search=args.search, limit=args.limit)
    if table.empty:
        what = " ".join(f"{k} {v!r}" for k, v in (("market", args.market), ("search", args.search)) if v)
        print(f"no active symbols{' for ' + what if what else ''}", file=sys.stderr)
        return 1
    if table.attrs.get("source") == "sandbox":
        print(f"{len(table)} symbol(s) of the sandbox's synthetic market", file=sys.stderr)
    if getattr(args, "plain", False):
        print("\n".join(table["ticker"]))
    else:
        print(table.fillna("").to_string(index=False, max_colwidth=40))
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    """Print quotes; exit 1 with a message when none arrives within ``--wait`` seconds."""
    import asyncio

    from ..schema import normalize_symbols
    from ..stream import stream_quotes_websocket

    symbols = normalize_symbols(args.symbols)
    wait = float(args.wait)
    seen: set[str] = set()

    async def run() -> None:
        n = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + args.seconds if args.seconds else None
        first = loop.time() + wait
        async with asyncio.timeout_at(min(first, end) if end is not None else first) as deadline:
            async for q in stream_quotes_websocket(symbols):
                if not seen:
                    deadline.reschedule(end)  # a quote arrived: only --seconds ends the stream now
                seen.add(q["symbol"])
                print(f"{q['timestamp']:%Y-%m-%d %H:%M:%S.%f} {q['symbol']:>10} bid {q['bid']} x {q['bid_size']}"
                      f"  ask {q['ask']} x {q['ask_size']}", flush=True)
                n += 1
                if args.count and n >= args.count:
                    break

    try:
        asyncio.run(run())
    except TimeoutError:
        pass
    if not seen:
        waited = min(wait, args.seconds) if args.seconds else wait
        print(f"error: no quote for {', '.join(symbols)} within {waited:g} s: the market may be closed, or the "
              f"symbol does not trade (check: massive-feeds symbols --search {symbols[0].split(':')[-1]})",
              file=sys.stderr)
        return 1
    silent = [s for s in symbols if s not in seen]
    if silent and not args.count:
        print(f"note: no quote for {', '.join(silent)} while streaming", file=sys.stderr)
    return 0


def _fmt_seconds(s: float) -> str:
    s = max(int(round(s)), 0)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s}s"


class RecordProgress:
    """The ``record`` status line: elapsed, time left, events and bars so far. On a terminal it is
    redrawn in place every second; otherwise a plain line is printed every :data:`PLAIN_PROGRESS_EVERY` s."""

    def __init__(self, out: TextIO, seconds: float, counter: Any, recorder: Any) -> None:
        self.out, self.seconds, self.counter, self.recorder = out, seconds, counter, recorder
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._last_plain = float("-inf")  # the first tick always prints

    def line(self, elapsed: float) -> str:
        stats = self.recorder.stats()
        left = f", {_fmt_seconds(self.seconds - elapsed)} left" if self.seconds else ""
        return (f"recording {_fmt_seconds(elapsed)}{left} · {stats['events_durable']:,} events on disk · "
                f"{self.counter.bars:,} bars of {self.counter.interval} so far")

    def tick(self, elapsed: float) -> None:
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line(elapsed))
            self.out.flush()
        elif elapsed - self._last_plain >= PLAIN_PROGRESS_EVERY:
            self._last_plain = elapsed
            print(self.line(elapsed), file=self.out, flush=True)

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def _refuse_unknown(symbols: list[str]) -> None:
    """An :class:`UnknownSymbolError` naming the symbols the reference list has no active ticker for."""
    from ..rest.reference import refuse_unknown_tickers

    refuse_unknown_tickers(symbols)


def cmd_record(args: argparse.Namespace) -> int:
    """Record ``--seconds`` (Ctrl-C stops early) with a live status line, then save the dataset."""
    from ..record import WebSocketDataRecorder
    from ..record.bars import BarCounter
    from ..schema import normalize_symbols
    from ..stream import MassiveConnector

    symbols = normalize_symbols(args.symbols)
    counter = BarCounter(args.interval)  # also validates --interval before anything starts
    if args.name:  # a name in use would be refused only after the whole recording
        from ..datasets import dataset_path
        from ..errors import DatasetExistsError

        if dataset_path(args.name).exists():
            raise DatasetExistsError(f"dataset {args.name!r} already exists; choose another --name")
    _refuse_unknown(symbols)  # before the session folder exists: a silent stream would record nothing
    connector = MassiveConnector()
    listener = connector.add_listener(counter, batched=True, symbols=symbols, kinds=BarCounter.KINDS,
                                      name="massive-cli-bar-counter")
    recorder = WebSocketDataRecorder(symbols, args.save_dir, connector=connector, settings=connector.settings)
    progress = RecordProgress(sys.stderr, args.seconds, counter, recorder)
    stop = threading.Event()
    try:
        recorder.start()
        print(f"recording {', '.join(recorder.symbols)} to {recorder.path} for {_fmt_seconds(args.seconds)} "
              "(Ctrl-C stops early and still saves)", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            while True:
                elapsed = time.monotonic() - t0
                if elapsed >= args.seconds:
                    break
                progress.tick(elapsed)
                stop.wait(min(1.0, args.seconds - elapsed))  # a display tick, not a synchronisation
        except KeyboardInterrupt:
            pass
        progress.close()
        recorder.stop()
    finally:
        try:
            connector.remove_listener(listener, drain=False)
        finally:
            connector.close()
    stats = recorder.stats()
    if stats["events_durable"] == 0:
        raise StreamError(f"no quotes or trades of {', '.join(symbols)} arrived; nothing to save (the raw log "
                          f"is at {recorder.path})")
    path = recorder.save_dataset(args.name, args.interval, tag=args.tag)
    origin = " (sandbox data: a synthetic market)" if recorder.settings.source == "sandbox" else ""
    print(f"{stats['events_durable']:,} events, {stats['gaps']} gap(s) -> dataset {path.stem} ({path}){origin}")
    return 0
