"""The HTTP edge: what every request meets before a route runs, and every response leaves with.

One ASGI middleware, the one owner of these rules for the web app and the embedding provider:

1. **Host** — a Host header outside the allow-list (``PATENTCLIP_QUERY_HTTP_ALLOWED_HOSTS``;
   loopback names by default on a loopback bind) is refused: DNS rebinding cannot read the
   API through a name that resolves to this machine.
2. **Authentication before the body** — a protected route's bearer token is checked from
   the headers alone: 401 with ``WWW-Authenticate`` (403 for a role that may not), counted
   like gRPC's refusals, and the body is never parsed. A refused request's small declared
   body (up to DISCARD_BYTES, for at most DISCARD_S) is read into nothing before the
   answer: closing with a body unread makes the kernel reset the connection, and the
   client could lose the refusal itself (Schemathesis saw "connection reset").
3. **Body limits as the bytes stream** — per route (a drawing's worth on search and
   preview, nothing on GETs); a ``Content-Length`` over it is refused unread, a chunked body
   is counted as it arrives and refused the moment it passes the limit.
4. **Every response** — 500s included — carries the security headers (CSP with Trusted
   Types, no referrer, COOP/CORP, ``no-store`` on the API) and is counted under its route
   template. An error nothing else caught is a 500 with an error id; the traceback goes to
   the log only.

Refusals answer in the protocol of the route: the web API's ``{"error", "kind"}``, OpenAI's
``{"error": {...}}`` or TEI's ``{"error", "error_type"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Match, Mount

from patentclip.errors import AuthError, answer_for, answer_for_kind
from services.common.auth import Role, TokenAuthenticator, failure_label
from services.common.auth import bearer_token as parse_bearer
from services.query.http.provider import ProviderError, openai_error, tei_error
from services.query.metrics import QueryMetrics

logger = logging.getLogger(__name__)

DISCARD_BYTES = 64 * 1024  # a refused request's body read into nothing, up to this size
DISCARD_S = 1.0  # ... and for at most this long

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

MAX_PROVIDER_BODY = 2 * 1024 * 1024  # 2,048 texts of CLIP's context, with JSON's overhead
MAX_RECORD_BODY = 4 * 1024 * 1024  # a search record: up to 1,000 results and the query
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-frame-options": "DENY",
}
WWW_AUTHENTICATE = 'Bearer realm="patentclip"'


@dataclass(frozen=True)
class RoutePolicy:
    """What a path needs: a token, the largest body it reads, the protocol it answers in."""

    auth: bool
    max_body: int
    protocol: str  # api (the web app's JSON), openai, tei, plain (the page, /health)


def policy_for(path: str, max_image_bytes: int) -> RoutePolicy:
    """The one table of HTTP routes' limits. A search carries a drawing as base64 (4/3 of
    its bytes) plus a few KB of fields; preview carries the drawing's bytes."""
    if path == "/api/openapi.json":
        return RoutePolicy(False, 0, "api")
    if path == "/api/search":
        return RoutePolicy(True, max_image_bytes * 4 // 3 + 64 * 1024, "api")
    if path == "/api/preview":
        return RoutePolicy(True, max_image_bytes, "api")
    if path == "/api/export":
        return RoutePolicy(True, MAX_RECORD_BODY, "api")
    if path.startswith("/api/"):
        return RoutePolicy(True, 0, "api")
    if path == "/v1/embeddings":
        return RoutePolicy(True, MAX_PROVIDER_BODY, "openai")
    if path.startswith("/v1/"):
        return RoutePolicy(True, 0, "openai")
    if path == "/embed":
        return RoutePolicy(True, MAX_PROVIDER_BODY, "tei")
    return RoutePolicy(False, 0, "plain")


class Refusal(Exception):
    """A request the edge answers itself: status, kind (the page's state) and message."""

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, headers or {}


def error_body(protocol: str, status: int, kind: str, message: str) -> dict:
    """An error in the route's own protocol: the provider's bodies are built by the
    provider's own builders (services/query/http/provider.py), the web API's here."""
    if protocol not in ("openai", "tei"):
        return {"error": message, "kind": kind}
    answer = answer_for_kind(kind)  # the edge's refusals of ERROR_ANSWERS: auth, too_large
    refusal = ProviderError(status, message, None,
                            answer.openai_code if answer else kind,
                            answer.openai_type if answer else
                            "server_error" if status >= 500 else "invalid_request_error")
    return (openai_error if protocol == "openai" else tei_error)(refusal).body


class Edge:
    """The ASGI middleware described above (``app.add_middleware(Edge, ...)``)."""

    def __init__(self, app, metrics: QueryMetrics, authenticator: TokenAuthenticator | None,
                 max_image_bytes: int, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app, self.metrics, self.authenticator = app, metrics, authenticator
        self.max_image_bytes = max_image_bytes
        self._routes = _find_routes(app)  # the router's own list: routes added later count
        self.allowed_hosts = frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        policy = policy_for(path, self.max_image_bytes)
        label = self._route_label(scope)
        sent: dict = {}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                # counted before the client can see the answer (a client that reads the
                # metrics right after it must find its own request there)
                self.metrics.http_requests.labels(label, str(message["status"])).inc()
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if path.startswith(("/api/", "/v1/", "/embed", "/health")):
                    headers["cache-control"] = "no-store"
            await send(message)

        try:
            try:
                self._check_host(scope)
                self._check_auth(scope, policy)
                receive = await _read_body(scope, receive, policy.max_body)
            except Refusal as refusal:
                self.metrics.http_refused.labels(refusal.kind if refusal.kind in (
                    "host", "auth", "permission", "too_large") else "malformed").inc()
                if refusal.kind != "too_large":  # a body over the limit stays unread
                    await _discard_small_body(scope, receive)
                await _respond(send_with_headers, refusal.status, error_body(
                    policy.protocol, refusal.status, refusal.kind, str(refusal)),
                    {**refusal.headers, "connection": "close"})
                return
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - the last word: a 500 with an error id
            error_id = uuid.uuid4().hex[:12]
            logger.error("%s %s failed (error id %s)", scope.get("method"), path, error_id,
                         exc_info=exc)
            if "status" not in sent:
                await _respond(send_with_headers, 500, error_body(
                    policy.protocol, 500, "internal", f"internal error (id {error_id}); the "
                    "server log has the details"))
        finally:
            if "status" not in sent:  # nothing answered (the client left mid-request)
                self.metrics.http_requests.labels(label, "500").inc()
            self.metrics.http_latency.labels(label).observe(time.perf_counter() - started)

    def _check_host(self, scope: Scope) -> None:
        if not self.allowed_hosts:
            return
        host = Headers(scope=scope).get("host", "").strip().lower()
        name = host.split("]")[0] + "]" if host.startswith("[") else host.split(":")[0]
        if host not in self.allowed_hosts and name not in self.allowed_hosts:
            raise Refusal(400, "host", f"host {host[:100]!r} is not served here "
                          "(PATENTCLIP_QUERY_HTTP_ALLOWED_HOSTS)")

    def _check_auth(self, scope: Scope, policy: RoutePolicy) -> None:
        if not policy.auth or self.authenticator is None:
            return
        try:
            token = parse_bearer(Headers(scope=scope).get("authorization"))
            self.authenticator.authorize(token, Role.SEARCH)
        except AuthError as exc:
            self.metrics.auth_failures.labels(failure_label(exc)).inc()
            answer = answer_for(exc)
            raise Refusal(answer.http, answer.kind, str(exc),
                          {"www-authenticate": WWW_AUTHENTICATE} if answer.http == 401
                          else {}) from None

    def _route_label(self, scope: Scope) -> str:
        """The route template a request matched (bounded: a metric label), "static" for
        the page's files, "other" for anything else."""
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                static = isinstance(route, Mount) or getattr(route, "name", "") == "static"
                return "static" if static else getattr(route, "path", "other")
        return "other"


def _find_routes(app) -> list:
    """The routes of the app under a stack of middleware (each keeps ``app``)."""
    while app is not None and not hasattr(app, "routes"):
        app = getattr(app, "app", None)
    return getattr(app, "routes", [])


async def _read_body(scope: Scope, receive: Receive, limit: int) -> Receive:
    """Read the request body, counting bytes as they stream (chunked bodies included);
    Refusal 413 as soon as it passes ``limit``. Returns a ``receive`` that replays it."""
    declared = Headers(scope=scope).get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refusal(400, "malformed", "content-length is not a number")
        if int(declared) > limit:
            raise Refusal(413, "too_large", f"request body of {declared} bytes, limit {limit}")
    if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE") and declared is None \
            and b"chunked" not in Headers(scope=scope).get("transfer-encoding", "").encode():
        return receive
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: pass that on
            return _replay(b"".join(chunks), receive)
        size += len(message.get("body", b""))
        if size > limit:
            raise Refusal(413, "too_large", f"request body over {limit} bytes (counted as it "
                          "arrived)")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return _replay(b"".join(chunks), receive)


async def _discard_small_body(scope: Scope, receive: Receive) -> None:
    """Read and drop a refused request's body when it declared at most DISCARD_BYTES, for
    at most DISCARD_S: the connection then closes cleanly. A larger, chunked or slow body
    is left unread (the connection is closed on it)."""
    declared = Headers(scope=scope).get("content-length", "")
    if not declared.isdigit() or not 0 < int(declared) <= DISCARD_BYTES:
        return
    until, size = time.monotonic() + DISCARD_S, 0
    while size <= DISCARD_BYTES and (left := until - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), timeout=left)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, then: Receive) -> Receive:
    """The body in one message, then the client's own messages (a disconnect)."""
    given = False

    async def replayed() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()
    return replayed


async def _respond(send: Send, status: int, body: dict, headers: dict | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
