"""Reconnect gaps over real sockets: live Backtrader bars equal REST's bars, and the async iterators
show gaps and status changes to consumers who ask for them."""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd
import pytest

from massive_feeds import fetch_ohlcv_rest
from massive_feeds.backtrader import MassiveData
from massive_feeds.config import Settings
from massive_feeds.sandbox import Sandbox
from massive_feeds.stream import stream_quotes_websocket, stream_trades_websocket
from tests._bt_support import OHLCV, close_stores  # noqa: F401 - autouse fixture

DROPS = 4
SPEED = 120  # sandbox clock: two market minutes per real second
# The feed waits ``grace`` (clock seconds) for stragglers before a quiet bar is completed by the clock;
# the default 2 s is meant in real time, so at 120x it is 240 sandbox seconds.
GRACE = 2.0 * SPEED
from tests._stream_support import FAST  # noqa: E402


def bar_row(d: Any) -> dict[str, Any]:
    """The current bar of feed ``d`` with its status, as the strategies below record it."""
    return {"timestamp": pd.Timestamp(bt.num2date(d.datetime[0]), tz="UTC"), "open": d.open[0], "high": d.high[0],
            "low": d.low[0], "close": d.close[0], "volume": d.volume[0], "status": d._laststatus}


class DropRepeatedly(bt.Strategy):
    """Drop the sandbox's stocks socket after every second live bar, ``DROPS`` times; stop after two
    live bars past the last reconnect. Records every bar with its status."""

    params = (("sandbox", None),)

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.drops = 0
        self.live_since_drop = 0

    def notify_data(self, data, status, *args, **kwargs) -> None:
        name = data._getstatusname(status)
        self.notices.append(name)
        if name == "CONNBROKEN":
            self.live_since_drop = 0

    def next(self) -> None:
        d = self.data
        self.rows.append(bar_row(d))
        if d._laststatus != d.LIVE:
            return
        self.live_since_drop += 1
        if self.live_since_drop == 2:
            if self.drops == DROPS:
                self.env.runstop()
                return
            self.drops += 1
            self.live_since_drop = -10**9  # until the CONNBROKEN notice resets it
            self.p.sandbox.ws.drop("stocks")


def test_every_bar_after_real_socket_drops_equals_rest(tmp_path: Path) -> None:
    with Sandbox(websocket=True, clock_speed=SPEED) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        data = MassiveData(dataname="AAPL", historical=False, interval="1m", settings=settings,
                           clock=sb.clock.now_ms, backfill_bars=3, qcheck=0.1,
                           grace=GRACE)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(data)
        cerebro.addstrategy(DropRepeatedly, sandbox=sb)
        try:
            strat = cerebro.run()[0]
        finally:
            data.store.connector.close()
        got = pd.DataFrame(strat.rows).set_index("timestamp")
        rest = fetch_ohlcv_rest("AAPL", got.index[0].to_pydatetime(), got.index[-1].to_pydatetime(), "1m",
                                settings=settings).set_index("timestamp")[OHLCV]
    assert strat.drops == DROPS and strat.notices.count("CONNBROKEN") == DROPS
    assert got.index.is_monotonic_increasing and got.index.is_unique
    live = got[got["status"] == bt.feed.DataBase.LIVE]
    assert len(live) >= 2 * (DROPS + 1)
    # Every bar the feed emitted — backfilled, the minutes it (re)started in, and live — is REST's bar.
    pd.testing.assert_frame_equal(got[OHLCV], rest.loc[got.index], check_names=False, check_freq=False,
                                  check_index_type=False, rtol=1e-12)
    # and no minute of the session is missing (the outages are backfilled, the resume minutes included)
    assert (got.index[1:] - got.index[:-1] == pd.Timedelta(minutes=1)).all()


class StopAfterLive(bt.Strategy):
    """Records every bar with its status; stops itself after ``live_bars`` LIVE bars."""

    params = (("live_bars", 4),)

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.live = 0

    def next(self) -> None:
        d = self.data
        self.rows.append(bar_row(d))
        if d._laststatus == d.LIVE:
            self.live += 1
            if self.live == self.p.live_bars:
                self.env.runstop()


