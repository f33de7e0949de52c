"""The runtime context and the keyless sandbox default, over real sockets.

With no key the library starts the built-in sandbox once per process, says so once, labels the data,
and keeps the sandbox's quota and caches apart from a real account's; ``MASSIVE_SANDBOX`` switches it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from massive_feeds.config import PLANS, load_settings
from massive_feeds.datasets import list_datasets, save_dataset
from massive_feeds.errors import ConfigurationError, InvalidInputError, MissingCredentialsError
from massive_feeds.fetch import fetch_data
from massive_feeds.quota import QuotaManager, get_quota
from massive_feeds.rest import RestClient
from massive_feeds.runtime import Runtime, current, settings_for_source
from massive_feeds.sandbox import Sandbox, default_clock_start
from massive_feeds.sandbox.market import is_nyse_session
from massive_feeds.store.core import default_store_path

NOTICE = "this process uses the built-in sandbox"


def recent_days() -> tuple[str, str]:
    """Two NYSE sessions before the sandbox clock's day: data every sandbox serves."""
    day = default_clock_start().date()
    days = []
    while len(days) < 2:
        day -= timedelta(days=1)
        if is_nyse_session(day):
            days.append(day)
    return days[-1].isoformat(), days[0].isoformat()


def python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=180)


def real_rest_calls(home: Path) -> int:
    with sqlite3.connect(home / "state" / "quota.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM rest_calls").fetchone()[0]


def test_no_key_library_calls_use_the_sandbox_announced_once_and_isolated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    QuotaManager(PLANS["free"], home / "state" / "quota.sqlite3").acquire_rest()  # a real account's usage
    start, end = recent_days()
    result = python(f"""
        import json
        from massive_feeds import fetch_data, save_dataset
        from massive_feeds.stream import get_connector
        a = fetch_data("AAPL", "{start}", "{end}", "1h")
        b = fetch_data(["MSFT", "NVDA"], "{start}", "{end}", "1d", method="rest")
        save_dataset(a, "keyless")
        symbols = get_connector("massive").list_symbols("stocks", limit=3)
        print(json.dumps({{"sources": [a.attrs["source"], b.attrs["source"]], "rows": [len(a), len(b)],
                          "symbols": symbols}}))
    """, env={"MASSIVE_FEEDS_HOME": str(home)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["sources"] == ["sandbox", "sandbox"] and min(out["rows"]) > 0 and len(out["symbols"]) == 3
    assert result.stderr.count(NOTICE) == 1 and "MASSIVE_SANDBOX=0" in result.stderr
    assert "Traceback" not in result.stderr
    assert real_rest_calls(home) == 1  # the real quota file saw none of the sandbox calls
    with sqlite3.connect(home / "sandbox" / "state" / "quota.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM rest_calls").fetchone()[0] >= 3  # two fetches and the listing
    assert not (home / "cache").exists() and (home / "sandbox" / "cache" / "rest").is_dir()
    table = list_datasets(folder=home / "datasets")  # the per-user default (before: ./data/datasets)
    assert table.set_index("name").loc["keyless", "data_source"] == "sandbox"


def test_sandbox_off_without_key_names_both_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_SANDBOX", "0")
    with Runtime() as rt:
        with pytest.raises(MissingCredentialsError) as err:
            fetch_data("AAPL", *recent_days(), "1h")
        assert rt.sandbox is None
    text = str(err.value)
    assert "MASSIVE_API_KEY" in text and "MASSIVE_SANDBOX=1" in text and "MASSIVE_SANDBOX=0" in text


def test_sandbox_forced_with_a_key_never_sends_that_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "a-real-looking-key")
    monkeypatch.setenv("MASSIVE_SANDBOX", "1")
    with Runtime() as rt:
        df = fetch_data("AAPL", *recent_days(), "1h", method="rest")
        assert rt.sandbox is not None and df.attrs["source"] == "sandbox" and len(df) > 0
        # the sandbox refuses any key but its own (401), so these bars prove the real key stayed home
        assert RestClient().settings.api_key.reveal() == rt.sandbox.api_key


def test_with_a_key_and_no_switch_nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "a-real-looking-key")
    with Runtime() as rt:
        settings = rt.settings()
        assert settings.source == "massive" and settings.rest_url == "https://api.massive.com"
        assert rt.sandbox is None


