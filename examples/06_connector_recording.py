"""The live-trading connector: stream with a callback, record at the same time, save the recording."""

import time

from _common import massive_settings

from massive_feeds import get_connector

with massive_settings() as settings:
    connector = get_connector("massive", settings=settings)
    print("some symbols:", connector.list_symbols()[:8])

    connector.enable_recording(symbols=["AAPL", "GOOGL"], save_dir=settings.home / "live_recorded", tag="demo")

    seen: dict[str, int] = {}

    def handle_quote(symbol, orderbook):
        seen[symbol] = seen.get(symbol, 0) + 1
        if seen[symbol] <= 3:
            print(f"{symbol}: bid={orderbook['bids'][0][0]} ask={orderbook['asks'][0][0]}")

    connector.start_stream(["AAPL", "GOOGL"], callback=handle_quote)
    time.sleep(4)
    stats = connector.get_stats()
    print(f"active streams: {stats['active_streams']}/{stats['max_streams']}, "
          f"messages this minute: {stats['messages_this_minute']}/{stats['max_messages_per_minute']}")

    path = connector.disable_recording()
    print("saved recording to:", path)
    recorded = connector.get_recorded_dataframe(resample_interval="1min")
    print(recorded[["timestamp", "symbol", "close", "bid", "ask"]])
    connector.stop_stream()
    connector.close()
    assert set(seen) == {"AAPL", "GOOGL"} and stats["active_streams"] == 2, (seen, stats)
    assert set(recorded["symbol"]) == {"AAPL", "GOOGL"} and (recorded["bid"] <= recorded["ask"]).all()
    print(f"verified: callbacks for {sorted(seen)}, {len(recorded)} recorded bars")
