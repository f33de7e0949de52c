"""The recorder's crash promise under load: ``kill -9`` loses at most ``flush_interval`` plus one flush,
and when events arrive faster than the disk takes them the recorder says so (``lagging``, a warning).

The kill test runs the recorder in a child process on the sandbox's firehose; the child reports its
counters on a pipe and the parent kills it on those reports (no sleeps for synchronisation), then
reads the log back.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from massive_feeds.record import RecordingReader, WebSocketDataRecorder
from massive_feeds.sandbox import Sandbox
from massive_feeds.sandbox.ws import Firehose
from massive_feeds.stream.events import make_event
from massive_feeds.stream.hub import EventHub

# flush deadlines measured against the wall clock: run alone, not beside another test worker
pytestmark = pytest.mark.serial

FLUSH = 0.1
RATE = 20_000  # events/s: a rate this (shared, 2-core) machine's disk and writer sustain

CHILD = textwrap.dedent("""
    import sys, time
    from massive_feeds.config import load_settings
    from massive_feeds.record import WebSocketDataRecorder
    rec = WebSocketDataRecorder(sys.argv[2].split(","), sys.argv[1], settings=load_settings(plan="unlimited"),
                                session="s", flush_interval=float(sys.argv[3]))
    rec.start()
    while True:  # report continuously; the parent decides when to kill
        s = rec.stats()
        print(time.monotonic(), s["events_received"], s["events_durable"], s["flushes"],
              s["max_flush_seconds"], int(s["lagging"]), flush=True)
        time.sleep(0.002)  # reporting cadence (the resolution of the measurement), not synchronisation
