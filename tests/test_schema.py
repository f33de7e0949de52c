"""Intervals, tickers and date ranges: the validation every path shares."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from massive_feeds.errors import InvalidInputError
from massive_feeds.schema import INTERVALS, finalize_bars, normalize_symbol, parse_date_range, parse_interval


@pytest.mark.parametrize(
    "name, multiplier, timespan",
    [("1m", 1, "minute"), ("5m", 5, "minute"), ("15m", 15, "minute"), ("30m", 30, "minute"),
     ("1h", 1, "hour"), ("4h", 4, "hour"), ("1d", 1, "day"), ("1w", 1, "week"), ("1M", 1, "month")],
)
def test_interval_maps_to_multiplier_and_timespan(name: str, multiplier: int, timespan: str) -> None:
    iv = parse_interval(name)
    assert (iv.multiplier, iv.timespan) == (multiplier, timespan)


@pytest.mark.parametrize("bad", ["7m", "2d", "", "1y", "minutely"])
def test_bad_interval_is_a_value_error_listing_valid_ones(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_interval(bad)
    assert isinstance(err.value, InvalidInputError)
    assert all(name in str(err.value) for name in INTERVALS)


@pytest.mark.parametrize(
    "given, expected",
    [("AAPL", "AAPL"), ("aapl", "AAPL"), ("BRK.B", "BRK.B"), ("BTC-USD", "X:BTCUSD"), ("X:BTC-USD", "X:BTCUSD"),
     ("btcusd", "X:BTCUSD"), ("ETH/USDT", "X:ETHUSDT"), ("EURUSD", "C:EURUSD"), ("EUR/USD", "C:EURUSD"),
     ("C:EURUSD", "C:EURUSD"), ("^SPX", "I:SPX"), ("I:NDX", "I:NDX"),
     ("SPY251219C00650000", "O:SPY251219C00650000"), ("O:SPY251219C00650000", "O:SPY251219C00650000")],
)
def test_symbols_normalise_to_massive_tickers(given: str, expected: str) -> None:
    assert normalize_symbol(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", "AA PL", "../etc", "O:NOTANOPTION", "$$$", None, 42])
def test_bad_symbols_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        normalize_symbol(bad)  # type: ignore[arg-type]


def test_date_only_range_covers_whole_new_york_days() -> None:
    r = parse_date_range("2024-03-05", "2024-03-05")
    assert r.start == pd.Timestamp("2024-03-05 05:00", tz="UTC")
    assert r.end == pd.Timestamp("2024-03-06 05:00", tz="UTC")
    assert r.days == 1


def test_range_across_dst_change_uses_local_midnights() -> None:
    r = parse_date_range(date(2024, 3, 8), date(2024, 3, 11))
    assert r.start == pd.Timestamp("2024-03-08 05:00", tz="UTC")  # EST
    assert r.end == pd.Timestamp("2024-03-12 04:00", tz="UTC")  # EDT


def test_naive_datetimes_are_utc() -> None:
    r = parse_date_range(datetime(2024, 3, 5, 14, 30), "2024-03-05T15:00")
    assert r.start == pd.Timestamp("2024-03-05 14:30", tz="UTC")
    assert r.rest_bounds(intraday=True)[0] == str(int(pd.Timestamp("2024-03-05 14:30", tz="UTC").value // 1_000_000))


@pytest.mark.parametrize("start, end", [("2024-03-05", "2024-03-01"), ("not-a-date", "2024-03-01"),
                                        ("2024-13-01", "2024-12-01"), (3.5, "2024-01-01")])
def test_bad_date_ranges_are_rejected(start: object, end: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_date_range(start, end)  # type: ignore[arg-type]


def test_finalize_bars_sorts_dedupes_and_fixes_dtypes() -> None:
    df = pd.DataFrame({
        "timestamp": pd.to_datetime([2000, 1000, 2000], unit="ms", utc=True), "symbol": ["B", "B", "B"],
        "open": [1, 2, 3], "high": [1, 2, 3], "low": [1, 2, 3], "close": [1, 2, 3], "volume": [1, 2, 3],
        "transactions": [None, 2, 3],
    })
    out = finalize_bars(df)
    assert list(out["open"]) == [2.0, 3.0]  # sorted, and the later duplicate wins
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["transactions"].dtype == "int64" and out["vwap"].isna().all()
