"""The one gzip inflater (massive_feeds.inflate) that REST bodies, flat-file downloads and the store's ingest share:
whole streams come out byte for byte however the compressed bytes are cut into chunks; anything else is a
GzipError, never a shorter text."""

from __future__ import annotations

import gzip
import zlib

import pytest

from massive_feeds.inflate import GzipError, gunzip, inflate

TEXT = b"".join(b"ticker,%d,%.4f\n" % (i, i * 1.25) for i in range(3000))  # 60 kB, compresses to a few kB


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, 10**9])
@pytest.mark.parametrize("piece", [1000, 1 << 20])
def test_every_chunking_gives_the_text_byte_for_byte(chunk: int, piece: int) -> None:
    """Members, member boundaries and trailers cut across chunks at every size (1 byte: every offset), and
    output pieces smaller than a chunk's output, still give exactly the text; no piece exceeds ``piece``."""
    data = gzip.compress(TEXT[:20_000]) + gzip.compress(TEXT[20_000:]) + b"\0" * 5  # two members, zero padding
    pieces = list(inflate(chunked(data, chunk), piece))
    assert b"".join(pieces) == TEXT and max(map(len, pieces)) <= piece


def test_gunzip_of_a_whole_body() -> None:
    assert gunzip(gzip.compress(TEXT)) == TEXT
    assert gunzip(gzip.compress(TEXT[:5]) + gzip.compress(TEXT[5:])) == TEXT  # a tiny first member
    assert gunzip(b"") == b""  # an empty HTTP body is not a gzip stream to check


@pytest.mark.parametrize("damage, message", [
    ("cut-inside-the-last-member", "ends early"),
    ("cut-in-the-trailer", "ends early"),
    ("crc", "damaged gzip data"),
    ("length", "damaged gzip data"),
    ("junk-after", "damaged gzip data|ends early"),  # 4 bytes of junk: shorter than a gzip header
    ("junk-after-padding", "damaged gzip data|ends early"),
    ("not-gzip", "damaged gzip data"),
    ("empty", "ends early"),
    ("half-a-header-after", "ends early"),
])
def test_damaged_streams_are_a_gzip_error(damage: str, message: str) -> None:
    whole = gzip.compress(TEXT)
    data = {
        "cut-inside-the-last-member": whole[: len(whole) // 2],
        "cut-in-the-trailer": whole[:-3],
        "crc": whole[:-8] + (zlib.crc32(TEXT) ^ 1).to_bytes(4, "little") + whole[-4:],
        "length": whole[:-4] + (len(TEXT) + 1).to_bytes(4, "little"),
        "junk-after": whole + b"junk",
        "junk-after-padding": whole + b"\0\0\0junk",
        "not-gzip": TEXT,
        "empty": b"",
        "half-a-header-after": whole + b"\x1f",
    }[damage]
    for chunk in (1, 1000, len(data) or 1):
        with pytest.raises(GzipError, match=message):
            b"".join(inflate(chunked(data, chunk)))
    if data:
        with pytest.raises(GzipError, match=message):
            gunzip(data)


def test_errors_of_the_chunk_source_pass_through() -> None:
    def chunks():
        yield gzip.compress(TEXT)[:100]
        raise ConnectionError("network gone")

    with pytest.raises(ConnectionError, match="network gone"):
        b"".join(inflate(chunks()))
