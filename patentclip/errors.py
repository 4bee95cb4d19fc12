"""Domain errors for PatentCLIP Search, and the one table of how every edge answers them.

Every error a caller can act on is one of these. They carry no transport knowledge: the
table ``ERROR_ANSWERS`` names, per error, the gRPC status, the HTTP status, the web API's
``kind`` and the OpenAI-compatible error type and code, as plain values; each adapter (the
gRPC interceptors, the HTTP app and edge, the embedding provider, the CLI) reads its
column. Anything not in the table is INTERNAL, with an error id (``INTERNAL_ANSWER``).
"""

from __future__ import annotations

from dataclasses import dataclass


class PatentClipError(Exception):
    """Base class of all domain errors."""


class InvalidInputError(PatentClipError):
    """A request or file is malformed; retrying the same input cannot succeed."""


class GrantParseError(InvalidInputError):
    """One grant document could not be read. Names the source and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class NotADesignGrantError(GrantParseError):
    """The document is a utility, plant or reissue grant, or no grant at all (a sequence
    listing of a weekly file): skipped and counted under ``reason``, not fatal."""

    def __init__(self, source: str, doc_kind: str, reason: str = "") -> None:
        super().__init__(source, reason or f"not a design grant (kind {doc_kind or 'unknown'})")
        self.doc_kind = doc_kind


class UnsafeArchiveError(InvalidInputError):
    """An archive member would escape the target (path traversal, absolute path, link)."""


class ImageDecodeError(InvalidInputError):
    """A drawing could not be decoded, or is larger than the configured pixel limit."""


class InvalidQueryError(InvalidInputError):
    """A search request is invalid (empty text, bad filter, top_k out of range...)."""


class TextTooLongError(InvalidQueryError):
    """A query text longer than the service reads (HTTP providers answer 413 for it)."""


class ImageTooLargeError(InvalidQueryError):
    """A query image larger than the service reads (HTTP answers 413 for it)."""


class NotFoundError(PatentClipError):
    """The requested patent, collection or model version does not exist."""


class ModelLoadError(PatentClipError):
    """An encoder could not be loaded; the message says how to provide the weights."""


class StoreError(PatentClipError):
    """The vector store refused an operation (not a connectivity problem)."""


class UnavailableError(PatentClipError):
    """A dependency (vector store, image store, broker) cannot be reached right now.

    Retriable: callers at the I/O edge retry with bounded back-off and never drop the work.
    """


class StoreUnavailableError(StoreError, UnavailableError):
    """The vector store cannot be reached. Retriable."""


class ImageStoreUnavailableError(UnavailableError):
    """The image store timed out or failed to answer. Retriable."""


class EventDecodeError(InvalidInputError):
    """A grant event cannot be used: undecodable bytes, unknown schema version, bad fields.

    ``reason`` is a short fixed code (bounded cardinality: it is a dead-letter header and a
    metric label); the message says what exactly is wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ModelVersionMismatchError(PatentClipError):
    """A collection was built by another model version than the loaded encoder."""


class AuthError(PatentClipError):
    """Base of the two authentication outcomes."""


class UnauthenticatedError(AuthError):
    """No token, or a token that is not in the file."""


class PermissionDeniedError(AuthError):
    """A known token whose role may not call this method."""


class DeadlineExceededError(PatentClipError):
    """The caller's deadline passed before the work was done."""


class OverloadedError(PatentClipError):
    """This process is at its bound of work in flight (decodes and searches): the request
    waited its share and was refused. Retriable after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ErrorAnswer:
    """How every edge answers one error: a column per protocol."""

    grpc: str  # a grpc.StatusCode name
    http: int  # the HTTP status (web API, OpenAI- and TEI-compatible routes)
    kind: str  # the web API's error kind: the page has a message for each
    openai_type: str  # OpenAI's error "type"
    openai_code: str | None = None  # OpenAI's error "code"


# Checked in order, the first matching class wins: subclasses before their bases (tested).
ERROR_ANSWERS: tuple[tuple[type[PatentClipError], ErrorAnswer], ...] = (
    (UnauthenticatedError,
     ErrorAnswer("UNAUTHENTICATED", 401, "auth", "authentication_error", "invalid_api_key")),
    (PermissionDeniedError, ErrorAnswer("PERMISSION_DENIED", 403, "permission",
                                        "authentication_error", "permission_denied")),
    (ImageTooLargeError, ErrorAnswer("INVALID_ARGUMENT", 413, "too_large",
                                     "invalid_request_error", "too_large")),
    (TextTooLongError, ErrorAnswer("INVALID_ARGUMENT", 413, "too_long",
                                   "invalid_request_error", "context_length_exceeded")),
    (ImageDecodeError, ErrorAnswer("INVALID_ARGUMENT", 400, "bad_image",
                                   "invalid_request_error")),
    (InvalidInputError, ErrorAnswer("INVALID_ARGUMENT", 400, "invalid", "invalid_request_error")),
    (NotFoundError, ErrorAnswer("NOT_FOUND", 404, "not_found", "invalid_request_error")),
    (DeadlineExceededError, ErrorAnswer("DEADLINE_EXCEEDED", 504, "deadline", "server_error",
                                        "timeout")),
    (OverloadedError, ErrorAnswer("RESOURCE_EXHAUSTED", 503, "busy", "server_error", "busy")),
    (UnavailableError, ErrorAnswer("UNAVAILABLE", 503, "not_ready", "server_error",
                                   "unavailable")),
    (ModelVersionMismatchError, ErrorAnswer("FAILED_PRECONDITION", 409, "model_changed",
                                            "invalid_request_error", "model_changed")),
    (ModelLoadError, ErrorAnswer("UNAVAILABLE", 503, "not_ready", "server_error",
                                 "unavailable")),
)
INTERNAL_ANSWER = ErrorAnswer("INTERNAL", 500, "internal", "server_error", "internal")


def answer_for_kind(kind: str) -> ErrorAnswer | None:
    """The answer whose web ``kind`` this is (the HTTP edge's own refusals: auth, too_large);
    None for a kind only the edge uses (host, malformed)."""
    return next((answer for _, answer in ERROR_ANSWERS if answer.kind == kind), None)


def answer_for(exc: BaseException) -> ErrorAnswer | None:
    """How the edges answer ``exc``; None for anything unexpected (answered INTERNAL, with
    an error id, the traceback only in the log)."""
    for error, answer in ERROR_ANSWERS:
        if isinstance(exc, error):
            return answer
    return None
