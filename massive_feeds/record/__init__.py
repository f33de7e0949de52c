"""Recording live sessions: the durable event log, ticks-to-bars, replay, and the dataset library."""

from .bars import RECORDED_BAR_COLUMNS, ticks_to_bars
from .library import list_recordings, recording_path, save_recording_dataset
from .reader import RecordingReader
from .recorder import WebSocketDataRecorder
from .replay import RecordingSource

__all__ = ["RECORDED_BAR_COLUMNS", "RecordingReader", "RecordingSource", "WebSocketDataRecorder",
           "list_recordings", "recording_path", "save_recording_dataset", "ticks_to_bars"]
