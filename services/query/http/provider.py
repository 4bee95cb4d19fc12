"""PatentCLIP's text tower behind the embedding-provider protocols Milvus speaks.

Milvus's TEXTEMBEDDING functions call an external HTTP provider to embed a text field at
insert time and a raw-text query at search time. Two protocols are served, both from the
live model version, through the same dynamic batcher as the gRPC path:

* OpenAI-compatible ``POST /v1/embeddings`` (``provider: "openai"`` with a custom
  ``base_url``): ``{"model", "input": str | [str], "dimensions"?, "encoding_format"?}`` ->
  ``{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model",
  "usage"}``; errors as ``{"error": {"message", "type", "param", "code"}}``.
* Hugging Face TEI-compatible ``POST /embed`` (``provider: "TEI"``): ``{"inputs": str |
  [str], "truncate"?, "dimensions"?}`` -> ``[[float]]``; errors as ``{"error",
  "error_type"}``.

This module turns request bodies into response bodies and knows no HTTP server
(``http.py`` is the adapter). Every response carries the model version in
``X-PatentCLIP-Model-Version``; the bearer token (OpenAI's ``api_key``) is checked like the
gRPC service's, role search.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from patentclip.errors import (
    AuthError,
    InvalidQueryError,
    PatentClipError,
    UnavailableError,
    answer_for,
)
from patentclip.search.query import MAX_TEXT_CHARS, check_text
from services.common.auth import Role, TokenAuthenticator, bearer_token

logger = logging.getLogger(__name__)

MODEL_HEADER = "X-PatentCLIP-Model-Version"
GENERIC_MODEL = "patentclip"  # "whatever is live"; the exact live version is accepted too
MAX_INPUTS = 2048  # OpenAI's own limit per request
OPENAI_KEYS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
TEI_KEYS = frozenset({"inputs", "truncate", "dimensions"})


@dataclass
class Reply:
    """What the HTTP adapter sends: a status, a JSON body and headers."""

    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)


class ProviderError(Exception):
    """A request the provider refuses; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (status, message, param,
                                                                        code, kind)


