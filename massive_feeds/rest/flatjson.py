"""A fast, exact reader for the ``results`` arrays of REST pages whose objects are flat and uniform.

The service writes compact JSON with every object of a page carrying the same keys in the same order
(aggregates always; quotes usually). Then the array is, byte for byte, ``{"k1":v,"k2":v,...},{...}``: numpy
pins every key, quote, colon, comma and brace of that frame; with those deleted, the values are CSV rows
that pyarrow's multi-threaded CSV reader turns into typed columns (3-4x its JSON reader, 5-10x orjson plus
column building). Anything else — whitespace, a key missing or added or moved in one object, a string,
array or nested object, a null or boolean, an exponent, a stray byte — returns None and the caller uses a
general JSON parser.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

_QUOTE, _COLON, _COMMA, _OPEN, _CLOSE = (ord(c) for c in '":,{}')
_NUMBER_CHARS = b"0123456789.+-"  # an exponent's 'e' stays: such a page takes the general parser
_NOT_IN_KEYS = frozenset(_NUMBER_CHARS + b'{}[]:,"\\ \t\r\n')
_OPEN_TO_NEWLINE = bytes.maketrans(b"{", b"\n")


def _uniform_keys(arr: np.ndarray, inner: bytes) -> tuple[list[bytes], int] | None:
    """(keys, number of objects) when ``inner`` is exactly ``{"k1":v,...,"kk":v},{...},...`` with the first
    object's keys in every object, in its order, and each ``v`` a run of number characters; else None.

    Exact, in three vectorised steps: (1) the quotes pair up into ``k`` keys per object, each as long as the
    first object's; (2) the bytes around them are ``{`` / ``,`` before and ``:`` after, and objects meet as
    ``},{``; (3) with every number character deleted, the text equals the frame repeated ``n`` times. Keys
    hold no number character, so (1) and (3) pin each key's text, (2) leaves number runs nowhere but after a
    key's colon, and (3) leaves nothing else there."""
    first_close = inner.find(b"}")
    if len(arr) < 2 or arr[0] != _OPEN or arr[-1] != _CLOSE or first_close < 0:
        return None
    quotes = np.flatnonzero(arr == _QUOTE)
    k = int(np.searchsorted(quotes, first_close)) // 2
    n = len(quotes) // (2 * k) if k else 0
    if k == 0 or len(quotes) != 2 * k * n:
        return None
    opens, ends = quotes[0::2].reshape(n, k), quotes[1::2].reshape(n, k)
    keys = [inner[opens[0, j] + 1 : ends[0, j]] for j in range(k)]
    if len(set(keys)) != k or any(set(key) & _NOT_IN_KEYS for key in keys):
        return None
    lengths = np.array([len(key) + 1 for key in keys])
    if (np.any(ends - opens != lengths) or np.any(arr[ends + 1] != _COLON)
            or np.any(arr[opens[:, 1:] - 1] != _COMMA) or np.any(arr[opens[:, 0] - 1] != _OPEN)
            or np.any(arr[opens[1:, 0] - 2] != _COMMA) or np.any(arr[opens[1:, 0] - 3] != _CLOSE)):
        return None
    frame = b"{" + b",".join(b'"' + key + b'":' for key in keys) + b"}"
    if inner.translate(None, _NUMBER_CHARS) != b",".join([frame] * n):
        return None
    return keys, n


def _csv_bytes(inner: bytes, keys: list[bytes], n: int) -> bytes | None:
    """The values as CSV rows, one per object, each ending in a comma (an empty extra field): every frame byte
    (quotes, colons, '}', key letters) deleted in one pass, each '{' made a line break."""
    csv = inner.translate(_OPEN_TO_NEWLINE, b'}":' + bytes(sorted(set(b"".join(keys))))) + b","
    # Equal length proves that no byte outside the frame was deleted (a key letter inside a number such as
    # the 'e' of 1e-05, a digit in a key): then None, and the general parser runs.
    return csv if len(csv) == len(inner) + 1 - n * (1 + sum(len(key) + 3 for key in keys)) else None


def read_uniform(inner: bytes, schema: pa.Schema) -> tuple[pa.Table, list[str]] | None:
    """The results array ``inner`` (the bytes between ``[`` and ``]``) as a table with ``schema``'s
    columns (absent keys as nulls; other keys ignored) and the keys found, or None when the array is not a
    compact uniform list of flat objects with numeric values in ``schema``'s columns."""
    if not inner:  # whitespace, arrays, strings, nulls: the frame compare in _uniform_keys refuses them
        return None
    arr = np.frombuffer(inner, np.uint8)
    uniform = _uniform_keys(arr, inner)
    if uniform is None:
        return None
    keys, n = uniform
    if any(f.name.encode() in keys and not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
           for f in schema):
        return None
    csv = _csv_bytes(inner, keys, n)
    if csv is None:
        return None
    names = [key.decode() for key in keys]
    wanted = [f.name for f in schema if f.name in names]
    table = pacsv.read_csv(
        io.BytesIO(csv),
        read_options=pacsv.ReadOptions(column_names=[*names, "\x00end"], block_size=1 << 20),
        parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(  # no nulls: an empty or "null" value fails the parse
            column_types={f.name: f.type for f in schema}, include_columns=wanted, null_values=[],
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    if table.num_rows != n:
        return None
    for f in schema:
        if f.name not in names:  # an absent key is null, as for the JSON reader
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(schema.names), names
