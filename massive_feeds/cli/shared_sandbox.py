"""``massive-feeds sandbox``: one sandbox that several shells (or programs) share.

``massive-feeds sandbox`` runs the sandbox in the foreground and writes a small state file,
``<home>/sandbox/shared.json`` (its pid and the variables that point clients at it), removed when it
stops. ``massive-feeds sandbox --print-env`` prints those variables as one ``export`` line for the one
that runs — starting one in the background first if none does — so ``eval "$(massive-feeds sandbox
--print-env)"`` in any shell points it at the same sandbox; ``--stop`` ends the background one.

The line carries ``MASSIVE_SANDBOX=1``: the library then uses these endpoints as they are (no embedded
sandbox of its own), labels the data ``sandbox`` and keeps its quota and caches under ``<home>/sandbox``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import load_settings
from ..errors import ConfigurationError
from ..runtime import SANDBOX_EXTRA, side_available
from ..storage import atomic_open

STATE_NAME = "shared.json"
START_TIMEOUT = 60.0


def state_path() -> Path:
    """Where the running shared sandbox describes itself."""
    return load_settings().home / "sandbox" / STATE_NAME


def export_line(env: dict[str, str]) -> str:
    """``export K=V ...`` — one line to paste into a shell (values shell-quoted)."""
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie (exited, not yet reaped: the orphaned background sandbox
    of a container without an init that reaps) has stopped, though ``kill(pid, 0)`` still succeeds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # polling another process's exit: there is nothing to wait on across sessions
    return True


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


def running() -> dict[str, Any] | None:
    """The state of the shared sandbox if one runs and answers (a stale file is ignored), else None."""
    path = state_path()
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    env = state.get("env") or {}
    if not _alive(int(state.get("pid", -1))) or not _answers(env.get("MASSIVE_REST_URL", "")):
        return None
    return state


def _sides(args: argparse.Namespace) -> dict[str, bool]:
    """Sandbox sides to start: those asked for that this install can run (moto for S3, websockets)."""
    sides = {"websocket": not args.no_websocket and side_available("websocket"),
             "s3": not args.no_s3 and side_available("s3")}
    skipped = [s for s in ("websocket", "s3") if not getattr(args, f"no_{s}") and not sides[s]]
    if skipped:
        print(f"note: the sandbox runs without its {' and '.join(skipped)} side ({SANDBOX_EXTRA})", file=sys.stderr)
    return sides


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def serve(args: argparse.Namespace) -> int:
    """Run the sandbox until Ctrl-C or SIGTERM, advertised in the state file meanwhile."""
    from ..sandbox import RateLimit, Sandbox

    limit = RateLimit(args.rate_limit, 60.0) if args.rate_limit else None
    path = state_path()
    signal.signal(signal.SIGTERM, _interrupt)  # --stop ends it like Ctrl-C: the state file is removed
    sides = _sides(args)
    with Sandbox(seed=args.seed, rate_limit=limit, websocket=sides["websocket"], s3=sides["s3"]) as sb:
        env = sb.env()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            fh.write(json.dumps({"pid": os.getpid(), "env": env, "describe": sb.describe()}, indent=2).encode())
        try:
            print(f"Sandbox running: {sb.describe()} (Ctrl-C to stop)")
            print("Point massive_feeds (or the official client) at it from any shell with:")
            print(export_line(env), flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
        finally:
            try:
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError):
                pass


def running_or_start(args: argparse.Namespace) -> dict[str, str]:
    """The shared sandbox's variables, starting it in the background first when none runs."""
    state = running()
    if state is not None:
        return dict(state["env"])
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "massive_feeds.cli", "sandbox", "--seed", str(args.seed)]
    cmd += ["--rate-limit", str(args.rate_limit)] if args.rate_limit else []
    cmd += (["--no-websocket"] if args.no_websocket else []) + (["--no-s3"] if args.no_s3 else [])
    with open(path.with_name("shared.log"), "ab") as logfile:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                                 start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = running()
        if state is not None and state.get("pid") == child.pid:
            return dict(state["env"])
        if child.poll() is not None:
            break
        time.sleep(0.1)  # waiting on another process's start-up (the state file), not standing in for sync
    child.kill()
    raise ConfigurationError(f"the shared sandbox did not start; see {path.with_name('shared.log')}")


def stop_running() -> str:
    """Stop the shared sandbox (SIGTERM), and say what happened."""
    state = running()
    if state is None:
        return "no shared sandbox is running"
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, 10):  # a loaded machine can take longer to close the servers: make sure
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5)
    path = state_path()
    try:  # the process removes its file on SIGTERM, but not on SIGKILL: a stopped sandbox leaves none
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass
    return f"stopped the shared sandbox (pid {pid})"
