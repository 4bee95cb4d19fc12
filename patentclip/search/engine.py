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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from patentclip.drawings.preprocess import CropBox
from patentclip.errors import (
    DeadlineExceededError,
    InvalidQueryError,
    ModelVersionMismatchError,
    NotFoundError,
)
from patentclip.model.classes import MAX_SUGGESTIONS
from patentclip.search.query import Query
from patentclip.search.ranking import best_score_fusion, fusion_depth, reciprocal_rank_fusion
from patentclip.store import MAX_SEARCH_LIMIT, CollectionInfo, Hit, SearchFilters
from patentclip.store.schema import StoredSheet, stored_sheet

logger = logging.getLogger(__name__)

MAX_TOP_K = 200
MAX_RESULT_WINDOW = 1000  # offset + top_k: deeper pages are not served
AGAINST = ("drawing", "caption", "both")
@dataclass(frozen=True)
class SearchResult:
    """A page of hits; with ``SearchRequest.count_depth``, the Locarno classes of the first
    ``count_depth`` results (``counted`` of them matched), most frequent first."""

    hits: list[Hit]
    model_version: str
    collection: str
    locarno_counts: tuple[tuple[str, int], ...] = ()
    counted: int = 0
    # With SearchRequest.suggest: the query's most probable Locarno classes by the model's
    # classification head, (class, probability); or why there are none.
    suggested: tuple[tuple[str, float], ...] = ()
    suggest_note: str = ""


def locarno_counts(hits: Sequence[Hit]) -> tuple[tuple[str, int], ...]:
    """Results per Locarno class ("09"; subclasses count under their class), most first,
    then by class. Hits with no Locarno class are counted under ""."""
    counts = Counter(h.locarno[:2] for h in hits)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class Deadline:
    """A caller's time budget as one absolute instant (``time.monotonic``; None: no
    deadline). Made once at the edge (from gRPC's time remaining, or the HTTP budget) and
    carried by the SearchRequest to every stage: each encoder wait and Milvus call asks
    for what is left of it, so time spent queueing is time spent."""

    until: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (None: none)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        """Seconds left; DeadlineExceededError once it has passed."""
        if self.until is None:
            return None
        left = self.until - time.monotonic()
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
    sheets: tuple[StoredSheet, ...]  # its drawing sheets, in order


class QueryEncoder(Protocol):
    """What search needs of an encoder: :class:`~patentclip.model.encoder.Encoder`, or the query
    service's :class:`~patentclip.search.batching.BatchedEncoder`. ``timeout`` (seconds) bounds
    the wait for a shared batch; a direct Encoder encodes at once and does not use it."""

    @property
    def model_version(self) -> str: ...

    def encode_texts(self, texts: Sequence[str], timeout: float | None = None
                     ) -> np.ndarray: ...

    def drawing_pixels(self, data: bytes, name: str = "image", crop: CropBox | None = None
                       ): ...

    def encode_pixels(self, pixels: Sequence, timeout: float | None = None) -> np.ndarray: ...


