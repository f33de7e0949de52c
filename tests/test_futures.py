"""Futures end to end: the sandbox's futures market over real sockets (REST ``/futures/v1``, S3 day files),
single contracts by session, continuous series over rolls with the three adjustments (hand-computed)."""

from __future__ import annotations

import importlib.util
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from massive_feeds import fetch_data, roll_table
from massive_feeds.errors import InvalidInputError
from massive_feeds.futures import RollPlan, stitch
from massive_feeds.futures_symbols import session_open
from massive_feeds.rest import RestClient
from massive_feeds.sandbox import Sandbox
from massive_feeds.schema import BarQuery

CLOCK = datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sb() -> Sandbox:
    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as box:
        yield box


# --- continuous series on hand-made bars ------------------------------------------------------------
def _bars(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """Day bars (contract, session, close) with open = close - 1, high = close + 2, low = close - 2."""
    close = np.array([r[2] for r in rows])
    return pd.DataFrame({
        "timestamp": [session_open(date.fromisoformat(r[1])) for r in rows], "symbol": [r[0] for r in rows],
        "open": close - 1, "high": close + 2, "low": close - 2, "close": close, "volume": 10.0, "vwap": close,
        "transactions": 5, "settlement_price": close, "session_end_date": [r[1] for r in rows]})


# sessions Mon 2026-09-14 .. Thu 09-17; held: U6, U6, Z6 (roll on 09-16), H7 (roll on 09-17)
PLAN = RollPlan(np.array(["2026-09-14", "2026-09-15", "2026-09-16", "2026-09-17"], dtype="datetime64[D]"),
                np.array(["ESU6", "ESU6", "ESZ6", "ESH7"], dtype=object))
BARS = _bars([("ESU6", "2026-09-14", 100.0), ("ESU6", "2026-09-15", 102.0), ("ESU6", "2026-09-16", 90.0),
              ("ESZ6", "2026-09-14", 103.0), ("ESZ6", "2026-09-15", 105.0), ("ESZ6", "2026-09-16", 106.0),
              ("ESH7", "2026-09-16", 110.0), ("ESH7", "2026-09-17", 112.0)])
QUERY = BarQuery.build("ES.c.0", "2026-09-14", "2026-09-17", "1d")


def test_stitch_without_adjustment_keeps_each_contracts_raw_bars() -> None:
    out = stitch(BARS.copy(), PLAN, "ES.c.0", QUERY, "none")
    assert out["close"].tolist() == [100.0, 102.0, 106.0, 112.0]
    assert out["contract"].tolist() == ["ESU6", "ESU6", "ESZ6", "ESH7"]
    assert set(out["symbol"]) == {"ES.c.0"}
    rolls = roll_table(out)
    # roll 1 on 09-16: both closes of 09-15 (U6 102, Z6 105); roll 2 on 09-17: closes of 09-16 (Z6 106, H7 110)
    assert rolls[["from", "to", "from_price", "to_price", "offset"]].values.tolist() == [
        ["ESU6", "ESZ6", 102.0, 105.0, 3.0], ["ESZ6", "ESH7", 106.0, 110.0, 4.0]]
    assert rolls["date"].tolist() == [pd.Timestamp("2026-09-16"), pd.Timestamp("2026-09-17")]
    assert rolls["factor"].tolist() == pytest.approx([105 / 102, 110 / 106])
    # attrs hold plain records (JSON-safe, comparable with ==); roll_table is the DataFrame view of them
    assert out.attrs["rolls"] == [
        {"date": "2026-09-16", "from": "ESU6", "to": "ESZ6", "from_price": 102.0, "to_price": 105.0,
         "factor": 105 / 102, "offset": 3.0},
        {"date": "2026-09-17", "from": "ESZ6", "to": "ESH7", "from_price": 106.0, "to_price": 110.0,
         "factor": 110 / 106, "offset": 4.0}]


def test_a_continuous_frame_goes_through_parquet_concat_and_merge() -> None:
    import io

    out = stitch(BARS.copy(), PLAN, "ES.c.0", QUERY, "difference")
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)  # pandas writes attrs as JSON: a DataFrame there made this raise
    back = pd.read_parquet(io.BytesIO(buf.getvalue()))
    assert back.attrs["rolls"] == out.attrs["rolls"] and back.attrs["roll_adjust"] == "difference"
    pd.testing.assert_frame_equal(roll_table(back), roll_table(out))
    assert roll_table(back)[["date", "from", "to", "offset"]].values.tolist() == [
        [pd.Timestamp("2026-09-16"), "ESU6", "ESZ6", 3.0], [pd.Timestamp("2026-09-17"), "ESZ6", "ESH7", 4.0]]
    # pandas compares attrs on concat and merge: equal roll tables are kept, different ones dropped, never a raise
    twice = pd.concat([out, out.copy()], ignore_index=True)
    assert len(twice) == 8 and roll_table(twice)["to"].tolist() == ["ESZ6", "ESH7"]
    raw = stitch(BARS.copy(), PLAN, "ES.c.0", QUERY, "none")
    both = out.merge(raw, on="timestamp", suffixes=("", "_raw"))
    assert (both["close"] - both["close_raw"]).tolist() == [7.0, 7.0, 4.0, 0.0]  # the offsets: +3+4, +3+4, +4, 0
    assert "rolls" not in pd.concat([out, raw.iloc[:0]]).attrs  # another roll_adjust: pandas keeps no attrs
    with pytest.raises(InvalidInputError, match="no roll table"):
        roll_table(pd.concat([out, raw]))


def test_a_roll_without_prices_is_none_in_attrs_and_nan_in_the_table() -> None:
    import io

    bars = BARS[~((BARS["symbol"] == "ESZ6") & (BARS["session_end_date"] == "2026-09-15"))].copy()
    out = stitch(bars, PLAN, "ES.c.0", QUERY, "none")  # ESZ6 has no bar in the session before the first roll
    first = out.attrs["rolls"][0]
    assert (first["from_price"], first["to_price"], first["factor"], first["offset"]) == (102.0, None, None, None)
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    assert pd.read_parquet(io.BytesIO(buf.getvalue())).attrs["rolls"] == out.attrs["rolls"]
    table = roll_table(out)
    assert table["to_price"].isna().tolist() == [True, False] and table["to_price"].iloc[1] == 110.0


def test_stitch_difference_adds_the_later_offsets() -> None:
    out = stitch(BARS.copy(), PLAN, "ES.c.0", QUERY, "difference")
    assert out["close"].tolist() == [107.0, 109.0, 110.0, 112.0]  # U6 +3+4, Z6 +4, H7 as is
    assert out["open"].tolist() == [106.0, 108.0, 109.0, 111.0]
    assert out["volume"].tolist() == [10.0] * 4  # volumes are never adjusted


