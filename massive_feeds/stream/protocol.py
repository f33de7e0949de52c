"""Massive's WebSocket wire protocol in one place: markets, channels, field maps, control messages,
and the frame parser that turns wire JSON into :class:`~massive_feeds.stream.events.StreamEvent`.

See ``massive-api-facts.md`` §2. Every server frame is a JSON array of objects keyed by ``ev``;
control messages have ``ev == "status"``. Channel letters mean different things per market
(``A`` = per-second for stocks but ``XA``/``CA`` = per-minute for crypto/forex), which the
:data:`CHANNELS` table below pins down once.

The parser is the hot path. For each channel a small builder function is generated from its field
map (the same trick ``collections.namedtuple`` uses), so parsing an event is one dict lookup for
the channel and one tuple construction — no per-event loop over the map, no per-event ``datetime``.
It returns *rows*: plain tuples in :class:`StreamEvent` field order, which consumers turn into
``StreamEvent`` with :func:`~massive_feeds.stream.events.as_event` (see there for why).

Fastest path (when ``msgspec`` is installed, as the ``live`` extra does): each channel also gets a
typed ``msgspec`` struct (only the keys we keep, tagged by ``ev``), and a frame is decoded straight
into those structs in C — no dict per event, unknown keys skipped unread, required keys and value
types checked while decoding. This costs less than ``orjson.loads`` alone. The frame's consumer then
builds its ``StreamEvent`` objects straight from the structs (:class:`TypedFrame`: one generated
comprehension, or a generated per-event delivery loop; rows only on request). Whatever the typed decode
refuses (a status message, an unknown channel, a missing key, an unexpected value type, bad JSON) is
parsed again by the ``orjson`` path below, which is the reference behaviour: both paths give identical
rows and events (tested on real payloads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from math import nan
from typing import Annotated, Any, Callable, Iterable, Iterator, Mapping, Sequence

import orjson

try:  # optional: without it every frame takes the orjson path (same rows, slower)
    import msgspec
except ImportError:  # pragma: no cover - the live extra installs it
    msgspec = None  # type: ignore[assignment]

from ..errors import InvalidInputError
from ..schema import asset_class, ws_symbol
from .events import (
    AGG_MINUTE,
    AGG_SECOND,
    QUOTE,
    TRADE,
    VALUE,
    StreamEvent,
)

log = logging.getLogger(__name__)

MARKETS: tuple[str, ...] = ("stocks", "options", "indices", "forex", "crypto")

# --- control messages -----------------------------------------------------------------------------
STATUS_EV = "status"
#: Server statuses that mean "all is well" during the handshake.
HANDSHAKE_OK = frozenset({"connected", "success"})
AUTH_OK = "auth_success"
AUTH_FAILED = "auth_failed"
AUTH_TIMEOUT = "auth_timeout"
AUTH_REQUIRED = "auth_required"
#: Statuses the server sends just before it closes the socket.
DISCONNECT_STATUSES = frozenset({"max_connections", "force_disconnect", "slow_consumer"})


def auth_message(key: str) -> bytes:
    """The auth frame. The only place the key is serialised; never log its result."""
    return orjson.dumps({"action": "auth", "params": key})


def action_message(action: str, params: Iterable[str]) -> bytes:
    """A ``subscribe``/``unsubscribe`` frame with a comma-separated param list."""
    return orjson.dumps({"action": action, "params": ",".join(params)})


def chunk_params(params: Iterable[str], max_chars: int = 8000) -> list[list[str]]:
    """Split a long subscription list into messages of at most ``max_chars`` of params each
    (no documented limit exists; this keeps frames modest when resubscribing hundreds of symbols)."""
    chunks: list[list[str]] = [[]]
    size = 0
    for p in params:
        if chunks[-1] and size + len(p) + 1 > max_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(p)
        size += len(p) + 1
    return [c for c in chunks if c]


# --- channels and field maps ------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelSpec:
    """How one wire channel maps onto :class:`StreamEvent`.

    ``fields`` maps event field → wire key; keys listed in ``required`` must be present (an event
    without them is malformed), the others default to ``nan``/``0``.
    """

    channel: str
    kind: str
    markets: tuple[str, ...]
    symbol_key: str
    fields: Mapping[str, str]
    required: frozenset[str] = field(default_factory=frozenset)


_AGG_FIELDS = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v", "vwap": "vw",
               "time_ms": "s", "end_ms": "e"}
_AGG_REQUIRED = frozenset({"o", "h", "l", "c", "s"})
_EQUITY = ("stocks", "options")

#: Every channel we understand, keyed by its wire ``ev`` code. The single source of field names.
CHANNELS: dict[str, ChannelSpec] = {c.channel: c for c in (
    # stocks / options
    ChannelSpec("T", TRADE, _EQUITY, "sym",
                {"price": "p", "size": "s", "time_ms": "t", "exchange": "x"}, frozenset({"p", "t"})),
    ChannelSpec("Q", QUOTE, _EQUITY, "sym",
                {"bid": "bp", "ask": "ap", "bid_size": "bs", "ask_size": "as", "time_ms": "t", "exchange": "bx"},
                frozenset({"bp", "ap", "t"})),
    ChannelSpec("A", AGG_SECOND, _EQUITY + ("indices",), "sym", _AGG_FIELDS, _AGG_REQUIRED),
    ChannelSpec("AM", AGG_MINUTE, _EQUITY + ("indices",), "sym", _AGG_FIELDS, _AGG_REQUIRED),
    # indices
    ChannelSpec("V", VALUE, ("indices",), "T", {"price": "val", "time_ms": "t"}, frozenset({"val", "t"})),
    # forex: the quote's pair key is "p", the aggregates' is "pair"; CA is per-minute, CAS per-second
    ChannelSpec("C", QUOTE, ("forex",), "p", {"bid": "b", "ask": "a", "time_ms": "t", "exchange": "x"},
                frozenset({"b", "a", "t"})),
    ChannelSpec("CA", AGG_MINUTE, ("forex",), "pair", _AGG_FIELDS, _AGG_REQUIRED),
    ChannelSpec("CAS", AGG_SECOND, ("forex",), "pair", _AGG_FIELDS, _AGG_REQUIRED),
    # crypto: XA is per-minute, XAS per-second
    ChannelSpec("XT", TRADE, ("crypto",), "pair",
                {"price": "p", "size": "s", "time_ms": "t", "exchange": "x"}, frozenset({"p", "t"})),
    ChannelSpec("XQ", QUOTE, ("crypto",), "pair",
                {"bid": "bp", "ask": "ap", "bid_size": "bs", "ask_size": "as", "time_ms": "t", "exchange": "x"},
                frozenset({"bp", "ap", "t"})),
    ChannelSpec("XA", AGG_MINUTE, ("crypto",), "pair", _AGG_FIELDS, _AGG_REQUIRED),
    ChannelSpec("XAS", AGG_SECOND, ("crypto",), "pair", _AGG_FIELDS, _AGG_REQUIRED),
)}

#: (market, kind) → channel to subscribe. Indices have no trades or quotes: their value stream (V)
#: stands in for "trade" so a default ("quote", "trade") subscription still yields prices.
SUBSCRIBE_CHANNELS: dict[tuple[str, str], str] = {
    **{(m, k): c for m in _EQUITY for k, c in ((TRADE, "T"), (QUOTE, "Q"), (AGG_SECOND, "A"), (AGG_MINUTE, "AM"))},
    ("indices", VALUE): "V", ("indices", TRADE): "V", ("indices", AGG_SECOND): "A", ("indices", AGG_MINUTE): "AM",
    ("forex", QUOTE): "C", ("forex", AGG_MINUTE): "CA", ("forex", AGG_SECOND): "CAS",
    ("crypto", TRADE): "XT", ("crypto", QUOTE): "XQ", ("crypto", AGG_MINUTE): "XA", ("crypto", AGG_SECOND): "XAS",
}


def market_of(ticker: str) -> str:
    """The WebSocket cluster (URL path) a normalised ticker streams on."""
    return asset_class(ticker)


def subscription_params(ticker: str, kinds: Iterable[str]) -> list[str]:
    """``("AAPL", ["quote", "trade"])`` → ``["Q.AAPL", "T.AAPL"]``; ``X:BTCUSD`` → ``XQ.BTC-USD`` …

    Kinds a market does not carry (trades on forex) are skipped; if none is left the symbol cannot be
    streamed that way and an :class:`InvalidInputError` says which kinds it supports.
    """
    market = market_of(ticker)
    wire = ws_symbol(ticker)
    channels = list(dict.fromkeys(SUBSCRIBE_CHANNELS[(market, k)] for k in kinds
                                  if (market, k) in SUBSCRIBE_CHANNELS))
    if not channels:
        offered = sorted({k for (m, k) in SUBSCRIBE_CHANNELS if m == market})
        raise InvalidInputError(f"{ticker} ({market}) streams none of {list(kinds)}; it offers {offered}")
    return [f"{c}.{wire}" for c in channels]


def ticker_from_wire(market: str, wire_symbol: str) -> str:
    """Wire symbol → our ticker: ``EUR/USD`` → ``C:EURUSD``, ``BTC-USD`` → ``X:BTCUSD``, others as-is."""
    if market == "forex" and not wire_symbol.startswith("C:"):
        return "C:" + wire_symbol.replace("/", "")
    if market == "crypto" and not wire_symbol.startswith("X:"):
        return "X:" + wire_symbol.replace("-", "")
    return wire_symbol


def param_ticker(market: str, param: str) -> str:
    """``"XQ.BTC-USD"`` → ``"X:BTCUSD"``; ``"T.*"`` → ``"*"``."""
    _, _, wire = param.partition(".")
    return wire if wire == "*" else ticker_from_wire(market, wire)


class _SymbolCache(dict):
    """wire pair → ticker, computed once per pair (the hot path then pays one dict lookup)."""

    def __init__(self, market: str) -> None:
        super().__init__()
        self.market = market

    def __missing__(self, wire: str) -> str:
        value = self[wire] = ticker_from_wire(self.market, wire)
        return value


_FOREX_SYMBOLS = _SymbolCache("forex")
_CRYPTO_SYMBOLS = _SymbolCache("crypto")

_EVENT_FIELDS = StreamEvent._fields
#: Channels whose wire ``x`` is a string (websocket.json's forex C example: ``"x": "44"``).
_STRING_EXCHANGE = frozenset({"C"})
_INT_FIELDS = frozenset({"time_ms", "end_ms", "exchange"})


def _row_expr(spec: ChannelSpec, strict: bool = False, struct: bool = False) -> str:
    """Python expression of one event's row (a tuple in StreamEvent field order) from wire dict ``d``
    received at ``r``. ``strict``: optional keys are indexed too (a plain subscript is cheaper than
    ``d.get``), so an event lacking one raises ``KeyError`` instead of taking the default.
    ``struct``: from the decoded wire struct ``s`` of :func:`_wire_struct` instead (defaults are
    already filled in by the decoder)."""
    symbol = f"s.{_attr(spec.symbol_key)}" if struct else f"d[{spec.symbol_key!r}]"
    if "forex" in spec.markets:
        symbol = f"_FX[{symbol}]"
    elif "crypto" in spec.markets:
        symbol = f"_CX[{symbol}]"
    args = []
    for name in _EVENT_FIELDS:
        if name == "kind":
            args.append(repr(spec.kind))
        elif name == "symbol":
            args.append(symbol)
        elif name == "received_ns":
            args.append("r")
        elif name in spec.fields:
            key = spec.fields[name]
            default = "0" if name in _INT_FIELDS else "NAN"
            if struct:
                value = f"s.{_attr(key)}"
            else:
                value = f"d[{key!r}]" if strict or key in spec.required else f"d.get({key!r}, {default})"
            # The exchange id is documented as an int, but forex C sends it as a string ("44"): coerce
            # there, so the event's type does not depend on the channel. (The other channels send ints
            # per the spec and the official client's models; no per-event int() on their hot path.)
            args.append(f"int({value})" if name == "exchange" and spec.channel in _STRING_EXCHANGE else value)
        else:
            args.append("0" if name in _INT_FIELDS else "NAN")
    return f"({', '.join(args)})"


def _builder_source(spec: ChannelSpec) -> str:
    """Python source of ``build(d, r) -> row`` (a tuple in StreamEvent field order) for one channel."""
    return f"def build(d, r):\n    return {_row_expr(spec)}\n"


def _frame_builder_source(spec: ChannelSpec) -> str:
    """Python source of ``build_frame(items, r) -> rows`` for a frame of this channel only: one
    comprehension with the row expression inlined (no function call per event), first assuming every
    documented key is present (the usual frame), else with the defaults of missing optional keys.
    Items of another channel are left out, so a result shorter than ``items`` means "mixed frame:
    parse it per item"; a missing required key or a non-object item raises."""
    channel = repr(spec.channel)
    return (f"def build_frame(items, r):\n"
            f"    try:\n"
            f"        return [{_row_expr(spec, strict=True)} for d in items if d['ev'] == {channel}]\n"
            f"    except KeyError:\n"
            f"        return [{_row_expr(spec)} for d in items if d['ev'] == {channel}]\n")


