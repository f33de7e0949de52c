"""Continuous futures benchmark: a year of ``ES.c.0`` minute bars from flat files, against the baseline of
fetching the contracts separately and concatenating them with pandas.

Runs without a key: the sandbox's futures market (ES, quarterly contracts rolling on their third Fridays,
1,380 minutes a session, five listed contracts in every ``us_futures_cme/minute_aggs_v1`` day file) behind
its S3 endpoint (moto, real SigV4). The day files are generated before timing, so both methods download and
parse the same objects; each method runs with its own empty cache (a fresh ``home``):

  (a) ours: ``fetch_data("ES.c.0", first, last, "1m", method="flat_file")``: the roll plan from one
      contracts-reference call, one pass over the day files for every contract held, the held rows kept
      per session (vectorised), the roll table in ``attrs``;
  (b) baseline: ``download_flat_file(contract, first, last, "1m")`` for each contract the series holds
      (the roll plan given to it for free), then ``pandas.concat`` and, per session, the held contract's rows.
      Its later contracts read the parquet day entries the first one left (the library's cache), so the
      baseline already profits from the cache; it still reads every day once per contract.

Prints the wall times, the ratio (target ≥ 2×), the rows and that both frames hold the same bars.
Run: ``.venv/bin/python benchmarks/bench_futures.py`` (``--days N`` sessions, default a year;
``--strict``: exit 1 below the target).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from massive_feeds import download_flat_file, fetch_data
from massive_feeds.config import Settings, load_settings
from massive_feeds.flatfiles.reader import wait_for_cache_writes
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.futures import is_session

CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)
TARGET = 2.0


def sessions_back(last: date, n: int) -> date:
    """The first of the ``n`` sessions ending on ``last``."""
    day, count = last, 0
    while True:
        count += is_session(day)
        if count == n:
            return day
        day -= timedelta(days=1)


def ours(env: dict[str, str], home: Path, first: date, last: date) -> pd.DataFrame:
    return fetch_data("ES.c.0", first, last, "1m", method="flat_file", settings=settings_for(env, home),
                      progress=False)


def baseline(env: dict[str, str], home: Path, first: date, last: date, plan: pd.DataFrame) -> pd.DataFrame:
    """Each held contract over the whole range, concatenated, then the held contract's rows per session."""
    settings = settings_for(env, home)
    frames = [download_flat_file(c, first, last, "1m", settings=settings, progress=False)
              for c in plan["contract"].unique()]
    allbars = pd.concat(frames, ignore_index=True)
    local = allbars["timestamp"].dt.tz_convert("America/Chicago").dt.tz_localize(None) + pd.Timedelta(hours=7)
    allbars["session"] = local.dt.normalize()
    held = allbars.merge(plan, left_on=["session", "symbol"], right_on=["session", "contract"])
    return held.sort_values("timestamp").reset_index(drop=True)


def settings_for(env: dict[str, str], home: Path) -> Settings:
    return load_settings(environ={**os.environ, **env}, home=home)


def serve(first: date, last: date) -> None:
    """Child process: the sandbox (REST for the contracts reference, S3 for the day files) with every day
    file of the range generated, so neither method pays for generating one. It prints the environment that
    points massive_feeds at it and serves until stdin closes. Its own process, as the real service is: the
    server's CPU does not share the measured process's GIL (on a 2-core machine it still shares the cores)."""
    logging.disable(logging.WARNING)
    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as sb:
        day = first
        while day <= last:
            sb.s3.ensure(f"us_futures_cme/minute_aggs_v1/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz")
            day += timedelta(days=1)
        print(json.dumps(sb.env()), flush=True)
        sys.stdin.read()


def start_server(first: date, last: date) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", first.isoformat(), last.isoformat()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit("the sandbox server did not start")
    return proc, json.loads(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=250, help="sessions in the query (default 250, a year)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the ratio misses the target")
    parser.add_argument("--serve", nargs=2, metavar=("FIRST", "LAST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(date.fromisoformat(args.serve[0]), date.fromisoformat(args.serve[1]))
        return 0
    logging.basicConfig(level=logging.WARNING)
    last = date(2026, 11, 30)
    first = sessions_back(last, args.days)
    t0 = time.perf_counter()
    proc, env = start_server(first, last)  # both methods read the same objects, generated before timing
    print(f"sandbox day files {first}..{last}: generated in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        # warm the process (imports, the S3 client, the contracts reference, the exchange calendar a missing
        # day file is checked against) on the last week, untimed, with a cache of its own
        week = last - timedelta(days=7)
        download_flat_file("ESZ6", week, last, "1m", settings=settings_for(env, Path(tmp) / "warm"), progress=False)
        ours(env, Path(tmp) / "warm", week, last)
        wait_for_cache_writes()
        t0 = time.perf_counter()
        mine = ours(env, Path(tmp) / "ours", first, last)
        t_ours = time.perf_counter() - t0
        wait_for_cache_writes()
        plan = pd.DataFrame({"session": pd.to_datetime(mine["session_end_date"]), "contract": mine["contract"]})
        plan = plan.drop_duplicates().reset_index(drop=True)
        t0 = time.perf_counter()
        base = baseline(env, Path(tmp) / "baseline", first, last, plan)
        t_base = time.perf_counter() - t0
        wait_for_cache_writes()
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait()
    same = len(mine) == len(base) and bool(np.array_equal(mine["close"].to_numpy(), base["close"].to_numpy()))
    ratio = t_base / t_ours
    print(f"ES.c.0 1m, {args.days} sessions: {len(mine):,} bars from {plan['contract'].nunique()} contracts, "
          f"{len(mine.attrs['rolls'])} rolls")
    print(f"(a) ours, continuous from flat files   {t_ours:7.2f} s")
    print(f"(b) baseline, contracts + pandas concat {t_base:7.2f} s")
    print(f"ratio (b)/(a): {ratio:.2f}x (target >= {TARGET:.0f}x){'' if ratio >= TARGET else '  MISSED'}; "
          f"same bars: {same}")
    return 1 if args.strict and (ratio < TARGET or not same) else 0


if __name__ == "__main__":
    sys.exit(main())
