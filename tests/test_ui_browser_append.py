"""Issue 28 in a real browser, on the app's own sandbox: the Data Loader's append target is picked by the
user (no default; its interval and kind shown) and a mismatched append is refused with the dataset unchanged;
a backtest that ends holding a position shows it (the "Open" card says "1 open", a hollow ▲ on the chart).

Screenshots go to ``output/screenshots/`` of the repository (git-ignored). Needs ``/usr/bin/chromium``
(skipped without it unless ``MASSIVE_REQUIRE_BROWSER=1``). Every wait is for something on the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds import save_dataset
from tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, _metric, _missing, running_ui
from tests.test_ui_browser_daily import _pick

if TYPE_CHECKING:
    from playwright.sync_api import Page

SHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
WAIT_MS = 30_000

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(300)]


def _bars(closes: np.ndarray, freq: str, interval: str) -> pd.DataFrame:
    ts = pd.date_range("2024-03-05 14:30", periods=len(closes), freq=freq, tz="UTC")
    df = pd.DataFrame({"timestamp": ts, "symbol": "AAPL", "open": closes, "high": closes + .2, "low": closes - .2,
                       "close": closes, "volume": 100.0, "vwap": closes, "transactions": 1})
    df.attrs.update(interval=interval, adjusted=False, data_source="sandbox")
    return df


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install 'massive-feeds[dev]')")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    tmp = tmp_path_factory.mktemp("ui_append")
    save_dataset(_bars(np.array([100.0, 101.0, 102.0]), "5min", "5m"), "aapl_5m", folder=tmp / "datasets")
    # down 40 minutes, then up 30: sma_cross (10/30) buys on the way up and still holds at the end
    rising = np.r_[100 - 0.5 * np.arange(40), 80 + np.arange(1, 31)].astype(float)
    save_dataset(_bars(rising, "1min", "1m"), "rising", folder=tmp / "datasets")
    with running_ui(tmp) as url:
        yield url, tmp


@pytest.fixture(scope="module")
def page(server: tuple[str, Path]) -> Iterator[Page]:
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 2600})
            pg.set_default_timeout(WAIT_MS)
            sync_api.expect.set_options(timeout=WAIT_MS)
            pg.goto(server[0])
            yield pg
        finally:
            browser.close()


def test_the_append_target_is_picked_and_a_mismatch_leaves_the_dataset_unchanged(
        page: Page, server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect

    p, target = page, server[1] / "datasets" / "aapl_5m.parquet"
    before = target.read_bytes()
    SHOTS.mkdir(parents=True, exist_ok=True)
    p.get_by_role("button", name="Fetch Data").click()  # the default query: 1h bars over REST
    expect(p.get_by_text(re.compile("Fetched via"))).to_be_visible()
    p.get_by_text("Append mode: add these bars to an existing dataset").click()
    picker = p.get_by_role("combobox", name="Existing dataset to append to")
    expect(picker).to_have_value("")  # before: the first dataset alphabetically, preselected
    expect(picker).to_have_attribute("placeholder", "Pick a dataset…")
    expect(p.get_by_role("button", name="Save dataset")).to_be_disabled()
    _pick(p, "Existing dataset to append to", "aapl_5m")
    expect(p.get_by_text(re.compile(r"aapl_5m holds 5m bars · stocks · 3 rows; these rows: 1h bars · stocks"))
           ).to_be_visible()
    p.get_by_role("button", name="Save dataset").click()
    expect(p.get_by_text(re.compile(r"cannot append 1h bars to dataset 'aapl_5m', which holds 5m bars"))
           ).to_be_visible()
    p.screenshot(path=str(SHOTS / "28_append_picker_refuses_another_interval.png"), full_page=True)
    assert target.read_bytes() == before


def test_a_position_held_at_the_end_is_shown(page: Page) -> None:
    from playwright.sync_api import expect

    p = page
    p.get_by_role("link", name="Live Trading").click()
    p.get_by_role("tab", name="Test on Live Data").click()
    p.get_by_text("Show all datasets, not only live recordings").click()
    _pick(p, "Recorded dataset", "rising")
    p.get_by_role("button", name="Run Backtest").click()
    expect(p.get_by_text("Equity curve")).to_be_visible()
    assert _metric(p, "Trades") == "0" and _metric(p, "Open") == "1 open"  # before: "Trades 0" and nothing else
    chart = p.locator(".st-key-lt_trades_chart .js-plotly-plot").last
    expect(chart).to_contain_text("1 open (held at the end)")  # the hollow ▲'s legend entry
    expect(p.get_by_text(re.compile(r"1 open at the end \(hollow ▲ on the chart"))).to_be_visible()
    p.screenshot(path=str(SHOTS / "28_backtest_open_position.png"), full_page=True)
