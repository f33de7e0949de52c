"""Parsing of ``/v2/aggs`` pages straight into columns (no per-bar Python objects).

The fast path cuts the ``results`` array out of the body. When every bar object has the same keys in the
same order (the service's compact form), :mod:`.flatjson` reads it as CSV after checking that layout byte
for byte (3-4x pyarrow's JSON reader); other arrays go as newline-delimited JSON through pyarrow's JSON
reader. The small remainder (``status``, ``next_url``, …) goes through orjson. Any body the fast paths cannot
vouch for falls back to a plain orjson parse, so odd-but-valid responses still parse.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pajson

from ..errors import BadResponseError
from .flatjson import read_uniform

#: Wire key -> our column. ``t`` is the window start in epoch milliseconds.
AGG_FIELDS = {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close",
              "v": "volume", "vw": "vwap", "n": "transactions"}
_ARROW_SCHEMA = pa.schema([
    ("t", pa.int64()), ("o", pa.float64()), ("h", pa.float64()), ("l", pa.float64()),
    ("c", pa.float64()), ("v", pa.float64()), ("vw", pa.float64()), ("n", pa.float64()),
])
_RESULTS_KEY = b'"results":'
_OBJECT_GAP = re.compile(rb"\}\s*,\s*\{")


@dataclass
class AggsPage:
    """One parsed page: column arrays plus the envelope fields."""

    columns: dict[str, np.ndarray]
    next_url: str | None
    status: str
    request_id: str | None
    ticker: str | None

    @property
    def size(self) -> int:
        return len(self.columns["timestamp"])


def _empty_columns() -> dict[str, np.ndarray]:
    cols = {name: np.empty(0, np.float64) for name in AGG_FIELDS.values()}
    cols["timestamp"] = np.empty(0, np.int64)
    return cols


def _from_arrow(table: pa.Table) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for key, name in AGG_FIELDS.items():
        col = table.column(key)
        if key == "t":
            if col.null_count:
                raise BadResponseError("aggregate without a timestamp 't'")
            cols[name] = col.to_numpy()
        else:
            cols[name] = col.to_numpy(zero_copy_only=False)  # nulls (missing vw/n/v) become NaN
    return cols


def _csv_columns(inner: bytes) -> dict[str, np.ndarray] | None:
    """Columns of a compact uniform results array (:mod:`.flatjson`), or None when it is not one."""
    uniform = read_uniform(inner, _ARROW_SCHEMA)
    return None if uniform is None else _from_arrow(uniform[0])


def _fast_results(body: bytes) -> tuple[dict[str, np.ndarray], bytes] | None:
    """Columns from the ``results`` array and the envelope without it, or None if unsure."""
    key = body.find(_RESULTS_KEY)
    if key < 0:
        return _empty_columns(), body
    start = body.find(b"[", key)
    end = body.find(b"]", start)  # bars are flat objects: the first ']' closes the array
    if start < 0 or end < 0:
        return None
    envelope = body[:key] + b'"results":null' + body[end + 1 :]
    if envelope.count(_RESULTS_KEY) != 1:
        return None
    inner = body[start + 1 : end].strip()
    if not inner:
        return _empty_columns(), envelope
    columns = _csv_columns(inner)  # holds only flat objects of numbers when it answers
    if columns is not None:
        return columns, envelope
    if b"[" in inner or inner.find(_RESULTS_KEY) >= 0:
        return None
    # Compact bodies (the norm) need only a plain replace; pretty-printed ones the slower regex.
    ndjson = inner.replace(b"},{", b"}\n{") if b" " not in inner and b"\n" not in inner else _OBJECT_GAP.sub(b"}\n{", inner)
    table = pajson.read_json(
        io.BytesIO(ndjson),
        read_options=pajson.ReadOptions(block_size=max(1 << 20, len(ndjson) // 2 + 1)),
        parse_options=pajson.ParseOptions(explicit_schema=_ARROW_SCHEMA, unexpected_field_behavior="ignore"),
    )
    return _from_arrow(table), envelope


def _slow_results(results: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    table = pa.Table.from_pylist(results, schema=_ARROW_SCHEMA)
    return _from_arrow(table)


def parse_aggs(body: bytes) -> AggsPage:
    """Parse one aggregates response body. Raises :class:`BadResponseError` when it is not valid."""
    try:
        fast = _fast_results(body)
    except (pa.ArrowInvalid, ValueError):
        fast = None
    try:
        if fast is not None:
            columns, envelope = fast
            meta = orjson.loads(envelope)
        else:
            meta = orjson.loads(body)
            columns = _slow_results(meta.get("results") or [])
    except (orjson.JSONDecodeError, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, AttributeError) as exc:
        raise BadResponseError(f"malformed aggregates response ({len(body)} bytes): {exc}") from None
    if not isinstance(meta, dict) or "status" not in meta:
        raise BadResponseError("aggregates response without a 'status' field")
    if meta["status"] not in ("OK", "DELAYED"):
        raise BadResponseError(
            f"aggregates response with status {meta['status']!r}",
            request_id=meta.get("request_id"), server_message=meta.get("error") or meta.get("message"),
        )
    return AggsPage(columns, meta.get("next_url"), meta["status"], meta.get("request_id"), meta.get("ticker"))
