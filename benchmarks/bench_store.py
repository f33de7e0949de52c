"""History-store benchmark: ingest 20 full-market minute days, then query 5 symbols × 20 days at 1h.

Generates (once, cached in the temp folder) 20 day files shaped like Massive's ``us_stocks_sip/minute_aggs_v1``
(~11,000 tickers, ~1.6 M rows, ~20 MB gzip each; the generator of ``bench_flatfiles.py``), serves them from the
sandbox's S3 endpoint (moto on loopback, real SigV4) in a process of its own, and times:

  ingest with each engine: (1) engine="local", 1 worker; (2) 2 thread workers; (3) 2 process workers;
  (4) engine="dask", a LocalCluster of 2 single-threaded worker processes (started before the clock); twice:
    * from S3, each run from an empty flat-file cache and an empty store (download + parse + write);
    * pre-staged: the day files already in the flat-file cache as downloaded gzip entries, so only parse +
      write are timed (where the Dask engine's scaling can show: no S3 server competing for the cores);
  each ingest ends by merging the month's days into one month file (the history store's layout; its share of the
  time is shown);
  reporting days/s, speed-up over (1), efficiency (speed-up / workers), the CPU cores busy in the ingest (this
  process, its pools, the Dask workers) and in the S3 server's process, and for each parallel engine what
  limited its scaling (all cores busy, the GIL, or waiting);

  query, 5 symbols × 20 days → 1h bars, unadjusted on every path (flat files and the store hold raw prices:
  like with like, and no REST key needed), median of several runs:
    (a) load_store from the store;
    (b) raw flat files: the 20 local gzip day files parsed with pyarrow, filtered, resampled;
    (c) download_flat_file from an empty cache (streamed from loopback S3);
    (d) download_flat_file again (its parquet day cache);
  and checks that all four give identical bars.

Target: (a) at least 100x faster than (b). Runs with no key at all. Run: ``.venv/bin/python
benchmarks/bench_store.py`` (``--days``/``--tickers`` for a smaller run; ``--query-only`` builds the store with engine
(1) alone and times the queries; ``--strict`` exits 1 when the target is missed).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402

from bench_flatfiles import HEADER, SYMBOLS, generate_day  # noqa: E402

DATASET = "us_stocks_sip/minute_aggs_v1"
FIRST_DAY = date(2024, 1, 2)
CACHE = Path(tempfile.gettempdir()) / "massive_feeds_bench" / "store_days"


def trading_days(n: int) -> list[date]:
    days, day = [], FIRST_DAY
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def key_of(day: date) -> str:
    return f"{DATASET}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def _make_day(args: tuple[int, str, int]) -> str:
    index, day_iso, n_tickers = args
    day = date.fromisoformat(day_iso)
    path = CACHE / f"{n_tickers}" / f"{day_iso}.csv.gz"
    if path.exists():
        return str(path)
    table = generate_day(n_tickers=n_tickers, seed=2024 + index)
    shift = (day - FIRST_DAY).days * 86_400 * 1_000_000_000
    table = table.set_column(table.schema.get_field_index("window_start"), "window_start",
                             pc.add(table.column("window_start"), shift))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    data = gzip.compress((HEADER + "\n").encode() + sink.getvalue().to_pybytes(), compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return str(path)


def day_files(days: list[date], n_tickers: int) -> dict[date, Path]:
    todo = [(i, d.isoformat(), n_tickers) for i, d in enumerate(days)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        paths = [Path(p) for p in pool.map(_make_day, todo)]
    took = time.perf_counter() - t0
    if took > 1:
        print(f"generated/checked {len(days)} day files in {took:.0f}s ({CACHE / str(n_tickers)})")
    return dict(zip(days, paths))


def cpu_seconds() -> float:
    """CPU time of this process, its finished children and every live descendant (Dask nannies and workers)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def raw_flat_files(paths: list[Path], first: date, last: date) -> Any:
    """(b): every gzip day parsed with pyarrow's streaming CSV reader, filtered to the symbols, resampled."""
    from massive_feeds.flatfiles.reader import COLUMN_TYPES, bars_from_tables, file_forms
    from massive_feeds.schema import parse_date_range, parse_interval

    forms = file_forms(SYMBOLS)
    values = pa.array(sorted(forms))
    parts = []
    for path in paths:
        reader = pacsv.open_csv(pa.input_stream(str(path), compression="gzip"),
                                read_options=pacsv.ReadOptions(block_size=4 << 20),
                                convert_options=pacsv.ConvertOptions(column_types=COLUMN_TYPES))
        kept = [b.filter(pc.is_in(b.column("ticker"), values)) for b in reader]
        parts.append((pa.Table.from_batches(kept, schema=reader.schema), forms))
    return bars_from_tables(parts, parse_date_range(first, last), parse_interval("1h"))


