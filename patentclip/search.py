"""Cross-modal search: text or drawing in, patents out, best matching sheet first.

``SearchEngine`` joins an encoder and one collection (or the live alias) and refuses a
collection built by another model version. Text queries can match drawings (cross-modal,
the point of PatentCLIP), the captions the patents give their sheets, or both. Cosine
scores of the two are not comparable (CLIP's modality gap), so "both" fuses the two
rankings with reciprocal-rank fusion instead of mixing raw scores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from patentclip.errors import (
    DeadlineExceededError,
    InvalidQueryError,
    ModelVersionMismatchError,
    NotFoundError,
    TextTooLongError,
)
from patentclip.ranking import best_score_fusion, fusion_depth, reciprocal_rank_fusion
from patentclip.store import MAX_SEARCH_LIMIT, CollectionInfo, Hit, SearchFilters

logger = logging.getLogger(__name__)

MAX_TOP_K = 200
MAX_RESULT_WINDOW = 1000  # offset + top_k: deeper pages are not served
MAX_TEXT_CHARS = 2000
AGAINST = ("drawing", "caption", "both")


def check_text(text: str, what: str) -> str:
    """The stripped text; InvalidQueryError when empty, TextTooLongError when over
    MAX_TEXT_CHARS, each naming ``what``. The one rule for search, EncodeText and the HTTP
    embedding provider."""
    stripped = (text or "").strip()
    if not stripped:
        raise InvalidQueryError(f"{what} is empty")
    if len(stripped) > MAX_TEXT_CHARS:
        raise TextTooLongError(f"{what} has {len(stripped)} characters, limit {MAX_TEXT_CHARS}")
    return stripped


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model_version: str
    collection: str


class Deadline:
    """Seconds left of a caller's time budget (None = no deadline)."""

    def __init__(self, timeout: float | None) -> None:
        self._until = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        if self._until is None:
            return None
        left = self._until - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("deadline passed before the search finished")
        return left


@dataclass(frozen=True)
class PatentRecord:
    """What the collection holds about one patent: its metadata and sheets."""

    patent: str
    title: str
    grant_date: int
    locarno: str
    sheets: list[dict]  # sheet, view, figures, caption, image_uri (drawing rows, in order)


class QueryEncoder(Protocol):
    """What search needs of an encoder: :class:`~patentclip.encoder.Encoder`, or the query
    service's :class:`~patentclip.batching.BatchedEncoder`. ``timeout`` (seconds) bounds
    the wait for a shared batch; a direct Encoder encodes at once and does not use it."""

    @property
    def model_version(self) -> str: ...

    def encode_texts(self, texts: Sequence[str], timeout: float | None = None
                     ) -> np.ndarray: ...

    def drawing_pixels(self, data: bytes, name: str = "image"): ...

    def encode_pixels(self, pixels: Sequence, timeout: float | None = None) -> np.ndarray: ...


class VectorSearch(Protocol):
    """What search needs of the store: :class:`~patentclip.store.PatentStore`, or the query
    service's :class:`~patentclip.batching.BatchedSearch`. ``timeout`` caps the Milvus
    calls of a search (both honour it)."""

    def describe(self, name_or_alias: str) -> CollectionInfo: ...

    def search(self, collection: str, vectors: np.ndarray, k: int,
               filters: SearchFilters | None = None, modality: str | None = None,
               group: bool = True, timeout: float | None = None,
               on_stage: Callable[[str, float], None] | None = None) -> list[list[Hit]]: ...

    def patent_rows(self, collection: str, patent: str, with_vectors: bool = False,
                    strong: bool = True) -> list[dict]: ...


@dataclass(frozen=True)
class SearchRequest:
    """How to search, whatever the query: a page of results, filters, what to match, and a
    time budget. Validated when built, so the engine and its callers can trust it.

    ``against`` "" means the query's own default: both for text, drawing for drawings and
    for "more like this".
    """

    top_k: int = 10
    offset: int = 0
    filters: SearchFilters = field(default_factory=SearchFilters)
    against: str = ""
    group: bool = True  # one hit per patent (its best sheet); False: sheets
    timeout: float | None = None  # seconds; None: no deadline

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InvalidQueryError(f"top_k={self.top_k}: must be between 1 and {MAX_TOP_K}")
        if self.offset < 0 or self.top_k + self.offset > MAX_RESULT_WINDOW:
            raise InvalidQueryError(f"offset={self.offset}: offset + top_k must be between 0 "
                                    f"and {MAX_RESULT_WINDOW}")
        if self.against and self.against not in AGAINST:
            raise InvalidQueryError(f"against={self.against!r}: expected one of {AGAINST}")

    def matching(self, default: str) -> tuple[str, ...]:
        """The modalities to search: ``against``, or ``default`` when it is unset."""
        against = self.against or default
        return ("drawing", "caption") if against == "both" else (against,)


