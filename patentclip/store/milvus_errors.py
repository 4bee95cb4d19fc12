"""How a Milvus error is read: retriable (unreachable, warming up, not loaded, a deadline)
or a refusal. pymilvus' typed exceptions first, then Milvus' error codes, then one table of
message words for servers and paths that carry no useful code."""

from __future__ import annotations

from pymilvus.exceptions import (
    ConnectError,
    ConnectionNotExistException,
    MilvusException,
    MilvusUnavailableException,
)

# How a Milvus error is read, in this order: pymilvus' exception type, then Milvus' error
# code (pkg/util/merr), then words of the message (older servers, Milvus Lite and errors
# raised inside pymilvus carry no useful code; code 1 is also pymilvus' "unexpected").
_UNAVAILABLE_TYPES = (MilvusUnavailableException, ConnectError, ConnectionNotExistException)
_CODES = {
    101: "not_loaded", 103: "not_loaded", 106: "not_loaded",  # not loaded, partly, recovering
    2: "unavailable", 4: "unavailable", 8: "unavailable", 11: "unavailable",  # service
    503: "unavailable", 601: "unavailable", 602: "unavailable", 801: "unavailable",
    901: "unavailable", 902: "unavailable", 903: "unavailable", 904: "unavailable",
    905: "unavailable", 906: "unavailable",  # nodes: not found, offline, lack, not match...
}
MILVUS_ERROR_WORDS: tuple[tuple[str, str], ...] = (
    ("not loaded", "not_loaded"), ("state 'released'", "not_loaded"),
    ("deadline", "deadline"), ("timeout", "deadline"), ("timed out", "deadline"),
    ("unavailable", "unavailable"), ("connect", "unavailable"), ("closed", "unavailable"),
    ("cancelled", "unavailable"),
    ("no available", "unavailable"),  # "find no available rootcoord" (a stop, a warm-up)
    ("not ready", "unavailable"), ("session not found", "unavailable"),
    ("node not match", "unavailable"), ("stopping", "unavailable"),
    ("shutting down", "unavailable"), ("recovering", "not_loaded"),
)


def milvus_errors_only(method, *args, **kwargs):
    """``method(...)``; a gRPC error that pymilvus let through unwrapped (seen: a
    DEADLINE_EXCEEDED from create_collection while Milvus starts) becomes a
    MilvusException carrying the gRPC status name, so one classification reads both."""
    try:
        return method(*args, **kwargs)
    except MilvusException:
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        status = getattr(code(), "name", None) if callable(code) else None
        if not isinstance(status, str):
            raise
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        number = 2 if status in ("UNAVAILABLE", "CANCELLED") else 1
        raise MilvusException(code=number, message=f"gRPC {status}: {details}") from exc


def classify_milvus_error(exc: MilvusException) -> str:
    """One of "not_loaded", "unavailable", "deadline" (all retriable) or "error"."""
    if isinstance(exc, _UNAVAILABLE_TYPES):
        return "unavailable"
    if exc.code in _CODES:
        return _CODES[exc.code]
    text = str(exc.message).lower()
    return next((kind for words, kind in MILVUS_ERROR_WORDS if words in text), "error")
