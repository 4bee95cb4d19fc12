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
from dataclasses import dataclass, replace

import numpy as np

from patentclip.encoder import Encoder
from patentclip.errors import (
    DeadlineExceededError,
    InvalidQueryError,
    ModelVersionMismatchError,
    NotFoundError,
    TextTooLongError,
)
from patentclip.store import MAX_SEARCH_LIMIT, Hit, PatentStore, SearchFilters

logger = logging.getLogger(__name__)

MAX_TOP_K = 200
MAX_RESULT_WINDOW = 1000  # offset + top_k: deeper pages are not served
MAX_TEXT_CHARS = 2000
AGAINST = ("drawing", "caption", "both")
RRF_K = 60


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


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], k: int, rrf_k: int = RRF_K,
                           group: bool = True) -> list[Hit]:
    """Fuse ranked lists: score(d) = sum 1/(rrf_k + rank). Keeps each item's best-ranked hit,
    with the fused score as its ``score`` (cosine scores of two modalities do not compare).

    Items are patents when ``group`` (one hit per patent), else sheets.
    """
    fused: dict[tuple, float] = {}
    representative: dict[tuple, tuple[int, Hit]] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            key = (hit.patent,) if group else (hit.patent, hit.sheet)
            fused[key] = fused.get(key, 0.0) + 1.0 / (rrf_k + rank)
            if key not in representative or rank < representative[key][0]:
                representative[key] = (rank, hit)
    order = sorted(fused, key=lambda key: (-fused[key], representative[key][0]))
    # The fused score replaces the cosine: scores of one list stay in rank order.
    return [replace(representative[key][1], score=fused[key]) for key in order[:k]]


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


class SearchEngine:
    """Search one collection (or alias) with the encoder that built it.

    ``encoder`` is an :class:`~patentclip.encoder.Encoder` or anything with its query
    interface (a :class:`~patentclip.batching.BatchedEncoder` in the query service).
    """

    def __init__(self, encoder: Encoder, store: PatentStore, collection: str,
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

    def search_text(self, text: str, k: int = 10, filters: SearchFilters | None = None,
                    against: str = "both", group: bool = True, offset: int = 0,
                    timeout: float | None = None) -> SearchResult:
        text = check_text(text, "text query")
        _check_window(k, offset, against)
        _validate(filters)
        deadline = Deadline(timeout)
        with self.stage("encode"):
            vector = self.encoder.encode_texts([text], timeout=deadline.remaining())[0]
        return self._search(vector[None, :], k, filters, against, group, offset, deadline)

    def search_image(self, data: bytes, k: int = 10, filters: SearchFilters | None = None,
                     against: str = "drawing", group: bool = True,
                     name: str = "query image", offset: int = 0,
                     timeout: float | None = None) -> SearchResult:
        if not data:
            raise InvalidQueryError("image query is empty")
        _check_window(k, offset, against)
        _validate(filters)
        deadline = Deadline(timeout)
        with self.stage("decode"):
            pixels = self.encoder.drawing_pixels(data, name)
        with self.stage("encode"):
            vector = self.encoder.encode_pixels([pixels], timeout=deadline.remaining())[0]
        return self._search(vector[None, :], k, filters, against, group, offset, deadline)

    def search_vector(self, vector: np.ndarray, k: int = 10,
                      filters: SearchFilters | None = None, against: str = "both",
                      group: bool = True, offset: int = 0,
                      timeout: float | None = None) -> SearchResult:
        _check_window(k, offset, against)
        _validate(filters)
        return self._search(np.atleast_2d(vector), k, filters, against, group, offset,
                            Deadline(timeout))

    def search_similar(self, patent: str, k: int = 10, filters: SearchFilters | None = None,
                       against: str = "drawing", group: bool = True, offset: int = 0,
                       timeout: float | None = None) -> SearchResult:
        """Designs like ``patent``'s drawings, excluding the patent itself.

        Every drawing sheet of the patent is a query; a candidate's score is its best
        cosine similarity to any of them.
        """
        _check_window(k, offset, against)
        _validate(filters)
        deadline = Deadline(timeout)
        with self.stage("lookup"):
            vectors = self.patent_vectors(patent)
        base = filters or SearchFilters()
        exclude = SearchFilters(base.locarno, base.date_from, base.date_to, base.views,
                                tuple(base.exclude_patents) + (patent,))
        return self._search(vectors, k, exclude, against, group, offset, deadline)

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

    def _search(self, vectors: np.ndarray, k: int, filters: SearchFilters | None,
                against: str, group: bool, offset: int, deadline: Deadline) -> SearchResult:
        depth = k + offset
        modalities = ("drawing", "caption") if against == "both" else (against,)
        fetch = depth if len(modalities) == 1 else fusion_depth(depth)
        rankings = []
        for modality in modalities:
            per_query = self.store.search(self.collection, vectors, fetch, filters,
                                          modality=modality, group=group,
                                          timeout=deadline.remaining(),
                                          on_stage=self.on_stage)
            with self.stage("group"):
                rankings.append(per_query[0] if len(per_query) == 1
                                else best_score_fusion(per_query, fetch, group))
        with self.stage("group"):
            hits = rankings[0][:depth] if len(rankings) == 1 else reciprocal_rank_fusion(
                rankings, depth, group=group)
        return SearchResult(hits=hits[offset:offset + k],
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


def fusion_depth(depth: int) -> int:
    """How many candidates per modality feed rank fusion for results down to ``depth``.

    Fusion over a different candidate depth can order items differently, so the depth comes
    from a fixed ladder (100, 200, 400, ...): pages that fall in one rung (the first 50
    results by default) are slices of one and the same fused ranking.
    """
    rung = 100
    while rung < 2 * depth:
        rung *= 2
    return min(rung, MAX_SEARCH_LIMIT)


def best_score_fusion(rankings: Sequence[Sequence[Hit]], k: int, group: bool = True
                      ) -> list[Hit]:
    """Merge rankings of several query vectors: each item keeps its best-scoring hit."""
    best: dict[tuple, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            key = (hit.patent,) if group else (hit.patent, hit.sheet, hit.modality)
            if key not in best or hit.score > best[key].score:
                best[key] = hit
    return sorted(best.values(), key=lambda h: -h.score)[:k]


def _check_window(k: int, offset: int, against: str) -> None:
    if not 1 <= k <= MAX_TOP_K:
        raise InvalidQueryError(f"top_k={k}: must be between 1 and {MAX_TOP_K}")
    if offset < 0 or k + offset > MAX_RESULT_WINDOW:
        raise InvalidQueryError(f"offset={offset}: offset + top_k must be between 0 and "
                                f"{MAX_RESULT_WINDOW}")
    if against not in AGAINST:
        raise InvalidQueryError(f"against={against!r}: expected one of {AGAINST}")


def _validate(filters: SearchFilters | None) -> None:
    if filters is not None:
        filters.validate()