class VectorSearch(Protocol):
    """What search needs of the store: :class:`~patentclip.store.PatentStore`, or the query
    service's :class:`~patentclip.search.batching.BatchedSearch`. ``timeout`` caps the Milvus
    calls of a search (both honour it)."""

    def describe(self, name_or_alias: str) -> CollectionInfo: ...

    def search(self, collection: str, vectors: np.ndarray, k: int,
               filters: SearchFilters | None = None, modality: str | None = None,
               group: bool = True, timeout: float | None = None,
               on_stage: Callable[[str, float], None] | None = None) -> list[list[Hit]]: ...

    def patent_rows(self, collection: str, patent: str, with_vectors: bool = False,
                    strong: bool = True, timeout: float | None = None) -> list[dict]: ...


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
    deadline: Deadline = Deadline()  # made at the edge; Deadline(): none
    count_depth: int = 0  # > 0: count Locarno classes among the first count_depth results
    suggest: int = 0  # > 0: suggest this many Locarno classes (the model's head), at most 10

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InvalidQueryError(f"top_k={self.top_k}: must be between 1 and {MAX_TOP_K}")
        if self.offset < 0 or self.top_k + self.offset > MAX_RESULT_WINDOW:
            raise InvalidQueryError(f"offset={self.offset}: offset + top_k must be between 0 "
                                    f"and {MAX_RESULT_WINDOW}")
        if self.against and self.against not in AGAINST:
            raise InvalidQueryError(f"against={self.against!r}: expected one of {AGAINST}")
        if not 0 <= self.suggest <= MAX_SUGGESTIONS:
            raise InvalidQueryError(f"suggest_classes={self.suggest}: must be between 0 and "
                                    f"{MAX_SUGGESTIONS}")
        if not 0 <= self.count_depth <= MAX_RESULT_WINDOW:
            raise InvalidQueryError(f"locarno_counts_depth={self.count_depth}: must be between "
                                    f"0 and {MAX_RESULT_WINDOW}")

    @property
    def window(self) -> int:
        """How many ranked results the search needs: the page's end, or the counted window
        when that is deeper."""
        return max(self.top_k + self.offset, self.count_depth)

    def next_offset(self, returned: int) -> int | None:
        """Where the next page starts, given the hits this page returned; None when there
        is none (a short page, or the next would pass MAX_RESULT_WINDOW). The one paging
        rule for gRPC's page tokens and the web app."""
        following = self.offset + self.top_k
        if returned == self.top_k and following + self.top_k <= MAX_RESULT_WINDOW:
            return following
        return None

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

    def search(self, query: Query, request: SearchRequest) -> SearchResult:
        """The page ``request`` asks for of the results of ``query``: every query kind
        through one entry point."""
        run = {"text": self._text, "drawing": self._drawing,
               "text+drawing": self._text_and_drawing, "similar": self._similar}[query.kind]
        return run(query, request, request.deadline)

    def _text(self, query: Query, request: SearchRequest, deadline: Deadline) -> SearchResult:
        with self.stage("encode"):
            vector = self.encoder.encode_texts([query.text], timeout=deadline.remaining())[0]
        return self._suggested(self._search(vector[None, :], request, request.matching("both"),
                                            deadline), vector, request, "text")

    def _drawing(self, query: Query, request: SearchRequest, deadline: Deadline
                 ) -> SearchResult:
        """Drawings like the query's (or like its crop)."""
        vector = self._image_vector(query, deadline)
        return self._suggested(self._search(vector[None, :], request,
                                            request.matching("drawing"), deadline),
                               vector, request, "drawing")

    def _text_and_drawing(self, query: Query, request: SearchRequest, deadline: Deadline
                          ) -> SearchResult:
        """Text and a drawing in one query: the text's ranking (against its default, both)
        and the drawing's (against drawings), fused by reciprocal rank."""
        image_vector = self._image_vector(query, deadline)
        with self.stage("encode"):
            text_vector = self.encoder.encode_texts([query.text],
                                                    timeout=deadline.remaining())[0]
        fetch = fusion_depth(request.window, MAX_SEARCH_LIMIT)
        rankings = [self._rank(text_vector[None, :], request, request.matching("both"),
                               deadline, fetch),
                    self._rank(image_vector[None, :], request, ("drawing",), deadline, fetch)]
        with self.stage("group"):
            ranking = reciprocal_rank_fusion(rankings, request.window, group=request.group)
        return self._suggested(self._result(ranking, request), image_vector, request,
                               "drawing")

    def _similar(self, query: Query, request: SearchRequest, deadline: Deadline
                 ) -> SearchResult:
        """Designs like the patent's drawings (or its one sheet), excluding the patent.

        Every drawing sheet of the patent is a query; a candidate's score is its best
        cosine similarity to any of them.
        """
        with self.stage("lookup"):
            vectors = self.patent_vectors(query.patent, query.sheet, deadline.remaining())
        request = replace(request, filters=request.filters.excluding(query.patent))
        mean = vectors.mean(axis=0)
        return self._suggested(self._search(vectors, request, request.matching("drawing"),
                                            deadline),
                               mean / max(float(np.linalg.norm(mean)), 1e-12), request,
                               "drawing")

    def _suggested(self, result: SearchResult, vector: np.ndarray, request: SearchRequest,
                   source: str) -> SearchResult:
        """The result with the query's suggested classes, when asked for: by the model's
        head on the query's drawing (or its text, an approximation: the head learned on
        drawings), or a note saying why there are none."""
        if not request.suggest:
            return result
        head = getattr(self.encoder, "class_head", None)
        if head is None:
            return replace(result, suggest_note=f"model {self.model_version} has no "
                           "classification head (trained with contrastive loss only, or "
                           "not by this trainer): no suggested classes")
        note = "" if source == "drawing" else ("from the text's embedding: the head learned "
                                               "on drawings, so this is an approximation")
        return replace(result, suggested=head.suggest(vector, request.suggest),
                       suggest_note=note)

    def patent_vectors(self, patent: str, sheet: int | None = None,
                       timeout: float | None = None) -> np.ndarray:
        """The drawing vectors of a patent's sheets (or of its one ``sheet``), looked up
        within the caller's ``timeout``."""
        rows = self.store.patent_rows(self.collection, patent, with_vectors=True, strong=False,
                                      timeout=timeout)
        rows = [r for r in rows if r["modality"] == "drawing"]
        if not rows:
            raise NotFoundError(f"patent {patent} is not in collection {self.collection}")
        if sheet is not None:
            rows = [r for r in rows if r["sheet"] == sheet]
            if not rows:
                raise self._no_sheet(patent, sheet)
        return np.asarray([r["vector"] for r in rows], dtype=np.float32)

    def drawing_sheet(self, patent: str, sheet: int, timeout: float | None = None
                      ) -> StoredSheet:
        """One stored sheet of a patent; NotFoundError naming the patent and the sheet when
        the collection has none."""
        for stored in self.get_patent(patent, timeout).sheets:
            if stored.sheet == sheet:
                return stored
        raise self._no_sheet(patent, sheet)

    def _no_sheet(self, patent: str, sheet: int) -> NotFoundError:
        return NotFoundError(f"patent {patent} has no drawing sheet {sheet} in collection "
                             f"{self.collection}")

    def get_patent(self, patent: str, timeout: float | None = None) -> PatentRecord:
        """The patent's metadata and drawing sheets as stored, looked up within the caller's
        ``timeout``; NotFoundError if absent."""
        rows = [r for r in self.store.patent_rows(self.collection, patent, strong=False,
                                                  timeout=timeout)
                if r["modality"] == "drawing"]
        if not rows:
            raise NotFoundError(f"patent {patent} is not in collection {self.collection}")
        first = rows[0]
        return PatentRecord(
            patent=patent, title=first["title"], grant_date=first["grant_date"],
            locarno=first["locarno"],
            sheets=tuple(stored_sheet(r) for r in rows))

    def _image_vector(self, query: Query, deadline: Deadline) -> np.ndarray:
        with self.stage("decode"):
            pixels = self.encoder.drawing_pixels(query.image, query.image_name, query.crop)
        with self.stage("encode"):
            return self.encoder.encode_pixels([pixels], timeout=deadline.remaining())[0]

    def _search(self, vectors: np.ndarray, request: SearchRequest,
                modalities: tuple[str, ...], deadline: Deadline) -> SearchResult:
        return self._result(self._rank(vectors, request, modalities, deadline, request.window),
                            request)

    def _rank(self, vectors: np.ndarray, request: SearchRequest, modalities: tuple[str, ...],
              deadline: Deadline, depth: int) -> list[Hit]:
        """The first ``depth`` results of ``vectors`` against ``modalities`` (several
        vectors: best score; several modalities: reciprocal rank)."""
        group = request.group
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
            return rankings[0][:depth] if len(rankings) == 1 else reciprocal_rank_fusion(
                rankings, depth, group=group)

    def _result(self, ranking: list[Hit], request: SearchRequest) -> SearchResult:
        """The requested page of ``ranking``, with the Locarno counts of its window."""
        counted = ranking[:request.count_depth]
        return SearchResult(hits=ranking[request.offset:request.offset + request.top_k],
                            model_version=self.encoder.model_version,
                            collection=self.collection,
                            locarno_counts=locarno_counts(counted) if counted else (),
                            counted=len(counted))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Report the time of a request stage (decode, encode, lookup, search, group,
        serialize) to ``on_stage``: the query service's latency breakdown."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.on_stage(name, time.perf_counter() - started)
