"""Every example runs end to end against the sandbox (no key configured), as a user would run it.

Each example checks its own results (bar counts against the session calendar, OHLC coherence, trade counts,
round trips through datasets) with ``assert`` and prints a ``verified:`` line per check group, so a run that
produces wrong or empty data fails here rather than exiting 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("[0-9]*.py"))

pytestmark = pytest.mark.slow  # each example is a fresh process with its own sandbox (S3 included)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSIVE_")}
    env.update(MASSIVE_FEEDS_HOME=str(tmp_path / "home"), MASSIVE_FEEDS_CONFIG=str(tmp_path / "none"),
               MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, script], cwd=EXAMPLES, env=env, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    assert "local sandbox" in result.stdout
    assert "verified:" in result.stdout, result.stdout[-2000:]
