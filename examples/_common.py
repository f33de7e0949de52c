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
from typing import TYPE_CHECKING, Iterator

from massive_feeds.config import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


_today: date | None = None


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
        global _today
        _today = sandbox.clock.now().date()  # "today" is the sandbox market's day, not the wall clock's
        home = tempfile.mkdtemp(prefix="massive-example-")
        yield sandbox.settings(home=home, datasets_dir=f"{home}/datasets", plan="unlimited")


def recent_weekdays(n: int, end: date | None = None) -> tuple[date, date]:
    """The first and last of the ``n`` NYSE sessions before ``end`` (default: the market's today): a range
    that has stock data on every day (weekends and exchange holidays such as Thanksgiving skipped)."""
    from massive_feeds.sessions import session_schedule

    last = (end or _today or date.today()) - timedelta(days=1)
    days = session_schedule(last - timedelta(days=2 * n + 10), last).index
    first_day, last_day = days[-n], days[-1]
    return getattr(first_day, "date", lambda: first_day)(), getattr(last_day, "date", lambda: last_day)()


def trading_days(start: date, end: date) -> int:
    """How many NYSE sessions lie in [start, end]: the number of daily stock bars to expect."""
    from massive_feeds.sessions import session_schedule

    return len(session_schedule(start, end))


def verify_bars(df: "pd.DataFrame", symbols: list[str], *, per_symbol: int | None = None) -> None:
    """Check a bar frame's values, not just that it exists: the symbols asked for, tz-aware UTC bar starts,
    coherent OHLC, positive prices, no duplicates and (when given) the exact bar count per symbol."""
    assert str(df["timestamp"].dt.tz) == "UTC", df["timestamp"].dt.tz
    assert sorted(df["symbol"].unique()) == sorted(symbols), (sorted(df["symbol"].unique()), symbols)
    assert not df.duplicated(["symbol", "timestamp"]).any(), "duplicate bars"
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all(), "high below open/close"
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all(), "low above open/close"
    assert (df[["open", "high", "low", "close"]] > 0).all().all(), "non-positive price"
    counts = df.groupby("symbol").size()
    if per_symbol is not None:
        assert (counts == per_symbol).all(), f"expected {per_symbol} bars per symbol, got {counts.to_dict()}"
    print(f"verified: {len(df):,} bars of {', '.join(sorted(symbols))} "
          f"({', '.join(f'{s}={n}' for s, n in counts.items())})")