Row = tuple[Any, ...]


# --- typed wire structs (the msgspec fast path) --------------------------------------------------------
def _attr(key: str) -> str:
    """Struct attribute of a wire key (``as`` is a keyword; ``T`` and ``t`` stay distinct)."""
    return f"w_{key}"


if msgspec is not None:
    _DIGITS: Any = Annotated[str, msgspec.Meta(pattern=r"^[0-9]+$")]
    # orjson reads integers past 64 bits as floats: leave anything outside int64 to it
    _INT: Any = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def _wire_struct(spec: ChannelSpec) -> Any:
    """A ``msgspec`` struct for one channel: the symbol and mapped keys only, tagged by ``ev``.

    Types are exactly what the orjson path passes through unchanged — numbers ``int | float`` (kept
    as sent), times and exchange ids ``int`` (forex ``C`` exchange: an int or a string of digits,
    coerced by the row builder), the symbol ``str``; integers within int64 only — so anything else
    (``null``, a string price, a float time, a 70-bit integer) makes the decode fail and the frame go
    the reference way, which then decides as it always did.
    Optional keys default to what the orjson path puts in their place."""
    entries: list[tuple[str, Any, Any]] = [(_attr(spec.symbol_key), str, msgspec.field(name=spec.symbol_key))]
    optional: list[tuple[str, Any, Any]] = []
    for name, key in spec.fields.items():
        if name == "exchange":
            # forex C sends "44": accept digit strings only, so the builder's int() cannot fail later
            typ: Any = _INT | _DIGITS if spec.channel in _STRING_EXCHANGE else _INT
        elif name in _INT_FIELDS:
            typ = _INT
        else:
            typ = _INT | float
        if key in spec.required:
            entries.append((_attr(key), typ, msgspec.field(name=key)))
        else:
            default = 0 if name in _INT_FIELDS else nan
            optional.append((_attr(key), typ, msgspec.field(default=default, name=key)))
    # gc=False: the structs hold only atoms and die right after the rows are built.
    return msgspec.defstruct(f"Wire{spec.channel}", entries + optional, tag_field="ev", tag=spec.channel,
                             gc=False, frozen=True)


