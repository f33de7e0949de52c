"""S3 transport for flat files: list day files with their size and ETag, download one to a path.

boto3 with SigV4, path-style addressing and region ``us-east-1`` against the configured endpoint and
bucket (``files.massive.com`` / ``flatfiles`` by default). S3 client errors become our own errors with
messages a user can act on; secrets never appear in them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator

from ..config import Settings
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    FlatFileError,
    MassiveError,
    NotEntitledError,
    ServerError,
)
from ..runtime import current
from .keys import day_of_key

log = logging.getLogger(__name__)

REGION = "us-east-1"
CHUNK = 1 << 20
#: S3 error codes that mean "these credentials are wrong", as opposed to "not allowed to read this".
AUTH_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed", "InvalidToken",
    "ExpiredToken", "TokenRefreshRequired", "InvalidSecurity", "MissingSecurityHeader",
})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CREDENTIALS_HINT = (
    "check MASSIVE_S3_ACCESS_KEY_ID and MASSIVE_S3_SECRET_ACCESS_KEY (dashboard: API Keys -> "
    "'Accessing Flat Files (S3)'; they are not the REST API key)"
)


@dataclass(frozen=True)
class RemoteFile:
    """A day file as listed in the bucket."""

    key: str
    size: int
    etag: str

    @property
    def day(self) -> date | None:
        return day_of_key(self.key)


class MissingObjectError(FlatFileError):
    """The object is gone (404 NoSuchKey) although it was listed: treated as a missing day."""


def _new_client(**kwargs: Any) -> Any:
    """An S3 client from the runtime context's one boto3 session: building a session loads botocore's
    service models (~0.2 s), and sessions are not thread-safe, hence its lock."""
    try:
        import boto3
    except ImportError:
        raise ConfigurationError(
            "Flat files need boto3: pip install 'massive-feeds[flatfiles]' (or use method='rest')"
        ) from None
    session, lock = current().shared("boto3-session", None, lambda: (_boto3_session(boto3), threading.Lock()))
    with lock:
        return session.client("s3", **kwargs)


#: Connections the process's shared transport keeps open: every query and ingest task of the process
#: draws from it at once (a continuous series reads its contracts side by side, 4 downloads each).
SHARED_POOL = 32


def shared_transport(settings: Settings) -> S3Transport:
    """The transport (boto3 client and its connection pool) of this process for ``settings``' endpoint,
    bucket and key, built on first use and reused by every query and ingest task after it: a client costs
    ~15 ms of CPU to build and a new one starts without an open connection. The runtime holds it and closes
    it with itself (per process id: a forked child builds its own)."""
    # both halves of the key: a client signs with the secret it was built with
    key_id, secret = settings.require_s3_credentials()
    ident = (os.getpid(), settings.s3_endpoint, settings.s3_bucket, key_id, secret)
    return current().shared("s3-transport", ident, lambda: S3Transport(settings, max_connections=SHARED_POOL))


def _boto3_session(boto3: Any) -> Any:
    """A boto3 session whose clients keep response timestamps as the strings they came as (as the AWS CLI
    does): nothing here reads ``LastModified``, and dateutil parsing it took ~1 ms per listed object (a
    year of day files lists ~250)."""
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return boto3.session.Session(botocore_session=core)


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth another attempt: the connection broke or stalled while the body was streaming."""
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    return (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ConnectionClosedError,
            EndpointConnectionError, ConnectionError)