class SearchEngine:
    """Search one collection (or alias) with the encoder that built it."""

    def __init__(self, encoder: QueryEncoder, store: VectorSearch, collection: str,
                 on_stage: Callable[[str, float], None] | None = None) -> None:
        self.on_stage = on_stage or (lambda stage, seconds: None)
        info = store.describe(collection)
        if info.model_version != encoder.model_version:
            raise ModelVersionMismatchError(
                f"collection {info.name} was built by model {info.model_version}, but the "
                f"loaded model is {encoder.model_version}; load the matching model")
        self.encoder, self.store, self.collection = encoder, store, info.name

    @property
    def model_version(self) -> str:
        return self.encoder.model_version

    def search_text(self, text: str, request: SearchRequest) -> SearchResult:
        text = check_text(text, "text query")
        deadline = Deadline(request.timeout)
        with self.stage("encode"):
            vector = self.encoder.encode_texts([text], timeout=deadline.remaining())[0]
        return self._search(vector[None, :], request, request.matching("both"), deadline)

    def search_image(self, data: bytes, request: SearchRequest, name: str = "query image"
                     ) -> SearchResult:
        if not data:
            raise InvalidQueryError("image query is empty")
        deadline = Deadline(request.timeout)
        with self.stage("decode"):
            pixels = self.encoder.drawing_pixels(data, name)
        with self.stage("encode"):
            vector = self.encoder.encode_pixels([pixels], timeout=deadline.remaining())[0]
        return self._search(vector[None, :], request, request.matching("drawing"), deadline)

    def search_similar(self, patent: str, request: SearchRequest) -> SearchResult:
        """Designs like ``patent``'s drawings, excluding the patent itself.

        Every drawing sheet of the patent is a query; a candidate's score is its best
        cosine similarity to any of them.
        """
        deadline = Deadline(request.timeout)
        with self.stage("lookup"):
            vectors = self.patent_vectors(patent)
        request = replace(request, filters=request.filters.excluding(patent))
        return self._search(vectors, request, request.matching("drawing"), deadline)

    def patent_vectors(self, patent: str) -> np.ndarray:
        rows = self.store.patent_rows(self.collection, patent, with_vectors=True, strong=False)
        rows = [r for r in rows if r["modality"] == "drawing"]
        if not rows:
            raise NotFoundError(f"patent {patent} is not in collection {self.collection}")
        return np.asarray([r["vector"] for r in rows], dtype=np.float32)

    def get_patent(self, patent: str) -> PatentRecord:
        """The patent's metadata and drawing sheets as stored; NotFoundError if absent."""
        rows = [r for r in self.store.patent_rows(self.collection, patent, strong=False)
                if r["modality"] == "drawing"]
        if not rows:
            raise NotFoundError(f"patent {patent} is not in collection {self.collection}")
        first = rows[0]
        return PatentRecord(
            patent=patent, title=first["title"], grant_date=first["grant_date"],
            locarno=first["locarno"],
            sheets=[{k: r[k] for k in ("sheet", "view", "figures", "caption", "image_uri")}
                    for r in rows])

    def _search(self, vectors: np.ndarray, request: SearchRequest,
                modalities: tuple[str, ...], deadline: Deadline) -> SearchResult:
        depth, group = request.top_k + request.offset, request.group
        fetch = depth if len(modalities) == 1 else fusion_depth(depth, MAX_SEARCH_LIMIT)
        rankings = []
        for modality in modalities:
            per_query = self.store.search(self.collection, vectors, fetch, request.filters,
                                          modality=modality, group=group,
                                          timeout=deadline.remaining(),
                                          on_stage=self.on_stage)
            with self.stage("group"):
                rankings.append(per_query[0] if len(per_query) == 1
                                else best_score_fusion(per_query, fetch, group))
        with self.stage("group"):
            hits = rankings[0][:depth] if len(rankings) == 1 else reciprocal_rank_fusion(
                rankings, depth, group=group)
        return SearchResult(hits=hits[request.offset:depth],
                            model_version=self.encoder.model_version,
                            collection=self.collection)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Report the time of a request stage (decode, encode, lookup, search, group,
        serialize) to ``on_stage``: the query service's latency breakdown."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.on_stage(name, time.perf_counter() - started)