""")


@pytest.fixture(params=[RATE, None], ids=["paced", "unpaced"])
def firehose(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with Sandbox(websocket=True) as sb:
        sb.ws.set_firehose(Firehose(events=5_000_000, batch=100, channel="Q", rate=request.param))
        yield sb


def test_kill_9_under_the_firehose_loses_at_most_one_interval_plus_one_flush(firehose: Sandbox,
                                                                                 tmp_path: Path) -> None:
    """Paced at a rate the writer sustains, the promise holds. Unpaced (as fast as the socket goes,
    which on a busy machine can outrun the writer) it holds unless the recorder was reporting
    ``lagging`` — it never breaks silently."""
    sb = firehose
    paced = sb.ws.firehose is not None and sb.ws.firehose.rate is not None
    tickers = [t for t, info in sb.market.universe.items() if info.asset == "stocks"]
    env = {**os.environ, **sb.env(), "MASSIVE_FEEDS_HOME": str(tmp_path / "home"),
           "MASSIVE_PLAN_WS_MAX_STREAMS": "unlimited"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), ",".join(tickers), str(FLUSH)],
                             env=env, stdout=subprocess.PIPE, text=True)
    reports: list[tuple[float, int, int, int, float, int]] = []
    assert child.stdout is not None
    try:
        for line in child.stdout:
            t, recv, durable, flushes, max_flush, lagging = line.split()
            reports.append((float(t), int(recv), int(durable), int(flushes), float(max_flush), int(lagging)))
            # well into steady streaming (>= 30 flushes, >= 40k events): kill mid-stream
            if int(flushes) >= 30 and int(recv) >= 40_000:
                break
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    events = RecordingReader(tmp_path / "s").events()
    durable = len(events)
    last = reports[-1]
    assert durable >= last[2]  # everything reported durable survived
    # The first lost event (index `durable`) was handed to the recorder after the last report whose
    # received count was still <= durable: that report's time bounds its hand-over from below.
    before = [r for r in reports if r[1] <= durable]
    t_a = before[-1][0]
    after = [r[0] for r in reports if r[1] > durable]
    resolution = (after[0] - t_a if after else 0.0) + (killed_at - last[0])
    newest_lost_age = killed_at - t_a  # >= (last hand-over) - (hand-over of the first lost event)
    kept = newest_lost_age <= FLUSH + last[4] + resolution
    message = (f"lost events reach {newest_lost_age:.3f} s back; promise {FLUSH} s + one flush ({last[4]:.3f} s)"
               f" + measurement resolution {resolution:.3f} s")
    # The promise holds, or the recorder was saying it could not keep it (a starved writer on a busy
    # machine): it never breaks silently.
    recent = [r for r in reports if r[0] >= killed_at - 0.2]
    assert kept or any(r[5] for r in recent), message + ", and the recorder did not report lagging"
    if paced:  # at a rate it sustains, the writer keeps up nearly all the time
        assert sum(r[5] for r in reports) <= 0.1 * len(reports), "lagging most of the time at a sustainable rate"
        if kept:
            assert last[1] - durable <= RATE * (FLUSH + last[4] + resolution) + 1_000  # the same, in events


# --- lagging: input faster than the writer --------------------------------------------------------
class _Source(EventHub):
    """The recorder's event source (a real hub) with the connector's stream calls as no-ops."""

    def start_stream(self, symbols: Any) -> None:
        pass

    def stop_stream(self, symbols: Any) -> None:
        pass


def test_a_backlog_beyond_one_flush_is_reported_as_lagging(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    hub = _Source()
    rec = WebSocketDataRecorder(["AAPL"], tmp_path, connector=hub, session="s", flush_interval=FLUSH,
                                max_flush_events=2_000)  # bounded work per flush, small here
    quote = make_event("quote", "AAPL", 1_709_562_600_000, bid=1.0, ask=2.0)
    rec.start()
    seen: list[dict[str, Any]] = []
    caplog.set_level(logging.WARNING, logger="massive_feeds.record.recorder")
    try:
        # 400k events at once: 200 flushes of 2,000 are needed, far more than one interval's worth
        for _ in range(40):
            hub.publish([quote] * 10_000)
        while rec.stats()["events_durable"] < 400_000:
            s = rec.stats()
            seen.append(s)
            if s["lagging"] and any(r.levelno == logging.WARNING for r in caplog.records):
                break
            assert rec.wait_for_flush(timeout=30)  # the writer's next flush, not a time
    finally:
        rec.stop()
    lagging = [s for s in seen if s["lagging"]]
    assert lagging, "a backlog of 200 flushes never showed as lagging"
    assert all(s["lag_seconds"] > FLUSH + s["last_flush_seconds"] for s in lagging)
    assert max(s["pending_events"] for s in lagging) > 2_000
    warning = [r.getMessage() for r in caplog.records if "lagging" in r.getMessage()]
    assert warning and "faster than the disk" in warning[0]
    final = rec.stats()
    assert final["events_durable"] == 400_000 and final["pending_events"] == 0 and not final["lagging"]
    assert final["lagging_episodes"] >= 1 and final["max_flush_seconds"] > 0
    assert len(RecordingReader(tmp_path / "s").events()) == 400_000


# --- the default promise: 100 ms -------------------------------------------------------------------
def test_a_recorder_with_no_flush_argument_makes_each_paced_event_durable_within_100_ms_plus_a_flush(
        tmp_path: Path) -> None:
    """The README promises 100 ms: a recorder created without ``flush_interval`` keeps its newest durable event
    within 0.1 s (literal, not the constant) plus one flush. Events are handed over one at a time, each after the
    previous became durable; the flush that took each is timed from the recorder's own clock (``last_flush_age``),
    waited for with ``wait_for_flush``, never a sleep. A default of 0.5 s fails every hand-over."""
    hub = _Source()
    rec = WebSocketDataRecorder(["AAPL"], tmp_path, connector=hub, session="s")
    rec.start()
    latencies = []
    try:
        for i in range(8):
            handed = time.monotonic()
            hub.publish([make_event("quote", "AAPL", 1_709_562_600_000 + i, bid=1.0, ask=2.0)])
            while (s := rec.stats())["events_durable"] < i + 1:
                rec.wait_for_flush(timeout=1.0)
            flushed = time.monotonic() - s["last_flush_age"]
            latencies.append((flushed - handed, s["last_flush_seconds"]))
    finally:
        rec.stop()
    # 150 ms for the hub's hand-over and the writer's wake-up on a shared machine: a 0.5 s default still fails
    late = [(round(took, 3), round(flush, 3)) for took, flush in latencies if took > 0.1 + flush + 0.15]
    assert late == [], f"durable later than 100 ms plus the flush: {late}"
    assert len(RecordingReader(tmp_path / "s").events()) == 8
