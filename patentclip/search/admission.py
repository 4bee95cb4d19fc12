"""A bound on decodes in flight in one process.

Decoding is where a query's memory goes: a small compressed upload can declare tens of
millions of pixels (a 244 KiB PNG took 687 MiB before the decoder was bounded), so the
number of decodes running at once, not the number of requests, decides a process's peak.
Callers over the bound wait up to ``wait_s`` for a slot, then get OverloadedError
(RESOURCE_EXHAUSTED over gRPC, 503 with Retry-After over HTTP): a burst is smoothed, a
flood is refused instead of taking the process down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from patentclip.errors import InvalidInputError, OverloadedError


class Admission:
    """At most ``limit`` holders of a slot at once; the rest wait ``wait_s``, then are
    refused. Thread-safe; one instance per process, shared by every transport."""

    def __init__(self, limit: int, wait_s: float,
                 on_refused: Callable[[str], None] | None = None) -> None:
        if limit < 1 or wait_s < 0:
            raise InvalidInputError(f"admission: limit={limit} >= 1 and wait_s={wait_s} >= 0 "
                                    "are required")
        self.limit, self.wait_s = limit, wait_s
        self._slots = threading.BoundedSemaphore(limit)
        self._on_refused = on_refused or (lambda what: None)

    @contextmanager
    def slot(self, what: str = "decode") -> Iterator[None]:
        """Hold one slot for the block; OverloadedError naming ``what`` when none frees
        within ``wait_s``."""
        if not self._slots.acquire(timeout=self.wait_s):
            self._on_refused(what)
            raise OverloadedError(f"{what}: {self.limit} already in flight in this process and "
                                  f"none finished within {self.wait_s:g} s; retry shortly",
                                  retry_after_s=max(1.0, self.wait_s))
        try:
            yield
        finally:
            self._slots.release()


UNBOUNDED = Admission(1 << 30, 0.0)  # for callers that bound nothing (tools, tests)