def test_stitch_ratio_multiplies_by_the_later_factors() -> None:
    out = stitch(BARS.copy(), PLAN, "ES.c.0", QUERY, "ratio")
    both = (105 / 102) * (110 / 106)
    assert out["close"].tolist() == pytest.approx([100 * both, 102 * both, 110.0, 112.0])
    assert out["close"].iloc[1] == pytest.approx(110.0 * 105 / 106)  # 108.962...: level continuous across rolls
    assert out["high"].iloc[2] == pytest.approx(108 * 110 / 106)


def test_bad_roll_adjust_is_refused_before_any_call(sb: Sandbox) -> None:
    before = sb.rest.count("/")
    with pytest.raises(InvalidInputError, match="'none' \\(default\\), 'ratio' or 'difference'"):
        fetch_data("ES.c.0", "2026-09-14", "2026-09-18", "1d", settings=sb.settings(), roll_adjust="back")
    assert sb.rest.count("/") == before


# --- the sandbox's futures endpoints ------------------------------------------------------------------
def test_sandbox_contracts_list_spreads_first_and_expiries(sb: Sandbox) -> None:
    with RestClient(sb.settings()) as client:
        body = client.get_json("/futures/v1/contracts", {"product_code": "ES", "date": "2026-09-01"})
    types = [r["type"] for r in body["results"]]
    assert types == ["combo"] * 4 + ["single"] * 5  # the spec's two values: "single" or "combo"
    singles = [(r["ticker"], r["last_trade_date"]) for r in body["results"] if r["type"] == "single"]
    assert singles[:2] == [("ESU6", "2026-09-18"), ("ESZ6", "2026-12-18")]  # third Fridays


def test_sandbox_session_aggs_are_ns_and_newest_first(sb: Sandbox) -> None:
    with RestClient(sb.settings()) as client:
        body = client.get_json("/futures/v1/aggs/ESZ6", {"resolution": "1session",
                                                         "window_start.gte": "2026-11-30",
                                                         "window_start.lt": "2026-12-03"})
    rows = body["results"]
    assert [r["session_end_date"] for r in rows] == ["2026-12-03", "2026-12-02", "2026-12-01"]
    # the session of 12-01 opened 11-30 17:00 Chicago = 23:00 UTC
    assert rows[-1]["window_start"] == int(pd.Timestamp("2026-11-30 23:00", tz="UTC").value)
    assert set(rows[0]) >= {"dollar_volume", "settlement_price", "transactions", "volume"}


# --- through fetch_data ---------------------------------------------------------------------------------
def test_a_contracts_day_bars_are_its_sessions(sb: Sandbox) -> None:
    df = fetch_data("F:GCZ6", "2026-11-02", "2026-11-04", "1d", settings=sb.settings())
    assert df["session_end_date"].tolist() == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2026-11-01 23:00", tz="UTC")  # Sunday 17:00 Chicago (CST)
    with RestClient(sb.settings()) as client:
        raw = client.get_json("/futures/v1/aggs/GCZ6", {"resolution": "1session", "window_start.gte": "2026-11-01",
                                                        "window_start.lt": "2026-11-02"})["results"][0]
    assert df["close"].iloc[0] == raw["close"] and df["settlement_price"].iloc[0] == raw["settlement_price"]
    assert df["vwap"].iloc[0] == pytest.approx(raw["dollar_volume"] / raw["volume"])
    assert df.attrs["method"] == "rest"


def test_calendar_roll_over_rest_one_contracts_call(sb: Sandbox) -> None:
    before = sb.rest.count("/futures/v1/contracts")
    raw = fetch_data("ES.c.0", "2026-09-14", "2026-09-25", "1d", settings=sb.settings())
    assert sb.rest.count("/futures/v1/contracts") == before + 1
    # ESU6 is held through its last trade date (Fri 09-18), ESZ6 from the next session
    assert raw["contract"].tolist() == ["ESU6"] * 5 + ["ESZ6"] * 5
    rolls = roll_table(raw)
    assert rolls[["from", "to"]].values.tolist() == [["ESU6", "ESZ6"]]
    assert rolls["date"].iloc[0] == pd.Timestamp("2026-09-21")
    own = fetch_data("ESZ6", "2026-09-18", "2026-09-25", "1d", settings=sb.settings())
    # after the last roll the series is that contract's own bars; the roll prices are both closes of 09-18
    assert raw["close"].iloc[5:].tolist() == own["close"].iloc[1:].tolist()
    assert rolls["to_price"].iloc[0] == own["close"].iloc[0]
    assert rolls["from_price"].iloc[0] == raw["close"].iloc[4]
    ratio = fetch_data("ES.c.0", "2026-09-14", "2026-09-25", "1d", settings=sb.settings(), roll_adjust="ratio")
    diff = fetch_data("ES.c.0", "2026-09-14", "2026-09-25", "1d", settings=sb.settings(), roll_adjust="difference")
    factor, offset = rolls["factor"].iloc[0], rolls["offset"].iloc[0]
    assert ratio["close"].iloc[:5].to_numpy() == pytest.approx(raw["close"].iloc[:5].to_numpy() * factor)
    assert diff["close"].iloc[:5].to_numpy() == pytest.approx(raw["close"].iloc[:5].to_numpy() + offset)
    assert ratio["close"].iloc[5:].tolist() == diff["close"].iloc[5:].tolist() == raw["close"].iloc[5:].tolist()


def test_volume_roll_comes_before_the_calendar_roll_and_rank_one_is_the_next(sb: Sandbox) -> None:
    v = fetch_data("ES.v.0", "2026-09-08", "2026-09-25", "1d", settings=sb.settings())
    first_z = v.loc[v["contract"] == "ESZ6", "session_end_date"].iloc[0]
    assert "2026-09-08" < first_z < "2026-09-21"  # the volume moved to ESZ6 before U6's last day
    day = v[v["session_end_date"] == first_z].index[0]
    assert v["volume"].iloc[day - 1] < v["volume"].iloc[day]  # it rolled to the busier contract
    second = fetch_data("ES.c.1", "2026-09-14", "2026-09-25", "1d", settings=sb.settings())
    assert second["contract"].tolist() == ["ESZ6"] * 5 + ["ESH7"] * 5


