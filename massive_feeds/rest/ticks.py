"""Parsing of ``/v3/trades`` and ``/v3/quotes`` pages straight into tick columns.

Wire form (massive-api-facts §1.6; official client ``massive/rest/models/{trades,quotes}.py``): a
``results`` array of flat objects with long names — quotes ``ask_exchange ask_price ask_size
bid_exchange bid_price bid_size conditions indicators participant_timestamp sequence_number
sip_timestamp tape trf_timestamp``; trades ``conditions correction exchange id participant_timestamp
price sequence_number sip_timestamp size tape trf_id trf_timestamp`` — all timestamps in epoch **ns**,
plus ``status``, ``request_id`` and ``next_url``. Forex quotes and crypto trades carry only
``participant_timestamp``: it stands in for the missing SIP time.

As for aggregates, the fast path finds the ``results`` array in the body; a compact page whose objects all
carry the same keys in the same order — numbers, ids made of digits, ``conditions`` arrays — is read as CSV
in place (:mod:`.flatjson`, checked byte for byte), any other (the usual real page, whose optional keys
come and go) goes to pyarrow's JSON reader, which builds typed columns (the objects are flat; their only
arrays are integer lists, so a ``}]`` closes the array); anything it cannot vouch for goes through orjson,
whose values are converted without truncation.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ..errors import BadResponseError
from .flatjson import read_uniform

_INTS = pa.list_(pa.int64())
SCHEMAS: dict[str, pa.Schema] = {
    "quotes": pa.schema([
        ("ask_exchange", pa.int64()), ("ask_price", pa.float64()), ("ask_size", pa.float64()),
        ("bid_exchange", pa.int64()), ("bid_price", pa.float64()), ("bid_size", pa.float64()),
        ("conditions", _INTS), ("participant_timestamp", pa.int64()), ("sequence_number", pa.int64()),
        ("sip_timestamp", pa.int64()), ("tape", pa.int64()),
    ]),
    "trades": pa.schema([
        ("conditions", _INTS), ("exchange", pa.int64()), ("id", pa.string()),
        ("participant_timestamp", pa.int64()), ("price", pa.float64()), ("sequence_number", pa.int64()),
        ("sip_timestamp", pa.int64()), ("size", pa.float64()), ("tape", pa.int64()),
    ]),
}
#: wire name → tick column (the rest keep their names)
RENAME = {"bid_price": "bid", "ask_price": "ask", "bid_exchange": "exchange"}
_RESULTS_KEY = b'"results":'
_OBJECT_GAP = re.compile(rb"\}\s*,\s*\{")
_ARRAY_END = re.compile(rb"\}\s*\]")


@dataclass
class TicksPage:
    """One parsed page: tick columns (``timestamp`` in ns) plus the envelope fields."""

    columns: dict[str, Any]  # numpy arrays; text columns (conditions, id) as pyarrow arrays
    next_url: str | None
    status: str
    request_id: str | None

    @property
    def size(self) -> int:
        return len(self.columns["timestamp"])


def _columns(table: pa.Table, kind: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    sip = table.column("sip_timestamp")
    ts = pc.coalesce(sip, table.column("participant_timestamp"))
    if ts.null_count:
        raise BadResponseError(f"{kind} result without sip_timestamp or participant_timestamp")
    out["timestamp"] = ts.to_numpy()
    for name in SCHEMAS[kind].names:
        if name in ("sip_timestamp", "participant_timestamp"):
            continue
        col = table.column(name)
        if name == "conditions":
            # the CSV route hands over the codes already joined (see .flatjson.read_uniform)
            joined = col if pa.types.is_string(col.type) else pc.binary_join(pc.cast(col, pa.list_(pa.string())), ",")
            out[name] = pc.fill_null(joined, "").combine_chunks()  # text stays in arrow: no Python objects
        elif name == "id":
            out[name] = pc.fill_null(col, "").combine_chunks()
        elif pa.types.is_integer(col.type):
            out[RENAME.get(name, name)] = pc.fill_null(col, 0).to_numpy()
        else:
            out[RENAME.get(name, name)] = col.to_numpy(zero_copy_only=False)  # nulls → NaN
    return out


def _fast_table(body: bytes, schema: pa.Schema) -> tuple[pa.Table, bytes] | None:
    key = body.find(_RESULTS_KEY)
    if key < 0:
        return schema.empty_table(), body
    start = body.find(b"[", key)
    if start < 0:
        return None
    if body[start + 1 : start + 64].lstrip().startswith(b"]"):
        end = body.find(b"]", start)
        return schema.empty_table(), body[:key] + b'"results":null' + body[end + 1 :]
    # tick objects are flat (their only arrays hold integers), so a "}]" closes the results; the envelope
    # after them is short, so the last one is found at once (a forward search reads all 10 MB of a full
    # page). Should it not close the results (a "}]" inside an envelope string), the inner text is not a
    # list of objects and both readers below refuse it: the general parse then runs.
    end = body.rfind(b"}]", start) + 1
    if end <= 0:
        close = _ARRAY_END.search(body, start)  # pretty-printed: "}\n    ]"
        if close is None:
            return None
        end = close.end() - 1
    envelope = body[:key] + b'"results":null' + body[end + 1 :]
    if body[start + 1 : start + 2] == b"{" and body[end - 1 : end] == b"}":  # compact: no whitespace at the ends
        uniform = read_uniform(body, schema, start + 1, end)  # the compact, uniform form: read as CSV (.flatjson)
        if uniform is not None:
            return uniform[0], envelope
    inner = body[start + 1 : end].strip()
    pretty = inner[:4096].find(b"\n") >= 0 or inner[:4096].find(b"}, {") >= 0  # the server's style is uniform
    ndjson = _OBJECT_GAP.sub(b"}\n{", inner) if pretty else inner.replace(b"},{", b"}\n{")
    table = pajson.read_json(
        io.BytesIO(ndjson),
        read_options=pajson.ReadOptions(block_size=max(1 << 20, len(ndjson) // 2 + 1)),
        parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )
    return table, envelope


def _typed(values: list[Any], field: pa.Field) -> pa.Array:
    """One column of the general path, with only value-preserving conversions: ``pa.Table.from_pylist`` with
    a schema would turn ``12.5`` into the integer 12 and ``"12"`` into a number. Here the values' own type is
    inferred, then cast safely (an integral float such as ``12.0`` becomes 12; ``12.5``, a string or a boolean
    in a numeric column, or an integer beyond int64, raise)."""
    arr = pa.array(values)
    inferred, want = arr.type, field.type
    if pa.types.is_list(want) and pa.types.is_list(inferred):
        inferred, want = inferred.value_type, want.value_type
    if not (pa.types.is_null(inferred) or inferred == want
            or ((pa.types.is_integer(want) or pa.types.is_floating(want))
                and (pa.types.is_integer(inferred) or pa.types.is_floating(inferred)))):
        raise pa.ArrowTypeError(f"{field.name}: {arr.type} values where {field.type} is expected")
    return arr.cast(field.type, safe=True)


def _rows_table(rows: list[Any], schema: pa.Schema) -> pa.Table:
    """The general path's table: the ``schema`` columns of decoded result objects (absent keys are nulls)."""
    if not all(isinstance(r, dict) for r in rows):
        raise TypeError("a result that is not an object")
    return pa.table([_typed([r.get(f.name) for r in rows], f) for f in schema], schema=schema)


