"""Helpers for the Backtrader tests: a recording strategy, cerebro runs, scripted event sources."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import backtrader as bt
import pandas as pd
import pytest

from massive_feeds.backtrader import MassiveStore
from massive_feeds.stream.hub import EventHub

OHLCV = ["open", "high", "low", "close", "volume"]


class Recorder(bt.Strategy):
    """Keeps every bar of ``datas[-1]`` (UTC lines and the local time strategies see) and every notice."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.notices: list[str] = []

    def notify_data(self, data: Any, status: int, *args: Any, **kwargs: Any) -> None:
        self.notices.append(data._getstatusname(status))

    def next(self) -> None:
        d = self.datas[-1]
        row = {"timestamp": bt.num2date(d.datetime[0]), "local": d.datetime.datetime(0), "status": d._laststatus}
        row.update({name: getattr(d, name)[0] for name in d.lines.getlinealiases() if name != "datetime"})
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if len(df):
            df["timestamp"] = pd.to_datetime(df["timestamp"]).dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
        return df


def run(*feeds: Any, how: str = "adddata", strategy: type[bt.Strategy] = Recorder, **kwargs: Any) -> Any:
    """Run cerebro on the feeds (``how``: adddata | resampledata | replaydata) and return the strategy."""
    cerebro = bt.Cerebro(stdstats=False)
    for feed in feeds:
        getattr(cerebro, how)(feed, **kwargs)
    cerebro.addstrategy(strategy)
    return cerebro.run()[0]


class ScriptedEvents(EventHub):
    """An in-process event source: once a listener attaches, it publishes ``script`` (event batches
    and control events) in order, exactly as the connector's hub would deliver them."""

    def __init__(self, script: Iterable[Any]) -> None:
        super().__init__()
        self.script = list(script)

    def add_listener(self, fn: Any, **kwargs: Any) -> Any:
        listener = super().add_listener(fn, **kwargs)
        for item in self.script:
            if isinstance(item, list):
                self.publish(item)
            else:
                self.publish_control(item)
        return listener


@pytest.fixture(autouse=True)
def close_stores() -> Iterator[None]:
    """Each test builds its own settings, hence its own shared store: close them (REST sessions)."""
    yield
    MassiveStore.close_all()
