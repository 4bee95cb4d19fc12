"""Examiner-cited prior art: the relevance judgement of this field, as a benchmark protocol.

The other protocols ask for the patent a caption came from, or for the other views of a
query's own patent (view invariance, not prior art). Here each query grant searches a corpus
that excludes it, and the relevant answers are the US design patents its examiner cited
(``us-references-cited``, "cited by examiner") that the corpus holds. Three ways to ask, as
an examiner can with the service:

* ``drawing``: the grant's drawing sheets, each patent of the corpus scored by its best
  sheet against any of them (the service's "similar" search);
* ``text``: its title and figure descriptions, against the corpus's drawings and sheet
  captions, fused by reciprocal rank (the service's text search);
* ``both``: the two rankings fused by reciprocal rank (the service's text + drawing).

Reported per mode: recall@K of the held citations (per query grant, then averaged), MRR of
the first held citation, each with a percentile bootstrap interval over query grants, and
the counts that say what the numbers can mean: query grants, examiner-cited design patents,
and how many of them the corpus holds. ``per_query_cited`` (one record per query grant and
mode, the rank of its first held citation) is what the gate pairs when
``PATENTCLIP_TRAINER_GATE_PER_QUERY=per_query_cited``. Pure numpy on vectors;
``run_cited`` encodes. docs/cited-prior-art.md explains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from patentclip.grants.model import Grant
from trainer.data import EvalItem
from trainer.retrieval import mean_intervals
from trainer.served import PER_QUERY_CUTOFF, Gallery, fused_scores, ranks_of
from trainer.sheets import drawing_inputs

if TYPE_CHECKING:
    from patentclip.model.encoder import Encoder

MODES = ("drawing", "text", "both")
KS = (1, 10, 100)


@dataclass(frozen=True)
class CitedQuery:
    """A query grant and the examiner-cited design patents of it the corpus holds."""

    patent: str
    held: tuple[str, ...]
    cited: int  # examiner-cited design patents, held or not


def examiner_design_citations(grant: Grant) -> tuple[str, ...]:
    """The US design patents the examiner cited (stored form, in the order cited)."""
    return tuple(dict.fromkeys(c.us_patent for c in grant.citations
                               if c.design and c.category == "examiner"))


def cited_queries(grants: Sequence[Grant], corpus: set[str],
                  only: set[str] | None = None) -> tuple[list[CitedQuery], dict]:
    """The query grants (those of ``only``, default all) with at least one examiner-cited
    design patent in ``corpus``, and the counts over every considered grant."""
    queries, cited, held = [], 0, 0
    considered = [g for g in grants if only is None or g.patent_number in only]
    for grant in considered:
        citations = examiner_design_citations(grant)
        present = tuple(p for p in citations if p in corpus and p != grant.patent_number)
        cited, held = cited + len(citations), held + len(present)
        if present:
            queries.append(CitedQuery(grant.patent_number, present, len(citations)))
    counts = {"grants": len(considered), "query_grants": len(queries),
              "examiner_cited_design_patents": cited, "held_by_the_corpus": held,
              "held_share": held / cited if cited else 0.0}
    return queries, counts


def _ranks(scores: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """1-based ranks per row with each row's own patent (``exclude``) left out; items
    scoring -inf (or 0 after fusion, when fused) rank past every scored one."""
    scores = scores.copy()
    scores[np.arange(len(exclude)), exclude] = -np.inf
    return ranks_of(scores)


def mode_scores(gallery: Gallery, query_sheets: Sequence[np.ndarray],
                query_texts: np.ndarray, own: np.ndarray) -> dict[str, np.ndarray]:
    """Per mode, (queries x patents) scores where higher is better; -inf or 0 = unranked."""
    drawing = np.stack([gallery.patent_scores(sheets @ gallery.drawings.T).max(axis=0)
                        for sheets in query_sheets])
    channels = [_ranks(gallery.patent_scores(query_texts @ c.T), own)
                for c in (gallery.drawings, gallery.captions)]
    text = fused_scores(channels)
    text[np.arange(len(own)), own] = 0.0
    both = fused_scores([_ranks(drawing, own), _ranks(np.where(text > 0, text, -np.inf), own)])
    both[np.arange(len(own)), own] = 0.0
    drawing[np.arange(len(own)), own] = -np.inf
    return {"drawing": drawing, "text": np.where(text > 0, text, -np.inf),
            "both": np.where(both > 0, both, -np.inf)}


def cited_ranks(scores: np.ndarray, gallery: Gallery, queries: Sequence[CitedQuery]
                ) -> list[list[int | None]]:
    """The 1-based rank of each held citation per query (None past PER_QUERY_CUTOFF or
    unranked)."""
    ranks = ranks_of(scores)
    out = []
    for q, query in enumerate(queries):
        row = []
        for patent in query.held:
            p = gallery.index(patent)
            rank = int(ranks[q, p])
            row.append(rank if rank <= PER_QUERY_CUTOFF and np.isfinite(scores[q, p])
                       else None)
        out.append(row)
    return out


def summarize(ranks: Sequence[Sequence[int | None]], resamples: int = 2000, seed: int = 0
              ) -> dict:
    """Recall@K (per query, averaged) and MRR of the first held citation, with a 95%
    percentile bootstrap interval over query grants."""
    per_query = {f"R@{k}": np.array([np.mean([r is not None and r <= k for r in row])
                                     for row in ranks]) for k in KS}
    per_query["mrr"] = np.array([max((1.0 / r for r in row if r is not None), default=0.0)
                                 for row in ranks])
    intervals = mean_intervals(per_query, resamples, seed)
    return {name: {"value": float(values.mean()) if len(values) else 0.0,
                   "interval": intervals[name]} for name, values in per_query.items()}


def cited_results(gallery: Gallery, queries: Sequence[CitedQuery],
                  query_sheets: Sequence[np.ndarray], query_texts: np.ndarray,
                  counts: dict) -> dict:
    """Every mode's figures and ``per_query_cited`` (pure: vectors in)."""
    own = np.array([gallery.index(q.patent) for q in queries], dtype=np.int64)
    scored = mode_scores(gallery, query_sheets, query_texts, own)
    results = {"cited": {**counts, "gallery_patents": len(gallery.names), "modes": {}},
               "per_query_cited": []}
    for mode in MODES:
        ranks = cited_ranks(scored[mode], gallery, queries)
        results["cited"]["modes"][mode] = summarize(ranks)
        for query, row in zip(queries, ranks, strict=True):
            first = min((r for r in row if r is not None), default=None)
            results["per_query_cited"].append({
                "query": mode, "patent": query.patent, "held": list(query.held),
                "ranks": row, "relevant_rank": first})
    return results


