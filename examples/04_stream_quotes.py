"""Live quotes with the async iterator (stops after 20 quotes)."""

import asyncio

from _common import massive_settings

from massive_feeds import stream_quotes_websocket


async def main(settings) -> None:
    n = 0
    async for quote in stream_quotes_websocket(["AAPL", "MSFT"], settings=settings):
        print(f"{quote['timestamp']:%H:%M:%S.%f} {quote['symbol']}: bid={quote['bid']} ask={quote['ask']}")
        assert quote["symbol"] in ("AAPL", "MSFT") and 0 < quote["bid"] <= quote["ask"], quote
        assert quote["timestamp"].tzinfo is not None
        n += 1
        if n >= 20:
            break
    assert n == 20
    print(f"verified: {n} quotes with bid <= ask")


with massive_settings() as settings:
    asyncio.run(main(settings))
