"""``BarQuery``: one validated query, built once from user input and carried by every back end."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from massive_feeds.errors import InvalidInputError
from massive_feeds.schema import BarQuery, parse_interval


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