class Corpus:
    """The corpus the query grants search: every grant record of the image store. Its
    sheets are encoded once per model, when a set first asks (a cycle benchmarks two models
    on every pooled week), and only the last model's vectors are kept."""

    def __init__(self, grants: Sequence[Grant], images) -> None:
        self.grants, self.images = list(grants), images
        self.patents = {g.patent_number for g in self.grants}
        self.by_patent = {g.patent_number: g for g in self.grants}
        self._encoded: tuple[str, Gallery, dict[str, list[int]]] | None = None

    def encoded(self, encoder: Encoder) -> tuple[Gallery, dict[str, list[int]]]:
        """The gallery of every stored sheet (drawing and the caption the service stores
        for it) and each patent's rows in it, under ``encoder``."""
        if self._encoded is None or self._encoded[0] != encoder.model_version:
            items, rows = [], {}
            for grant in self.grants:
                for sheet in grant.sheets:
                    if sheet.image_uri:
                        rows.setdefault(grant.patent_number, []).append(len(items))
                        items.append(EvalItem(grant.patent_number, sheet.number,
                                              sheet.image_uri, "", grant.sheet_caption(sheet),
                                              "", grant.grant_date))
            drawings = encoder.encode_pixels(drawing_inputs(encoder, items, self.images,
                                                            check=False))
            captions = encoder.encode_texts([i.caption for i in items])
            gallery = Gallery([i.patent for i in items], drawings, captions)
            self._encoded = (encoder.model_version, gallery, rows)
        return self._encoded[1], self._encoded[2]


def run_cited(encoder: Encoder, corpus: Corpus, only: set[str] | None = None) -> dict:
    """The protocol on ``corpus``, asking with its grants of ``only`` (default: all) that
    cite a held design patent."""
    queries, counts = cited_queries(corpus.grants, corpus.patents, only)
    if not queries:
        return {"cited": {**counts, "modes": {}}, "per_query_cited": []}
    gallery, rows = corpus.encoded(encoder)
    sheets = [gallery.drawings[rows[q.patent]] for q in queries]
    texts = encoder.encode_texts([query_text(corpus.by_patent[q.patent]) for q in queries])
    return cited_results(gallery, queries, sheets, texts, counts)


def query_text(grant: Grant) -> str:
    """A grant's words as a query: its title and its figure descriptions."""
    return "; ".join([grant.title, *(f.description for f in grant.figures)])
