"""Cross-modal search: text or drawing in, patents out, best matching sheet first.

``SearchEngine`` joins an encoder and one collection (or the live alias) and refuses a
collection built by another model version. Text queries can match drawings (cross-modal,
the point of PatentCLIP), the captions the patents give their sheets, or both. Cosine
scores of the two are not comparable (CLIP's modality gap), so "both" fuses the two
rankings with reciprocal-rank fusion instead of mixing raw scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from patentclip.encoder import Encoder
from patentclip.errors import InvalidQueryError, ModelVersionMismatchError, NotFoundError
from patentclip.store import MAX_SEARCH_LIMIT, Hit, PatentStore, SearchFilters

logger = logging.getLogger(__name__)

MAX_TOP_K = 200
MAX_TEXT_CHARS = 2000
AGAINST = ("drawing", "caption", "both")
RRF_K = 60


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model_version: str
    collection: str


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], k: int, rrf_k: int = RRF_K,
                           group: bool = True) -> list[Hit]:
    """Fuse ranked lists: score(d) = sum 1/(rrf_k + rank). Keeps each item's best-ranked hit.

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
    return [representative[key][1] for key in order[:k]]


class SearchEngine:
    """Search one collection (or alias) with the encoder that built it."""

    def __init__(self, encoder: Encoder, store: PatentStore, collection: str) -> None:
        info = store.describe(collection)
        if info.model_version != encoder.model_version:
            raise ModelVersionMismatchError(
                f"collection {info.name} was built by model {info.model_version}, but the "
                f"loaded model is {encoder.model_version}; load the matching model")
        self.encoder, self.store, self.collection = encoder, store, info.name

    def search_text(self, text: str, k: int = 10, filters: SearchFilters | None = None,
                    against: str = "both", group: bool = True) -> SearchResult:
        text = (text or "").strip()
        if not text:
            raise InvalidQueryError("text query is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidQueryError(f"text query has {len(text)} characters, "
                                    f"limit {MAX_TEXT_CHARS}")
        return self.search_vector(self.encoder.encode_texts([text])[0], k, filters, against,
                                  group)

    def search_image(self, data: bytes, k: int = 10, filters: SearchFilters | None = None,
                     against: str = "drawing", group: bool = True,
                     name: str = "query image") -> SearchResult:
        if not data:
            raise InvalidQueryError("image query is empty")
        vector = self.encoder.encode_drawings([data], [name])[0]
        return self.search_vector(vector, k, filters, against, group)

    def search_vector(self, vector: np.ndarray, k: int = 10,
                      filters: SearchFilters | None = None, against: str = "both",
                      group: bool = True) -> SearchResult:
        if not 1 <= k <= MAX_TOP_K:
            raise InvalidQueryError(f"top_k={k}: must be between 1 and {MAX_TOP_K}")
        if against not in AGAINST:
            raise InvalidQueryError(f"against={against!r}: expected one of {AGAINST}")
        modalities = ("drawing", "caption") if against == "both" else (against,)
        depth = k if len(modalities) == 1 else min(max(2 * k, 20), MAX_SEARCH_LIMIT)
        rankings = [self.store.search(self.collection, vector, depth, filters, modality=m,
                                      group=group)[0] for m in modalities]
        hits = rankings[0][:k] if len(rankings) == 1 else reciprocal_rank_fusion(
            rankings, k, group=group)
        return SearchResult(hits=hits, model_version=self.encoder.model_version,
                            collection=self.collection)

    def patent_vectors(self, patent: str) -> np.ndarray:
        rows = [r for r in self.store.patent_rows(self.collection, patent, with_vectors=True)
                if r["modality"] == "drawing"]
        if not rows:
            raise NotFoundError(f"patent {patent} is not in collection {self.collection}")
        return np.asarray([r["vector"] for r in rows], dtype=np.float32)
