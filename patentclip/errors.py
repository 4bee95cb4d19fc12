"""Domain errors for PatentCLIP Search.

Every error a caller can act on is one of these. They carry no transport
knowledge: the gRPC layer maps them to status codes in one interceptor,
the CLI maps them to exit codes and a one-line message.
"""

from __future__ import annotations


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


class DeadlineExceededError(PatentClipError):
    """The caller's deadline passed before the work was done."""


class OverloadedError(PatentClipError):
    """This process is at its bound of work in flight (decodes and searches): the request
    waited its share and was refused. Retriable after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
