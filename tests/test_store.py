"""The history store against a real sandbox S3 endpoint: ingest (local pool and Dask), incremental updates,
republished files, killed runs and workers, queries equal to download_flat_file, no network on reads, an S3 store."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem as FsspecLocalFileSystem

from massive_feeds.cli import main
from massive_feeds.config import PLANS, Settings
from massive_feeds.errors import InvalidInputError, QuotaExceededError, StoreError
from massive_feeds.flatfiles import download_flat_file
from massive_feeds.sandbox import Sandbox
from massive_feeds.store import HistoryStore, IngestError, compact, ingest, load_store, parse_dataset
from massive_feeds.store.location import StoreLocation, redact_url

FIRST, LAST = date(2024, 1, 25), date(2024, 2, 6)  # Thu .. Tue: two weekends and a month boundary
WEEKDAYS = [d for d in pd.date_range(FIRST, LAST).date if d.weekday() < 5]
MINUTE = "us_stocks_sip/minute_aggs_v1"
DAY = "us_stocks_sip/day_aggs_v1"
SYMBOLS = ["AAPL", "MSFT", "SPY"]


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(FIRST, LAST)) as sandbox:  # REST serves the splits list
        yield sandbox


@pytest.fixture(autouse=True)
def _reset_sandbox(sb: Sandbox) -> Iterator[None]:
    yield
    sb.s3.denied_prefixes.clear()
    sb.s3.cut_next_downloads(0)


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", plan="unlimited")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """Two single-threaded worker processes (the CI machine has 2 cores)."""
    pytest.importorskip("distributed", reason="engine='dask' needs pip install 'massive-feeds[store]'")
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=40)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def load_raw(*args: Any, **kwargs: Any) -> pd.DataFrame:
    """load_store with raw prices (needs no splits list, so no API key)."""
    return load_store(*args, adjusted=False, **kwargs)


def flat(*args: Any, **kwargs: Any) -> pd.DataFrame:
    """download_flat_file with raw prices, which is what the store holds."""
    return download_flat_file(*args, adjusted=False, **kwargs)


def object_gets(sb: Sandbox) -> int:
    return sb.s3.count("GET", objects_only=True)


def stored_rows(store_dir: Path, dataset: str = MINUTE) -> pd.DataFrame:
    """Every row of the dataset's stored files, read as other tools would (no manifest), with its New York day."""
    rows = pa.concat_tables([pq.read_table(p) for p in day_files(store_dir, dataset)]).to_pandas()
    rows["date"] = rows["timestamp"].dt.tz_convert("America/New_York").dt.date
    return rows


def day_files(store_dir: Path, dataset: str = MINUTE) -> list[Path]:
    return sorted((store_dir / dataset).rglob("*.parquet"))


def temp_files(store_dir: Path) -> list[Path]:
    return sorted(p for p in store_dir.rglob(".*.partial"))


def assert_same_bars(store: pd.DataFrame, flat: pd.DataFrame) -> None:
    assert len(store) > 0
    pd.testing.assert_frame_equal(store.reset_index(drop=True), flat.reset_index(drop=True))


def assert_complete(store_dir: Path, days: list[date]) -> None:
    rows = stored_rows(store_dir)
    assert not rows.duplicated(["symbol", "timestamp"]).any()
    assert sorted(rows["date"].unique()) == days
    # one month file per month, no day file left over
    assert [p.parent.name for p in day_files(store_dir)] == sorted({f"month={d:%Y-%m}" for d in days})
    assert temp_files(store_dir) == []


# --- basics -------------------------------------------------------------------------------------
def test_parse_dataset_accepts_bar_and_tick_datasets_only() -> None:
    assert parse_dataset(MINUTE).path == MINUTE
    assert parse_dataset("global_crypto/day_aggs_v1/").asset == "crypto"
    assert parse_dataset("us_stocks_sip/trades_v1").is_ticks and not parse_dataset(MINUTE).is_ticks
    with pytest.raises(InvalidInputError, match="us_stocks_sip/minute_aggs_v1"):
        parse_dataset("us_stocks_sip/second_aggs_v1")
    with pytest.raises(InvalidInputError, match="no quotes for crypto"):
        parse_dataset("global_crypto/quotes_v1")


def test_redacted_urls_hide_credentials() -> None:
    shown = redact_url("s3://user:pw@bucket/p?endpoint_override=h:1&secret_key=abc&access_key=xyz")
    assert "abc" not in shown and "xyz" not in shown and "pw" not in shown
    assert "endpoint_override=h:1" in shown


