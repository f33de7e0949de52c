"""The plan-aware quota: per-minute waits, daily cap, 429 tightening, byte budget, cross-process sharing."""

from __future__ import annotations

import multiprocessing
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from massive_feeds import fetch_ohlcv_rest
from massive_feeds.config import PLANS, Plan
from massive_feeds.errors import QuotaExceededError
from massive_feeds.quota import QuotaManager, rest_level
from massive_feeds.sandbox import RateLimit, Sandbox

NOON = datetime(2024, 3, 5, 12, 0, tzinfo=timezone.utc).timestamp()


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = NOON) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def manager(tmp_path: Path, plan: Plan, clock: FakeTime) -> QuotaManager:
    return QuotaManager(plan, tmp_path / "quota.sqlite3", clock=clock, sleep=clock.sleep)


def test_per_minute_limit_waits_instead_of_failing(tmp_path: Path) -> None:
    clock = FakeTime()
    q = manager(tmp_path, PLANS["free"], clock)
    for _ in range(10):
        q.acquire_rest()
    assert clock.slept == []
    q.acquire_rest()  # the 11th call in a minute waits for the window
    assert sum(clock.slept) >= 60


def test_a_long_wait_for_the_per_minute_limit_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime()
    q = manager(tmp_path, PLANS["free"], clock)
    for _ in range(10):
        q.acquire_rest()
    with caplog.at_level("INFO", logger="massive_feeds.quota"):
        q.acquire_rest()
    waits = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert waits and waits[0].levelname == "WARNING"  # before: INFO, invisible at the default level
    assert waits[0].getMessage() == f"REST rate limit (10/60s on plan 'free'): waiting {clock.slept[0]:.1f}s"


def test_daily_quota_raises_with_the_reset_time(tmp_path: Path) -> None:
    clock = FakeTime()
    q = manager(tmp_path, PLANS["free"], clock)
    for _ in range(100):
        q.acquire_rest()
    with pytest.raises(QuotaExceededError) as err:
        q.acquire_rest()
    assert err.value.resets_at == datetime(2024, 3, 6, tzinfo=timezone.utc)
    assert "2024-03-06 00:00 UTC" in str(err.value)


def test_daily_quota_resets_at_midnight_utc(tmp_path: Path) -> None:
    clock = FakeTime()
    q = manager(tmp_path, PLANS["free"], clock)
    for _ in range(100):
        q.acquire_rest()
    clock.now = datetime(2024, 3, 6, 0, 0, 1, tzinfo=timezone.utc).timestamp()
    q.acquire_rest()
    assert q.status().rest_used_today == 1


def test_429_blocks_and_halves_the_rate(tmp_path: Path) -> None:
    clock = FakeTime()
    q = manager(tmp_path, PLANS["free"], clock)
    q.record_rate_limited(retry_after=7)
    q.acquire_rest()
    assert clock.slept and clock.slept[0] == pytest.approx(7)
    for _ in range(4):
        q.acquire_rest()
    waited = sum(clock.slept)
    q.acquire_rest()  # only 5 per minute while tightened
    assert sum(clock.slept) > waited


@pytest.mark.parametrize("used, level", [(0, "green"), (49, "green"), (50, "orange"), (80, "orange"),
                                         (81, "red"), (99, "red"), (100, "exhausted")])
def test_status_level_follows_the_colour_rule(tmp_path: Path, used: int, level: str) -> None:
    clock = FakeTime()
    q = manager(tmp_path, Plan("t", None, 100, None, None, None), clock)
    for _ in range(used):
        q.acquire_rest()
    status = q.status()
    assert status.rest_remaining_today == 100 - used
    assert status.level == level


def test_unlimited_plan_is_always_green() -> None:
    assert rest_level(None) == "green"


def test_flatfile_bytes_are_refused_before_passing_the_month(tmp_path: Path) -> None:
    clock = FakeTime()
    q = manager(tmp_path, Plan("t", None, None, None, None, 1000), clock)
    q.reserve_flatfile_bytes(800)
    with pytest.raises(QuotaExceededError) as err:
        q.reserve_flatfile_bytes(300)
    assert err.value.resource == "flatfile_bytes"
    assert err.value.resets_at == datetime(2024, 4, 1, tzinfo=timezone.utc)
    q.release_flatfile_bytes(800)
    q.reserve_flatfile_bytes(300)
    assert q.status().flatfile_bytes_used == 300


def test_usage_is_shared_through_the_state_file(tmp_path: Path) -> None:
    clock = FakeTime()
    a = manager(tmp_path, PLANS["free"], clock)
    b = manager(tmp_path, PLANS["free"], clock)
    for _ in range(3):
        a.acquire_rest()
    assert b.status().rest_used_today == 3


# --- several processes at the sandbox's limit ----------------------------------------------------
def _hammer(env: dict[str, str], calls: int, errors: "multiprocessing.Queue[str]") -> None:
    os.environ.update(env)
    try:
        for _ in range(calls):
            fetch_ohlcv_rest("AAPL", "2024-03-04", "2024-03-08", "1d", use_cache=False)
    except Exception as exc:  # reported to the parent, which fails the test
        errors.put(f"{type(exc).__name__}: {exc}")


def test_processes_together_never_pass_the_plan(tmp_path: Path) -> None:
    limit, window = 4, 1.0
    with Sandbox(rate_limit=RateLimit(limit, window)) as sb:
        env = {**sb.env(), "MASSIVE_FEEDS_HOME": str(tmp_path / "shared-home"), "MASSIVE_PLAN": "custom",
               "MASSIVE_PLAN_REST_PER_MINUTE": str(limit), "MASSIVE_PLAN_REST_WINDOW_SECONDS": str(window),
               "MASSIVE_PLAN_REST_PER_DAY": "unlimited"}
        ctx = multiprocessing.get_context("spawn")
        errors = ctx.Queue()
        procs = [ctx.Process(target=_hammer, args=(env, 5, errors)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        statuses = [r.status for r in sb.rest.requests]
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert statuses.count(200) == 15
    assert 429 not in statuses
