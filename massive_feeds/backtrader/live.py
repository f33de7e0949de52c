"""Live and recorded sessions as a feed source: stream events → bars → Backtrader statuses.

:class:`StreamSource` reads any *event source* — anything with ``add_listener(fn, batched=True,
symbols=[…])`` / ``remove_listener(listener)`` delivering :mod:`massive_feeds.stream.events` records:
the :class:`~massive_feeds.stream.MassiveConnector` (live) or a
:class:`~massive_feeds.record.RecordingSource` (replay of a recording). Both go through this one
state machine, so a strategy validated on a recording sees exactly what it would have seen live,
except for pacing.

States and the notices they queue (Backtrader's names)::

    CONNECTING --subscribed--> CONNECTED --backfill?--> DELAYED (REST bars) --first stream bar--> LIVE
    LIVE --disconnected/slow_consumer/force_disconnect--> CONNBROKEN --reconnected--> CONNECTED
         --gap event: REST backfill of the hole--> DELAYED --next stream bar--> LIVE
    any --stopped/auth_failed/max_connections/replay finished--> (last bar flushed) DISCONNECTED, END
    subscribe refused / server error naming our symbol --> NOTSUBSCRIBED, END

"Now" is the *market* clock: by default the time of the newest event received plus the wall time
elapsed since it arrived (≈ the wall clock against Massive.com; never ahead of a sandbox or replayed
market running at its own time and speed). The stream starts in the bucket of the first data event
received after subscribing; the initial backfill ends where that bucket starts. When no event comes within
``start_wait`` seconds (a closed market, an idle symbol), the service's own time (``/v1/marketstatus/now``,
asked once) places the start instead, and the market clock runs on from it. An explicit ``clock``
replaces this estimate (tests pass the sandbox's clock).

The bucket the stream starts or resumes in is *held*: the ticks before the (re)connect never reached
us, so a bar built from the rest would differ from REST's (measured: 9 of 27 bars over 10 drops).
Its events are ignored and its bar is fetched over REST once it is over (the first event of a later
bucket, or the clock past its end plus ``grace_ms``). Every bar the feed emits is therefore REST's bar
or a bar built from all of its bucket's ticks; if REST has no bar for the held bucket yet, the bucket
is skipped with a warning (counted in ``stats["resume_skipped"]``), never filled from partial ticks.

:class:`BarBuilder` turns trades (or index values, or minute aggregates) into bars of the feed's
interval on epoch-aligned buckets (New York days for daily bars), the same buckets as REST and the
recorder's ``ticks_to_bars``; the last quote of a bucket gives its bid/ask.
"""

from __future__ import annotations

import enum
import logging
import math
import queue
import re
import time
from collections import deque
from typing import Any, Callable, Final, Literal, Sequence

import backtrader as bt
import numpy as np
import pandas as pd

from ..buckets import fixed_buckets, ny_day_buckets
from ..errors import MassiveError
from ..schema import asset_class, ws_symbol
from ..stream import events as ev_mod
from .bars import BarFormat, LiveBar
from .sources import END, Notice, SourceItem, wall_ms

log = logging.getLogger(__name__)

DB = bt.feed.DataBase
LiveBars = Literal["trades", "aggregates"]
STREAM_CLOCK: Final = "stream"  # StreamSource(clock=...): "now" from the stream's own event times
#: StreamSource(clock=...): "now" is the newest event's time, never extrapolated with the wall clock, so
#: bars complete on the events alone (a replay that must decide exactly as its live session did)
EVENTS_CLOCK: Final = "events"
Backfill = Callable[[pd.Timestamp, pd.Timestamp], pd.DataFrame]

_BROKEN = {ev_mod.DISCONNECTED, ev_mod.SLOW_CONSUMER, ev_mod.FORCE_DISCONNECT}
_FATAL = {ev_mod.STOPPED, ev_mod.AUTH_FAILED, ev_mod.MAX_CONNECTIONS}
_CONNECTED = {ev_mod.CONNECTED, ev_mod.RECONNECTED}
_PRINTS = (ev_mod.TRADE, ev_mod.VALUE)
_AGGS = (ev_mod.AGG_MINUTE, ev_mod.AGG_SECOND)