class S3Transport:
    """One boto3 client (thread-safe) for the configured flat-file endpoint."""

    def __init__(self, settings: Settings, *, max_connections: int = 10, attempts: int = 3,
                 backoff: float = 0.2) -> None:
        settings = current().settings(settings, need=("rest", "s3"))  # starts the sandbox's S3 side on demand
        key_id, secret = settings.require_s3_credentials()
        self.endpoint = settings.s3_endpoint
        self.bucket = settings.s3_bucket
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._credentials = (key_id, secret)
        self._max_connections = max_connections
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Transport(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        from botocore.config import Config

        key_id, secret = self._credentials
        config = Config(
            signature_version="s3v4", region_name=REGION, s3={"addressing_style": "path"},
            retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=self._max_connections,
            # S3-compatible endpoints other than AWS may reject the newer default checksum headers.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        return _new_client(
            endpoint_url=self.endpoint, aws_access_key_id=key_id.reveal(),
            aws_secret_access_key=secret.reveal(), config=config,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- listing --------------------------------------------------------------------------------
    def list_files(self, prefix: str) -> list[RemoteFile]:
        """Every object under ``prefix`` with its size and ETag (quotes stripped)."""
        from botocore.exceptions import BotoCoreError, ClientError

        files: list[RemoteFile] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                files.extend(RemoteFile(o["Key"], int(o["Size"]), o["ETag"].strip('"'))
                             for o in page.get("Contents", []))
        except ClientError as exc:
            raise self.translate(exc, prefix, "list") from exc
        except BotoCoreError as exc:
            raise self._unreachable(exc, prefix) from exc
        return files

    # --- download -------------------------------------------------------------------------------
    def iter_object(self, remote: RemoteFile, on_bytes: Callable[[int], None] | None = None,
                    chunk: int = CHUNK) -> Iterator[bytes]:
        """``remote``'s bytes in order, as they arrive (for streaming into a decompressor).

        ``If-Match`` pins the ETag that was listed, so the bytes always belong to that ETag. A transfer
        that breaks off is resumed where it stopped (``Range: bytes=N-``, same ETag), up to ``attempts``
        requests in all, so every byte is received exactly once and ``on_bytes`` (called with each
        chunk's length) adds up to exactly what was transferred. The iterator ends only after exactly
        ``remote.size`` bytes.

        Raises :class:`MissingObjectError` when the object is gone, :class:`ServerError` when the
        transfer kept breaking off, the translated S3 error otherwise.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        transient = _transient_errors()
        offset = 0
        for attempt in range(1, self.attempts + 1):
            try:
                request = {"Bucket": self.bucket, "Key": remote.key, "IfMatch": f'"{remote.etag}"'}
                if offset:
                    request["Range"] = f"bytes={offset}-"
                response = self.client.get_object(**request)
                for data in response["Body"].iter_chunks(chunk):
                    offset += len(data)
                    if on_bytes:
                        on_bytes(len(data))
                    yield data
                if offset != remote.size:
                    raise FlatFileError(f"Download of {remote.key} ended after {offset:,} of {remote.size:,} bytes",
                                        key=remote.key)
                return
            except ClientError as exc:
                raise self.translate(exc, remote.key, "get") from exc
            except transient as exc:
                if attempt == self.attempts:
                    raise ServerError(
                        f"Download of flat file {remote.key} from {self.endpoint} kept failing "
                        f"({attempt} attempts): {exc}", key=remote.key,
                    ) from exc
                log.warning("download of %s broke off after %d bytes (%s); resuming", remote.key, offset, exc)
                time.sleep(self.backoff * 2 ** (attempt - 1))
            except BotoCoreError as exc:
                raise self._unreachable(exc, remote.key) from exc

    def download(self, remote: RemoteFile, dest: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        """Write ``remote``'s bytes to ``dest`` (overwritten); see :meth:`iter_object` (ETag pinned,
        broken transfers resumed, errors translated)."""
        with open(dest, "wb") as fh:
            for data in self.iter_object(remote, on_bytes):
                fh.write(data)

    # --- errors ---------------------------------------------------------------------------------
    def translate(self, exc: Any, key: str, action: str) -> MassiveError:
        """An S3 ``ClientError`` as one of our errors (``action``: ``list`` or ``get``)."""
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(err.get("Code", ""))
        status = meta.get("HTTPStatusCode")
        extra = {"status": status, "request_id": meta.get("RequestId") or None,
                 "server_message": err.get("Message") or None}
        if code in AUTH_CODES:
            return AuthenticationError(
                f"The flat-file endpoint {self.endpoint} rejected the S3 credentials ({code}): {CREDENTIALS_HINT}",
                **extra)
        if code in ("AccessDenied", "403", "Forbidden"):
            what = "list" if action == "list" else "download"
            return NotEntitledError(
                f"Not entitled to {what} flat file {key}: your plan does not include this dataset "
                f"(listing may work while downloads are refused). Upgrade the plan or use method='rest'.",
                **extra)
        if code in NOT_FOUND_CODES:
            return MissingObjectError(f"Flat file {key} does not exist", key=key, **extra)
        if code == "NoSuchBucket":
            return FlatFileError(f"Bucket {self.bucket!r} does not exist at {self.endpoint}; check MASSIVE_S3_BUCKET",
                                 key=key, **extra)
        if code in ("PreconditionFailed", "412"):
            return FlatFileError(f"Flat file {key} was republished while downloading; run the query again",
                                 key=key, **extra)
        if isinstance(status, int) and status >= 500:
            return ServerError(f"The flat-file endpoint failed on {key} ({code})", **extra)
        return FlatFileError(f"S3 error on {key}: {code}", key=key, **extra)

    def _unreachable(self, exc: Exception, key: str) -> MassiveError:
        return ServerError(f"Cannot reach the flat-file endpoint {self.endpoint} ({type(exc).__name__}: {exc})",
                           key=key)
