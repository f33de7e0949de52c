"""A local stand-in for Massive.com that speaks its real wire formats.

``Sandbox`` starts, on 127.0.0.1 and free ports:

* a REST server (``/v2/aggs/...``, ``/v3/reference/tickers``, ``/v3/reference/splits``, ``/v3/trades``,
  ``/v3/quotes`` and the official client's other common calls; see :mod:`.rest`) returning the real
  JSON shapes,
* a WebSocket server speaking the real handshake/subscribe protocol (``websocket=True``),
* an S3-compatible endpoint (moto) holding gzip CSV day files in the real key layout (``s3=True``),

all serving one deterministic synthetic market (:mod:`massive_feeds.sandbox.market`). It checks keys,
enforces a configurable rate limit and injects faults, so clients are tested over real sockets.

Stocks follow the NYSE calendar (holidays, early closes) and some split. The default split table:

* GOOGL 4-for-1 (split_from 1, split_to 4) on 2024-03-06 — inside the REST test week 2024-03-04..08;
* INTC 1-for-10 reverse (10 → 1) on 2024-01-31 — inside the flat-file test range 2024-01-25..02-06;
* TSLA 3-for-1 (1 → 3) three NYSE sessions before the clock's day — recent, so demo ranges show it;
* AMD 1-for-5 reverse (5 → 1) six NYSE sessions before the clock's day.

Twelve tickers pay cash dividends (AAPL, MSFT, JPM, V, XOM, KO, WMT, DIS, INTC, SPY, QQQ, IWM; quarterly or
semi-annual, ex-dates near the 10th of their months; XOM also a 2.00 special on 2024-02-21; NFLX one of 0.50 CAD on 2024-03-12, which total-return prices
refuse), listed on
``/v3/reference/dividends`` and
``/stocks/v1/dividends`` (with the cumulative ``historical_adjustment_factor``); their raw prices drop by about
the dividend on each ex-date, so total-return prices (``adjusted="total"``) differ from split-adjusted ones.
``/stocks/v1/splits`` lists the splits with ``adjustment_type`` and ``historical_adjustment_factor``.

Ticks, the WebSocket stream and flat files carry raw prices; REST aggregates are split-adjusted
unless asked ``adjusted=false``, as on the real service (never dividend-adjusted).

Use it as a context manager::

    with Sandbox() as sb:
        os.environ.update(sb.env())   # point massive_feeds (or the official client) at it
        ...

The library imports this package in one place only: the runtime context (:mod:`massive_feeds.runtime`),
which starts an embedded sandbox when no key is configured. The CLI, tests, examples and the demo use it
directly.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .._optional import require
from .faults import Faults
from .market import DEFAULT_SPLITS, DEFAULT_UNIVERSE, MarketGenerator, SplitInfo, TickerInfo, recent_splits
from .market import is_nyse_session

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

SANDBOX_API_KEY = "sandbox-key"
SANDBOX_S3_ACCESS_KEY_ID = "sandbox-access-key"
SANDBOX_S3_SECRET_ACCESS_KEY = "sandbox-secret-key"


def default_clock_start(now: datetime | None = None) -> datetime:
    """15:30 UTC (mid-session in New York) on the most recent NYSE session before ``now`` (weekends
    and exchange holidays skipped): the live side always has an open stock market to stream, whatever
    the real time is."""
    day = (now or datetime.now(timezone.utc)).date() - timedelta(days=1)
    while not is_nyse_session(day):
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, 15, 30, tzinfo=timezone.utc)


@dataclass
class SandboxClock:
    """The sandbox's notion of "now": starts at ``start`` and runs at ``speed`` × real time."""

    start: datetime
    speed: float = 1.0

    def __post_init__(self) -> None:
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        elapsed = (time.monotonic() - self._t0) * self.speed
        return int(self.start.timestamp() * 1000 + elapsed * 1000)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms() / 1000, timezone.utc)


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` REST requests per ``window`` seconds per key (sliding window)."""

    requests: int
    window: float = 60.0


class Sandbox:
    """Start/stop the sandbox servers. See the module docstring."""

    def __init__(
        self,
        *,
        api_key: str = SANDBOX_API_KEY,
        s3_access_key_id: str = SANDBOX_S3_ACCESS_KEY_ID,
        s3_secret_access_key: str = SANDBOX_S3_SECRET_ACCESS_KEY,
        host: str = "127.0.0.1",
        seed: int = 7,
        universe: tuple[TickerInfo, ...] = DEFAULT_UNIVERSE,
        rate_limit: RateLimit | None = None,
        clock_start: datetime | None = None,
        clock_speed: float = 1.0,
        max_page_bars: int = 50_000,
        not_entitled: tuple[str, ...] = (),
        rest: bool = True,
        websocket: bool = False,
        s3: bool = False,
        s3_days: tuple[date, date] | None = None,
        splits: tuple[SplitInfo, ...] | None = None,
        listed_only_splits: tuple[SplitInfo, ...] = (),
    ) -> None:
        self.api_key = api_key
        self.s3_access_key_id = s3_access_key_id
        self.s3_secret_access_key = s3_secret_access_key
        self.host = host
        self.rate_limit = rate_limit
        self.clock = SandboxClock(clock_start or default_clock_start(), clock_speed)
        if splits is None:  # the fixed splits plus two recent ones relative to the clock (see above)
            splits = DEFAULT_SPLITS + recent_splits(self.clock.start.date())
        self.market = MarketGenerator(seed=seed, universe=universe, splits=splits)
        # extra rows /v3/reference/splits lists without prices moving, like the real service's near-duplicates
        # (its own mock lists SHOP 1 -> 10 on 2022-06-22 and on 2022-06-29 for one split)
        self.listed_only_splits = tuple(listed_only_splits)
        self.max_page_bars = max_page_bars
        self.not_entitled = set(not_entitled)  # asset classes answered with 403 NOT_AUTHORIZED
        self.faults = Faults(seed=seed)
        self.s3_days = s3_days
        self._want = {"rest": rest, "websocket": websocket, "s3": s3}
        self.rest: Any = None
        self.ws: Any = None
        self.s3: Any = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "Sandbox":
        self.ensure(**self._want)
        log.info("sandbox started: %s", self.describe())
        return self

    def ensure(self, *, rest: bool = False, websocket: bool = False, s3: bool = False) -> "Sandbox":
        """Start the named sides that are not running yet (a side started later keeps the same market
        and clock). The S3 side needs moto and boto3, the WebSocket side ``websockets``: a missing one
        raises ``ImportError``."""
        if rest and self.rest is None:
            from .rest import RestServer

            server = RestServer(self)
            server.start()
            self.rest = server
        if websocket and self.ws is None:
            require("websockets", "The sandbox's WebSocket server")
            from .ws import WebSocketServer

            ws = WebSocketServer(self)
            ws.start()
            self.ws = ws
        if s3 and self.s3 is None:
            require("moto", "The sandbox's S3 server")
            from .s3 import S3Server

            store = S3Server(self)
            store.start()
            self.s3 = store
        return self

    def stop(self) -> None:
        for part in (self.ws, self.s3, self.rest):
            if part is not None:
                part.stop()
        self.rest = self.ws = self.s3 = None

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return self.rest.url

    @property
    def ws_url(self) -> str:
        return self.ws.url

    @property
    def s3_endpoint(self) -> str:
        return self.s3.endpoint

    def env(self) -> dict[str, str]:
        """Environment variables that point massive_feeds at this sandbox. ``MASSIVE_SANDBOX=1`` marks the
        endpoints as a sandbox: data fetched through them is labelled ``sandbox`` and its quota state and
        caches live under ``<home>/sandbox``, apart from a real account's."""
        env = {"MASSIVE_SANDBOX": "1", "MASSIVE_API_KEY": self.api_key}
        if 0 < self.clock.speed <= 10_000:  # clients size their rate warnings by it (a frozen clock has none)
            env["MASSIVE_SANDBOX_SPEED"] = f"{self.clock.speed:g}"
        if self.rest is not None:
            env["MASSIVE_REST_URL"] = self.rest.url
        if self.ws is not None:
            env["MASSIVE_WS_URL"] = self.ws.url
        if self.s3 is not None:
            env.update({
                "MASSIVE_S3_ENDPOINT": self.s3.endpoint,
                "MASSIVE_S3_BUCKET": self.s3.bucket,
                "MASSIVE_S3_ACCESS_KEY_ID": self.s3_access_key_id,
                "MASSIVE_S3_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            })
        return env

    def settings(self, **overrides: Any) -> "Settings":
        """massive_feeds settings pointing at this sandbox (keyword overrides as in ``load_settings``)."""
        from ..config import load_settings

        return load_settings(environ={**os.environ, **self.env()}, **overrides)

    def describe(self) -> str:
        parts = [f"REST {self.rest.url}" if self.rest else None, f"WebSocket {self.ws.url}" if self.ws else None,
                 f"S3 {self.s3.endpoint}" if self.s3 else None]
        return ", ".join(p for p in parts if p) + f" (clock {self.clock.now():%Y-%m-%d %H:%M} UTC)"

    def __repr__(self) -> str:
        return f"Sandbox({self.describe() if (self.rest or self.ws or self.s3) else 'stopped'})"
