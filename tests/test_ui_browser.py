"""End to end in a real browser: ``massive-feeds ui`` on 127.0.0.1, driven by Playwright and Debian's Chromium.

No key is configured, so the app starts its own sandbox (its quota state, caches and datasets go to the
test's tmp folder through ``MASSIVE_FEEDS_HOME`` / ``MASSIVE_DATASETS_DIR``). The test fetches bars and
sees rows, streams and sees quotes arrive, records, stops recording, runs a backtest and sees the
metrics. Screenshots land in ``<tmp>/screenshots``. Every wait is for something to appear on the page.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``; Playwright's own browser download is not
used). Without it the test is skipped — unless ``MASSIVE_REQUIRE_BROWSER=1`` (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 30_000
#: Read at import: the autouse fixture of conftest.py clears every MASSIVE_* variable before each test.
REQUIRE_BROWSER = os.environ.get("MASSIVE_REQUIRE_BROWSER") == "1"

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(240)]


def _missing(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"browser test required (MASSIVE_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the UI exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the UI did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_ui(folder: Path, **extra_env: str) -> Iterator[str]:
    """``massive-feeds ui`` on a free port with no key (so on its own sandbox) and private folders under
    ``folder``; yields its URL once healthy and stops the whole process group afterwards."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASSIVE_")}
    env.update({
        "MASSIVE_FEEDS_HOME": str(folder / "home"),
        "MASSIVE_DATASETS_DIR": str(folder / "datasets"),
        "MASSIVE_FEEDS_CONFIG": str(folder / "no-user-config.properties"),
        "MASSIVE_UI_SANDBOX_SPEED": "60",  # a minute of market per second: quotes and bars arrive quickly
        "HOME": str(folder / "user"),  # Streamlit's ~/.streamlit stays inside the test
        **extra_env,
    })
    log = folder / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "massive_feeds.cli", "ui", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[str]:
    """``massive-feeds ui`` on a free port with no key (so on its own sandbox), private folders."""
    with running_ui(tmp_path) as url:
        yield url


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, checked before the app is started."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install 'massive-feeds[dev]')")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
def page(chromium: Path, ui_server: str) -> Iterator[Page]:
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 2400})
            pg.set_default_timeout(WAIT_MS)
            sync_api.expect.set_options(timeout=WAIT_MS)  # the default 5 s is short on a loaded machine
            pg.goto(ui_server)
            yield pg
        finally:
            browser.close()


def _metric(page: Page, label: str) -> str:
    label_el = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    box = page.get_by_test_id("stMetric").filter(has=label_el)
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def _choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_fetch_stream_record_and_backtest_in_a_browser(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    p = page

    # Data Loader: the sandbox banner, the quota panel, a fetch that returns rows.
    expect(p.get_by_text("Sandbox mode: no API key configured")).to_be_visible()
    expect(p.get_by_text("100 of 100 REST calls left today")).to_be_visible()
    p.get_by_role("button", name="Fetch Data").click()
    expect(p.get_by_text("Fetched via REST API")).to_be_visible()
    assert int(_metric(p, "Rows").replace(",", "")) > 0
    expect(p.get_by_text(re.compile(r"\d+ of 100 REST calls left today"))).to_be_visible()
    expect(p.locator(".js-plotly-plot")).to_be_visible()  # the candlestick chart
    p.screenshot(path=str(shots / "01_data_loader.png"))
    p.get_by_role("button", name="Save dataset").click()
    expect(p.get_by_text("Saved dataset aapl_msft_1h")).to_be_visible()
    assert (tmp_path / "datasets" / "aapl_msft_1h.parquet").exists()

    # Live Trading: start the stream, quotes arrive in the table and the stats move.
    p.get_by_role("link", name="Live Trading").click()
    start = p.get_by_role("button", name="Start Trading")
    expect(start).to_be_enabled()
    start.click()
    quotes = p.get_by_test_id("stTable")
    expect(quotes.get_by_text("AAPL", exact=True)).to_be_visible()
    expect(quotes.get_by_text("X:BTCUSD", exact=True)).to_be_visible()
    expect(p.get_by_test_id("stMetric").filter(has_text="Active streams")).to_contain_text("2 / 10")
    expect(p.get_by_text(re.compile(r"connected · [\d,]+ messages received"))).to_be_visible()
    p.screenshot(path=str(shots / "02_live_quotes.png"))

    # Test on Live Data: record 1-second bars until enough are on disk, stop, a tagged dataset is saved.
    p.get_by_role("tab", name="Test on Live Data").click()
    _choose(p, "Bar size", "1s")
    p.get_by_role("button", name="Start Recording").click()
    written = p.get_by_test_id("stMetric").filter(has_text="Written to disk")
    expect(written).to_be_visible()
    expect(written.get_by_test_id("stMetricValue")).to_have_text(re.compile(r"^([3-9]\d\d|[\d,]{4,})$"),
                                                                 timeout=90_000)  # >= 300 events, ~10 s
    p.get_by_role("button", name="Stop Recording").click()
    expect(p.get_by_text(re.compile(r"Saved recording as dataset massive_live_session_\d{8}"))).to_be_visible()
    assert list((tmp_path / "datasets").glob("massive_live_session_*.parquet"))

    # Backtest the recording: metrics, equity curve and trade log appear.
    _choose(p, "Strategy", "mean_reversion (MeanReversion)")
    p.get_by_role("button", name="Run Backtest").click()
    expect(p.get_by_text("Equity curve")).to_be_visible()
    assert re.fullmatch(r"[+-]\d+\.\d\d%", _metric(p, "Return"))
    assert re.fullmatch(r"-?\d+\.\d\d|n/a", _metric(p, "Sharpe"))
    assert re.fullmatch(r"\d+\.\d\d%|n/a", _metric(p, "Max drawdown"))
    trades = int(_metric(p, "Trades"))
    expect(p.get_by_text("Trade log")).to_be_visible()
    # the count agrees with the trade log under it: the "no closed trades" note shows exactly when it is 0
    assert p.get_by_text("No closed trades in this session.").count() == (1 if trades == 0 else 0)
    assert not p.get_by_test_id("stException").count()
    p.screenshot(path=str(shots / "03_backtest.png"))

    p.get_by_role("button", name="Stop Trading").click()
    expect(p.get_by_text("Trading stopped")).to_be_visible()
