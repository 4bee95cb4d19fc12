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
from patentclip.store.schema import IMAGE_ROWS, StoredSheet, row_region, stored_sheet

logger = logging.getLogger(__name__)

MAX_TOP_K = 200
REGIONS_RECHECK_S = 60.0  # how long "this collection has no figure or part rows" holds
MAX_RESULT_WINDOW = 1000  # offset + top_k: deeper pages are not served
AGAINST = ("drawing", "caption", "both", "words", "all")
LEGS = {"both": ("drawing", "caption"), "all": ("drawing", "caption", "words")}


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
    legs: tuple[str, ...] = ()  # the legs searched: see Hit.legs
    legs_note: str = ""  # why a leg asked for was left out ("" when none was)


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

    def drawing_pixels(self, data: bytes, name: str = "image", crop: CropBox | None = None,
                       mode: str = "line"): ...

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

    def lexical_off(self, collection: str) -> str: ...

    def region_rows(self, collection: str, sheets: Sequence[tuple[str, int]],
                    timeout: float | None = None) -> list[dict]: ...

    def has_region_rows(self, collection: str, timeout: float | None = None) -> bool: ...

    def search_words(self, collection: str, texts: Sequence[str], k: int,
                     filters: SearchFilters | None = None, group: bool = True,
                     timeout: float | None = None,
                     on_stage: Callable[[str, float], None] | None = None
                     ) -> list[list[Hit]]: ...


