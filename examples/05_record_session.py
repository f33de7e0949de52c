"""Record a live session durably, resample it to bars and save it as a tagged dataset."""

import time

from _common import massive_settings

from massive_feeds import WebSocketDataRecorder, list_datasets

with massive_settings() as settings:
    recorder = WebSocketDataRecorder(["AAPL", "MSFT"], save_dir=settings.home / "live_recorded", settings=settings)
    recorder.start()
    time.sleep(6)
    recorder.stop()
    print(recorder.stats())
    bars = recorder.get_dataframe(resample_interval="1min")
    print(bars[["timestamp", "symbol", "open", "close", "volume", "bid", "ask", "spread"]])
    path = recorder.save_dataset(tag="morning", resample_interval="1min")
    print("saved", path)
    datasets = list_datasets(settings=settings)
    print(datasets[["name", "source", "rows", "tags"]])
    stats = recorder.stats()
    assert stats["events_durable"] > 0 and stats["events_durable"] == stats["events_received"], stats
    assert set(bars["symbol"]) == {"AAPL", "MSFT"}, set(bars["symbol"])
    assert (bars["bid"] <= bars["ask"]).all() and (bars["spread"] >= 0).all()
    assert path.stem in set(datasets["name"]) and int(datasets.set_index("name").loc[path.stem, "rows"]) == len(bars)
    print(f"verified: {stats['events_durable']:,} events durable, {len(bars)} one-minute bars saved as {path.stem}")
