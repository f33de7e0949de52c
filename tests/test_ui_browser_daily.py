"""Issue 18's flows in a real browser (one Chromium session for the module), on the app's own sandbox with
a custom profile whose daily REST limit is 1 — so the quota really runs out during the test:

Data Loader (truthful profile labels, a fetch that spends the last call, candlesticks with volume and no
closed hours, CSV download, save, inspect, delete) → Live Trading with the quota exhausted (one message,
the built-in symbol list, streaming works, live candles beside the quotes) → recording with elapsed
time, bars so far and how long each strategy needs at the sandbox speed → a backtest with trade markers.

Screenshots go to ``output/screenshots/`` of the repository (git-ignored). Needs ``/usr/bin/chromium``
(skipped without it unless ``MASSIVE_REQUIRE_BROWSER=1``). Every wait is for something on the page.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from tests.test_ui_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _choose,
    _metric,
    _missing,
    running_ui,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

SHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
WAIT_MS = 30_000

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(420)]


def _pick(page: Page, label: str, option: str) -> None:
    """:func:`_choose`, opening the list again when a rerun closed it before the option could be clicked
    (the page re-renders after a navigation); each attempt waits for the option to appear."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        page.get_by_test_id("stSelectbox").filter(has_text=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")


def _open_popover(page: Page, opener: str, button: str) -> Locator:
    """Open the popover whose button text contains ``opener`` and return ``button`` inside it, opening it
    again when a rerun closed it (or showed it for the previous pick) before ``button`` appeared."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    target = page.get_by_role("button", name=button, exact=True)
    for attempt in range(3):
        page.get_by_role("button", name=re.compile(re.escape(opener))).click()
        try:
            target.wait_for(state="visible", timeout=10_000)
            return target
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def daily_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install 'massive-feeds[dev]')")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    tmp = tmp_path_factory.mktemp("ui_daily")
    # one REST call today, then exhausted; the clock at 180x so the recording's 400 bars come in ~20 s, not ~60 s
    with running_ui(tmp, MASSIVE_PLAN="custom", MASSIVE_PLAN_REST_PER_DAY="1", MASSIVE_UI_SANDBOX_SPEED="180") as url:
        yield url, tmp


@pytest.fixture(scope="module")
def page(daily_server: tuple[str, Path]) -> Iterator[Page]:
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 2600}, accept_downloads=True)
            pg.set_default_timeout(WAIT_MS)
            sync_api.expect.set_options(timeout=WAIT_MS)  # the default 5 s is short on a loaded machine
            pg.goto(daily_server[0])
            yield pg
        finally:
            browser.close()


def test_daily_flows_with_the_rest_quota_running_out(page: Page, daily_server: tuple[str, Path]) -> None:
    from playwright.sync_api import expect

    tmp = daily_server[1]
    SHOTS.mkdir(parents=True, exist_ok=True)
    p = page

    # Data Loader: the profile's real name and limits, and whose numbers they are
    expect(p.get_by_text("Sandbox mode: no API key configured")).to_be_visible()
    expect(p.get_by_role("combobox", name="Data source")).to_have_value(
        "Massive.com · profile custom: 1 REST calls/day, 10 per minute")
    expect(p.get_by_text("1 of 1 REST calls left today")).to_be_visible()
    expect(p.get_by_text(re.compile(r"custom limits from your MASSIVE_PLAN_\* settings"))).to_be_visible()
    expect(p.get_by_text(re.compile(r"Massive documents 5 REST requests/minute"))).to_be_visible()
    assert not p.get_by_text(re.compile("FREE 100 calls/day|Free tier status")).count()

    # one symbol over REST spends the only call of the day
    symbols = p.get_by_role("textbox", name="Symbols")
    symbols.fill("AAPL")
    symbols.press("Enter")
    p.get_by_test_id("stRadio").get_by_text("REST API", exact=True).click()
    p.get_by_role("button", name="Fetch Data").click()
    expect(p.get_by_text("Fetched via REST API")).to_be_visible()
    expect(p.get_by_text(re.compile(r"Daily limit reached: 0 of 1 REST calls left"))).to_be_visible()
    chart = p.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(chart.locator(".boxlayer path.box").first).to_be_attached()  # candlestick bodies
    expect(chart.locator(".barlayer .point").first).to_be_attached()  # the volume panel
    expect(chart.get_by_text("New York time", exact=True)).to_be_attached()
    breaks = chart.evaluate("gd => gd.layout.xaxis.rangebreaks")  # what plotly actually drew with
    assert {"bounds": ["sat", "mon"]} in [{k: b[k] for k in ("bounds",) if k in b} for b in breaks]
    assert any(b.get("pattern") == "hour" for b in breaks)  # the closed night hours are hidden
    p.screenshot(path=str(SHOTS / "01_data_loader_candles_volume_quota_exhausted.png"), full_page=True)

    with p.expect_download() as download:
        p.get_by_role("button", name="⬇️ CSV").first.click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows and rows[0]["symbol"] == "AAPL" and float(rows[0]["close"]) > 0

    p.get_by_role("textbox", name="Dataset name").fill("aapl_daily")
    p.get_by_role("textbox", name="Dataset name").press("Enter")
    p.get_by_role("button", name="Save dataset").click()
    expect(p.get_by_text("Saved dataset aapl_daily")).to_be_visible()
    assert (tmp / "datasets" / "aapl_daily.parquet").exists()

    # Live Trading with the quota spent: one message, a symbol list anyway, streaming works
    p.get_by_role("link", name="Live Trading").click()
    expect(p.get_by_text("Symbols from a built-in list")).to_be_visible()
    expect(p.get_by_text(re.compile(r"daily REST quota is used up.*type any symbol"))).to_be_visible()
    assert p.get_by_test_id("stAlert").filter(has_text=re.compile("quota", re.I)).count() == 1
    assert not p.get_by_test_id("stAlertContentError").count()
    start = p.get_by_role("button", name="Start Trading")
    expect(start).to_be_enabled()
    start.click()
    quotes = p.get_by_test_id("stTable")
    expect(quotes.get_by_text("AAPL", exact=True)).to_be_visible()
    expect(quotes.get_by_text("X:BTCUSD", exact=True)).to_be_visible()
    candles = p.locator(".st-key-lt_candles .js-plotly-plot").filter(has_text="Live 5s candles").last
    expect(candles).to_be_visible()
    expect(candles.locator(".boxlayer path.box").first).to_be_attached()  # candlestick bodies drawn
    p.screenshot(path=str(SHOTS / "02_live_quotes_and_candles_with_quota_exhausted.png"), full_page=True)

    # Recording: how long each strategy needs at 180×, then elapsed time and bars so far
    p.get_by_role("tab", name="Test on Live Data").click()
    expect(p.get_by_text("How long to record before each strategy can run (sandbox clock at 180× real time)")
           ).to_be_visible()
    _choose(p, "Bar size", "1s")
    p.get_by_role("button", name="Start Recording").click()
    elapsed = p.get_by_test_id("stMetric").filter(has_text="Elapsed")
    expect(elapsed).to_be_visible()
    bars = p.get_by_test_id("stMetric").filter(has_text="Bars (1s)").get_by_test_id("stMetricValue")
    # >= 400 bars per symbol (mean_reversion's z-score entries need a few hundred): the sandbox's sparse
    # 1-second bars fill at about 6-7 per real second at 60x (~60 s for 400), about three times that at 180x
    expect(bars).to_have_text(re.compile(r"^([4-9]\d\d|[\d,]{5,})$"), timeout=180_000)
    p.screenshot(path=str(SHOTS / "03_recording_elapsed_bars_readiness.png"), full_page=True)
    p.get_by_role("button", name="Stop Recording").click()
    expect(p.get_by_text(re.compile(r"Saved recording as dataset massive_live_session_\d{8}"))).to_be_visible()

    # mean_reversion needs 21 bars: it runs now, with its trades on the price
    _choose(p, "Strategy", "mean_reversion (MeanReversion)")
    p.get_by_role("button", name="Run Backtest").click()
    expect(p.get_by_text("Equity curve")).to_be_visible()
    trades_chart = p.locator(".st-key-lt_trades_chart .js-plotly-plot").last
    expect(trades_chart).to_contain_text("with ▲ entries and ▼ exits")
    expect(trades_chart.locator(".boxlayer path.box").first).to_be_attached()
    expect(trades_chart.locator(".scatterlayer .point").first).to_be_attached()  # ▲/▼ trade markers
    assert re.fullmatch(r"[+-]\d+\.\d\d%", _metric(p, "Return")) and int(_metric(p, "Trades")) > 0
    sharpe = _metric(p, "Sharpe")
    assert sharpe == "n/a"  # well under one 6.5 h session of 1-second bars
    expect(p.get_by_text(re.compile(r"Sharpe n/a: .*less than one 6.5 h session"))).to_be_visible()
    assert not p.get_by_test_id("stException").count()
    p.screenshot(path=str(SHOTS / "04_backtest_trade_markers_sharpe_na.png"), full_page=True)
    p.get_by_role("button", name="Stop Trading").click()
    expect(p.get_by_text("Trading stopped")).to_be_visible()

    # Data Loader: the two-symbol recording inspected, stacked then overlaid; then a dataset deleted
    p.get_by_role("link", name="Data Loader").click()
    recorded = next(n.name for n in (tmp / "datasets").glob("massive_live_session_*.parquet")).removesuffix(".parquet")
    _pick(p, "Inspect dataset", recorded)
    inspect_chart = p.locator(".st-key-dl_inspect_chart_chart .js-plotly-plot").last
    expect(inspect_chart.locator(".boxlayer .trace")).to_have_count(2)  # AAPL and X:BTCUSD candles, stacked
    p.get_by_test_id("stRadio").get_by_text("Overlaid (% change)", exact=True).click()
    overlaid = p.locator(".st-key-dl_inspect_chart_chart .js-plotly-plot").last
    expect(overlaid.locator(".scatterlayer .trace")).to_have_count(2)  # one % line per symbol
    expect(overlaid).to_contain_text("close, % since first bar")
    p.screenshot(path=str(SHOTS / "05_inspect_recording_overlaid.png"), full_page=True)
    _pick(p, "Inspect dataset", "aapl_daily")
    expect(p.locator(".st-key-dl_inspect_chart_chart .js-plotly-plot").last.locator(".boxlayer .trace")
           ).to_have_count(1)  # the rerun for the new pick has drawn aapl_daily alone
    _open_popover(p, "Delete dataset", "Delete aapl_daily").click()
    expect(p.get_by_text("Deleted dataset aapl_daily (aapl_daily.parquet).")).to_be_visible()
    assert not (tmp / "datasets" / "aapl_daily.parquet").exists()
