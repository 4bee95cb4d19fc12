"""The query service's HTTP app (FastAPI): the examiner web app and the embedding provider.

* ``/`` — the examiner single-page app (``static/``: plain HTML, CSS and JavaScript, no
  CDN, no build step; it works with no internet).
* ``/api/*`` — its JSON API over the live snapshot (the same batcher as gRPC):
  ``GET /api/info``, ``POST /api/search``, ``POST /api/preview`` (a query drawing as PNG,
  for the crop), ``GET /api/drawing/{patent}/{sheet}?size=thumbnail|medium|full``,
  ``GET /api/patent/{number}``, ``POST /api/export?format=csv|json``.
* ``POST /v1/embeddings`` (OpenAI), ``POST /embed`` (TEI), ``GET /v1/models``,
  ``GET /health`` — the embedding provider Milvus calls (services/query/embeddings.py).

Tokens are the gRPC service's (``Authorization: Bearer``, role search); the page keeps the
examiner's token in the tab's sessionStorage. Domain errors become HTTP statuses from one
table, with a ``kind`` the page shows a state for; unknown errors are 500 with an error id,
the traceback only in the log.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from patentclip.drawings import render_png
from patentclip.errors import (
    DeadlineExceededError,
    ImageDecodeError,
    ImageTooLargeError,
    InvalidInputError,
    ModelLoadError,
    ModelVersionMismatchError,
    NotFoundError,
    PatentClipError,
    TextTooLongError,
    UnavailableError,
)
from patentclip.grants import SHEET_VIEWS, normalize_patent_number
from patentclip.search import check_image
from services.common.auth import AuthError, PermissionDeniedError, Role, TokenAuthenticator
from services.common.auth import bearer_token as parse_bearer
from services.query.drawings import StoredDrawings
from services.query.embeddings import EmbeddingProvider, Reply
from services.query.live import LiveSearch, Snapshot
from services.query.metrics import QueryMetrics
from services.query.web import api

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_PROVIDER_BODY = 8 * 1024 * 1024
# Checked in order: the first matching class wins. (status, kind): the page shows a state
# per kind (too_large, bad_image, not_ready, ...).
HTTP_STATUS_BY_ERROR: tuple[tuple[type[Exception], int, str], ...] = (
    (ImageTooLargeError, 413, "too_large"),
    (TextTooLongError, 413, "too_long"),
    (ImageDecodeError, 400, "bad_image"),
    (InvalidInputError, 400, "invalid"),
    (NotFoundError, 404, "not_found"),
    (DeadlineExceededError, 504, "deadline"),
    (UnavailableError, 503, "not_ready"),
    (ModelVersionMismatchError, 409, "model_changed"),
    (ModelLoadError, 503, "not_ready"),
)
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'")


@dataclass(frozen=True)
class WebBackend:
    """What the HTTP app serves from: the query service's live search, tokens, image store
    and drawing renderer, and the limits of its gRPC side."""

    live: LiveSearch
    authenticator: TokenAuthenticator | None
    stored: StoredDrawings
    max_image_bytes: int
    timeout_s: float

    def snapshot(self) -> Snapshot:
        return self.live.current()


class HTTPError(Exception):
    """A refusal the routes raise before the core is called (auth, body size)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def create_app(backend: WebBackend, metrics: QueryMetrics) -> FastAPI:
    app = FastAPI(title="PatentCLIP Search", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    _add_middleware(app, backend, metrics)
    _add_error_handlers(app)
    _add_api(app, backend)
    _add_provider(app, backend)
    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app


def _add_api(app: FastAPI, backend: WebBackend) -> None:
    def authorized(request: Request) -> None:
        if backend.authenticator is None:
            return
        try:
            backend.authenticator.authorize(parse_bearer(request.headers.get("authorization")),
                                            Role.SEARCH)
        except AuthError as exc:
            denied = isinstance(exc, PermissionDeniedError)
            raise HTTPError(403 if denied else 401, "permission" if denied else "auth",
                            str(exc)) from None

    guard = [Depends(authorized)]

    @app.get("/api/info", dependencies=guard)
    def info() -> dict:
        snap = backend.snapshot()
        return {"model_version": snap.model_version, "collection": snap.collection,
                "alias": backend.live.alias, "corpus_sheets": snap.rows // 2,
                "dim": snap.encoder.dim, "max_image_bytes": backend.max_image_bytes,
                "auth": backend.authenticator is not None,
                "drawings": backend.stored.renderer is not None, "views": list(SHEET_VIEWS)}

    @app.post("/api/search", dependencies=guard)
    def search(body: api.SearchIn) -> dict:
        snap = backend.snapshot()
        query = api.Query(body, backend.max_image_bytes, backend.timeout_s)
        return api.search_response(query, query.run(snap.engine))

    @app.post("/api/preview", dependencies=guard)
    async def preview(request: Request) -> Response:
        data = check_image(await request.body(), "image", backend.max_image_bytes)
        rendered = render_png(data, 1024, request.headers.get("x-file-name") or "the drawing")
        return Response(rendered.png, media_type="image/png")

    @app.get("/api/drawing/{patent}/{sheet}", dependencies=guard)
    def drawing(patent: str, sheet: int, size: str = "thumbnail") -> Response:
        snap = backend.snapshot()
        stored = snap.engine.drawing_sheet(normalize_patent_number(patent, "patent"), sheet)
        rendered = backend.stored.render(stored["image_uri"], size)
        return Response(rendered.png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/patent/{number}", dependencies=guard)
    def patent(number: str) -> dict:
        snap = backend.snapshot()
        patent_number = normalize_patent_number(number, "patent")
        record = snap.engine.get_patent(patent_number)
        return api.patent_view(record, backend.stored.grant(patent_number),
                               snap.model_version)

    @app.post("/api/export", dependencies=guard)
    async def export(request: Request, format: str = "json") -> Response:  # noqa: A002
        try:
            record = json.loads(await request.body())
        except ValueError as exc:
            raise InvalidInputError(f"record: the body is not JSON ({exc})") from exc
        stamp = str(record.get("searched_at", "")).replace(":", "") if isinstance(
            record, dict) else ""
        name = f"patentclip-search-{stamp or 'record'}"
        if format == "csv":
            return Response(api.record_csv(record), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        if format != "json":
            raise InvalidInputError(f"format {format!r}: choose csv or json")
        return Response(json.dumps(record, indent=2), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


def _add_provider(app: FastAPI, backend: WebBackend) -> None:
    """The embedding provider's routes: its own bodies and errors (OpenAI's and TEI's)."""
    provider = EmbeddingProvider(backend.snapshot, backend.authenticator)

    async def body(request: Request) -> object:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError as exc:
            return exc

    def reply(result: Reply) -> JSONResponse:
        return JSONResponse(result.body, result.status, headers=result.headers)

    def not_json(exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": {"message": f"the body is not JSON: {exc}",
                                       "type": "invalid_request_error", "param": None,
                                       "code": None}}, 400)

    def route(protocol):
        async def embed(request: Request) -> JSONResponse:
            parsed = await body(request)
            if isinstance(parsed, ValueError):
                return not_json(parsed)
            return reply(protocol(parsed, request.headers.get("authorization")))
        return embed

    app.add_api_route("/v1/embeddings", route(provider.openai), methods=["POST"])  # OpenAI
    app.add_api_route("/embed", route(provider.tei), methods=["POST"])  # TEI

    @app.get("/v1/models")
    def models(request: Request) -> JSONResponse:
        return reply(provider.models(request.headers.get("authorization")))

    @app.get("/health")
    def health() -> JSONResponse:
        if not backend.live.serving:
            return JSONResponse({"error": "not serving", "error_type": "Unhealthy",
                                 "reason": backend.live.reason}, 503)
        return JSONResponse({})


def _body_limit(path: str, backend: WebBackend) -> int:
    """The largest body a route reads: a drawing (base64 in a search: 4/3 of it)."""
    if path == "/api/preview":
        return backend.max_image_bytes
    if path.startswith("/api/"):
        return backend.max_image_bytes * 4 // 3 + 1024 * 1024
    return MAX_PROVIDER_BODY


def _add_middleware(app: FastAPI, backend: WebBackend, metrics: QueryMetrics) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        length = int(request.headers.get("content-length") or 0)
        limit = _body_limit(request.url.path, backend)
        if length > limit:
            response = _error(413, "too_large", f"image: {length} bytes, limit {limit}"
                              if request.url.path == "/api/preview" else
                              f"request body of {length} bytes, limit {limit}")
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "") or "other"
        label = "static" if template == "" or getattr(route, "name", "") == "static" \
            else template
        metrics.http_requests.labels(label, str(response.status_code)).inc()
        metrics.http_latency.labels(label).observe(time.perf_counter() - started)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPError)
    async def refused(request: Request, exc: HTTPError) -> JSONResponse:
        return _error(exc.status, exc.kind, str(exc))

    @app.exception_handler(PatentClipError)
    async def domain(request: Request, exc: PatentClipError) -> JSONResponse:
        for error, status, kind in HTTP_STATUS_BY_ERROR:
            if isinstance(exc, error):
                return _error(status, kind, str(exc))
        return _internal(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return _error(400, "invalid", problems)

    @app.exception_handler(Exception)
    async def unknown(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def _internal(request: Request, exc: Exception) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s %s failed (error id %s)", request.method, request.url.path, error_id,
                 exc_info=exc)
    return _error(500, "internal", f"internal error (id {error_id}); the server log has the "
                  "details")


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "kind": kind}, status)