def test_reprs(store_dir: Path) -> None:
    store = HistoryStore(store_dir)
    assert repr(store) == f"HistoryStore('{store_dir}')"
    assert repr(StoreLocation.resolve(store_dir)) == f"StoreLocation('{store_dir}')"
    assert "empty" in repr(store.manifest(MINUTE))


# --- ingest and query ---------------------------------------------------------------------------
def test_ingest_then_query_equals_flat_files(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings, workers=2)
    assert report.ingested == WEEKDAYS and len(report.absent) == 4 and not report.failed
    assert "9 day(s) ingested" in str(report) and "IngestReport" in repr(report)
    assert_complete(store_dir, WEEKDAYS)
    for interval in ("1m", "5m", "15m", "1h", "4h"):
        got = load_raw(SYMBOLS, "2024-01-26", "2024-02-05", interval, store=store_dir)
        assert_same_bars(got, flat(SYMBOLS, "2024-01-26", "2024-02-05", interval, settings=settings))
        assert got.attrs["method"] == "store" and got.attrs["not_ingested_days"] == []
    # an intraday window in UTC datetimes, cut before resampling as on every path
    got = load_raw("AAPL", "2024-01-29T15:07:00", "2024-01-30T18:00:00", "30m", store=store_dir)
    assert_same_bars(got, flat("AAPL", "2024-01-29T15:07:00", "2024-01-30T18:00:00", "30m",
                                             settings=settings))


