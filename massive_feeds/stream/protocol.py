"""Massive's WebSocket wire protocol in one place: markets, channels, control messages, and the one
typed decoder that turns wire JSON into :class:`~massive_feeds.stream.events.StreamEvent`.

See ``massive-api-facts.md`` §2. Every server frame is a JSON array of objects keyed by ``ev``;
control messages have ``ev == "status"``. Channel letters mean different things per market
(``A`` = per-second for stocks but ``XA``/``CA`` = per-minute for crypto/forex), which the
:data:`CHANNELS` table below pins down once.

**One decoder.** Each row of :data:`CHANNELS` becomes a ``msgspec`` struct (:func:`wire_struct`): its
attributes are :class:`StreamEvent` field names read from the row's wire keys, each typed by what the
field *is* (:data:`FIELD_TYPES`: prices finite and > 0, sizes finite and >= 0, times integer epoch ms
between 2000 and 2100, symbols non-empty strings, exchange ids small non-negative integers; an
aggregate's high and low enclose its open and close). The StreamEvent fields a channel does not carry are class attributes (``nan``/``0``), so every struct reads
like an event. A market's structs form one union tagged by ``ev``, decoded in C by one decoder:
decoding *is* validating, and unknown keys are skipped unread.

**One fallback.** A frame the decoder refuses (a status message, an unknown channel, a value of the
wrong type or out of range, a missing key) is split into its items and each item goes through the
same decoder: the items it accepts are kept in order; a status item is handed back as a dict; an
item of a channel we do not parse is counted in ``unknown_events``; an item of one of our channels
that fails is counted in ``malformed_by_kind[ev]``, logged once per ``ev``, and never delivered. One
bad event never costs the good events of its frame.

Events are built from the structs by whoever consumes the frame (:class:`TypedFrame`), on their own
thread: the decoded structs are invisible to the garbage collector, queued tuple-subclass instances
are not (see :mod:`.hub`).

**Adding an event kind** (e.g. the futures feed's ``AM``/``T``/``Q``): add a :class:`ChannelSpec` row to
:data:`CHANNELS` (wire code, event kind, markets, the symbol's wire key, event field → wire key, and
the keys an event must have), and the ``(market, kind) → code`` entries to :data:`SUBSCRIBE_CHANNELS`.
Wire keys may have any name; a field whose documented type differs from its role's (forex ``C`` sends
its exchange id as a string of digits) gets an entry in ``types``. A channel whose symbols need
rewriting gets a ``ticker`` function. A field with no role yet needs a :class:`StreamEvent` field and
a :data:`FIELD_TYPES` entry. Nothing else changes: no new parser.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from math import nan
from typing import Annotated, Any, Callable, Iterable, Iterator, Mapping, Sequence

import msgspec
import orjson

from ..errors import InvalidInputError
from ..futures_symbols import is_continuous
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

MARKETS: tuple[str, ...] = ("stocks", "options", "indices", "forex", "crypto", "futures")

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


def status_text(status: Mapping[str, Any]) -> tuple[str, str]:
    """``(status, message)`` of a control message, both strings."""
    return str(status.get("status", "")), str(status.get("message", ""))


# --- symbols --------------------------------------------------------------------------------------
def market_of(ticker: str) -> str:
    """The WebSocket cluster (URL path) a normalised ticker streams on."""
    return asset_class(ticker)


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


class _TickerCache(dict[str, str]):
    """wire pair → ticker, computed once per pair (the hot path then pays one dict lookup). Bounded: a
    server inventing pairs cannot grow it without limit (past the bound, pairs are converted each time)."""

    LIMIT = 100_000

    def __init__(self, market: str) -> None:
        super().__init__()
        self.market = market

    def __missing__(self, wire: str) -> str:
        value = ticker_from_wire(self.market, wire)
        if len(self) < self.LIMIT:
            self[wire] = value
        return value


# --- what each event field is: its type on the wire ----------------------------------------------------
#: Epoch milliseconds between 2000-01-01 and 2100-01-01: a time in seconds or nanoseconds, or a float, is refused.
MIN_MS, MAX_MS = 946_684_800_000, 4_102_444_800_000
_INT64 = 2**63 - 1


# A number is kept as sent (``int`` or ``float``). Floats are finite (msgspec refuses ``1e400``; JSON has no
# NaN), ints fit int64; ``null``, strings and booleans are refused.
PRICE: Any = Annotated[int, msgspec.Meta(gt=0, le=_INT64)] | Annotated[float, msgspec.Meta(gt=0)]
SIZE: Any = Annotated[int, msgspec.Meta(ge=0, le=_INT64)] | Annotated[float, msgspec.Meta(ge=0)]
#: A quote side of 0 means "no bid" / "no ask" (options quotes carry it), so quotes allow 0; never < 0.
QUOTE_PRICE = SIZE
MILLIS = Annotated[int, msgspec.Meta(ge=MIN_MS, lt=MAX_MS)]
EXCHANGE = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
SYMBOL = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: forex ``C`` sends its exchange id as a string of digits ("44"); it becomes an int when decoded.
DIGITS = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,9}$")]

#: The wire type of every StreamEvent field a channel can carry (kind and received_ns never come from the wire).
FIELD_TYPES: dict[str, Any] = {
    "symbol": SYMBOL, "time_ms": MILLIS, "end_ms": MILLIS, "exchange": EXCHANGE,
    "price": PRICE, "open": PRICE, "high": PRICE, "low": PRICE, "close": PRICE, "vwap": PRICE,
    "bid": QUOTE_PRICE, "ask": QUOTE_PRICE,
    "size": SIZE, "bid_size": SIZE, "ask_size": SIZE, "volume": SIZE,
}
#: What a field is when the event does not carry it.
ABSENT: dict[str, Any] = {name: 0 if name in ("end_ms", "exchange") else nan for name in FIELD_TYPES
                          if name not in ("symbol", "time_ms")}


# --- channels ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelSpec:
    """How one wire channel maps onto :class:`StreamEvent` (see the module docstring).

    ``fields`` maps event field → wire key; keys listed in ``required`` must be present (an event
    without them is malformed), the others default to :data:`ABSENT`. ``types`` overrides a field's
    wire type (:data:`FIELD_TYPES`); ``ticker`` rewrites the wire symbol into our ticker form.
    """

    channel: str
    kind: str
    markets: tuple[str, ...]
    symbol_key: str
    fields: Mapping[str, str]
    required: frozenset[str] = field(default_factory=frozenset)
    types: Mapping[str, Any] = field(default_factory=dict)
    ticker: Callable[[str], str] | None = None


_AGG_FIELDS = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v", "vwap": "vw",
               "time_ms": "s", "end_ms": "e"}
_AGG_REQUIRED = frozenset({"o", "h", "l", "c", "s"})
_TRADE_FIELDS = {"price": "p", "size": "s", "time_ms": "t", "exchange": "x"}
_TRADE_REQUIRED = frozenset({"p", "t"})
_QUOTE_REQUIRED = frozenset({"bp", "ap", "t"})
_EQUITY = ("stocks", "options")
_FUTURES_AGG = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v", "time_ms": "s", "end_ms": "e"}
_FOREX = _TickerCache("forex").__getitem__
_CRYPTO = _TickerCache("crypto").__getitem__

#: Every channel we understand. The single source of wire names and types; one wire code per market.
CHANNELS: tuple[ChannelSpec, ...] = (
    # stocks / options
    ChannelSpec("T", TRADE, _EQUITY, "sym", _TRADE_FIELDS, _TRADE_REQUIRED),
    ChannelSpec("Q", QUOTE, _EQUITY, "sym",
                {"bid": "bp", "ask": "ap", "bid_size": "bs", "ask_size": "as", "time_ms": "t", "exchange": "bx"},
                _QUOTE_REQUIRED),
    ChannelSpec("A", AGG_SECOND, _EQUITY + ("indices",), "sym", _AGG_FIELDS, _AGG_REQUIRED),
    ChannelSpec("AM", AGG_MINUTE, _EQUITY + ("indices",), "sym", _AGG_FIELDS, _AGG_REQUIRED),
    # indices
    ChannelSpec("V", VALUE, ("indices",), "T", {"price": "val", "time_ms": "t"}, frozenset({"val", "t"})),
    # forex: the quote's pair key is "p", the aggregates' is "pair"; CA is per-minute, CAS per-second
    ChannelSpec("C", QUOTE, ("forex",), "p", {"bid": "b", "ask": "a", "time_ms": "t", "exchange": "x"},
                frozenset({"b", "a", "t"}), types={"exchange": EXCHANGE | DIGITS}, ticker=_FOREX),
    ChannelSpec("CA", AGG_MINUTE, ("forex",), "pair", _AGG_FIELDS, _AGG_REQUIRED, ticker=_FOREX),
    ChannelSpec("CAS", AGG_SECOND, ("forex",), "pair", _AGG_FIELDS, _AGG_REQUIRED, ticker=_FOREX),
    # crypto: XA is per-minute, XAS per-second
    ChannelSpec("XT", TRADE, ("crypto",), "pair", _TRADE_FIELDS, _TRADE_REQUIRED, ticker=_CRYPTO),
    ChannelSpec("XQ", QUOTE, ("crypto",), "pair",
                {"bid": "bp", "ask": "ap", "bid_size": "bs", "ask_size": "as", "time_ms": "t", "exchange": "x"},
                _QUOTE_REQUIRED, ticker=_CRYPTO),
    ChannelSpec("XA", AGG_MINUTE, ("crypto",), "pair", _AGG_FIELDS, _AGG_REQUIRED, ticker=_CRYPTO),
    ChannelSpec("XAS", AGG_SECOND, ("crypto",), "pair", _AGG_FIELDS, _AGG_REQUIRED, ticker=_CRYPTO),
    # futures (the /futures cluster; docs pages massive.com/docs/websocket/futures/*, their examples in
    # tests/fixtures/real/ws/futures_docs_examples.json): aggregates carry dollar volume "dv" and trade count "n"
    # but no "vw" (none is derived: the docs example's dv / v is no price); a trade's "q" and a quote's "bt"/"at"
    # are not carried; a quote's empty book side is a missing price (NaN, as on REST)
    ChannelSpec("T", TRADE, ("futures",), "sym", {"price": "p", "size": "s", "time_ms": "t"}, _TRADE_REQUIRED),
    ChannelSpec("Q", QUOTE, ("futures",), "sym",
                {"bid": "bp", "ask": "ap", "bid_size": "bs", "ask_size": "as", "time_ms": "t"}, frozenset({"t"})),
    ChannelSpec("A", AGG_SECOND, ("futures",), "sym", _FUTURES_AGG, _AGG_REQUIRED),
    ChannelSpec("AM", AGG_MINUTE, ("futures",), "sym", _FUTURES_AGG, _AGG_REQUIRED),
)

#: (market, kind) → channel to subscribe. Indices have no trades or quotes: their value stream (V)
#: stands in for "trade" so a default ("quote", "trade") subscription still yields prices.
SUBSCRIBE_CHANNELS: dict[tuple[str, str], str] = {
    **{(m, k): c for m in _EQUITY for k, c in ((TRADE, "T"), (QUOTE, "Q"), (AGG_SECOND, "A"), (AGG_MINUTE, "AM"))},
    ("indices", VALUE): "V", ("indices", TRADE): "V", ("indices", AGG_SECOND): "A", ("indices", AGG_MINUTE): "AM",
    ("forex", QUOTE): "C", ("forex", AGG_MINUTE): "CA", ("forex", AGG_SECOND): "CAS",
    ("crypto", TRADE): "XT", ("crypto", QUOTE): "XQ", ("crypto", AGG_MINUTE): "XA", ("crypto", AGG_SECOND): "XAS",
    ("futures", TRADE): "T", ("futures", QUOTE): "Q", ("futures", AGG_MINUTE): "AM", ("futures", AGG_SECOND): "A",
}


def subscription_params(ticker: str, kinds: Iterable[str]) -> list[str]:
    """``("AAPL", ["quote", "trade"])`` → ``["Q.AAPL", "T.AAPL"]``; ``X:BTCUSD`` → ``XQ.BTC-USD`` …

    Kinds a market does not carry (trades on forex) are skipped; if none is left the symbol cannot be
    streamed that way and an :class:`InvalidInputError` says which kinds it supports.
    """
    market = market_of(ticker)
    if market == "futures" and is_continuous(ticker):
        raise InvalidInputError(f"{ticker} is a continuous series: stream one of its contracts (ESZ4 …); "
                                "fetch_data resolves which one it holds")
    wire = ws_symbol(ticker)
    channels = list(dict.fromkeys(SUBSCRIBE_CHANNELS[(market, k)] for k in kinds
                                  if (market, k) in SUBSCRIBE_CHANNELS))
    if not channels:
        offered = sorted({k for (m, k) in SUBSCRIBE_CHANNELS if m == market})
        raise InvalidInputError(f"{ticker} ({market}) streams none of {list(kinds)}; it offers {offered}")
    return [f"{c}.{wire}" for c in channels]


# --- the typed structs --------------------------------------------------------------------------------
def _rewrite(ticker: Callable[[str], str]) -> Callable[[Any], None]:
    """The wire symbol becomes our ticker (and an exchange id sent as digits an int)."""
    def rewrite(s: Any) -> None:
        s.symbol = ticker(s.symbol)
        if type(s.exchange) is str:
            s.exchange = int(s.exchange)
    return rewrite


def _check_bar(s: Any) -> None:
    """An aggregate's high and low enclose its open and close, and its window does not end before it starts."""
    if not (s.low <= s.open <= s.high and s.low <= s.close <= s.high):
        raise ValueError(f"high {s.high} and low {s.low} do not enclose open {s.open} and close {s.close}")
    if s.end_ms and s.end_ms < s.time_ms:
        raise ValueError(f"the window ends ({s.end_ms}) before it starts ({s.time_ms})")


