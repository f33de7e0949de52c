"""Flat-file day files (gzip CSV) for the sandbox, built from the same market generator as REST.

One file per (asset class, dataset, New York day) in the real layout and columns (see
``shared/massive-api-facts.md`` section 3):

* stocks, options, forex, crypto: ``ticker,volume,open,close,high,low,window_start,transactions``
* indices: ``ticker,open,close,high,low,window_start`` (index aggregates have no volume or trades)
* tick files ``trades_v1`` (stocks, options, crypto) and ``quotes_v1`` (stocks, options, forex): the
  columns of :data:`TICK_FILE_COLUMNS`, one row per tick of :meth:`MarketGenerator.tick_columns` —
  the very rows REST ``/v3/trades``/``/v3/quotes`` serve and the WebSocket streams, ns timestamps.
  Stocks trades/quotes and options trades headers are the observed ones (facts file §3); options
  quotes, crypto trades and forex quotes are ``ticker`` + the REST fields in the same alphabetical
  order (inferred from the OpenAPI spec, not observed). Fields the sandbox has no value for
  (``correction``, ``trf_*``, stock ``conditions``/``indicators``) are empty, as REST omits them.

Futures (``us_futures_cme`` / ``us_futures_comex``) come from :mod:`.futures`: ``minute_aggs_v1``,
``session_aggs_v1`` and ``trades_v1``/``quotes_v1`` in the real headers (``tests/fixtures/real/flatfiles/
futures_*_header.csv``), each file named by its session's trade date and holding the very ticks REST
``/futures/v1/trades|quotes`` serves.

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
from .market import TICK_KINDS, Bars, MarketGenerator

PREFIXES = {
    "stocks": "us_stocks_sip", "options": "us_options_opra", "indices": "us_indices",
    "forex": "global_forex", "crypto": "global_crypto",
    # the futures market's exchanges (.futures): minute_aggs_v1, session_aggs_v1 (the "day" base), trades_v1 and
    # quotes_v1, each file named by its session's trade date (session_end_date)
    "futures": "us_futures_cme", "futures_comex": "us_futures_comex",
}
FUTURES_DATASETS = {"minute": "minute_aggs_v1", "day": "session_aggs_v1", "trades": "trades_v1",
                    "quotes": "quotes_v1"}
DATASETS = {"minute": "minute_aggs_v1", "day": "day_aggs_v1"}
TICK_DATASETS = {"trades": "trades_v1", "quotes": "quotes_v1"}
ALL_DATASETS = {**DATASETS, **TICK_DATASETS}
TICK_FILE_COLUMNS: dict[tuple[str, str], tuple[str, ...]] = {
    ("stocks", "trades"): ("ticker", "conditions", "correction", "exchange", "id", "participant_timestamp", "price",
                           "sequence_number", "sip_timestamp", "size", "tape", "trf_id", "trf_timestamp"),
    ("stocks", "quotes"): ("ticker", "ask_exchange", "ask_price", "ask_size", "bid_exchange", "bid_price", "bid_size",
                           "conditions", "indicators", "participant_timestamp", "sequence_number", "sip_timestamp",
                           "tape", "trf_timestamp"),
    ("options", "trades"): ("ticker", "conditions", "correction", "exchange", "price", "sip_timestamp", "size"),
    ("options", "quotes"): ("ticker", "ask_exchange", "ask_price", "ask_size", "bid_exchange", "bid_price",
                            "bid_size", "sequence_number", "sip_timestamp"),
    ("crypto", "trades"): ("ticker", "conditions", "exchange", "id", "participant_timestamp", "price", "size"),
    ("forex", "quotes"): ("ticker", "ask_exchange", "ask_price", "bid_exchange", "bid_price", "participant_timestamp"),
}
AGG_COLUMNS = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
INDEX_COLUMNS = ("ticker", "open", "close", "high", "low", "window_start")


def day_key(asset: str, base: str, day: date) -> str:
    """``us_stocks_sip/minute_aggs_v1/2024/01/2024-01-02.csv.gz`` for ``("stocks", "minute", 2024-01-02)``;
    ``base`` is ``minute``/``day`` or a tick kind ``trades``/``quotes``."""
    names = FUTURES_DATASETS if asset.startswith("futures") else ALL_DATASETS
    return f"{PREFIXES[asset]}/{names[base]}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


def parse_key(key: str) -> tuple[str, str, date] | None:
    """``(asset, base, day)`` of a day-file key this sandbox can generate, else None."""
    parts = key.split("/")
    if len(parts) != 5 or not parts[4].endswith(".csv.gz"):
        return None
    asset = {v: k for k, v in PREFIXES.items()}.get(parts[0])
    names = FUTURES_DATASETS if asset is not None and asset.startswith("futures") else ALL_DATASETS
    base = {v: k for k, v in names.items()}.get(parts[1])
    try:
        day = date.fromisoformat(parts[4].removesuffix(".csv.gz"))
    except ValueError:
        return None
    if asset is None or base is None or parts[2:4] != [f"{day:%Y}", f"{day:%m}"] or not offers(asset, base):
        return None
    return asset, base, day


def offers(asset: str, base: str) -> bool:
    """Whether the service has dataset ``base`` for ``asset`` (e.g. no forex trades, no index ticks)."""
    if asset.startswith("futures"):
        return base in FUTURES_DATASETS
    return base in DATASETS or base in TICK_KINDS[asset]


def file_ticker(ticker: str) -> str:
    """The ticker as written in a day file: ``X:BTCUSD`` → ``X:BTC-USD``; others unchanged."""
    return "X:" + ws_symbol(ticker) if asset_class(ticker) == "crypto" else ticker


def has_file(market: MarketGenerator, asset: str, day: date) -> bool:
    """Files exist only for trading days: every day for crypto, weekdays for the others."""
    if asset.startswith("futures"):
        from .futures import is_session

        return is_session(day)
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


def tick_table(market: MarketGenerator, asset: str, kind: str, day: date) -> pa.Table:
    """All tickers' ``trades``/``quotes`` of ``asset`` on ``day`` with the tick file's columns, sorted by
    ticker then time (each ticker's rows in the generator's tick order)."""
    names = TICK_FILE_COLUMNS[(asset, kind)]
    tickers = sorted((t for t in market.universe if asset_class(t) == asset), key=file_ticker)
    parts = [(file_ticker(t), market.tick_columns(t, day, kind)) for t in tickers]
    parts = [(name, cols) for name, cols in parts if len(cols)]
    n = sum(len(cols) for _, cols in parts)
    columns: dict[str, pa.Array] = {
        "ticker": pa.array(np.repeat([name for name, _ in parts], [len(c) for _, c in parts]) if parts else [],
                           pa.string())}
    for name in names[1:]:
        have = [cols.columns[name] for _, cols in parts if name in cols.columns]
        if not have:
            columns[name] = pa.nulls(n, pa.int64())
        elif name == "id":
            columns[name] = pa.array(np.concatenate(have).astype(str), pa.string())
        else:
            columns[name] = pa.array(np.concatenate(have))
    return pa.table({name: columns[name] for name in names})


def csv_bytes(table: pa.Table) -> bytes:
    """The CSV text of a day file: an unquoted header row, then the rows."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return (",".join(table.column_names) + "\n").encode() + sink.getvalue().to_pybytes()


def day_file(market: MarketGenerator, asset: str, base: str, day: date, *, mtime: int = 0) -> bytes:
    """The gzip bytes of one day file (``base``: ``minute``/``day``/``trades``/``quotes``). A different
    ``mtime`` gives different bytes (so a new ETag) for the same rows, which is how
    :meth:`S3Server.republish` simulates a republished file."""
    if asset.startswith("futures"):
        from .futures import day_table as futures_table

        table = futures_table(PREFIXES[asset], base, day)
    else:
        table = tick_table(market, asset, base, day) if base in TICK_DATASETS else day_table(market, asset, base, day)
    # Level 1 for every file: the bytes only need to be valid gzip, and level 6 made compression half of a
    # sandbox's start-up with s3_days (a stocks minute file: 30 ms at 6, 5.5 ms at 1, a third larger)
    return gzip.compress(csv_bytes(table), compresslevel=1, mtime=mtime)
