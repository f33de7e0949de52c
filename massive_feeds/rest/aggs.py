"""Parsing of ``/v2/aggs`` pages into columns, through the one page decoder (:mod:`.decode`).

A bar is ``t`` (window start, epoch ms, an integer), ``o h l c`` (numbers, never ``null``), and the optional
``v`` ``vw`` ``n`` (absent or ``null`` for indices: NaN). Beyond its types, a page is refused with a
:class:`~massive_feeds.errors.BadResponseError` naming the field, the result and its value when a price or
volume is negative or infinite, a high is below its low, a time lies outside 1970-2100, or
``resultsCount`` disagrees with the bars held.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from .decode import Page, decode_page, floats, ints, refuse_rows

#: Wire key -> our column. ``t`` is the window start in epoch milliseconds.
AGG_FIELDS = {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close",
              "v": "volume", "vw": "vwap", "n": "transactions"}
#: Bar times outside [1970, 2100) in epoch ms are not bars (seconds or nanoseconds sent as ms, or garbage).
_T_RANGE = (0, 4_102_444_800_000)


class Bar(msgspec.Struct, gc=False):
    """One ``results`` object of an aggregates page, as the wire types it."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 - the wire's name
    c: float
    v: float | None = None
    vw: float | None = None
    n: int | None = None


_DECODER = msgspec.json.Decoder(Page[Bar])


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


def _columns(bars: list[Bar]) -> dict[str, np.ndarray]:
    """The bars' columns (``transactions`` as float64, NaN where absent), their values checked."""
    cols = {"timestamp": ints(bars, "t", "aggregates")}
    for key, name in AGG_FIELDS.items():
        if key != "t":
            cols[name] = floats(bars, key)
    _check(cols)
    return cols


def _check(cols: dict[str, np.ndarray]) -> None:
    """Refuse a page with a negative or infinite price or volume, a high below its low, or a time outside
    1970-2100 (NaN stands for an absent optional field and passes)."""
    what = "aggregates"
    t = cols["timestamp"]
    refuse_rows((t < _T_RANGE[0]) | (t >= _T_RANGE[1]), what, "t", t, "not an epoch-ms time in 1970-2100")
    for key, name in AGG_FIELDS.items():
        if key not in ("t", "n"):
            col = cols[name]
            refuse_rows((col < 0) | np.isinf(col), what, key, col, "not a finite number >= 0")
    refuse_rows(cols["transactions"] < 0, what, "n", cols["transactions"], "a negative trade count")
    below = cols["high"] < cols["low"]
    if below.any():  # the message names the low, so it is built only for a page that breaks the rule
        low = cols["low"][np.argmax(below)]
        refuse_rows(below, what, "h", cols["high"], f"below its low 'l' ({low})")


def parse_aggs(body: bytes) -> AggsPage:
    """Parse one aggregates response body. Raises :class:`BadResponseError` when it is not valid."""
    page, bars = decode_page(body, _DECODER, "aggregates")
    assert page.status is not None  # decode_page checked it
    return AggsPage(_columns(bars), page.next_url, page.status, page.request_id, page.ticker)