def _post_init(spec: ChannelSpec) -> Callable[[Any], None] | None:
    """``__post_init__`` of a channel's struct, if it needs one: msgspec runs it while decoding, and an
    exception it raises makes the event malformed."""
    steps = ([_rewrite(spec.ticker)] if spec.ticker is not None else []) + \
        ([_check_bar] if {"open", "high", "low", "close"} <= spec.fields.keys() else [])
    if not steps:
        return None

    def __post_init__(self: Any) -> None:
        for step in steps:
            step(self)
    return __post_init__


def wire_struct(spec: ChannelSpec) -> type:
    """The ``msgspec`` struct of one channel: tagged by ``ev``, one attribute per StreamEvent field the
    channel carries (renamed from its wire key, typed by :data:`FIELD_TYPES`), the other fields as class
    attributes; ``kind`` too. ``gc=False``: the structs hold only atoms, so the collector never scans them."""
    required: list[tuple[str, Any, Any]] = [("symbol", SYMBOL, msgspec.field(name=spec.symbol_key))]
    optional: list[tuple[str, Any, Any]] = []
    for name, key in spec.fields.items():
        typ = spec.types.get(name, FIELD_TYPES[name])
        if key in spec.required:
            required.append((name, typ, msgspec.field(name=key)))
        else:
            optional.append((name, typ, msgspec.field(name=key, default=ABSENT[name])))
    namespace: dict[str, Any] = {"kind": spec.kind, **{n: v for n, v in ABSENT.items() if n not in spec.fields}}
    post_init = _post_init(spec)
    if post_init is not None:
        namespace["__post_init__"] = post_init
    struct: type = msgspec.defstruct(f"Wire{spec.channel}", required + optional, tag_field="ev", tag=spec.channel,
                                     gc=False, namespace=namespace)
    return struct


