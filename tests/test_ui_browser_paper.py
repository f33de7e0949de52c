"""Paper trading in a real browser: the Live Trading page's Paper Trading tab, Start Trading → fills on the
page → Stop → the saved session, its replay parity and its backtest. ``massive-feeds ui`` on its own
keyless sandbox at 120x, driven by Playwright and Debian's Chromium (skipped without it, as in
``tests/test_ui_browser.py``). Screenshots land in ``<tmp>/screenshots``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from tests.test_ui_browser import _metric, chromium, page, running_ui  # noqa: F401 - fixtures

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(240)]


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[str]:
    """``massive-feeds ui`` as in tests/test_ui_browser.py, its sandbox clock at 120x rather than 60x: the
    strategy's live fills come in half the wait."""
    with running_ui(tmp_path, MASSIVE_UI_SANDBOX_SPEED="120") as url:
        yield url


def _set_number(pg: Page, label: str, value: str) -> None:
    box = pg.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def test_start_trading_stop_and_parity_in_a_browser(page: Page, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    p = page
    p.get_by_role("link", name="Live Trading").click()
    p.get_by_role("tab", name="Paper Trading").click()
    expect(p.get_by_text("Paper trading: a strategy on the live stream")).to_be_visible()
    p.get_by_text("quotes", exact=True).click()  # the fill model
    _set_number(p, "Backfill bars", "20")
    p.get_by_text("Strategy parameters").click()
    _set_number(p, "fast", "2")
    _set_number(p, "slow", "5")
    p.get_by_role("button", name="Start Trading").last.click()
    expect(p.get_by_text(re.compile(r"Paper trading sma_cross on AAPL \(fills at the quotes\)"))).to_be_visible()
    fills = p.get_by_test_id("stMetric").filter(has_text="Fills").get_by_test_id("stMetricValue")
    expect(fills).to_have_text(re.compile(r"^([2-9]|\d\d+)$"), timeout=120_000)  # a buy and a sell, live
    assert _metric(p, "Last bar").endswith("LIVE")
    expect(p.locator(".js-plotly-plot").last).to_be_visible()  # the price with ▲ entries ▼ exits
    p.screenshot(path=str(shots / "01_paper_trading.png"))
    p.get_by_role("button", name="⏹️ Stop", exact=True).click()
    expect(p.get_by_text(re.compile(r"Saved the session as dataset massive_live_paper_\d{8}"))).to_be_visible(
        timeout=90_000)
    expect(p.get_by_text(re.compile(r"^Replay parity: identical"))).to_be_visible()
    expect(p.get_by_text("Backtest of the recorded session")).to_be_visible()
    assert list((tmp_path / "datasets").glob("massive_live_paper_*.parquet"))
    assert not p.get_by_test_id("stException").count()
    p.screenshot(path=str(shots / "02_paper_parity.png"))
