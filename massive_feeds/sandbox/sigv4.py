"""AWS Signature Version 4 verification for the sandbox S3 endpoint (header-signed requests).

moto accepts any credentials, so the sandbox checks them itself, as the real flat-file endpoint
does: an unknown access key id is ``InvalidAccessKeyId``, a wrong secret (or a tampered request)
``SignatureDoesNotMatch``, and a request without a usable signature ``AccessDenied``. This is an
independent implementation of the published algorithm, not botocore's signer, so a signing bug on
the client side would show up here.

This module is sandbox-only. The library never imports it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
UNSIGNED = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was refused: the S3 error ``code`` and its ``message``; ``access_key_id`` when given."""

    code: str
    message: str
    access_key_id: str = ""


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers, taken from the request as received."""

    method: str
    raw_path: str  # path as sent, still percent-encoded
    raw_query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), day)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def canonical_query(raw_query: str) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(req: SignedRequest, signed_headers: list[str], payload_hash: str) -> str:
    lines = [" ".join(req.headers.get(h, "").split()) for h in signed_headers]
    headers = "".join(f"{h}:{v}\n" for h, v in zip(signed_headers, lines, strict=True))
    return "\n".join([req.method, req.raw_path or "/", canonical_query(req.raw_query), headers,
                      ";".join(signed_headers), payload_hash])


def verify(req: SignedRequest, secrets: Mapping[str, str]) -> AuthFailure | None:
    """``None`` when ``req`` carries a valid SigV4 signature by one of ``secrets`` (access key id →
    secret), else the failure to report."""
    auth = req.headers.get("authorization", "")
    m = _AUTH_RE.match(auth)
    if not m:
        return AuthFailure("AccessDenied", "Access Denied: requests must be signed with AWS Signature Version 4.")
    parts = m["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return AuthFailure("AuthorizationHeaderMalformed", "The authorization header is malformed.")
    access_key, day, region, service, _ = parts
    secret = secrets.get(access_key)
    if secret is None:
        return AuthFailure("InvalidAccessKeyId",
                           "The AWS Access Key Id you provided does not exist in our records.", access_key)
    amz_date = req.headers.get("x-amz-date", "")
    payload_hash = req.headers.get("x-amz-content-sha256", "")
    signed = m["signed"].split(";")
    if not amz_date.startswith(day) or "host" not in signed or not payload_hash:
        return AuthFailure("AccessDenied", "Access Denied: the request's date, host or payload hash is not signed.")
    if payload_hash not in UNSIGNED and hashlib.sha256(req.body).hexdigest() != payload_hash:
        return AuthFailure("XAmzContentSHA256Mismatch",
                           "The provided 'x-amz-content-sha256' header does not match what was computed.")
    creq = canonical_request(req, signed, payload_hash)
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, day, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["sig"]):
        return AuthFailure("SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature you provided. "
                           "Check your key and signing method.", access_key)
    return None