def parse_ticks(body: bytes, kind: str) -> TicksPage:
    """Parse one ``/v3/trades`` or ``/v3/quotes`` body (``kind``: ``trades``/``quotes``).

    Raises :class:`BadResponseError` when the body is not a valid tick page."""
    schema = SCHEMAS[kind]
    try:
        fast = _fast_table(body, schema)
    except (pa.ArrowInvalid, ValueError):
        fast = None
    try:
        if fast is not None:
            table, envelope = fast
            meta: Any = orjson.loads(envelope)
        else:
            meta = orjson.loads(body)
            table = _rows_table(meta.get("results") or [], schema)
        columns = _columns(table, kind)
    except (orjson.JSONDecodeError, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, AttributeError,
            OverflowError) as exc:
        raise BadResponseError(f"malformed {kind} response ({len(body)} bytes): {exc}") from None
    if not isinstance(meta, dict) or "status" not in meta:
        raise BadResponseError(f"{kind} response without a 'status' field")
    if meta["status"] not in ("OK", "DELAYED"):
        raise BadResponseError(f"{kind} response with status {meta['status']!r}", request_id=meta.get("request_id"),
                               server_message=meta.get("error") or meta.get("message"))
    return TicksPage(columns, meta.get("next_url"), meta["status"], meta.get("request_id"))


__all__ = ["SCHEMAS", "TicksPage", "parse_ticks"]
