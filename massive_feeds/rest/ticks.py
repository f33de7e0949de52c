"""Parsing of ``/v3/trades`` and ``/v3/quotes`` pages into tick columns, through the one page decoder
(:mod:`.decode`).

Wire form (massive-api-facts §1.6; official client ``massive/rest/models/{trades,quotes}.py``): a
``results`` array of flat objects with long names — quotes ``ask_exchange ask_price ask_size
bid_exchange bid_price bid_size conditions indicators participant_timestamp sequence_number
sip_timestamp tape trf_timestamp``; trades ``conditions correction exchange id participant_timestamp
price sequence_number sip_timestamp size tape trf_id trf_timestamp`` — all timestamps in epoch **ns**,
plus ``status``, ``request_id`` and ``next_url``. Optional keys come and go from one tick to the next.
Forex quotes and crypto trades carry only ``participant_timestamp``: it stands in for the missing SIP
time. Absent or ``null`` integers become 0, floats NaN, condition lists and ids ``""``; a value of the
wrong type (a quoted exchange, a numeric id, a fractional condition) is a
:class:`~massive_feeds.errors.BadResponseError` naming the field and the tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadResponseError
from .decode import Page, column, decode_page, floats, ints, refuse_rows


class Quote(msgspec.Struct, gc=False):
    """One ``/v3/quotes`` result as the wire types it (keys the tick schema does not keep are skipped)."""

    ask_exchange: int | None = None
    ask_price: float | None = None
    ask_size: float | None = None
    bid_exchange: int | None = None
    bid_price: float | None = None
    bid_size: float | None = None
    conditions: list[int] | None = None
    participant_timestamp: int | None = None
    sequence_number: int | None = None
    sip_timestamp: int | None = None
    tape: int | None = None


class Trade(msgspec.Struct, gc=False):
    """One ``/v3/trades`` result as the wire types it."""

    conditions: list[int] | None = None
    exchange: int | None = None
    id: str | None = None
    participant_timestamp: int | None = None
    price: float | None = None
    sequence_number: int | None = None
    sip_timestamp: int | None = None
    size: float | None = None
    tape: int | None = None


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "quotes": msgspec.json.Decoder(Page[Quote]), "trades": msgspec.json.Decoder(Page[Trade])}
#: the wire fields of each kind, in the official client's order
FIELDS: dict[str, tuple[str, ...]] = {"quotes": Quote.__struct_fields__, "trades": Trade.__struct_fields__}
#: wire name → tick column (the rest keep their names)
RENAME = {"bid_price": "bid", "ask_price": "ask", "bid_exchange": "exchange"}
_INT_FIELDS = {"ask_exchange", "bid_exchange", "exchange", "sequence_number", "tape"}
_NS_END = 4_102_444_800 * 10**9  # 2100-01-01 in epoch ns


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


def _timestamps(rows: list[Any], kind: str) -> np.ndarray:
    """The SIP time of each tick, else its participant time (epoch ns, in 1970-2100)."""
    try:
        ns = ints(rows, "sip_timestamp", kind)
    except BadResponseError:  # some (forex quotes, crypto trades: all) carry only the participant time
        ts = pc.coalesce(column(rows, "sip_timestamp", pa.int64(), kind),
                         column(rows, "participant_timestamp", pa.int64(), kind))
        if ts.null_count:
            i = int(np.argmax(ts.is_null().to_numpy(zero_copy_only=False)))
            raise BadResponseError(f"{kind} response: result {i} has neither sip_timestamp nor "
                                   "participant_timestamp") from None
        ns = ts.to_numpy()
    refuse_rows((ns < 0) | (ns >= _NS_END), kind, "sip_timestamp", ns, "not an epoch-ns time in 1970-2100")
    return ns


def _columns(rows: list[Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"timestamp": _timestamps(rows, kind)}
    for name in FIELDS[kind]:
        if name in ("sip_timestamp", "participant_timestamp"):
            continue
        if name == "conditions":  # the codes joined by "," ("" for none): text stays in arrow
            lists = column(rows, name, pa.list_(pa.int64()), kind)
            out[name] = pc.fill_null(pc.binary_join(pc.cast(lists, pa.list_(pa.string())), ","), "")
        elif name == "id":
            out[name] = pc.fill_null(column(rows, name, pa.string(), kind), "")
        elif name in _INT_FIELDS:
            out[RENAME.get(name, name)] = ints(rows, name, kind, fill=0)
        else:  # prices and sizes: absent or null → NaN; negative or infinite → refused
            values = out[RENAME.get(name, name)] = floats(rows, name)
            refuse_rows((values < 0) | np.isinf(values), kind, name, values, "not a finite number >= 0")
    return out


def parse_ticks(body: bytes, kind: str) -> TicksPage:
    """Parse one ``/v3/trades`` or ``/v3/quotes`` body (``kind``: ``trades``/``quotes``).

    Raises :class:`BadResponseError` when the body is not a valid tick page."""
    page, rows = decode_page(body, _DECODERS[kind], kind)
    assert page.status is not None  # decode_page checked it
    return TicksPage(_columns(rows, kind), page.next_url, page.status, page.request_id)


__all__ = ["FIELDS", "TicksPage", "parse_ticks"]