def _struct_row_body(specs: list[ChannelSpec]) -> str:
    """Expression of the row of decoded struct ``s`` of any of ``specs``: one ``type(s) is`` test per
    channel in the order given (the frame's first channel first, so a frame of one channel — the usual
    case — costs one test per event); no test at all for a single spec."""
    return " ".join([f"{_row_expr(spec, struct=True)} if type(s) is C_{spec.channel} else" for spec in specs[:-1]]
                    + [_row_expr(specs[-1], struct=True)])


def _struct_builder_source(specs: list[ChannelSpec]) -> str:
    """Source of ``build(items, r) -> rows`` over decoded structs of any of ``specs`` (see
    :func:`_struct_row_body`): one comprehension."""
    return f"def build(items, r):\n    return [{_struct_row_body(specs)} for s in items]\n"


def _struct_events_source(specs: list[ChannelSpec]) -> str:
    """Source of ``events(items, r) -> [StreamEvent]``: the events themselves, each made in one step
    from its row expression (``tuple.__new__`` of the tuple display; no list of rows in between)."""
    return f"def events(items, r):\n    return [_new(SE, {_struct_row_body(specs)}) for s in items]\n"


def _struct_deliver_source(specs: list[ChannelSpec]) -> str:
    """Source of ``deliver(items, r, fn, failed)``: ``fn(event)`` for each event in order, each built
    just before its call (nothing kept per frame); an exception of ``fn`` goes to ``failed(exc)`` and
    the next event follows, as in the listener's own loop."""
    return (f"def deliver(items, r, fn, failed):\n"
            f"    for s in items:\n"
            f"        ev = _new(SE, {_struct_row_body(specs)})\n"
            f"        try:\n"
            f"            fn(ev)\n"
            f"        except Exception as exc:\n"
            f"            failed(exc)\n")


