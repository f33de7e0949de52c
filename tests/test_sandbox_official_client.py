"""The official ``massive`` client, unchanged, against the sandbox: the 14 common calls, each checked
against what our own API (fetch_ohlcv_rest, fetch_data, fetch_ticks, fetch_splits, the connector's
symbol list) returns for the same data, or against the market generator where we wrap no endpoint
(dividends, market status). The sandbox clock is frozen mid-session, so "now" is one instant."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

from massive_feeds.config import Settings
from massive_feeds.fetch import fetch_data, fetch_ohlcv_rest
from massive_feeds.sandbox import Sandbox
from massive_feeds.schema import NEW_YORK
from massive_feeds.splits import fetch_splits
from massive_feeds.stream import MassiveConnector
from massive_feeds.ticks import fetch_ticks

NOW = datetime(2024, 3, 6, 15, 30, 30, 500_000, tzinfo=timezone.utc)  # Wed 10:30:30.5 New York
NOW_NS = int(NOW.timestamp() * 1000) * 10**6
TODAY, PREV = date(2024, 3, 6), date(2024, 3, 5)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(clock_start=NOW, clock_speed=0) as sandbox:  # speed 0: the clock stands still
        yield sandbox


@pytest.fixture
def settings(sb: Sandbox, tmp_path: Path) -> Settings:
    return sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "datasets", plan="unlimited")


@pytest.fixture
def client(sb: Sandbox) -> Any:
    from massive import RESTClient

    return RESTClient(api_key=sb.api_key, base=sb.rest_url, retries=0)


def day_row(settings: Settings, symbol: str, day: date) -> pd.Series:
    df = fetch_ohlcv_rest(symbol, day, day, "1d", settings=settings)
    assert len(df) == 1
    return df.iloc[0]


def ns(ts: pd.Timestamp) -> int:
    return int(ts.value)


# 1 ---------------------------------------------------------------------------------------------------
def test_get_aggs(client: Any, settings: Settings) -> None:
    aggs = client.get_aggs("AAPL", 1, "day", "2024-02-26", "2024-03-05")
    ours = fetch_ohlcv_rest("AAPL", "2024-02-26", "2024-03-05", "1d", settings=settings)
    assert len(aggs) == len(ours) == 7
    assert [(a.timestamp, a.open, a.high, a.low, a.close, a.volume, a.transactions) for a in aggs] == [
        (r.timestamp.value // 10**6, r.open, r.high, r.low, r.close, r.volume, r.transactions)
        for r in ours.itertuples()]


# 2 ---------------------------------------------------------------------------------------------------
def test_list_tickers(client: Any, settings: Settings) -> None:
    theirs = [t.ticker for t in client.list_tickers(market="stocks", limit=5)]  # pages of 5 via next_url
    with MassiveConnector(settings=settings) as connector:
        ours = connector.list_symbols("stocks")
    assert theirs == ours and len(ours) == 19


# 3 ---------------------------------------------------------------------------------------------------
def test_list_splits(client: Any, settings: Settings) -> None:
    theirs = [(s.ticker, s.execution_date, s.split_from, s.split_to) for s in client.list_splits(ticker="GOOGL")]
    ours = fetch_splits("GOOGL", settings=settings)
    assert theirs == [("GOOGL", "2024-03-06", 1, 4)]
    assert [(r.ticker, str(r.execution_date)[:10], r.split_from, r.split_to) for r in ours.itertuples()] == theirs


# 4 ---------------------------------------------------------------------------------------------------
def test_get_last_trade(client: Any, settings: Settings) -> None:
    last = client.get_last_trade("AAPL")
    ours = fetch_ticks("AAPL", NOW - timedelta(minutes=5), NOW, "trades", method="rest", settings=settings)
    row = ours.iloc[-1]
    assert (last.sip_timestamp, last.price, last.size, last.exchange, last.sequence_number, last.id) == (
        ns(row.timestamp), row.price, row["size"], row.exchange, row.sequence_number, row.id)
    assert last.sip_timestamp <= NOW_NS and last.ticker == "AAPL"


# 5 ---------------------------------------------------------------------------------------------------
def test_get_last_quote(client: Any, settings: Settings) -> None:
    nbbo = client.get_last_quote("AAPL")
    ours = fetch_ticks("AAPL", NOW - timedelta(minutes=5), NOW, "quotes", method="rest", settings=settings)
    row = ours.iloc[-1]
    assert (nbbo.sip_timestamp, nbbo.bid_price, nbbo.ask_price, nbbo.bid_size, nbbo.ask_size, nbbo.bid_exchange,
            nbbo.ask_exchange) == (ns(row.timestamp), row.bid, row.ask, row.bid_size, row.ask_size, row.exchange,
                                   row.ask_exchange)


# 6 ---------------------------------------------------------------------------------------------------
def test_get_previous_close_agg(client: Any, settings: Settings) -> None:
    (prev,) = client.get_previous_close_agg("AAPL")
    row = day_row(settings, "AAPL", PREV)
    assert (prev.ticker, prev.timestamp, prev.open, prev.high, prev.low, prev.close, prev.volume, prev.vwap) == (
        "AAPL", row.timestamp.value // 10**6, row.open, row.high, row.low, row.close, row.volume, row.vwap)


def test_previous_close_of_a_split_ticker_is_adjusted_unless_asked_raw(client: Any, settings: Settings) -> None:
    # GOOGL split 4-for-1 at today's open: yesterday's close as adjusted (default) and raw
    (adj,) = client.get_previous_close_agg("GOOGL")
    (raw,) = client.get_previous_close_agg("GOOGL", adjusted=False)
    assert adj.close == day_row(settings, "GOOGL", PREV).close
    assert raw.close == pytest.approx(adj.close * 4)


# 7 ---------------------------------------------------------------------------------------------------
def test_get_daily_open_close_agg(client: Any, settings: Settings) -> None:
    oc = client.get_daily_open_close_agg("AAPL", PREV.isoformat())
    regular = fetch_data("AAPL", PREV, PREV, "1m", method="rest", session="regular", settings=settings)
    day = day_row(settings, "AAPL", PREV)
    assert regular["timestamp"].iloc[0].tz_convert(NEW_YORK).strftime("%H:%M") == "09:30"
    assert (oc.from_, oc.symbol, oc.open, oc.close) == (PREV.isoformat(), "AAPL", regular["open"].iloc[0],
                                                        regular["close"].iloc[-1])
    assert (oc.high, oc.low) == (regular["high"].max(), regular["low"].min())
    assert oc.volume == pytest.approx(regular["volume"].sum())
    assert (oc.pre_market, oc.after_hours) == (day.open, day.close)  # the day's first and last trades
    assert oc.volume < day.volume  # extended hours are not in the regular session's volume


def test_open_close_of_a_holiday_or_today_is_not_found(client: Any) -> None:
    from massive.exceptions import BadResponse

    for day in ("2023-12-25", TODAY.isoformat()):
        with pytest.raises(BadResponse, match="NOT_FOUND"):
            client.get_daily_open_close_agg("AAPL", day)


# 8 ---------------------------------------------------------------------------------------------------
def test_get_grouped_daily_aggs(client: Any, settings: Settings, sb: Sandbox) -> None:
    grouped = {g.ticker: g for g in client.get_grouped_daily_aggs(PREV.isoformat())}
    stocks = sorted(t for t, i in sb.market.universe.items() if i.asset == "stocks")
    ours = fetch_ohlcv_rest(stocks, PREV, PREV, "1d", settings=settings)
    assert sorted(grouped) == stocks == sorted(ours["symbol"])
    for r in ours.itertuples():
        g = grouped[r.symbol]
        assert (g.open, g.high, g.low, g.close, g.volume, g.transactions) == (
            r.open, r.high, r.low, r.close, r.volume, r.transactions)
        assert pd.Timestamp(g.timestamp, unit="ms", tz="UTC").tz_convert(NEW_YORK) == pd.Timestamp(
            "2024-03-05 16:00", tz=NEW_YORK)  # the real grouped form stamps the close


# 9 ---------------------------------------------------------------------------------------------------
def test_get_ticker_details(client: Any, settings: Settings) -> None:
    details = client.get_ticker_details("JPM")
    listed = next(t for t in client.list_tickers(ticker="JPM"))
    with MassiveConnector(settings=settings) as connector:
        assert "JPM" in connector.list_symbols("stocks", search="JPM")
    assert (details.ticker, details.name, details.primary_exchange, details.type, details.market) == (
        listed.ticker, listed.name, listed.primary_exchange, listed.type, listed.market) == (
        "JPM", "JPMorgan Chase & Co", "XNYS", "CS", "stocks")


# 10, 11 ----------------------------------------------------------------------------------------------
def test_list_trades(client: Any, settings: Settings) -> None:
    theirs = list(client.list_trades("MSFT", timestamp_gte=PREV, timestamp_lt=TODAY, order="asc", limit=2000))
    ours = fetch_ticks("MSFT", PREV, PREV, "trades", method="rest", settings=settings)
    assert len(theirs) == len(ours) > 2000
    assert [(t.sip_timestamp, t.price, t.size, t.exchange, t.sequence_number) for t in theirs] == [
        (ns(r.timestamp), r.price, r.size, r.exchange, r.sequence_number) for r in ours.itertuples()]


def test_list_quotes(client: Any, settings: Settings) -> None:
    theirs = list(client.list_quotes("MSFT", timestamp=PREV.isoformat(), limit=50_000))[::-1]  # newest first
    ours = fetch_ticks("MSFT", PREV, PREV, "quotes", method="rest", settings=settings)
    assert len(theirs) == len(ours) > 2000
    assert [(q.sip_timestamp, q.bid_price, q.ask_price, q.bid_size, q.ask_size) for q in theirs] == [
        (ns(r.timestamp), r.bid, r.ask, r.bid_size, r.ask_size) for r in ours.itertuples()]


# 12 --------------------------------------------------------------------------------------------------
def test_get_snapshot_ticker(client: Any, settings: Settings) -> None:
    snap = client.get_snapshot_ticker("stocks", "AAPL")
    trades = fetch_ticks("AAPL", TODAY, NOW, "trades", method="rest", settings=settings)
    quotes = fetch_ticks("AAPL", TODAY, NOW, "quotes", method="rest", settings=settings)
    minutes = fetch_ohlcv_rest("AAPL", TODAY, NOW, "1m", settings=settings)
    prev = day_row(settings, "AAPL", PREV)
    assert snap.ticker == "AAPL" and snap.updated == ns(trades["timestamp"].iloc[-1])
    assert (snap.day.open, snap.day.high, snap.day.low, snap.day.close) == (
        trades["price"].iloc[0], trades["price"].max(), trades["price"].min(), trades["price"].iloc[-1])
    assert snap.day.volume == trades["size"].sum()
    assert (snap.last_trade.price, snap.last_trade.size, snap.last_trade.id) == (
        trades["price"].iloc[-1], trades["size"].iloc[-1], trades["id"].iloc[-1])
    assert (snap.last_quote.bid_price, snap.last_quote.ask_price, snap.last_quote.sip_timestamp) == (
        quotes["bid"].iloc[-1], quotes["ask"].iloc[-1], ns(quotes["timestamp"].iloc[-1]))
    last_min = minutes.iloc[-1]  # the last finished minute (10:29)
    assert last_min.timestamp.tz_convert(NEW_YORK).strftime("%H:%M") == "10:29"
    assert (snap.min.timestamp, snap.min.open, snap.min.close, snap.min.volume, snap.min.accumulated_volume) == (
        last_min.timestamp.value // 10**6, last_min.open, last_min.close, last_min.volume, minutes["volume"].sum())
    assert (snap.prev_day.open, snap.prev_day.close, snap.prev_day.volume) == (prev.open, prev.close, prev.volume)
    assert snap.todays_change == pytest.approx(trades["price"].iloc[-1] - prev.close)


# 13 --------------------------------------------------------------------------------------------------
def test_list_dividends(client: Any, sb: Sandbox) -> None:
    theirs = list(client.list_dividends(ticker="KO", ex_dividend_date_gte="2020-01-01", limit=3))  # 3 a page
    want = [d for d in sb.market.dividends(date(2020, 1, 1), TODAY) if d.ticker == "KO"][::-1]
    assert len(theirs) == len(want) == 17  # quarterly from 2020 through the clock's day
    assert [(d.ex_dividend_date, d.cash_amount, d.pay_date, d.record_date, d.frequency, d.id) for d in theirs] == [
        (w.ex_dividend_date.isoformat(), w.cash_amount, w.pay_date.isoformat(), w.record_date.isoformat(),
         4, w.id) for w in want]
    assert all(d.declaration_date < d.ex_dividend_date < d.record_date < d.pay_date for d in theirs)


def test_dividends_declared_after_the_clock_are_not_listed_yet(client: Any, sb: Sandbox) -> None:
    upcoming = [d for d in sb.market.dividends(TODAY, TODAY + timedelta(days=60))]
    declared = {d.ex_dividend_date for d in upcoming if d.declaration_date <= TODAY}
    listed = {date.fromisoformat(d.ex_dividend_date)
              for d in client.list_dividends(ex_dividend_date_gt=TODAY.isoformat(), limit=1000)}
    assert listed == declared and len(upcoming) > len(declared) > 0


# 14 --------------------------------------------------------------------------------------------------
def test_get_market_status(client: Any) -> None:
    status = client.get_market_status()
    assert (status.market, status.early_hours, status.after_hours) == ("open", False, False)
    assert (status.exchanges.nyse, status.exchanges.nasdaq) == ("open", "open")
    assert (status.currencies.fx, status.currencies.crypto) == ("open", "open")
    assert datetime.fromisoformat(status.server_time) == NOW.replace(microsecond=0)


@pytest.mark.parametrize("at,market,after", [
    (datetime(2024, 11, 29, 18, 0, 1, tzinfo=timezone.utc), "extended-hours", True),  # 13:00:01 early close
    (datetime(2024, 11, 29, 17, 59, 59, tzinfo=timezone.utc), "open", False),
    (datetime(2024, 11, 29, 22, 0, 0, tzinfo=timezone.utc), "closed", False),  # 17:00: after-hours over
    (datetime(2024, 11, 28, 15, 0, tzinfo=timezone.utc), "closed", False),  # Thanksgiving
])
def test_market_status_follows_the_calendar(at: datetime, market: str, after: bool) -> None:
    from massive import RESTClient

    with Sandbox(clock_start=at, clock_speed=0) as other:
        status = RESTClient(api_key=other.api_key, base=other.rest_url, retries=0).get_market_status()
    assert (status.market, status.after_hours) == (market, after)
    assert status.currencies.fx == "open"


def test_todays_daily_bar_holds_only_finished_minutes(settings: Settings, sb: Sandbox) -> None:
    day = day_row(settings, "AAPL", TODAY)
    minutes = fetch_ohlcv_rest("AAPL", TODAY, NOW, "1m", settings=settings)
    assert (day.open, day.close, day.volume) == (minutes["open"].iloc[0], minutes["close"].iloc[-1],
                                                 minutes["volume"].sum())
    assert np.isclose(day.high, minutes["high"].max()) and len(sb.market.ticks("AAPL", TODAY).t_ms) > 3 * len(minutes)
