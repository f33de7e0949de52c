"""The REST transport: Bearer auth, quota slots, retries and pagination over per-thread HTTP sessions.

Connections come from the runtime context (:meth:`massive_feeds.runtime.Runtime.http_session`): one
``requests.Session`` per thread, reused by every client of that thread, since requests does not promise
that a session is safe across threads (the fetch pool runs four).

Every attempt (first try, retry, next page, redirect hop) takes a quota slot first, so the plan is never
passed. 429, 5xx, dropped connections and malformed bodies are retried with exponential backoff and full
jitter, honouring ``Retry-After`` up to :data:`~massive_feeds.quota.MAX_SERVER_PAUSE` (a longer one is a
``RateLimitError`` at once); what still fails surfaces as a typed :mod:`massive_feeds.errors` exception
carrying status, request id and the server's message — never the key. Redirects are followed on our own
host only, at most :data:`MAX_REDIRECTS` of them.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urljoin, urlsplit

import orjson
import requests
import urllib3

from .._version import __version__
from ..config import Settings
from ..errors import (
    AuthenticationError,
    BadResponseError,
    HTTPError,
    MassiveError,
    NotEntitledError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ..inflate import GzipError, gunzip
from ..quota import MAX_SERVER_PAUSE, QuotaManager, get_quota
from ..runtime import Runtime, current

log = logging.getLogger(__name__)
T = TypeVar("T")

_STATUS_ERRORS: dict[int, type[HTTPError]] = {401: AuthenticationError, 403: NotEntitledError, 404: NotFoundError}
#: Redirects followed for one request, each counted against the quota like any call; more is a loop.
MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Delays grow ``base * 2**attempt`` up to ``cap`` with full jitter."""

    max_attempts: int = 6
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_SERVER_PAUSE)
        return random.uniform(0.5, 1.0) * min(self.cap, self.base * 2**attempt)


def _server_text(body: bytes) -> tuple[str | None, str | None]:
    """(message, request_id) from an error body, which may be JSON, HTML or empty."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return (text or None), None
    if not isinstance(data, dict):
        return None, None
    return data.get("error") or data.get("message"), data.get("request_id")


def _read_body(resp: requests.Response) -> bytes:
    """The whole decoded body, read in one go: a gzip body is inflated in one call by
    :func:`massive_feeds.inflate.gunzip` instead of urllib3's 10 kB steps. Reading to the end returns the
    connection to the pool."""
    if resp.headers.get("Content-Encoding", "").strip().lower() != "gzip":
        return resp.content
    try:
        raw = resp.raw.read(decode_content=False)
    except urllib3.exceptions.HTTPError as exc:  # broken off, timed out: as requests reports it
        raise requests.exceptions.ChunkedEncodingError(f"reading the body failed: {exc}") from exc
    try:
        return gunzip(raw)
    except GzipError as exc:
        raise requests.exceptions.ContentDecodingError(f"bad gzip body: {exc}") from exc


def _retry_after(resp: requests.Response) -> float | None:
    """The seconds a ``Retry-After`` header asks for (a number, or an HTTP date), or None when there is
    none. Anything else (``inf``, ``nan``, a negative number, text) is ignored with a warning."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        log.warning("ignoring the server's Retry-After %r on %s: not a number of seconds or a date",
                    value[:40], urlsplit(resp.url).path)
        return None
    return seconds