# --- building events from structs ---------------------------------------------------------------------
Row = tuple[Any, ...]
Build = Callable[[list[Any], int, str], list[StreamEvent]]


# Three layouts written out (the usual frame holds one channel; reading only the attributes its kind
# carries is the cheapest way to build its events), and one for any struct (mixed frames, new kinds).
def _trades(structs: list[Any], r: int, kind: str, _new: Any = tuple.__new__, SE: Any = StreamEvent,
            nan: float = nan) -> list[StreamEvent]:
    return [_new(SE, (kind, s.symbol, s.time_ms, r, s.price, s.size, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan,
                      0, s.exchange)) for s in structs]


def _quotes(structs: list[Any], r: int, kind: str, _new: Any = tuple.__new__, SE: Any = StreamEvent,
            nan: float = nan) -> list[StreamEvent]:
    return [_new(SE, (kind, s.symbol, s.time_ms, r, nan, nan, s.bid, s.ask, s.bid_size, s.ask_size, nan, nan, nan,
                      nan, nan, nan, 0, s.exchange)) for s in structs]


def _bars(structs: list[Any], r: int, kind: str, _new: Any = tuple.__new__, SE: Any = StreamEvent,
          nan: float = nan) -> list[StreamEvent]:
    return [_new(SE, (kind, s.symbol, s.time_ms, r, nan, nan, nan, nan, nan, nan, s.open, s.high, s.low, s.close,
                      s.volume, s.vwap, s.end_ms, 0)) for s in structs]