def test_a_mixed_query_is_the_separate_fetches_in_one_frame(sb: Sandbox, tmp_path: Path) -> None:
    settings = sb.settings(home=tmp_path / "home", plan="unlimited")
    mixed = fetch_data(["ES.c.0", "SPY", "GC.c.0"], "2026-09-17", "2026-09-22", "1h", settings=settings)
    es = fetch_data("ES.c.0", "2026-09-17", "2026-09-22", "1h", settings=settings)
    gc = fetch_data("GC.c.0", "2026-09-17", "2026-09-22", "1h", settings=settings)
    spy = fetch_data("SPY", "2026-09-17", "2026-09-22", "1h", settings=settings)
    # sorted by symbol then time; four ES/GC sessions of 23 hours, four SPY days of 16 (04:00-20:00 New York)
    assert mixed.groupby("symbol", sort=False).size().to_dict() == {"ES.c.0": 92, "GC.c.0": 92, "SPY": 64}
    for own in (es, gc):
        part = mixed[mixed["symbol"] == own["symbol"].iloc[0]].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, own, check_like=False)
    stock = mixed[mixed["symbol"] == "SPY"].reset_index(drop=True)
    pd.testing.assert_frame_equal(stock[list(spy.columns)], spy)
    assert stock["settlement_price"].isna().all() and stock["contract"].isna().all()
    assert stock["session_end_date"].isna().all()
    assert mixed.columns.tolist()[-3:] == ["settlement_price", "session_end_date", "contract"]
    # each continuous series keeps its roll table, named by a symbol column (one series alone: the table as is)
    rolls = roll_table(mixed)
    assert rolls[["symbol", "from", "to"]].values.tolist() == [["ES.c.0", "ESU6", "ESZ6"], ["GC.c.0", "GCU6", "GCZ6"]]
    assert rolls.drop(columns="symbol").iloc[:1].values.tolist() == roll_table(es).values.tolist()
    assert "symbol" not in roll_table(es)
    assert mixed.attrs["rolls"][1]["symbol"] == "GC.c.0" and "symbol" not in es.attrs["rolls"][0]
    import io

    buf = io.BytesIO()
    mixed.to_parquet(buf, index=False)  # the Data Loader's Parquet download of this frame
    back = pd.read_parquet(io.BytesIO(buf.getvalue()))
    assert back.attrs["rolls"] == mixed.attrs["rolls"]
    pd.testing.assert_frame_equal(roll_table(back), rolls)
    assert roll_table(pd.concat([es, es], ignore_index=True)).values.tolist() == roll_table(es).values.tolist()
    assert len(pd.concat([es, gc], ignore_index=True)) == 2 * 92  # two series' roll tables differ: attrs dropped
    assert mixed.attrs["method_by_symbol"] == {"ES.c.0": "rest", "GC.c.0": "rest", "SPY": "rest"}
    assert mixed.attrs["method"] == "rest" and mixed.attrs["empty_symbols"] == []
    from massive_feeds import fetch_ohlcv_rest

    pd.testing.assert_frame_equal(fetch_ohlcv_rest(["ES.c.0", "SPY", "GC.c.0"], "2026-09-17", "2026-09-22", "1h",
                                                   settings=settings), mixed)
    # a part without any bar is listed, not fatal, as in a one-class query of several symbols
    partial = fetch_data(["ES.c.0", "ZZZZ"], "2026-09-17", "2026-09-22", "1h", settings=settings)
    assert partial["symbol"].unique().tolist() == ["ES.c.0"] and partial.attrs["empty_symbols"] == ["ZZZZ"]
    assert partial.attrs["empty_reasons"]["ZZZZ"] == "no bars over REST: unknown symbol (no active ticker by that name)"
    assert partial.attrs["method_by_symbol"] == {"ES.c.0": "rest"}


def test_a_mixed_regular_session_cuts_each_part_at_its_own_venues_hours(sb: Sandbox, tmp_path: Path) -> None:
    settings = sb.settings(home=tmp_path / "home", plan="unlimited")
    mixed = fetch_data(["ESZ6", "SPY"], "2026-11-27", "2026-11-27", "1m", settings=settings, session="regular")
    es = mixed[mixed["symbol"] == "ESZ6"]
    spy = mixed[mixed["symbol"] == "SPY"]
    # CME: 11-26 17:00 Chicago .. the 12:15 early close; NYSE: 09:30 .. the 13:00 early close (New York, EST)
    assert (es["timestamp"].iloc[0], es["timestamp"].iloc[-1], len(es)) == (
        pd.Timestamp("2026-11-26 23:00", tz="UTC"), pd.Timestamp("2026-11-27 18:14", tz="UTC"), 1155)
    assert (spy["timestamp"].iloc[0], spy["timestamp"].iloc[-1]) == (
        pd.Timestamp("2026-11-27 14:30", tz="UTC"), pd.Timestamp("2026-11-27 17:59", tz="UTC"))
    alone = fetch_data("SPY", "2026-11-27", "2026-11-27", "1m", settings=settings, session="regular")
    assert spy["close"].tolist() == alone["close"].tolist()


def test_mixed_day_bars_side_by_side_are_a_one_line_refusal(sb: Sandbox, tmp_path: Path) -> None:
    settings = sb.settings(home=tmp_path / "home", plan="unlimited")
    before = sb.rest.count("/")
    with pytest.raises(InvalidInputError, match="cannot line up 1d bars of futures and other asset classes"):
        fetch_data(["ES.c.0", "SPY"], "2026-09-14", "2026-09-18", "1d", settings=settings, layout="wide")
    assert sb.rest.count("/") == before
    long = fetch_data(["ES.c.0", "SPY"], "2026-09-14", "2026-09-18", "1d", settings=settings)
    assert long.groupby("symbol").size().to_dict() == {"ES.c.0": 5, "SPY": 5}
    wide = fetch_data(["ES.c.0", "SPY"], "2026-09-17", "2026-09-17", "1h", settings=settings, layout="wide")
    # intraday bars share the UTC clock: 14:00 UTC holds both
    row = wide.loc[pd.Timestamp("2026-09-17 14:00", tz="UTC"), "Close"]
    assert row.notna().tolist() == [True, True]


def test_regular_session_follows_the_products_schedule_with_its_early_close(sb: Sandbox, tmp_path: Path) -> None:
    # sessions settling Wed 11-25, Fri 11-27 (Thanksgiving 11-26: no session; 11-27 closes 12:15 Chicago =
    # 18:15 UTC, CST) and Mon 11-30; each opens 17:00 Chicago (23:00 UTC) the calendar day before
    settings = sb.settings(home=tmp_path / "home", plan="unlimited")
    for ticker in ("ESZ6", "ES.c.0"):  # ES.c.0 holds ESZ6 all week (it expires 12-18)
        ext = fetch_data(ticker, "2026-11-25", "2026-11-30", "1m", settings=settings)
        reg = fetch_data(ticker, "2026-11-25", "2026-11-30", "1m", settings=settings, session="regular")
        assert reg.attrs["session"] == "regular"
        by = reg.groupby("session_end_date")["timestamp"].agg(["first", "last", "count"])
        assert by.index.tolist() == ["2026-11-25", "2026-11-27", "2026-11-30"]
        assert by["first"].tolist() == [pd.Timestamp(f"2026-11-{d} 23:00", tz="UTC") for d in (24, 26, 29)]
        assert by["last"].tolist() == [pd.Timestamp("2026-11-25 21:59", tz="UTC"),
                                       pd.Timestamp("2026-11-27 18:14", tz="UTC"),  # the early close
                                       pd.Timestamp("2026-11-30 21:59", tz="UTC")]
        assert by["count"].tolist() == [1380, 1155, 1380]  # 17:00 -> 12:15 is 19 h 15 min
        # the market stops at the early close (no bar after 18:14 UTC): the extended bars are the sessions whole,
        # which the schedule's open..close spans entirely
        assert ext.groupby("session_end_date").size().tolist() == [1380, 1155, 1380]
        assert reg["close"].tolist() == ext["close"].tolist()
        hours = fetch_data(ticker, "2026-11-25", "2026-11-30", "1h", settings=settings, session="regular")
        last = hours[hours["session_end_date"] == "2026-11-27"].iloc[-1]
        minutes = reg[(reg["timestamp"] >= pd.Timestamp("2026-11-27 18:00", tz="UTC"))
                      & (reg["session_end_date"] == "2026-11-27")]
        assert last["timestamp"] == pd.Timestamp("2026-11-27 18:00", tz="UTC")
        assert len(minutes) == 15  # 18:00 .. 18:14: the hour bar is built from the minutes before the close
        assert last["volume"] == minutes["volume"].sum()
        assert last["close"] == minutes["close"].iloc[-1]
        assert last["high"] == minutes["high"].max()
    # one schedules call for the product and year, cached for every later query of it (these and the module's)
    es_calls = [r.query for r in sb.rest.requests if r.path == "/futures/v1/schedules" and "product_code=ES" in r.query]
    assert len(es_calls) == 1 and "session_end_date.gte=2026-01-01" in es_calls[0]


