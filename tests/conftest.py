"""Shared fixtures: one sandbox per test session on free ports, and an isolated configuration per test.

Every test runs in its own temporary working directory with no ``MASSIVE_*`` variables from the
outer environment, so a developer's real ``api_keys.properties`` or key can never leak into a test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from massive_feeds.config import Settings
from massive_feeds.rest import RestClient, RetryPolicy
from massive_feeds.sandbox import Sandbox

FAST_RETRY = RetryPolicy(max_attempts=4, base=0.01, cap=0.05)

# The stream tests' module-scoped WebSocket sandbox (ws_sandbox, ws_settings, make_connector, …).
pytest_plugins = ("tests._stream_fixtures",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test files of only ``slow`` tests run first, then files holding some, then the rest; each file
    keeps its own order (the README's blocks depend on it).

    ``make test`` runs two workers that each take whole files (``-n 2 --dist loadfile
    --no-loadscope-reorder``): a long file handed out last would end the run alone on one worker.
    """
    slow: dict[Path, list[bool]] = {}
    for item in items:
        slow.setdefault(item.path, []).append(item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: (not all(slow[item.path]), not any(slow[item.path])))  # stable


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MASSIVE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MASSIVE_FEEDS_CONFIG", str(tmp_path / "no-user-config.properties"))
    monkeypatch.setenv("MASSIVE_FEEDS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The REST sandbox, started once per session."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        sb = request.getfixturevalue("sandbox")
        sb.faults.reset()
        sb.rate_limit = None
        sb.max_page_bars = 50_000


@pytest.fixture
def settings(sandbox: Sandbox, tmp_path: Path) -> Settings:
    """Settings pointing at the sandbox with an unlimited plan and private folders."""
    return sandbox.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


@pytest.fixture
def client(settings: Settings) -> Iterator[RestClient]:
    with RestClient(settings, retry=FAST_RETRY) as c:
        yield c