# --- ticks → bars ---------------------------------------------------------------------------------
class BarBuilder:
    """Builds one symbol's bars from stream events, in arrival order.

    Args:
        width_ms: bar width; ``None`` means New York calendar days (Massive's day bars).
        mode: ``"trades"`` — trades and index values make OHLCV; ``"aggregates"`` — second/minute
            aggregates are combined into bars (a 1-minute feed then gets Massive's own minute bars).
        quote_only_bars: also make a bar (OHLC from the mid) for buckets with quotes but no print,
            as the recorder does; off by default so live bars match REST, which has no such bars.

    Events older than the bar being built are dropped and counted in ``late`` (a bar never changes
    after it was handed out).
    """

    def __init__(self, width_ms: int | None, mode: LiveBars = "trades", quote_only_bars: bool = False) -> None:
        if mode not in ("trades", "aggregates"):
            raise ValueError(f"mode must be 'trades' or 'aggregates', not {mode!r}")
        self.width_ms = width_ms
        self.mode = mode
        self.quote_only_bars = quote_only_bars
        self.late = 0
        self._range = (0, 0)  # [start, end) of the bucket cached for day buckets
        self._reset_bar(None)
        self._done_until = -1  # bucket starts <= this were handed out

    def __repr__(self) -> str:
        return (f"BarBuilder(width_ms={self.width_ms}, mode={self.mode!r}, building={self._bucket}, "
                f"late={self.late})")

    # buckets
    def bucket(self, ms: int) -> tuple[int, int]:
        """``(start, end)`` in epoch ms of the bar containing ``ms``."""
        if self.width_ms:
            start = fixed_buckets(ms, self.width_ms)
            return start, start + self.width_ms
        lo, hi = self._range
        if not lo <= ms < hi:  # a new New York day (a day lasts 23 to 25 hours): its bounds, once a day
            lo_ns = int(ny_day_buckets(np.array([ms * 1_000_000]))[0])
            hi_ns = int(ny_day_buckets(np.array([lo_ns + 25 * 3_600_000_000_000]))[0])
            lo, hi = lo_ns // 1_000_000, hi_ns // 1_000_000
            self._range = (lo, hi)
        return lo, hi

    def _reset_bar(self, bucket: tuple[int, int] | None) -> None:
        self._bucket = bucket
        self._o = self._h = self._l = self._c = math.nan
        self._vol = self._notional = 0.0
        self._n = 0
        self._bid = self._ask = math.nan
        self._mid = [math.nan, -math.inf, math.inf, math.nan]  # open, high, low, close of the mid

    # events
    def add(self, ev: Any) -> list[LiveBar]:
        """Feed one event; returns the bars it completed (usually none, at most two)."""
        kind = ev.kind
        if self.mode == "trades":
            if kind not in _PRINTS and kind != ev_mod.QUOTE:
                return []
        elif kind not in _AGGS and kind != ev_mod.QUOTE:
            return []
        bucket = self.bucket(ev.time_ms)
        if bucket[0] <= self._done_until or (self._bucket is not None and bucket[0] < self._bucket[0]):
            self.late += 1
            return []
        out: list[LiveBar] = []
        if self._bucket is None or bucket[0] > self._bucket[0]:
            out = self._complete()
            self._reset_bar(bucket)
        if kind == ev_mod.QUOTE:
            self._quote(ev.bid, ev.ask)
        elif kind in _AGGS:
            self._aggregate(ev)
            if (ev.end_ms or ev.time_ms + 60_000) >= bucket[1]:
                out += self._complete()  # the aggregate closing the window closes our bar: no waiting
        else:
            self._print(ev.price, ev.size)
        return out

    def _print(self, price: float, size: float) -> None:
        if price != price:  # NaN price: nothing to print
            return
        size = 0.0 if size != size else float(size)
        if self._n == 0:
            self._o = self._h = self._l = price
        elif price > self._h:
            self._h = price
        elif price < self._l:
            self._l = price
        self._c = price
        self._vol += size
        self._notional += price * size
        self._n += 1

    def _aggregate(self, ev: Any) -> None:
        if ev.close != ev.close:
            return
        if self._n == 0:
            self._o, self._h, self._l = ev.open, ev.high, ev.low
        else:
            self._h, self._l = max(self._h, ev.high), min(self._l, ev.low)
        self._c = ev.close
        vol = 0.0 if ev.volume != ev.volume else float(ev.volume)
        self._vol += vol
        self._notional += (ev.vwap if ev.vwap == ev.vwap else ev.close) * vol
        self._n += 1

    def _quote(self, bid: float, ask: float) -> None:
        self._bid, self._ask = bid, ask
        mid = (bid + ask) / 2
        if mid == mid:
            m = self._mid
            if m[0] != m[0]:
                m[0] = mid
            m[1], m[2], m[3] = max(m[1], mid), min(m[2], mid), mid

    # completion
    def _complete(self) -> list[LiveBar]:
        b = self._bucket
        if b is None:
            return []
        self._done_until = b[0]
        if self._n:
            vwap = self._notional / self._vol if self._vol > 0 else math.nan
            bar = LiveBar(b[0], self._o, self._h, self._l, self._c, self._vol, vwap,
                          self._n if self.mode == "trades" else 0, self._bid, self._ask)
        elif self.quote_only_bars and self._mid[0] == self._mid[0]:
            m = self._mid
            bar = LiveBar(b[0], m[0], m[1], m[2], m[3], 0.0, math.nan, 0, self._bid, self._ask)
        else:
            bar = None
        self._reset_bar(None)
        return [bar] if bar is not None else []

    def flush(self) -> list[LiveBar]:
        """Hand out the bar being built as it is (end of stream)."""
        return self._complete()

    def flush_due(self, now_ms: int) -> list[LiveBar]:
        """Hand out the bar being built if its bucket ended before ``now_ms`` (quiet markets)."""
        if self._bucket is not None and self._bucket[1] <= now_ms:
            return self._complete()
        return []

    def discard_before(self, ms: int) -> None:
        """Drop the bar being built if it started before ``ms`` (REST backfills that window), and
        ignore later events for those buckets."""
        if self._bucket is not None and self._bucket[0] < self.bucket(ms)[0]:
            self._reset_bar(None)
        self._done_until = max(self._done_until, self.bucket(ms)[0] - 1)

    @property
    def building(self) -> int | None:
        """Start (epoch ms) of the bar being built, if any."""
        return None if self._bucket is None else self._bucket[0]


