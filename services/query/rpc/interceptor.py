"""Where domain errors become gRPC status codes (their column of
``patentclip.errors.ERROR_ANSWERS``) and requests become metrics, and where bearer tokens
are checked.

Clients see a status code and a message that says what is wrong; unknown errors are logged
with their traceback and returned as INTERNAL with a generic message and an error id.
"""

from __future__ import annotations

import logging
import time
import uuid

import grpc

from patentclip.errors import AuthError, InvalidInputError, PatentClipError, answer_for
from services.common.auth import (
    Role,
    TokenAuthenticator,
    bearer_token,
    failure_label,
)
from services.query.metrics import QueryMetrics
from services.query.rpc.reflection import SERVICE_NAMES as REFLECTION_SERVICES

logger = logging.getLogger(__name__)

def status_for(exc: Exception) -> grpc.StatusCode | None:
    """The status code of a domain error (its column of ERROR_ANSWERS); None for anything
    unexpected."""
    answer = answer_for(exc)
    return None if answer is None else grpc.StatusCode[answer.grpc]


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
                if isinstance(request, Undecodable):
                    raise InvalidInputError(f"the request is not a {name} request message "
                                            f"({request.reason})")
                return inner(request, context)
            except PatentClipError as exc:
                code = status_for(exc) or grpc.StatusCode.INTERNAL  # set before abort raises
                _abort(name, code, exc, context)
            except Exception as exc:
                if _is_abort(exc, context):
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = grpc.StatusCode.INTERNAL
                _abort(name, code, exc, context)
            finally:
                self.metrics.requests.labels(name, code.name).inc()
                self.metrics.latency.labels(name).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer)


class Undecodable:
    """A request whose bytes did not parse: answered INVALID_ARGUMENT and counted, where
    grpcio alone answers INTERNAL ("Exception deserializing request!") and counts nothing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserialize):
    if deserialize is None:
        return None

    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
            return Undecodable(f"{type(exc).__name__}: {str(exc)[:200]}")
    return parse


def _is_abort(exc: Exception, context) -> bool:
    """context.abort raises an Exception subclass after setting the code: let it through."""
    return type(exc).__name__ == "_AbortionError" or context.code() is not None


def _abort(method: str, code: grpc.StatusCode, exc: Exception, context) -> None:
    """End the call with ``code``: a domain error's message, or for INTERNAL an error id
    (the traceback goes to the log only). Raises, as context.abort does."""
    if code is not grpc.StatusCode.INTERNAL:
        context.abort(code, str(exc))
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s failed (error id %s)", method, error_id, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (id {error_id}); the server log "
                  "has the details")


# RPCs that change state; every other PatentSearch RPC needs the search role.
ADMIN_METHODS = frozenset({"/patentclip.v1.PatentSearch/Reload"})
OPEN_SERVICES = {"health": ("grpc.health.v1.Health",), "reflection": REFLECTION_SERVICES}


class AuthInterceptor(grpc.ServerInterceptor):
    """Bearer-token check before any handler runs: UNAUTHENTICATED or PERMISSION_DENIED.

    Services named in ``open_services`` (health, reflection by default) need no token, so
    load balancers and grpcurl keep working.
    """

    def __init__(self, authenticator: TokenAuthenticator, metrics: QueryMetrics,
                 open_services: tuple[str, ...] = ("health", "reflection")) -> None:
        self.authenticator, self.metrics = authenticator, metrics
        unknown = set(open_services) - set(OPEN_SERVICES)
        if unknown:
            raise InvalidInputError(f"auth open services {sorted(unknown)}: choose from "
                                    f"{sorted(OPEN_SERVICES)}")
        self.open = {name for key in open_services for name in OPEN_SERVICES[key]}

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.split("/")[1] in self.open:
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        needed = Role.ADMIN if method in ADMIN_METHODS else Role.SEARCH
        try:
            self.authenticator.authorize(bearer_token(metadata.get("authorization")), needed)
        except AuthError as exc:
            self.metrics.auth_failures.labels(failure_label(exc)).inc()
            return _refusal(continuation(handler_call_details), status_for(exc), str(exc))
        return continuation(handler_call_details)


def _refusal(handler, code: grpc.StatusCode, message: str):
    """A handler of the same shape as ``handler`` that only aborts with ``code``."""

    def refuse(request, context):
        context.abort(code, message)

    if handler is None or handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            refuse, request_deserializer=handler and handler.request_deserializer,
            response_serializer=handler and handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.stream_stream_rpc_method_handler(refuse)
