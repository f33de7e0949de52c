"""A fast, exact reader for the ``results`` arrays of REST pages whose objects are flat and uniform.

The service writes compact JSON with every object of a page carrying the same keys in the same order
(aggregates always; quotes and trades when no object has an optional key the others lack). Then the array
is, byte for byte, ``{"k1":v,"k2":v,...},{...}``: numpy pins every key, quote, colon, comma, bracket and
brace of that frame; with those deleted, the values are CSV rows that pyarrow's multi-threaded CSV reader
turns into typed columns (3-4x its JSON reader, 5-10x orjson plus column building).

A value may be a number; a string made only of number characters (a trade's ``"id":"183276"``), read as
text; or an array of integers (``"conditions":[12,41]``), read as its text ``"12,41"`` — exactly the
integers joined by commas, which is what the tick schema keeps. Anything else — whitespace, a key missing
or added or moved in one object, a string holding any other character (a letter, a comma, an escape), a
nested object, a null or boolean, an exponent, a stray byte — returns None and the caller uses a general
JSON parser.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

_QUOTE, _COLON, _COMMA, _OPEN, _CLOSE = (ord(c) for c in '":,{}')
_LBRACKET, _RBRACKET, _ZERO = ord("["), ord("]"), ord("0")
_NUMBER_CHARS = b"0123456789.+-"  # an exponent's 'e' stays: such a page takes the general parser
_NOT_IN_KEYS = frozenset(_NUMBER_CHARS + b'{}[]:,"\\ \t\r\n')
_CSV_TABLE = bytes.maketrans(b"{[]", b'\n""')  # an array's brackets become the quotes of one CSV field
_NO_ARRAYS_CSV_TABLE = bytes.maketrans(b"{]", b"\n,")  # the array's closing bracket: the last row's comma
#: an array's text as the general path renders it (integers in int64, no leading zeros or signs)
_INT_LIST = r"^(?:(?:0|[1-9][0-9]{0,17})(?:,(?:0|[1-9][0-9]{0,17}))*)?$"
_NUMBER, _STRING, _ARRAY = "number", "string", "array"


def _kinds(first: bytes) -> dict[str, str] | None:
    """Key → kind of value (number, string or array of integers) of the first object, in order, or None
    when it holds anything else (null, boolean, nested object, a key with a number or frame character)."""
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    kinds = {}
    for key, value in obj.items():
        if not key or set(key.encode()) & _NOT_IN_KEYS:
            return None
        if type(value) in (int, float):
            kinds[key] = _NUMBER
        elif type(value) is str:
            kinds[key] = _STRING
        elif type(value) is list:
            kinds[key] = _ARRAY
        else:
            return None
    return kinds


def _first_kinds(data: bytes, start: int, stop: int, samples: int = 16) -> dict[str, str] | None:
    """The first object's key → value kind (:func:`_kinds`), or None when it is not flat or when one of
    ``samples`` objects spread over the array ``data[start:stop]`` visibly has other keys: the usual real
    page, whose optional keys come and go, then goes straight to the general parser without the vectorised
    passes. Only a quick refusal: the exact check follows in :func:`_uniform_keys`."""
    first_close = data.find(b"}", start, stop)
    kinds = _kinds(data[start : first_close + 1]) if first_close >= 0 else None
    if kinds is None:
        return None
    keys = list(kinds)
    for k in range(1, samples + 1):
        at = data.find(b"},{", start + (stop - start) * k // (samples + 1), stop)
        close = data.find(b"}", at + 2, stop) if at >= 0 else -1
        if close < 0:
            continue
        try:
            other = orjson.loads(data[at + 2 : close + 1])
        except orjson.JSONDecodeError:  # cut inside a string: nothing learnt
            continue
        if isinstance(other, dict) and list(other) != keys:
            return None
    return kinds


def _span_index(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Every position in the half-open spans ``[starts[i], stops[i])``, in order (no Python loop)."""
    lengths = stops - starts
    total = int(lengths.sum())
    shift = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return np.arange(total, dtype=np.int64) + shift


