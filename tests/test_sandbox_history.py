"""A synthetic market for any date: the default sandbox serves every day from 2003 to its clock over
REST and flat files, generated on first use, deterministic per (ticker, day), on the XNYS calendar,
with a bounded cache."""

from __future__ import annotations

import gzip
import io
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import boto3
import exchange_calendars
import numpy as np
import pandas as pd
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from massive_feeds.config import Settings
from massive_feeds.fetch import fetch_data, fetch_ohlcv_rest
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.dayfiles import day_file, day_table
from massive_feeds.sandbox.market import HISTORY_START, MarketGenerator
from massive_feeds.schema import NEW_YORK

CLOCK = datetime(2025, 6, 4, 15, 30, tzinfo=timezone.utc)  # a Wednesday
OHLCV = ["open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=True, s3=True, clock_start=CLOCK) as sandbox:  # no s3_days: the whole history
        yield sandbox


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


def s3(sb: Sandbox) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=sb.s3.endpoint, region_name="us-east-1", aws_access_key_id=sb.s3_access_key_id,
        aws_secret_access_key=sb.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def listed(sb: Sandbox, prefix: str) -> list[str]:
    pages = s3(sb).get_paginator("list_objects_v2").paginate(Bucket="flatfiles", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def xnys_sessions(first: str, last: str) -> list[date]:
    cal = exchange_calendars.get_calendar("XNYS", start="2000-01-01")
    return [d.date() for d in cal.sessions_in_range(first, last)]


def test_nothing_is_generated_at_start_and_a_month_listing_is_the_xnys_sessions(sb: Sandbox) -> None:
    assert sb.s3.days == (HISTORY_START, date(2025, 6, 3))
    got = listed(sb, "us_stocks_sip/minute_aggs_v1/2024/01/")
    want = xnys_sessions("2024-01-01", "2024-01-31")  # no New Year's Day, no Martin Luther King Day
    assert date(2024, 1, 15) not in want and len(want) == 21
    assert got == [f"us_stocks_sip/minute_aggs_v1/2024/01/{d.isoformat()}.csv.gz" for d in want]
    assert len(listed(sb, "global_crypto/day_aggs_v1/2024/02/")) == 29  # every day of a leap February


def test_a_2003_day_file_is_served_and_is_the_generators(sb: Sandbox) -> None:
    key = "us_stocks_sip/day_aggs_v1/2003/10/2003-10-07.csv.gz"
    body = s3(sb).get_object(Bucket="flatfiles", Key=key)["Body"].read()
    df = pd.read_csv(io.BytesIO(gzip.decompress(body)), dtype={"ticker": str})
    want = day_table(sb.market, "stocks", "day", date(2003, 10, 7)).to_pandas()
    pd.testing.assert_frame_equal(df, want, check_dtype=False)  # whole volumes read back as ints
    assert len(df) == 19 and df["window_start"].iloc[0] == pd.Timestamp("2003-10-07", tz=NEW_YORK).value


@pytest.mark.parametrize("key", [
    "us_stocks_sip/minute_aggs_v1/2003/09/2003-09-09.csv.gz",  # the day before the history starts
    "us_stocks_sip/minute_aggs_v1/2025/06/2025-06-04.csv.gz",  # the clock's day: published tomorrow
    "us_stocks_sip/minute_aggs_v1/2024/12/2024-12-25.csv.gz",  # Christmas
    "global_forex/trades_v1/2024/12/2024-12-24.csv.gz",        # forex has no trades
    "us_stocks_sip/minute_aggs_v1/2024/12/2024-12-24x.csv.gz",  # not a day file name
])
def test_days_and_datasets_the_service_has_not_are_missing(sb: Sandbox, key: str) -> None:
    with pytest.raises(ClientError) as err:
        s3(sb).head_object(Bucket="flatfiles", Key=key)
    assert err.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_the_day_before_the_clock_is_held(sb: Sandbox) -> None:
    head = s3(sb).head_object(Bucket="flatfiles", Key="us_stocks_sip/minute_aggs_v1/2025/06/2025-06-03.csv.gz")
    assert head["ContentLength"] > 10_000


def test_early_close_day_files_end_four_hours_after_the_13_00_close(sb: Sandbox) -> None:
    body = s3(sb).get_object(Bucket="flatfiles", Key="us_stocks_sip/minute_aggs_v1/2023/11/2023-11-24.csv.gz")
    starts = pd.to_datetime(pd.read_csv(io.BytesIO(gzip.decompress(body["Body"].read())))["window_start"],
                            utc=True).dt.tz_convert(NEW_YORK)
    assert starts.max() < pd.Timestamp("2023-11-24 17:00", tz=NEW_YORK)
    assert starts.max() >= pd.Timestamp("2023-11-24 16:00", tz=NEW_YORK)  # after-hours trading continues


def test_deleted_files_stay_missing(sb: Sandbox) -> None:
    key = "us_stocks_sip/day_aggs_v1/2010/03/2010-03-03.csv.gz"
    assert s3(sb).head_object(Bucket="flatfiles", Key=key)["ContentLength"] > 0
    sb.s3.delete(key)
    assert key not in listed(sb, "us_stocks_sip/day_aggs_v1/2010/03/")
    with pytest.raises(ClientError):
        s3(sb).head_object(Bucket="flatfiles", Key=key)


def test_generation_is_deterministic_per_ticker_and_day() -> None:
    day = date(2012, 5, 9)
    a, b = MarketGenerator(), MarketGenerator()
    b.ticks("AAPL", day - timedelta(days=1))  # a different history of calls changes nothing
    assert day_file(a, "stocks", "minute", day) == day_file(b, "stocks", "minute", day)
    assert day_file(a, "stocks", "trades", day) == day_file(b, "stocks", "trades", day)
    assert not np.array_equal(a.ticks("AAPL", day).price, a.ticks("AAPL", day + timedelta(days=1)).price)


def test_the_tick_cache_is_bounded() -> None:
    m = MarketGenerator()
    for i in range(400):
        m.ticks("MSFT", date(2010, 1, 1) + timedelta(days=i))
    assert m._ticks.cache_info().currsize == 256


def test_day_bars_over_long_ranges_equal_the_day_by_day_bars() -> None:
    m = MarketGenerator()
    days = [date(2024, 2, 26) + timedelta(days=i) for i in range(14)]  # across GOOGL's 4-for-1 on 03-06
    for adjusted in (False, True):
        one_by_one = [m.day_bar("GOOGL", d, adjusted) for d in days]
        many = m.day_bars("GOOGL", days[0], days[-1], adjusted)
        want = [b for b in one_by_one if b.size]
        assert many.size == len(want) == 10
        for field in ("t", "o", "h", "l", "c", "v", "vw", "n"):
            assert getattr(many, field).tolist() == [getattr(b, field)[0] for b in want], (adjusted, field)
    raw = m.day_bars("GOOGL", days[0], days[-1])
    adj = m.day_bars("GOOGL", days[0], days[-1], adjusted=True)
    assert (adj.c[:7] == raw.c[:7] * 0.25).all() and (adj.c[7:] == raw.c[7:]).all()


def test_rest_serves_january_2024_as_the_readme_asks(settings: Settings, sb: Sandbox) -> None:
    df = fetch_ohlcv_rest(["AAPL", "MSFT", "SPY"], "2024-01-01", "2024-01-31", "1d", settings=settings)
    days = xnys_sessions("2024-01-01", "2024-01-31")
    assert len(df) == 3 * len(days)
    aapl = df[df["symbol"] == "AAPL"]
    assert [t.date() for t in aapl["timestamp"].dt.tz_convert(NEW_YORK)] == days
    assert aapl["close"].tolist() == [float(sb.market.day_bar("AAPL", d, adjusted=True).c[0]) for d in days]


def test_rest_daily_bars_reach_back_to_2003(settings: Settings, sb: Sandbox) -> None:
    df = fetch_ohlcv_rest("KO", "2003-09-01", "2003-12-31", "1d", settings=settings)
    days = xnys_sessions("2003-09-10", "2003-12-31")  # the history starts on 2003-09-10
    assert [t.date() for t in df["timestamp"].dt.tz_convert(NEW_YORK)] == days


def test_flat_files_and_rest_agree_on_a_month_far_from_the_clock(settings: Settings) -> None:
    flat = fetch_data(["AAPL", "X:BTCUSD"], "2019-03-01", "2019-03-31", "1h", method="flat_file", settings=settings)
    rest = fetch_data(["AAPL", "X:BTCUSD"], "2019-03-01", "2019-03-31", "1h", method="rest", settings=settings)
    assert len(flat) > 500
    pd.testing.assert_frame_equal(flat[OHLCV].reset_index(drop=True), rest[OHLCV].reset_index(drop=True))


def test_generated_files_are_dropped_beyond_the_byte_budget_and_come_back_identical(sb: Sandbox) -> None:
    keys = [f"us_stocks_sip/minute_aggs_v1/2015/06/2015-06-{d:02d}.csv.gz" for d in (1, 2, 3, 4)]
    client = s3(sb)
    first = client.get_object(Bucket="flatfiles", Key=keys[0])
    body, etag = first["Body"].read(), first["ETag"]
    saved = sb.s3.max_generated_bytes
    sb.s3.max_generated_bytes = 2 * len(body) + 10  # room for about two minute files
    try:
        for key in keys[1:]:
            client.head_object(Bucket="flatfiles", Key=key)
        assert sum(sb.s3._generated.values()) <= sb.s3.max_generated_bytes
        stored = listed(sb, "us_stocks_sip/minute_aggs_v1/2015/")  # a year prefix generates nothing
        assert keys[0] not in stored and keys[-1] in stored  # the oldest was dropped, the newest kept
        again = client.get_object(Bucket="flatfiles", Key=keys[0], IfMatch=etag)  # regenerated on use
        assert again["ETag"] == etag and again["Body"].read() == body
    finally:
        sb.s3.max_generated_bytes = saved
