"""Examiner-cited prior art (trainer/cited.py) on hand-made vectors: numbers checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from patentclip.grants.model import Citation, Grant, LocarnoClass
from trainer.cited import CitedQuery, cited_queries, cited_results
from trainer.served import Gallery

E = np.eye(4)


def _grant(patent: str, *cites: tuple[str, str]) -> Grant:
    return Grant(patent, "S1", "a chair", 20210105, LocarnoClass("0601"), (), "", (), (),
                 citations=tuple(Citation("US", n, "S", 20200100, "Doe", c) for n, c in cites))


def test_the_queries_are_the_grants_citing_a_held_design_patent_and_the_counts_say_so():
    corpus = {"D0000001", "D0000002", "D0000003", "D0000004"}
    grants = [_grant("D0000001", ("D2", "applicant"), ("D3", "examiner"), ("D4", "examiner"),
                     ("D9", "examiner"), ("5123456", "examiner")),  # a utility patent
              _grant("D0000002", ("D9", "examiner")),  # cites nothing the corpus holds
              _grant("D0000003")]
    queries, counts = cited_queries(grants, corpus)
    assert [(q.patent, q.held, q.cited) for q in queries] == [
        ("D0000001", ("D0000003", "D0000004"), 3)]
    assert counts == {"grants": 3, "query_grants": 1, "examiner_cited_design_patents": 4,
                      "held_by_the_corpus": 2, "held_share": 0.5}


def test_ranks_recall_and_mrr_by_hand():
    """Query A's one sheet is e1. Corpus: B = e1 (cosine 1), C = (e1 + e2)/sqrt 2 (0.71),
    D = e2 (0). A's examiner cited C and D. By drawing, B ranks 1, C 2, D 3 (A itself is
    left out): R@1 = 0, R@10 = 1, MRR = 1/2. Captions equal the drawings and the text query
    is e1, so by text and by both the order is the same."""
    c = (E[0] + E[1]) / np.sqrt(2)
    vectors = np.array([E[0], E[0], c, E[1]])
    gallery = Gallery(["A", "B", "C", "D"], vectors, vectors)
    query = CitedQuery("A", ("C", "D"), 2)
    out = cited_results(gallery, [query], [vectors[:1]], E[:1], {"grants": 1})
    for mode in ("drawing", "text", "both"):
        figures = out["cited"]["modes"][mode]
        assert figures["R@1"]["value"] == 0 and figures["R@10"]["value"] == 1, mode
        assert figures["mrr"]["value"] == pytest.approx(0.5), mode
    rows = {r["query"]: r for r in out["per_query_cited"]}
    assert rows["drawing"]["ranks"] == [2, 3] and rows["drawing"]["relevant_rank"] == 2
    assert rows["both"]["ranks"] == [2, 3]