class _Builders:
    """The generated functions turning a frame's decoded structs into rows / events (see TypedFrame)."""

    __slots__ = ("rows", "events", "deliver", "event_ms")

    def __init__(self, specs: list[ChannelSpec], name: str, classes: Mapping[str, Any],
                 event_ms: Mapping[type, Callable[[Any], int]]) -> None:
        names = {**classes, "_new": tuple.__new__, "SE": StreamEvent}
        self.rows: Callable[[list[Any], int], list[Row]] = _compile(_struct_builder_source(specs), "build",
                                                                    f"build_typed_{name}", **names)
        self.events: Callable[[list[Any], int], list[StreamEvent]] = _compile(
            _struct_events_source(specs), "events", f"events_typed_{name}", **names)
        self.deliver: Callable[[list[Any], int, Callable[[Any], Any], Callable[[Exception], Any]], None] = \
            _compile(_struct_deliver_source(specs), "deliver", f"deliver_typed_{name}", **names)
        self.event_ms = event_ms


def _struct_event_ms_source(spec: ChannelSpec) -> str:
    """Source of ``event_ms(s)``: when the event happened (an aggregate counts at its window end)."""
    t = f"s.{_attr(spec.fields['time_ms'])}"
    if "end_ms" not in spec.fields:
        return f"def event_ms(s):\n    return {t}\n"
    return f"def event_ms(s):\n    t = {t}\n    e = s.{_attr(spec.fields['end_ms'])}\n    return t if t > e else e\n"


