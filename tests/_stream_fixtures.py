"""Fixtures of the stream tests (loaded from tests/conftest.py): a module-scoped REST + WebSocket
sandbox, settings for it, and a connector factory. Only tests that ask for them start anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from massive_feeds.config import Settings
from massive_feeds.sandbox import Sandbox
from massive_feeds.stream import MassiveConnector

from ._stream_support import CLOCK_SPEED, FAST


@pytest.fixture(scope="module")
def ws_sandbox() -> Iterator[Sandbox]:
    """REST + WebSocket sandbox for one test module, clock at 60x."""
    with Sandbox(rest=True, websocket=True, clock_speed=CLOCK_SPEED) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _reset_ws_sandbox(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "ws_sandbox" in request.fixturenames:
        sb = request.getfixturevalue("ws_sandbox")
        sb.ws.set_firehose(None)
        sb.ws.auth_timeout = 10.0


@pytest.fixture
def ws_settings(ws_sandbox: Sandbox, tmp_path: Path) -> Settings:
    """Settings pointing at the sandbox on the default ("free") plan: 10 streams, 100 msgs/min."""
    return ws_sandbox.settings(home=tmp_path / "home", plan="free")


@pytest.fixture
def make_connector(ws_settings: Settings) -> Iterator[Callable[..., MassiveConnector]]:
    """Build connectors that are closed after the test."""
    made: list[MassiveConnector] = []

    def make(**kwargs: Any) -> MassiveConnector:
        kwargs.setdefault("settings", ws_settings)
        kwargs.setdefault("reconnect", FAST)
        kwargs.setdefault("connect_timeout", 5.0)
        conn = MassiveConnector(**kwargs)
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close()
