"""Keeping credentials out of log output, ours and our dependencies'.

Our own code never logs a key (keys travel as :class:`~massive_feeds.config.Secret`). Dependencies do
at DEBUG: ``websockets`` prints every frame it sends, the auth frame with the API key included;
``botocore`` prints each request's headers, the S3 access key id in the SigV4 ``Credential=`` among
them. Two defences, both installed by :func:`install` (the CLI calls it for every handler it sets up;
library users with their own logging can call it too):

* :class:`RedactingFilter` on each handler masks every secret value the process knows (each
  :class:`~massive_feeds.config.Secret` registers its value on creation, see :func:`register_secret`)
  and the common credential shapes whatever their value: a WebSocket auth frame's ``params``,
  ``Authorization`` headers, ``apiKey=``/``X-Amz-Credential=``/``Signature=`` query parameters and
  SigV4 ``Credential=…``/``Signature=…``.
* the chattiest dependency loggers (``websockets``, ``botocore``, ``boto3``, ``s3transfer``,
  ``urllib3``) are capped at INFO unless the user asks for their DEBUG explicitly (``-vvv``); their
  records still pass the filter then.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Iterable

MASK = "****"

#: Dependency loggers whose DEBUG output carries request headers or raw frames.
NOISY_LOGGERS: tuple[str, ...] = ("websockets", "botocore", "boto3", "s3transfer", "urllib3")

_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

# Credential shapes masked whatever the value is (the group before the value is kept).
_SHAPES = re.compile(
    r"""(?ix)
    ( "action" \s* : \s* "auth" \s* , \s* "params" \s* : \s* " )  [^"']*      # WS auth frame
  | ( \b bearer \s+ ) [^"',}\s]+                                            # Authorization: Bearer …
  | ( [?&;\s] (?:apikey|api_key|x-amz-credential|x-amz-signature|x-amz-security-token) = ) [^&\s"']+
  | ( \b (?:credential|signature) = ) [^,\s"']+
  | ( \b (?:aws_access_key_id|aws_secret_access_key|secret_access_key|access_key_id) \s* [:=] \s* ["']? ) [^"',\s}]+
    """
)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in log output from now on (values under 4 characters are
    ignored: masking them would garble ordinary text)."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # longest first, so a key containing another key is masked whole
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    """``text`` with every known secret and credential shape masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _SHAPES.sub(_keep_prefix, text)


def _keep_prefix(match: re.Match[str]) -> str:
    prefix = next((g for g in match.groups() if g is not None), "")
    return prefix + MASK


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message with :func:`redact` (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install(handlers: Iterable[logging.Handler] | None = None, *, dependency_debug: bool = False) -> None:
    """Put a :class:`RedactingFilter` on ``handlers`` (default: every handler of the root logger) and,
    unless ``dependency_debug``, cap :data:`NOISY_LOGGERS` at INFO."""
    targets = list(handlers) if handlers is not None else list(logging.getLogger().handlers)
    for handler in targets:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not dependency_debug:
        for name in NOISY_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.INFO:
                logger.setLevel(logging.INFO)


__all__ = ["MASK", "NOISY_LOGGERS", "RedactingFilter", "install", "redact", "register_secret"]