def _any(structs: list[Any], r: int, kind: str | None = None, _new: Any = tuple.__new__,
         SE: Any = StreamEvent) -> list[StreamEvent]:
    return [_new(SE, (s.kind, s.symbol, s.time_ms, r, s.price, s.size, s.bid, s.ask, s.bid_size, s.ask_size, s.open,
                      s.high, s.low, s.close, s.volume, s.vwap, s.end_ms, s.exchange)) for s in structs]


_LAYOUTS: tuple[tuple[frozenset[str], Build], ...] = (
    (frozenset({"symbol", "time_ms", "price", "size", "exchange"}), _trades),
    (frozenset({"symbol", "time_ms", "bid", "ask", "bid_size", "ask_size", "exchange"}), _quotes),
    (frozenset({"symbol", "time_ms", "open", "high", "low", "close", "volume", "vwap", "end_ms"}), _bars),
)


def _layout(struct: type) -> Build:
    """The cheapest builder that reads every field ``struct`` carries."""
    carried = {f.name for f in msgspec.structs.fields(struct)}
    return next((build for keys, build in _LAYOUTS if carried <= keys), _any)


def _event_ms(s: Any) -> int:
    """When an event happened: its time, or an aggregate's window end."""
    t: int = s.time_ms
    e: int = s.end_ms
    return t if t > e else e