def test_the_sandbox_market_stops_at_the_early_close_and_skips_the_holiday_on_every_path(tmp_path: Path) -> None:
    pytest.importorskip("moto")
    from massive_feeds import download_flat_file, fetch_ticks
    from massive_feeds.sandbox import futures as market

    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as box:
        settings = box.settings(home=tmp_path / "home", plan="unlimited")
        rest = fetch_data("ESZ6", "2026-11-25", "2026-11-30", "1m", method="rest", settings=settings)
        files = download_flat_file("ESZ6", "2026-11-25", "2026-11-30", "1m", settings=settings)
        days = fetch_data("ESZ6", "2026-11-25", "2026-11-30", "1d", method="rest", settings=settings)
        day_files = download_flat_file("ESZ6", "2026-11-25", "2026-11-30", "1d", settings=settings)
        ticks = fetch_ticks("ESZ6", "2026-11-27T18:00:00Z", "2026-11-27T19:00:00Z", ["trades", "quotes"],
                            method="rest", settings=settings)
    # Thanksgiving (Thu 11-26) has no session: nothing between 11-25's close (22:00 UTC) and the open of 11-27's
    # session (11-26 17:00 Chicago = 23:00 UTC); 11-27 closes 12:15 Chicago = 18:15 UTC (1,155 minutes)
    for bars in (rest, files):
        by = bars.groupby("session_end_date")["timestamp"].agg(["first", "last", "count"])
        assert by.index.tolist() == ["2026-11-25", "2026-11-27", "2026-11-30"]
        assert by["count"].tolist() == [1380, 1155, 1380]
        assert by["last"].tolist() == [pd.Timestamp("2026-11-25 21:59", tz="UTC"),
                                       pd.Timestamp("2026-11-27 18:14", tz="UTC"),
                                       pd.Timestamp("2026-11-30 21:59", tz="UTC")]
        assert by["first"].iloc[1] == pd.Timestamp("2026-11-26 23:00", tz="UTC")
    cols = ["timestamp", "open", "high", "low", "close", "volume", "transactions"]
    pd.testing.assert_frame_equal(rest[cols], files[cols])
    # the session bar of 11-27 settles at its 18:14 minute's close and sums the 1,155 minutes
    early = rest[rest["session_end_date"] == "2026-11-27"]
    for d in (days, day_files):
        bar = d[d["session_end_date"] == "2026-11-27"].iloc[0]
        assert (bar["close"], bar["volume"]) == (early["close"].iloc[-1], early["volume"].sum())
    assert days["session_end_date"].tolist() == ["2026-11-25", "2026-11-27", "2026-11-30"]
    # one trade and one quote 56 s into each minute up to the close: 18:00:56 .. 18:14:56, none after
    for kind in ("trade", "quote"):
        times = ticks.loc[ticks["kind"] == kind, "time_ms"]
        assert len(times) == 15 and int(times.iloc[-1]) == int(pd.Timestamp("2026-11-27 18:14:56", tz="UTC").value
                                                                 // 10**6)
    # the /futures WebSocket's events (what the sandbox's socket sends) stop there too
    lo, hi = (int(pd.Timestamp(t, tz="UTC").value // 10**6) for t in ("2026-11-27 18:10", "2026-11-27 23:59"))
    events = market.ws_events({"AM.ESZ6", "T.ESZ6"}, lo, hi)
    assert [e["s"] for e in events if e["ev"] == "AM"][-1] == int(pd.Timestamp("2026-11-27 18:14", tz="UTC").value
                                                                   // 10**6)
    assert len([e for e in events if e["ev"] == "T"]) == 5  # 18:10:56 .. 18:14:56


def test_quality_judges_futures_on_the_products_sessions() -> None:
    from massive_feeds.quality import quality_report

    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as box:
        settings = box.settings(plan="unlimited")
        df = fetch_data("ESZ6", "2026-11-25", "2026-11-30", "1m", settings=settings)
        days = fetch_data("ESZ6", "2026-11-25", "2026-11-30", "1d", settings=settings)
    assert list(df.attrs["schedules"]) == ["ES"]  # fetch_data attaches the product's schedule, JSON-safe:
    es = df.attrs["schedules"]["ES"]
    assert es["session_end_date"][:3] == ["2026-11-25", "2026-11-27", "2026-11-30"]  # no Thanksgiving session
    assert (es["open"][1], es["close"][1]) == ("2026-11-26T23:00:00Z", "2026-11-27T18:15:00Z")
    import io

    df.to_parquet(io.BytesIO())  # pandas writes attrs as JSON
    report = quality_report(df)
    # one row per session (session_end_date), its window the schedule's: the early close is no gap
    assert [str(d) for d in report["date"]] == ["2026-11-25", "2026-11-27", "2026-11-30"]
    assert report["expected"].tolist() == [1380.0, 1155.0, 1380.0]
    assert report["in_session"].tolist() == [1380, 1155, 1380] and report["extended"].tolist() == [0, 0, 0]
    assert report["session_end"].iloc[1] == pd.Timestamp("2026-11-27 18:15", tz="UTC")
    assert report["early_close"].tolist() == [False, True, False]
    assert report["gaps"].tolist() == [0, 0, 0] and report["status"].tolist() == ["ok"] * 3
    assert quality_report(days)["status"].tolist() == ["ok"] * 3  # no day bar is due on Thanksgiving
    # a frame without the schedule is judged on the Globex weekday rule, and the note says so: the holiday is a
    # missing session, the minutes after the early close (13:15-17:00 New York) a gap
    bare = df.copy()
    bare.attrs = {k: v for k, v in df.attrs.items() if k != "schedules"}
    fallback = quality_report(bare)
    assert [str(d) for d in fallback["date"]] == ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-30"]
    assert fallback["issues"].tolist() == ["", "missing_day", "suspicious_gaps", ""]
    assert fallback["gap_detail"].iloc[2] == "13:15-17:00 (225 min)"
    assert any("no schedule for ES" in n for n in fallback.attrs["notes"])
    given = quality_report(bare, schedules=df.attrs["schedules"])
    assert given["status"].tolist() == ["ok"] * 3


def test_cli_quality_of_a_saved_futures_dataset_fetches_the_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from massive_feeds.cli import main
    from massive_feeds.datasets import save_dataset

    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path))
    monkeypatch.setenv("MASSIVE_FEEDS_HOME", str(tmp_path / "home"))
    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as fetched_from:
        save_dataset(fetch_data("ESZ6", "2026-11-25", "2026-11-30", "1m", settings=fetched_from.settings(
            plan="unlimited")), "es_thanksgiving")
    with Sandbox(clock_start=CLOCK, clock_speed=0.001) as box:  # another server: nothing of it is cached yet
        for key, value in {**box.env(), "MASSIVE_PLAN": "unlimited"}.items():
            monkeypatch.setenv(key, value)
        assert main(["quality", "es_thanksgiving", "--no-splits", "--all"]) == 0
        assert box.rest.count("/futures/v1/schedules") == 1  # the dataset keeps no schedule: asked once
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith("2026-11-")}
    assert lines["2026-11-27"][:4] == ["2026-11-27", "ESZ6", "ok", "1155/1155"] and "early" in lines["2026-11-27"]
    assert sorted(lines) == ["2026-11-25", "2026-11-27", "2026-11-30"]
    assert "0 day(s) with errors, 0 with warnings, 3 ok" in out


def test_flat_files_give_the_rest_series_reading_each_day_once() -> None:
    pytest.importorskip("moto")
    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as box:
        files = fetch_data("ES.c.0", "2026-09-17", "2026-09-22", "1m", method="flat_file", settings=box.settings())
        rest = fetch_data("ES.c.0", "2026-09-17", "2026-09-22", "1m", method="rest", settings=box.settings())
        keys = [r.key for r in box.s3.requests if r.method == "GET" and r.key.endswith(".csv.gz")]
    # 4 sessions x 1,380 minutes; ESU6 through Friday 09-18, ESZ6 from the session of Monday 09-21
    assert len(files) == 4 * 1380
    assert files.groupby("contract").size().to_dict() == {"ESU6": 2760, "ESZ6": 2760}
    assert files["timestamp"].iloc[0] == pd.Timestamp("2026-09-16 22:00", tz="UTC")  # 17:00 Chicago (CDT)
    cols = ["timestamp", "open", "high", "low", "close", "volume", "transactions", "contract"]
    pd.testing.assert_frame_equal(files[cols], rest[cols])
    assert files["vwap"].to_numpy() == pytest.approx(rest["vwap"].to_numpy())  # dollar_volume / volume on both
    assert roll_table(files).values.tolist() == roll_table(rest).values.tolist()
    # each contract reads its held sessions, a contract rolled into also the session before (whose close prices
    # the roll): 09-18 is read for both (a second GET unless the first download is in the cache by then)
    assert sorted({k.rsplit("/", 1)[1] for k in keys}) == [f"2026-09-{d}.csv.gz" for d in (17, 18, 21, 22)]
    assert len(keys) in (4, 5) and all(k.startswith("us_futures_cme/minute_aggs_v1/2026/09/") for k in keys)


def test_a_backtrader_strategy_on_the_continuous_series_books_fifty_dollars_a_point(sb: Sandbox) -> None:
    bt = pytest.importorskip("backtrader")
    from massive_feeds.backtrader import MassiveData

    class RoundTrip(bt.Strategy):
        def __init__(self) -> None:
            self.fills: list[float] = []
            self.pnl: list[float] = []

        def next(self) -> None:
            if len(self) == 1:
                self.buy(size=2)
            elif len(self) == 4:
                self.close()

        def notify_order(self, order: bt.Order) -> None:
            if order.status == order.Completed:
                self.fills.append(order.executed.price)

        def notify_trade(self, trade: bt.Trade) -> None:
            if trade.isclosed:
                self.pnl.append(trade.pnl)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(100_000.0)
    data = MassiveData(dataname="ES.c.0", fromdate=date(2026, 10, 5), todate=date(2026, 10, 16),
                       timeframe=bt.TimeFrame.Days, method="rest", settings=sb.settings())
    cerebro.adddata(data)
    cerebro.addstrategy(RoundTrip)
    strat = cerebro.run()[0]
    entry, exit_ = strat.fills
    assert entry != exit_  # a move to book (ESZ6 is held the whole window: no roll inside)
    assert strat.pnl == [pytest.approx((exit_ - entry) * 2 * 50)]
    assert cerebro.broker.getvalue() == pytest.approx(100_000.0 + (exit_ - entry) * 2 * 50)
    assert cerebro.broker.getcommissioninfo(data).p.mult == 50.0


def test_vectorbt_downloads_the_continuous_series(sb: Sandbox, tmp_path: Path) -> None:
    pytest.importorskip("vectorbt")
    from massive_feeds.vectorbt import MassiveData

    data = MassiveData.download("ES.c.0", start="2026-09-14", end="2026-09-25", timeframe="1d", method="rest",
                                settings=sb.settings(), roll_adjust="difference")
    direct = fetch_data("ES.c.0", "2026-09-14", "2026-09-25", "1d", method="rest", settings=sb.settings(),
                        roll_adjust="difference")
    assert data.get("Close").tolist() == direct["close"].tolist()
    assert len(direct) == 10 and roll_table(direct)["offset"].iloc[0] != 0
    # a pair in one download: each symbol's closes are its own fetch's, on the shared UTC clock
    settings = sb.settings(home=tmp_path / "home", plan="unlimited")
    pair = MassiveData.download(["ES.c.0", "SPY"], start="2026-09-17", end="2026-09-17", timeframe="1h",
                                settings=settings)
    spy = fetch_data("SPY", "2026-09-17", "2026-09-17", "1h", settings=settings)
    es = fetch_data("ES.c.0", "2026-09-17", "2026-09-17", "1h", settings=settings)
    close = pair.get("Close")
    assert close["SPY"].dropna().tolist() == spy["close"].tolist()
    assert close["ES.c.0"].dropna().tolist() == es["close"].tolist()
    # the union of ES's 23 session hours (09-16 22:00 .. 09-17 20:00 UTC) and SPY's 16 (08:00 .. 23:00 UTC): 13 shared
    assert len(close) == 26 and close.dropna().index[[0, -1]].hour.tolist() == [8, 20]
    with pytest.raises(InvalidInputError, match="vectorbt's MassiveData cannot line up 1d bars"):
        MassiveData.download(["ES.c.0", "SPY"], start="2026-09-14", end="2026-09-18", timeframe="1d",
                             settings=settings)


def test_fetch_ticks_of_a_contract_come_from_the_futures_endpoint(sb: Sandbox) -> None:
    from massive_feeds import fetch_ticks

    before, v3 = sb.rest.count("/futures/v1/trades/ESZ6"), sb.rest.count("/v3/")
    ticks = fetch_ticks("ESZ6", "2026-11-02T14:30:00Z", "2026-11-02T14:35:00Z", kind=["trades", "quotes"],
                        settings=sb.settings())
    assert sb.rest.count("/futures/v1/trades/ESZ6") == before + 1 and sb.rest.count("/v3/") == v3
    trades = ticks[ticks["kind"] == "trade"]
    quotes = ticks[ticks["kind"] == "quote"]
    assert len(trades) == len(quotes) == 5  # one print (and its book) 56 s into each minute
    assert trades["timestamp"].iloc[0] == pd.Timestamp("2026-11-02 14:30:56", tz="UTC")
    bars = fetch_data("ESZ6", "2026-11-02T14:30:00Z", "2026-11-02T14:34:59Z", "1m", settings=sb.settings())
    assert trades["price"].tolist() == bars["close"].tolist()  # the sandbox prints each minute's close
    assert (quotes["ask"] - quotes["bid"]).round(2).tolist() == [0.25] * 5  # one ES tick wide


def test_quality_shows_the_roll_table() -> None:
    from massive_feeds.quality import quality_report

    out = stitch(BARS.copy(), PLAN, "ES.c.0", QUERY, "difference")
    report = quality_report(out)
    assert roll_table(report)["to"].tolist() == ["ESZ6", "ESH7"]
    notes = [n for n in report.attrs["notes"] if n.startswith("futures roll")]
    assert notes == ["futures roll 2026-09-16: ESU6 -> ESZ6 at 102 / 105 (factor 1.029412, offset +3; "
                     "roll_adjust=difference)",
                     "futures roll 2026-09-17: ESZ6 -> ESH7 at 106 / 110 (factor 1.037736, offset +4; "
                     "roll_adjust=difference)"]
    assert report.attrs["rolls"] == out.attrs["rolls"]  # JSON-safe there too
    legacy = out.copy()
    legacy.attrs["rolls"] = roll_table(out)  # a frame from before the records: still read
    assert [n for n in quality_report(legacy).attrs["notes"] if n.startswith("futures roll")] == notes


def test_a_saved_continuous_series_loads_back_with_its_rolls(sb: Sandbox, tmp_path: Path) -> None:
    from massive_feeds import load_dataset, save_dataset
    from massive_feeds.errors import IncompatibleDatasetError

    settings = sb.settings(home=tmp_path / "home", plan="unlimited")
    es = fetch_data("ES.c.0", "2026-09-14", "2026-09-25", "1d", settings=settings, roll_adjust="ratio")
    save_dataset(es, "es", folder=tmp_path / "ds")
    back = load_dataset("es", folder=tmp_path / "ds")
    assert back.attrs["rolls"] == es.attrs["rolls"] and back.attrs["roll_adjust"] == "ratio"
    pd.testing.assert_frame_equal(roll_table(back), roll_table(es))
    assert roll_table(back)[["date", "from", "to"]].values.tolist() == [[pd.Timestamp("2026-09-21"), "ESU6", "ESZ6"]]
    assert back["close"].tolist() == es["close"].tolist()
    # appending another series: each roll named by its series; another roll_adjust is refused
    gc = fetch_data("GC.c.0", "2026-09-14", "2026-09-25", "1d", settings=settings, roll_adjust="ratio")
    save_dataset(gc, "es", append=True, folder=tmp_path / "ds")
    both = roll_table(load_dataset("es", folder=tmp_path / "ds"))
    assert both[["symbol", "from", "to"]].values.tolist() == [["ES.c.0", "ESU6", "ESZ6"], ["GC.c.0", "GCU6", "GCZ6"]]
    assert both.drop(columns="symbol").values.tolist() == [*roll_table(es).values.tolist(),
                                                            *roll_table(gc).values.tolist()]
    raw = fetch_data("ES.c.0", "2026-09-28", "2026-10-02", "1d", settings=settings)
    with pytest.raises(IncompatibleDatasetError, match="roll_adjust='ratio' and the new bars have roll_adjust='none'"):
        save_dataset(raw, "es", append=True, folder=tmp_path / "ds")


def test_futures_stream_on_the_futures_cluster_gives_the_rest_minute_bars(tmp_path: Path) -> None:
    import asyncio
    from contextlib import aclosing

    from massive_feeds.stream import stream_events
    from massive_feeds.stream.protocol import subscription_params

    assert subscription_params("ESZ6", ["agg_minute", "trade", "quote"]) == ["AM.ESZ6", "T.ESZ6", "Q.ESZ6"]
    with pytest.raises(InvalidInputError, match="ES.c.0 is a continuous series"):
        subscription_params("ES.c.0", ["trade"])
    with Sandbox(websocket=True, clock_start=CLOCK, clock_speed=60.0) as box:
        settings = box.settings(home=tmp_path / "home")

        async def first_events() -> list:
            got: list = []
            async with aclosing(stream_events(["ESZ6"], ["agg_minute", "trade", "quote"], settings=settings)) as it:
                async for ev in it:
                    got.append(ev)
                    if sum(e.kind == "agg_minute" for e in got) == 2:
                        return got
            return got

        events = asyncio.run(asyncio.wait_for(first_events(), 30))
    bars = [e for e in events if e.kind == "agg_minute"]
    trades = [e for e in events if e.kind == "trade"]
    quotes = [e for e in events if e.kind == "quote"]
    assert {e.symbol for e in events} == {"ESZ6"} and trades and quotes
    assert all(q.ask - q.bid == 0.25 for q in quotes)
    with Sandbox(clock_start=CLOCK + timedelta(hours=1), clock_speed=0.001) as rest_box:  # those minutes are past
        first = pd.Timestamp(bars[0].time_ms, unit="ms", tz="UTC")
        rest = fetch_data("ESZ6", first, first + pd.Timedelta(minutes=1), "1m", settings=rest_box.settings())
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close, bars[0].volume) == tuple(
        rest[["open", "high", "low", "close", "volume"]].iloc[0])
    assert bars[0].end_ms - bars[0].time_ms == 60_000