def _compile(source: str, name: str, qualname: str, **names: Any) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"NAN": nan, "_FX": _FOREX_SYMBOLS, "_CX": _CRYPTO_SYMBOLS, **names}
    exec(compile(source, f"<massive_feeds {qualname}>", "exec"), namespace)
    fn: Callable[..., Any] = namespace[name]
    fn.__qualname__ = qualname
    return fn


def _compile_builder(spec: ChannelSpec) -> Callable[[dict[str, Any], int], Row]:
    return _compile(_builder_source(spec), "build", f"build_{spec.channel}")


BUILDERS: dict[str, Callable[[dict[str, Any], int], Row]] = {
    code: _compile_builder(spec) for code, spec in CHANNELS.items()
}
#: Per channel, a whole-frame builder (see :func:`_frame_builder_source`): the hot path for the usual
#: frame of one channel.
FRAME_BUILDERS: dict[str, Callable[[list[Any], int], list[Row]]] = {
    code: _compile(_frame_builder_source(spec), "build_frame", f"build_frame_{spec.channel}")
    for code, spec in CHANNELS.items()
}


def _list_decoder(item: Any) -> Callable[[bytes | str], list[Any]]:
    """``decode(raw)``: a JSON array of ``item`` (a struct type or a union of them)."""
    return msgspec.json.Decoder(list[item]).decode


