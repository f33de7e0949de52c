"""``BarQuery``: one validated query, built once from user input and carried by every back end."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from massive_feeds.config import Settings
from massive_feeds.errors import InvalidInputError
from massive_feeds.fetch import fetch_bars, fetch_data
from massive_feeds.sandbox import Sandbox
from massive_feeds.schema import BarQuery, DateRange, Ticker, parse_interval
from massive_feeds.tickschema import TickQuery


def test_build_validates_and_normalises_once() -> None:
    q = BarQuery.build(["aapl", "BTC-USD"], "2024-03-04", "2024-03-05", "5m", session="regular", adjusted=False)
    assert q.tickers == ("AAPL", "X:BTCUSD")
    assert q.interval == parse_interval("5m")
    assert q.range.start == pd.Timestamp("2024-03-04", tz="America/New_York")  # whole New York days
    assert q.range.end == pd.Timestamp("2024-03-06", tz="America/New_York")
    assert (q.session, q.adjusted) == ("regular", False)
    assert repr(q) == "BarQuery(AAPL,X:BTCUSD 5m 2024-03-04..2024-03-05, session=regular, adjusted=False)"


@pytest.mark.parametrize("kwargs, message", [
    ({"interval": "7m"}, "interval"),
    ({"session": "overnight"}, "session"),
    ({"start": "2024-03-05", "end": "2024-03-04"}, "before start"),
    ({"symbols": ""}, "symbol"),
])
def test_bad_input_is_a_typed_error_naming_it(kwargs: dict, message: str) -> None:
    args = {"symbols": "AAPL", "start": "2024-03-04", "end": "2024-03-05", "interval": "1h", **kwargs}
    session = args.pop("session", "extended")
    with pytest.raises(InvalidInputError, match=message):
        BarQuery.build(args["symbols"], args["start"], args["end"], args["interval"], session=session)


def test_a_query_is_frozen_and_replace_keeps_the_rest() -> None:
    q = BarQuery.build("AAPL", "2024-03-04", "2024-03-04", "1d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.adjusted = False  # type: ignore[misc]
    minutes = q.replace(interval=parse_interval("1m"))
    assert (minutes.interval.name, minutes.tickers, minutes.range) == ("1m", q.tickers, q.range)
    assert q.interval.name == "1d"


def test_tickers_are_parsed_once_into_typed_tickers_with_their_asset_class() -> None:
    q = BarQuery.build("aapl, BTC-USD, ^SPX, EUR/USD, SPY251219C00650000, aapl", "2024-03-04", "2024-03-04")
    assert q.parsed == (Ticker("AAPL", "stocks"), Ticker("X:BTCUSD", "crypto"), Ticker("I:SPX", "indices"),
                        Ticker("C:EURUSD", "forex"), Ticker("O:SPY251219C00650000", "options"))
    assert [t.has_sessions for t in q.parsed] == [True, False, True, False, True]
    assert q.replace(tickers="msft").parsed == (Ticker("MSFT", "stocks"),)
    ticks = TickQuery.build(["eur/usd"], "2024-03-04T15:00", "2024-03-04T15:01", "quotes")
    assert (ticks.parsed, ticks.kinds, str(ticks.parsed[0])) == ((Ticker("C:EURUSD", "forex"),), ("quotes",), "C:EURUSD")
    # the range is the user's, end exclusive one nanosecond after the inclusive datetime given: carried as is
    assert ticks.range.end == pd.Timestamp("2024-03-04T15:01", tz="UTC") + pd.Timedelta(1, "ns")


# --- every back end takes the query as it is -------------------------------------------------------------
@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, s3_days=(date(2024, 3, 4), date(2024, 3, 5))) as sandbox:
        yield sandbox


@pytest.fixture
def s3_settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", plan="unlimited")


def _exact_window() -> BarQuery:
    """14:30 to 14:35 UTC, end exclusive: a range no user string gives (a datetime ``end`` is inclusive), so a
    back end that turned the query back into strings and parsed them again would include the 14:35 bar."""
    q = BarQuery.build("AAPL", "2024-03-04", "2024-03-04", "1m", adjusted=False)
    start, end = pd.Timestamp("2024-03-04 14:30", tz="UTC"), pd.Timestamp("2024-03-04 14:35", tz="UTC")
    return q.replace(range=DateRange(start, end, q.range.first_day, q.range.last_day, False, False))


@pytest.mark.parametrize("method", ["rest", "flat_file"])
def test_back_ends_serve_the_query_range_exactly(s3_settings: Settings, method: str) -> None:
    df = fetch_bars(_exact_window(), method, settings=s3_settings)  # type: ignore[arg-type]
    assert df.attrs["method"] == method
    assert df["timestamp"].tolist() == list(pd.date_range("2024-03-04 14:30", periods=5, freq="1min", tz="UTC"))


def test_fetch_data_is_fetch_bars_of_the_built_query(s3_settings: Settings) -> None:
    args = (["AAPL", "MSFT"], "2024-03-04", "2024-03-05", "15m")
    via_data = fetch_data(*args, method="rest", session="regular", settings=s3_settings)
    query = BarQuery.build(*args, session="regular")
    via_query = fetch_bars(query, "rest", settings=s3_settings)
    pd.testing.assert_frame_equal(via_data, via_query)
    assert len(via_data) == 2 * 2 * 26  # two symbols, two regular sessions of 26 quarter hours
