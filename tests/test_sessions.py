"""``session="extended"|"regular"`` on every fetch path, from the XNYS calendar: across the DST switch
(Fri 2024-11-01 EDT → Mon 2024-11-04 EST), on the early close of 2024-11-29 (13:00) and around the
Thanksgiving holiday (2024-11-28); REST, flat files and auto agree."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds.config import Settings
from massive_feeds.errors import InvalidInputError
from massive_feeds.fetch import fetch_data, fetch_intraday_data, fetch_ohlcv_rest
from massive_feeds.flatfiles import download_flat_file
from massive_feeds.sandbox import Sandbox
from massive_feeds.sessions import regular_session_mask, session_schedule, to_regular_session, validate_session

OHLCV = ["timestamp", "symbol", "open", "high", "low", "close", "volume", "transactions"]
DST = ("2024-11-01", "2024-11-04")  # clocks go back on Sunday 2024-11-03
NY = "America/New_York"


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(date(2024, 10, 31), date(2024, 11, 29))) as sandbox:
        yield sandbox


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", plan="unlimited")


def local_times(df: pd.DataFrame) -> pd.DataFrame:
    local = df["timestamp"].dt.tz_convert(NY)
    return pd.DataFrame({"day": local.dt.date, "minute": local.dt.hour * 60 + local.dt.minute})


# --- validation and the calendar ------------------------------------------------------------------
def test_unknown_session_is_an_invalid_input_error() -> None:
    with pytest.raises(InvalidInputError, match="'extended'.*'regular'"):
        validate_session("premarket")


def test_bad_session_fails_before_any_request(sb: Sandbox, settings: Settings) -> None:
    before = sb.rest.count("/v2/aggs")
    with pytest.raises(InvalidInputError):
        fetch_data("AAPL", *DST, "1m", settings=settings, session="Regular")
    assert sb.rest.count("/v2/aggs") == before


def test_calendar_knows_holidays_and_early_closes() -> None:
    sched = session_schedule(date(2024, 7, 2), date(2024, 7, 5))
    assert list(sched.index) == [date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5)]  # July 4th closed
    assert sched["early_close"].tolist() == [False, True, False]
    assert sched.loc[date(2024, 7, 3), "close"].tz_convert(NY).hour == 13


def test_dates_outside_the_calendar_are_refused_for_regular_sessions() -> None:
    ts = np.array([pd.Timestamp("1985-06-03 15:00", tz="UTC").value])
    with pytest.raises(InvalidInputError, match="outside the XNYS calendar"):
        regular_session_mask(np.array(["AAPL"]), ts)


# --- what regular keeps ----------------------------------------------------------------------------
def test_regular_minutes_are_0930_to_1600_new_york_on_both_sides_of_the_dst_switch(settings: Settings) -> None:
    df = fetch_ohlcv_rest("AAPL", *DST, "1m", settings=settings, session="regular")
    per_day = local_times(df).groupby("day")["minute"].agg(["min", "max"])
    assert per_day.index.tolist() == [date(2024, 11, 1), date(2024, 11, 4)]
    assert per_day["min"].tolist() == [570, 570] and per_day["max"].tolist() == [959, 959]
    utc_open = df.groupby(local_times(df)["day"])["timestamp"].min().dt.hour.tolist()
    assert utc_open == [13, 14]  # 09:30 is 13:30 UTC in EDT, 14:30 UTC in EST


def test_extended_keeps_pre_market_and_after_hours(settings: Settings) -> None:
    df = fetch_ohlcv_rest("AAPL", *DST, "1m", settings=settings)
    minutes = local_times(df)["minute"]
    assert minutes.min() < 570 and minutes.max() >= 960 and df.attrs["session"] == "extended"


def test_early_close_day_ends_at_1300(settings: Settings) -> None:
    regular = fetch_ohlcv_rest("AAPL", "2024-11-29", "2024-11-29", "1m", settings=settings, session="regular")
    extended = fetch_ohlcv_rest("AAPL", "2024-11-29", "2024-11-29", "1m", settings=settings)
    assert local_times(regular)["minute"].max() == 12 * 60 + 59
    assert local_times(extended)["minute"].max() > 13 * 60  # after-hours exist, so the cut is real


def test_no_stock_bars_on_an_exchange_holiday(settings: Settings) -> None:
    df = fetch_ohlcv_rest(["AAPL", "X:BTCUSD"], "2024-11-28", "2024-11-28", "1d", settings=settings)
    assert df["symbol"].tolist() == ["X:BTCUSD"]


def test_holiday_has_no_flat_file(settings: Settings) -> None:
    df = download_flat_file("AAPL", "2024-11-27", "2024-11-29", "1d", settings=settings)
    assert df.attrs["closed_days"] == ["2024-11-28"] and len(df) == 2
    assert df.attrs["missing_days"] == []  # a holiday is not a missing day (before: it was listed)


def test_crypto_and_forex_have_no_session_to_cut(settings: Settings) -> None:
    symbols = ["X:BTCUSD", "C:EURUSD"]
    regular = fetch_ohlcv_rest(symbols, *DST, "1h", settings=settings, session="regular")
    extended = fetch_ohlcv_rest(symbols, *DST, "1h", settings=settings)
    pd.testing.assert_frame_equal(regular[OHLCV], extended[OHLCV])


def test_regular_hour_bars_hold_only_regular_minutes(settings: Settings) -> None:
    hours = fetch_ohlcv_rest("MSFT", "2024-11-04", "2024-11-04", "1h", settings=settings, session="regular")
    minutes = fetch_ohlcv_rest("MSFT", "2024-11-04", "2024-11-04", "1m", settings=settings, session="regular")
    first = hours.iloc[0]  # the 14:00 UTC bucket: 09:00-10:00 New York, of which only 09:30-10:00 counts
    inside = minutes[minutes["timestamp"] < pd.Timestamp("2024-11-04 15:00", tz="UTC")]
    assert first["timestamp"] == pd.Timestamp("2024-11-04 14:00", tz="UTC")
    assert (first["open"], first["volume"]) == (inside["open"].iloc[0], inside["volume"].sum())
    assert hours["volume"].sum() == minutes["volume"].sum()


def test_regular_day_bar_is_built_from_the_session_and_carries_the_session_date(settings: Settings) -> None:
    day = fetch_ohlcv_rest("AAPL", "2024-11-29", "2024-11-29", "1d", settings=settings, session="regular").iloc[0]
    minutes = fetch_ohlcv_rest("AAPL", "2024-11-29", "2024-11-29", "1m", settings=settings, session="regular")
    extended = fetch_ohlcv_rest("AAPL", "2024-11-29", "2024-11-29", "1d", settings=settings).iloc[0]
    assert day["timestamp"] == pd.Timestamp("2024-11-29", tz=NY)
    assert (day["open"], day["close"]) == (minutes["open"].iloc[0], minutes["close"].iloc[-1])
    assert day["high"] == minutes["high"].max() and day["volume"] == minutes["volume"].sum()
    assert day["volume"] < extended["volume"]


def test_to_regular_session_matches_the_fetch_paths(settings: Settings) -> None:
    minutes = fetch_ohlcv_rest("NVDA", *DST, "1m", settings=settings)
    fetched = fetch_ohlcv_rest("NVDA", *DST, "15m", settings=settings, session="regular")
    pd.testing.assert_frame_equal(to_regular_session(minutes, "15m")[OHLCV], fetched[OHLCV])


# --- every path agrees ------------------------------------------------------------------------------
@pytest.mark.parametrize("interval", ["1m", "30m", "1d"])
@pytest.mark.parametrize("days", [("2024-10-31", "2024-11-08"), ("2024-11-20", "2024-11-29")],
                         ids=["dst-switch", "thanksgiving"])  # > 7 days: auto chooses flat files
def test_rest_flat_files_and_auto_agree_on_the_regular_session(settings: Settings, interval: str,
                                                               days: tuple[str, str]) -> None:
    symbols = ["AAPL", "I:SPX", "X:BTCUSD"]
    rest = fetch_ohlcv_rest(symbols, *days, interval, settings=settings, session="regular")
    flat = download_flat_file(symbols, *days, interval, settings=settings, session="regular")
    auto = fetch_data(symbols, *days, interval, settings=settings, session="regular", method="auto")
    assert len(rest) > 0 and flat.attrs["session"] == "regular" and auto.attrs["method"] == "flat_file"
    pd.testing.assert_frame_equal(flat[OHLCV], rest[OHLCV])
    pd.testing.assert_frame_equal(auto[OHLCV], rest[OHLCV])


def test_fetch_intraday_data_passes_the_session_on(settings: Settings) -> None:
    df = fetch_intraday_data("AAPL", "2024-11-29", "2024-11-29", "5m", settings=settings, session="regular")
    assert df.attrs["session"] == "regular" and local_times(df)["minute"].max() == 12 * 60 + 55