class _TypedMarket:
    """The msgspec fast path of one market: a decoder of a frame into its channels' wire structs,
    and the builders turning those into rows (see :func:`_wire_struct`)."""

    def __init__(self, market: str) -> None:
        specs = [spec for spec in CHANNELS.values() if market in spec.markets]
        structs = {spec.channel: _wire_struct(spec) for spec in specs}
        union: Any = structs[specs[0].channel]
        for spec in specs[1:]:
            union = union | structs[spec.channel]
        self.decode = _list_decoder(union)
        classes = {f"C_{code}": cls for code, cls in structs.items()}
        self.event_ms: dict[type, Callable[[Any], int]] = {
            structs[spec.channel]: _compile(_struct_event_ms_source(spec), "event_ms", f"event_ms_{spec.channel}")
            for spec in specs}
        #: struct type of a frame's first event → the builders testing that channel first
        self.builders: dict[type, _Builders] = {
            structs[spec.channel]: _Builders([spec, *(o for o in specs if o is not spec)], f"{market}_{spec.channel}",
                                             classes, self.event_ms)
            for spec in specs}
        # Per channel, a decoder of a frame of that channel only: when it accepts, the frame is known to be
        # of one kind for free (no type test per event; listeners filter by kind once per frame). Paired
        # with a tag nothing carries, since a lone tagged struct would not insist on its ``ev`` key.
        # (A required key whose pattern matches nothing: no event can ever decode as it.)
        nothing = msgspec.defstruct("WireNothing", [("never", Annotated[str, msgspec.Meta(pattern="(?!)")])],
                                    tag_field="ev", tag="\x00none", gc=False, frozen=True)
        self.single: dict[type, tuple[Callable[[bytes | str], list[Any]], _Builders, str]]
        self.single = {
            structs[spec.channel]: (
                _list_decoder(structs[spec.channel] | nothing),
                _Builders([spec], f"{spec.channel}_only", classes, self.event_ms),
                spec.kind)
            for spec in specs}


_TYPED: dict[str, _TypedMarket] = {}


def _typed_market(market: str) -> _TypedMarket | None:
    if msgspec is None:
        return None
    typed = _TYPED.get(market)
    if typed is None:
        typed = _TYPED[market] = _TypedMarket(market)
    return typed