class EmbeddingProvider:
    """Validates provider requests and embeds their texts with the live snapshot's encoder.

    ``current()`` returns the serving snapshot (``encoder`` with ``encode_texts`` and
    ``dim``, and ``model_version``); it raises UnavailableError while nothing is served.
    """

    def __init__(self, current: Callable[[], object], authenticator: TokenAuthenticator | None,
                 timeout_s: float) -> None:
        self.current, self.authenticator, self.timeout_s = current, authenticator, timeout_s

    # -- protocols

    def openai(self, body: object, authorization: str | None) -> Reply:
        try:
            snap = self._authorized_snapshot(authorization)
            request = _expect_object(body, OPENAI_KEYS)
            if not isinstance(request.get("user", ""), str):
                raise ProviderError(400, "user must be a string", "user")
            model = request.get("model")
            if model not in (GENERIC_MODEL, snap.model_version):
                raise ProviderError(404, f"The model {model!r} does not exist; this server "
                                    f"serves {snap.model_version!r} (or use "
                                    f"{GENERIC_MODEL!r} for the live version)", "model",
                                    "model_not_found")
            texts = _texts(request.get("input"), "input")
            _check_dimensions(request.get("dimensions"), snap.encoder.dim)
            encoding = request.get("encoding_format", "float")
            if encoding not in ("float", "base64"):
                raise ProviderError(400, f"encoding_format {encoding!r}: use 'float' or "
                                    "'base64'", "encoding_format")
            vectors = self._embed(snap, texts)
        except ProviderError as exc:
            return openai_error(exc)
        tokens = _token_count(snap, texts)
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
                for i, v in enumerate(vectors)]
        return Reply(200, {"object": "list", "data": data, "model": snap.model_version,
                           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                     {MODEL_HEADER: snap.model_version})

    def tei(self, body: object, authorization: str | None) -> Reply:
        try:
            snap = self._authorized_snapshot(authorization)
            request = _expect_object(body, TEI_KEYS)
            if not isinstance(request.get("truncate", False), bool):
                raise ProviderError(400, "truncate must be true or false", "truncate")
            inputs = request.get("inputs")
            if request.get("truncate") and isinstance(inputs, list | str):
                inputs = ([t[:MAX_TEXT_CHARS] for t in inputs] if isinstance(inputs, list)
                          else inputs[:MAX_TEXT_CHARS])
            texts = _texts(inputs, "inputs")
            _check_dimensions(request.get("dimensions"), snap.encoder.dim)
            vectors = self._embed(snap, texts)
        except ProviderError as exc:
            return tei_error(exc)
        return Reply(200, [v.tolist() for v in vectors], {MODEL_HEADER: snap.model_version})

    def models(self, authorization: str | None) -> Reply:
        """OpenAI's ``GET /v1/models``: the live version (and the generic name)."""
        try:
            snap = self._authorized_snapshot(authorization)
        except ProviderError as exc:
            return openai_error(exc)
        data = [{"id": name, "object": "model", "owned_by": "patentclip"}
                for name in (snap.model_version, GENERIC_MODEL)]
        return Reply(200, {"object": "list", "data": data}, {MODEL_HEADER: snap.model_version})

    # -- steps

    def _authorized_snapshot(self, authorization: str | None):
        try:
            if self.authenticator is not None:
                self.authenticator.authorize(bearer_token(authorization), Role.SEARCH)
            return self.current()
        except (AuthError, UnavailableError) as exc:
            raise provider_error(exc) from None

    def _embed(self, snap, texts: list[str]) -> np.ndarray:
        try:
            return snap.encoder.encode_texts(texts, timeout=self.timeout_s)
        except PatentClipError as exc:
            if answer_for(exc) is None:
                logger.exception("embedding %d texts failed", len(texts))
            raise provider_error(exc) from None


def _expect_object(body: object, known: frozenset[str]) -> dict:
    """The body as a dict; unknown parameters are refused by name, as OpenAI does
    ("Unrecognized request argument"), so a typo never passes silently."""
    if not isinstance(body, dict):
        raise ProviderError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise ProviderError(400, f"unrecognized request argument {unknown[0][:40]!r}; "
                            f"known: {', '.join(sorted(known))}", unknown[0][:40])
    return body


def _texts(value: object, param: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ProviderError(400, f"{param} must be a string or a list of strings "
                            "(token arrays are not accepted)", param)
    if not texts:
        raise ProviderError(400, f"{param} is empty: give at least one text", param)
    if len(texts) > MAX_INPUTS:
        raise ProviderError(400, f"{param} has {len(texts)} texts, limit {MAX_INPUTS}", param)
    for i, text in enumerate(texts):
        try:
            check_text(text, f"{param}[{i}]")
        except InvalidQueryError as exc:  # too long: 413 context_length_exceeded
            raise provider_error(exc, param) from None
    return texts


def _check_dimensions(value: object, dim: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value != dim:
        raise ProviderError(400, f"dimensions={value!r}: this model's embeddings have exactly "
                            f"{dim} dimensions (they cannot be shortened)", "dimensions",
                            "invalid_dimensions")


def _encoded(vector: np.ndarray, encoding: str):
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


def _token_count(snap, texts: list[str]) -> int:
    """Tokens the text tower read (CLIP's context: at most 77 a text), for ``usage``."""
    tokenizer = getattr(getattr(snap.encoder, "encoder", None), "tokenizer", None)
    if tokenizer is None:
        return sum(len(t.split()) for t in texts)
    return int((tokenizer(texts) != 0).sum())


def provider_error(exc: PatentClipError, param: str | None = None) -> ProviderError:
    """A domain error as the provider answers it: its row of ERROR_ANSWERS (HTTP status,
    OpenAI type and code); anything unexpected is a 500 that names only the error's type."""
    answer = answer_for(exc)
    if answer is None:
        return ProviderError(500, f"embedding failed: {type(exc).__name__}", None,
                             "internal", "server_error")
    return ProviderError(answer.http, str(exc), param, answer.openai_code, answer.openai_type)


def openai_error(exc: ProviderError) -> Reply:
    """OpenAI's error reply (also the HTTP edge's refusals on its routes)."""
    return Reply(exc.status, {"error": {"message": exc.message, "type": exc.kind,
                                        "param": exc.param, "code": exc.code}})


_TEI_TYPES = {401: "Unauthorized", 403: "Unauthorized", 413: "Validation", 400: "Validation",
              503: "Unhealthy", 504: "Overloaded"}


def tei_error(exc: ProviderError) -> Reply:
    """TEI's error reply: validation is 422 (the HTTP edge takes the body only)."""
    status = 422 if exc.status in (400, 404) else exc.status  # TEI: validation is 422
    return Reply(status, {"error": exc.message,
                          "error_type": _TEI_TYPES.get(exc.status, "Backend")})
