"""MassiveData vs bt.feeds.PandasData: 200,000 one-minute bars through cerebro, empty strategy, same run.

Run: ``.venv/bin/python benchmarks/bench_backtrader.py [--bars 200000] [--repeat 3]``

Both feeds get the very same bars (one frame in the standard schema; PandasData gets it indexed by
timestamp, as its docs ask). Three MassiveData paths are timed:

* ``preload`` — cerebro's defaults (preload + runonce): whole columns extend the line buffers;
* ``per-bar`` — ``cerebro.run(preload=False)`` for both feeds: cerebro asks for one bar at a time
  (MassiveData appends each bar's values to the line buffers directly);
* fetching is not timed (both get an in-memory frame); turning it into line values (date numbers,
  column lists) is, inside every MassiveData run. Runs alternate between the two feeds.

Prints bars/s for each and the ratio to PandasData measured in the same process.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from massive_feeds.backtrader import MassiveData  # noqa: E402
from massive_feeds.schema import finalize_bars  # noqa: E402


class Empty(bt.Strategy):
    pass


def make_bars(n: int, seed: int = 3) -> pd.DataFrame:
    """``n`` one-minute bars of a random walk (24/7 so every minute has a bar)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 2e-4, n)) * close
    ts = pd.date_range("2024-01-02 00:00", periods=n, freq="1min", tz="UTC")
    return finalize_bars(pd.DataFrame({
        "timestamp": ts, "symbol": "AAPL", "open": open_, "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread, "close": close, "volume": rng.integers(100, 10_000, n).astype(float),
        "vwap": close, "transactions": rng.integers(1, 100, n),
    }))


def run(feed_factory, **run_kwargs) -> float:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed_factory())
    cerebro.addstrategy(Empty)
    gc.collect()
    t0 = time.perf_counter()
    cerebro.run(**run_kwargs)
    return time.perf_counter() - t0


def best_pair(first, second, repeat: int, **run_kwargs) -> tuple[float, float]:
    """Best time of each feed, runs interleaved so background load hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        times[0].append(run(first, **run_kwargs))
        times[1].append(run(second, **run_kwargs))
    return min(times[0]), min(times[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bars = make_bars(args.bars)
    indexed = bars.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
    tf = {"timeframe": bt.TimeFrame.Minutes, "compression": 1}

    def pandas_feed() -> bt.feeds.PandasData:
        return bt.feeds.PandasData(dataname=indexed, openinterest=None, **tf)

    def massive_feed() -> MassiveData:
        return MassiveData(bars=bars, **tf)

    n = len(bars)
    rows = []
    for label, kwargs in (("preload (cerebro defaults)", {}), ("per-bar (preload=False)", {"preload": False})):
        t_pd, t_mf = best_pair(pandas_feed, massive_feed, args.repeat, **kwargs)
        rows.append((label, n / t_pd, n / t_mf, t_pd / t_mf))
    print(f"{n:,} one-minute bars, empty strategy, best of {args.repeat} (Python {sys.version.split()[0]}, "
          f"backtrader {bt.__version__}, pandas {pd.__version__})")
    print(f"{'mode':<28}{'PandasData bars/s':>20}{'MassiveData bars/s':>20}{'ratio':>8}")
    for label, pd_rate, mf_rate, ratio in rows:
        print(f"{label:<28}{pd_rate:>20,.0f}{mf_rate:>20,.0f}{ratio:>7.2f}x")
    ratios = [r[3] for r in rows]
    print(f"target >= 2.00x: {'met' if min(ratios) >= 2 else 'NOT met'} (geometric mean {statistics.geometric_mean(ratios):.2f}x)")


if __name__ == "__main__":
    main()