def test_a_live_continuous_feed_streams_the_contract_it_holds_today(sb: Sandbox) -> None:
    from massive_feeds.futures import held_contract

    assert held_contract("ES.c.0", date(2026, 12, 4), sb.settings()) == "ESZ6"
    assert held_contract("ES.c.0", date(2026, 9, 18), sb.settings()) == "ESU6"  # its last trade date
    assert held_contract("ES.c.0", date(2026, 9, 21), sb.settings()) == "ESZ6"
    assert held_contract("ES.c.1", date(2026, 12, 4), sb.settings()) == "ESH7"
    assert held_contract("ES.c.0", date(2026, 9, 16), sb.settings()) == "ESU6"
    assert held_contract("ES.v.0", date(2026, 9, 16), sb.settings()) == "ESZ6"  # the volume moved before expiry
    assert held_contract("GCZ6", date(2026, 12, 4), sb.settings()) == "GCZ6"


def test_the_history_store_serves_futures_sessions_and_continuous_series(tmp_path: Path) -> None:
    pytest.importorskip("moto")
    from massive_feeds.store import ingest

    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as box:
        settings = box.settings(home=tmp_path / "home")
        report = ingest("us_futures_cme/minute_aggs_v1", "2026-09-17", "2026-09-22", settings=settings,
                        store=tmp_path / "store")
        assert "4 day(s) ingested" in str(report)
        stored = fetch_data("ES.c.0", "2026-09-17", "2026-09-22", "1h", settings=settings, store=tmp_path / "store",
                            roll_adjust="ratio")
        files = fetch_data("ES.c.0", "2026-09-17", "2026-09-22", "1h", method="flat_file", settings=settings,
                           roll_adjust="ratio")
        one = fetch_data("ESU6", "2026-09-17", "2026-09-17", "1m", method="store", settings=settings,
                         store=tmp_path / "store")
    assert stored.attrs["method"] == "store"  # auto: the store holds every session of the query
    assert len(stored) == 4 * 23  # four sessions of 23 hours, the first opening 09-16 17:00 Chicago
    cols = ["timestamp", "open", "high", "low", "close", "volume", "contract"]
    pd.testing.assert_frame_equal(stored[cols], files[cols])
    assert roll_table(stored).values.tolist() == roll_table(files).values.tolist()
    assert len(one) == 1380 and one["session_end_date"].unique().tolist() == ["2026-09-17"]


