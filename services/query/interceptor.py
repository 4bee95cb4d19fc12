"""The one place domain errors become gRPC status codes (and requests become metrics).

Clients see a status code and a message that says what is wrong; unknown errors are logged
with their traceback and returned as INTERNAL with a generic message and an error id.
"""

from __future__ import annotations

import logging
import time
import uuid

import grpc

from patentclip.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelLoadError,
    ModelVersionMismatchError,
    NotFoundError,
    PatentClipError,
    UnavailableError,
)
from services.query.metrics import QueryMetrics

logger = logging.getLogger(__name__)

# Checked in order: the first matching class wins.
STATUS_BY_ERROR: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ModelVersionMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (ModelLoadError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(exc: Exception) -> grpc.StatusCode | None:
    """The status code of a domain error; None for anything unexpected."""
    for error, code in STATUS_BY_ERROR:
        if isinstance(exc, error):
            return code
    return None


class ErrorInterceptor(grpc.ServerInterceptor):
    """Wraps every unary RPC of our services: error mapping, request count and latency."""

    def __init__(self, metrics: QueryMetrics, service_prefix: str = "/patentclip.") -> None:
        self.metrics, self.prefix = metrics, service_prefix

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self.prefix) or not handler.unary_unary:
            return handler  # health, reflection: served as they are
        name = method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        def wrapped(request, context):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return inner(request, context)
            except PatentClipError as exc:
                code = status_for(exc) or grpc.StatusCode.INTERNAL
                if code is grpc.StatusCode.INTERNAL:
                    code = _internal(name, exc, context)
                else:
                    context.abort(code, str(exc))
            except Exception as exc:
                if _is_abort(exc, context):
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = _internal(name, exc, context)
            finally:
                self.metrics.requests.labels(name, code.name).inc()
                self.metrics.latency.labels(name).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _is_abort(exc: Exception, context) -> bool:
    """context.abort raises an Exception subclass after setting the code: let it through."""
    return type(exc).__name__ == "_AbortionError" or context.code() is not None


def _internal(method: str, exc: Exception, context) -> grpc.StatusCode:
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s failed (error id %s)", method, error_id, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (id {error_id}); the server log "
                  "has the details")
    return grpc.StatusCode.INTERNAL  # not reached: abort raises