class RestClient:
    """A small, thread-safe client for Massive's REST API.

    Args:
        settings: configuration (the configured one when omitted), resolved by the runtime context: with
            no key configured the client talks to the built-in sandbox (see :mod:`massive_feeds.runtime`).
        api_key: overrides the configured key for this client.
        quota: the shared quota manager (the one for ``settings`` when omitted).
        retry: retry/backoff policy.
        timeout: (connect, read) seconds per request.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        quota: QuotaManager | None = None,
        retry: RetryPolicy = RetryPolicy(),
        timeout: tuple[float, float] = (10.0, 60.0),
    ) -> None:
        self._runtime: Runtime = current()
        self.settings = self._runtime.settings(settings, api_key=api_key)  # the keyless default applies here
        self._key = self.settings.require_api_key()
        self.base_url = self.settings.rest_url.rstrip("/")
        self.quota = quota or get_quota(self.settings)
        self.retry = retry
        self.timeout = timeout
        self._headers = {
            "Authorization": f"Bearer {self._key.reveal()}",
            "Accept-Encoding": "gzip",
            "User-Agent": f"massive-feeds/{__version__}",
        }

    @property
    def _session(self) -> requests.Session:
        """The calling thread's HTTP session (never shared across threads)."""
        return self._runtime.http_session()

    def __repr__(self) -> str:
        return f"RestClient(base_url={self.base_url!r}, plan={self.quota.plan.name!r})"

    def close(self) -> None:
        """Nothing to release: the per-thread sessions belong to the runtime (closed with it)."""

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- single requests ------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        """Absolute URL on our base. A ``next_url`` keeps its path and query but not its host, as
        the official client does (older servers sent malformed hosts)."""
        if path_or_url.startswith(("http://", "https://")):
            parts = urlsplit(path_or_url)
            path_or_url = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.base_url + path_or_url

    def request(self, path: str, params: dict[str, Any] | None = None,
                parse: Callable[[bytes], T] = orjson.loads) -> T:
        """GET ``path`` and return ``parse(body)``, with quota, retries and typed errors."""
        url = self._url(path)
        last: MassiveError | None = None
        for attempt in range(self.retry.max_attempts):
            if attempt:
                delay = self.retry.delay(attempt - 1, getattr(last, "retry_after", None))
                log.info("retrying %s in %.2fs after: %s", urlsplit(url).path, delay, last)
                time.sleep(delay)
            try:
                resp, body = self._get(url, params)
            except requests.RequestException as exc:
                last = ServerError(f"connection to {self.base_url} failed: {type(exc).__name__}")
                continue
            if resp.status_code == 200:
                try:
                    return parse(body)
                except (BadResponseError, orjson.JSONDecodeError, ValueError) as exc:
                    last = exc if isinstance(exc, BadResponseError) else BadResponseError(f"malformed JSON: {exc}")
                    continue
            last = self._error_for(resp, body)
            if isinstance(last, RateLimitError):
                self._pause(last)
                continue
            if resp.status_code < 500:
                raise last
        assert last is not None
        raise last

    def _get(self, url: str, params: dict[str, Any] | None) -> tuple[requests.Response, bytes]:
        """One GET and its body, following redirects on our own host only: each hop takes a quota slot, and
        after :data:`MAX_REDIRECTS` of them (a loop) or at a redirect elsewhere a :class:`BadResponseError`."""
        for _ in range(MAX_REDIRECTS + 1):
            self.quota.acquire_rest()
            resp = self._session.get(url, params=params, headers=self._headers, timeout=self.timeout,
                                     stream=True, allow_redirects=False)
            body = _read_body(resp)
            if resp.status_code not in _REDIRECTS:
                return resp, body
            url, params = self._redirect_target(resp), None
        raise BadResponseError(f"more than {MAX_REDIRECTS} redirects from {urlsplit(url).path}: refused (a loop?)",
                               status=resp.status_code)

    def _redirect_target(self, resp: requests.Response) -> str:
        """Where a redirect points, if that is our own base (same scheme, host and port): elsewhere the key
        would not go along and the answer would not be the service's."""
        path = urlsplit(resp.url).path
        location = resp.headers.get("Location")
        if not location:
            raise BadResponseError(f"HTTP {resp.status_code} without a Location on {path}", status=resp.status_code)
        target = urljoin(resp.url, location)
        there, ours = urlsplit(target), urlsplit(self.base_url)
        if (there.scheme, there.netloc) != (ours.scheme, ours.netloc):
            raise BadResponseError(f"{path} redirects to another host ({there.scheme}://{there.netloc}); refused: "
                                   f"only {ours.scheme}://{ours.netloc} is trusted", status=resp.status_code)
        return target

    def _pause(self, err: RateLimitError) -> None:
        """A 429: every process pauses for the server's ``Retry-After``; one longer than
        :data:`~massive_feeds.quota.MAX_SERVER_PAUSE` is not waited for (nor stored): it is raised now."""
        wait = err.retry_after
        if wait is not None and wait > MAX_SERVER_PAUSE:
            raise RateLimitError(f"{err.message}: the server asks for a pause of {wait:g} s, longer than the "
                                 f"{MAX_SERVER_PAUSE:g} s this library waits; try again later", status=err.status,
                                 request_id=err.request_id, server_message=err.server_message, retry_after=wait)
        self.quota.record_rate_limited(wait)

    def _error_for(self, resp: requests.Response, body: bytes) -> MassiveError:
        message, request_id = _server_text(body)
        status = resp.status_code
        path = urlsplit(resp.url).path
        if status == 429:
            return RateLimitError(f"rate limited on {path}", status=status, request_id=request_id,
                                  server_message=message, retry_after=_retry_after(resp))
        if status >= 500:
            return ServerError(f"server error on {path}", status=status, request_id=request_id, server_message=message)
        cls = _STATUS_ERRORS.get(status, HTTPError)
        what = {401: "authentication failed (check MASSIVE_API_KEY)", 403: "not entitled to this data on your plan",
                404: "not found"}.get(status, "request rejected")
        return cls(f"{what}: {path}", status=status, request_id=request_id, server_message=message)

    # --- pagination -----------------------------------------------------------------------------
    def paginate(self, path: str, params: dict[str, Any] | None,
                 parse: Callable[[bytes], T], next_url: Callable[[T], str | None]) -> Iterator[T]:
        """Yield parsed pages, following ``next_url`` until absent; a repeated ``next_url`` is an error.

        The loop check keys on path *and* query: the real aggs cursor is the same on every page
        (base64 of ``limit=5000&sort=asc``) while the position moves in the path's ``from``."""
        seen: set[str] = set()
        page = self.request(path, params, parse)
        yield page
        while (url := next_url(page)) is not None:
            parts = urlsplit(url)
            position = f"{parts.path}?{parts.query}"
            if position in seen:
                raise BadResponseError(f"pagination loop: the server repeated a cursor on {parts.path}")
            seen.add(position)
            page = self.request(url, None, parse)
            yield page

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request(path, params)

    def list_json(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every ``results`` row of a paginated v3 endpoint (tickers, splits, …)."""
        for page in self.paginate(path, params, orjson.loads, lambda p: p.get("next_url")):
            yield from page.get("results") or []
