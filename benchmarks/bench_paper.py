"""Paper-trading benchmark: how fast a strategy reacts on the live feed, and how fast a session replays.

1. **Reaction time at the firehose rate.** The sandbox's WebSocket is armed in firehose mode: the
   connection that subscribes to trades receives a whole day of every stock's trades (``--events``) as
   fast as it reads them. A paper session (the very pieces :func:`massive_feeds.strategies.paper.paper_trade` uses: the
   live ``StreamSource`` with the recorder tapped into its listener, Backtrader with a simulated broker)
   trades AAPL on 1-minute bars with a strategy that places an order on every bar. Reaction time is
   measured from the arrival of the event that completed a bar (the listener's delivery of the first
   batch holding an event past the bar's end) to the strategy's order for that bar: median and 99th
   percentile, with the firehose's delivered event rate.
2. **Replay of a one-hour session.** A paper session of one market hour is recorded from the sandbox
   (``--hour-speed``: its clock at 60x, one minute), then replayed with :func:`massive_feeds.strategies.paper.replay_session`
   at ``replay_speed=None``; the plain recording replay (``MassiveQuoteData(recording=…)``) is timed beside
   it. The sandbox's paced stream gives AAPL about 1,100 events an hour, where fixed costs dominate, so
   the same hour is also densified to ``--per-minute`` events a minute (a liquid stock's rate) and
   replayed: the target is under one second per 10,000 events.

Runs without a key. Run: ``.venv/bin/python benchmarks/bench_paper.py`` (``--events``, ``--strict``: exit 1
when the replay misses its target).
"""

from __future__ import annotations

import argparse
import bisect
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np

from massive_feeds.backtrader import MassiveQuoteData
from massive_feeds.record import WebSocketDataRecorder
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.ws import Firehose
from massive_feeds.strategies.base import SignalStrategy
from massive_feeds.strategies.paper import BackfillLog, live_source, paper_trade, replay_session
from massive_feeds.strategies.runner import bt_nums_to_index

REPLAY_TARGET_S_PER_10K = 1.0