def serve(manifest: Path) -> None:
    """Child process: the sandbox's S3 endpoint (moto, real SigV4) holding the day files under their keys.
    Prints the environment pointing massive_feeds at it, then serves until stdin closes. A process of its own,
    so its CPU is measured apart from the ingest's (it still shares the machine's cores)."""
    from massive_feeds.sandbox import Sandbox

    logging.disable(logging.WARNING)
    files = json.loads(manifest.read_text())
    with Sandbox(rest=False, s3=True, s3_days=(date(2023, 1, 2), date(2023, 1, 2))) as sb:
        for key, path in files.items():
            sb.s3.put(key, Path(path).read_bytes())
        print(json.dumps(sb.env()), flush=True)
        sys.stdin.read()


def start_server(files: dict[date, Path], work: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    manifest = work / "objects.json"
    manifest.write_text(json.dumps({key_of(d): str(p) for d, p in files.items()}))
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(manifest)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit("the sandbox S3 server did not start")
    return proc, json.loads(line)


def process_cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def stage(files: dict[date, Path], settings: Any) -> None:
    """Put every day file in the flat-file cache as a complete downloaded gzip entry (key + ETag), so an
    ingest finds it there and only parses and writes (it still LISTs the bucket, which is small)."""
    from massive_feeds.flatfiles.cache import DayFileCache
    from massive_feeds.flatfiles.s3 import RemoteFile, S3Transport

    transport = S3Transport(settings)
    cache = DayFileCache(settings.cache_dir / "flatfiles")
    listed = {f.key: f for f in transport.list_files(f"{DATASET}/")}
    transport.close()
    for day, path in files.items():
        remote: RemoteFile = listed[key_of(day)]
        target = cache.gzip_path(remote)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def machine_cpu() -> tuple[float, float]:
    """Machine-wide CPU seconds so far: (busy, waiting on I/O), over every core and every process."""
    import psutil

    t = psutil.cpu_times()
    iowait = getattr(t, "iowait", 0.0)
    return sum(t) - t.idle - iowait, iowait


def limits(rows: list[tuple[str, int, float, float, float, float, float]], cpus: int) -> list[str]:
    """What held each parallel engine back: (label, workers, seconds, ingest cores, S3 server cores, machine
    busy cores, machine I/O-wait cores), all per wall second."""
    base = rows[0]
    out = []
    for label, _n, seconds, client, server, busy, iowait in rows[1:]:
        speedup = base[2] / seconds
        others = max(0.0, busy - client - server)
        if busy >= 0.85 * cpus:
            why = (f"CPU: {busy:.1f} of {cpus} cores busy ({client:.1f} ingesting, {server:.1f} serving S3, "
                   f"{others:.1f} other processes on this machine), so more workers cannot run faster here")
        elif "thread" in label and client < 1.3:
            why = f"GIL: the threads kept only {client:.1f} cores busy with {cpus - busy:.1f} idle"
        elif iowait >= 0.3:
            why = f"I/O: {iowait:.1f} cores' worth of time waiting on the disk"
        else:
            why = f"waiting (network, scheduling): {cpus - busy:.1f} of {cpus} cores idle"
        out.append(f"  {label:38} speed-up {speedup:4.2f}x -> {why}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--tickers", type=int, default=11_000)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per query method (median kept)")
    ap.add_argument("--rounds", type=int, default=1, help="ingest rounds per engine, interleaved (median kept)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the query target is missed")
    ap.add_argument("--query-only", action="store_true",
                    help="ingest once (engine 1, from S3) to build the store, then time the queries only")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.serve:
        serve(args.serve)
        return 0

    from distributed import Client, LocalCluster

    for noisy in ("distributed", "tornado", "massive_feeds.sandbox"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    import pandas as pd

    from massive_feeds.config import load_settings
    from massive_feeds.flatfiles import download_flat_file, wait_for_cache_writes
    from massive_feeds.store import ingest, load_store

    days = trading_days(args.days)
    files = day_files(days, args.tickers)
    gz_bytes = sum(p.stat().st_size for p in files.values())
    cpus = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench_store_"))
    print(f"{len(days)} day files {days[0]}..{days[-1]}, {gz_bytes / 1e6:.0f} MB gzip, {args.tickers:,} tickers/day; "
          f"{cpus} CPUs, load average {os.getloadavg()[0]:.1f} at start; work folder {work}")
    server, env = start_server(files, work)
    try:
        def fresh(name: str) -> Any:
            # No REST key on purpose: every query here is unadjusted (flat files and the store hold raw prices),
            # so nothing needs the splits list and the benchmark runs on a machine with no key at all.
            return load_settings(environ={k: v for k, v in env.items() if k != "MASSIVE_API_KEY"},
                                 home=work / name / "home", plan="unlimited")

        # --- ingest ------------------------------------------------------------------------------
        t0 = time.perf_counter()
        client = cluster = None
        if not args.query_only:
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
            client.run(lambda: __import__("massive_feeds.store.daytask"))  # warm the workers' imports
        cluster_start = time.perf_counter() - t0
        engines = [
            ("(1) local, 1 worker", 1, dict(engine="local", workers=1)),
            ("(2) local, 2 threads", 2, dict(engine="local", workers=2)),
            ("(3) local, 2 processes", 2, dict(engine="local", workers=2, processes=True)),
            ("(4) dask LocalCluster, 2 workers", 2, dict(engine="dask", scheduler=client)),
        ][:1 if args.query_only else 4]
        tables = {}
        for mode in ("s3",) if args.query_only else ("s3", "staged"):
            samples: dict[str, list[tuple[float, float, float, float, float, Any]]] = {
                label: [] for label, _, _ in engines}
            for _ in range(args.rounds):
                for i, (label, _n, kwargs) in enumerate(engines):
                    store = work / f"store-{mode}{i}"
                    shutil.rmtree(store, ignore_errors=True)
                    settings = fresh(f"ingest-{mode}{i}")
                    if mode == "staged":
                        stage(files, settings)
                    (busy0, io0), cpu0 = machine_cpu(), cpu_seconds()
                    srv0, t0 = process_cpu(server.pid), time.perf_counter()
                    report = ingest(DATASET, days[0], days[-1], store=store, settings=settings, progress=False,
                                    keep_flatfiles=mode == "s3", **kwargs)
                    seconds = time.perf_counter() - t0
                    server_cores = (process_cpu(server.pid) - srv0) / seconds
                    client_cores = (cpu_seconds() - cpu0) / seconds - server_cores
                    busy1, io1 = machine_cpu()
                    assert len(report.ingested) == len(days), report
                    samples[label].append((seconds, client_cores, server_cores, (busy1 - busy0) / seconds,
                                           (io1 - io0) / seconds, report))
                    shutil.rmtree(work / f"ingest-{mode}{i}", ignore_errors=True)  # that run's flat-file cache
            tables[mode] = [(label, n, *(_median([x[i] for x in samples[label]]) for i in range(5)),
                             samples[label][0][5]) for label, n, _ in engines]
        if client is not None and cluster is not None:
            client.close()
            cluster.close()

        for mode, title in (("s3", "from loopback S3: download + parse + write (empty cache and store each run)"),
                            ("staged", "day files pre-staged in the local flat-file cache: parse + write only")):
            if mode not in tables:
                continue
            results = tables[mode]
            base_rate = len(days) / results[0][2]
            print(f"\ningest of {len(days)} days {title}; median of {args.rounds} round(s); Dask LocalCluster "
                  f"start-up {cluster_start:.1f}s, not counted")
            print(f"{'engine':38} {'seconds':>8} {'of which month merge':>20} {'CPU s':>6} {'days/s':>7} "
                  f"{'speed-up':>9} {'efficiency':>10} {'cores: ingest':>13} {'S3 server':>9} {'machine':>8} "
                  f"{'rows':>12}")
            for label, n, seconds, client_cores, server_cores, busy, _, report in results:
                rate = len(days) / seconds
                merge = getattr(report, "merge_seconds", 0.0)
                # CPU seconds of the ingest itself: the figure that moves least when other processes share the cores
                print(f"{label:38} {seconds:8.1f} {merge:20.1f} {client_cores * seconds:6.1f} {rate:7.2f} "
                      f"{rate / base_rate:8.2f}x {rate / base_rate / n:9.0%} {client_cores:13.2f} {server_cores:9.2f} "
                      f"{busy:8.2f} {report.rows:12,}")
            print("what limits scaling (cores = CPU seconds per wall second; ingest = this process, its pools and the "
                  "Dask workers; S3 server = the sandbox's process; machine = every process on this machine):")
            print("\n".join(limits([r[:7] for r in results], cpus)))

        # --- query -------------------------------------------------------------------------------
        store = work / "store-s30"
        first, last = days[0], days[-1]
        query_settings = fresh("query")

        def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
            times, out = [], None
            for _ in range(repeat):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            return _median(times), out

        # Like with like: the store and flat files hold raw prices, so every path is asked for unadjusted bars.
        t_store, bars = timed(lambda: load_store(SYMBOLS, first, last, "1h", store=store, adjusted=False,
                                                 settings=query_settings), args.repeat)
        t_raw, raw = timed(lambda: raw_flat_files(list(files.values()), first, last), max(1, args.repeat // 2))
        t0 = time.perf_counter()
        cold = download_flat_file(SYMBOLS, first, last, "1h", settings=query_settings, adjusted=False, progress=False)
        t_cold = time.perf_counter() - t0
        wait_for_cache_writes()  # the parquet days land in the background; the warm runs read them
        t_warm, warm = timed(lambda: download_flat_file(SYMBOLS, first, last, "1h", settings=query_settings,
                                                        adjusted=False, progress=False), args.repeat)
        for name, other in (("raw flat files", raw), ("download_flat_file (cold)", cold),
                            ("download_flat_file (cached)", warm)):
            try:
                pd.testing.assert_frame_equal(bars.reset_index(drop=True), other.reset_index(drop=True))
            except AssertionError as exc:
                raise SystemExit(f"the store's bars differ from {name}: {exc}") from None
        stored = sorted(p for p in (store / DATASET).rglob("*.parquet"))
        folders = sorted({p.parent.name for p in stored})
        shown = folders[0] if len(folders) == 1 else f"{folders[0]} .. {folders[-1]}"
        print(f"\nstore layout: {len(stored)} file(s) in {shown}, {sum(p.stat().st_size for p in stored) / 1e6:.0f} MB; "
              f"the query read {bars.attrs.get('files')} of them")
        print(f"query: {len(SYMBOLS)} symbols x {len(days)} days -> 1h, unadjusted ({len(bars):,} bars, identical on "
              f"every path); median of {args.repeat} runs")
        print(f"{'method':56} {'seconds':>8} {'store is':>10}")
        for label, seconds in [("(a) load_store (history store)", t_store),
                               (f"(b) raw flat files: {len(days)} gzip days parsed (pyarrow)", t_raw),
                               ("(c) download_flat_file, empty cache (S3, streamed)", t_cold),
                               ("(d) download_flat_file, parquet day cache", t_warm)]:
            print(f"{label:56} {seconds:8.3f} {seconds / t_store:9.1f}x")
        ratio = t_raw / t_store
        ok = ratio >= 100
        print(f"\nstore >= 100x faster than raw flat files: {ratio:.0f}x  {'ok' if ok else 'MISSED'}")
        print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes share these {cpus} CPUs: compare "
              "figures of one run only)")
        return 1 if args.strict and not ok else 0
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
