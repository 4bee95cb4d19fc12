"""Retry with capped exponential back-off, for retriable failures at the I/O edge.

The embedder never skips work because a dependency is down, so its retries go on until
the call succeeds or the service is asked to stop; the back-off between attempts is
bounded (``maximum``). While waiting it calls ``keepalive`` every half second, so the
consumer can stay in its group (paused) instead of being evicted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Stopping(Exception):
    """Shutdown was requested while waiting to retry; the work was not done."""


@dataclass
class Backoff:
    initial: float
    maximum: float
    stop: threading.Event
    keepalive: Callable[[], None] = lambda: None
    on_retry: Callable[[str, Exception], None] = lambda dependency, exc: None
    on_recovered: Callable[[str], None] = lambda dependency: None

    def call(self, fn: Callable[[], T], retriable: tuple[type[BaseException], ...],
             dependency: str, *, alongside: bool = False) -> T:
        """``fn()``, retried on ``retriable`` errors until it succeeds or stop is set.

        ``alongside``: each attempt runs in a worker thread while this one goes on calling
        ``keepalive``, for calls that may outlast the time between two keepalives (a write
        to Milvus while it restarts: pymilvus retries inside one call, past its timeout).
        An attempt is never abandoned: it ends before the next begins, so two writes of the
        same rows never run at once. ``fn`` must not use what ``keepalive`` uses.
        """
        delay, failures = self.initial, 0
        while True:
            kept_alive = [False]
            try:
                result = self._alongside(fn, kept_alive) if alongside else fn()
            except retriable as exc:
                failures += 1
                self.on_retry(dependency, exc)
                logger.warning("%s unavailable (attempt %d): %s; retrying in %.1fs",
                               dependency, failures, exc, delay)
                self._wait(delay)
                delay = min(delay * 2, self.maximum)
                continue
            if failures:
                logger.info("%s is back after %d failed attempts", dependency, failures)
            if failures or kept_alive[0]:
                self.on_recovered(dependency)
            return result

    def _alongside(self, fn: Callable[[], T], kept_alive: list[bool]) -> T:
        future: Future = Future()

        def attempt() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller below
                future.set_exception(exc)

        threading.Thread(target=attempt, name="backoff-attempt", daemon=True).start()
        while True:
            try:
                return future.result(timeout=0.5)
            except FutureTimeout:
                kept_alive[0] = True
                self.keepalive()

    def _wait(self, seconds: float) -> None:
        remaining = seconds
        while remaining > 0:
            step = min(0.5, remaining)
            if self.stop.wait(step):
                raise Stopping()
            remaining -= step
            self.keepalive()
