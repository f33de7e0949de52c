"""The exception tree: every error this library raises on purpose derives from :class:`MassiveError`.

Each error carries what a user needs to act on it (HTTP status, request id, the server's own message,
the file or symbol involved, the time a quota resets) and never an API key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class MassiveError(Exception):
    """Root of every error raised by massive_feeds.

    Attributes:
        status: HTTP status (or ``None`` when no HTTP exchange was involved).
        request_id: the server's ``request_id`` when it sent one.
        server_message: the ``error``/``message`` text from the server's body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        server_message: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.server_message = server_message
        self.context = context

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.server_message and self.server_message not in self.message:
            parts.append(f"server said: {self.server_message}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " | ".join(parts)


# --- configuration and input -------------------------------------------------------------------
class ConfigurationError(MassiveError):
    """Settings are missing or inconsistent."""


class InvalidSettingError(ConfigurationError):
    """A setting has a value that cannot work (a plan limit <= 0, an unknown plan, a home or cache folder that
    cannot be written). The CLI treats it as bad input (exit 2)."""


class MissingCredentialsError(ConfigurationError):
    """No API key (or S3 credentials) could be found in any configuration source."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it.

    Also an ``ImportError``, so code that probes for optional features with ``except ImportError`` keeps working.
    """


class InvalidInputError(MassiveError, ValueError):
    """A caller passed a bad symbol, interval, date range or name. Also a ``ValueError``."""


class UnknownSymbolError(InvalidInputError):
    """Symbols the reference list has no active ticker for, refused before a live subscription (which would just
    stay silent). ``symbols``: the unknown ones."""

    def __init__(self, message: str, *, symbols: list[str], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.symbols = symbols


class NoQuotesError(InvalidInputError):
    """A quote-based option (``fills="quotes"``) on bars that carry no bid/ask quotes."""


# --- HTTP ----------------------------------------------------------------------------------------
class HTTPError(MassiveError):
    """The server answered with an error status."""


class AuthenticationError(HTTPError):
    """401: the key is missing, unknown or revoked."""


class NotEntitledError(HTTPError):
    """403: the plan does not include this data or timeframe."""


class NotFoundError(HTTPError):
    """404: no such resource (unknown ticker/contract, no data for the day)."""


class RateLimitError(HTTPError):
    """429: the server's rate limit was hit and retries did not get through."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(HTTPError):
    """5xx or a broken connection that persisted after retries."""


class BadResponseError(MassiveError):
    """The server's body could not be understood (malformed JSON, missing fields, looping cursor)."""


# --- results -------------------------------------------------------------------------------------
class NoDataError(MassiveError):
    """A query returned no bars at all (unknown symbols, no trades, or no files for those days).

    ``symbols`` maps each requested symbol to the reason it came back empty; ``start``/``end`` are the
    first and last New York days of the query."""

    def __init__(self, message: str, *, symbols: dict[str, str] | None = None, start: Any = None, end: Any = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.symbols = dict(symbols or {})
        self.start = start
        self.end = end


class CorporateActionError(MassiveError):
    """A corporate action that cannot be applied correctly, so it is refused rather than applied: a dividend
    paid in another currency than the prices, or one as large as the price itself. ``ticker``, ``ex_date``
    (ISO day) and ``currency`` name the record."""

    def __init__(self, message: str, *, ticker: str | None = None, ex_date: str | None = None,
                 currency: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.ticker = ticker
        self.ex_date = ex_date
        self.currency = currency


# --- quota ---------------------------------------------------------------------------------------
class QuotaExceededError(MassiveError):
    """A plan quota (daily REST calls, monthly flat-file bytes) is used up until ``resets_at``."""

    def __init__(self, message: str, *, resource: str, resets_at: datetime | None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.resource = resource
        self.resets_at = resets_at


class QuotaStateError(InvalidSettingError):
    """The shared quota database cannot be used: damaged, on a full disk, or not writable. ``path`` names the
    file; the message says what to do."""

    def __init__(self, message: str, *, path: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.path = path


# --- flat files ----------------------------------------------------------------------------------
class FlatFileError(MassiveError):
    """A flat-file (S3) problem; ``key`` names the object."""

    def __init__(self, message: str, *, key: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.key = key


class CorruptFileError(FlatFileError):
    """A file is damaged: a downloaded day file truncated or not valid gzip/CSV (its cache entry was discarded),
    or a Parquet file (dataset, store, cache) whose page checksums, seal or encoding fail. ``path`` names the
    local file when there is one."""

    def __init__(self, message: str, *, path: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.path = path


# --- streaming -----------------------------------------------------------------------------------
class StreamError(MassiveError):
    """WebSocket streaming problem."""


class StreamAuthError(StreamError):
    """The server answered ``auth_failed``: the key is wrong or lacks this market."""


class MaxConnectionsError(StreamError):
    """The server closed us with ``max_connections``: another connection took our slot."""


class SlowConsumerError(StreamError):
    """The server closed us with ``slow_consumer``: we did not read fast enough."""


class StreamLimitError(StreamError):
    """Subscribing would pass the plan's symbol-stream cap."""


# --- storage -------------------------------------------------------------------------------------
class DatasetError(MassiveError):
    """A dataset could not be found, read or written."""


class DatasetExistsError(DatasetError):
    """Saving would replace an existing dataset (pass ``overwrite=True`` to replace it on purpose)."""


class IncompatibleDatasetError(DatasetError, InvalidInputError):
    """Rows that do not fit a dataset (another interval, bars vs ticks, another asset class) were appended."""


class StoreError(DatasetError):
    """The history store (``massive_feeds.store``) is missing, incomplete, damaged or could not be written."""


class CorruptDatasetError(CorruptFileError, DatasetError):
    """A saved dataset's file is damaged (bit rot, a partial copy): page checksums, seal or encoding fail."""


class CorruptStoreError(CorruptFileError, StoreError):
    """A file of the history store is damaged; re-ingesting its days rewrites it."""


class RecordingError(MassiveError):
    """The recorder could not write (disk full, permission) or read a recording."""
