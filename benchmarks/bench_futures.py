"""Continuous futures benchmark: a year of ``ES.c.0`` minute bars from flat files, against fetching the
contracts separately and concatenating them with pandas.

Runs without a key: the sandbox's futures market (ES, quarterly contracts rolling on their third Fridays,
1,380 minutes a session, five listed contracts in every ``us_futures_cme/minute_aggs_v1`` day file) behind
its S3 endpoint (moto, real SigV4) in a child process, as the real service is not in our process. The day
files are generated before timing, so every method downloads and parses the same objects; each run has its
own empty cache (a fresh ``home``):

  (a) ours: ``fetch_data("ES.c.0", first, last, "1m", method="flat_file")``: the roll plan from one
      contracts-reference call, every day file read once for the contract held that session, the held rows
      kept per session (vectorised), the roll table in ``attrs``;
  (b) baseline, the target's: the contracts fetched separately and concatenated with pandas, as a user
      without a continuous series does: ``download_flat_file(contract, first, last, "1m")`` for each contract
      the series holds, over the whole range (a user has no roll calendar; that is what the series gives),
      ``pandas.concat``, then per session the held contract's rows (the roll plan given to it for free).
      Its later contracts read the parquet day entries the first one left (the library's cache), so it
      reads the network once and the cache four times;
  (c) floor, for reference: the same held rows written by hand with boto3 + ``pandas.read_csv``, every day
      file read once for the contract held that session (the roll plan given for free, nothing cached,
      no roll table). Ours cannot beat this by much: both download and parse the same 250 objects, and
      that is most of the time. (c)/(a) is our flat-file reader against hand-written code on small day
      files (bench_flatfiles measures it on a full-market day).

Prints the median wall times of ``--repeat`` runs, the ratios (target: (b)/(a) >= 2x) and that all three give
the same bars. Run: ``.venv/bin/python benchmarks/bench_futures.py`` (``--days N`` sessions, default a year;
``--strict``: exit 1 below the target).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import boto3
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


def naive(env: dict[str, str], plan: pd.DataFrame) -> pd.DataFrame:
    """(c): every held contract fetched on its own with boto3 + pandas, session by session, then concatenated."""
    client = boto3.client("s3", endpoint_url=env["MASSIVE_S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=env["MASSIVE_S3_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["MASSIVE_S3_SECRET_ACCESS_KEY"])
    frames = []
    for contract, sessions in plan.groupby("contract", sort=False)["session"]:
        for day in sessions:
            key = f"us_futures_cme/minute_aggs_v1/{day:%Y}/{day:%m}/{day:%Y-%m-%d}.csv.gz"
            body = client.get_object(Bucket=env["MASSIVE_S3_BUCKET"], Key=key)["Body"].read()
            df = pd.read_csv(io.BytesIO(body), compression="gzip")
            frames.append(df[df["ticker"] == contract])
    bars = pd.concat(frames, ignore_index=True)
    bars.insert(0, "timestamp", pd.to_datetime(bars.pop("window_start"), unit="ns", utc=True))
    return bars.sort_values("timestamp").reset_index(drop=True)


def per_contract(env: dict[str, str], home: Path, first: date, last: date, plan: pd.DataFrame) -> pd.DataFrame:
    """(b): each held contract over the whole range with the library, concatenated, then the held rows."""
    settings = settings_for(env, home)
    frames = [download_flat_file(c, first, last, "1m", settings=settings, progress=False)
              for c in plan["contract"].unique()]
    allbars = pd.concat(frames, ignore_index=True)
    local = allbars["timestamp"].dt.tz_convert("America/Chicago").dt.tz_localize(None) + pd.Timedelta(hours=7)
    allbars["session"] = local.dt.normalize()
    held = allbars.merge(plan, left_on=["session", "symbol"], right_on=["session", "contract"])
    return held.sort_values("timestamp").reset_index(drop=True)


def timed(fn: Callable[[], pd.DataFrame], repeat: int) -> tuple[float, pd.DataFrame]:
    """The median wall time of ``repeat`` runs (cache writes finished between runs, untimed) and the last frame."""
    times, frame = [], pd.DataFrame()
    for _ in range(repeat):
        t0 = time.perf_counter()
        frame = fn()
        times.append(time.perf_counter() - t0)
        wait_for_cache_writes()
    return float(np.median(times)), frame


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
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is shown (default 3)")
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
        homes = (Path(tmp) / f"run{i}" for i in itertools.count())
        t_ours, mine = timed(lambda: ours(env, next(homes), first, last), args.repeat)
        plan = pd.DataFrame({"session": pd.to_datetime(mine["session_end_date"]), "contract": mine["contract"]})
        plan = plan.drop_duplicates().reset_index(drop=True)
        t_base, base = timed(lambda: per_contract(env, next(homes), first, last, plan), args.repeat)
        t_floor, floor = timed(lambda: naive(env, plan), args.repeat)
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait()
    closes = mine["close"].to_numpy()
    same = all(len(f) == len(mine) and np.array_equal(f["close"].to_numpy(), closes) for f in (base, floor))
    ratio, ratio_floor = t_base / t_ours, t_floor / t_ours
    print(f"ES.c.0 1m, {args.days} sessions: {len(mine):,} bars from {plan['contract'].nunique()} contracts, "
          f"{len(mine.attrs['rolls'])} rolls; median of {args.repeat} runs")
    print(f"(a) ours, continuous from flat files                  {t_ours:7.2f} s")
    print(f"(b) baseline: download_flat_file per contract, concat {t_base:7.2f} s   (b)/(a) {ratio:.2f}x "
          f"(target >= {TARGET:.0f}x){'' if ratio >= TARGET else '  MISSED'}")
    print(f"(c) floor: boto3 + pandas, each day file once         {t_floor:7.2f} s   (c)/(a) {ratio_floor:.2f}x")
    print(f"same bars in all three: {same}")
    return 1 if args.strict and (ratio < TARGET or not same) else 0


if __name__ == "__main__":
    sys.exit(main())
