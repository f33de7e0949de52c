"""Flat-file day files (gzip CSV) for the sandbox, built from the same market generator as REST.

One file per (asset class, dataset, New York day) in the real layout and columns (see
``shared/massive-api-facts.md`` section 3):

* stocks, options, forex, crypto: ``ticker,volume,open,close,high,low,window_start,transactions``
* indices: ``ticker,open,close,high,low,window_start`` (index aggregates have no volume or trades)

``window_start`` is Unix nanoseconds: the minute start, or midnight New York for day files. Rows are
sorted by ticker then time, as in the real files. Crypto tickers are written in the dash form that
real crypto files are reported to use (``X:BTC-USD``) so clients must cope with it; every other
asset uses its REST ticker. Floats are written in shortest round-trip form, so a reader that parses
them correctly gets exactly the values REST serves.

This module is sandbox-only. The library never imports it.
"""

from __future__ import annotations

import gzip
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..schema import asset_class, ws_symbol
from .market import Bars, MarketGenerator

PREFIXES = {
    "stocks": "us_stocks_sip", "options": "us_options_opra", "indices": "us_indices",
    "forex": "global_forex", "crypto": "global_crypto",
}
DATASETS = {"minute": "minute_aggs_v1", "day": "day_aggs_v1"}
AGG_COLUMNS = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
INDEX_COLUMNS = ("ticker", "open", "close", "high", "low", "window_start")


def day_key(asset: str, base: str, day: date) -> str:
    """``us_stocks_sip/minute_aggs_v1/2024/01/2024-01-02.csv.gz`` for ``("stocks", "minute", 2024-01-02)``."""
    return f"{PREFIXES[asset]}/{DATASETS[base]}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def file_ticker(ticker: str) -> str:
    """The ticker as written in a day file: ``X:BTCUSD`` → ``X:BTC-USD``; others unchanged."""
    return "X:" + ws_symbol(ticker) if asset_class(ticker) == "crypto" else ticker


def has_file(market: MarketGenerator, asset: str, day: date) -> bool:
    """Files exist only for trading days: every day for crypto, weekdays for the others."""
    sample = next((t for t in market.universe if asset_class(t) == asset), None)
    return sample is not None and market.is_trading_day(sample, day)


def _bars(market: MarketGenerator, ticker: str, base: str, day: date) -> Bars:
    return market.minute_bars(ticker, day) if base == "minute" else market.day_bar(ticker, day)


def day_table(market: MarketGenerator, asset: str, base: str, day: date) -> pa.Table:
    """All tickers of ``asset`` for ``day`` as an Arrow table with the file's columns."""
    tickers = sorted((t for t in market.universe if asset_class(t) == asset), key=file_ticker)
    parts = [(file_ticker(t), _bars(market, t, base, day)) for t in tickers]
    parts = [(name, bars) for name, bars in parts if bars.size]
    cat = (lambda field: np.concatenate([getattr(b, field) for _, b in parts])) if parts else (lambda _: np.empty(0))
    columns = {
        "ticker": pa.array(np.repeat([n for n, _ in parts], [b.size for _, b in parts]) if parts else [],
                           pa.string()),
        "volume": pa.array(cat("v"), pa.float64()),
        "open": pa.array(cat("o"), pa.float64()),
        "close": pa.array(cat("c"), pa.float64()),
        "high": pa.array(cat("h"), pa.float64()),
        "low": pa.array(cat("l"), pa.float64()),
        "window_start": pa.array(cat("t").astype(np.int64) * 1_000_000, pa.int64()),
        "transactions": pa.array(cat("n").astype(np.int64), pa.int64()),
    }
    names = INDEX_COLUMNS if asset == "indices" else AGG_COLUMNS
    return pa.table({name: columns[name] for name in names})


def csv_bytes(table: pa.Table) -> bytes:
    """The CSV text of a day file: an unquoted header row, then the rows."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return (",".join(table.column_names) + "\n").encode() + sink.getvalue().to_pybytes()


def day_file(market: MarketGenerator, asset: str, base: str, day: date, *, mtime: int = 0) -> bytes:
    """The gzip bytes of one day file. A different ``mtime`` gives different bytes (so a new ETag)
    for the same rows, which is how :meth:`S3Server.republish` simulates a republished file."""
    return gzip.compress(csv_bytes(day_table(market, asset, base, day)), compresslevel=6, mtime=mtime)