def _uniform_keys(data: bytes, start: int, stop: int) -> tuple[dict[str, str], int, bool] | None:
    """(key → value kind, number of objects, whether there are arrays) when ``inner = data[start:stop]`` is
    exactly ``{"k1":v,...,"kk":v},{...},...`` with the first object's keys in every object, in its order,
    and each ``v`` of that key's kind: a run of number characters, ``"`` + a run of number characters +
    ``"``, or ``[`` + digits and commas + ``]``; else None.

    Exact, in vectorised steps: (1) the quotes pair up into the same pairs per object as in the first
    (keys, and string values), each key as long as the first object's; (2) the bytes around them are
    ``{`` / ``,`` before a key and ``:`` after it, ``:`` before a string value and the next frame byte after
    it, ``[``/``]`` right after a colon and right before the next frame byte, and objects meet as
    ``},{``; (3) with every number character (and every comma inside an array) deleted, the text equals the
    frame repeated ``n`` times. Keys hold no number character, so (1) and (3) pin each key's text, (2)
    leaves number runs nowhere but in a value's place, and (3) leaves nothing else there."""
    arr = np.frombuffer(data, np.uint8, stop - start, start)  # a view: positions below are relative to start
    if len(arr) < 2 or arr[0] != _OPEN or arr[-1] != _CLOSE:
        return None
    kinds = _first_kinds(data, start, stop)
    if kinds is None:
        return None
    keys = list(kinds)
    pair_of_key: list[int] = []
    pair_of_string: list[int] = []
    for key in keys:
        pair_of_key.append(len(pair_of_key) + len(pair_of_string))
        if kinds[key] == _STRING:
            pair_of_string.append(pair_of_key[-1] + 1)
    pairs = len(pair_of_key) + len(pair_of_string)
    quotes = np.flatnonzero(arr == _QUOTE)
    n = len(quotes) // (2 * pairs)
    if n == 0 or len(quotes) != 2 * pairs * n:
        return None
    # per pair: its length (keys only), the byte before its opening quote and the byte after its closing one
    is_key = np.zeros(pairs, dtype=bool)
    is_key[pair_of_key] = True
    length, before, after = np.zeros(pairs, np.int64), np.zeros(pairs, np.uint8), np.zeros(pairs, np.uint8)
    for j, (p, key) in enumerate(zip(pair_of_key, keys)):
        length[p], before[p], after[p] = len(key.encode()) + 1, _OPEN if j == 0 else _COMMA, _COLON
        if kinds[key] == _STRING:
            before[p + 1], after[p + 1] = _COLON, _CLOSE if j == len(keys) - 1 else _COMMA
    opens, ends = quotes[0::2].reshape(n, pairs), quotes[1::2].reshape(n, pairs)
    at = np.subtract(opens, 1)  # one scratch array for the three position sets (fresh memory costs page faults)
    if np.any(arr[at] != before) or np.any(arr[np.add(ends, 1, out=at)] != after) \
            or np.any((np.subtract(ends, opens, out=at) != length) & is_key) \
            or np.any(arr[opens[1:, 0] - 2] != _COMMA) or np.any(arr[opens[1:, 0] - 3] != _CLOSE):
        return None
    array_commas = None
    arrays = [j for j, key in enumerate(keys) if kinds[key] == _ARRAY]
    if arrays:
        # '[' right after the key's colon; ']' right before the comma of the next key or the closing brace
        a_open = ends[:, [pair_of_key[j] for j in arrays]] + 2
        a_close = np.empty_like(a_open)
        for c, j in enumerate(arrays):
            if j + 1 < len(keys):
                a_close[:, c] = opens[:, pair_of_key[j + 1]] - 2
            else:
                a_close[:-1, c] = opens[1:, 0] - 4
                a_close[-1, c] = len(arr) - 2
        if np.any(a_close <= a_open) or np.any(arr[a_open] != _LBRACKET) or np.any(arr[a_close] != _RBRACKET):
            return None
        # the commas inside arrays are blanked for the frame compare below, which then leaves only number
        # characters there; that they are integers joined by commas is checked on the CSV text
        inside = _span_index((a_open + 1).ravel(), a_close.ravel())
        array_commas = inside[arr[inside] == _COMMA]
    frame = b"{" + b",".join(b'"' + key.encode() + b'":' + {_NUMBER: b"", _STRING: b'""', _ARRAY: b"[]"}[kind]
                             for key, kind in kinds.items()) + b"}"
    bare: bytes | bytearray
    if array_commas is not None and len(array_commas):
        blank = bytearray(memoryview(data)[start:stop])
        np.frombuffer(blank, np.uint8)[array_commas] = _ZERO  # deleted with the numbers below
        bare, lo, hi = blank.translate(None, _NUMBER_CHARS), 0, None
    else:  # the whole body, then the array's part of it found by length: no 10 MB copy of the array
        bare = data.translate(None, _NUMBER_CHARS)
        lo = len(data[:start].translate(None, _NUMBER_CHARS))
        hi = len(bare) - len(data[stop:].translate(None, _NUMBER_CHARS))
    hi = len(bare) if hi is None else hi
    if not _tiles(bare, lo, hi, frame, n):
        return None
    return kinds, n, array_commas is not None


