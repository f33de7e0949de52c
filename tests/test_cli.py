"""The command line: help, exit codes, stderr for errors, no tracebacks for expected errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from massive_feeds.cli import main
from massive_feeds.sandbox import Sandbox


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "massive_feeds.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", ["fetch", "quota", "symbols", "stream", "record", "datasets", "sandbox", "demo",
                                     "quality", "ingest", "backtest", "validate"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: massive-feeds" in capsys.readouterr().out


def test_missing_key_is_one_line_on_stderr_with_exit_1() -> None:
    result = run("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05", "--method", "rest")
    assert result.returncode == 1
    assert result.stderr.startswith("error: No API key found") and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_interval_exits_2_with_the_valid_list() -> None:
    result = run("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05", "--interval", "7m")
    assert result.returncode == 2 and "1m, 5m" in result.stderr


def test_usage_error_exits_2() -> None:
    assert run("fetch").returncode == 2


def test_fetch_saves_a_dataset_and_lists_it(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {**sandbox.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}
    fetched = run("fetch", "AAPL,MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--interval", "1h",
                  "--dataset", "cli_test", "--tag", "demo", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "via rest" in fetched.stdout
    listed = run("datasets", env=env)
    assert "cli_test" in listed.stdout and "AAPL" in listed.stdout


def test_quota_json_is_machine_readable(tmp_path: Path) -> None:
    result = run("quota", "--json")
    data = json.loads(result.stdout)
    assert data["plan"] == "free" and data["level"] == "green" and data["rest_daily_limit"] == 100


def test_symbols_stream_and_record_against_the_sandbox(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=30) as sb:
        env = {**sb.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}
        symbols = run("symbols", "--market", "crypto", env=env)
        assert symbols.returncode == 0 and "X:BTCUSD" in symbols.stdout.split()
        streamed = run("stream", "AAPL", "--count", "3", env=env)
        assert streamed.returncode == 0 and streamed.stdout.count("AAPL") == 3
        recorded = run("record", "AAPL", "--seconds", "2", "--tag", "cli", "--save-dir", str(tmp_path / "rec"),
                       env=env)
        assert recorded.returncode == 0, recorded.stderr
        assert "massive_live_cli_" in recorded.stdout


def test_backtest_and_validate_on_a_fetched_dataset(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {**sandbox.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}
    assert run("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-06", "--interval", "5m",
               "--dataset", "bt", env=env).returncode == 0
    backtest = run("backtest", "sma_cross", "bt", "--engine", "both", "--param", "fast=5", "--param", "slow=15",
                   "--output", str(tmp_path / "out"), env=env)
    assert backtest.returncode == 0, backtest.stderr
    assert "AAPL (backtrader): SmaCross" in backtest.stdout and (tmp_path / "out/bt/AAPL/sma_cross_vectorbt.png").exists()
    validated = run("validate", "--datasets", "bt", "--strategies", "sma_cross,breakout", "--output",
                    str(tmp_path / "val"), env=env)
    assert validated.returncode == 0 and "== breakout ==" in validated.stdout


def test_backtest_with_unknown_strategy_exits_2(sandbox: Sandbox, tmp_path: Path) -> None:
    result = run("backtest", "nope", "bt", env={"MASSIVE_DATASETS_DIR": str(tmp_path)})
    assert result.returncode == 2 and "Unknown strategies" in result.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run("demo", "--output", str(tmp_path / "demo"), "--record-seconds", "8",
                 env={"MASSIVE_FEEDS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    for step in ("Recording a live session", "History over REST", "History from flat files", "== sma_cross ==",
                 "Quota", "Plots (PNG/HTML) and trade logs"):
        assert step in result.stdout
    assert list((tmp_path / "demo" / "validation").rglob("*.png"))


def test_stream_seconds_ends_even_without_quotes(tmp_path: Path) -> None:
    with Sandbox(websocket=True) as sb:
        env = {**sb.env(), "MASSIVE_PLAN": "unlimited"}
        # ZZZZ is a valid ticker the sandbox never quotes: only the deadline can end the command, and a
        # stream that received nothing says so and fails instead of exiting 0 in silence
        result = run("stream", "ZZZZ", "--seconds", "2", env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: no quote for ZZZZ within 2 s") and "Traceback" not in result.stderr