def test_day_files_serve_daily_weekly_monthly_bars(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest(DAY, FIRST, LAST, store=store_dir, settings=settings)
    for interval in ("1d", "1w", "1M"):
        got = load_raw(["AAPL", "QQQ"], FIRST, LAST, interval, store=store_dir)
        assert_same_bars(got, flat(["AAPL", "QQQ"], FIRST, LAST, interval, settings=settings))


def test_read_base_gives_unresampled_rows(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest(MINUTE, "2024-01-29", "2024-01-29", store=store_dir, settings=settings)
    base = HistoryStore(store_dir).read_base("AAPL", "2024-01-29", "2024-01-29", "4h")
    assert base.attrs["interval"] == "1m"
    assert_same_bars(base, flat("AAPL", "2024-01-29", "2024-01-29", "1m", settings=settings))


@pytest.mark.parametrize("interval, session", [("1h", "extended"), ("15m", "regular"), ("1d", "regular")])
def test_adjusted_and_regular_reads_equal_flat_files_across_a_split(sb: Sandbox, settings: Settings,
                                                                  store_dir: Path, interval: str,
                                                                  session: str) -> None:
    # INTC has a 1-for-10 reverse split on 2024-01-31 in the sandbox
    ingest(MINUTE, "2024-01-29", "2024-02-02", ["INTC"], store=store_dir, settings=settings)
    got = load_store("INTC", "2024-01-29", "2024-02-02", interval, store=store_dir, settings=settings,
                     session=session)
    want = download_flat_file("INTC", "2024-01-29", "2024-02-02", interval, settings=settings, session=session)
    assert got.attrs["adjusted"] is True
    assert_same_bars(got, want)
    raw = load_raw("INTC", "2024-01-29", "2024-02-02", interval, store=store_dir, session=session)
    assert not np.allclose(raw["close"].to_numpy(), got["close"].to_numpy())


def test_crypto_dash_tickers_are_stored_in_rest_form(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest("global_crypto/minute_aggs_v1", "2024-02-03", "2024-02-04", store=store_dir, settings=settings)
    got = load_raw("BTC-USD", "2024-02-03", "2024-02-04", "1h", store=store_dir)
    assert set(got["symbol"]) == {"X:BTCUSD"}
    assert_same_bars(got, flat("X:BTCUSD", "2024-02-03", "2024-02-04", "1h", settings=settings))


def test_second_ingest_downloads_nothing_and_refresh_false_asks_nothing(sb: Sandbox, settings: Settings,
                                                                       store_dir: Path) -> None:
    ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    gets, requests = object_gets(sb), sb.s3.count()
    again = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    assert again.ingested == [] and again.skipped == WEEKDAYS
    assert object_gets(sb) == gets  # only the two month listings (January, February)
    assert sb.s3.count() - requests == again.s3_listings == 2
    requests = sb.s3.count()
    trusted = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings, refresh=False)
    assert trusted.skipped == WEEKDAYS and trusted.s3_listings == 0
    assert sb.s3.count() == requests  # zero S3 requests of any kind


def test_republished_file_is_ingested_again(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    key = "us_stocks_sip/minute_aggs_v1/2024/01/2024-01-30.csv.gz"
    old = HistoryStore(store_dir).manifest(MINUTE).days[date(2024, 1, 30)].etag
    new = sb.s3.republish(key)
    assert new != old
    gets = object_gets(sb)
    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    assert report.ingested == report.republished == [date(2024, 1, 30)]
    assert object_gets(sb) == gets + 1
    assert HistoryStore(store_dir).manifest(MINUTE).days[date(2024, 1, 30)].etag == new
    assert_complete(store_dir, WEEKDAYS)


def test_killed_run_resumes_without_duplicates(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    done: list[date] = []

    def die_after_three(result: Any) -> None:
        done.append(result.day)
        if len(done) == 3:
            raise KeyboardInterrupt  # the run is killed here

    with pytest.raises(KeyboardInterrupt):
        ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings, workers=1, on_day=die_after_three)
    store = HistoryStore(store_dir)
    assert sorted(store.days(MINUTE)) == sorted(done)
    # What a kill -9 can also leave: a half-written temp file, and a finished day file that the manifest
    # never recorded (killed between the rename and the manifest save).
    stray = store_dir / MINUTE / "date=2024-02-05" / ".part-0.parquet.dead.partial"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"half a parquet file")
    manifest = store.manifest(MINUTE)
    dropped = done[-1]
    del manifest.days[dropped]
    store.save_manifest(manifest)

    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    assert report.swept_temp_files == 1
    assert sorted(report.ingested) == sorted(set(WEEKDAYS) - set(done[:-1]))
    assert_complete(store_dir, WEEKDAYS)
    assert_same_bars(load_raw(SYMBOLS, FIRST, LAST, "15m", store=store_dir),
                     flat(SYMBOLS, FIRST, LAST, "15m", settings=settings))


def test_dask_cluster_survives_a_killed_worker(sb: Sandbox, settings: Settings, store_dir: Path,
                                               dask_client: Any) -> None:
    pids = dask_client.run(os.getpid)  # worker address -> pid
    lost: list[str] = []

    def kill_a_busy_worker(result: Any) -> None:
        """After the first finished day, SIGKILL the worker holding the most tasks right now."""
        busy = {w: keys for w, keys in dask_client.processing().items() if keys}
        if not lost and busy:
            worker = max(busy, key=lambda w: len(busy[w]))
            lost.extend(busy[worker])
            os.kill(pids[worker], signal.SIGKILL)

    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings, engine="dask", scheduler=dask_client,
                    on_day=kill_a_busy_worker)
    assert lost, "no task was running when the worker was killed"
    assert report.ingested == WEEKDAYS and not report.failed
    assert report.engine.startswith("Dask existing client")
    assert_complete(store_dir, WEEKDAYS)
    assert_same_bars(load_raw(SYMBOLS, FIRST, LAST, "1h", store=store_dir),
                     flat(SYMBOLS, FIRST, LAST, "1h", settings=settings))
    dask_client.wait_for_workers(2, timeout=30)  # the nanny restarted it for the next test


def test_dask_ingest_equals_local_ingest(sb: Sandbox, settings: Settings, tmp_path: Path, dask_client: Any) -> None:
    ingest(MINUTE, "2024-02-01", "2024-02-02", store=tmp_path / "local", settings=settings)
    ingest(MINUTE, "2024-02-01", "2024-02-02", store=tmp_path / "dask", settings=settings, engine="dask",
           scheduler=dask_client)
    local, dask = (day_files(tmp_path / where) for where in ("local", "dask"))
    assert [p.relative_to(tmp_path / "local") for p in local] == [p.relative_to(tmp_path / "dask") for p in dask]
    assert len(local) == 1 and pq.read_table(local[0]).equals(pq.read_table(dask[0]))


def test_local_cluster_started_by_ingest(sb: Sandbox, settings: Settings, store_dir: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("distributed")
    caplog.set_level("INFO", logger="massive_feeds.store")
    report = ingest(MINUTE, "2024-01-29", "2024-01-31", store=store_dir, settings=settings, engine="dask",
                    workers=2, processes=False)
    assert report.ingested == [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31)]
    assert "LocalCluster (2 thread worker(s))" in report.engine
    assert "dashboard:" in caplog.text


def test_load_store_makes_no_network_calls(sb: Sandbox, settings: Settings, store_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    requests = sb.s3.count()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_store opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    df = load_raw(SYMBOLS, FIRST, LAST, "1h", store=store_dir)
    assert len(df) and sb.s3.count() == requests


def test_symbol_subsets_are_extended_not_replaced(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest(MINUTE, "2024-01-29", "2024-01-30", ["AAPL"], store=store_dir, settings=settings)
    store = HistoryStore(store_dir)
    assert store.covers("AAPL", "2024-01-29", "2024-01-30", "1h")
    assert not store.covers("MSFT", "2024-01-29", "2024-01-30", "1h")
    msft = load_raw("MSFT", "2024-01-29", "2024-01-30", "1h", store=store_dir)
    assert msft.empty and msft.attrs["not_ingested_days"] == ["2024-01-29", "2024-01-30"]
    report = ingest(MINUTE, "2024-01-29", "2024-01-30", ["MSFT"], store=store_dir, settings=settings)
    assert len(report.ingested) == 2
    assert store.manifest(MINUTE).days[date(2024, 1, 29)].symbols == ("AAPL", "MSFT")
    both = load_raw(["AAPL", "MSFT"], "2024-01-29", "2024-01-30", "5m", store=store_dir)
    assert_same_bars(both, flat(["AAPL", "MSFT"], "2024-01-29", "2024-01-30", "5m", settings=settings))
    assert set(stored_rows(store_dir)["symbol"]) == {"AAPL", "MSFT"}


# --- failures -----------------------------------------------------------------------------------
def test_bad_input_is_refused_before_any_request(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    requests = sb.s3.count()
    with pytest.raises(InvalidInputError, match="not in us_stocks_sip"):
        ingest(MINUTE, FIRST, LAST, ["X:BTCUSD"], store=store_dir, settings=settings)
    with pytest.raises(InvalidInputError, match="engine"):
        ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings, engine="spark")
    with pytest.raises(InvalidInputError, match="session"):
        load_raw("AAPL", FIRST, LAST, "1h", store=store_dir, session="overnight")
    assert sb.s3.count() == requests
    with pytest.raises(StoreError, match="massive-feeds ingest --dataset us_stocks_sip/minute_aggs_v1"):
        load_raw("AAPL", FIRST, LAST, "1h", store=store_dir)


def test_quota_is_reserved_before_downloading(sb: Sandbox, tmp_path: Path, store_dir: Path) -> None:
    base = sb.settings(home=tmp_path / "home")
    tight = dataclasses.replace(base, plan=dataclasses.replace(PLANS["free"], flatfile_bytes_per_month=1000))
    gets = object_gets(sb)
    with pytest.raises(QuotaExceededError):
        ingest(MINUTE, FIRST, LAST, store=store_dir, settings=tight)
    assert object_gets(sb) == gets
    assert day_files(store_dir) == []


def test_corrupt_day_fails_alone_and_the_rest_is_stored(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    key = "us_stocks_sip/minute_aggs_v1/2024/02/2024-02-01.csv.gz"
    sb.s3.corrupt(key)
    try:
        with pytest.raises(IngestError, match="2024-02-01") as err:
            ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
        assert list(err.value.report.failed) == [date(2024, 2, 1)]
        assert HistoryStore(store_dir).days(MINUTE) == [d for d in WEEKDAYS if d != date(2024, 2, 1)]
    finally:
        sb.s3.republish(key)
    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    assert report.ingested == [date(2024, 2, 1)]
    assert_complete(store_dir, WEEKDAYS)


def test_one_ingest_per_local_store_at_a_time(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    from filelock import FileLock

    (store_dir / MINUTE).mkdir(parents=True)
    with FileLock(str(store_dir / MINUTE / ".ingest.lock")), pytest.raises(StoreError, match="Another ingest"):
        ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)


def test_damaged_manifest_is_a_store_error(store_dir: Path) -> None:
    (store_dir / MINUTE).mkdir(parents=True)
    (store_dir / MINUTE / "_manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="damaged"):
        HistoryStore(store_dir).manifest(MINUTE)


# --- shared store on an object store ------------------------------------------------------------
def test_store_on_s3(sb: Sandbox, settings: Settings, tmp_path: Path) -> None:
    """A team store in an S3 bucket of its own (a separate, writable moto server; the flat-file bucket is
    read-only), reached through pyarrow's S3 client."""
    import boto3
    import pyarrow.fs as pafs
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="team",
                     aws_secret_access_key="team-secret").create_bucket(Bucket="team-store")
        fs = pafs.S3FileSystem(access_key="team", secret_key="team-secret", endpoint_override=f"{host}:{port}",
                               scheme="http", region="us-east-1")
        store = HistoryStore("team-store/history", filesystem=fs)
        report = ingest(MINUTE, "2024-01-29", "2024-01-31", store=store, settings=settings)
        assert len(report.ingested) == 3
        got = load_raw(SYMBOLS, "2024-01-29", "2024-01-31", "1h", store=store)
        assert_same_bars(got, flat(SYMBOLS, "2024-01-29", "2024-01-31", "1h", settings=settings))
        listed = fs.get_file_info(pafs.FileSelector("team-store/history", recursive=True))
        names = sorted(i.path for i in listed if i.type == pafs.FileType.File)
        assert names[0].endswith("_manifest.json") and len(names) == 2  # the manifest and January's month file
        assert "/month=2024-01/part-" in names[1]
        assert not any(".partial" in n for n in names)
        gets = object_gets(sb)
        assert ingest(MINUTE, "2024-01-29", "2024-01-31", store=store, settings=settings).ingested == []
        assert object_gets(sb) == gets
    finally:
        server.stop()


# --- CLI ----------------------------------------------------------------------------------------
def test_cli_ingest(sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in sb.env().items():
        monkeypatch.setenv(key, value)
    store = tmp_path / "cli-store"
    argv = ["ingest", "--dataset", MINUTE, "--start", "2024-01-29", "--end", "2024-01-30", "--store", str(store),
            "--symbols", "AAPL,MSFT"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 day(s) ingested" in out
    assert main(argv) == 0
    assert "2 already up to date" in capsys.readouterr().out
    assert main(["ingest", "--dataset", "nope/x", "--start", "2024-01-29", "--end", "2024-01-30",
                 "--store", str(store)]) == 2  # bad input
    assert "Invalid dataset" in capsys.readouterr().err
    manifest = json.loads((store / MINUTE / "_manifest.json").read_text())
    assert manifest["days"]["2024-01-29"]["symbols"] == ["AAPL", "MSFT"]


def test_damaged_day_file_is_ingested_again(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    (damaged,) = day_files(store_dir)  # January's month file
    damaged.write_bytes(damaged.read_bytes()[:1000])  # e.g. a power cut right after the rename
    with pytest.raises(StoreError, match="run the ingest again"):
        load_raw("AAPL", "2024-01-29", "2024-01-30", "1h", store=store_dir)
    report = ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    assert report.ingested == [date(2024, 1, 29), date(2024, 1, 30)]  # both days were in the damaged file
    assert_same_bars(load_raw("AAPL", "2024-01-29", "2024-01-30", "1h", store=store_dir),
                     flat("AAPL", "2024-01-29", "2024-01-30", "1h", settings=settings))


def test_unreachable_scheduler_is_a_configuration_error(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    pytest.importorskip("distributed")
    from massive_feeds.errors import ConfigurationError
    from massive_feeds.store.engines import DaskRunner

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigurationError, match="Cannot reach the Dask scheduler"):
        DaskRunner(f"tcp://127.0.0.1:{port}", connect_timeout="1s")


def test_fetch_data_reads_the_store_explicitly_and_prefers_it_in_auto_mode(sb: Sandbox, settings: Settings,
                                                                            store_dir: Path) -> None:
    from massive_feeds import fetch_data

    ingest(MINUTE, "2024-01-29", "2024-01-31", store=store_dir, settings=settings)
    requests = sb.s3.count()
    explicit = fetch_data("AAPL", "2024-01-29", "2024-01-31", "1h", method="store", store=store_dir,
                          settings=settings)
    auto = fetch_data("AAPL", "2024-01-29", "2024-01-31", "1h", store=store_dir, settings=settings)
    assert auto.attrs["method"] == "store" and "history store" in auto.attrs["method_reason"]
    assert sb.s3.count() == requests  # no flat-file traffic at all
    assert_same_bars(explicit, auto)
    later = fetch_data("AAPL", "2024-02-05", "2024-02-06", "1h", store=store_dir, settings=settings)
    assert later.attrs["method"] != "store"  # days the store does not hold go to Massive


# --- month files --------------------------------------------------------------------------------
def month_files(store_dir: Path, dataset: str = MINUTE) -> list[str]:
    return [str(p.relative_to(store_dir / dataset)) for p in day_files(store_dir, dataset)]


def manifest_doc(store_dir: Path, dataset: str = MINUTE) -> dict[str, Any]:
    return json.loads((store_dir / dataset / "_manifest.json").read_text())


def test_query_across_a_month_boundary_reads_one_file_per_month(sb: Sandbox, settings: Settings,
                                                               store_dir: Path) -> None:
    ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings)
    doc = manifest_doc(store_dir)
    assert doc["format"] == 2
    by_month = {e["file"].split("/")[0] for e in doc["days"].values()}
    assert by_month == {"month=2024-01", "month=2024-02"} and len(month_files(store_dir)) == 2
    (row,) = HistoryStore(store_dir).describe().to_dict("records")  # each month file counted once
    assert row["days"] == len(WEEKDAYS) and row["bytes"] == sum(p.stat().st_size for p in day_files(store_dir))
    got = load_raw(SYMBOLS, "2024-01-30", "2024-02-02", "1h", store=store_dir)
    assert got.attrs["files"] == 2 and got.attrs["not_ingested_days"] == []
    assert_same_bars(got, flat(SYMBOLS, "2024-01-30", "2024-02-02", "1h", settings=settings))
    # a window inside one month reads only that month's file, and only the asked days of it
    one = load_raw("AAPL", "2024-01-29", "2024-01-29", "1m", store=store_dir)
    assert one.attrs["files"] == 1
    assert_same_bars(one, flat("AAPL", "2024-01-29", "2024-01-29", "1m", settings=settings))


def test_appending_a_day_rewrites_its_month_and_drops_the_old_file(sb: Sandbox, settings: Settings,
                                                                  store_dir: Path) -> None:
    first = ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    assert first.merged_months == ["2024-01"] and "merged into month files: 2024-01" in str(first)
    (old,) = month_files(store_dir)
    report = ingest(MINUTE, "2024-01-31", "2024-01-31", store=store_dir, settings=settings)
    assert report.ingested == [date(2024, 1, 31)] and report.merged_months == ["2024-01"]
    (new,) = month_files(store_dir)
    assert new != old and new.startswith("month=2024-01/")
    days = manifest_doc(store_dir)["days"]
    assert sorted(days) == ["2024-01-29", "2024-01-30", "2024-01-31"] and {e["file"] for e in days.values()} == {new}
    assert_complete(store_dir, [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31)])
    assert_same_bars(load_raw(SYMBOLS, "2024-01-29", "2024-01-31", "15m", store=store_dir),
                     flat(SYMBOLS, "2024-01-29", "2024-01-31", "15m", settings=settings))
    # nothing new: the month is not written again
    again = ingest(MINUTE, "2024-01-29", "2024-01-31", store=store_dir, settings=settings)
    assert again.ingested == [] and again.merged_months == [] and month_files(store_dir) == [new]


def test_symbols_held_on_some_days_only(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    """One month file holds days ingested for different symbols; each day still answers only for its own."""
    ingest(MINUTE, "2024-01-29", "2024-01-30", ["AAPL"], store=store_dir, settings=settings)
    ingest(MINUTE, "2024-01-30", "2024-01-31", ["MSFT"], store=store_dir, settings=settings)
    assert len(month_files(store_dir)) == 1
    msft = load_raw("MSFT", "2024-01-29", "2024-01-31", "1h", store=store_dir)
    assert msft.attrs["not_ingested_days"] == ["2024-01-29"]
    assert_same_bars(msft, flat("MSFT", "2024-01-30", "2024-01-31", "1h", settings=settings))
    aapl = load_raw("AAPL", "2024-01-29", "2024-01-31", "1h", store=store_dir)
    assert aapl.attrs["not_ingested_days"] == ["2024-01-31"]
    assert_same_bars(aapl, flat("AAPL", "2024-01-29", "2024-01-30", "1h", settings=settings))
    both = load_raw(["AAPL", "MSFT"], "2024-01-30", "2024-01-30", "5m", store=store_dir)
    assert both.attrs["not_ingested_days"] == []
    assert_same_bars(both, flat(["AAPL", "MSFT"], "2024-01-30", "2024-01-30", "5m", settings=settings))


def test_old_per_day_layout_is_read_then_merged(sb: Sandbox, settings: Settings, store_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    report = ingest(MINUTE, FIRST, LAST, store=store_dir, settings=settings, compact=False)
    assert report.merged_months == []
    # what massive_feeds wrote before month files: one file per day, a format-1 manifest every version reads
    assert [p.parent.name for p in day_files(store_dir)] == [f"date={d}" for d in WEEKDAYS]
    assert manifest_doc(store_dir)["format"] == 1
    want = flat(SYMBOLS, FIRST, LAST, "1h", settings=settings)
    old = load_raw(SYMBOLS, FIRST, LAST, "1h", store=store_dir)
    assert old.attrs["files"] == len(WEEKDAYS)
    assert_same_bars(old, want)
    requests = sb.s3.count()
    # one month through the CLI, the other through the function
    assert main(["compact", "--dataset", MINUTE, "--start", str(FIRST), "--end", "2024-01-31",
                 "--store", str(store_dir)]) == 0
    assert capsys.readouterr().out.strip() == "merged into month files: 2024-01"
    assert compact(MINUTE, store=store_dir) == ["2024-02"]
    assert sb.s3.count() == requests  # merging asks Massive nothing
    assert_complete(store_dir, WEEKDAYS)
    new = load_raw(SYMBOLS, FIRST, LAST, "1h", store=store_dir)
    assert new.attrs["files"] == 2
    assert_same_bars(new, want)
    assert compact(MINUTE, store=store_dir) == []  # already merged
    assert main(["compact", "--dataset", MINUTE, "--store", str(store_dir)]) == 0
    assert "nothing to merge" in capsys.readouterr().out
    assert main(["compact", "--dataset", "us_stocks_sip/trades_v1", "--store", str(store_dir)]) == 2
    assert "kept one file per day" in capsys.readouterr().err


def test_day_superseded_inside_a_month_file_is_read_from_its_new_file(sb: Sandbox, settings: Settings,
                                                                      store_dir: Path) -> None:
    """A republished day re-ingested but not merged yet (the run died before the merge): the month file still
    holds the old copy of that day, which a query must not add to the new one."""
    ingest(MINUTE, "2024-01-29", "2024-01-31", store=store_dir, settings=settings)
    sb.s3.republish("us_stocks_sip/minute_aggs_v1/2024/01/2024-01-30.csv.gz")
    report = ingest(MINUTE, "2024-01-29", "2024-01-31", store=store_dir, settings=settings, compact=False)
    assert report.ingested == [date(2024, 1, 30)]
    files = {d: e["file"] for d, e in manifest_doc(store_dir)["days"].items()}
    assert files["2024-01-30"] == "date=2024-01-30/part-0.parquet" and files["2024-01-29"].startswith("month=")
    want = flat(SYMBOLS, "2024-01-29", "2024-01-31", "1h", settings=settings)
    got = load_raw(SYMBOLS, "2024-01-29", "2024-01-31", "1h", store=store_dir)
    assert got.attrs["files"] == 2
    assert_same_bars(got, want)  # volumes would be doubled on 2024-01-30 if the old copy were read too
    assert compact(MINUTE, "2024-01-29", "2024-01-31", store=store_dir) == ["2024-01"]
    assert_complete(store_dir, [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31)])
    assert_same_bars(load_raw(SYMBOLS, "2024-01-29", "2024-01-31", "1h", store=store_dir), want)


def test_failed_merge_leaves_the_days_readable(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    (before,) = month_files(store_dir)
    blocker = store_dir / MINUTE / "month=2024-02"  # a file where February's month folder must go
    blocker.write_text("not a folder")
    with pytest.raises(IngestError, match="could not be merged") as err:
        ingest(MINUTE, "2024-01-31", "2024-02-01", store=store_dir, settings=settings)
    assert err.value.report.ingested == [date(2024, 1, 31), date(2024, 2, 1)]
    assert list(err.value.report.merge_failed) == ["2024-02"] and err.value.report.merged_months == ["2024-01"]
    assert before not in month_files(store_dir) and temp_files(store_dir) == []
    files = {d: e["file"] for d, e in manifest_doc(store_dir)["days"].items()}
    assert files["2024-02-01"] == "date=2024-02-01/part-0.parquet"
    want = flat(SYMBOLS, "2024-01-29", "2024-02-01", "1h", settings=settings)
    assert_same_bars(load_raw(SYMBOLS, "2024-01-29", "2024-02-01", "1h", store=store_dir), want)
    blocker.unlink()
    assert compact(MINUTE, store=store_dir) == ["2024-02"]
    assert_complete(store_dir, [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1)])
    assert_same_bars(load_raw(SYMBOLS, "2024-01-29", "2024-02-01", "1h", store=store_dir), want)


def test_files_left_by_a_merge_killed_after_the_manifest_save_are_swept(sb: Sandbox, settings: Settings,
                                                                       store_dir: Path) -> None:
    ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    (month,) = day_files(store_dir)
    stale = store_dir / MINUTE / "date=2024-01-29" / "part-0.parquet"  # an input the merge had not deleted yet
    stale.parent.mkdir()
    stale.write_bytes(month.read_bytes())
    assert_same_bars(load_raw(SYMBOLS, "2024-01-29", "2024-01-30", "1h", store=store_dir),
                     flat(SYMBOLS, "2024-01-29", "2024-01-30", "1h", settings=settings))
    report = ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    assert report.swept_unreferenced_files == 1 and report.ingested == [] and not stale.exists()
    assert day_files(store_dir) == [month]


def test_newer_manifest_format_is_refused(store_dir: Path) -> None:
    (store_dir / MINUTE).mkdir(parents=True)
    (store_dir / MINUTE / "_manifest.json").write_text(json.dumps({"format": 3, "dataset": MINUTE, "days": {}}))
    with pytest.raises(StoreError, match="format 3.*upgrade"):
        HistoryStore(store_dir).manifest(MINUTE)


def test_compact_refuses_tick_datasets(store_dir: Path) -> None:
    with pytest.raises(InvalidInputError, match="one file per day"):
        compact("us_stocks_sip/quotes_v1", store=store_dir)


@pytest.mark.parametrize("target, shape", [(5000, "shared"), (4000, "alone"), (400, "split")])
def test_month_file_row_groups_are_cut_at_symbols_and_found_by_the_index(sb: Sandbox, settings: Settings,
                                                                        store_dir: Path, target: int, shape: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Symbols of fewer than target/4 rows share groups; busier ones get groups of their own; one larger than a
    group is split over several. The index in the footer finds them all."""
    from massive_feeds.store import monthfile

    monkeypatch.setattr(monthfile, "MONTH_ROW_GROUP_ROWS", target)  # the sandbox: ~1,100 rows a ticker in 2 days
    ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    (path,) = day_files(store_dir)
    pf = pq.ParquetFile(path)
    groups = json.loads(pf.metadata.metadata[b"massive_feeds_store"])["groups"]
    assert len(groups) == pf.metadata.num_row_groups >= 5  # 19 tickers
    symbols = [pf.read_row_group(i, columns=["symbol"]).column("symbol").to_pylist() for i in range(len(groups))]
    for (first, last), held in zip(groups, symbols):
        assert [first, last] == [held[0], held[-1]] and held == sorted(held) and len(held) <= target
    for before, after in zip(symbols, symbols[1:]):  # a symbol goes on into the next group only when it fills one
        assert before[-1] != after[0] or (len(before) == target and len(set(before)) == 1)
    runs = [len(held) for held in symbols]
    if shape == "shared":
        assert all(len(set(held)) > 1 for held in symbols[:-1])
    else:
        assert all(len(set(held)) == 1 for held in symbols)
        assert (max(runs) == target) == (shape == "split")
    everyone = sorted({s for held in symbols for s in held})
    for pick in ([everyone[0]], [everyone[-1]], everyone[len(everyone) // 2: len(everyone) // 2 + 3], everyone):
        got = load_raw(pick, "2024-01-29", "2024-01-30", "30m", store=store_dir)
        assert set(got["symbol"]) == set(pick)
        assert_same_bars(got, flat(pick, "2024-01-29", "2024-01-30", "30m", settings=settings))


class _ReplacedWhileOpening(FsspecLocalFileSystem):
    """A real local filesystem on which, the first time a month file is opened for reading, another ingest
    replaces that month first: what a concurrent writer does between a query's manifest read and its open."""

    cachable = False  # fsspec would hand back one shared instance per arguments

    def __init__(self, replace_month: Callable[[], object]) -> None:
        super().__init__()
        self.replace_month, self.fired = replace_month, False

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if not self.fired and "r" in mode and "month=" in str(path):
            self.fired = True
            self.replace_month()
        return super()._open(path, mode, *args, **kwargs)


def test_a_query_racing_an_ingest_reads_the_new_month_file(sb: Sandbox, settings: Settings, store_dir: Path) -> None:
    """The ingest deletes the month file the query was about to open (after saving the new manifest): the query
    reads again from the new manifest and gets every day, instead of failing on the missing file or
    answering from the old one."""
    ingest(MINUTE, "2024-01-29", "2024-01-30", store=store_dir, settings=settings)
    (old,) = month_files(store_dir)
    racing = _ReplacedWhileOpening(lambda: ingest(MINUTE, "2024-01-31", "2024-01-31", store=store_dir,
                                                  settings=settings))
    got = load_raw(SYMBOLS, "2024-01-29", "2024-01-31", "1h", store=str(store_dir), filesystem=racing)
    assert racing.fired and month_files(store_dir) != [old]
    assert got.attrs["not_ingested_days"] == []
    assert_same_bars(got, flat(SYMBOLS, "2024-01-29", "2024-01-31", "1h", settings=settings))
