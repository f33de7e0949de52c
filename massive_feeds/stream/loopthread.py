"""An asyncio event loop on a background daemon thread, callable from any other thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class LoopThread:
    """Owns one event loop running forever on its own thread until :meth:`stop`."""

    def __init__(self, name: str = "massive-stream") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LoopThread({self.name!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        self.start()
        assert self._loop is not None
        return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._lock:
            if self.running:
                return
            ready = threading.Event()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._main, args=(self._loop, ready), name=self.name, daemon=True)
            self._thread.start()
            ready.wait()

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (re-raising its exception) from another thread."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(f"{self.name}: blocking call made from the stream thread itself")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def submit(self, coro: Awaitable[T]) -> "asyncio.Future[T]":
        """Schedule without waiting; returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type,return-value]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (cancelling leftover tasks) and join the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: loop thread did not stop within %.1fs", self.name, timeout)
