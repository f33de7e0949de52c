"""The one decoder of REST JSON pages: msgspec typed structs, then columns.

Every page (``/v2/aggs`` bars, ``/v3/trades``, ``/v3/quotes``) is decoded in one pass by msgspec into
:class:`Page` of the endpoint's result struct. The types are the contract: a price is a number (not a
string, not ``null``), a timestamp an integer, a condition list a list of integers; keys come in any
order, optional ones may be absent, unknown ones are skipped, and whitespace does not matter, so compact,
spaced and pretty-printed pages take the same path at the same speed (``benchmarks/bench_rest.py``).
Anything else is a :class:`~massive_feeds.errors.BadResponseError` naming the field and the result's
index (msgspec's path, e.g. ``$.results[3].o``). The endpoint modules (:mod:`.aggs`, :mod:`.ticks`) turn
the structs into numpy/arrow columns with the helpers here (one C-level pass per column) and check the
values' ranges on the columns.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Generic, Sequence, TypeVar

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadResponseError

R = TypeVar("R")


class Page(msgspec.Struct, Generic[R], gc=False):
    """A page's envelope and its typed results. ``resultsCount`` (aggregates) counts the results of
    this page (``queryCount`` counts the base aggregates read, which may differ): a page whose count
    disagrees with what it holds was cut or altered."""

    status: str | None = None
    results: list[R] | None = None
    resultsCount: int | None = None  # noqa: N815 - the wire's name
    next_url: str | None = None
    request_id: str | None = None
    ticker: str | None = None
    error: str | None = None
    message: str | None = None


def decode_page(body: bytes, decoder: msgspec.json.Decoder[Page[R]], what: str) -> tuple[Page[R], list[R]]:
    """Decode one page with ``decoder`` (a ``msgspec.json.Decoder(Page[Result])``) and check its envelope.
    Returns the page and its results (``[]`` when absent).

    Raises:
        BadResponseError: malformed JSON, a value of the wrong type (naming the field and result index),
            no ``status`` or an error status, or a ``resultsCount`` other than the results held."""
    try:
        page = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadResponseError(f"{what} response with a wrong value: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadResponseError(f"malformed {what} response ({len(body):,} bytes): {exc}") from None
    if page.status is None:
        raise BadResponseError(f"{what} response without a 'status' field")
    if page.status not in ("OK", "DELAYED"):
        raise BadResponseError(f"{what} response with status {page.status!r}", request_id=page.request_id,
                               server_message=page.error or page.message)
    results = page.results or []
    if page.resultsCount is not None and page.resultsCount != len(results):
        raise BadResponseError(f"{what} response: resultsCount is {page.resultsCount} but the page holds "
                               f"{len(results)} results (cut or altered)", request_id=page.request_id)
    return page, results


def floats(rows: Sequence[object], name: str) -> np.ndarray:
    """The float64 column of field ``name`` (``None`` becomes NaN)."""
    return np.fromiter(map(attrgetter(name), rows), np.float64, len(rows))


def ints(rows: Sequence[object], name: str, what: str, fill: int | None = None) -> np.ndarray:
    """The int64 column of field ``name``: one C-level pass when every row has it; otherwise the absent
    (``None``) ones become ``fill``, or a :class:`BadResponseError` naming the first such row when ``fill`` is
    None. A value beyond int64 is a :class:`BadResponseError`."""
    try:
        return np.fromiter(map(attrgetter(name), rows), np.int64, len(rows))
    except OverflowError:
        raise BadResponseError(f"{what} response: {name} out of the int64 range") from None
    except TypeError:  # a None among them
        values = column(rows, name, pa.int64(), what)
    if fill is None:
        i = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
        raise BadResponseError(f"{what} response: result {i} has no {name}") from None
    return pc.fill_null(values, fill).to_numpy()


def column(rows: Sequence[object], name: str, kind: pa.DataType, what: str) -> pa.Array:
    """The column of field ``name`` as an arrow array of type ``kind`` (``None`` a null); an integer beyond
    int64 is a :class:`BadResponseError`."""
    try:
        return pa.array(list(map(attrgetter(name), rows)), kind)
    except (OverflowError, pa.ArrowInvalid) as exc:
        raise BadResponseError(f"{what} response: {name} out of the int64 range ({exc})") from None


def refuse_rows(bad: np.ndarray, what: str, field: str, values: np.ndarray, rule: str) -> None:
    """:class:`BadResponseError` naming the first result where ``bad`` holds: its index, the field and its
    value, and the rule it breaks (nothing when ``bad`` is all false)."""
    if bad.any():
        i = int(np.argmax(bad))
        raise BadResponseError(f"{what} response: {field} of result {i} is {values[i].item()!r}, {rule} "
                               f"({int(bad.sum())} such result(s) in the page)")
