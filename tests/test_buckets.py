"""The bar-bucket rule, one function for every path: flat files/REST resampling, recordings and live bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from massive_feeds.backtrader.live import BarBuilder
from massive_feeds.buckets import bucket_starts, fixed_buckets, ny_day_buckets
from massive_feeds.record.bars import ticks_to_bars
from massive_feeds.schema import parse_interval
from massive_feeds.stream.events import make_event

MIN_MS = 60_000


def _ms(text: str, tz: str = "UTC") -> int:
    return int(pd.Timestamp(text, tz=tz).value // 1_000_000)


def test_fixed_buckets_are_epoch_aligned_at_their_edges() -> None:
    five = 5 * MIN_MS
    edge = _ms("2024-03-04 14:35")
    assert [fixed_buckets(t, five) for t in (edge - 1, edge, edge + five - 1, edge + five)] == [
        edge - five, edge, edge, edge + five]
    assert fixed_buckets(_ms("2024-03-04 15:59:59.999"), 4 * 60 * MIN_MS) == _ms("2024-03-04 12:00")  # 4h: UTC-aligned
    np.testing.assert_array_equal(fixed_buckets(np.array([edge, edge + 1]), five), [edge, edge])


@pytest.mark.parametrize("day, hours", [("2024-03-10", 23), ("2024-11-03", 25), ("2024-03-04", 24)])
def test_day_buckets_are_new_york_days_also_on_dst_switches(day: str, hours: int) -> None:
    midnight = pd.Timestamp(day, tz="America/New_York")
    next_midnight = pd.Timestamp(pd.Timestamp(day) + pd.Timedelta(days=1), tz="America/New_York")
    assert (next_midnight - midnight) == pd.Timedelta(hours=hours)
    inside = np.array([midnight.value, midnight.value + 1, next_midnight.value - 1])
    np.testing.assert_array_equal(ny_day_buckets(inside), [midnight.value] * 3)
    assert ny_day_buckets(np.array([next_midnight.value]))[0] == next_midnight.value
    # live day bars take the same rule: the bar of any moment that day spans exactly that New York day
    lo, hi = BarBuilder(None).bucket(int((midnight.value + 3_600_000_000_000) // 1_000_000))
    assert (lo, hi) == (midnight.value // 1_000_000, next_midnight.value // 1_000_000)


def test_flat_files_recordings_and_live_bars_cut_the_same_buckets() -> None:
    rng = np.random.default_rng(3)
    t0 = _ms("2024-03-04 14:30")
    times = np.sort(rng.integers(t0 - 3 * MIN_MS, t0 + 47 * MIN_MS, 300))
    for width_min in (1, 5, 15, 60, 240):
        width = width_min * MIN_MS
        name = f"{width_min}m" if width_min < 60 else f"{width_min // 60}h"
        flat = bucket_starts(times * 1_000_000, parse_interval(name))
        live = np.array([BarBuilder(width).bucket(int(t))[0] for t in times]) * 1_000_000
        np.testing.assert_array_equal(flat, live)
        events = pd.DataFrame([make_event("trade", "AAPL", int(t), price=10.0, size=1.0)._asdict() for t in times])
        recorded = ticks_to_bars(events, f"{width_min}min")["timestamp"].astype("int64").to_numpy()
        np.testing.assert_array_equal(recorded, np.unique(flat))
