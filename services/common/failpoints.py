"""Failpoints: named places where a test can freeze a service to kill it there.

Like etcd's gofail, for crash tests only. ``PATENTCLIP_EMBEDDER_FAILPOINT=after_upsert@2``
makes the embedder stop at the second time it reaches ``after_upsert``: it logs
``FAILPOINT after_upsert@2 reached`` and blocks until the process is killed (the test sends
SIGKILL), so the crash happens exactly between two steps. Empty = off (production).
"""

from __future__ import annotations

import logging
import re
import sys
import threading

from patentclip.errors import InvalidInputError

logger = logging.getLogger(__name__)


class Failpoints:
    """Counts hits of named points; blocks forever at the configured one."""

    def __init__(self, spec: str = "") -> None:
        self.name, self.at = "", 0
        self._hits: dict[str, int] = {}
        if spec:
            match = re.fullmatch(r"([a-z_]+)@(\d+)", spec.strip())
            if not match:
                raise InvalidInputError(f"failpoint {spec!r}: expected NAME@N, "
                                        "e.g. after_upsert@2")
            self.name, self.at = match.group(1), int(match.group(2))

    def hit(self, name: str) -> None:
        if name != self.name:
            return
        self._hits[name] = self._hits.get(name, 0) + 1
        if self._hits[name] == self.at:
            message = f"FAILPOINT {name}@{self.at} reached; blocking until killed"
            logger.error(message)
            print(message, file=sys.stderr, flush=True)
            threading.Event().wait()