class TypedFrame(Sequence[Row]):
    """The data of one frame as decoded wire structs: no per-event Python object is built on the
    socket thread; whoever consumes the frame builds its events (:meth:`events`, :meth:`deliver`) or
    rows (:meth:`rows`), a fresh list each call.

    Why: rows queued between the socket thread and a listener thread are GC-tracked tuples, and a
    backlog of them makes every young-generation collection walk all of them (a third of the CPU of
    a threaded firehose); the structs are untracked. Building where the rows are consumed also keeps
    them in one core's cache. As a ``Sequence`` it reads like the list of rows it stands for
    (``len``, indexing and iteration; indexing builds the rows once and keeps them).
    """

    __slots__ = ("structs", "received_ns", "kind", "_build", "_rows")

    def __init__(self, structs: list[Any], received_ns: int, build: _Builders, kind: str | None = None) -> None:
        self.structs = structs
        self.received_ns = received_ns
        #: the kind of every event when the frame is known to hold one channel only, else ``None``
        self.kind = kind
        self._build = build
        self._rows: list[Row] | None = None

    def __repr__(self) -> str:
        return f"TypedFrame({len(self.structs)} events, kind={self.kind!r}, received_ns={self.received_ns})"

    def rows(self) -> list[Row]:
        """The frame's rows (plain tuples in :class:`StreamEvent` field order), built now."""
        return self._build.rows(self.structs, self.received_ns)

    def events(self) -> list[StreamEvent]:
        """The frame's :class:`StreamEvent` objects, built now (equal to ``as_event`` of each row)."""
        return self._build.events(self.structs, self.received_ns)

    def deliver(self, fn: Callable[[StreamEvent], Any], failed: Callable[[Exception], Any]) -> None:
        """``fn(event)`` for each event in order, each built just before its call; an exception ``fn``
        raises is passed to ``failed`` and delivery goes on with the next event."""
        self._build.deliver(self.structs, self.received_ns, fn, failed)

    def first_ms(self) -> int:
        """Provider time of the first event (aggregates: window end)."""
        s = self.structs[0]
        return self._build.event_ms[type(s)](s)

    def last_ms(self) -> int:
        s = self.structs[-1]
        return self._build.event_ms[type(s)](s)

    def __len__(self) -> int:
        return len(self.structs)

    def __getitem__(self, index: Any) -> Any:
        rows = self._rows
        if rows is None:
            rows = self._rows = self.rows()
        return rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows() if self._rows is None else self._rows)


class FrameError(ValueError):
    """A frame that is not a JSON array of objects."""


