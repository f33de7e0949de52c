"""Every Python and shell block of README.md runs as written, in order, against the keyless sandbox.

The blocks share one working directory, one ``MASSIVE_FEEDS_HOME`` and one datasets folder, as a user
working through the README in one project would: a dataset saved by one block is loaded by a later one.
No ``MASSIVE_*`` key is set, so the library's keyless default (the embedded sandbox) serves every call;
its clock runs at its default 30x, the speed the README's live snippets are sized to, and the live section's
output is checked (several quotes in the 3 s stream, five from the async iterator, minutes of bars recorded).

A block can carry a directive in an HTML comment on the line just above its opening fence:

* ``<!-- readme-test: skip REASON -->`` — not run (only the set-up commands, which this suite is part of,
  and blocks that need a real key); the reason is reported by pytest.
* ``<!-- readme-test: serve TEXT -->`` — a long-running command (a server): started, and passes once it
  prints ``TEXT``; then stopped.

A fenced block in another language (``text``) is a synopsis, not a script, and is not run.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUNNABLE = {"python", "bash", "sh", "shell"}

pytestmark = pytest.mark.slow  # minutes: each block is a fresh process, two record for 30 s
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    directive: str = ""
    argument: str = ""

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in runnable languages, with the directive just above each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening.group(1):
            i += 1
            continue
        lang, start = opening.group(1), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if lang in RUNNABLE:
            above = DIRECTIVE.match(lines[start - 1]) if start else None
            blocks.append(Block(start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                                *(above.groups() if above else ("", ""))))
        i = j + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_blocks_to_run() -> None:
    """Guards the extractor itself: a broken fence parser would otherwise pass by running nothing."""
    run = [b for b in BLOCKS if b.directive != "skip"]
    assert len([b for b in run if b.lang == "python"]) >= 5
    assert len([b for b in run if b.lang != "python"]) >= 2
    assert all(b.directive in ("", "skip", "serve") for b in BLOCKS), [b.id for b in BLOCKS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def _environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSIVE_")}
    env.update(
        MASSIVE_FEEDS_HOME=str(workdir / "home"),
        MASSIVE_FEEDS_CONFIG=str(workdir / "no-user-config.properties"),
        MASSIVE_DATASETS_DIR=str(workdir / "data" / "datasets"),
        # no MASSIVE_SANDBOX_SPEED: the built-in sandbox's default clock (30x), which the snippets are sized to
        MPLBACKEND="Agg",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    return env


def _command(block: Block, workdir: Path) -> list[str]:
    script = workdir / f"block_{block.line}.{'py' if block.lang == 'python' else 'sh'}"
    script.write_text(block.code, encoding="utf-8")
    if block.lang == "python":
        return [sys.executable, str(script)]
    return ["bash", "-euo", "pipefail", str(script)]


def _serve(command: list[str], workdir: Path, env: dict[str, str], ready: str, timeout: float = 120) -> str:
    """Start a long-running block, wait until its output shows ``ready``, stop it; return its output."""
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if ready in line:
                found.set()
        found.set()  # the process ended: stop waiting

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    found.wait(timeout)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    reader.join(10)
    output = "".join(seen)
    assert ready in output, f"never printed {ready!r}:\n{output[-3000:]}"
    return output


LIVE_BLOCK = 'connector.start_stream(["AAPL", "GOOGL"]'
PRICE = r"\d+(?:\.\d+)?"


def check_live_section(stdout: str) -> None:
    """What the live section's snippet visibly shows at the default clock (at 1x it printed one quote in the
    3 s stream and recorded 1-3 bars in 30 s)."""
    lines = stdout.splitlines()
    streamed = [ln.split()[0] for ln in lines if re.fullmatch(rf"(AAPL|GOOGL) {PRICE}", ln)]
    assert len(streamed) >= 10 and set(streamed) == {"AAPL", "GOOGL"}, stdout  # several quotes in 3 s
    stats = next(ln for ln in lines if ln.startswith("{'active_streams'"))
    assert "'active_streams': 2" in stats and "'connected': True" in stats
    quotes = [ln.split() for ln in lines if re.fullmatch(rf"AAPL {PRICE} {PRICE}", ln)]
    assert len(quotes) == 5 and all(float(bid) < float(ask) for _, bid, ask in quotes)  # first_quotes(n=5)
    counts = ast.literal_eval(next(ln for ln in lines if ln.startswith("{'AAPL'")))
    # 30 s at 30x are 15 market minutes: one 1-minute bar a minute per symbol (a bar more at each edge)
    assert set(counts) == {"AAPL", "MSFT"} and all(12 <= n <= 17 for n in counts.values()), counts


#: checks of a block's output, by a line of its code
OUTPUT_CHECKS = {LIVE_BLOCK: check_live_section}


def test_the_live_section_is_checked() -> None:
    """Guards the output check: it must find its block (a reworded snippet would silently skip it)."""
    assert sum(LIVE_BLOCK in b.code for b in BLOCKS) == 1


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, workdir: Path) -> None:
    if block.directive == "skip":
        pytest.skip(block.argument or "marked skip in the README")
    env = _environment(workdir)
    command = _command(block, workdir)
    if block.directive == "serve":
        _serve(command, workdir, env, block.argument.strip('"'))
        return
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    shown = f"README line {block.line}:\n{block.code}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    assert result.returncode == 0, shown
    assert "Traceback" not in result.stderr, shown
    for marker, check in OUTPUT_CHECKS.items():
        if marker in block.code:
            check(result.stdout)
    # Keyless: every block that touches data says it came from the sandbox (one notice per process).
    if block.lang == "python" and ("fetch" in block.code or "stream" in block.code or "download" in block.code):
        assert "sandbox" in (result.stdout + result.stderr).lower(), shown