class TypedFrame(Sequence[Row]):
    """The data of one frame as decoded wire structs: no per-event Python object is built on the
    socket thread; whoever consumes the frame builds its events (:meth:`events`, :meth:`deliver`),
    a fresh list each call.

    Why: events queued between the socket thread and a listener thread would be GC-tracked tuples,
    and a backlog of them makes every collection walk all of them (a third of the CPU of a threaded
    firehose); the structs are untracked. Building where the events are consumed also keeps them in
    one core's cache. As a ``Sequence`` it reads like the list of rows (plain tuples in StreamEvent
    field order) it stands for: ``len``, indexing and iteration.
    """

    __slots__ = ("structs", "received_ns", "kind", "_build", "_rows")

    def __init__(self, structs: list[Any], received_ns: int, kind: str | None = None, build: Build = _any) -> None:
        self.structs = structs
        self.received_ns = received_ns
        #: the kind of every event when the frame holds one channel only, else ``None``
        self.kind = kind
        self._build = build
        self._rows: list[Row] | None = None

    def __repr__(self) -> str:
        return f"TypedFrame({len(self.structs)} events, kind={self.kind!r}, received_ns={self.received_ns})"

    def events(self) -> list[StreamEvent]:
        """The frame's :class:`StreamEvent` objects, built now."""
        return self._build(self.structs, self.received_ns, self.kind)  # type: ignore[arg-type]

    def rows(self) -> list[Row]:
        """The frame's events as plain tuples in :class:`StreamEvent` field order."""
        return [tuple(ev) for ev in self.events()]

    def deliver(self, fn: Callable[[StreamEvent], Any], failed: Callable[[Exception], Any]) -> None:
        """``fn(event)`` for each event in order; an exception ``fn`` raises is passed to ``failed`` and
        delivery goes on with the next event."""
        for ev in self.events():
            try:
                fn(ev)
            except Exception as exc:  # noqa: BLE001 - isolate the consumer, as the listener's own loop does
                failed(exc)

    def first_ms(self) -> int:
        """Provider time of the first event (aggregates: window end)."""
        return _event_ms(self.structs[0])

    def last_ms(self) -> int:
        return _event_ms(self.structs[-1])

    def __len__(self) -> int:
        return len(self.structs)

    def __getitem__(self, index: Any) -> Any:
        rows = self._rows
        if rows is None:
            rows = self._rows = self.rows()
        return rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows() if self._rows is None else self._rows)


