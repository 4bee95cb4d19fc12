"""The query service's HTTP app (FastAPI): the examiner web app and the embedding provider.

* ``/`` — the examiner single-page app (``static/``: plain HTML, CSS and JavaScript, no
  CDN, no build step; it works with no internet).
* ``/api/*`` — its JSON API over the live snapshot (the same batcher as gRPC):
  ``GET /api/info``, ``POST /api/search``, ``POST /api/preview`` (a query drawing as PNG,
  for the crop), ``GET /api/drawing/{patent}/{sheet}?size=thumbnail|medium|full``,
  ``GET /api/patent/{number}``, ``POST /api/export?format=csv|json``.
* ``POST /v1/embeddings`` (OpenAI), ``POST /embed`` (TEI), ``GET /v1/models``,
  ``GET /health`` — the embedding provider Milvus calls (services/query/http/provider.py).

Tokens are the gRPC service's (``Authorization: Bearer``, role search); the page keeps the
examiner's token in the tab's sessionStorage. Domain errors become HTTP statuses from their
column of ``patentclip.errors.ERROR_ANSWERS``, with a ``kind`` the page shows a state for;
unknown errors are 500 with an error id, the traceback only in the log.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from patentclip.drawings.render import render_png
from patentclip.errors import (
    INTERNAL_ANSWER,
    InvalidInputError,
    NotFoundError,
    PatentClipError,
    answer_for,
)
from patentclip.grants.model import SHEET_VIEWS, normalize_patent_number
from patentclip.search.query import DRAWING_MODES, MAX_DRAWINGS, check_image
from services.common.auth import TokenAuthenticator
from services.query.http import api, openapi
from services.query.http.edge import Edge
from services.query.http.provider import EmbeddingProvider, Reply
from services.query.metrics import QueryMetrics
from services.query.plane.drawings import StoredDrawings
from services.query.plane.live import LiveSearch, Snapshot

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
@dataclass(frozen=True)
class WebBackend:
    """What the HTTP app serves from: the query service's live search, tokens, image store
    and drawing renderer, and the limits of its gRPC side."""

    live: LiveSearch
    authenticator: TokenAuthenticator | None
    stored: StoredDrawings
    max_image_bytes: int
    timeout_s: float
    allowed_hosts: tuple[str, ...] = ()

    def snapshot(self) -> Snapshot:
        return self.live.current()


def create_app(backend: WebBackend, metrics: QueryMetrics) -> FastAPI:
    app = FastAPI(title="PatentCLIP Search", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.add_middleware(Edge, metrics=metrics, authenticator=backend.authenticator,
                       max_image_bytes=backend.max_image_bytes,
                       allowed_hosts=backend.allowed_hosts)
    _add_error_handlers(app)
    _add_api(app, backend)
    _add_provider(app, backend)
    _add_page(app)
    openapi.install(app, backend.max_image_bytes)
    return app


def _add_page(app: FastAPI) -> None:
    """The page's own files, one route each (GET, HEAD): any other path is a plain 404 and
    a wrong method a 405 that lists the allowed ones, as the API document says."""
    for file in sorted(p for p in STATIC.iterdir() if p.is_file()):
        path = "/" if file.name == "index.html" else f"/{file.name}"

        def serve(file=file) -> FileResponse:
            return FileResponse(file)
        app.add_api_route(path, serve, methods=["GET", "HEAD"], include_in_schema=False,
                          name="static")


def _add_api(app: FastAPI, backend: WebBackend) -> None:
    """The web app's routes. Tokens, body limits and headers are the edge's (edge.py)."""

    @app.get("/api/info")
    def info() -> dict:
        snap = backend.snapshot()
        return {"model_version": snap.model_version, "collection": snap.collection,
                "alias": backend.live.alias, "corpus_sheets": snap.sheets,
                "dim": snap.encoder.dim, "max_image_bytes": backend.max_image_bytes,
                "auth": backend.authenticator is not None,
                "drawings": backend.stored.renderer is not None, "views": list(SHEET_VIEWS),
                "lexical": not snap.engine.lexical_off, "lexical_note": snap.engine.lexical_off,
                "max_drawings": MAX_DRAWINGS, "modes": list(DRAWING_MODES)}

    @app.post("/api/search")
    def search(body: api.SearchIn) -> dict:
        snap = backend.snapshot()
        query = api.WebSearch(body, backend.max_image_bytes, backend.timeout_s,
                              snap.model_version)
        return api.search_response(query, query.run(snap.engine))

    @app.post("/api/preview")
    async def preview(request: Request, mode: Literal["line", "photo", "sketch"] = "line"
                      ) -> Response:
        data = check_image(await request.body(), "image", backend.max_image_bytes)
        name = (request.headers.get("x-file-name") or "the drawing")[:200]

        def render():
            with backend.live.admission.slot("decoding a drawing preview"):
                return render_png(data, 1024, name, photo=mode == "photo")
        rendered = await run_in_threadpool(render)  # decoding never blocks the event loop
        return Response(rendered.png, media_type="image/png")

    @app.get("/api/drawing/{patent}/{sheet}")
    def drawing(patent: str, sheet: int,
                size: Literal["thumbnail", "medium", "full"] = "thumbnail") -> Response:
        snap = backend.snapshot()
        stored = snap.engine.drawing_sheet(_patent_in_path(patent), sheet, backend.timeout_s)
        rendered = backend.stored.render(stored.image_uri, size)
        return Response(rendered.png, media_type="image/png")

    @app.get("/api/patent/{number}")
    def patent(number: str) -> dict:
        snap = backend.snapshot()
        patent_number = _patent_in_path(number)
        record = snap.engine.get_patent(patent_number, backend.timeout_s)
        grant = backend.stored.grant(patent_number)
        return api.patent_view(record, grant, snap.model_version,
                               backend.stored.citation_links(patent_number, grant))

    @app.post("/api/export")
    def export(record: api.RecordIn,
               format: Literal["csv", "json"] = "json") -> Response:  # noqa: A002
        text, name = api.export_record(record.model_dump(mode="json"), format)
        media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
        return Response(text, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{name}.{format}"'})


def _patent_in_path(text: str) -> str:
    """A patent number in a URL path: one that cannot exist is simply not found there (a
    resource path, not a query field)."""
    try:
        return normalize_patent_number(text, "patent")
    except InvalidInputError as exc:
        raise NotFoundError(str(exc)) from None


def _add_provider(app: FastAPI, backend: WebBackend) -> None:
    """The embedding provider's routes: its own bodies and errors (OpenAI's and TEI's).
    The edge has checked the token; parsing and encoding run off the event loop."""
    provider = EmbeddingProvider(backend.snapshot, None, backend.timeout_s)

    def reply(result: Reply) -> JSONResponse:
        return JSONResponse(result.body, result.status, headers=result.headers)

    def route(protocol, kind: str):
        def not_json(exc: InvalidInputError) -> JSONResponse:
            if kind == "tei":
                return JSONResponse({"error": str(exc), "error_type": "Validation"}, 422)
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                           "param": None, "code": None}}, 400)

        async def embed(request: Request) -> JSONResponse:
            body = await request.body()

            def answer() -> JSONResponse:
                try:
                    parsed = api.parse_json(body or b"null", "the body")
                except InvalidInputError as exc:
                    return not_json(exc)
                return reply(protocol(parsed, request.headers.get("authorization")))
            return await run_in_threadpool(answer)
        return embed

    app.add_api_route("/v1/embeddings", route(provider.openai, "openai"),
                      methods=["POST"])  # OpenAI
    app.add_api_route("/embed", route(provider.tei, "tei"), methods=["POST"])  # TEI

    @app.get("/v1/models")
    def models(request: Request) -> JSONResponse:
        return reply(provider.models(request.headers.get("authorization")))

    @app.get("/health")
    def health() -> JSONResponse:
        """Open to anyone (load balancers): says whether it serves, never why (the reason
        names internals such as the Milvus address; /readyz on the metrics port has it)."""
        if not backend.live.serving:
            return JSONResponse({"error": "not serving", "error_type": "Unhealthy"}, 503)
        return JSONResponse({})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PatentClipError)
    async def domain(request: Request, exc: PatentClipError) -> JSONResponse:
        answer = answer_for(exc)  # its HTTP column of ERROR_ANSWERS
        if answer is None:
            return _internal(request, exc)
        retry = getattr(exc, "retry_after_s", None)
        return _error(answer.http, answer.kind, str(exc),
                      {"Retry-After": str(int(retry))} if retry else None)

    @app.exception_handler(StarletteHTTPException)
    async def framework(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own refusals (no route, wrong method, an unparsable body) in the
        API's error shape; a 405 keeps its Allow header."""
        kind = {404: "not_found", 413: "too_large"}.get(
            exc.status_code, "invalid" if exc.status_code < 500 else "internal")
        return _error(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))

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
    return _error(INTERNAL_ANSWER.http, INTERNAL_ANSWER.kind,
                  f"internal error (id {error_id}); the server log has the details")


def _error(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "kind": kind}, status, headers=headers)
