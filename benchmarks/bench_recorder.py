"""Recorder benchmark: events/s recorded durably, and ticks/s resampled to bars.

Baselines measured in the same run:
  * durability: one JSON line per event with an fsync every 100 records (a common hand-rolled logger),
  * resampling: pandas ``groupby(symbol).resample("1min")`` over a per-event DataFrame.
The recorder is fed through the same listener interface the live connector uses (an EventHub), with
frames of 100 events as the stream delivers them, and the recording is read back to check that every
acknowledged event is there.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from massive_feeds.config import load_settings
from massive_feeds.record import RecordingReader, WebSocketDataRecorder, ticks_to_bars
from massive_feeds.stream.events import make_event
from massive_feeds.stream.hub import EventHub

N_EVENTS = 1_000_000
BATCH = 100
SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]


class HubConnector:
    """The part of MassiveConnector the recorder uses, over a bare EventHub (no socket)."""

    def __init__(self) -> None:
        self.hub = EventHub()

    def add_listener(self, fn, **kw):  # noqa: ANN001, ANN003
        return self.hub.add_listener(fn, **kw)

    def remove_listener(self, listener, drain: bool = True) -> None:  # noqa: ANN001
        self.hub.remove_listener(listener, drain=drain)

    def start_stream(self, symbols) -> list:  # noqa: ANN001
        return list(symbols)

    def stop_stream(self, symbols=None) -> list:  # noqa: ANN001
        return []


def make_batches() -> list[list]:
    rng = np.random.default_rng(1)
    t0 = 1_709_650_800_000
    times = t0 + np.sort(rng.integers(0, 6 * 3600 * 1000, N_EVENTS))
    prices = 100 + np.cumsum(rng.normal(0, 0.01, N_EVENTS))
    events = []
    for i in range(N_EVENTS):
        sym = SYMBOLS[i % len(SYMBOLS)]
        if i % 2:
            events.append(make_event("trade", sym, int(times[i]), time.time_ns(), price=float(prices[i]), size=100.0))
        else:
            events.append(make_event("quote", sym, int(times[i]), time.time_ns(), bid=float(prices[i]) - 0.01,
                                     ask=float(prices[i]) + 0.01, bid_size=3.0, ask_size=4.0))
    return [events[i:i + BATCH] for i in range(0, N_EVENTS, BATCH)]


def bench_recorder(batches: list[list], folder: Path) -> float:
    connector = HubConnector()
    rec = WebSocketDataRecorder(SYMBOLS, folder, connector=connector, settings=load_settings(plan="unlimited"),
                                session="bench")
    rec.start()
    t0 = time.perf_counter()
    for batch in batches:
        connector.hub.publish(batch)
    rec.stop()  # returns once everything received is durable (fsynced)
    elapsed = time.perf_counter() - t0
    got = RecordingReader(rec.path).count()
    assert got == N_EVENTS, f"lost events: {N_EVENTS - got}"
    return elapsed


def bench_naive_log(batches: list[list], path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        n = 0
        for batch in batches:
            for ev in batch:
                fh.write(orjson.dumps(ev._asdict()) + b"\n")
                n += 1
                if n % 100 == 0:
                    fh.flush()
                    os.fsync(fh.fileno())
    return time.perf_counter() - t0


def naive_resample(events: pd.DataFrame) -> pd.DataFrame:
    """The same bars the obvious pandas way: resample trades and quotes per symbol, then join."""
    df = events.assign(ts=pd.to_datetime(events["time_ms"], unit="ms", utc=True)).set_index("ts")
    trades = df[df["kind"] == "trade"].assign(notional=lambda d: d["price"] * d["size"])
    quotes = df[df["kind"] == "quote"]
    t = trades.groupby("symbol").resample("1min").agg(
        {"price": ["first", "max", "min", "last", "count"], "size": "sum", "notional": "sum"})
    t.columns = ["open", "high", "low", "close", "transactions", "volume", "notional"]
    t["vwap"] = t["notional"] / t["volume"]
    q = quotes.groupby("symbol").resample("1min")[["bid", "ask", "bid_size", "ask_size"]].last()
    out = t.drop(columns="notional").join(q, how="outer")
    out["mid"], out["spread"] = (out["bid"] + out["ask"]) / 2, out["ask"] - out["bid"]
    return out.dropna(how="all")


def main() -> None:
    print(f"building {N_EVENTS:,} events in frames of {BATCH} ...")
    batches = make_batches()
    with tempfile.TemporaryDirectory() as tmp:
        ours = bench_recorder(batches, Path(tmp) / "rec")
        naive = bench_naive_log(batches, Path(tmp) / "naive.jsonl")
        events = RecordingReader(Path(tmp) / "rec" / "bench").events()
    print(f"\ndurable recording ({N_EVENTS:,} events, default flush policy 100 ms group fsync):")
    print(f"  ours:                                {N_EVENTS / ours:12,.0f} events/s  (read back: all {N_EVENTS:,} present)")
    print(f"  naive JSON lines, fsync/100 records: {N_EVENTS / naive:12,.0f} events/s")
    print(f"  ratio: {naive / ours:.1f}x (target >= 150,000 events/s)")

    t0 = time.perf_counter()
    bars = ticks_to_bars(events, "1min")
    ours_rs = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_resample(events)
    naive_rs = time.perf_counter() - t0
    print(f"\nresampling {len(events):,} ticks to {len(bars):,} 1-minute bars (trades + quotes):")
    print(f"  ours (ticks_to_bars):                {len(events) / ours_rs:12,.0f} ticks/s")
    print(f"  naive pandas groupby().resample():   {len(events) / naive_rs:12,.0f} ticks/s")
    print(f"  ratio: {naive_rs / ours_rs:.1f}x")


if __name__ == "__main__":
    main()
