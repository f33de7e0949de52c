"""No credential in any log output, at any verbosity, dependencies' loggers included.

The CLI runs in a subprocess against a sandbox with distinctive keys; stdout and stderr must not hold
the API key, the S3 access key id or the S3 secret — nor a recognisable piece of them. At ``-vvv``
the dependencies' DEBUG loggers really run (the masked auth frame and SigV4 header show up), so the
test would see a leak if the filter let one through.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Iterator

import pytest

from massive_feeds import redact
from massive_feeds.config import Secret
from massive_feeds.sandbox import Sandbox

API_KEY = "h13sApiKey-7f3c9e1d5b"
S3_ID = "AKIAH13SEXAMPLE7Q2W"
S3_SECRET = "h13sS3Secret/9x8y7z+Qw"
DAY = date(2024, 3, 5)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(api_key=API_KEY, s3_access_key_id=S3_ID, s3_secret_access_key=S3_SECRET, rest=True,
                 websocket=True, s3=True, s3_days=(DAY, DAY), clock_speed=60) as sandbox:  # BTC quotes come quickly
        yield sandbox


def cli(sb: Sandbox, tmp_path: Path, *args: str) -> str:
    env = {**os.environ, **sb.env(), "MASSIVE_PLAN": "unlimited", "MASSIVE_DATASETS_DIR": str(tmp_path / "ds"),
           "MASSIVE_FEEDS_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "massive_feeds.cli", *args], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def assert_no_secret(output: str) -> None:
    for secret in (API_KEY, S3_ID, S3_SECRET):
        for piece in (secret, secret[:10], secret[-10:]):
            assert piece not in output, f"{piece!r} leaked:\n" + "\n".join(
                line for line in output.splitlines() if piece in line)


COMMANDS = {
    "stream": ("stream", "X:BTCUSD", "--count", "3"),  # crypto trades round the clock, whatever the sandbox time
    "fetch": ("fetch", "AAPL", "--start", "2024-03-04", "--end", "2024-03-05", "--interval", "1d",
              "--method", "rest"),
    "flat_file": ("fetch", "AAPL", "--start", "2024-03-05", "--end", "2024-03-05", "--interval", "1h",
                  "--method", "flat_file"),
}


@pytest.mark.parametrize(("verbosity", "command"), [
    ("-vv", "stream"), ("-vv", "fetch"), ("-vv", "flat_file"),  # what a user asking for debug output runs
    ("-vvv", "stream"), ("-vvv", "flat_file"),  # dependencies' DEBUG on: only the filter stands in the way
])
def test_cli_logs_no_credentials(sb: Sandbox, tmp_path: Path, command: str, verbosity: str) -> None:
    output = cli(sb, tmp_path, verbosity, *COMMANDS[command])
    assert "INFO massive_feeds" in output  # our verbose logging really ran
    assert_no_secret(output)
    if verbosity == "-vvv":  # the dependencies' DEBUG ran too, and was masked
        if command == "stream":
            assert '"params":"****"' in output and "websockets" in output
        if command == "flat_file":
            assert "Credential=****" in output and "botocore" in output
    else:  # -vv: the dependencies' DEBUG is capped
        assert "DEBUG websockets" not in output and "DEBUG botocore" not in output


def test_filter_masks_known_values_and_credential_shapes(caplog: pytest.LogCaptureFixture) -> None:
    Secret("h13s-registered-value-42")  # every Secret registers itself
    handler = logging.StreamHandler()
    redact.install([handler], dependency_debug=True)
    record = logging.LogRecord("websockets.client", logging.DEBUG, __file__, 1,
                               "> TEXT %r [%d bytes] and %s", ('{"action":"auth","params":"abc123XYZ"}', 40,
                                                               "h13s-registered-value-42"), None)
    assert handler.filters[0].filter(record)
    assert record.getMessage() == "> TEXT '{\"action\":\"auth\",\"params\":\"****\"}' [40 bytes] and ****"
    assert redact.redact("Authorization: Bearer tok3n, url=/v2/x?apiKey=k3y&limit=5") == \
        "Authorization: Bearer ****, url=/v2/x?apiKey=****&limit=5"
    assert redact.redact("'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA1/20240305/us-east-1/s3/aws4_request, "
                         "SignedHeaders=host, Signature=0a1b'") == \
        "'Authorization': b'AWS4-HMAC-SHA256 Credential=****, SignedHeaders=host, Signature=****'"
    # ordinary text is left alone
    assert redact.redact("subscribed to: T.AAPL; signature verification ok") == \
        "subscribed to: T.AAPL; signature verification ok"
