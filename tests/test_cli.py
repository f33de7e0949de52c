"""The command line: help, exit codes, stderr for errors, no tracebacks for expected errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from massive_feeds.cli import main
from massive_feeds.sandbox import Sandbox


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "massive_feeds.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("command", ["fetch", "quota", "symbols", "stream", "record", "datasets", "sandbox", "demo",
                                     "quality", "ingest", "compact", "backtest", "validate", "paper"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: massive-feeds" in capsys.readouterr().out


def test_missing_key_with_the_sandbox_off_is_one_line_naming_both_ways_out() -> None:
    result = run("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05", "--method", "rest",
                 env={"MASSIVE_SANDBOX": "0"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: No API key found") and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "MASSIVE_API_KEY" in result.stderr and "--sandbox" in result.stderr
    assert result.stdout == ""


def _recent_days() -> tuple[str, str]:
    from tests.test_runtime import recent_days

    return recent_days()


@pytest.mark.slow
def test_data_commands_without_a_key_use_the_sandbox_and_say_so(tmp_path: Path) -> None:
    start, end = _recent_days()
    env = {"MASSIVE_DATASETS_DIR": str(tmp_path / "ds"), "MASSIVE_SANDBOX_SPEED": "60"}  # quotes come quickly
    fetched = run("fetch", "AAPL", "--start", start, "--end", end, "--dataset", "nokey", env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "from the SANDBOX" in fetched.stdout and fetched.stderr.count("built-in sandbox") == 1
    listed = [line for line in run("datasets", env=env).stdout.splitlines() if line.lstrip().startswith("nokey")]
    assert len(listed) == 1 and " sandbox " in listed[0]
    symbols = run("symbols", "--limit", "5", "--plain", env=env)
    assert symbols.returncode == 0 and len(symbols.stdout.split()) == 5 and "built-in sandbox" in symbols.stderr
    assert "symbol(s) of the sandbox's synthetic market" in symbols.stderr
    streamed = run("stream", "AAPL", "--count", "2", env=env)
    assert streamed.returncode == 0 and streamed.stdout.count("AAPL") == 2 and "built-in sandbox" in streamed.stderr
    recorded = run("record", "AAPL", "--seconds", "3", "--tag", "nokey", "--save-dir", str(tmp_path / "rec"), env=env)
    assert recorded.returncode == 0, recorded.stderr
    assert "sandbox data" in recorded.stdout and "built-in sandbox" in recorded.stderr
    home = Path(os.environ["MASSIVE_FEEDS_HOME"])
    assert not (home / "state").exists() and (home / "sandbox" / "state" / "quota.sqlite3").exists()


def test_sandbox_flag_forces_it_with_a_key(tmp_path: Path) -> None:
    start, end = _recent_days()
    result = run("--sandbox", "fetch", "AAPL", "--start", start, "--end", end, "--method", "rest",
                 env={"MASSIVE_API_KEY": "a-real-looking-key"})
    assert result.returncode == 0, result.stderr
    assert "from the SANDBOX" in result.stdout and "MASSIVE_SANDBOX=1: this process uses the built-in sandbox" in result.stderr


@pytest.mark.slow
def test_one_shared_sandbox_between_processes(tmp_path: Path) -> None:
    first = run("sandbox", "--print-env", "--no-s3")
    try:
        assert first.returncode == 0, first.stderr
        line = first.stdout.strip()
        assert line.startswith("export MASSIVE_SANDBOX=1 ") and "\n" not in line
        assert run("sandbox", "--print-env", "--no-s3").stdout.strip() == line  # reused, not a second one
        env = dict(pair.split("=", 1) for pair in line.removeprefix("export ").split())
        start, end = _recent_days()
        fetched = run("fetch", "AAPL", "--start", start, "--end", end, "--method", "rest", env=env)
        assert fetched.returncode == 0, fetched.stderr
        assert "from the SANDBOX" in fetched.stdout  # labelled as sandbox data
        assert "built-in sandbox" not in fetched.stderr  # and no embedded one of its own started
    finally:
        stopped = run("sandbox", "--stop")
    assert stopped.stdout.startswith("stopped the shared sandbox")
    assert run("sandbox", "--stop").stdout.strip() == "no shared sandbox is running"


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


def test_fetch_onto_an_existing_dataset_needs_append_or_overwrite(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {**sandbox.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}
    args = ("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05", "--dataset", "d")
    assert run(*args, "--interval", "1h", env=env).returncode == 0
    before = (tmp_path / "ds" / "d.parquet").read_bytes()
    again = run(*args, "--interval", "1h", env=env)
    assert again.returncode == 1 and again.stdout == ""  # refused before any fetch (as `recordings save` does)
    assert "dataset 'd' already exists (32 rows in " in again.stderr
    assert "add --append to add to it or --overwrite to replace it" in again.stderr
    daily = run(*args, "--interval", "1d", "--append", env=env)
    assert daily.returncode == 2
    assert "cannot append 1d bars to dataset 'd', which holds 1h bars" in daily.stderr
    assert (tmp_path / "ds" / "d.parquet").read_bytes() == before
    replaced = run(*args, "--interval", "1d", "--overwrite", env=env)
    assert replaced.returncode == 0, replaced.stderr


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


@pytest.mark.slow
def test_backtest_and_validate_on_a_fetched_dataset(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {**sandbox.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds")}
    assert run("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-06", "--interval", "5m",
               "--dataset", "bt", env=env).returncode == 0
    backtest = run("backtest", "sma_cross", "bt", "--engine", "both", "--param", "fast=5", "--param", "slow=15",
                   "--output", str(tmp_path / "out"), env=env)
    assert backtest.returncode == 0, backtest.stderr
    assert "AAPL (backtrader): SmaCross" in backtest.stdout and (tmp_path / "out/bt/AAPL/sma_cross_vectorbt.png").exists()
    assert backtest.stdout.startswith("*** SANDBOX DATA: bt came from the built-in sandbox")
    validated = run("validate", "--datasets", "bt", "--strategies", "sma_cross,breakout", "--output",
                    str(tmp_path / "val"), env=env)
    assert validated.returncode == 0 and "== breakout ==" in validated.stdout
    assert validated.stdout.startswith("*** SANDBOX DATA: bt came from the built-in sandbox")


def test_backtest_with_unknown_strategy_exits_2(sandbox: Sandbox, tmp_path: Path) -> None:
    result = run("backtest", "nope", "bt", env={"MASSIVE_DATASETS_DIR": str(tmp_path)})
    assert result.returncode == 2 and "Unknown strategies" in result.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    # about 60 s on a quiet machine (22 s of CPU); the demo now runs both fill models, and a loaded CI worker
    # took over 120 s once
    result = run("demo", "--output", str(tmp_path / "demo"), "--record-seconds", "8",
                 env={"MASSIVE_FEEDS_HOME": str(tmp_path / "home")}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for step in ("Recording a live session", "History over REST", "History from flat files", "== sma_cross ==",
                 "Quota", "Plots (PNG/HTML) and trade logs", "The spread's cost", "Futures: the continuous ES.c.0"):
        assert step in result.stdout
    # the sandbox's clock is today's: 100 days hold one or two quarterly rolls, each listed, chained as held
    futures = result.stdout.split("Futures: the continuous ES.c.0")[1].split("== Datasets")[0].splitlines()
    assert futures[3].split() == ["date", "from", "to", "from_price", "to_price", "factor", "offset"]
    rolls = [line.split() for line in futures[4:] if line.strip()]
    assert 1 <= len(rolls) <= 2 and all(r[1][:2] == r[2][:2] == "ES" and float(r[5]) > 0 for r in rolls)
    assert futures[1].endswith("holding " + " -> ".join([rolls[0][1]] + [r[2] for r in rolls]))
    assert list((tmp_path / "demo" / "validation").rglob("*.png"))
    cost = result.stdout.split("The spread's cost")[1].split("== Quota")[0].splitlines()
    header = next(line for line in cost if "spread_cost" in line)
    assert header.split() == ["strategy", "symbol", "engine", "total_return_close", "trades", "total_return_quotes",
                              "spread_cost"]


def test_stream_seconds_ends_even_without_quotes(tmp_path: Path) -> None:
    with Sandbox(websocket=True) as sb:
        env = {**sb.env(), "MASSIVE_PLAN": "unlimited"}
        # ZZZZ is a valid ticker the sandbox never quotes: only the deadline can end the command, and a
        # stream that received nothing says so and fails instead of exiting 0 in silence
        result = run("stream", "ZZZZ", "--seconds", "2", env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: no quote for ZZZZ within 2 s") and "Traceback" not in result.stderr


@pytest.mark.parametrize("start", ["01/02/2024", "2/1/2024", "20240102", "Jan 2 2024"])
def test_an_ambiguous_start_date_is_refused(start: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fetch", "AAPL", "--start", start, "--end", "2024-01-05"])
    err = capsys.readouterr().err
    assert code == 2  # before: 01/02/2024 was read silently as January 2
    assert err.strip() == (f"error: Invalid start date {start!r}; use YYYY-MM-DD (e.g. 2024-01-02) or an ISO datetime "
                           "(other spellings are ambiguous)")


def test_keyless_record_at_the_default_speed_and_with_speed(tmp_path: Path) -> None:
    env = {"MASSIVE_DATASETS_DIR": str(tmp_path / "ds"), "MASSIVE_PLAN": "unlimited"}
    default = run("record", "AAPL", "--seconds", "4", "--tag", "quick", "--interval", "1s",
                  "--save-dir", str(tmp_path / "rec"), env=env)
    assert default.returncode == 0, default.stderr
    fast = run("record", "AAPL", "--seconds", "4", "--tag", "fast", "--interval", "1s", "--speed", "120",
               "--save-dir", str(tmp_path / "rec"), env=env)
    assert fast.returncode == 0, fast.stderr
    from massive_feeds import list_datasets

    table = list_datasets(folder=tmp_path / "ds").set_index("name")
    rows = {tag: int(table.loc[[n for n in table.index if f"_{tag}_" in n][0], "rows"]) for tag in ("quick", "fast")}
    # 4 s at 30x are 2 market minutes (about 14 one-second bars here; at the old 1x default: 2 events, 1-2 bars);
    # --speed 120 makes it 8 market minutes (about 60 bars)
    assert rows["quick"] >= 8 and rows["fast"] > 2 * rows["quick"]


def test_speed_is_refused_where_it_cannot_apply(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["stream", "AAPL", "--speed", "0"]) == 2
    assert "--speed must be between 0 and 10000 (1 = real time), got 0" in capsys.readouterr().err
    monkeypatch.setenv("MASSIVE_API_KEY", "a-real-key")
    assert main(["record", "AAPL", "--seconds", "2", "--speed", "60"]) == 2
    assert ("--speed sets the built-in sandbox's clock; this command talks to https://api.massive.com, whose clock "
            "it cannot change") in capsys.readouterr().err
