"""Ranking policy: how hits become results: the fusion of several rankings (text against
drawings and captions, a patent's several sheets).

Cosine scores of two modalities do not compare (CLIP's modality gap), so rankings of
different modalities are fused by reciprocal rank; rankings of one modality by best score.
One hit per patent (best sheet first) is the store's grouping (``store.schema``), which the
store applies to what it fetches and fusion applies again to what it merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from patentclip.store.schema import Hit

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], k: int, rrf_k: int = RRF_K,
                           group: bool = True, names: Sequence[str] | None = None
                           ) -> list[Hit]:
    """Fuse ranked lists: score(d) = sum 1/(rrf_k + rank). Keeps each item's best-ranked hit,
    with the fused score as its ``score`` (cosine scores of two modalities do not compare)
    and as its ``legs`` the names of the rankings that held it (``names``; without them,
    the legs of its hits in each: fusions of fusions keep their legs).

    Items are patents when ``group`` (one hit per patent), else sheets.
    """
    fused: dict[tuple, float] = {}
    representative: dict[tuple, tuple[int, Hit]] = {}
    held: dict[tuple, list[str]] = {}
    for index, ranking in enumerate(rankings):
        for rank, hit in enumerate(ranking, start=1):
            key = (hit.patent,) if group else (hit.patent, hit.sheet)
            fused[key] = fused.get(key, 0.0) + 1.0 / (rrf_k + rank)
            if key not in representative or rank < representative[key][0]:
                representative[key] = (rank, hit)
            legs = held.setdefault(key, [])
            for leg in (names[index],) if names is not None else hit.legs:
                if leg not in legs:
                    legs.append(leg)
    order = sorted(fused, key=lambda key: (-fused[key], representative[key][0]))
    # The fused score replaces the cosine: scores of one list stay in rank order.
    return [replace(representative[key][1], score=fused[key], legs=tuple(held[key]))
            for key in order[:k]]


def fusion_depth(depth: int, cap: int) -> int:
    """How many candidates per modality feed rank fusion for results down to ``depth``.

    Fusion over a different candidate depth can order items differently, so the depth comes
    from a fixed ladder (100, 200, 400, ...): pages that fall in one rung (the first 50
    results by default) are slices of one and the same fused ranking. ``cap`` is the
    deepest search the store serves.
    """
    rung = 100
    while rung < 2 * depth:
        rung *= 2
    return min(rung, cap)


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
