"""The served protocol: what the gate scores is the system the query service runs.

The other protocols of the benchmark rank *sheets* of one evaluation week, text against
drawings only. The service ranks *patents* (each by its best sheet), fuses a text query's
ranking against drawings with its ranking against the captions the patents give their
sheets (reciprocal rank, :mod:`patentclip.search.ranking`), and searches a gallery of
millions of sheets. This module scores one evaluation set that way, on vectors (pure numpy):

* the gallery is the set's sheets plus a fixed set of older sheets as distractors;
* text -> patent: one query per patent, its title as an examiner types it ("shaving blade
  cartridge"), not its stored caption, which the caption channel would match word for word;
  the drawing ranking and the caption ranking, each one hit per patent and cut at the depth
  the service fetches for a first page, fused by reciprocal rank with the service's constant;
* drawing -> patent: each sheet (front pages left out: they repeat a figure at another
  scale) against the other sheets, patents ranked by their best sheet; the relevant answer
  is the query's own patent. This is the non-inferiority guard's measure.

``per_query`` keeps the 1-based rank of the relevant patent (null past PER_QUERY_CUTOFF), the
unit the gate pairs. ``tests/unit/trainer/test_served.py`` checks the fusion against the
service's own :func:`~patentclip.search.ranking.reciprocal_rank_fusion`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from patentclip.search.ranking import RRF_K, fusion_depth
from patentclip.store import MAX_SEARCH_LIMIT

PER_QUERY_CUTOFF = 100  # per_query keeps ranks up to here (null beyond): the one cutoff
FIRST_PAGE = 10  # the depth the service fuses is that of a first page of 10 results
SERVED_DEPTH = fusion_depth(FIRST_PAGE, MAX_SEARCH_LIMIT)


class Gallery:
    """The sheets a served query ranks: patents and both channels' unit vectors."""

    def __init__(self, patents: Sequence[str], drawings: np.ndarray, captions: np.ndarray
                 ) -> None:
        names, ids = np.unique(np.asarray(patents), return_inverse=True)
        self.order = np.argsort(ids, kind="stable")  # sheets grouped by patent
        self.starts = np.flatnonzero(np.r_[True, np.diff(ids[self.order]) != 0])
        self.names, self.ids = list(names), ids
        self.position = {name: i for i, name in enumerate(self.names)}
        self.drawings, self.captions = drawings, captions

    def patent_scores(self, similarity: np.ndarray) -> np.ndarray:
        """(queries x sheets) -> (queries x patents): each patent's best sheet."""
        return np.maximum.reduceat(similarity[:, self.order], self.starts, axis=1)

    def index(self, patent: str) -> int:
        return self.position[patent]


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank of every column in each row (stable: ties by column order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks


def fused_scores(rankings: Sequence[np.ndarray], depth: int = SERVED_DEPTH) -> np.ndarray:
    """Reciprocal-rank fusion of rank matrices as the service fuses: the sum, list by list
    in order, of 1/(RRF_K + rank) over the lists an item is in the top ``depth`` of (0 where
    it is in none)."""
    fused = np.zeros(rankings[0].shape)
    for r in rankings:
        fused = fused + np.where(r <= depth, 1.0 / (RRF_K + r), 0.0)
    return fused


def fused_ranks(rankings: Sequence[np.ndarray], relevant: np.ndarray,
                depth: int = SERVED_DEPTH) -> list[int | None]:
    """The fused rank of each query's relevant patent, as reciprocal_rank_fusion orders
    them: score = sum over the lists it appears in (top ``depth``) of 1/(RRF_K + rank), the
    same sum in the same order; ties by the best single rank, then by first appearance (the
    first list first). None when it is in none of the lists."""
    fused = fused_scores(rankings, depth)
    never = np.iinfo(np.int64).max
    best = np.minimum.reduce([np.where(r <= depth, r, never) for r in rankings])
    first = np.minimum.reduce([np.where(r <= depth, i * (depth + 1) + r, never)
                               for i, r in enumerate(rankings)])
    out: list[int | None] = []
    for q, p in enumerate(relevant):
        score = fused[q, p]
        if score == 0:
            out.append(None)
            continue
        tied = fused[q] == score
        ahead = (fused[q] > score) | (tied & (best[q] < best[q, p])) | \
            (tied & (best[q] == best[q, p]) & (first[q] < first[q, p]))
        out.append(int(ahead.sum()) + 1)
    return out


def text_ranks(gallery: Gallery, query_vectors: np.ndarray, patents: Sequence[str],
               depth: int = SERVED_DEPTH) -> list[int | None]:
    """Text -> patent as the service answers it: drawings and captions, fused."""
    relevant = np.asarray([gallery.index(p) for p in patents], dtype=np.int64)
    rankings = [ranks_of(gallery.patent_scores(query_vectors @ channel.T))
                for channel in (gallery.drawings, gallery.captions)]
    return fused_ranks(rankings, relevant, depth)


def drawing_ranks(gallery: Gallery, queries: Sequence[int]) -> list[int | None]:
    """Drawing -> patent for gallery sheets ``queries``: each against every other sheet
    (itself left out), the relevant patent its own. Ranks past the cutoff are None."""
    if not queries:  # e.g. a set of front pages only (the seed's test set)
        return []
    similarity = gallery.drawings[list(queries)] @ gallery.drawings.T
    similarity[np.arange(len(queries)), list(queries)] = -np.inf  # not the sheet itself
    scores = gallery.patent_scores(similarity)
    relevant = gallery.ids[list(queries)]
    own = scores[np.arange(len(queries)), relevant]
    ranks = (scores > own[:, None]).sum(axis=1) + 1
    return [int(r) if r <= PER_QUERY_CUTOFF and np.isfinite(o) else None
            for r, o in zip(ranks, own, strict=True)]


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    return float(np.mean([r is not None and r <= k for r in ranks])) if ranks else 0.0


def reciprocal_rank(ranks: Sequence[int | None]) -> float:
    return float(np.mean([0.0 if r is None else 1.0 / r for r in ranks])) if ranks else 0.0


def capped(rank: int | None) -> int | None:
    return rank if rank is not None and rank <= PER_QUERY_CUTOFF else None
