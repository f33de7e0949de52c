"""Appending to a dataset of a back-adjusted continuous future: each part was adjusted for the rolls of its own
window only, so appending across a roll must re-adjust the earlier part, in either order, to exactly what one
fetch of the whole window gives (over the sandbox's REST; ES.c.0 rolls ESU6 -> ESZ6 on the session of 09-21)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_data, load_dataset, roll_table, save_dataset
from massive_feeds.sandbox import Sandbox

CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)
PRICES = ["open", "high", "low", "close", "vwap", "settlement_price"]


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as box:
        yield box


@pytest.mark.parametrize("how", ["ratio", "difference"])
@pytest.mark.parametrize("order", ["later_appended", "earlier_appended"])
def test_appending_across_a_roll_equals_one_fetch(sb: Sandbox, tmp_path: Path, how: str, order: str) -> None:
    settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
    august = fetch_data("ES.c.0", "2026-09-08", "2026-09-16", "1d", method="rest", settings=settings,
                        roll_adjust=how)
    september = fetch_data("ES.c.0", "2026-09-17", "2026-09-25", "1d", method="rest", settings=settings,
                           roll_adjust=how)
    whole = fetch_data("ES.c.0", "2026-09-08", "2026-09-25", "1d", method="rest", settings=settings,
                       roll_adjust=how)
    assert roll_table(august).empty and len(roll_table(september)) == 1  # only the later part knows the roll
    first, second = (august, september) if order == "later_appended" else (september, august)
    save_dataset(first, "es", settings=settings)
    save_dataset(second, "es", settings=settings, append=True)
    got = load_dataset("es", settings=settings)
    assert got["timestamp"].tolist() == whole["timestamp"].tolist() and len(got) == 14
    np.testing.assert_allclose(got[PRICES].to_numpy(float), whole[PRICES].to_numpy(float), rtol=1e-12)
    assert got["contract"].tolist() == whole["contract"].tolist()
    pd.testing.assert_frame_equal(roll_table(got), roll_table(whole))
    # the early bars moved, whichever part came first: alone they were ESU6's own prices
    assert not np.allclose(got["close"].iloc[:7].to_numpy(), august["close"].to_numpy())


def test_appending_raw_continuous_bars_moves_nothing(sb: Sandbox, tmp_path: Path) -> None:
    settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
    august = fetch_data("ES.c.0", "2026-09-08", "2026-09-16", "1d", method="rest", settings=settings)
    september = fetch_data("ES.c.0", "2026-09-17", "2026-09-25", "1d", method="rest", settings=settings)
    save_dataset(august, "es", settings=settings)
    save_dataset(september, "es", settings=settings, append=True)
    got = load_dataset("es", settings=settings)
    assert got["close"].tolist() == august["close"].tolist() + september["close"].tolist()
