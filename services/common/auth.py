"""Bearer-token authentication and roles, without transport (gRPC and HTTP adapt it).

Tokens live in a file (or a mounted Kubernetes secret) as SHA-256 digests, never as the
tokens themselves, one per line::

    # sha256-of-token                                                  role    name
    9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08   search  examiner-ui
    60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752   admin   ops

``patentclip token new --role search --name examiner-ui`` makes a token and prints the line
to add. A presented token is hashed and compared with every stored digest with
``hmac.compare_digest`` (no early exit), so the time taken does not reveal how much of a
digest matched or which entry did. The file is re-read when it changes: rotate a token by
editing it, without a restart.

Roles: ``search`` may call every read RPC; ``admin`` may also change state (reload).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from patentclip.errors import (  # the outcomes, answered per ERROR_ANSWERS
    AuthError,
    InvalidInputError,
    PermissionDeniedError,
    UnauthenticatedError,
)

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "pcs_"
_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64})\s+(?P<role>\S+)(?:\s+(?P<name>\S+))?\s*$")


class Role(Enum):
    SEARCH = "search"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Admin can do everything search can."""
        return self is Role.ADMIN or needed is Role.SEARCH


@dataclass(frozen=True)
class Principal:
    """Who called: the token's name and role (never the token)."""

    name: str
    role: Role


def failure_label(exc: AuthError) -> str:
    """The ``auth_failures_total`` reason of a refusal, the same on every transport."""
    return "permission" if isinstance(exc, PermissionDeniedError) else "token"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_line(token: str, role: Role, name: str) -> str:
    """The tokens-file line that admits ``token`` (what the file stores: its digest)."""
    if not re.fullmatch(r"[A-Za-z0-9_.@-]+", name):
        raise InvalidInputError(f"token name {name!r}: use letters, digits, . _ @ -")
    return f"{token_digest(token)} {role.value} {name}"


def parse_tokens(text: str, source: str) -> list[tuple[str, Principal]]:
    """(digest, principal) per line; InvalidInputError naming the file and line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if not match:
            raise InvalidInputError(f"{source}:{number}: expected '<sha256 hex digest> <role> "
                                    "[name]' (the file stores digests, not tokens)")
        try:
            role = Role(match["role"])
        except ValueError:
            raise InvalidInputError(f"{source}:{number}: unknown role {match['role']!r}; "
                                    f"roles: {', '.join(r.value for r in Role)}") from None
        entries.append((match["digest"], Principal(match["name"] or f"line{number}", role)))
    return entries


class TokenAuthenticator:
    """Checks bearer tokens against a digests file, re-read when the file changes."""

    def __init__(self, path: str | Path, recheck_s: float = 2.0) -> None:
        self.path = Path(path)
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._entries: list[tuple[bytes, Principal]] = []
        self._mtime: float | None = None
        self._checked = 0.0
        self._load()  # a missing or bad file fails the service's start, loudly

    def authenticate(self, token: str | None) -> Principal:
        """The principal a token belongs to; UnauthenticatedError otherwise."""
        if not token:
            raise UnauthenticatedError("missing bearer token: send 'authorization: Bearer "
                                       "<token>'")
        self._maybe_reload()
        presented = token_digest(token).encode()
        found: Principal | None = None
        for digest, principal in self._entries:  # all of them: constant time
            if hmac.compare_digest(presented, digest):
                found = principal
        if found is None:
            raise UnauthenticatedError("invalid bearer token")
        return found

    def authorize(self, token: str | None, needed: Role) -> Principal:
        """Authenticate, then check the role; PermissionDeniedError names the role needed."""
        principal = self.authenticate(token)
        if not principal.role.allows(needed):
            raise PermissionDeniedError(f"role {principal.role.value} may not do this; it "
                                        f"needs role {needed.value}")
        return principal

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        try:
            if self.path.stat().st_mtime != self._mtime:
                self._load()
        except (OSError, InvalidInputError) as exc:  # keep the last good table
            logger.error("tokens file %s not reloaded, keeping the previous one: %s",
                         self.path, exc)

    def _load(self) -> None:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidInputError(f"tokens file {self.path}: {exc.strerror}") from exc
            entries = [(d.encode(), p) for d, p in parse_tokens(text, str(self.path))]
            if not entries:
                raise InvalidInputError(f"tokens file {self.path}: no tokens; with none, "
                                        "nobody could call the service")
            self._entries, self._mtime = entries, mtime
            logger.info("loaded %d tokens from %s (%s)", len(entries), self.path,
                        ", ".join(sorted({p.role.value for _, p in entries})))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an 'authorization: Bearer <token>' value (None if absent or malformed)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
