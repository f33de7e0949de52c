"""vectorbt's MassiveData: download, update from a shared start, datasets and recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from massive_feeds import fetch_data, save_dataset
from massive_feeds.config import Settings
from massive_feeds.record import WebSocketDataRecorder
from massive_feeds.sandbox import Sandbox
from massive_feeds.vectorbt import MassiveData

from ._stream_support import wait_until



def test_download_matches_fetch_data(settings: Settings) -> None:
    data = MassiveData.download(["AAPL", "MSFT"], start="2024-03-04", end="2024-03-08", timeframe="1h",
                                settings=settings)
    bars = fetch_data(["AAPL", "MSFT"], "2024-03-04", "2024-03-08", "1h", settings=settings)
    close = data.get("Close")
    assert list(close.columns) == ["AAPL", "MSFT"] and str(close.index.tz) == "UTC"
    aapl = bars[bars.symbol == "AAPL"].set_index("timestamp")["close"]
    pd.testing.assert_series_equal(close["AAPL"].dropna(), aapl, check_names=False, check_freq=False)
    assert {"Open", "High", "Low", "Close", "Volume", "VWAP", "Trade Count"} <= set(data.data["AAPL"].columns)


def test_update_never_overwrites_good_rows_with_nan(settings: Settings) -> None:
    # AAPL stops at the end of its session while bitcoin trades on: they end at different times
    data = MassiveData.download(["AAPL", "X:BTCUSD"], start="2024-03-04", end="2024-03-05", timeframe="1h",
                                settings=settings)
    before = data.get("Close")
    updated = data.update(end="2024-03-07").get("Close")
    common = before.index
    pd.testing.assert_frame_equal(updated.loc[common], before, check_freq=False)
    assert updated.index[-1] > before.index[-1]
    assert updated["AAPL"].loc["2024-03-06":].notna().sum() > 10  # AAPL got its new bars too


def test_from_dataset_gives_the_same_object(settings: Settings) -> None:
    bars = fetch_data(["AAPL", "MSFT"], "2024-03-04", "2024-03-05", "15m", settings=settings)
    save_dataset(bars, "vbt_ds", settings=settings)
    data = MassiveData.from_dataset("vbt_ds", settings=settings)
    assert data.symbols == ["AAPL", "MSFT"]
    np.testing.assert_allclose(data.get("Close")["MSFT"].dropna().to_numpy(),
                               bars[bars.symbol == "MSFT"]["close"].to_numpy())


def test_from_recording_has_quote_columns(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=120) as sb:  # two market minutes per second
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        rec = WebSocketDataRecorder(["AAPL"], tmp_path / "rec", settings=settings).start()
        # two market minutes from the first event on disk (however long the connection took)
        wait_until(lambda: rec.stats()["events_durable"] > 0, timeout=30, what="a first recorded event")
        begun = sb.clock.now_ms()
        wait_until(lambda: sb.clock.now_ms() - begun >= 2 * 60_000, timeout=30, what="2 market minutes")
        rec.stop()
    data = MassiveData.from_recording(rec.path, "1min")
    frame = data.data["AAPL"]
    assert {"Open", "Close", "Bid", "Ask", "Mid", "Spread"} <= set(frame.columns) and len(frame) >= 1
    path = rec.save_dataset("rec_ds")
    same = MassiveData.from_recording(path.stem, "1min", settings=settings)
    pd.testing.assert_frame_equal(same.data["AAPL"], frame)


def test_portfolio_runs_on_loaded_data(settings: Settings) -> None:
    import vectorbt as vbt

    data = MassiveData.download("AAPL", start="2024-03-04", end="2024-03-08", timeframe="15m", settings=settings)
    close = data.get("Close")
    fast, slow = close.rolling(5).mean(), close.rolling(20).mean()
    pf = vbt.Portfolio.from_signals(close, fast > slow, fast < slow, init_cash=10_000, freq="15min")
    assert np.isfinite(pf.total_return())


def test_interval_is_an_alias_of_timeframe_and_unknown_keywords_are_refused(settings: Settings) -> None:
    import pytest

    from massive_feeds.errors import InvalidInputError

    daily = MassiveData.download("AAPL", start="2024-03-04", end="2024-03-08", interval="1d", settings=settings)
    close = daily.get("Close")
    assert len(close) == 5 and (close.index.to_series().diff().dropna() >= pd.Timedelta("1D")).all()
    assert daily.download_kwargs["timeframe"] == "1d"
    with pytest.raises(InvalidInputError, match="unknown keyword.*intervall"):
        MassiveData.download("AAPL", start="2024-03-04", end="2024-03-08", intervall="1d", settings=settings)
    with pytest.raises(InvalidInputError, match="give one"):
        MassiveData.download("AAPL", start="2024-03-04", end="2024-03-08", timeframe="1h", interval="1d",
                             settings=settings)


def test_wide_layout_is_the_yfinance_shape(settings: Settings) -> None:
    import pytest

    from massive_feeds import to_wide
    from massive_feeds.errors import InvalidInputError

    long = fetch_data(["AAPL", "X:BTCUSD"], "2024-03-04", "2024-03-05", "1h", settings=settings)
    wide = fetch_data(["AAPL", "X:BTCUSD"], "2024-03-04", "2024-03-05", "1h", settings=settings, layout="wide")
    assert wide.columns.names == ["field", "symbol"] and list(wide["Close"].columns) == ["AAPL", "X:BTCUSD"]
    assert str(wide.index.tz) == "UTC" and wide.index.is_monotonic_increasing
    assert len(wide) == long["timestamp"].nunique()  # the union of both symbols' bar times
    aapl = long[long.symbol == "AAPL"].set_index("timestamp")["close"]
    pd.testing.assert_series_equal(wide[("Close", "AAPL")].dropna(), aapl, check_names=False)
    assert wide[("Close", "AAPL")].isna().sum() == len(wide) - len(aapl)  # bitcoin's night hours: NaN, not filled
    assert wide.attrs["method"] == long.attrs["method"]
    closes = to_wide(long, field="close")
    assert list(closes.columns) == ["AAPL", "X:BTCUSD"] and closes.equals(wide["Close"].rename_axis(columns="symbol"))
    with pytest.raises(InvalidInputError, match="layout"):
        fetch_data("AAPL", "2024-03-04", "2024-03-05", "1h", settings=settings, layout="tall")
    with pytest.raises(InvalidInputError, match="no field 'bid'"):
        to_wide(long, field="bid")


def test_period_is_yfinances_spelling_of_the_window(settings: Settings) -> None:
    import pytest

    from massive_feeds.errors import InvalidInputError
    from massive_feeds.vectorbt.data import period_window

    assert period_window("5d", "2024-03-08") == (pd.Timestamp("2024-03-03").date(), pd.Timestamp("2024-03-08").date())
    assert period_window("1mo", "2024-03-31")[0] == pd.Timestamp("2024-02-29").date()
    assert period_window("2wk", "2024-03-15")[0] == pd.Timestamp("2024-03-01").date()
    assert period_window("1y", "2024-03-08")[0] == pd.Timestamp("2023-03-08").date()
    assert period_window("ytd", "2024-03-08")[0] == pd.Timestamp("2024-01-01").date()
    data = MassiveData.download("AAPL", period="5d", end="2024-03-08", interval="1d", settings=settings)
    explicit = MassiveData.download("AAPL", start="2024-03-03", end="2024-03-08", interval="1d", settings=settings)
    pd.testing.assert_frame_equal(data.get("Close").to_frame(), explicit.get("Close").to_frame())
    assert len(data.get("Close")) == 5
    with pytest.raises(InvalidInputError, match="Invalid period 'max'"):
        MassiveData.download("AAPL", period="max", settings=settings)
    with pytest.raises(InvalidInputError, match="got start='2024-03-01' and period='5d'; give one"):
        MassiveData.download("AAPL", start="2024-03-01", period="5d", settings=settings)


def test_from_signals_is_compiled_once_per_installation() -> None:
    """vectorbt 1.2 leaves ``simulate_from_signals_nb`` out of numba's on-disk cache (its other kernels are in
    it): run_vectorbt switches the cache on, so the next process loads the kernel instead of spending 5-6 s
    of CPU compiling it again."""
    from numba.core.caching import NullCache
    from vectorbt.portfolio import nb

    from massive_feeds.strategies import SmaCross
    from massive_feeds.strategies.vectorbt_runner import run_vectorbt

    closes = np.r_[np.arange(100.0, 90.0, -1), np.arange(91.0, 101.0), np.arange(99.0, 89.0, -1)]
    bars = pd.DataFrame({"timestamp": pd.date_range("2024-03-04 14:30", periods=len(closes), freq="1min", tz="UTC"),
                         "symbol": "AAPL", "open": closes, "high": closes, "low": closes, "close": closes})
    result = run_vectorbt(SmaCross, bars, cash=1_000.0, fast=2, slow=5)
    assert result.trade_count == 1  # down, up, down: bought on the way up, sold on the way down
    cache = nb.simulate_from_signals_nb._cache
    assert not isinstance(cache, NullCache)
    assert list(Path(cache.cache_path).glob("*simulate_from_signals_nb-*.nbi"))  # the compiled kernel's index