@pytest.mark.timeout(120)
def test_live_feed_runs_on_the_market_clock_not_the_wall_clock(tmp_path: Path) -> None:
    """No ``clock=``: "now" comes from the stream. The sandbox market sits in March 2024 and runs at 60x,
    far from the wall clock: held on the wall clock's minute, the feed never went LIVE (every event was
    older than it) and flushed half-built bars early. Now every bar is REST's bar, once, without holes."""
    start = pd.Timestamp("2024-03-05 15:30", tz="UTC").to_pydatetime()
    with Sandbox(websocket=True, clock_start=start, clock_speed=60) as sb:
        settings = sb.settings(home=tmp_path / "home", datasets_dir=tmp_path / "ds", plan="unlimited")
        data = MassiveData(dataname="AAPL", historical=False, interval="1m", settings=settings,
                           backfill_bars=3, qcheck=0.1)
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(data)
        cerebro.addstrategy(StopAfterLive, live_bars=4)
        try:
            strat = cerebro.run()[0]
        finally:
            data.store.connector.close()
        stats = data.source.stats
        got = pd.DataFrame(strat.rows).set_index("timestamp")
        rest = fetch_ohlcv_rest("AAPL", got.index[0].to_pydatetime(), got.index[-1].to_pydatetime(), "1m",
                                settings=settings).set_index("timestamp")[OHLCV]
    live = got[got["status"] == bt.feed.DataBase.LIVE]
    assert strat.live == 4 and len(live) == 4
    # the session is the market's (March 2024), and the 3 backfilled bars come right before it
    assert got.index[0] >= pd.Timestamp(start) - pd.Timedelta(minutes=3) and got.index[-1].year == 2024
    assert len(got) >= 4 + 3 + 1  # backfill, the start minute (from REST), the live bars
    assert stats.get("resume_skipped", 0) == 0  # REST had the start minute's bar: it was over
    assert got.index.is_monotonic_increasing and got.index.is_unique  # no bar emitted twice
    assert (got.index[1:] - got.index[:-1] == pd.Timedelta(minutes=1)).all()  # backfill + start + live tile
    # every bar — backfilled, the held start minute, and LIVE — is REST's complete bar for its minute
    pd.testing.assert_frame_equal(got[OHLCV], rest.loc[got.index], check_names=False, check_freq=False,
                                  check_index_type=False, rtol=1e-12)


# --- the async iterators ------------------------------------------------------------------------------
def test_quote_iterator_shows_gaps_and_statuses_with_include_control(ws_sandbox: Sandbox,
                                                                     ws_settings: Settings) -> None:
    async def main() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        quotes = 0
        async with aclosing(stream_quotes_websocket(["X:SOLUSD"], settings=ws_settings, include_control=True,
                                                    reconnect=FAST)) as it:
            async for item in it:
                seen.append(item)
                if "kind" not in item:
                    quotes += 1
                    if quotes == 3:
                        await asyncio.to_thread(ws_sandbox.ws.force_disconnect, "crypto")
                elif item["kind"] == "gap":
                    return seen
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 15))
    control = [d for d in seen if "kind" in d]
    data = [d for d in seen if "kind" not in d]
    assert {d["kind"] for d in control} == {"status", "gap"}
    statuses = [d["status"] for d in control if d["kind"] == "status"]
    assert statuses[0] == "connected" and statuses.index("disconnected") < statuses.index("reconnected")
    gap = control[-1]
    assert gap["market"] == "crypto" and gap["symbols"] == ["X:SOLUSD"] and gap["end"] >= gap["start"]
    assert len(data) >= 3 and all(set(d) == {"symbol", "bid", "ask", "bid_size", "ask_size", "timestamp",
                                             "received", "exchange"} for d in data)
    assert all(d["bid"] < d["ask"] and type(d["exchange"]) is int for d in data)


def test_trade_iterator_yields_trades_only(ws_sandbox: Sandbox, ws_settings: Settings) -> None:
    async def main() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with aclosing(stream_trades_websocket(["AAPL", "X:BTCUSD"], settings=ws_settings)) as it:
            async for item in it:
                out.append(item)
                if len(out) == 20:
                    break
        return out

    trades = asyncio.run(asyncio.wait_for(main(), 15))
    assert all(set(t) == {"symbol", "price", "size", "timestamp", "received", "exchange"} for t in trades)
    assert all(t["price"] > 0 and t["size"] > 0 for t in trades)


@pytest.mark.parametrize("include_control", [False, True])
def test_quote_iterator_without_control_yields_only_quotes(ws_sandbox: Sandbox, ws_settings: Settings,
                                                           include_control: bool) -> None:
    async def main() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with aclosing(stream_quotes_websocket(["C:EURUSD"], settings=ws_settings,
                                                    include_control=include_control)) as it:
            async for item in it:
                out.append(item)
                if sum("kind" not in d for d in out) == 5:
                    break
        return out

    items = asyncio.run(asyncio.wait_for(main(), 15))
    kinds = {d.get("kind") for d in items}
    # the first thing a consumer with include_control sees is the "connected" status
    assert kinds == ({None, "status"} if include_control else {None})
    quotes = [d for d in items if "kind" not in d]
    assert all(d["symbol"] == "C:EURUSD" and d["exchange"] == 48 for d in quotes)  # wire "x": "48"


def test_resume_minute_missing_on_rest_is_skipped_not_built_from_partial_ticks(
        settings: Settings, sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    from tests._bt_support import ScriptedEvents, run
    from tests.test_backtrader_live import MIN, live_feed, status, trade

    now = sandbox.clock.now_ms()
    m = now - now % MIN + 5 * MIN  # a minute REST cannot have yet: the sandbox serves finished minutes only
    script = [[trade(m + 1_000, 100.0)], [trade(m + MIN + 1_000, 102.0)], status("stopped")]
    caplog.set_level(logging.WARNING, logger="massive_feeds.backtrader.live")
    strat = run(live_feed(settings, ScriptedEvents(script), m))
    got = strat.frame().set_index("timestamp")
    assert pd.Timestamp(m, unit="ms", tz="UTC") not in got.index  # no bar from one post-connect trade
    live = got[got["status"] == bt.feed.DataBase.LIVE]
    assert live.index.tolist() == [pd.Timestamp(m + MIN, unit="ms", tz="UTC")] and live["close"].tolist() == [102.0]
    assert any("REST has no bar yet" in r.getMessage() for r in caplog.records)
