"""Retrieval metrics for benchmarking PatentCLIP checkpoints (pure numpy, no I/O).

* :func:`clip_retrieval_metrics`: open_clip's standard protocol. N images and N texts, pair
  i is (image i, text i); R@K and mean/median rank both ways.
* :func:`patent_aware_metrics`: a hit on *any* sheet of the right patent counts. The
  standard protocol punishes retrieving a patent's other views, which for prior art is a
  correct answer.
* :func:`prior_art_map`: drawing -> drawing retrieval where the other sheets of the same
  patent are the relevant set (DeepPatent-style): mAP and P@1.
* :func:`recall_by_frequency_tercile`: R@K of the queries in head, middle and tail thirds
  of the classes by training frequency (long-tailed design classes).

Similarity matrices are ``rows = queries``, ``columns = candidates``; higher is better.
Ties are broken by candidate index (stable sort), as in open_clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

KS = (1, 5, 10)


def _first_relevant_rank(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """0-based rank of the best-ranked relevant candidate for each query row."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    if not hits.any(axis=1).all():
        raise ValueError("every query needs at least one relevant candidate")
    return hits.argmax(axis=1)


def rank_summary(ranks: np.ndarray, prefix: str, ks: Sequence[int] = KS) -> dict[str, float]:
    out = {f"{prefix}_mean_rank": float(ranks.mean() + 1),
           f"{prefix}_median_rank": float(np.floor(np.median(ranks)) + 1)}
    for k in ks:
        out[f"{prefix}_R@{k}"] = float((ranks < k).mean())
    return out


def clip_retrieval_metrics(image_text: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Standard protocol on an N x N image-text similarity matrix (diagonal = pairs)."""
    n = image_text.shape[0]
    if image_text.shape != (n, n):
        raise ValueError(f"expected a square matrix, got {image_text.shape}")
    eye = np.eye(n, dtype=bool)
    return {**rank_summary(_first_relevant_rank(image_text, eye), "image_to_text", ks),
            **rank_summary(_first_relevant_rank(image_text.T, eye), "text_to_image", ks)}


def patent_aware_metrics(image_text: np.ndarray, image_patents: Sequence[str],
                         text_patents: Sequence[str], ks: Sequence[int] = KS
                         ) -> dict[str, float]:
    """Like the standard protocol, but any image/text of the same patent is relevant."""
    images, texts = np.asarray(image_patents), np.asarray(text_patents)
    same = images[:, None] == texts[None, :]
    return {**rank_summary(_first_relevant_rank(image_text, same), "image_to_text", ks),
            **rank_summary(_first_relevant_rank(image_text.T, same.T), "text_to_image", ks)}


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranking: mean of precision at each relevant item's rank."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order]
    if not hits.any():
        raise ValueError("average precision needs at least one relevant item")
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def prior_art_map(image_image: np.ndarray, patents: Sequence[str]) -> dict[str, float]:
    """Drawing -> drawing: for each sheet, the other sheets of its patent are relevant.

    The query sheet itself is removed from its ranking; sheets whose patent has no other
    sheet are not queries. Returns mAP, P@1 and the number of queries.
    """
    patents = np.asarray(patents)
    n = len(patents)
    aps, p1 = [], []
    for i in range(n):
        others = np.arange(n) != i
        relevant = (patents == patents[i]) & others
        if not relevant.any():
            continue
        scores, rel = image_image[i][others], relevant[others]
        aps.append(average_precision(scores, rel))
        p1.append(float(rel[np.argsort(-scores, kind="stable")[0]]))
    if not aps:
        raise ValueError("no sheet has another sheet of the same patent")
    return {"map": float(np.mean(aps)), "p_at_1": float(np.mean(p1)), "queries": len(aps)}


def frequency_terciles(class_counts: Mapping[str, int]) -> dict[str, str]:
    """Class -> 'head' | 'middle' | 'tail', splitting classes by training frequency into
    thirds (most frequent first; ties by class code, so the split is reproducible)."""
    ordered = sorted(class_counts, key=lambda c: (-class_counts[c], c))
    n = len(ordered)
    cut1, cut2 = -(-n // 3), -(-2 * n // 3)
    return {c: "head" if i < cut1 else "middle" if i < cut2 else "tail"
            for i, c in enumerate(ordered)}


def recall_by_frequency_tercile(ranks: np.ndarray, query_classes: Sequence[str],
                                class_counts: Mapping[str, int], k: int = 10
                                ) -> dict[str, float | None]:
    """R@k of the queries in each tercile (None where a tercile has no query)."""
    terciles = frequency_terciles(class_counts)
    groups = np.asarray([terciles.get(c, "tail") for c in query_classes])
    ranks = np.asarray(ranks)
    return {t: (float((ranks[groups == t] < k).mean()) if (groups == t).any() else None)
            for t in ("head", "middle", "tail")}


def first_relevant_ranks(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Public form of the rank computation, for per-query breakdowns (0-based)."""
    return _first_relevant_rank(similarity, relevant)


def caption_queries(captions: Sequence[str], patents: Sequence[str]) -> list[int]:
    """One query per distinct (patent, caption): the index of the first item of each.

    Sheets of one patent with the same caption ("a chair in one of its views: front, top")
    ask the same question with the same answer, so they are one query, not several.
    Patents sharing a caption are different questions (each has its own right answer) and
    stay separate queries; :func:`shared_caption_share` reports how many there are.
    Case and spacing do not count.
    """
    first: dict[tuple[str, str], int] = {}
    for i, (caption, patent) in enumerate(zip(captions, patents, strict=True)):
        first.setdefault((patent, " ".join(caption.lower().split())), i)
    return list(first.values())


def shared_caption_share(captions: Sequence[str], patents: Sequence[str]) -> float:
    """The share of queries whose caption another patent's query also has: a random tie
    for the model, whichever of the patents it ranks first."""
    owners: dict[str, set[str]] = {}
    for caption, patent in zip(captions, patents, strict=True):
        owners.setdefault(" ".join(caption.lower().split()), set()).add(patent)
    queries = [(p, " ".join(c.lower().split())) for c, p in zip(captions, patents, strict=True)]
    distinct = set(queries)
    return sum(len(owners[c]) > 1 for _, c in distinct) / len(distinct) if distinct else 0.0


def mean_intervals(per_unit: dict[str, np.ndarray], resamples: int = 2000, seed: int = 0
                   ) -> dict[str, list[float]]:
    """The 95% percentile bootstrap interval of the mean of each array of per-unit values
    (one value per query or pair; all of one length), the units resampled with replacement,
    the same draws for every array. An empty sample gives [0, 0]."""
    units = len(next(iter(per_unit.values()), ()))
    if not units:
        return {name: [0.0, 0.0] for name in per_unit}
    draws = np.random.default_rng(seed).integers(0, units, size=(resamples, units))
    return {name: [float(v) for v in np.percentile(np.asarray(values, np.float64)[draws]
                                                   .mean(axis=1), [2.5, 97.5])]
            for name, values in per_unit.items()}


def chance_recall(relevant_counts: Sequence[int], gallery: int, k: int) -> float:
    """R@k of a random ranking: the mean over queries of P(some relevant item in the top
    k) when a query has m relevant items among ``gallery`` (1 - C(n-m, k) / C(n, k))."""
    def one(m: int) -> float:
        miss = 1.0
        for i in range(min(k, gallery)):
            miss *= max(gallery - m - i, 0) / (gallery - i)
        return 1.0 - miss

    return float(np.mean([one(m) for m in relevant_counts])) if len(relevant_counts) else 0.0
