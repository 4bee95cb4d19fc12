"""The HTTP API's OpenAPI document, made to describe what the API does (Schemathesis checks
it in ``make test``): every status a route answers with its error body, the bearer scheme
on the routes that need a token, the bodies the provider and the raw-bytes routes read, and
no FastAPI 422 (validation errors are 400 here, with ``kind: invalid``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from patentclip.search.query import MAX_TEXT_CHARS
from services.query.http.edge import policy_for
from services.query.http.provider import MAX_INPUTS

ERROR = {"type": "object", "required": ["error", "kind"],
         "properties": {"error": {"type": "string"}, "kind": {"type": "string"}}}
OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]},
                   "code": {"type": ["string", "null"]}}}}}
TEI_ERROR = {"type": "object", "required": ["error", "error_type"],
             "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}}
# A text the provider embeds: something besides spaces, at most MAX_TEXT_CHARS.
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS, "pattern": "\\S"}
TEXTS = {"oneOf": [TEXT, {"type": "array", "items": TEXT, "minItems": 1,
                           "maxItems": MAX_INPUTS}]}
BODIES = {
    "/v1/embeddings": {"type": "object", "required": ["model", "input"],
                       "additionalProperties": False,
                       "properties": {"model": {"type": "string", "enum": ["patentclip"]},
                                      "input": TEXTS, "user": {"type": "string"},
                                      "encoding_format": {"type": "string",
                                                          "enum": ["float", "base64"]}}},
    "/embed": {"type": "object", "required": ["inputs"], "additionalProperties": False,
               "properties": {"inputs": TEXTS, "truncate": {"type": "boolean"}}},
}
PNG = {"type": "string", "format": "binary",
       "description": "the drawing's bytes: TIFF (CCITT G4 included), PNG or JPEG"}
DESCRIPTIONS = {400: "invalid request (the field is named)", 401: "no token or an unknown one",
                403: "the token's role may not", 404: "no such patent, sheet or route",
                413: "body or field over its limit", 500: "internal error (an error id)",
                503: "not serving yet, or busy (Retry-After)", 504: "the time budget ran out"}


def install(app: FastAPI, max_image_bytes: int) -> None:
    """Replace ``app.openapi`` with the describing document (built once, then cached)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = describe(get_openapi(
                title=app.title, version=app.version, routes=app.routes), max_image_bytes)
        return app.openapi_schema
    app.openapi = openapi


def describe(document: dict, max_image_bytes: int) -> dict:
    document.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "a search token (patentclip token new --role search)"}
    for schema in ("HTTPValidationError", "ValidationError"):
        document["components"].get("schemas", {}).pop(schema, None)
    for path, operations in document["paths"].items():
        policy = policy_for(path, max_image_bytes)
        for method, operation in operations.items():
            _describe(path, method, operation, policy)
    return document


def _describe(path: str, method: str, operation: dict, policy) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    error = {"openai": OPENAI_ERROR, "tei": TEI_ERROR}.get(policy.protocol, ERROR)
    statuses = [400, 500] if path != "/health" else [503]
    if policy.auth:
        operation["security"] = [{"bearer": []}]
        statuses += [401, 403, 503]
    if method in ("post", "put") or policy.max_body == 0:
        statuses.append(413)  # over the body limit (nothing, on a GET)
    if path.startswith(("/api/drawing", "/api/patent", "/v1/embeddings")):
        statuses.append(404)
    if path in ("/api/search", "/v1/embeddings", "/embed", "/api/preview"):
        statuses += [503, 504]
    if policy.protocol == "tei":
        statuses.append(422)  # TEI's own validation status
    for status in sorted(set(statuses)):
        responses.setdefault(str(status), {
            "description": DESCRIPTIONS.get(status, "TEI validation error"),
            "content": {"application/json": {"schema": error}}})
    if path in BODIES:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": BODIES[path]}}}
    if path == "/api/preview":
        operation["requestBody"] = {"required": True, "content": {
            "application/octet-stream": {"schema": PNG}}}
        responses["200"] = {"description": "the drawing as PNG, long edge 1024",
                            "content": {"image/png": {"schema": PNG}}}
    if path == "/api/export":
        record = responses["200"]["content"]["application/json"]
        responses["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
        record["schema"] = {"type": "object"}
    if path.startswith("/api/drawing"):
        responses["200"] = {"description": "the sheet as PNG",
                            "content": {"image/png": {"schema": PNG}}}
