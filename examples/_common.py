"""Shared by the examples: use the real service when a key is configured, else the local sandbox.

Every example runs as-is on a fresh machine (it starts the sandbox) and against Massive.com once
``MASSIVE_API_KEY`` (and S3 credentials for flat files) are set in the environment or in
``api_keys.properties``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from datetime import date, timedelta
from typing import Iterator

from massive_feeds.config import Settings, load_settings

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def massive_settings() -> Iterator[Settings]:
    """Settings for Massive.com if a key is configured, otherwise for a sandbox started here."""
    settings = load_settings()
    if settings.api_key:
        yield settings
        return
    from massive_feeds.sandbox import Sandbox

    print("(no MASSIVE_API_KEY configured: running against the local sandbox)")
    with Sandbox(websocket=True, s3=True, clock_speed=120) as sandbox:  # 2 market hours per minute
        home = tempfile.mkdtemp(prefix="massive-example-")
        yield sandbox.settings(home=home, datasets_dir=f"{home}/datasets", plan="unlimited")


def recent_weekdays(n: int, end: date | None = None) -> tuple[date, date]:
    """The ``n`` weekdays before ``end`` (default: yesterday): a range that has stock data."""
    day = end or date.today() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    start = day
    count = 1
    while count < n:
        start -= timedelta(days=1)
        if start.weekday() < 5:
            count += 1
    return start, day