def test_fetch_ohlcv_rest_and_download_flat_file_take_contracts() -> None:
    pytest.importorskip("moto")
    from massive_feeds import download_flat_file, fetch_ohlcv_rest

    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as box:
        rest = fetch_ohlcv_rest("GCZ6", "2026-11-02", "2026-11-03", "1h", settings=box.settings())
        files = download_flat_file("GCZ6", "2026-11-02", "2026-11-03", "1h", settings=box.settings())
        keys = {r.key.split("/")[0] for r in box.s3.requests if r.key.endswith(".csv.gz")}
        from massive_feeds.flatfiles import download_flat_file as layer_download

        with pytest.raises(InvalidInputError, match="continuous futures series are built above the flat-file layer"):
            layer_download("GC.c.0", "2026-11-02", "2026-11-03", "1h", settings=box.settings())
    assert keys == {"us_futures_comex"}  # gold is a COMEX product
    assert len(rest) == len(files) == 2 * 23 and rest["timestamp"].iloc[0] == pd.Timestamp("2026-11-01 23:00",
                                                                                              tz="UTC")
    cols = ["timestamp", "open", "high", "low", "close", "volume", "transactions"]
    pd.testing.assert_frame_equal(rest[cols], files[cols])
    assert files["vwap"].to_numpy() == pytest.approx(rest["vwap"].to_numpy())