class EveryBar(SignalStrategy):
    """Enters when flat and exits when long: an order on every bar, each stamped when it is placed."""

    params = (("arrivals", None),)

    def __init__(self) -> None:
        super().__init__()
        self.latencies_ns: list[int] = []

    def signal(self) -> tuple[bool, bool]:
        return True, True

    def next(self) -> None:
        before = self._working
        super().next()
        if self._working is not None and self._working is not before:
            self.latencies_ns.append(self._reaction_ns(time.perf_counter_ns()))

    def _reaction_ns(self, now_ns: int) -> int:
        """Now minus the arrival of the first batch that held an event past this bar's end."""
        times, arrived = self.p.arrivals
        bar_end_ms = int(bt_nums_to_index([self.data.datetime[0]])[0].value // 1_000_000) + 60_000
        i = bisect.bisect_left(times, bar_end_ms)
        return now_ns - arrived[i] if i < len(arrived) else -1


def reaction_time(events: int, rate: float | None = None) -> dict[str, float]:
    """One firehose session (``rate``: events per second, ``None``: as fast as the socket takes them);
    returns the reaction figures (ms) and the delivered event rate."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-paper-"))
    with Sandbox(websocket=True) as sb:
        settings = sb.settings(home=tmp / "home", datasets_dir=tmp / "ds", plan="unlimited")
        sb.ws.set_firehose(Firehose(events=events, batch=100, channel="T", market="stocks", rate=rate))
        from massive_feeds.backtrader import MassiveStore

        store = MassiveStore(settings)
        recorder = WebSocketDataRecorder(["AAPL"], tmp / "rec", connector=store.connector, settings=settings)
        recorder.start(listen=False)
        # newest event time seen so far (kept non-decreasing for the bisect) and when each batch arrived
        times: list[int] = []
        arrived: list[int] = []
        done = threading.Event()

        def record(batch: Any) -> None:
            now = time.perf_counter_ns()
            recorder.record_batch(batch)
            newest = max((ev.time_ms for ev in batch if hasattr(ev, "price")), default=None)
            if newest is not None:
                times.append(max(newest, times[-1]) if times else newest)
                arrived.append(now)

        source = live_source(store, "AAPL", "1m", record, BackfillLog(), backfill_bars=0)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(MassiveQuoteData(dataname="AAPL", interval="1m", source=source, qcheck=0.05))
        cerebro.broker.setcash(1e9)
        cerebro.broker.set_coc(True)
        cerebro.addstrategy(EveryBar, arrivals=(times, arrived))
        stopper = threading.Thread(target=_stop_when_idle, args=(cerebro, recorder, done), daemon=True)
        t0 = time.perf_counter()
        stopper.start()
        strat = cerebro.run()[0]
        wall = time.perf_counter() - t0
        done.set()
        received = recorder.stats()["events_received"]
        recorder.stop()
        store.close()
    lat = np.array([x for x in strat.latencies_ns if x >= 0], dtype=np.float64) / 1e6
    return {"orders": float(len(lat)), "median_ms": float(np.median(lat)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "aapl_events": float(received), "seconds": wall, "rate": events / wall}


def _stop_when_idle(cerebro: bt.Cerebro, recorder: Any, done: threading.Event) -> None:
    """The firehose ends without a word: stop once no event came for a second."""
    last, seen = -1, time.monotonic()
    while not done.wait(0.25):
        n = recorder.stats()["events_received"]
        if n != last:
            last, seen = n, time.monotonic()
        elif n > 0 and time.monotonic() - seen > 1.0:
            cerebro.runstop()
            return


def densified(session: Path, target: Path, per_minute: int, settings: Any) -> Path:
    """A copy of a paper session whose event log holds ``per_minute`` events a minute (half trades, half
    quotes, prices along the recorded trades) over the recorded window — the density of a liquid stock's
    hour, which the sandbox's paced stream does not reach. Its backfills and stop point are the session's."""
    import shutil

    from massive_feeds.record import RecordingReader
    from massive_feeds.stream.events import QUOTE, TRADE, StreamEvent

    events = RecordingReader(session).events()
    trades = events[events["kind"] == "trade"]
    first, last = int(events["time_ms"].min()), int(events["time_ms"].max())
    n = max(2, int((last - first) / 60_000 * per_minute))
    times = np.linspace(first, last, n).astype(np.int64)
    price = np.interp(times, trades["time_ms"].to_numpy(), trades["price"].to_numpy())
    rec = WebSocketDataRecorder(["AAPL"], target.parent, session=target.name, settings=settings).start(listen=False)
    nan = float("nan")
    out = []
    for i, (t, p) in enumerate(zip(times.tolist(), np.round(price, 2).tolist())):  # setup, not timed
        if i % 2:
            out.append(StreamEvent(TRADE, "AAPL", t, 0, p, 100.0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, 0, 4))
        else:
            out.append(StreamEvent(QUOTE, "AAPL", t, 0, nan, nan, p - 0.01, p + 0.01, 2.0, 3.0, nan, nan, nan, nan, nan,
                                   nan, 0, 4))
    for i in range(0, len(out), 50):
        rec.record_batch(out[i:i + 50])
    rec.stop()
    for name in ("paper.json", "paper_backfill.json", "paper_backfill.parquet"):
        if (session / name).exists():
            shutil.copy(session / name, target / name)
    return target


def replay_hour(speed: float, per_minute: int) -> dict[str, float]:
    """Record one market hour as a paper session (the sandbox clock at ``speed``), then time its replays."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-paper-replay-"))
    with Sandbox(websocket=True, clock_speed=speed) as sb:
        settings = sb.settings(home=tmp / "home", datasets_dir=tmp / "ds", plan="unlimited")
        live = paper_trade("sma_cross", "AAPL", seconds=3600 / speed, params={"fast": 5, "slow": 20}, settings=settings,
                           save_dir=tmp / "rec", backfill_bars=60, replay=False)
        t0 = time.perf_counter()
        again = replay_session(live.dataset, settings=settings)
        paper_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(MassiveQuoteData(recording=live.dataset, settings=settings, qcheck=0.05))
        cerebro.run()
        plain_s = time.perf_counter() - t0
        from massive_feeds.record.library import recording_path

        dense = densified(recording_path(live.dataset, settings), tmp / "dense" / "session", per_minute, settings)
        t0 = time.perf_counter()
        thick = replay_session(dense, settings=settings)
        dense_s = time.perf_counter() - t0
    events = float(again.stats["events"])
    dense_events = float(thick.stats["events"])
    return {"events": events, "bars": float(again.bars), "paper_replay_s": paper_s, "plain_replay_s": plain_s,
            "paper_s_per_10k": paper_s / events * 10_000, "plain_s_per_10k": plain_s / events * 10_000,
            "identical": float(again.equity_final == live.equity_final), "dense_events": dense_events,
            "dense_s": dense_s, "dense_s_per_10k": dense_s / dense_events * 10_000, "dense_bars": float(thick.bars)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000,
                        help="firehose events (every stock's trades of a day; above 100,000 the day repeats)")
    parser.add_argument("--paced", type=float, default=10_000.0,
                        help="also a session with the firehose paced at this many events/s (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="firehose sessions (figures of each)")
    parser.add_argument("--hour-speed", type=float, default=60.0,
                        help="sandbox clock speed while the one-hour session is recorded (60: one minute)")
    parser.add_argument("--per-minute", type=int, default=2_000,
                        help="events a minute of the densified one-hour session (default 2,000: 120,000 an hour)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the replay misses its target")
    args = parser.parse_args(argv)
    rates: list[float | None] = [None] * args.repeat + ([args.paced] if args.paced else [])
    for i, rate in enumerate(rates):
        r = reaction_time(args.events, rate)
        how = "as fast as the socket" if rate is None else f"paced at {rate:,.0f} events/s"
        print(f"reaction {i + 1} ({how}): {r['orders']:.0f} orders on AAPL 1-minute bars while the firehose delivered "
              f"{args.events:,} events ({r['aapl_events']:,.0f} of AAPL) in {r['seconds']:.2f} s "
              f"({r['rate']:,.0f} events/s): event arrival -> order median {r['median_ms']:.2f} ms, "
              f"p99 {r['p99_ms']:.2f} ms")
    h = replay_hour(args.hour_speed, args.per_minute)
    print(f"replay of a one-hour paper session: {h['events']:,.0f} events, {h['bars']:.0f} bars; "
          f"paper replay (backfills served, parity path) {h['paper_replay_s']:.2f} s = "
          f"{h['paper_s_per_10k']:.2f} s per 10,000 events (target < {REPLAY_TARGET_S_PER_10K:g}); plain recording "
          f"replay {h['plain_replay_s']:.2f} s = {h['plain_s_per_10k']:.2f} s per 10,000 events; "
          f"same final equity as live: {bool(h['identical'])}")
    print(f"replay of that hour densified to {args.per_minute:,} events a minute: {h['dense_events']:,.0f} events, "
          f"{h['dense_bars']:.0f} bars in {h['dense_s']:.2f} s = {h['dense_s_per_10k']:.3f} s per 10,000 events "
          f"(target < {REPLAY_TARGET_S_PER_10K:g})")
    ok = h["dense_s_per_10k"] < REPLAY_TARGET_S_PER_10K
    print("targets: " + ("met" if ok else "MISSED"))
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
