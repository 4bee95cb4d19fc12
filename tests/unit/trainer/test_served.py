"""The served protocol ranks patents as the query service does (trainer/served.py)."""

from __future__ import annotations

import numpy as np
import pytest

from patentclip.search.ranking import best_score_fusion, reciprocal_rank_fusion
from patentclip.store.schema import Hit
from trainer import served
from trainer.benchmark import DistractorVectors, served_results, served_text_queries
from trainer.data import EvalItem


def _unit(rng, n, d=8):
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _service_ranking(scores: np.ndarray, patents: list[str], modality: str) -> list[Hit]:
    """What the store returns for one channel with group=True: one hit per patent (its best
    sheet), best first; built with the service's own best-score merge."""
    hits = [[Hit(p, i, modality, float(s), "unknown", "09", 1, "", "", "", "")]
            for i, (p, s) in enumerate(zip(patents, scores, strict=True))]
    return best_score_fusion(hits, len(patents), group=True)


@pytest.mark.parametrize("seed", range(5))
def test_fused_text_ranks_are_the_services_reciprocal_rank_fusion(seed):
    rng = np.random.default_rng(seed)
    patents = [f"D{i % 37}" for i in range(150)]  # 37 patents, about 4 sheets each
    drawings, captions, queries = _unit(rng, 150), _unit(rng, 150), _unit(rng, 12)
    gallery = served.Gallery(patents, drawings, captions)
    wanted = [f"D{int(i)}" for i in rng.integers(0, 37, 12)]
    depth = 20  # shallower than the patent count, so lists are cut as the service cuts
    ours = served.text_ranks(gallery, queries, wanted, depth)
    for q, patent in enumerate(wanted):
        lists = [_service_ranking(channel @ queries[q], patents, name)[:depth]
                 for channel, name in ((drawings, "drawing"), (captions, "caption"))]
        fused = [h.patent for h in reciprocal_rank_fusion(lists, 100, group=True)]
        assert ours[q] == (fused.index(patent) + 1 if patent in fused else None)


def test_drawing_ranks_leave_the_query_sheet_out_and_rank_patents_by_best_sheet():
    rng = np.random.default_rng(3)
    patents = ["A", "A", "B", "B", "C"]
    drawings = _unit(rng, 5)
    gallery = served.Gallery(patents, drawings, drawings)
    ranks = served.drawing_ranks(gallery, [0, 2])
    for rank, q in zip(ranks, [0, 2], strict=True):
        scores = drawings @ drawings[q]
        scores[q] = -np.inf
        best = {p: max(s for s, pp in zip(scores, patents, strict=True) if pp == p)
                for p in set(patents)}
        assert rank == 1 + sum(v > best[patents[q]] for v in best.values())


def test_served_results_add_distractors_ask_titles_and_keep_both_per_query_lists():
    """One text query per patent (its title), drawing queries only for sheets whose patent
    has another non-front sheet, and distractors in the gallery but never queries."""
    rng = np.random.default_rng(5)
    items = [EvalItem("D1", 0, "u", "h", "front page drawing of a chair", "06", 1,
                      "front_page", "Chair"),
             EvalItem("D1", 1, "u", "h", "front view of a chair", "06", 1, "figures", "Chair"),
             EvalItem("D1", 2, "u", "h", "top view of a chair", "06", 1, "figures", "Chair"),
             EvalItem("D2", 1, "u", "h", "a lamp", "26", 1, "figures", "Lamp")]
    distractors = (EvalItem("X9", 1, "u", "h", "a chair", "06", 0, "figures", "Chair"),
                   EvalItem("X9", 2, "u", "h", "a chair", "06", 0, "figures", "Chair"))
    texts, patents = served_text_queries(items)
    assert (texts, patents) == (["chair", "lamp"], ["D1", "D2"])
    image, caption = _unit(rng, 4), _unit(rng, 4)
    out = served_results(image, caption, _unit(rng, 2), texts, patents, items, {"06": 3},
                         DistractorVectors(distractors, _unit(rng, 2), _unit(rng, 2)))
    assert out["served"]["gallery_sheets"] == 6 and out["served"]["distractor_sheets"] == 2
    assert out["served"]["text_query_source"] == "titles"
    assert [(r["patent"], r["query"]) for r in out["per_query"]] == [("D1", "chair"),
                                                                      ("D2", "lamp")]
    assert [(r["patent"], r["query"]) for r in out["per_query_drawing"]] == [
        ("D1", "sheet 1"), ("D1", "sheet 2")]  # D2 has one sheet; X9 is a distractor
    assert all(r["relevant_rank"] is None or r["relevant_rank"] <= 3
               for r in out["per_query"])  # 3 patents in the gallery


def test_sets_frozen_before_titles_were_kept_ask_the_first_caption():
    items = [EvalItem("D1", 1, "u", "h", "Front view of a chair", "06", 1)]
    assert served_text_queries(items) == (["front view of a chair"], ["D1"])