class _MarketDecoder:
    """The decoders of one market: a frame into its channels' structs, one item likewise, a frame into
    its raw items (the fallback), and each struct type's builder."""

    def __init__(self, market: str) -> None:
        specs = [spec for spec in CHANNELS if market in spec.markets]
        codes = [spec.channel for spec in specs]
        if len(set(codes)) != len(codes):
            raise ValueError(f"{market}: two CHANNELS rows share a wire code: {codes}")
        self.channels = frozenset(codes)
        structs = [wire_struct(spec) for spec in specs]
        union: Any = structs[0]
        for struct in structs[1:]:
            union = union | struct
        self.frame = msgspec.json.Decoder(list[union]).decode
        self.item = msgspec.json.Decoder(union).decode
        self.builders: dict[type, Build] = {struct: _layout(struct) for struct in structs}


#: Every market some channel streams on (a market is added by adding its channels).
_DECODERS: dict[str, _MarketDecoder] = {market: _MarketDecoder(market)
                                        for market in dict.fromkeys(m for spec in CHANNELS for m in spec.markets)}
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw]).decode


class _Channel(msgspec.Struct):
    """Just the ``ev`` of an item the decoder refused (the other keys are skipped unread)."""

    ev: Any = None


_EV = msgspec.json.Decoder(_Channel).decode
#: ``malformed_by_kind`` key of an item that is not a JSON object at all.
NOT_AN_OBJECT = "(not an object)"


class FrameError(ValueError):
    """A frame that is not a JSON array."""


