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
             dependency: str) -> T:
        """``fn()``, retried on ``retriable`` errors until it succeeds or stop is set."""
        delay, failures = self.initial, 0
        while True:
            try:
                result = fn()
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
                self.on_recovered(dependency)
            return result

    def _wait(self, seconds: float) -> None:
        remaining = seconds
        while remaining > 0:
            step = min(0.5, remaining)
            if self.stop.wait(step):
                raise Stopping()
            remaining -= step
            self.keepalive()
