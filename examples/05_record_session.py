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
    print(list_datasets(settings=settings)[["name", "source", "rows", "tags"]])
