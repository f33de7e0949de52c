"""MassiveData in historical mode: bars equal the fetch path, datasets, time zones, resampling, NaNs."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_data, save_dataset
from massive_feeds.backtrader import MassiveData, MassiveQuoteData, MassiveStore, backtrader_tz, bt_datenums
from massive_feeds.config import Settings
from massive_feeds.errors import InvalidInputError
from tests._bt_support import OHLCV, Recorder, run, close_stores  # noqa: F401 - autouse fixture

DAY = dt.date(2024, 3, 4)
NY = ZoneInfo("America/New_York")


def bars(settings: Settings, interval: str = "5m", symbols: str | list[str] = "AAPL", days: int = 1) -> pd.DataFrame:
    return fetch_data(symbols, DAY, DAY + dt.timedelta(days=days - 1), interval, settings=settings)


def feed(settings: Settings, **kwargs) -> MassiveData:
    kwargs.setdefault("dataname", "AAPL")
    kwargs.setdefault("fromdate", DAY)
    kwargs.setdefault("todate", DAY)
    return MassiveData(settings=settings, **kwargs)


def test_historical_bars_equal_fetch_data_exactly(settings: Settings) -> None:
    expected = bars(settings, "5m", days=2)
    got = run(feed(settings, timeframe=bt.TimeFrame.Minutes, compression=5, todate=DAY + dt.timedelta(days=1))).frame()
    assert got["timestamp"].tolist() == expected["timestamp"].tolist()
    np.testing.assert_array_equal(got[OHLCV].to_numpy(), expected[OHLCV].to_numpy())


def test_bar_by_bar_load_equals_preloaded_columns(settings: Settings) -> None:
    cerebro = bt.Cerebro(stdstats=False, preload=False)
    cerebro.adddata(feed(settings, interval="1m"))
    cerebro.addstrategy(Recorder)
    per_bar = cerebro.run()[0].frame()
    preloaded = run(feed(settings, interval="1m")).frame()
    pd.testing.assert_frame_equal(per_bar, preloaded)


def test_dataset_mode_picks_the_symbol_and_the_saved_interval(settings: Settings) -> None:
    two = bars(settings, "15m", ["AAPL", "MSFT"])
    save_dataset(two, "two_stocks", settings=settings)
    data = MassiveData(dataset="two_stocks", dataname="MSFT", settings=settings)
    got = run(data).frame()
    msft = two[two["symbol"] == "MSFT"]
    assert (data._timeframe, data._compression) == (bt.TimeFrame.Minutes, 15)
    np.testing.assert_array_equal(got[OHLCV].to_numpy(), msft[OHLCV].to_numpy())


def test_multi_symbol_dataset_without_dataname_is_a_clear_error(settings: Settings) -> None:
    save_dataset(bars(settings, "1h", ["AAPL", "MSFT"]), "pair", settings=settings)
    with pytest.raises(InvalidInputError, match="pick one with dataname"):
        run(MassiveData(dataset="pair", settings=settings))


@pytest.mark.parametrize("tz", ["America/New_York", NY, dt.timezone(dt.timedelta(hours=-5))],
                         ids=["string", "zoneinfo", "fixed-offset"])
def test_tz_shows_local_time_while_lines_stay_utc(settings: Settings, tz) -> None:
    expected = bars(settings, "1h")
    got = run(feed(settings, interval="1h", tz=tz)).frame()
    assert got["timestamp"].tolist() == expected["timestamp"].tolist()
    local = expected["timestamp"].dt.tz_convert(NY).dt.tz_localize(None)
    assert got["local"].tolist() == local.tolist()


def test_zone_wrapper_follows_daylight_saving_both_ways() -> None:
    tz = backtrader_tz(NY)
    summer, winter = tz.localize(dt.datetime(2024, 7, 1, 9, 30)), tz.localize(dt.datetime(2024, 1, 2, 9, 30))
    assert summer.utcoffset() == dt.timedelta(hours=-4) and winter.utcoffset() == dt.timedelta(hours=-5)
    assert bt.num2date(bt.date2num(summer), tz=tz) == dt.datetime(2024, 7, 1, 9, 30)
    assert bt.num2date(bt.date2num(winter), tz=tz) == dt.datetime(2024, 1, 2, 9, 30)


def test_naive_bounds_are_read_in_the_feed_time_zone(settings: Settings) -> None:
    data = feed(settings, interval="5m", tz=NY, fromdate=dt.datetime(2024, 3, 4, 9, 30),
                todate=dt.datetime(2024, 3, 4, 15, 55))
    got = run(data).frame()
    assert got["local"].iloc[0] == dt.datetime(2024, 3, 4, 9, 30)
    assert got["timestamp"].iloc[0] == pd.Timestamp("2024-03-04 14:30", tz="UTC")
    assert got["local"].iloc[-1] == dt.datetime(2024, 3, 4, 15, 55)


def regular_session(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index("timestamp").loc["2024-03-04 14:30Z":"2024-03-04 20:55Z", OHLCV]


def session_feed(settings: Settings) -> MassiveData:
    # every regular-session minute has a bar in the sandbox; Backtrader's resampler merges an
    # on-boundary bar into the previous one after a gap, so sparse pre-market minutes are left out
    return feed(settings, interval="1m", fromdate=dt.datetime(2024, 3, 4, 14, 30), todate=dt.datetime(2024, 3, 4, 20, 59))


def test_resampledata_builds_the_same_bars_rest_serves(settings: Settings) -> None:
    got = run(session_feed(settings), how="resampledata", timeframe=bt.TimeFrame.Minutes, compression=5).frame()
    got["timestamp"] -= pd.Timedelta(minutes=5)  # Backtrader stamps resampled bars at their end
    pd.testing.assert_frame_equal(regular_session(got), regular_session(bars(settings, "5m")), check_names=False)


def test_resampling_a_feed_that_is_also_added_keeps_both_aligned(settings: Settings) -> None:
    cerebro = bt.Cerebro(stdstats=False)
    minutes = session_feed(settings)
    cerebro.adddata(minutes)
    cerebro.resampledata(minutes, timeframe=bt.TimeFrame.Minutes, compression=5)  # a clone is resampled
    cerebro.addstrategy(Recorder)
    got = cerebro.run()[0].frame().drop_duplicates("timestamp", keep="last")
    got["timestamp"] -= pd.Timedelta(minutes=5)
    pd.testing.assert_frame_equal(regular_session(got), regular_session(bars(settings, "5m")), check_names=False)


def test_replaydata_ends_each_bar_on_the_rest_bar(settings: Settings) -> None:
    got = run(session_feed(settings), how="replaydata", timeframe=bt.TimeFrame.Minutes, compression=5).frame()
    finished = got[got["timestamp"].dt.minute % 5 == 0].drop_duplicates("timestamp", keep="last")
    finished = finished.assign(timestamp=finished["timestamp"] - pd.Timedelta(minutes=5))
    assert len(got) > len(finished)  # replay delivered the bars as they grew
    pd.testing.assert_frame_equal(regular_session(finished), regular_session(bars(settings, "5m")), check_names=False)


def test_index_bars_without_volume_load_with_zero_volume(settings: Settings) -> None:
    spx = fetch_data("I:SPX", DAY, DAY, "5m", settings=settings)
    assert spx["volume"].isna().all()
    got = run(feed(settings, dataname="I:SPX", interval="5m")).frame()
    assert len(got) == len(spx) and (got["volume"] == 0).all()
    np.testing.assert_array_equal(got["close"].to_numpy(), spx["close"].to_numpy())


def test_bars_with_missing_prices_are_dropped_not_crashing() -> None:
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-03-04 14:30", periods=4, freq="1min", tz="UTC"),
                          "symbol": "AAPL", "open": [1.0, np.nan, 3.0, 4.0], "high": [1.0, 2.0, 3.0, 4.0],
                          "low": [1.0, 2.0, 3.0, 4.0], "close": [1.0, 2.0, 3.0, 4.0],
                          "volume": pd.array([1, None, 3, None], dtype="Int64")})
    got = run(MassiveData(bars=frame)).frame()
    assert got["close"].tolist() == [1.0, 3.0, 4.0] and got["volume"].tolist() == [1.0, 3.0, 0.0]


def test_unsupported_bar_size_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="resampledata"):
        MassiveData(dataname="AAPL", timeframe=bt.TimeFrame.Minutes, compression=3, settings=settings)


def test_quote_feed_exposes_bid_ask_mid_spread_lines() -> None:
    frame = pd.DataFrame({"timestamp": pd.date_range("2024-03-04 14:30", periods=3, freq="1min", tz="UTC"),
                          "symbol": "AAPL", "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 5.0,
                          "bid": [10.4, np.nan, 10.0], "ask": [10.6, np.nan, 10.2]})
    got = run(MassiveQuoteData(bars=frame)).frame()
    np.testing.assert_allclose(got["mid"], [10.5, np.nan, 10.1])
    np.testing.assert_allclose(got["spread"], [0.2, np.nan, 0.2])
    assert np.isnan(got["vwap"]).all()  # no column: NaN, never a crash


def test_date_numbers_match_backtrader_date2num_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    ns = rng.integers(1_500_000_000_000_000, 2_000_000_000_000_000, 2_000) * 1000
    expected = [bt.date2num(pd.Timestamp(v, unit="ns").to_pydatetime()) for v in ns]
    assert bt_datenums(ns) == expected


def test_shared_store_is_one_per_configuration(settings: Settings, tmp_path) -> None:
    other = settings.with_overrides(datasets_dir=tmp_path / "elsewhere")
    assert MassiveStore.shared(settings) is MassiveStore.shared(settings)
    assert MassiveStore.shared(other) is not MassiveStore.shared(settings)
    data = MassiveStore.shared(settings).getdata(dataname="AAPL", interval="1d", fromdate=DAY, todate=DAY)
    assert data.store is MassiveStore.shared(settings) and not data.islive()
    assert "AAPL 1d via auto" in repr(data)
