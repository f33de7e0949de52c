"""CLI around live data: symbols with names, a stream that never quotes, record's progress line, and
recording folders left by a killed process listed and saved as datasets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from massive_feeds.cli import main
from massive_feeds.record import RecordingReader, WebSocketDataRecorder, ticks_to_bars
from massive_feeds.record.bars import BarCounter
from massive_feeds.sandbox import Sandbox
from tests.test_cli import run


@pytest.fixture(scope="module")
def ws_sandbox() -> Sandbox:
    # 120x: two market minutes a second, so the waits for events on disk are short, and the module's
    # minute or two of wall time stays inside one regular session even on an early-close day
    with Sandbox(websocket=True, clock_speed=120) as sb:
        yield sb


def _env(sb: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {**sb.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds"),
            "MASSIVE_FEEDS_HOME": str(tmp_path / "home")}


def test_symbols_show_names_and_markets(ws_sandbox: Sandbox, tmp_path: Path) -> None:
    result = run("symbols", "--market", "crypto", env=_env(ws_sandbox, tmp_path))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["ticker", "name", "market"]
    btc = next(r for r in rows if r.split()[0] == "X:BTCUSD")
    assert "crypto" in btc.split() and "Bitcoin" in btc
    plain = run("symbols", "--market", "crypto", "--plain", env=_env(ws_sandbox, tmp_path))
    assert "X:BTCUSD" in plain.stdout.splitlines() and "crypto" not in plain.stdout
    none = run("symbols", "--search", "no-such-name-anywhere", env=_env(ws_sandbox, tmp_path))
    assert none.returncode == 1 and "no active symbols for search" in none.stderr


def test_stream_on_a_symbol_that_never_quotes_says_so(ws_sandbox: Sandbox, tmp_path: Path) -> None:
    result = run("stream", "ZZZZ", "--wait", "2", env=_env(ws_sandbox, tmp_path))
    assert result.returncode == 1 and result.stdout == ""
    assert "no quote for ZZZZ within 2 s" in result.stderr and "massive-feeds symbols --search ZZZZ" in result.stderr
    ok = run("stream", "AAPL,ZZZZ", "--count", "2", "--wait", "5", env=_env(ws_sandbox, tmp_path))
    assert ok.returncode == 0 and ok.stdout.count("AAPL") == 2


def test_bar_counter_counts_what_ticks_to_bars_builds(ws_sandbox: Sandbox, tmp_path: Path) -> None:
    settings = ws_sandbox.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
    rec = WebSocketDataRecorder(["AAPL", "X:BTCUSD"], tmp_path / "rec", settings=settings).start()
    reader = None
    deadline = time.monotonic() + 30
    while rec.stats()["events_durable"] < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    rec.stop()
    reader = RecordingReader(rec.path)
    for interval in ("1s", "5s", "1min"):
        counter = BarCounter(interval)
        for batch in reader.batches():
            counter(batch)
        bars = ticks_to_bars(reader.events(), interval)
        assert counter.bars == len(bars) > 0
        assert counter.per_symbol() == bars.groupby("symbol").size().to_dict()


def test_record_prints_progress_with_events_and_bars(ws_sandbox: Sandbox, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import massive_feeds.cli.live as live

    for key, value in _env(ws_sandbox, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(live, "PLAIN_PROGRESS_EVERY", 1.0)  # stderr is not a terminal here: plain lines
    assert main(["record", "AAPL", "--seconds", "4", "--interval", "1s", "--save-dir", str(tmp_path / "rec")]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("recording ") and "events on disk" in line]
    assert len(lines) >= 3 and "4s left" in lines[0]
    bars = [int(line.split(" bars of 1s")[0].rsplit("· ", 1)[1].replace(",", "")) for line in lines]
    assert bars == sorted(bars) and bars[-1] > 0  # bars so far only grow
    assert "\r" not in err  # no terminal control codes in a log file
    assert "-> dataset massive_live_session_" in out


def test_tty_progress_redraws_one_line() -> None:
    import io

    from massive_feeds.cli.live import RecordProgress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    class Rec:
        def stats(self) -> dict[str, int]:
            return {"events_durable": 1234}

    counter = BarCounter("1min")
    out = Tty()
    progress = RecordProgress(out, 90, counter, Rec())
    progress.tick(5.2)
    progress.tick(65)
    progress.close()
    assert out.getvalue().count("\r\x1b[2K") == 2 and out.getvalue().endswith("\n")
    assert "recording 1:05, 25s left · 1,234 events on disk · 0 bars of 1min so far" in out.getvalue()


def test_a_killed_recording_is_listed_and_saved_as_a_dataset(ws_sandbox: Sandbox, tmp_path: Path) -> None:
    env = _env(ws_sandbox, tmp_path)
    save_dir = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "massive_feeds.cli", "record", "AAPL", "--seconds", "120",
                             "--save-dir", str(save_dir)], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until events are durable on disk, then kill -9
            folders = list(save_dir.glob("session_*"))
            if folders and any(f.stat().st_size > 20_000 for f in folders[0].glob("seg-*.mflog")):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the recorder wrote nothing")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    session = folders[0].name

    listed = run("recordings", "--save-dir", str(save_dir), env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(session))
    assert "interrupted" in row and "AAPL" in row

    refused = run("backtest", "sma_cross", str(folders[0]), env=env)
    assert refused.returncode == 1 and f"massive-feeds recordings save {folders[0]}" in refused.stderr

    saved = run("recordings", "save", session, "--save-dir", str(save_dir), "--name", "killed", "--interval", "1s",
                env=env)
    assert saved.returncode == 0, saved.stderr
    assert f"saved recording {session} as dataset killed" in saved.stdout
    bars = pd.read_parquet(tmp_path / "ds" / "killed.parquet")
    assert len(bars) > 0 and set(bars["symbol"]) == {"AAPL"}
    assert "killed" in run("datasets", env=env).stdout
    quality = run("quality", "killed", "--no-splits", env=env)
    assert quality.returncode == 0, quality.stderr

    again = run("recordings", "save", session, "--save-dir", str(save_dir), "--name", "killed", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = run("recordings", "save", "nope", "--save-dir", str(save_dir), env=env)
    assert missing.returncode == 1 and "is not a recording folder" in missing.stderr

    from massive_feeds.config import load_settings
    from massive_feeds.datasets import delete_dataset
    from massive_feeds.errors import DatasetError

    settings = load_settings(datasets_dir=tmp_path / "ds")
    removed = delete_dataset("killed", settings=settings)
    assert [p.name for p in removed] == ["killed.parquet", "killed.events"]  # the bars and the raw event copy
    assert not (tmp_path / "ds" / "killed.events").exists() and folders[0].is_dir()  # the original folder stays
    with pytest.raises(DatasetError, match="not found"):
        delete_dataset("killed", settings=settings)


def test_record_refuses_an_unknown_symbol_before_recording(ws_sandbox: Sandbox, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in _env(ws_sandbox, tmp_path).items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    code = main(["record", "AAPL,AAPLL", "--seconds", "20", "--save-dir", str(tmp_path / "rec")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().endswith("unknown symbol(s) AAPLL: no active ticker of that name in the reference list "
                                "(`massive-feeds symbols --search ...` finds the right spelling)")
    assert time.monotonic() - started < 10  # not the 20 s of a silent recording
    assert not (tmp_path / "rec").exists()  # no empty session folder
    assert main(["record", "AAPL", "--seconds", "1", "--save-dir", str(tmp_path / "rec")]) == 0  # known: records
