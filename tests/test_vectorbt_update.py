"""vectorbt ``MassiveData.update`` when history is re-priced: a roll of a back-adjusted continuous future
inside the new bars, or another price basis. Appending the new bars to ones priced on the old basis would
leave a jump; the updated data must equal a download of the whole window, bar for bar. With nothing re-priced
(no roll; splits and dividends already in the held bars, which are adjusted as of their fetch) the update
still appends: one fetch, nothing downloaded again."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from massive_feeds.sandbox import Sandbox

pytest.importorskip("vectorbt")
from massive_feeds.vectorbt import MassiveData  # noqa: E402

CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as box:
        yield box


def _aggs_calls(sb: Sandbox) -> int:
    return sb.rest.count("/v2/aggs/") + sb.rest.count("/futures/v1/aggs/")


def _updated_equals_whole(sb: Sandbox, symbol: str, first: str, held_to: str, last: str, **kw: object) -> int:
    """Download ``first..held_to``, update to ``last``; assert it equals ``first..last`` downloaded at once and
    return how many aggregates calls the update made."""
    settings = sb.settings(plan="unlimited")
    data = MassiveData.download(symbol, start=first, end=held_to, timeframe="1d", method="rest",
                                settings=settings, **kw)
    before = _aggs_calls(sb)
    updated = data.update(end=last)
    calls = _aggs_calls(sb) - before
    whole = MassiveData.download(symbol, start=first, end=last, timeframe="1d", method="rest",
                                 settings=settings, **kw)
    pd.testing.assert_frame_equal(updated.get(["Open", "High", "Low", "Close"]),
                                  whole.get(["Open", "High", "Low", "Close"]), check_freq=False)
    return calls


@pytest.mark.parametrize("how", ["ratio", "difference"])
def test_an_update_across_a_roll_re_prices_the_back_adjusted_bars(sb: Sandbox, how: str) -> None:
    # ES.c.0 rolls ESU6 -> ESZ6 on the session of 2026-09-21: the bars held up to 09-16 were adjusted to ESU6
    calls = _updated_equals_whole(sb, "ES.c.0", "2026-09-08", "2026-09-16", "2026-09-25", roll_adjust=how)
    assert calls >= 2  # the new bars, then the whole window again


def test_an_update_without_a_roll_appends(sb: Sandbox) -> None:
    calls = _updated_equals_whole(sb, "ES.c.0", "2026-09-22", "2026-09-24", "2026-10-02", roll_adjust="ratio")
    assert calls == 1  # the contract held (ESZ6) is the same: one fetch of the new bars, nothing downloaded again


def test_an_update_across_an_ex_date_already_in_the_held_bars_appends(sb: Sandbox) -> None:
    # XOM goes ex-dividend on 2026-02-10 (sandbox); the held total-return bars are adjusted as of their fetch,
    # which already knew it: appending is right, and one fetch of the new bars is all it takes
    assert _updated_equals_whole(sb, "XOM", "2026-01-20", "2026-02-05", "2026-02-20", adjusted="total") == 1


def test_an_update_across_a_known_split_appends(sb: Sandbox) -> None:
    # GOOGL split 4-for-1 on 2024-03-06 (sandbox), known when the held bars were fetched
    assert _updated_equals_whole(sb, "GOOGL", "2024-02-20", "2024-03-01", "2024-03-08") == 1


def test_an_update_on_another_price_basis_downloads_the_window_again(sb: Sandbox) -> None:
    # raw bars before the split are 4x the split-adjusted ones: updating them as adjusted must not append
    settings = sb.settings(plan="unlimited")
    raw = MassiveData.download("GOOGL", start="2024-02-20", end="2024-03-01", timeframe="1d", method="rest",
                               settings=settings, adjusted=False)
    updated = raw.update(end="2024-03-08", adjusted=True)
    whole = MassiveData.download("GOOGL", start="2024-02-20", end="2024-03-08", timeframe="1d", method="rest",
                                 settings=settings)
    pd.testing.assert_frame_equal(updated.get(["Open", "Close"]), whole.get(["Open", "Close"]), check_freq=False)
    assert updated.get("Open").loc["2024-02-20":"2024-03-02"].max() < raw.get("Open").min() / 3
