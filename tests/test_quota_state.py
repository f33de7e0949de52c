"""The quota database on damaged files and full disks: one-line typed errors naming the file and what to do; a
quota file that vanished or was emptied is recreated with a warning and a flag, never silently reset."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from massive_feeds.cli import main
from massive_feeds.config import PLANS
from massive_feeds.errors import QuotaStateError
from massive_feeds.quota import QuotaManager

ROOT = Path(__file__).resolve().parents[1]


def _used(q: QuotaManager, calls: int) -> QuotaManager:
    for _ in range(calls):
        q.acquire_rest()
    return q


def test_a_damaged_quota_file_is_a_one_line_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    db = _used(QuotaManager(PLANS["unlimited"], path), 3)._connect()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as fh:  # the header's magic string overwritten (bit rot, another program)
        fh.write(b"not a database!!")
    with pytest.raises(QuotaStateError, match="is damaged") as err:
        QuotaManager(PLANS["unlimited"], path).status()
    assert err.value.path == str(path) and "\n" not in str(err.value) and "delete it" in str(err.value)


def test_damage_under_an_open_manager_is_typed_too(tmp_path: Path) -> None:
    path = tmp_path / "quota.sqlite3"
    q = _used(QuotaManager(PLANS["unlimited"], path), 3)
    q._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # every page after the header page: garbage
        fh.seek(4096)
        fh.write(b"\xff" * (size - 4096))
    fresh = QuotaManager(PLANS["unlimited"], path)  # opening reads only the header page
    with pytest.raises(QuotaStateError, match=f"quota database {path} is damaged"):
        fresh.acquire_rest()


def test_the_cli_reports_a_damaged_quota_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "home" / "sandbox" / "state"  # no key configured: the sandbox's own quota
    state.mkdir(parents=True)
    (state / "quota.sqlite3").write_bytes(b"x" * 8192)
    assert main(["quota"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(state / "quota.sqlite3") in err and "damaged" in err


def test_an_emptied_or_vanished_quota_file_is_reported_not_silently_reset(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "quota.sqlite3"
    q = _used(QuotaManager(PLANS["unlimited"], path), 5)
    assert q.status().rest_used_today == 5 and q.status().state_lost_at is None
    caplog.set_level(logging.WARNING, logger="massive_feeds.quota")
    for name in ("quota.sqlite3", "quota.sqlite3-wal", "quota.sqlite3-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    # the same manager (another process deleted the file) and a new one both see it
    status = q.status()
    assert status.rest_used_today == 0 and status.state_lost_at is not None
    assert "cannot be known" in str(status) and status.as_dict()["state_lost_at"]
    assert "vanished or was emptied" in caplog.text
    caplog.clear()
    q._connect().close()  # nobody has it open: then it is emptied (0 bytes, e.g. a restore from a bad backup)
    path.write_bytes(b"")
    fresh = QuotaManager(PLANS["unlimited"], path)
    assert fresh.status().state_lost_at is not None and "vanished or was emptied" in caplog.text


def test_a_first_use_is_not_a_loss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="massive_feeds.quota")
    q = QuotaManager(PLANS["unlimited"], tmp_path / "state" / "quota.sqlite3")
    assert q.status().state_lost_at is None and caplog.text == ""


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    from massive_feeds.config import PLANS
    from massive_feeds.errors import QuotaStateError
    from massive_feeds.quota import QuotaManager
    q = QuotaManager(PLANS["unlimited"], Path(sys.argv[1]))
    if sys.argv[2] == "limit":  # a file size limit: writes past it fail with EFBIG (SIGXFSZ ignored)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        for _ in range(100_000):
            q.acquire_rest()
    except QuotaStateError as exc:
        print(exc)
""")


def test_a_file_size_limit_is_a_one_line_typed_error(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "quota.sqlite3"), "limit"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.count("\n") == 0 and str(tmp_path / "quota.sqlite3") in line and "free space" in line
    assert "disk refused the write" in line


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_a_full_disk_is_a_one_line_typed_error(tmp_path: Path) -> None:
    """A real full disk: a 256 KB tmpfs in a private mount namespace (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=256k tmpfs {disk}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    script = f"mount -t tmpfs -o size=256k tmpfs {disk} && exec {sys.executable} -c \"$0\" {disk}/quota.sqlite3 full"
    out = subprocess.run(["unshare", "-m", "sh", "-c", script, FULL_DISK], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.count("\n") == 0 and f"{disk}/quota.sqlite3" in line and "the disk is full" in line