class FrameParser:
    """Turns one wire frame into ``(TypedFrame, statuses)`` (see the module docstring).

    ``statuses`` are the raw ``{"ev": "status", ...}`` dicts (rare; handled by the connection). Items
    that fail typing are skipped and counted in :attr:`malformed_events` and, per wire ``ev``, in
    :attr:`malformed_by_kind` (items that are not objects under :data:`NOT_AN_OBJECT`); items of
    channels we do not parse in :attr:`unknown_events`. A frame that is not a JSON array raises
    :class:`FrameError` (the caller counts, warns and skips it). One parser per connection: its
    counters are not locked.
    """

    __slots__ = ("market", "_decoder", "malformed_events", "malformed_by_kind", "unknown_events", "_unknown_seen")

    def __init__(self, market: str) -> None:
        if market not in _DECODERS:
            raise InvalidInputError(f"no WebSocket channels are known for market {market!r}; "
                                    f"streamed markets: {sorted(_DECODERS)}")
        self.market = market
        # Only this market's channels: a stray event of another market is "unknown", not misparsed.
        self._decoder = _DECODERS[market]
        self.malformed_events = 0
        self.malformed_by_kind: dict[str, int] = {}
        self.unknown_events = 0
        self._unknown_seen: set[str] = set()

    def __repr__(self) -> str:
        return f"FrameParser(market={self.market!r}, channels={sorted(self._decoder.channels)})"

    def parse(self, raw: bytes | str, received_ns: int) -> tuple[list[Row], list[dict[str, Any]]]:
        """``(rows, statuses)`` of one frame, rows as plain tuples in StreamEvent field order."""
        frame, statuses = self.parse_frame(raw, received_ns)
        return frame.rows(), statuses

    def parse_frame(self, raw: bytes | str, received_ns: int) -> tuple[TypedFrame, list[dict[str, Any]]]:
        """The frame's data as a :class:`TypedFrame` (events built by its consumer) and its statuses."""
        try:
            structs = self._decoder.frame(raw)
        except msgspec.DecodeError:  # a ValidationError is one too
            return self._per_item(raw, received_ns)
        return self._typed(structs, received_ns), []

    def _typed(self, structs: list[Any], received_ns: int) -> TypedFrame:
        if not structs:
            return TypedFrame(structs, received_ns)
        first = type(structs[0])
        if all(map(first.__instancecheck__, structs)):  # one channel (the usual frame): its kind is known
            return TypedFrame(structs, received_ns, first.kind, self._decoder.builders[first])
        return TypedFrame(structs, received_ns)

    def _per_item(self, raw: bytes | str, received_ns: int) -> tuple[TypedFrame, list[dict[str, Any]]]:
        """The fallback: each item through the same decoder; refusals sorted into statuses, unknown
        channels and malformed events."""
        try:
            items = _ITEMS(raw)
        except msgspec.DecodeError as exc:
            raise FrameError(f"not a JSON array ({exc})") from None
        decode = self._decoder.item
        structs: list[Any] = []
        statuses: list[dict[str, Any]] = []
        for item in items:
            try:
                structs.append(decode(item))
            except msgspec.ValidationError as exc:
                self._refused(item, str(exc), statuses)
        return self._typed(structs, received_ns), statuses

    def _refused(self, item: msgspec.Raw, why: str, statuses: list[dict[str, Any]]) -> None:
        try:
            ev = _EV(item).ev
        except msgspec.ValidationError:
            self._malformed(NOT_AN_OBJECT, why)
            return
        if ev == STATUS_EV:
            try:
                statuses.append(msgspec.json.decode(item))
            except msgspec.ValidationError as exc:  # e.g. a number past float range in it
                self._malformed(STATUS_EV, str(exc))
        elif type(ev) is str and ev in self._decoder.channels:
            self._malformed(ev, why)
        else:
            self.unknown_events += 1
            if str(ev) not in self._unknown_seen and len(self._unknown_seen) < 100:
                self._unknown_seen.add(str(ev))
                log.debug("%s: ignoring events of unknown channel %r", self.market, ev)

    def _malformed(self, kind: str, why: str) -> None:
        self.malformed_events += 1
        seen = self.malformed_by_kind.get(kind, 0)
        self.malformed_by_kind[kind] = seen + 1
        if not seen:  # once per kind: a feed sending nothing but bad events must not flood the log
            log.warning("%s: skipped a malformed %s event (%s); it is not delivered, and further malformed %s "
                        "events are only counted (stats: malformed_by_kind)", self.market, kind, why, kind)

