"""The streaming gzip CSV reader of flat files (massive_feeds.flatfiles.stream), on real gzip bytes.

Oracle: pyarrow's own CSV reader over the whole decompressed text, filtered afterwards (what the
streaming reader must equal row for row), plus hand-written files for the edge cases.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from massive_feeds.errors import CorruptFileError, ServerError
from massive_feeds.flatfiles import file_chunks, iter_csv_batches, iter_line_blocks, read_rows_where
from massive_feeds.flatfiles.reader import COLUMN_TYPES

HEADER = "ticker,volume,open,close,high,low,window_start,transactions\n"
KEY = "us_stocks_sip/minute_aggs_v1/2024/01/2024-01-02.csv.gz"


def day_csv(tickers: list[str], rows_each: int = 40, *, shuffle: bool = False, newline: str = "\n") -> str:
    rng = random.Random(3)
    lines = [f"{t},{rng.randint(1, 9999)},{i + 1.25},{i + 1.5},{i + 2},{i + 1},{1704186000000000000 + i * 60_000_000_000},"
             f"{rng.randint(1, 50)}" for t in tickers for i in range(rows_each)]
    if shuffle:
        rng.shuffle(lines)
    return HEADER.replace("\n", newline) + newline.join(lines) + newline


def oracle(text: str, wanted: set[str]) -> pa.Table:
    table = pacsv.read_csv(pa.py_buffer(text.encode()), convert_options=pacsv.ConvertOptions(column_types=COLUMN_TYPES))
    return table.filter(pc.is_in(table.column("ticker"), pa.array(sorted(wanted))))


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


# Tickers chosen to collide on prefixes: AAP/AAPL/AAPLX, a 7-char and an over-8-char (option) ticker
# sharing their first 8 bytes with another, and a crypto pair with a dash.
TICKERS = sorted(["AAP", "AAPL", "AAPLX", "ABCDEFG", "O:SPY251219C00650000", "O:SPY251219P00650000",
                  "X:BTC-USD", "ZZ", "A"])


@pytest.mark.parametrize("wanted", [{"AAPL"}, {"AAP", "A"}, {"O:SPY251219C00650000"}, {"ABCDEFG", "X:BTC-USD"},
                                    {"NOPE"}, set(TICKERS)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_rows_where_equal_a_full_parse_filtered(wanted: set[str], shuffle: bool) -> None:
    text = day_csv(TICKERS, shuffle=shuffle)
    data = gzip.compress(text.encode())
    # tiny blocks and chunks: lines and gzip members cross every boundary
    got = read_rows_where(chunked(data, 97), KEY, "ticker", wanted, column_types=COLUMN_TYPES, block_size=512)
    expected = oracle(text, wanted)
    assert got.num_rows == expected.num_rows
    assert got.sort_by([("ticker", "ascending"), ("window_start", "ascending")]).equals(
        expected.sort_by([("ticker", "ascending"), ("window_start", "ascending")]))


def test_rows_where_keeps_file_order_and_types() -> None:
    text = day_csv(TICKERS)
    got = read_rows_where([gzip.compress(text.encode())], KEY, "ticker", {"AAPL", "ZZ"}, column_types=COLUMN_TYPES)
    assert got.equals(oracle(text, {"AAPL", "ZZ"}))
    assert got.schema.field("window_start").type == pa.int64() and got.schema.field("open").type == pa.float64()


def test_rows_where_handles_crlf_and_a_missing_final_newline() -> None:
    text = day_csv(["AAPL", "MSFT"], 5, newline="\r\n").rstrip("\r\n")
    got = read_rows_where([gzip.compress(text.encode())], KEY, "ticker", {"MSFT"}, column_types=COLUMN_TYPES)
    assert got.column("ticker").to_pylist() == ["MSFT"] * 5
    assert got.column("window_start").to_pylist()[-1] == 1704186000000000000 + 4 * 60_000_000_000


def test_rows_where_parses_quoted_blocks_whole() -> None:
    text = HEADER + '"AAPL",1,1,1,1,1,1,1\nMSFT,2,2,2,2,2,2,2\n"MSFT",3,3,3,3,3,3,3\n'
    got = read_rows_where([gzip.compress(text.encode())], KEY, "ticker", {"MSFT"}, column_types=COLUMN_TYPES)
    assert got.column("volume").to_pylist() == [2.0, 3.0]


def test_rows_where_on_a_column_that_is_not_first() -> None:
    text = "window_start,ticker,open\n1,AAPL,1.5\n2,MSFT,2.5\n3,AAPL,3.5\n"
    got = read_rows_where([gzip.compress(text.encode())], KEY, "ticker", {"AAPL"})
    assert got.column("open").to_pylist() == ["1.5", "3.5"]  # untyped columns stay strings


def test_rows_where_reads_concatenated_gzip_members() -> None:
    text = day_csv(["AAPL", "MSFT", "TSLA"], 30)
    cut = text.index("MSFT")
    data = gzip.compress(text[:cut].encode()) + gzip.compress(text[cut:].encode())
    got = read_rows_where(chunked(data, 64), KEY, "ticker", {"AAPL", "TSLA"}, column_types=COLUMN_TYPES, block_size=256)
    assert got.equals(oracle(text, {"AAPL", "TSLA"}))


def test_header_only_file_gives_an_empty_table_with_its_columns() -> None:
    got = read_rows_where([gzip.compress(HEADER.encode())], KEY, "ticker", {"AAPL"}, column_types=COLUMN_TYPES)
    assert got.num_rows == 0 and got.column_names == HEADER.strip().split(",")


@pytest.mark.parametrize("damage", ["truncate", "crc", "garbage"])
def test_damaged_gzip_raises_corrupt_file_error_naming_the_key(damage: str) -> None:
    data = bytearray(gzip.compress(day_csv(["AAPL", "MSFT"], 400).encode()))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "crc":
        data[-6] ^= 0xFF  # inside the CRC-32 of the trailer
    else:
        data = bytearray(b"<Error>not gzip</Error>" * 10)
    for read in (lambda c: read_rows_where(c, KEY, "ticker", {"AAPL"}, column_types=COLUMN_TYPES),
                 lambda c: list(iter_csv_batches(c, KEY, column_types=COLUMN_TYPES)),
                 lambda c: list(iter_line_blocks(c, KEY))):
        with pytest.raises(CorruptFileError, match=KEY) as err:
            read(chunked(bytes(data), 1000))
        assert err.value.key == KEY


def test_errors_of_the_chunk_source_pass_through_unchanged() -> None:
    data = gzip.compress(day_csv(["AAPL", "MSFT"], 2000).encode())

    def breaking():
        yield data[:5000]
        raise ServerError("the download broke off")

    with pytest.raises(ServerError, match="broke off"):
        read_rows_where(breaking(), KEY, "ticker", {"AAPL"}, column_types=COLUMN_TYPES)
    with pytest.raises(ServerError, match="broke off"):
        list(iter_csv_batches(breaking(), KEY, column_types=COLUMN_TYPES))


def test_csv_batches_of_a_local_file_equal_a_full_parse(tmp_path: Path) -> None:
    text = day_csv(TICKERS, 300)
    path = tmp_path / "day.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    batches = list(iter_csv_batches(file_chunks(path, chunk=700), KEY, column_types=COLUMN_TYPES, block_size=4096))
    assert len(batches) > 1
    assert pa.Table.from_batches(batches).equals(oracle(text, set(TICKERS)))


def test_line_blocks_cut_at_line_ends_and_rebuild_the_text() -> None:
    text = day_csv(TICKERS, 50)
    blocks = list(iter_line_blocks(chunked(gzip.compress(text.encode()), 333), KEY, block_size=1000))
    assert len(blocks) > 5 and all(b.endswith(b"\n") for b in blocks)
    assert b"".join(blocks).decode() == text
