"""Live quotes with the async iterator (stops after 20 quotes)."""

import asyncio

from _common import massive_settings

from massive_feeds import stream_quotes_websocket


async def main(settings) -> None:
    n = 0
    async for quote in stream_quotes_websocket(["AAPL", "MSFT"], settings=settings):
        print(f"{quote['timestamp']:%H:%M:%S.%f} {quote['symbol']}: bid={quote['bid']} ask={quote['ask']}")
        n += 1
        if n >= 20:
            break


with massive_settings() as settings:
    asyncio.run(main(settings))
