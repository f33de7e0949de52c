"""gzip inflating, in one place: REST bodies, flat-file downloads and the store's ingest all come through here.

:func:`inflate` turns compressed chunks (an S3 body while it downloads, a local file read in chunks, a REST
body) into decompressed pieces as they arrive; :func:`gunzip` is the whole-body case. Both use the fastest
zlib-compatible library installed: ``isal`` (ISA-L, 2-3x zlib here; part of the ``flatfiles`` extra), then
``zlib-ng``, then the standard ``zlib`` (``benchmarks/bench_flatfiles.py`` measures each).

A stream is only accepted whole, as ``gzip -dc`` accepts it: every member's CRC-32 and length are checked by
the library, concatenated members are read as one stream, zero padding after the last member is ignored.
A stream that is not gzip, fails its check, ends inside a member, or carries anything else after a member
raises :class:`GzipError`, which each caller turns into its own typed error (a retried
``ServerError`` for REST, :class:`~massive_feeds.errors.CorruptFileError` for a flat file).
"""

from __future__ import annotations

import importlib
import zlib
from types import ModuleType
from typing import Any, Iterable, Iterator

#: decompressed bytes handed on at most at once by :func:`inflate` (pyarrow's CSV block is 4 MB)
PIECE = 4 << 20
_GZIP_WBITS = 31  # 16 + 15: a gzip header and trailer around the deflate data


class GzipError(ValueError):
    """Not gzip, a CRC or length mismatch, a stream cut inside a member, or junk after one."""


def _load() -> tuple[ModuleType, str]:
    """isal_zlib, zlib_ng or zlib, fastest first (all drop-in zlib APIs)."""
    for module, name in (("isal.isal_zlib", "isal"), ("zlib_ng.zlib_ng", "zlib-ng")):
        try:
            return importlib.import_module(module), name
        except ImportError:  # pragma: no cover - depends on the installed extras
            continue
    return zlib, "zlib"


_lib, LIBRARY = _load()
_ERRORS = (_lib.error, zlib.error)


def inflate(chunks: Iterable[bytes], piece: int = PIECE) -> Iterator[bytes]:
    """The decompressed bytes of the gzip stream whose compressed bytes are ``chunks``, in pieces of at
    most ``piece`` bytes, each handed on as soon as it is inflated (no wait for the whole stream).

    Raises :class:`GzipError` (after the good pieces) when the stream is damaged, cut short or followed by
    junk; errors raised by ``chunks`` itself pass through unchanged."""
    member: Any = None  # the inflater of the member being read; None between members
    members = seen = 0
    try:
        for chunk in chunks:
            seen += len(chunk)
            while chunk:
                if member is None:
                    if not chunk.strip(b"\0"):  # zero padding after a member
                        break
                    member, members = _lib.decompressobj(_GZIP_WBITS), members + 1
                data = member.decompress(chunk, piece)
                chunk = member.unconsumed_tail
                if member.eof:  # the rest of the input belongs to the next member (or is padding/junk)
                    chunk, member = member.unused_data + chunk, None
                if data:
                    yield data
            while member is not None and not member.eof:  # a full piece may leave output held inside
                data = member.decompress(b"", piece)
                if not data:
                    break
                yield data
                if member.eof:
                    member = None
    except _ERRORS as exc:
        raise GzipError(f"damaged gzip data after {seen:,} compressed bytes: {exc}") from None
    if member is not None or not members:
        raise GzipError(f"the gzip stream ends early, after {seen:,} bytes")


def gunzip(data: bytes) -> bytes:
    """A whole gzip body already in memory (a REST response), inflated into one buffer of the size its
    trailer announces (a third of the time of a growing buffer). An empty body stays empty."""
    if not data:
        return b""
    # the last 4 bytes: the (last) member's length mod 2**32; capped, since a damaged trailer may claim 4 GB
    hint = min(int.from_bytes(data[-4:], "little"), 64 * len(data)) + 1
    parts = list(inflate((data,), max(hint, 1 << 16)))
    return parts[0] if len(parts) == 1 else b"".join(parts)