def test_download_flat_file_builds_continuous_series_as_fetch_data_does(tmp_path: Path) -> None:
    pytest.importorskip("moto")
    pytest.importorskip("vectorbt")
    from massive_feeds import download_flat_file
    from massive_feeds.vectorbt import MassiveData

    with Sandbox(clock_start=CLOCK, clock_speed=0.001, s3=True) as box:
        settings = box.settings(home=tmp_path / "home")
        files = download_flat_file("ES.c.0", "2026-09-17", "2026-09-22", "1h", settings=settings, roll_adjust="ratio")
        fetched = fetch_data("ES.c.0", "2026-09-17", "2026-09-22", "1h", method="flat_file", settings=settings,
                             roll_adjust="ratio")
        mixed = download_flat_file(["ES.c.0", "SPY"], "2026-09-17", "2026-09-22", "1h", settings=settings,
                                   roll_adjust="ratio")
        spy = download_flat_file("SPY", "2026-09-17", "2026-09-22", "1h", settings=settings)
        vbt_data = MassiveData.download("ES.c.0", start="2026-09-17", end="2026-09-22", timeframe="1h",
                                        method="flat_file", settings=settings, roll_adjust="ratio")
        bt_bars = None
        if importlib.util.find_spec("backtrader") is not None:
            from massive_feeds.backtrader import MassiveData as BtData

            from ._bt_support import run

            bt_bars = run(BtData(dataname="ES.c.0", fromdate=date(2026, 9, 17), todate=date(2026, 9, 22),
                                 interval="1h", method="flat_file", roll_adjust="ratio", settings=settings)).frame()
        gets = [r.key for r in box.s3.requests if r.method == "GET" and r.key.endswith(".csv.gz")]
    pd.testing.assert_frame_equal(files, fetched)
    pd.testing.assert_frame_equal(roll_table(files), roll_table(fetched))
    assert files.attrs["method"] == "flat_file" and files.attrs["roll_adjust"] == "ratio"
    assert len(files) == 4 * 23 and files["contract"].iloc[[0, -1]].tolist() == ["ESU6", "ESZ6"]
    roll = roll_table(files).iloc[0]
    assert (roll["date"], roll["from"], roll["to"]) == (pd.Timestamp("2026-09-21"), "ESU6", "ESZ6")
    pd.testing.assert_frame_equal(mixed[mixed["symbol"] == "ES.c.0"].reset_index(drop=True), files)
    assert vbt_data.get("Close").tolist() == files["close"].tolist()
    if bt_bars is not None:  # Backtrader's feed takes the same route
        assert bt_bars["close"].tolist() == files["close"].tolist()
    part = mixed[mixed["symbol"] == "SPY"].reset_index(drop=True)
    pd.testing.assert_frame_equal(part[list(spy.columns)], spy)
    assert mixed.attrs["method"] == "flat_file" and roll_table(mixed).equals(roll_table(files))
    assert {k.split("/")[0] for k in gets} == {"us_futures_cme", "us_stocks_sip"}


def test_a_live_backtrader_feed_on_the_continuous_series_streams_its_contract(tmp_path: Path) -> None:
    bt = pytest.importorskip("backtrader")
    from massive_feeds.backtrader import MassiveData

    class ThreeLive(bt.Strategy):
        params = (("sandbox", None),)

        def __init__(self) -> None:
            self.closes: list[tuple[pd.Timestamp, float]] = []
            self.subscribed: set[str] = set()

        def next(self) -> None:
            if self.data._laststatus == self.data.LIVE:
                self.subscribed |= self.p.sandbox.ws.subscriptions("futures")
                self.closes.append((pd.Timestamp(bt.num2date(self.data.datetime[0]), tz="UTC"), self.data.close[0]))
                if len(self.closes) >= 3:
                    self.env.runstop()

    with Sandbox(websocket=True, clock_start=CLOCK, clock_speed=120) as box:  # two market minutes a second
        settings = box.settings(home=tmp_path / "home", plan="unlimited")
        data = MassiveData(dataname="ES.c.0", historical=False, interval="1m", settings=settings,
                           clock=box.clock.now_ms, backfill_bars=3, qcheck=0.1)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(data)
        cerebro.addstrategy(ThreeLive, sandbox=box)
        try:
            strat = cerebro.run()[0]
        finally:
            data.store.connector.close()
    subscribed = strat.subscribed
    assert subscribed <= {"T.ESZ6", "Q.ESZ6", "AM.ESZ6"} and "T.ESZ6" in subscribed  # the contract held on 12-04
    with Sandbox(clock_start=CLOCK + timedelta(hours=2), clock_speed=0.001) as rest_box:
        first = strat.closes[0][0]
        own = fetch_data("ESZ6", first, first + pd.Timedelta(minutes=3), "1m", settings=rest_box.settings())
    assert [c for _, c in strat.closes] == own["close"].iloc[:3].tolist()