def test_endpoints_of_a_running_sandbox_are_used_without_a_second_one(sandbox: Sandbox,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in sandbox.env().items():  # what `massive-feeds sandbox --print-env` exports
        monkeypatch.setenv(key, value)
    with Runtime() as rt:
        df = fetch_data("AAPL", *recent_days(), "1h", method="rest")
        assert rt.sandbox is None and df.attrs["source"] == "sandbox"
        assert get_quota().path.parent == Path(os.environ["MASSIVE_FEEDS_HOME"]) / "sandbox" / "state"


def test_explicit_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASSIVE_FEEDS_STORE", str(tmp_path / "env-store"))
    monkeypatch.setenv("MASSIVE_SANDBOX", "1")
    assert default_store_path(load_settings()) == tmp_path / "env-store"
    assert default_store_path(load_settings(store=tmp_path / "mine")) == tmp_path / "mine"
    assert load_settings(sandbox="off").sandbox == "off"
    monkeypatch.delenv("MASSIVE_FEEDS_STORE")
    assert default_store_path(load_settings()) == Path(os.environ["MASSIVE_FEEDS_HOME"]) / "sandbox" / "store"
    monkeypatch.setenv("MASSIVE_SANDBOX", "maybe")
    with pytest.raises(ConfigurationError, match="MASSIVE_SANDBOX"):
        load_settings()
    monkeypatch.setenv("MASSIVE_SANDBOX", "1")
    for bad in ("fast", "0", "-2"):
        monkeypatch.setenv("MASSIVE_SANDBOX_SPEED", bad)
        with pytest.raises(ConfigurationError, match="MASSIVE_SANDBOX_SPEED"):
            load_settings()
    monkeypatch.setenv("MASSIVE_SANDBOX_SPEED", "60")
    assert load_settings().sandbox_speed == 60.0


def test_http_sessions_are_per_thread_and_shared_within_one() -> None:
    with Runtime() as rt:
        barrier = threading.Barrier(4)
        seen: list[tuple[object, object]] = []  # the sessions themselves: ids of dead ones could be reused

        def grab() -> None:
            barrier.wait()  # all four alive at once
            seen.append((rt.http_session(), rt.http_session()))

        threads = [threading.Thread(target=grab) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(a is b for a, b in seen)  # one session per thread, reused
        assert len({id(a) for a, _ in seen}) == 4  # never shared across threads
        assert rt.http_session() is rt.http_session()


def test_rest_client_threads_use_their_own_sessions(settings, sandbox: Sandbox) -> None:
    with Runtime() as rt:
        client = RestClient(settings)
        sessions: dict[str, object] = {}

        def call(name: str) -> None:
            client.get_json("/v3/reference/tickers", {"limit": 1})
            sessions[name] = client._session

        threads = [threading.Thread(target=call, args=(f"t{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(s) for s in sessions.values()}) == 3
        assert rt.sandbox is None  # explicit sandbox settings: nothing embedded started


def test_shared_objects_live_and_die_with_their_runtime(settings) -> None:
    from massive_feeds.stream import get_connector

    with Runtime() as rt:
        assert current() is rt
        conn = get_connector("massive", settings=settings)
        assert get_connector("massive", settings=settings) is conn
        assert get_quota(settings) is get_quota(settings)
    assert conn.closed and current() is not rt
    with Runtime():
        assert get_connector("massive", settings=settings) is not conn


def test_the_runtime_owns_the_cache_writer_the_parquet_converter_and_the_s3_transports(tmp_path: Path) -> None:
    """No module-level pools, threads or transports: each is made lazily by the runtime in use, and closing the
    runtime finishes and closes them (the queued cache entry is on disk once the block ends)."""
    from massive_feeds.cache import ResultCache
    from massive_feeds.flatfiles import hold_cache_writes
    from massive_feeds.store.daytask import _transport

    s3 = load_settings(environ={"MASSIVE_S3_ACCESS_KEY_ID": "id", "MASSIVE_S3_SECRET_ACCESS_KEY": "secret"},
                       home=tmp_path / "home", api_key="k")
    with Runtime() as rt:
        assert repr(rt) == "Runtime(no sandbox, shared=[])"
        ResultCache(tmp_path / "rest").put_later("a" * 32, pd.DataFrame({"x": [1.0]}))
        with hold_cache_writes():
            pass
        first = _transport(s3)
        assert _transport(s3) is first
        assert repr(rt) == "Runtime(no sandbox, shared=['flatfile-converter', 'result-cache-writer', 's3-transport'])"
    assert repr(rt) == "Runtime(closed, shared=[])"
    [entry] = (tmp_path / "rest").rglob("*.parquet")
    assert pd.read_parquet(entry)["x"].tolist() == [1.0]
    with Runtime():
        assert _transport(s3) is not first


def test_missing_sandbox_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from massive_feeds.flatfiles import download_flat_file

    monkeypatch.setitem(sys.modules, "moto", None)  # as if massive-feeds[sandbox] were not installed
    with Runtime():
        with pytest.raises(ConfigurationError, match=r'pip install "massive-feeds\[sandbox\]"') as err:
            download_flat_file("AAPL", *recent_days(), "1d")
        assert "\n" not in str(err.value)
        end = pd.Timestamp(recent_days()[1])
        df = fetch_data("AAPL", end - pd.Timedelta(days=10), end, "1d", method="auto")  # > 7 days → flat files wanted
        assert df.attrs["method"] == "rest" and "massive-feeds[sandbox]" in df.attrs["method_reason"]


def one_bar() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": pd.to_datetime(["2024-03-04 15:00"], utc=True), "symbol": ["AAPL"],
                         "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0],
                         "vwap": [1.0], "transactions": [1]})


def test_real_dataset_is_never_adjusted_with_sandbox_splits(tmp_path: Path) -> None:
    from massive_feeds.datasets import load_dataset

    for name, origin in (("real", "massive"), ("unlabelled", None)):
        bars = one_bar()
        bars.attrs.update(adjusted=False, **({"source": origin} if origin else {}))
        save_dataset(bars, name, folder=tmp_path)
        with Runtime() as rt:  # no key configured: fetches would use the sandbox, these splits must not
            with pytest.raises(MissingCredentialsError):
                load_dataset(name, folder=tmp_path, adjusted=True)
            assert rt.sandbox is None


def test_sandbox_and_real_bars_never_mix_in_one_dataset(tmp_path: Path) -> None:
    bars = one_bar()
    real, fake = bars.copy(), bars.assign(timestamp=bars["timestamp"] + pd.Timedelta(hours=1))
    real.attrs["source"], fake.attrs["source"] = "massive", "sandbox"
    save_dataset(real, "mixed", folder=tmp_path)
    with pytest.raises(InvalidInputError, match="sandbox"):
        save_dataset(fake, "mixed", append=True, folder=tmp_path)


def test_splits_for_a_dataset_come_from_its_own_market(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_SANDBOX", "1")
    base = load_settings()
    assert settings_for_source(base, "massive").sandbox == "off"  # real data: never the sandbox's splits
    shared = load_settings(rest_url="http://127.0.0.1:9", api_key="sandbox-key")
    real = settings_for_source(shared, "massive")
    assert real.api_key is None and real.rest_url == "https://api.massive.com"
    assert settings_for_source(load_settings(sandbox="off"), "sandbox").sandbox == "on"


def test_a_running_sandbox_serving_only_s3_is_used_not_replaced() -> None:
    # `Sandbox(rest=False, s3=True).env()` has no REST URL: MASSIVE_SANDBOX=1 with only the S3 endpoint set must
    # reach that endpoint. The bug: only the REST URL counted as "configured", so the embedded sandbox started
    # and its own S3 endpoint replaced the running one (its day files, not the caller's).
    configured = load_settings(environ={"MASSIVE_SANDBOX": "1", "MASSIVE_S3_ENDPOINT": "http://127.0.0.1:9",
                                        "MASSIVE_S3_ACCESS_KEY_ID": "id", "MASSIVE_S3_SECRET_ACCESS_KEY": "sk"})
    with Runtime() as rt:
        used = rt.settings(configured, need=("s3",))
        assert used.s3_endpoint == "http://127.0.0.1:9" and rt.sandbox is None
    real = settings_for_source(configured, "massive")  # real data never reaches the sandbox's S3 or its keys
    assert real.s3_endpoint == "https://files.massive.com" and real.s3_access_key_id is None


def test_a_new_sandbox_on_another_port_hits_what_the_last_one_cached(tmp_path: Path) -> None:
    from datetime import date

    from massive_feeds import download_flat_file, fetch_ohlcv_rest
    from massive_feeds.sandbox import Sandbox

    days = (date(2024, 3, 4), date(2024, 3, 8))
    answers = []
    for run in range(2):  # two "processes": each starts its own sandbox on a random port
        with Sandbox(rest=True, s3=True, s3_days=days) as sb:
            settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="free")
            rest = fetch_ohlcv_rest(["AAPL", "GOOGL"], "2024-03-04", "2024-03-08", "1h", settings=settings)
            flat = download_flat_file(["GOOGL"], "2024-03-04", "2024-03-08", "1d", settings=settings)  # splits list
            answers.append((rest, flat, sb.rest.count("/v2/aggs"), sb.rest.count("/v3/reference/splits") + sb.rest.count("/stocks/v1/splits"),
                            sb.rest.url))
    (rest1, flat1, aggs1, splits1, url1), (rest2, flat2, aggs2, splits2, url2) = answers
    assert url1 != url2  # another port
    assert aggs1 == 2 and splits1 >= 1  # the first run asked
    assert aggs2 == 0 and splits2 == 0  # before: the cache key held the port, so every run asked again
    pd.testing.assert_frame_equal(rest1, rest2)
    pd.testing.assert_frame_equal(flat1, flat2)