def _tiles(bare: bytes | bytearray, lo: int, hi: int, frame: bytes, n: int) -> bool:
    """Whether ``bare[lo:hi] == ",".join([frame] * n)``, compared a block of 1,024 frames at a time against
    one such block (building the whole 7 MB expected text, or slicing it out, costs fresh memory each page)."""
    step = len(frame) + 1
    if hi - lo != n * step - 1 or not bare.endswith(frame, lo, hi):
        return False
    block = (frame + b",") * 1024
    end = lo + (n - 1) * step
    for at in range(lo, end, len(block)):
        size = min(len(block), end - at)
        if bare[at : at + size] != (block if size == len(block) else block[:size]):  # 150 kB: reused memory
            return False
    return True


def _csv_buffer(data: bytes, start: int, stop: int, kinds: dict[str, str], n: int, arrays: bool) -> pa.Buffer | None:
    """The values of ``data[start:stop]`` as CSV rows, one per object, each ending in a comma (an empty extra
    field): every frame byte (quotes, colons, '}', key letters) deleted in one pass, each '{' made a line break
    and an array's brackets the quotes of one field. Without arrays the whole body is translated (the ']'
    closing the array becomes the last row's comma) and the rows are handed over as a slice of it, no copy."""
    delete = b'}":' + bytes(sorted(set("".join(kinds).encode())))
    if arrays or data[stop : stop + 1] != b"]":  # copies: the array's part, then the last row's comma
        csv = bytes(memoryview(data)[start:stop]).translate(_CSV_TABLE, delete) + b","
        lo, hi = 0, len(csv)
    else:
        csv = data.translate(_NO_ARRAYS_CSV_TABLE, delete)
        lo = len(data[:start].translate(_NO_ARRAYS_CSV_TABLE, delete))
        hi = len(csv) - len(data[stop + 1 :].translate(_NO_ARRAYS_CSV_TABLE, delete))
    # Equal length proves that no byte outside the frame was deleted (belt and braces after the frame check)
    deleted = 1 + sum(len(key.encode()) + 3 + 2 * (kind == _STRING) for key, kind in kinds.items())
    if hi - lo != stop - start + 1 - n * deleted:
        return None
    return pa.py_buffer(csv).slice(lo, hi - lo)


def read_uniform(data: bytes, schema: pa.Schema, start: int = 0, stop: int | None = None
                 ) -> tuple[pa.Table, list[str]] | None:
    """The results array ``inner = data[start:stop]`` (the bytes between ``[`` and ``]``: pass the whole body
    and the bounds, and nothing is copied) as a table with ``schema``'s
    columns (absent keys as nulls; other keys ignored) and the keys found, or None when the array is not a
    compact uniform list of flat objects whose values match ``schema``'s columns: numbers for numeric
    columns, strings of number characters for string columns, arrays of integers for list columns.

    A list column comes back as **text**: the integers joined by ``,`` (``""`` for ``[]``), which equals
    ``binary_join(cast(list, list<string>), ",")`` of the parsed list."""
    stop = len(data) if stop is None else stop
    if stop <= start:  # whitespace, strings, nulls: the frame compare in _uniform_keys refuses them
        return None
    uniform = _uniform_keys(data, start, stop)
    if uniform is None:
        return None
    kinds, n, arrays = uniform
    wants = {_NUMBER: lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
             _STRING: pa.types.is_string, _ARRAY: lambda t: pa.types.is_list(t) and pa.types.is_integer(t.value_type)}
    if any(f.name in kinds and not wants[kinds[f.name]](f.type) for f in schema):
        return None
    names = list(kinds)
    csv = _csv_buffer(data, start, stop, kinds, n, arrays)
    if csv is None:
        return None
    wanted = [f.name for f in schema if f.name in kinds]
    types = {f.name: pa.string() if kinds.get(f.name) == _ARRAY else f.type for f in schema}
    table = pacsv.read_csv(
        pa.BufferReader(csv),
        read_options=pacsv.ReadOptions(column_names=[*names, "\x00end"], block_size=1 << 20),
        parse_options=pacsv.ParseOptions(quote_char='"' if arrays else False, double_quote=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(  # no nulls: an empty or "null" value fails the parse
            column_types=types, include_columns=wanted, null_values=[],
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    if table.num_rows != n:
        return None
    for name in wanted:
        if kinds[name] == _ARRAY and not pc.all(pc.match_substring_regex(table.column(name), _INT_LIST)).as_py():
            return None
    for f in schema:
        if f.name not in kinds:  # an absent key is null, as for the JSON reader
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(schema.names), names