def test_a_recording_of_a_contract_holds_its_trades_and_replays(tmp_path: Path) -> None:
    import time

    from massive_feeds.record import WebSocketDataRecorder
    from massive_feeds.record.reader import RecordingReader

    with Sandbox(websocket=True, clock_start=CLOCK, clock_speed=240) as box:  # four market minutes a second
        settings = box.settings(home=tmp_path / "home", plan="unlimited")
        rec = WebSocketDataRecorder(["ESZ6"], tmp_path / "rec", settings=settings).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rec.stats()["events_received"] < 8:
            time.sleep(0.1)  # polls the recorder's own count; the deadline only bounds a broken stream
        path = rec.stop()
    events = RecordingReader(path).events()
    trades = events[events["kind"] == "trade"]
    assert len(trades) >= 3 and set(events["symbol"]) == {"ESZ6"}
    with Sandbox(clock_start=CLOCK + timedelta(hours=4), clock_speed=0.001) as rest_box:
        first = pd.Timestamp(int(trades["time_ms"].iloc[0]), unit="ms", tz="UTC").floor("min")
        own = fetch_data("ESZ6", first, first + pd.Timedelta(minutes=len(trades)), "1m", settings=rest_box.settings())
    # the sandbox prints each minute's close 56 s into the minute: the recorded trades are REST's closes
    assert trades["price"].tolist() == own["close"].iloc[:len(trades)].tolist()
    from massive_feeds.backtrader import MassiveData

    from ._bt_support import run

    replayed = run(MassiveData(recording=path, settings=settings)).frame()  # bars from the recorded trades
    assert replayed["close"].tolist() == trades["price"].tolist()


def test_the_cli_fetches_a_continuous_series_and_prints_its_rolls(sb: Sandbox, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**__import__("os").environ, **sb.env(), "MASSIVE_FEEDS_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "massive_feeds.cli", "fetch", "ES.c.0", "--start", "2026-09-14",
                             "--end", "2026-09-25", "--interval", "1d", "--roll-adjust", "difference"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("10 bars for 1 symbol(s) from the SANDBOX (synthetic market) via rest")
    roll = lines.index("futures rolls (roll_adjust=difference):")
    assert lines[roll + 1].split() == ["date", "from", "to", "from_price", "to_price", "factor", "offset"]
    assert lines[roll + 2].split()[:3] == ["2026-09-21", "ESU6", "ESZ6"]


def test_a_live_continuous_feed_rolls_at_the_session_change(tmp_path: Path) -> None:
    bt = pytest.importorskip("backtrader")
    from massive_feeds.backtrader import MassiveData

    class UntilRolled(bt.Strategy):
        params = (("sandbox", None),)

        def __init__(self) -> None:
            self.bars: list[tuple[pd.Timestamp, float]] = []
            self.notices: list[str] = []
            self.subscribed: list[set[str]] = []
            self.rolled: list[tuple[pd.Timestamp, float, float]] = []

        def notify_data(self, data: bt.DataBase, status: int, *args: object, **kwargs: object) -> None:
            self.notices.append(data._getstatusname(status))
            self.subscribed.append(self.p.sandbox.ws.subscriptions("futures"))

        def next(self) -> None:
            when = pd.Timestamp(bt.num2date(self.data.datetime[0]), tz="UTC")
            if when >= pd.Timestamp("2026-09-14 22:00", tz="UTC"):  # the new session, backfilled or streamed
                self.rolled.append((when, self.data.close[0], self.data.volume[0]))
            if self.data._laststatus == self.data.LIVE:
                self.bars.append((when, self.data.close[0]))
                if self.bars[-1][0] >= pd.Timestamp("2026-09-14 22:02", tz="UTC"):
                    self.env.runstop()

    # 15:30 Chicago on Monday 09-14: ES.v.0 holds ESU6 until that session's close; the session of 09-15 (opening
    # 17:00 Chicago) holds ESZ6, which had the most volume on 09-14
    start = datetime(2026, 9, 14, 20, 30, tzinfo=timezone.utc)
    with Sandbox(websocket=True, clock_start=start, clock_speed=300) as box:
        settings = box.settings(home=tmp_path / "home", plan="unlimited")
        data = MassiveData(dataname="ES.v.0", historical=False, interval="1m", settings=settings,
                           clock=box.clock.now_ms, backfill_bars=2, qcheck=0.1)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(data)
        cerebro.addstrategy(UntilRolled, sandbox=box)
        try:
            strat = cerebro.run()[0]
        finally:
            data.store.connector.close()
    before = [(t, c) for t, c in strat.bars if t < pd.Timestamp("2026-09-14 21:00", tz="UTC")]
    after = [(t, c) for t, c in strat.bars if t >= pd.Timestamp("2026-09-14 22:00", tz="UTC")]
    assert before and after and strat.notices.count("CONNECTED") == 2, (strat.notices, strat.bars[:3])  # subscribed, then rolled
    assert any("ESU6" in s for s in map(str, strat.subscribed[:1]))
    assert "T.ESZ6" in set().union(*strat.subscribed[1:]) and not any("ESU6" in p for p in strat.subscribed[-1])
    with Sandbox(clock_start=start + timedelta(hours=3), clock_speed=0.001) as rest_box:
        rest = rest_box.settings(plan="unlimited")  # the default plan's 5 calls a minute made these wait ~35 s
        own = fetch_data("ESZ6", after[0][0], after[-1][0], "1m", settings=rest)
        session = fetch_data("ESZ6", strat.rolled[0][0], strat.rolled[-1][0], "1m", settings=rest)
        old = fetch_data("ESU6", before[0][0], before[-1][0], "1m", settings=rest)
    assert [c for _, c in after] == own["close"].tolist()  # after the roll: the new contract's own bars
    assert [c for _, c in before] == old["close"].tolist()  # before it: the old one's
    # the roll is noticed some market seconds after the 17:00 Chicago open (22:00 UTC): the new contract's bars
    # from the open up to its stream come from REST, so the new session has every minute, each one whole
    assert strat.rolled[0][0] == pd.Timestamp("2026-09-14 22:00", tz="UTC")
    times = [t for t, _, _ in strat.rolled]
    assert times == list(pd.date_range("2026-09-14 22:00", periods=len(times), freq="1min", tz="UTC"))
    assert [c for _, c, _ in strat.rolled] == session["close"].tolist()
    # the 22:00 bar is REST's whole minute (590 contracts): a bar built from the stream carries only the trades
    # it saw (the sandbox prints one trade a minute), so without the backfill this volume differs
    assert strat.rolled[0][2] == session["volume"].iloc[0]
