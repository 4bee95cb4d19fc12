"""A hard wall-clock bound on one pymilvus call.

pymilvus retries inside a call (``retry_on_rpc_failure``) and checks its ``timeout`` only
after an attempt fails, so a call asked to finish in 2 s can take several times that (seen
on a Milvus 2.3.5 server warming up after a restart: 3.0 s reconnecting, 5.2 s in its own
retries). Where the store promises to fail fast (a read made for a caller's deadline while
Milvus is marked down or warming up again; writes are never abandoned), the call runs in a
worker thread and the caller stops waiting at the bound. The abandoned call finishes on
its own (its own timeout ends it); at most ``limit`` of them run at once, and past that a
new call is refused at once, so a server that never answers cannot pile up threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")


class WallClockExceeded(Exception):
    """The call did not return within its bound, or too many earlier ones still run."""


class WallClockBound:
    """Runs calls in worker threads and waits for each at most a given number of seconds."""

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def call(self, fn: Callable[[], T], seconds: float) -> T:
        """``fn()``, or WallClockExceeded once ``seconds`` have passed without an answer."""
        if not self._slots.acquire(blocking=False):
            raise WallClockExceeded(f"{self.limit} earlier calls to Milvus are still "
                                    "waiting for an answer")
        future: Future = Future()
        worker = threading.Thread(target=self._run, args=(fn, future), daemon=True,
                                  name="milvus-bounded-call")
        try:
            worker.start()
        except BaseException:
            self._slots.release()
            raise
        try:
            return future.result(timeout=max(seconds, 0.0))
        except FutureTimeout as exc:
            raise WallClockExceeded(f"no answer from Milvus within {seconds:.1f}s") from exc

    def _run(self, fn: Callable[[], T], future: Future) -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the caller, if it still waits
            future.set_exception(exc)
        finally:
            self._slots.release()
