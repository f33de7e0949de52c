"""The flat-file key catalogue: which S3 object holds which asset class, bar size and day.

Layout (``shared/massive-api-facts.md`` section 3)::

    <prefix>/<dataset>/<YYYY>/<MM>/<YYYY-MM-DD>.csv.gz

with one prefix per asset class and ``minute_aggs_v1`` / ``day_aggs_v1`` chosen by the interval's
base (minute bars for intraday intervals, day bars for 1d/1w/1M).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Iterable

from ..errors import InvalidInputError
from ..futures_symbols import futures_root
from ..schema import Interval, Ticker

PREFIXES: dict[str, str] = {
    "stocks": "us_stocks_sip",
    "options": "us_options_opra",
    "indices": "us_indices",
    "forex": "global_forex",
    "crypto": "global_crypto",
    # futures: one prefix per exchange (the asset key names it; see futures_asset)
    "futures": "us_futures_cme", "futures_cbot": "us_futures_cbot", "futures_nymex": "us_futures_nymex",
    "futures_comex": "us_futures_comex",
}
#: product roots not on CME proper (their flat files sit under the exchange's prefix); others are CME's
FUTURES_EXCHANGES: dict[str, str] = {
    **dict.fromkeys(("GC", "SI", "HG", "PL", "PA", "MGC", "SIL"), "futures_comex"),
    **dict.fromkeys(("CL", "NG", "RB", "HO", "BZ", "MCL", "QM", "QG"), "futures_nymex"),
    **dict.fromkeys(("ZN", "ZB", "ZF", "ZT", "ZC", "ZS", "ZW", "ZL", "ZM", "YM", "MYM", "UB", "TN"), "futures_cbot"),
}
DATASETS: dict[str, str] = {"minute": "minute_aggs_v1", "day": "day_aggs_v1"}
#: Tick datasets (every trade / NBBO quote of the day, all tickers): ``Dataset(asset, "trades")`` …
TICK_DATASETS: dict[str, str] = {"trades": "trades_v1", "quotes": "quotes_v1"}
_KEY_RE = re.compile(r"^(?P<dataset>[a-z_]+/[a-z0-9_]+)/\d{4}/\d{2}/(?P<day>\d{4}-\d{2}-\d{2})\.csv\.gz$")


@dataclass(frozen=True, order=True)
class Dataset:
    """One flat-file dataset, e.g. ``us_stocks_sip/minute_aggs_v1``."""

    asset: str  # stocks | options | indices | forex | crypto
    base: str  # minute | day, or trades | quotes for the tick datasets

    @property
    def path(self) -> str:
        if self.asset.startswith("futures") and self.base == "day":
            return f"{PREFIXES[self.asset]}/session_aggs_v1"  # futures day files are exchange sessions
        return f"{PREFIXES[self.asset]}/{DATASETS.get(self.base) or TICK_DATASETS[self.base]}"

    @property
    def is_ticks(self) -> bool:
        """A ``trades_v1`` / ``quotes_v1`` dataset (rows are ticks, not bars)."""
        return self.base in TICK_DATASETS

    def key(self, day: date) -> str:
        """The object key of ``day``'s file."""
        return f"{self.path}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"

    def month_prefixes(self, days: Iterable[date]) -> list[str]:
        """The ``…/YYYY/MM/`` listing prefixes covering ``days``, in order."""
        return sorted({f"{self.path}/{d:%Y}/{d:%m}/" for d in days})

    def __str__(self) -> str:
        return self.path


def dataset_for(ticker: "str | Ticker", base: Interval | str) -> Dataset:
    """The dataset holding ``ticker``'s rows: base bars for an :class:`Interval`, or a tick kind's
    (``"trades"``/``"quotes"``). An asset class without flat files is an :class:`InvalidInputError`."""
    t = Ticker.of(ticker)
    if t.asset not in PREFIXES:
        raise InvalidInputError(f"No flat files for {t.symbol!r} (asset class {t.asset})")
    asset = futures_asset(t.symbol) if t.asset == "futures" else t.asset
    return Dataset(asset, base.base if isinstance(base, Interval) else base)


def futures_asset(ticker: str) -> str:
    """The dataset asset key of a futures ticker: its exchange (``GCJ5`` → ``futures_comex``)."""
    return FUTURES_EXCHANGES.get(futures_root(ticker), "futures")


def day_of_key(key: str) -> date | None:
    """The session date a day-file key is for, or ``None`` if ``key`` is not a day file."""
    m = _KEY_RE.match(key)
    return date.fromisoformat(m["day"]) if m else None