# --- the state machine ------------------------------------------------------------------------------
class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    WAITING = "waiting"  # connected (and backfilled), no stream bar yet
    LIVE = "live"
    BROKEN = "broken"
    DONE = "done"


class StreamSource:
    """A feed source over an event source (see the module docstring for the states).

    Args:
        events: the event source (connector, recording replay, or any ``EventHub``).
        symbol: our ticker form (``AAPL``, ``X:BTCUSD``); only its events are read.
        builder: turns events into bars.
        subscribe / unsubscribe: start/stop the flow (``connector.start_stream`` or ``replay.start``);
            called after the listener is registered, so nothing is missed.
        backfill: ``backfill(start, end)`` → bars in the standard schema over REST, or ``None``
            (replays: a recording is validated as it was recorded, without the network).
        backfill_start: where the initial backfill starts (``None``: ``backfill_bars`` bars before the
            bucket the stream starts in, or no initial backfill if that is 0).
        backfill_bars: how many bars the initial backfill reaches back without ``backfill_start``.
        clock: "now" in epoch ms, for completing bars of quiet markets and releasing the held bucket:
            ``"stream"`` (default) — the market clock estimated from the events (newest event time +
            wall time since it arrived), the stream starting in the bucket of its first data event;
            ``"events"`` — the same without the wall time (the newest event's time: bars complete on
            the events alone, as a replay that must match its live session needs);
            a callable — that clock, the stream starting in the bucket of its "now" at ``open``;
            ``None`` for replays, whose bars complete on the events' own time and at the end.
        grace_ms: how long after a bar's end a straggling trade is still waited for (live only).
        market: asset class of ``symbol``; status events of other markets are ignored.
    """

    live = True

    def __init__(
        self,
        events: Any,
        symbol: str,
        builder: BarBuilder,
        *,
        subscribe: Callable[[], Any] | None = None,
        unsubscribe: Callable[[], Any] | None = None,
        backfill: Backfill | None = None,
        backfill_start: pd.Timestamp | None = None,
        backfill_bars: int = 0,
        clock: Callable[[], int] | Literal["stream", "events"] | None = STREAM_CLOCK,
        server_clock: Callable[[], int] | None = None,
        start_wait: float = 5.0,
        grace_ms: int = 2_000,
        market: str | None = None,
        name: str = "",
    ) -> None:
        self.events = events
        self.symbol = symbol
        self.builder = builder
        self._subscribe, self._unsubscribe = subscribe, unsubscribe
        self._backfill, self.backfill_start, self.backfill_bars = backfill, backfill_start, int(backfill_bars)
        self._stream_clock = isinstance(clock, str)
        if self._stream_clock and clock not in (STREAM_CLOCK, EVENTS_CLOCK):
            raise ValueError(f"clock must be a callable, {STREAM_CLOCK!r}, {EVENTS_CLOCK!r} or None, not {clock!r}")
        self._extrapolate = clock == STREAM_CLOCK
        self.clock: Callable[[], int] | None = None if self._stream_clock else clock  # type: ignore[assignment]
        # asked once, when the stream clock has no event ``start_wait`` seconds after subscribing
        self._server_clock = server_clock if self._stream_clock else None
        self.start_wait = float(start_wait)
        self._opened_at = 0.0
        self.grace_ms = grace_ms
        self.market = market
        self.name = name or symbol
        self.state = State.IDLE
        self.stats = {"events": 0, "bars": 0, "backfilled": 0, "gaps": 0}
        self._queue: queue.SimpleQueue[Sequence[Any]] = queue.SimpleQueue()
        self._out: deque[SourceItem] = deque()
        self._listener: Any = None
        self._fmt: BarFormat | None = None
        self._last_bar_ms: int | None = None
        # False from a drop until the stream resumes: the half-built bar missed the outage's ticks,
        # so the clock must not complete it (the gap backfill or the next events decide its fate)
        self._trusted = True
        # [start, end) of the bucket the stream (re)started in: its ticks before the (re)connect never
        # reached us, so a bar built from the rest would differ from REST's. Its events are ignored and
        # the bar comes from REST once the bucket is over (first event past it, or the clock).
        self._held: tuple[int, int] | None = None
        # market clock from the stream: newest event time and the monotonic time it was read
        self._seen_ms: int | None = None
        self._seen_at = 0.0
        # True from open until the first data event fixes the bucket the stream starts in (stream clock)
        self._awaiting_start = False

    def __repr__(self) -> str:
        return f"StreamSource({self.name}, state={self.state.value}, {self.stats}, late={self.builder.late})"

    # --- FeedSource ---------------------------------------------------------------------------------
    def open(self, fmt: BarFormat) -> None:
        self._fmt = fmt
        self.state = State.CONNECTING
        self._listener = self.events.add_listener(self._queue.put, batched=True, symbols=[self.symbol],
                                                  name=f"backtrader-{self.name}")
        try:
            if self._subscribe is not None:
                self._subscribe()
        except MassiveError as exc:
            log.error("%s: could not subscribe: %s", self.name, exc)
            self._finish(DB.NOTSUBSCRIBED, str(exc), flush=False)
            return
        self._emit(Notice(DB.CONNECTED, "subscribed"))
        if self._backfill is not None:
            if self._stream_clock:
                self._awaiting_start = True  # the first data event tells where the market is
                self._opened_at = time.monotonic()
            else:
                self._start_at(int(self._current_bucket_start().value // 1_000_000))
        self.state = State.WAITING

    def _start_at(self, start_ms: int) -> None:
        """The stream starts in the bucket at ``start_ms``: REST backfill up to it, and hold it (joined
        mid-bucket: that bar comes from REST too)."""
        start = pd.Timestamp(start_ms, unit="ms", tz="UTC")
        first = self.backfill_start
        if first is None and self.backfill_bars > 0:
            first = start - pd.Timedelta(milliseconds=(self.builder.width_ms or 86_400_000) * self.backfill_bars)
        if first is not None:
            self._do_backfill(first, start)
        self._hold(start_ms)

    def poll(self, timeout: float = 0.0) -> SourceItem:
        if self._out:
            return self._out.popleft()
        if self.state is State.DONE:
            return END
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._out:
            try:
                remaining = deadline - time.monotonic()
                batch = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            self._handle(batch)
        if self._awaiting_start and not self._out:
            self._start_when_silent()
        now = self.now_ms()
        if not self._out and now is not None:
            due = now - self.grace_ms
            if self._held is not None and self._held[1] <= due:
                self._release_held()
            if self._trusted:
                self._emit_bars(self.builder.flush_due(due))
        return self._out.popleft() if self._out else None

    def _start_when_silent(self) -> None:
        """No data event ``start_wait`` seconds after subscribing (a closed market, an idle symbol): ask
        the service for its time, once, and start there, so the backfill comes now rather than with the
        first trade, which may be hours away. The market clock then runs on from the service's time."""
        if self._server_clock is None or time.monotonic() - self._opened_at < self.start_wait:
            return
        ask, self._server_clock = self._server_clock, None
        try:
            now = int(ask())
        except MassiveError as exc:
            log.warning("%s: no stream event in %.0f s and the service's clock is unavailable (%s); the "
                        "backfill waits for the first event", self.name, self.start_wait, exc)
            return
        log.info("%s: no stream event in %.0f s of subscribing; backfilling up to the service's time %s",
                 self.name, self.start_wait, pd.Timestamp(now, unit="ms", tz="UTC"))
        self.stats["silent_start"] = 1
        self._seen_ms, self._seen_at = now, time.monotonic()
        self._awaiting_start = False
        self._start_at(self.builder.bucket(now)[0])

    def now_ms(self) -> int | None:
        """The feed's "now" (epoch ms, market time), or ``None`` when unknown (replays; before the
        first event with the stream clock)."""
        if self.clock is not None:
            return self.clock()
        if self._stream_clock and self._seen_ms is not None:
            return self._seen_ms + (int((time.monotonic() - self._seen_at) * 1000) if self._extrapolate else 0)
        return None

    def pending(self) -> bool:
        return bool(self._out) or not self._queue.empty()

    def close(self) -> None:
        if self._listener is not None:
            self.events.remove_listener(self._listener, drain=False)
            self._listener = None
            if self._unsubscribe is not None:
                try:
                    self._unsubscribe()
                except Exception as exc:  # noqa: BLE001 - closing must not mask the run's own outcome
                    log.warning("%s: unsubscribe failed: %s", self.name, exc)
        self.state = State.DONE

    # --- events -------------------------------------------------------------------------------------
    def _handle(self, batch: Sequence[Any]) -> None:
        bars: list[LiveBar] = []
        add = self.builder.add
        for ev in batch:
            kind = ev[0]
            if kind == ev_mod.STATUS or kind == ev_mod.GAP:
                self._emit_bars(bars)  # bars before a control event go out before its notices
                bars = []
                self._control(ev)
                if self.state is State.DONE:
                    return
            else:
                self.stats["events"] += 1
                self._trusted = self.state is not State.BROKEN
                t = ev.time_ms
                if self._seen_ms is None or t > self._seen_ms:
                    self._seen_ms, self._seen_at = t, time.monotonic()
                if self._awaiting_start:
                    self._awaiting_start = False
                    self._start_at(self.builder.bucket(t)[0])
                held = self._held
                if held is not None:
                    if ev.time_ms < held[1]:
                        continue  # the held bucket comes from REST, whole
                    self._emit_bars(bars)
                    bars = []
                    self._release_held()
                bars += add(ev)
        self._emit_bars(bars)

    def _control(self, ev: Any) -> None:
        if ev.kind == ev_mod.GAP:
            self._gap(ev)
            return
        if ev.market and self.market and ev.market != self.market:
            return  # another market's connection
        status = ev.status
        if status in _BROKEN:
            self.state = State.BROKEN
            self._trusted = False
            self._emit(Notice(DB.CONNBROKEN, f"{status}: {ev.message}"))
        elif status in _CONNECTED:
            if self.state is State.BROKEN:  # the first "connected" was notified when subscribe returned
                self.state = State.WAITING
                self._emit(Notice(DB.CONNECTED, status))
        elif status in _FATAL:
            self._finish(DB.DISCONNECTED, f"{status}: {ev.message}", flush=True)
        elif status == ev_mod.ERROR and self._names_us(ev.message):
            self._finish(DB.NOTSUBSCRIBED, ev.message, flush=False)
        elif status == ev_mod.OVERFLOW:
            log.warning("%s: %s; bars around here may be incomplete", self.name, ev.message)
        else:
            log.debug("%s: stream status %s %s", self.name, status, ev.message)

    def _names_us(self, message: str) -> bool:
        """Whether a server error names our symbol (``T.AAPL``, ``XT.BTC-USD``, ``C.EUR/USD`` …) as a
        whole token, so ``V`` (Visa) does not match every message containing the letter."""
        forms = {self.symbol, self.symbol.split(":")[-1], ws_symbol(self.symbol)}
        pattern = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        return re.search(rf"(?<![A-Z0-9])(?:{pattern})(?![A-Z0-9])", message.upper()) is not None

    def _gap(self, gap: Any) -> None:
        self.stats["gaps"] += 1
        log.info("%s: stream gap %s..%s (%s)", self.name, gap.start_ms, gap.end_ms, gap.reason)
        if self._backfill is None:
            return  # replay: the recording is the truth, holes included
        if self._awaiting_start:
            return  # before our first event: the start bucket and its backfill are still to come
        # REST covers every bucket before the one the stream resumes in; the builder forgets its
        # half-built bar there (it missed the ticks of the outage) and ignores stragglers for it.
        start_ms = self._last_bar_ms if self._last_bar_ms is not None else gap.start_ms
        if start_ms is None:
            return
        resume = self.builder.bucket(gap.end_ms)[0]
        self.builder.discard_before(gap.end_ms)
        self._held = None  # an earlier held bucket lies inside this backfill
        self._do_backfill(pd.Timestamp(start_ms, unit="ms", tz="UTC"), pd.Timestamp(resume, unit="ms", tz="UTC"))
        self._hold(resume)
        self.state = State.WAITING

    def _hold(self, start_ms: int) -> None:
        """Take the bucket starting at ``start_ms`` (where the stream resumed) from REST when it is over."""
        bucket = self.builder.bucket(start_ms)
        self.builder.discard_before(bucket[1])  # drop what it built there; later events start fresh
        self._held = bucket

    def _release_held(self) -> None:
        """The held bucket is over: its bar from REST, or none (never one built from part of its ticks)."""
        held, self._held = self._held, None
        if held is None:
            return
        before = self.stats["backfilled"]
        self._do_backfill(pd.Timestamp(held[0], unit="ms", tz="UTC"), pd.Timestamp(held[1], unit="ms", tz="UTC"),
                          notice=self.state is not State.WAITING)
        if self.stats["backfilled"] == before:
            self.stats["resume_skipped"] = self.stats.get("resume_skipped", 0) + 1
            log.warning("%s: REST has no bar yet for %s, the bucket the stream started or resumed in; it is "
                        "skipped rather than built from the ticks seen after the (re)connect only", self.name,
                        pd.Timestamp(held[0], unit="ms", tz="UTC"))

    def _do_backfill(self, start: pd.Timestamp, end: pd.Timestamp, *, notice: bool = True) -> None:
        """REST bars in ``[start, end)`` (complete bars only) as a DELAYED block."""
        if end <= start:
            return
        if notice:
            self._emit(Notice(DB.DELAYED, f"backfill {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"))
        try:
            frame = self._backfill(start, end - pd.Timedelta(milliseconds=1))  # type: ignore[misc]
        except MassiveError as exc:
            log.warning("%s: backfill failed (%s); continuing with the stream only", self.name, exc)
            return
        frame = frame[frame["timestamp"] < end]
        assert self._fmt is not None
        block = self._fmt.from_frame(frame, label="backfill")
        if len(block):
            self.stats["backfilled"] += len(block)
            self._last_bar_ms = int(frame["timestamp"].iloc[-1].value // 1_000_000)
            self._out.append(block)

    def _emit_bars(self, bars: list[LiveBar]) -> None:
        if not bars:
            return
        if self.state is not State.LIVE:
            self.state = State.LIVE
            self._emit(Notice(DB.LIVE))
        assert self._fmt is not None
        self._out.append(self._fmt.from_bars(bars, label="live"))
        self.stats["bars"] += len(bars)
        self._last_bar_ms = bars[-1].time_ms

    def _emit(self, notice: Notice) -> None:
        self._out.append(notice)

    def _finish(self, status: int, message: str, *, flush: bool) -> None:
        if flush:
            self._emit_bars(self.builder.flush())
        self._emit(Notice(status, message))
        self._out.append(END)
        self.state = State.DONE

    def _current_bucket_start(self) -> pd.Timestamp:
        now = self.clock() if self.clock is not None else wall_ms()
        return pd.Timestamp(self.builder.bucket(now)[0], unit="ms", tz="UTC")


def live_kinds(symbol: str, mode: LiveBars, quotes: bool) -> tuple[str, ...]:
    """Stream kinds to subscribe for a feed: what its bars are built from, plus quotes for quote lines."""
    market = asset_class(symbol)
    if mode == "aggregates":
        kinds: tuple[str, ...] = (ev_mod.AGG_MINUTE,)
    else:
        kinds = {"indices": (ev_mod.VALUE,), "forex": ()}.get(market, (ev_mod.TRADE,))
    if (quotes or market == "forex") and market != "indices":
        kinds += (ev_mod.QUOTE,)  # forex has no trades: its bars come from quotes
    return kinds


__all__ = ["EVENTS_CLOCK", "STREAM_CLOCK", "BarBuilder", "State", "StreamSource", "live_kinds"]