@dataclass(frozen=True)
class SearchRequest:
    """How to search, whatever the query: a page of results, filters, what to match, and a
    time budget. Validated when built, so the engine and its callers can trust it.

    ``against`` "" means the query's own default: all for text (drawings, captions and
    words; both where the lexical leg is off), drawing for drawings and for "more like
    this".
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
        """The legs to search: ``against``, or ``default`` when it is unset."""
        against = self.against or default
        return LEGS.get(against, (against,))


@dataclass(frozen=True)
class Source:
    """One ranking to fuse: its name (Hit.legs), the leg searched ("drawing", "caption",
    "words") and what searches it: query vectors (several: best score) or words.
    ``parts``: a cropped drawing, matched against stored parts as well as sheets and
    figures."""

    name: str
    leg: str
    vectors: np.ndarray | None = None
    text: str = ""
    parts: bool = False

    @property
    def rows(self) -> str | tuple[str, ...]:
        """The kinds of rows the source searches."""
        if self.leg != "drawing":
            return self.leg
        return (*IMAGE_ROWS, "part") if self.parts else IMAGE_ROWS


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
        # Why the collection has no lexical (BM25) leg; "" when it has one.
        self.lexical_off = store.lexical_off(info.name)
        self._no_regions_until = 0.0  # monotonic time to look for figure or part rows again

    @property
    def model_version(self) -> str:
        return self.encoder.model_version

    def search(self, query: Query, request: SearchRequest) -> SearchResult:
        """The page ``request`` asks for of the results of ``query``: every query kind
        through one entry point."""
        if query.kind == "similar":
            return self._similar(query, request, request.deadline)
        return self._words_and_drawings(query, request, request.deadline)

    def _words_and_drawings(self, query: Query, request: SearchRequest, deadline: Deadline
                            ) -> SearchResult:
        """Text, drawings (the views of one design) or both. The text's legs are fused by
        reciprocal rank, so are the drawings' (one ranking per view: a patent that matches
        several views ranks above one that matches one), and then text and drawings, as
        equals, the same way."""
        parts, note = [], ""
        text_vector = image_vectors = None
        if query.text:
            legs, note = self._text_legs(request)
            if any(leg != "words" for leg in legs) or (request.suggest and not
                                                       query.all_drawings):
                with self.stage("encode"):
                    text_vector = self.encoder.encode_texts(
                        [query.text], timeout=deadline.remaining())[0]
            parts.append([Source(leg, leg, text=query.text) if leg == "words"
                          else Source(leg, leg, text_vector[None, :]) for leg in legs])
        if query.all_drawings:
            image_vectors = self._drawing_vectors(query, deadline)
            legs = ("drawing",) if query.text else self._image_legs(request)
            named = len(image_vectors) > 1 or query.text
            parts.append([Source(f"view {i + 1}" if named else leg, leg, vector[None, :],
                                 parts=drawing.crop is not None)
                          for i, (drawing, vector) in enumerate(zip(
                              query.all_drawings, image_vectors, strict=True))
                          for leg in legs])
        ranking = self._fuse(parts, request, deadline, request.window)
        result = replace(self._result(ranking, request), legs=tuple(dict.fromkeys(
            s.leg for part in parts for s in part)), legs_note=note)
        if image_vectors is not None:
            result = self._explained(result, image_vectors, deadline)
            return self._suggested(result, _unit_mean(image_vectors), request, "drawing")
        if text_vector is not None:
            result = self._explained(result, text_vector[None, :], deadline)
        return self._suggested(result, text_vector, request, "text")

    def _fuse(self, parts: list[list[Source]], request: SearchRequest, deadline: Deadline,
              depth: int) -> list[Hit]:
        """Each part's sources fused, then the parts fused as equals."""
        if len(parts) == 1:
            return self._rank(parts[0], request, deadline, depth)
        fetch = fusion_depth(depth, MAX_SEARCH_LIMIT)
        rankings = [self._rank(part, request, deadline, fetch) for part in parts]
        with self.stage("group"):
            return reciprocal_rank_fusion(rankings, depth, group=request.group)

    def _text_legs(self, request: SearchRequest) -> tuple[tuple[str, ...], str]:
        """The legs a text searches (by default all), and a note when the lexical leg asked
        for is off (an explicit ``words`` alone is refused then: nothing else to search)."""
        legs = request.matching("all")
        if "words" not in legs or not self.lexical_off:
            return legs, ""
        if legs == ("words",):
            raise InvalidQueryError(f"against=words: the lexical leg is off: "
                                    f"{self.lexical_off}")
        return (tuple(leg for leg in legs if leg != "words"),
                f"lexical leg off: {self.lexical_off}")

    @staticmethod
    def _image_legs(request: SearchRequest) -> tuple[str, ...]:
        legs = tuple(leg for leg in request.matching("drawing") if leg != "words")
        if not legs:
            raise InvalidQueryError("against=words: a drawing has no words; search with text "
                                    "for the lexical leg")
        return legs

    def _similar(self, query: Query, request: SearchRequest, deadline: Deadline
                 ) -> SearchResult:
        """Designs like the patent's drawings (or its one sheet), excluding the patent.

        Every drawing sheet of the patent is a query; a candidate's score is its best
        cosine similarity to any of them.
        """
        with self.stage("lookup"):
            vectors = self.patent_vectors(query.patent, query.sheet, deadline.remaining())
        request = replace(request, filters=request.filters.excluding(query.patent))
        sources = [Source(leg, leg, vectors) for leg in self._image_legs(request)]
        result = replace(self._result(self._rank(sources, request, deadline, request.window),
                                      request), legs=tuple(s.leg for s in sources))
        result = self._explained(result, vectors, deadline)
        return self._suggested(result, _unit_mean(vectors), request, "drawing")

    def _explained(self, result: SearchResult, vectors: np.ndarray, deadline: Deadline
                   ) -> SearchResult:
        """Why each hit matched: the part of its sheet most like the query (any of its
        ``vectors``): the figure or part it matched by, else the best of the sheet's
        stored figures and parts. Hits of sheets without them keep ``region`` None."""
        open_hits = [h for h in result.hits if h.region is None]
        if not open_hits or not self._has_regions(deadline):
            return result
        with self.stage("explain"):
            rows = self.store.region_rows(self.collection, [(h.patent, h.sheet)
                                                            for h in open_hits],
                                          timeout=deadline.remaining())
            best: dict[tuple[str, int], tuple[float, str]] = {}
            if rows:
                scores = np.asarray([r["vector"] for r in rows], dtype=np.float32) @ \
                    np.asarray(vectors, dtype=np.float32).T
                for row, score in zip(rows, scores.max(axis=1), strict=True):
                    key = (row["patent"], row["sheet"])
                    if key not in best or score > best[key][0]:
                        best[key] = (float(score), row["id"])
        return replace(result, hits=[
            replace(h, region=row_region(best[(h.patent, h.sheet)][1]))
            if h.region is None and (h.patent, h.sheet) in best else h for h in result.hits])

    def _has_regions(self, deadline: Deadline) -> bool:
        """Whether the collection holds figure or part rows; a "no" is kept for
        REGIONS_RECHECK_S, so a collection without them costs no lookup per search (and
        one whose ingest starts writing parts shows them within a minute)."""
        if time.monotonic() < self._no_regions_until:
            return False
        if self.store.has_region_rows(self.collection, timeout=deadline.remaining()):
            return True
        self._no_regions_until = time.monotonic() + REGIONS_RECHECK_S
        return False

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
        stored = self.store.patent_rows(self.collection, patent, strong=False, timeout=timeout)
        rows = [r for r in stored if r["modality"] == "drawing"]
        if not rows:
            raise NotFoundError(f"patent {patent} is not in collection {self.collection}")
        figures = [r for r in stored if r["modality"] == "figure"]
        first = rows[0]
        return PatentRecord(
            patent=patent, title=first["title"], grant_date=first["grant_date"],
            locarno=first["locarno"],
            sheets=tuple(stored_sheet(r, figures) for r in rows))

    def _drawing_vectors(self, query: Query, deadline: Deadline) -> np.ndarray:
        """The vectors of the query's drawings (each decoded, cut to its crop and, for a
        photo, turned into a line drawing), encoded together."""
        with self.stage("decode"):
            pixels = [self.encoder.drawing_pixels(d.image, d.name, d.crop, query.mode)
                      for d in query.all_drawings]
        with self.stage("encode"):
            return self.encoder.encode_pixels(pixels, timeout=deadline.remaining())

    def _rank(self, sources: Sequence[Source], request: SearchRequest, deadline: Deadline,
              depth: int) -> list[Hit]:
        """The first ``depth`` results of ``sources``: one source's own ranking, or several
        fused by reciprocal rank; each hit names the sources that held it."""
        fetch = depth if len(sources) == 1 else fusion_depth(depth, MAX_SEARCH_LIMIT)
        rankings = [self._ranking(source, request, deadline, fetch) for source in sources]
        with self.stage("group"):
            if len(rankings) == 1:
                return [replace(h, legs=(sources[0].name,)) for h in rankings[0][:depth]]
            return reciprocal_rank_fusion(rankings, depth, group=request.group,
                                          names=[s.name for s in sources])

    def _ranking(self, source: Source, request: SearchRequest, deadline: Deadline,
                 fetch: int) -> list[Hit]:
        """One source's ranking: its words by BM25, or its vectors against its leg (several
        vectors: best score)."""
        if source.leg == "words":
            return self.store.search_words(self.collection, [source.text], fetch,
                                           request.filters, group=request.group,
                                           timeout=deadline.remaining(),
                                           on_stage=self.on_stage)[0]
        per_query = self.store.search(self.collection, source.vectors, fetch, request.filters,
                                      modality=source.rows, group=request.group,
                                      timeout=deadline.remaining(), on_stage=self.on_stage)
        with self.stage("group"):
            return per_query[0] if len(per_query) == 1 else best_score_fusion(
                per_query, fetch, request.group)

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


def _unit_mean(vectors: np.ndarray) -> np.ndarray:
    """The direction of several unit vectors' mean (a patent's sheets, a query's views)."""
    mean = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)