class FrameParser:
    """Turns one wire frame into ``(rows, statuses)``.

    ``rows`` are plain tuples in :class:`StreamEvent` field order (``as_event(row)`` makes the
    event); ``statuses`` are the raw ``{"ev": "status", ...}`` dicts
    (rare; handled by the connection). Malformed items are skipped and counted in
    :attr:`malformed_events`; unknown channels in :attr:`unknown_events`. A frame that is not JSON
    or not an array raises :class:`FrameError` (the caller counts, warns and skips it).
    """

    __slots__ = ("market", "builders", "frame_builders", "malformed_events", "unknown_events", "_unknown_seen",
                 "_per_item_frames", "_typed", "_untyped_frames", "_guess", "_mixed_typed_frames")

    #: After a frame of mixed channels, parse this many frames per item before trying the whole-frame
    #: builder again (a subscription of trades *and* quotes mixes them; a failed try costs a rebuild).
    MIXED_BACKOFF = 32
    #: After the typed decoder refused a frame (statuses, an unknown channel, a surprising value),
    #: parse this many frames the orjson way before trying it again (a refusal costs a second parse).
    UNTYPED_BACKOFF = 32

    def __init__(self, market: str, *, typed: bool = True) -> None:
        """``typed=False`` parses every frame the reference (orjson) way (for comparison and tests)."""
        self.market = market
        # Only this market's channels: a stray event of another market is "unknown", not misparsed.
        self.builders = {c: BUILDERS[c] for c, s in CHANNELS.items() if market in s.markets}
        self.frame_builders = {c: FRAME_BUILDERS[c] for c in self.builders}
        self.malformed_events = 0
        self.unknown_events = 0
        self._unknown_seen: set[str] = set()
        self._per_item_frames = 0
        self._typed = _typed_market(market) if typed and self.builders else None
        self._untyped_frames = 0
        self._guess: Any = None  # struct type of the last one-channel frame
        self._mixed_typed_frames = 0

    def __repr__(self) -> str:
        return (f"FrameParser(market={self.market!r}, channels={sorted(self.builders)}, "
                f"typed={self._typed is not None})")

    def parse(self, raw: bytes | str, received_ns: int) -> tuple[list[Row], list[dict[str, Any]]]:
        """``(rows, statuses)`` of one frame (rows built now; see :meth:`parse_frame`)."""
        data, statuses = self.parse_frame(raw, received_ns)
        return (data.rows() if isinstance(data, TypedFrame) else data), statuses

    def parse_frame(self, raw: bytes | str, received_ns: int) -> tuple[TypedFrame | list[Row], list[dict[str, Any]]]:
        """Like :meth:`parse`, but a frame the typed decoder accepts comes back as a :class:`TypedFrame`
        (rows built by its consumer); others as a list of rows. Either way ``len()`` is the event count."""
        typed = self._typed
        if typed is not None:
            if self._untyped_frames:
                self._untyped_frames -= 1
            else:
                # Fastest path: the whole frame decoded in C into typed structs (validated, nothing else
                # built), first as a frame of the last frame's channel (the usual case), else of any channel.
                guess = self._guess
                if guess is not None and not self._mixed_typed_frames:
                    decode, build, kind = typed.single[guess]
                    try:
                        structs = decode(raw)
                    except msgspec.DecodeError:
                        pass  # another channel, a mixed frame, or a surprise: see below
                    else:
                        if structs:
                            return TypedFrame(structs, received_ns, build, kind), []
                        return [], []
                try:
                    structs = typed.decode(raw)
                except msgspec.DecodeError:  # ValidationError is one too: take the reference path
                    self._untyped_frames = self.UNTYPED_BACKOFF
                else:
                    if not structs:
                        return [], []
                    first = type(structs[0])
                    if self._mixed_typed_frames:
                        self._mixed_typed_frames -= 1
                    elif all(map(first.__instancecheck__, structs)):  # one channel after all: guess it next
                        self._guess = first
                        decode, build, kind = typed.single[first]
                        return TypedFrame(structs, received_ns, build, kind), []
                    else:  # channels mixed: skip the one-channel try for a while
                        self._mixed_typed_frames = self.MIXED_BACKOFF
                    return TypedFrame(structs, received_ns, typed.builders[first]), []
        return self._parse_untyped(raw, received_ns)

    def _parse_untyped(self, raw: bytes | str, received_ns: int) -> tuple[list[Row], list[dict[str, Any]]]:
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FrameError(f"not JSON ({exc})") from None
        if type(items) is not list:
            raise FrameError(f"expected a JSON array, got {type(items).__name__}")
        if self._per_item_frames:
            self._per_item_frames -= 1
        else:
            try:
                # Fastest path: a frame of one channel (the usual case), built in one comprehension.
                rows = self.frame_builders[items[0]["ev"]](items, received_ns)
                if len(rows) == len(items):
                    return rows, []
                self._per_item_frames = self.MIXED_BACKOFF
            except (KeyError, TypeError, AttributeError, ValueError, IndexError):
                pass
        builders = self.builders
        try:
            # Fast path: a pure data frame, possibly of several channels. Any surprise (status, unknown channel, missing key,
            # non-object item) falls through to the careful per-item path below.
            return [builders[d["ev"]](d, received_ns) for d in items], []
        except (KeyError, TypeError, AttributeError, ValueError):
            return self._parse_slow(items, received_ns)

    def _parse_slow(self, items: list[Any], received_ns: int) -> tuple[list[Row], list[dict[str, Any]]]:
        events: list[Row] = []
        statuses: list[dict[str, Any]] = []
        for d in items:
            if not isinstance(d, dict):
                self.malformed_events += 1
                continue
            ev = d.get("ev")
            if ev == STATUS_EV:
                statuses.append(d)
                continue
            build = self.builders.get(ev)  # type: ignore[arg-type]
            if build is None:
                self.unknown_events += 1
                if ev not in self._unknown_seen and len(self._unknown_seen) < 100:
                    self._unknown_seen.add(str(ev))
                    log.debug("%s: ignoring events of unknown channel %r", self.market, ev)
                continue
            try:
                events.append(build(d, received_ns))
            except (KeyError, TypeError, ValueError):
                self.malformed_events += 1
        return events, statuses


def status_text(status: Mapping[str, Any]) -> tuple[str, str]:
    """``(status, message)`` of a control message, both strings."""
    return str(status.get("status", "")), str(status.get("message", ""))
