"""The sandbox's S3 endpoint, spoken to with plain boto3 (and raw HTTP) over real sockets."""

from __future__ import annotations

import gzip
import io
import urllib.error
import urllib.request
from datetime import date
from typing import Any, Iterator

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from massive_feeds.sandbox import Sandbox

FIRST, LAST = date(2024, 1, 25), date(2024, 2, 6)  # Thu .. Tue: two weekends and a month boundary


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(rest=False, s3=True, s3_days=(FIRST, LAST)) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _reset_s3(sb: Sandbox) -> Iterator[None]:
    yield
    sb.s3.denied_prefixes.clear()
    sb.s3.cut_next_downloads(0)
    sb.not_entitled.clear()


SESSION = boto3.session.Session()  # one session: building one loads botocore's models each time


def s3_client(sb: Sandbox, key_id: str | None = None, secret: str | None = None) -> Any:
    return SESSION.client(
        "s3", endpoint_url=sb.s3.endpoint, region_name="us-east-1",
        aws_access_key_id=key_id or sb.s3_access_key_id, aws_secret_access_key=secret or sb.s3_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def keys(sb: Sandbox, prefix: str) -> list[str]:
    pages = s3_client(sb).get_paginator("list_objects_v2").paginate(Bucket="flatfiles", Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def read_csv(sb: Sandbox, key: str) -> pd.DataFrame:
    body = s3_client(sb).get_object(Bucket="flatfiles", Key=key)["Body"].read()
    return pd.read_csv(io.BytesIO(gzip.decompress(body)), dtype={"ticker": str})


def test_stock_minute_files_exist_only_for_weekdays_in_the_real_key_layout(sb: Sandbox) -> None:
    listed = keys(sb, "us_stocks_sip/minute_aggs_v1/2024/01/")
    days = ["25", "26", "29", "30", "31"]
    assert listed == [f"us_stocks_sip/minute_aggs_v1/2024/01/2024-01-{d}.csv.gz" for d in days]


def test_crypto_day_files_exist_every_calendar_day(sb: Sandbox) -> None:
    listed = keys(sb, "global_crypto/day_aggs_v1/")
    assert len(listed) == (LAST - FIRST).days + 1
    assert "global_crypto/day_aggs_v1/2024/01/2024-01-27.csv.gz" in listed  # a Saturday


@pytest.mark.parametrize("prefix", ["us_stocks_sip", "us_options_opra", "us_indices", "global_forex", "global_crypto"])
@pytest.mark.parametrize("dataset", ["minute_aggs_v1", "day_aggs_v1"])
def test_every_dataset_prefix_is_published(sb: Sandbox, prefix: str, dataset: str) -> None:
    assert f"{prefix}/{dataset}/2024/02/2024-02-05.csv.gz" in keys(sb, f"{prefix}/{dataset}/2024/02/")


def test_aggregate_files_have_the_documented_header_and_nanosecond_starts(sb: Sandbox) -> None:
    df = read_csv(sb, "us_stocks_sip/minute_aggs_v1/2024/01/2024-01-26.csv.gz")
    assert list(df.columns) == ["ticker", "volume", "open", "close", "high", "low", "window_start", "transactions"]
    assert df["window_start"].min() >= pd.Timestamp("2024-01-26 09:00", tz="UTC").value  # 04:00 New York, in ns


def test_index_files_have_no_volume_or_transactions(sb: Sandbox) -> None:
    df = read_csv(sb, "us_indices/day_aggs_v1/2024/01/2024-01-26.csv.gz")
    assert list(df.columns) == ["ticker", "open", "close", "high", "low", "window_start"]


def test_day_files_start_at_midnight_new_york(sb: Sandbox) -> None:
    df = read_csv(sb, "us_stocks_sip/day_aggs_v1/2024/01/2024-01-26.csv.gz")
    assert set(df["window_start"]) == {pd.Timestamp("2024-01-26", tz="America/New_York").value}


def test_crypto_rows_use_the_dash_ticker_form(sb: Sandbox) -> None:
    df = read_csv(sb, "global_crypto/day_aggs_v1/2024/01/2024-01-27.csv.gz")
    assert "X:BTC-USD" in set(df["ticker"])


def test_file_rows_equal_the_market_generator(sb: Sandbox) -> None:
    df = read_csv(sb, "us_stocks_sip/minute_aggs_v1/2024/01/2024-01-26.csv.gz")
    aapl = df[df["ticker"] == "AAPL"]
    bars = sb.market.minute_bars("AAPL", date(2024, 1, 26))
    assert np.array_equal(aapl["window_start"].to_numpy(), bars.t * 1_000_000)
    for col, field in [("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v")]:
        assert np.array_equal(aapl[col].to_numpy(), getattr(bars, field)), col
    assert np.array_equal(aapl["transactions"].to_numpy(), bars.n)


def test_unknown_access_key_is_invalid_access_key_id(sb: Sandbox) -> None:
    with pytest.raises(ClientError) as err:
        s3_client(sb, key_id="nobody").list_objects_v2(Bucket="flatfiles", Prefix="us_")
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_wrong_secret_is_signature_does_not_match(sb: Sandbox) -> None:
    with pytest.raises(ClientError) as err:
        s3_client(sb, secret="wrong-secret").list_objects_v2(Bucket="flatfiles", Prefix="us_")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_unsigned_request_is_access_denied(sb: Sandbox) -> None:
    url = f"{sb.s3.endpoint}/flatfiles/us_stocks_sip/day_aggs_v1/2024/01/2024-01-26.csv.gz"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 403 and b"<Code>AccessDenied</Code>" in err.value.read()


def test_not_entitled_prefix_lists_but_refuses_downloads(sb: Sandbox) -> None:
    sb.s3.deny("us_options_opra/")
    key = "us_options_opra/day_aggs_v1/2024/01/2024-01-26.csv.gz"
    assert key in keys(sb, "us_options_opra/day_aggs_v1/2024/01/")
    with pytest.raises(ClientError) as err:
        s3_client(sb).get_object(Bucket="flatfiles", Key=key)
    assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_not_entitled_asset_class_of_the_sandbox_applies_to_files(sb: Sandbox) -> None:
    sb.not_entitled.add("crypto")
    with pytest.raises(ClientError) as err:
        s3_client(sb).head_object(Bucket="flatfiles", Key="global_crypto/day_aggs_v1/2024/01/2024-01-27.csv.gz")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_bucket_is_read_only(sb: Sandbox) -> None:
    with pytest.raises(ClientError) as err:
        s3_client(sb).put_object(Bucket="flatfiles", Key="us_stocks_sip/x.csv.gz", Body=b"x")
    assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_republish_gives_a_new_etag_for_the_same_rows(sb: Sandbox) -> None:
    key = "global_forex/day_aggs_v1/2024/01/2024-01-29.csv.gz"
    before, rows = sb.s3.etag(key), read_csv(sb, key)
    assert sb.s3.republish(key) != before
    pd.testing.assert_frame_equal(read_csv(sb, key), rows)


def test_cut_download_breaks_the_transfer(sb: Sandbox) -> None:
    sb.s3.cut_next_downloads(1)
    key = "us_stocks_sip/minute_aggs_v1/2024/01/2024-01-26.csv.gz"
    response = s3_client(sb).get_object(Bucket="flatfiles", Key=key)
    with pytest.raises(Exception, match="IncompleteRead|Connection broken"):
        response["Body"].read()


def test_request_log_counts_object_gets(sb: Sandbox) -> None:
    sb.s3.clear_log()
    s3_client(sb).get_object(Bucket="flatfiles", Key="us_indices/day_aggs_v1/2024/01/2024-01-26.csv.gz")["Body"].read()
    assert sb.s3.count("GET", "us_indices/") == 1


def test_two_sandboxes_in_one_process_have_separate_buckets(sb: Sandbox) -> None:
    with Sandbox(rest=False, s3=True, s3_days=(date(2024, 3, 4), date(2024, 3, 4))) as other:
        assert keys(other, "us_stocks_sip/day_aggs_v1/") == ["us_stocks_sip/day_aggs_v1/2024/03/2024-03-04.csv.gz"]
    assert len(keys(sb, "us_stocks_sip/day_aggs_v1/")) == 9
