"""Wire events for the sandbox WebSocket server, built from the market generator's ticks.

Trades (``T``/``XT``) are exactly the generator's ticks, quotes (``Q``/``XQ``/forex ``C``) ride on
the same ticks, index values (``V``) are the index prints, and aggregates (``A``/``AM``, ``CAS``/``CA``,
``XAS``/``XA``) are the generator's own per-second / per-minute aggregation of those ticks — so a
recording of this stream resamples to the very minute bars the sandbox REST server returns.

Written independently of the library's parser (field names from the Massive spec), so the sandbox
tests the client rather than mirroring it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Iterable

import numpy as np
import orjson

from ..schema import NEW_YORK, asset_class, ws_symbol
from ..stream.protocol import ticker_from_wire
from .market import Bars, MarketGenerator, aggregate

#: Channels each cluster serves.
MARKET_CHANNELS: dict[str, frozenset[str]] = {
    "stocks": frozenset({"T", "Q", "A", "AM"}),
    "options": frozenset({"T", "Q", "A", "AM"}),
    "indices": frozenset({"V", "A", "AM"}),
    "forex": frozenset({"C", "CA", "CAS"}),
    "crypto": frozenset({"XT", "XQ", "XA", "XAS"}),
    "futures": frozenset({"T", "Q", "A", "AM"}),  # served by .futures (its own market)
}
_MINUTE_AGGS = {"AM", "CA", "XA"}
_SECOND_AGGS = {"A", "CAS", "XAS"}
_TAPES = {"XNYS": 1, "ARCX": 2, "XNAS": 3}


def _ny_days(from_ms: int, to_ms: int) -> list[date]:
    first = datetime.fromtimestamp(from_ms / 1000, NEW_YORK).date()
    last = datetime.fromtimestamp(to_ms / 1000, NEW_YORK).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class TickFeed:
    """Builds the wire events (dicts) a subscription would have received over a time window."""

    def __init__(self, market: MarketGenerator) -> None:
        self.market = market
        self._second_bars = lru_cache(maxsize=256)(self._make_second_bars)

    def __repr__(self) -> str:
        return f"TickFeed({self.market!r})"

    def tickers(self, market: str) -> list[str]:
        return [t for t in self.market.universe if asset_class(t) == market]

    def resolve(self, market: str, subs: Iterable[str]) -> dict[str, set[str]]:
        """Subscriptions (``Q.AAPL``, ``T.*``) → ``{ticker: {channels}}`` for known tickers."""
        out: dict[str, set[str]] = {}
        for param in subs:
            channel, _, wire = param.partition(".")
            tickers = self.tickers(market) if wire == "*" else [ticker_from_wire(market, wire)]
            for t in tickers:
                if self.market.knows(t):
                    out.setdefault(t, set()).add(channel)
        return out

    def collect(self, market: str, subs: Iterable[str], from_ms: int, to_ms: int) -> list[dict[str, Any]]:
        """Every event of ``subs`` with event time in ``(from_ms, to_ms]``, in time order."""
        if market == "futures":
            from .futures import ws_events

            return ws_events(set(subs), from_ms, to_ms)
        timed: list[tuple[int, dict[str, Any]]] = []
        for ticker, channels in self.resolve(market, subs).items():
            for day in _ny_days(from_ms, to_ms):
                timed.extend(self._ticker_events(ticker, channels, day, from_ms, to_ms))
        timed.sort(key=lambda x: x[0])
        return [e for _, e in timed]

    # --- per ticker-day ---------------------------------------------------------------------------
    def _ticker_events(self, ticker: str, channels: set[str], day: date, lo: int, hi: int) -> list[tuple[int, dict]]:
        tk = self.market.ticks(ticker, day)
        out: list[tuple[int, dict]] = []
        i0, i1 = np.searchsorted(tk.t_ms, [lo, hi], side="right")
        if i1 > i0:
            out.extend(self._tick_events(ticker, channels, tk, int(i0), int(i1)))
        for ch in channels & _MINUTE_AGGS:
            out.extend(self._bar_events(ticker, ch, self.market.minute_bars(ticker, day), 60_000, lo, hi, tk))
        for ch in channels & _SECOND_AGGS:
            out.extend(self._bar_events(ticker, ch, self._second_bars(ticker, day), 1000, lo, hi, tk))
        return out

    def _make_second_bars(self, ticker: str, day: date) -> Bars:
        tk = self.market.ticks(ticker, day)
        return aggregate(tk.t_ms, tk.price, tk.size, 1000)

    def _tick_events(self, ticker: str, channels: set[str], tk: Any, i0: int, i1: int) -> list[tuple[int, dict]]:
        asset = asset_class(ticker)
        wire = ws_symbol(ticker)
        info = self.market.universe[ticker]
        tape = _TAPES.get(info.primary_exchange, 3)
        rows = zip(range(i0, i1), tk.t_ms[i0:i1].tolist(), tk.price[i0:i1].tolist(), tk.size[i0:i1].tolist(),
                   tk.bid[i0:i1].tolist(), tk.ask[i0:i1].tolist(), tk.bid_size[i0:i1].tolist(),
                   tk.ask_size[i0:i1].tolist(), tk.exchange[i0:i1].tolist(), strict=True)
        out: list[tuple[int, dict]] = []
        for seq, t, p, s, b, a, bs, as_, x in rows:
            if "T" in channels:
                # Trades without conditions carry no "c" key at all on the real feed.
                trade = {"ev": "T", "sym": ticker, "x": x, "p": p, "s": int(s), "t": t, "q": seq}
                if asset == "stocks":
                    trade.update({"i": str(seq), "z": tape})
                out.append((t, trade))
            if "Q" in channels:
                out.append((t, {"ev": "Q", "sym": ticker, "bx": x, "bp": b, "bs": int(bs), "ax": (x % 19) + 1,
                                "ap": a, "as": int(as_), "c": 0, "t": t, "q": seq, "z": tape}))
            if "V" in channels:
                out.append((t, {"ev": "V", "val": p, "T": ticker, "t": t}))
            if "C" in channels:
                out.append((t, {"ev": "C", "p": wire, "x": "48", "a": a, "b": b, "t": t}))
            if "XT" in channels:
                out.append((t, {"ev": "XT", "pair": wire, "p": p, "s": s, "t": t, "c": [1 + seq % 2],
                                "i": str(seq), "x": x, "r": t + 3}))
            if "XQ" in channels:
                out.append((t, {"ev": "XQ", "pair": wire, "bp": b, "bs": bs, "ap": a, "as": as_, "t": t, "x": x,
                                "r": t + 3}))
        return out

    def _bar_events(self, ticker: str, channel: str, bars: Bars, width: int, lo: int, hi: int,
                    tk: Any) -> list[tuple[int, dict]]:
        """Aggregates whose window *ended* in ``(lo, hi]`` (a bar is published when its window closes)."""
        end = bars.t + width
        sel = np.flatnonzero((end > lo) & (end <= hi))
        if len(sel) == 0:
            return []
        asset = asset_class(ticker)
        wire = ws_symbol(ticker)
        out: list[tuple[int, dict]] = []
        day_open = float(tk.price[0]) if len(tk.price) else None
        cum_v = np.cumsum(bars.v)
        cum_pv = np.cumsum(np.nan_to_num(bars.vw) * bars.v)
        for i in sel.tolist():
            t, e = int(bars.t[i]), int(bars.t[i] + width)
            ohlc = {"o": float(bars.o[i]), "h": float(bars.h[i]), "l": float(bars.l[i]), "c": float(bars.c[i])}
            v, vw, n = float(bars.v[i]), float(bars.vw[i]), int(bars.n[i])
            if asset in ("stocks", "options"):
                ev = {"ev": channel, "sym": ticker, "v": v, "av": float(cum_v[i]), "op": day_open, "vw": vw, **ohlc,
                      "a": round(float(cum_pv[i] / cum_v[i]), 4) if cum_v[i] else vw, "z": round(v / n) if n else 0,
                      "s": t, "e": e}
            elif asset == "indices":
                ev = {"ev": channel, "sym": ticker, "op": day_open, **ohlc, "s": t, "e": e}
            elif asset == "forex":
                ev = {"ev": channel, "pair": wire, **ohlc, "v": v, "s": t, "e": e}
            else:
                ev = {"ev": channel, "pair": wire, **ohlc, "v": v, "vw": vw, "z": round(v / n, 6) if n else 0,
                      "s": t, "e": e}
            out.append((e, ev))
        return out


def firehose_frames(feed: TickFeed, market: str, channel: str, day: date, batch: int,
                    pool_frames: int = 1000) -> tuple[list[bytes], list[dict[str, Any]]]:
    """A pool of pre-encoded frames of exactly ``batch`` events each (cycled by the firehose), and
    the events themselves (for a final partial frame). Events come from every ticker of the market."""
    subs = [f"{channel}.*"]
    events: list[dict[str, Any]] = []
    want = batch * pool_frames
    d = day
    for _ in range(14):  # walk back over weekends/holidays until there is enough
        lo = int(datetime.combine(d, datetime.min.time(), NEW_YORK).timestamp() * 1000)
        events.extend(feed.collect(market, subs, lo, lo + 86_400_000))
        if len(events) >= want:
            break
        d -= timedelta(days=1)
    if not events:
        raise ValueError(f"no {channel} events for {market}")
    while len(events) < want:
        events.extend(events[: want - len(events)])
    events = events[:want]
    frames = [orjson.dumps(events[i:i + batch]) for i in range(0, want, batch)]
    return frames, events
