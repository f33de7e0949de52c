"""Bad input is one typed line (CLI exit 2), never a traceback, and is refused before any network call,
recording or write: unwritable/full homes, non-string symbols, plan limits <= 0, bad record/backtest
arguments, path-like dataset and recording names; empty results and empty datasets exit non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from massive_feeds.cli import main
from massive_feeds.config import PLANS, Plan, load_settings
from massive_feeds.datasets import save_dataset
from massive_feeds.errors import InvalidInputError, InvalidSettingError
from massive_feeds.fetch import fetch_data
from massive_feeds.sandbox import Sandbox


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def sandbox_env(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    for k, v in {**sandbox.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}.items():
        monkeypatch.setenv(k, v)
    return sandbox


# --- settings and homes -------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["rest_per_day", "rest_per_minute", "ws_max_streams", "flatfile_bytes_per_month"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_plan_limits_below_one_are_refused_when_configured(monkeypatch: pytest.MonkeyPatch, field: str,
                                                           value: str) -> None:
    monkeypatch.setenv("MASSIVE_PLAN", "custom")
    monkeypatch.setenv(f"MASSIVE_PLAN_{field.upper()}", value)
    with pytest.raises(InvalidSettingError, match=f"{field} \\(MASSIVE_PLAN_{field.upper()}\\) must be a positive"):
        load_settings()


def test_plan_limit_of_one_is_accepted_and_a_plan_object_is_checked_too() -> None:
    assert Plan("t", None, 1, None, None, None).rest_per_day == 1
    with pytest.raises(InvalidSettingError, match="rest_per_day"):
        Plan("t", None, 0, None, None, None)
    with pytest.raises(InvalidSettingError, match="rest_window_seconds"):
        Plan("t", 5, None, None, None, None, rest_window_seconds=0)


def test_cli_with_a_zero_plan_limit_exits_2_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MASSIVE_PLAN", "custom")
    monkeypatch.setenv("MASSIVE_PLAN_REST_PER_DAY", "0")
    code, out, err = cli(capsys, "quota")
    assert code == 2 and out == ""
    assert "MASSIVE_PLAN_REST_PER_DAY" in one_line_error(err)


def test_unwritable_home_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the home folder should be")
    monkeypatch.setenv("MASSIVE_FEEDS_HOME", str(blocker))
    code, out, err = cli(capsys, "quota")
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "cannot keep the quota state" in line and str(blocker) in line


def test_full_disk_under_the_home_is_one_line_exit_2(tmp_path: Path) -> None:
    def tiny_files() -> None:  # in the child: files may not grow at all (a full disk, as the writer sees it)
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSIVE_")}
    env.update(MASSIVE_FEEDS_HOME=str(tmp_path / "home"), MASSIVE_FEEDS_CONFIG=str(tmp_path / "none.properties"))
    result = subprocess.run([sys.executable, "-m", "massive_feeds.cli", "quota"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120, preexec_fn=tiny_files)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result.stderr)  # the quota database names the file and what the disk did (issue 27)
    assert "cannot write the quota database" in line and "the disk refused the write" in line
    assert str(tmp_path / "home") in line


@pytest.mark.parametrize("method", ["rest", "flat_file"])
def test_unusable_cache_home_is_one_line_exit_2_before_any_call(sandbox_env: Sandbox, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str], method: str) -> None:
    home = tmp_path / "home" / "sandbox"  # sandbox settings (MASSIVE_SANDBOX=1) keep their caches here
    home.mkdir(parents=True)
    (home / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("MASSIVE_FEEDS_HOME", str(home.parent))
    if method == "flat_file":  # credentials present, so the cache is what stops it (no S3 server: nothing reachable)
        monkeypatch.setenv("MASSIVE_S3_ACCESS_KEY_ID", "id")
        monkeypatch.setenv("MASSIVE_S3_SECRET_ACCESS_KEY", "secret")
        monkeypatch.setenv("MASSIVE_S3_ENDPOINT", "http://127.0.0.1:9")
    before = sandbox_env.rest.count("/")
    code, out, err = cli(capsys, "fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05", "--method", method,
                         "--dataset", "never")
    assert code == 2 and out == ""
    assert f"cannot write the {'result' if method == 'rest' else 'flat-file'} cache in {home / 'cache'}" \
        in one_line_error(err)
    assert sandbox_env.rest.count("/") == before
    assert not (tmp_path / "ds" / "never.parquet").exists()


# --- library input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("symbols", [123, None, [1, 2], ["AAPL", 3.5], b"AAPL"])
def test_symbols_that_are_not_strings_are_invalid_input(symbols: object) -> None:
    with pytest.raises(InvalidInputError, match="Invalid symbol"):
        fetch_data(symbols, "2024-03-04", "2024-03-05")  # type: ignore[arg-type]


def test_cli_symbols_that_are_not_tickers_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "fetch", "AAPL,,$$$", "--start", "2024-03-04", "--end", "2024-03-05")
    assert code == 2 and "Invalid symbol '$$$'" in one_line_error(err)


# --- the CLI checks every argument before any call or recording -----------------------------------------
def test_fetch_with_a_path_like_dataset_spends_no_call(sandbox_env: Sandbox, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = sandbox_env.rest.count("/v2/aggs")
    code, out, err = cli(capsys, "fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05",
                         "--dataset", "../../x")
    assert code == 2 and out == "" and "Invalid dataset name '../../x'" in one_line_error(err)
    assert sandbox_env.rest.count("/v2/aggs") == before
    assert not (tmp_path / "x.parquet").exists()


def test_ticks_with_a_path_like_dataset_spends_no_call(sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    before = sandbox_env.rest.count("/")
    code, out, err = cli(capsys, "ticks", "AAPL", "--start", "2024-03-05", "--end", "2024-03-05", "--method", "rest",
                         "--dataset", "a/b")
    assert code == 2 and out == "" and "Invalid dataset name 'a/b'" in one_line_error(err)
    assert sandbox_env.rest.count("/") == before


@pytest.mark.parametrize(("args", "message"), [
    (["--seconds", "-1"], "--seconds must be a positive"),
    (["--seconds", "0"], "--seconds must be a positive"),
    (["--seconds", "nan"], "--seconds must be a positive"),
    (["--name", "../x"], "Invalid dataset name '../x'"),
    (["--tag", "a/b"], "Invalid dataset name 'massive_live_a/b_"),
    (["--interval", "fortnight"], "Invalid resample interval"),
])
def test_record_refuses_bad_arguments_before_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       args: list[str], message: str) -> None:
    save_dir = tmp_path / "rec"
    # no WebSocket server and no key at all: a recording attempt would fail differently (exit 1, after connecting)
    code, out, err = cli(capsys, "record", "AAPL", "--save-dir", str(save_dir), "--seconds", "5", *args)
    assert code == 2 and out == "" and message in one_line_error(err)
    assert not save_dir.exists()


def bars(n: int = 60) -> pd.DataFrame:
    ts = pd.date_range("2024-03-04 14:30", periods=n, freq="5min", tz="UTC")
    close = 100 + (pd.Series(range(n)) % 7).to_numpy(float)
    return pd.DataFrame({"timestamp": ts, "symbol": "AAPL", "open": close, "high": close + 1, "low": close - 1,
                         "close": close, "volume": 100.0, "vwap": close, "transactions": 5})


@pytest.mark.parametrize(("param", "message"), [
    ("fats=5", "sma_cross has no parameter 'fats'; its parameters: stake (default 0.95), fast (default 10)"),
    ("fast=abc", "--param fast must be an integer (default 10), got 'abc'"),
    ("fast=2.5", "--param fast must be an integer (default 10), got '2.5'"),
    ("stake=lots", "--param stake must be a number (default 0.95), got 'lots'"),
    ("novalue", "--param needs NAME=VALUE"),
])
def test_backtest_refuses_bad_params_before_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], param: str,
                                                    message: str) -> None:
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "ds"))
    save_dataset(bars(), "d", folder=tmp_path / "ds")
    code, out, err = cli(capsys, "backtest", "sma_cross", "d", "--param", param, "--output", str(tmp_path / "out"))
    assert code == 2 and out == "" and message in one_line_error(err)
    assert not (tmp_path / "out").exists()


def test_backtest_with_good_params_runs_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "ds"))
    save_dataset(bars(), "d", folder=tmp_path / "ds")  # closes cycle with period 7
    smooth = cli(capsys, "backtest", "sma_cross", "d", "--param", "fast=7", "--param", "slow=14",
                 "--output", str(tmp_path / "out"))
    quick = cli(capsys, "backtest", "sma_cross", "d", "--param", "fast=2", "--param", "slow=5",
                "--output", str(tmp_path / "out"))
    assert smooth[0] == quick[0] == 0
    assert " 0 trades over 60 bars" in smooth[1]  # both averages span whole cycles: flat, they never cross
    assert " 0 trades" not in quick[1] and " trades over 60 bars" in quick[1]


@pytest.mark.parametrize("command", ["backtest", "validate"])
def test_backtest_and_validate_on_an_empty_dataset_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], command: str) -> None:
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "ds"))
    save_dataset(bars().iloc[:0], "empty", folder=tmp_path / "ds")
    argv = (["backtest", "sma_cross", "empty"] if command == "backtest"
            else ["validate", "--datasets", "empty", "--strategies", "sma_cross"])
    code, out, err = cli(capsys, *argv, "--output", str(tmp_path / "out"))
    assert code == 1 and "dataset empty holds no bars" in one_line_error(err)
    assert "(no runs)" not in out


def test_validate_refuses_a_path_like_dataset_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "validate", "--datasets", "ok,../../etc/x", "--strategies", "sma_cross")
    assert code == 2 and "Invalid dataset name '../../etc/x'" in one_line_error(err)
