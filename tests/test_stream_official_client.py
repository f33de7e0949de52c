"""The official ``massive`` client's WebSocketClient, pointed at the sandbox, receives events.

No patching: its URL is ``ws{'s' if secure else ''}://{feed}/{market}``, so ``feed="127.0.0.1:<port>"``
and ``secure=False`` reach the sandbox (``feed`` accepts any string, not only the ``Feed`` enum).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

massive = pytest.importorskip("massive")
from massive import WebSocketClient  # noqa: E402
from massive.exceptions import AuthError  # noqa: E402
from massive.websocket.models import CryptoQuote, CryptoTrade, EquityAgg, EquityQuote, Market  # noqa: E402

from massive_feeds.sandbox import Sandbox  # noqa: E402
from massive_feeds.sandbox.ws import Firehose  # noqa: E402



def official(sb: Sandbox, market: Market, subs: list[str], key: str | None = None) -> WebSocketClient:
    host = sb.ws_url.split("://", 1)[1]
    return WebSocketClient(api_key=key or sb.api_key, feed=host, market=market, secure=False,
                           subscriptions=subs, max_reconnects=1)


def run_until(client: WebSocketClient, done: Any, timeout: float = 10.0) -> list[Any]:
    got: list[Any] = []

    async def processor(msgs: list[Any]) -> None:
        got.extend(msgs)
        if done(got):
            await client.close()

    async def main() -> None:
        await asyncio.wait_for(client.connect(processor), timeout)

    asyncio.run(main())
    return got


def test_official_client_receives_stock_events(ws_sandbox: Sandbox) -> None:
    client = official(ws_sandbox, Market.Stocks, ["Q.AAPL", "AM.MSFT"])
    assert client.url == f"{ws_sandbox.ws_url}/stocks"
    got = run_until(client, lambda g: any(isinstance(m, EquityAgg) for m in g) and len(g) > 10)
    quotes = [m for m in got if isinstance(m, EquityQuote)]
    assert quotes and all(q.symbol == "AAPL" and q.bid_price < q.ask_price for q in quotes)
    bars = [m for m in got if isinstance(m, EquityAgg)]
    assert all(b.symbol == "MSFT" and b.end_timestamp - b.start_timestamp == 60_000 for b in bars)


def test_official_client_receives_crypto_events(ws_sandbox: Sandbox) -> None:
    client = official(ws_sandbox, Market.Crypto, ["XT.BTC-USD", "XQ.BTC-USD"])
    got = run_until(client, lambda g: {type(m) for m in g} >= {CryptoTrade, CryptoQuote})
    assert all(m.pair == "BTC-USD" for m in got)


def test_official_client_counts_the_whole_firehose(ws_sandbox: Sandbox) -> None:
    n = 20_000
    ws_sandbox.ws.set_firehose(Firehose(events=n, batch=100, channel="Q"))
    client = official(ws_sandbox, Market.Stocks, ["Q.AAPL"])
    got = run_until(client, lambda g: len(g) >= n, timeout=30)
    assert len(got) == n and all(isinstance(m, EquityQuote) for m in got)


def test_official_client_sees_auth_failed(ws_sandbox: Sandbox) -> None:
    client = official(ws_sandbox, Market.Stocks, ["Q.AAPL"], key="wrong")
    with pytest.raises(AuthError):
        run_until(client, lambda g: True, timeout=5)
