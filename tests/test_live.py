"""Against the real Massive service. Run with MASSIVE_LIVE_API_KEY set: `make test-live`."""

from __future__ import annotations

import os

import pytest

from massive_feeds import fetch_ohlcv_rest
from massive_feeds.config import load_settings

# Read at import: the autouse isolation fixture removes MASSIVE_* variables before each test.
LIVE_KEY = os.environ.get("MASSIVE_LIVE_API_KEY", "")

pytestmark = [pytest.mark.live, pytest.mark.skipif(not LIVE_KEY, reason="MASSIVE_LIVE_API_KEY not set")]


@pytest.fixture
def live_key() -> str:
    return LIVE_KEY


def test_real_daily_bars_parse_into_the_schema(live_key: str) -> None:
    settings = load_settings(api_key=live_key, plan="basic")
    df = fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", settings=settings)
    assert len(df) == 5 and (df["high"] >= df["low"]).all()
