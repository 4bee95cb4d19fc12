"""Pure search logic: filter expressions, grouping and rank fusion against references."""

import itertools
import random

import pytest

from patentclip.errors import InvalidQueryError
from patentclip.grants.model import Region
from patentclip.search.ranking import reciprocal_rank_fusion
from patentclip.store import MAX_SEARCH_LIMIT, Hit, SearchFilters, row_id
from patentclip.store.schema import group_by_patent, row_region


def hit(patent, sheet, score, modality="drawing"):
    return Hit(patent=patent, sheet=sheet, modality=modality, score=score, view="front",
               locarno="0901", grant_date=20210105, title="t", figures=(), caption="",
               image_uri="")


def test_row_id_is_patent_sheet_modality_and_a_part_its_region():
    assert row_id("D0907292", 3, "drawing") == "D0907292-003:drawing"
    region = Region(0.25, 0.0, 0.75, 0.5)
    key = row_id("D0907292", 3, "part", region)
    assert key == "D0907292-003:part@250,0,750,500"
    assert row_region(key) == region and row_region("D0907292-003:drawing") is None


def test_filter_expression():
    f = SearchFilters(locarno=("02", "0901"), date_from=20210101, date_to=20211231,
                      views=("front", "top"))
    assert f.expression(("drawing", "figure")) == (
        'modality in ["drawing", "figure"] and (locarno_class in ["02"] or locarno in ["0901"]) '
        'and grant_date >= 20210101 and grant_date <= 20211231 and view in ["front", "top"]')
    assert SearchFilters().expression() == ""


@pytest.mark.parametrize("fields, message", [
    ({"locarno": ('02"] or 1==1',)}, "locarno filter"),
    ({"locarno": ("2",)}, "locarno filter"),
    ({"date_from": 2021}, "date_from"),
    ({"date_from": 20220101, "date_to": 20210101}, "date range is empty"),
    ({"views": ("sideways",)}, "view filter"),
    ({"exclude_patents": ('D1" or "1',)}, "patent number"),
])
def test_bad_filters_are_refused_with_a_reason_when_built(fields, message):
    with pytest.raises(InvalidQueryError, match=message):
        SearchFilters(**fields)  # validated once, here: nobody holds invalid filters


def test_filters_excluding_a_patent_keep_the_rest_and_stay_valid():
    base = SearchFilters(locarno=["09"], views=["front"])
    assert base.locarno == ("09",)  # sequences are kept as tuples: filters stay hashable
    more = base.excluding("D0907292")
    assert more == SearchFilters(locarno=("09",), views=("front",),
                                 exclude_patents=("D0907292",))
    with pytest.raises(InvalidQueryError, match="patent number"):
        base.excluding('D1" or "1')


def test_a_search_request_is_validated_when_built():
    from patentclip.search.engine import SearchRequest

    assert SearchRequest().matching("both") == ("drawing", "caption")
    assert SearchRequest(against="caption").matching("both") == ("caption",)
    for fields, words in (({"top_k": 0}, "top_k=0"), ({"top_k": 10, "offset": 995}, "offset"),
                          ({"against": "sketch"}, "against")):
        with pytest.raises(InvalidQueryError, match=words):
            SearchRequest(**fields)


def test_the_engine_runs_every_query_kind_through_one_search():
    """``SearchEngine.search`` dispatches on the kind: text encodes text against both
    modalities, a drawing decodes its crop, both fuse two rankings, similar looks the
    patent up and excludes it."""
    import numpy as np

    from patentclip.drawings.preprocess import CropBox
    from patentclip.search.engine import SearchEngine, SearchRequest
    from patentclip.search.query import Query
    from patentclip.store import CollectionInfo

    calls, decoded = [], []

    class Encoder:
        model_version, dim = "m1", 2

        def encode_texts(self, texts, timeout=None):
            calls.append(("text", tuple(texts)))
            return np.ones((len(texts), 2), np.float32)

        def drawing_pixels(self, data, name, crop, mode="line"):
            decoded.append((data, name, crop))
            return "pixels"

        def encode_pixels(self, pixels, timeout=None):
            return np.ones((len(pixels), 2), np.float32)

    class Store:
        def describe(self, name):
            return CollectionInfo(name=name, model_version="m1", dim=2, rows=1)

        def search(self, collection, vectors, k, filters=None, modality=None, group=True,
                   timeout=None, on_stage=None):
            calls.append(("search", modality, filters.exclude_patents))
            kind = modality if isinstance(modality, str) else "drawing"
            return [[hit("D0900001", 1, 0.9, kind)] for _ in vectors]

        def patent_rows(self, collection, patent, with_vectors=False, strong=True,
                        timeout=None):
            return [{"modality": "drawing", "sheet": 1, "vector": [1.0, 0.0]}]

        def has_region_rows(self, collection, timeout=None):
            return True

        def region_rows(self, collection, sheets, timeout=None):
            assert sheets == [("D0900001", 1)]
            return [{"id": f"D0900001-001:part@{key}", "patent": "D0900001", "sheet": 1,
                     "modality": "part", "vector": vector}
                    for key, vector in (("0,0,500,500", [0.0, 1.0]),
                                        ("500,500,1000,1000", [1.0, 0.0]))]

        def lexical_off(self, collection):
            return ""

        def search_words(self, collection, texts, k, filters=None, group=True, timeout=None,
                         on_stage=None):
            calls.append(("search", "words", filters.exclude_patents))
            return [[hit("D0900001", 1, 3.2, "words")] for _ in texts]

    engine = SearchEngine(Encoder(), Store(), "c")
    crop = CropBox(0, 0, 0.5, 0.5)
    for query in (Query(text="lid"), Query(image=b"png", image_name="d.png", crop=crop),
                  Query(text="lid", image=b"png"), Query(patent="D0907292")):
        calls.clear()
        result = engine.search(query, SearchRequest())
        assert result.hits[0].patent == "D0900001"
        searched = [c[1] for c in calls if c[0] == "search"]
        images, parts = ("drawing", "figure"), ("drawing", "figure", "part")  # rows searched
        expected = {"text": [images, "caption", "words"], "drawing": [parts],
                    "text+drawing": [images, "caption", "words", images],
                    "similar": [images]}[query.kind]
        assert searched == expected, query.kind
        assert result.legs == tuple(dict.fromkeys(
            "drawing" if isinstance(leg, tuple) else leg for leg in expected)), query.kind
        # Why it matched: the part of the sheet nearest the query's vector ([1, 1] is as
        # near both: the first; the patent's drawing [1, 0]: the second).
        near = Region(0.5, 0.5, 1.0, 1.0) if query.kind == "similar" else Region(0, 0, .5, .5)
        assert result.hits[0].region == near, query.kind
        found = {"text": ("drawing", "caption", "words"), "drawing": ("drawing",),
                 "text+drawing": ("drawing", "caption", "words", "view 1"),
                 "similar": ("drawing",)}[query.kind]
        assert result.hits[0].legs == found, query.kind
    assert decoded == [(b"png", "d.png", crop), (b"png", "query image", None)]
    assert calls[-1] == ("search", ("drawing", "figure"), ("D0907292",))  # excludes itself


def brute_force_group(hits, k):
    best = {}
    for h in hits:
        if h.patent not in best or h.score > best[h.patent].score:
            best[h.patent] = h
    return sorted(best.values(), key=lambda h: -h.score)[:k]


def test_group_by_patent_matches_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        hits = [hit(f"D{rng.randrange(8)}", s, rng.random()) for s in range(30)]
        k = rng.randrange(1, 10)
        assert group_by_patent(hits, k) == brute_force_group(hits, k)


def brute_force_rrf(rankings, k, rrf_k=60):
    scores = {}
    for ranking in rankings:
        for rank, h in enumerate(ranking, 1):
            scores[h.patent] = scores.get(h.patent, 0) + 1 / (rrf_k + rank)
    return sorted(scores, key=lambda p: -scores[p])[:k]


def test_reciprocal_rank_fusion_matches_reference():
    rng = random.Random(1)
    patents = [f"D{i}" for i in range(12)]
    for _ in range(30):
        rankings = [[hit(p, 1, 0.5) for p in rng.sample(patents, 8)] for _ in range(2)]
        fused = [h.patent for h in reciprocal_rank_fusion(rankings, 5)]
        expected = brute_force_rrf(rankings, 5)
        # equal RRF scores may tie; compare the score sequences, then the membership
        assert len(fused) == len(expected) == 5
        ref_scores = {p: sum(1 / (60 + r.index(p) + 1) for r in
                             ([h.patent for h in x] for x in rankings) if p in r)
                      for p in patents}
        assert [round(ref_scores[p], 12) for p in fused] == [
            round(ref_scores[p], 12) for p in expected]


def test_rrf_prefers_items_ranked_high_in_both_lists():
    a = [hit(p, 1, 0.5) for p in ("D1", "D2", "D3", "D5", "D6")]
    b = [hit(p, 1, 0.5, "caption") for p in ("D4", "D2", "D7", "D8", "D3")]
    # D2: 2/62; D3: 1/63 + 1/65; D1 and D4: 1/61 (tie broken by first seen)
    assert [h.patent for h in reciprocal_rank_fusion([a, b], 4)] == ["D2", "D3", "D1", "D4"]


def test_rrf_keeps_best_ranked_representative():
    a = [hit("D1", 2, 0.9), hit("D2", 1, 0.8)]
    b = [hit("D2", 5, 0.99, "caption"), hit("D1", 7, 0.5, "caption")]
    fused = {h.patent: h for h in reciprocal_rank_fusion([a, b], 2)}
    assert (fused["D1"].sheet, fused["D2"].sheet) == (2, 5)
    assert fused["D2"].score == pytest.approx(1 / 62 + 1 / 61)  # the fused score
    assert list(itertools.islice(fused, 2))  # both present


def test_fusion_depth_is_a_fixed_ladder_so_pages_agree():
    from patentclip.search.ranking import fusion_depth

    assert {fusion_depth(d, MAX_SEARCH_LIMIT) for d in range(1, 51)} == {100}
    assert fusion_depth(51, MAX_SEARCH_LIMIT) == 200
    assert fusion_depth(1000, MAX_SEARCH_LIMIT) == 3200


def test_a_collection_without_figure_or_part_rows_costs_no_region_lookup_per_search():
    """Why-it-matched looks regions up only where the collection holds them; a "no" is
    kept for a while (REGIONS_RECHECK_S), so plain collections pay one check, not one a
    search."""
    import numpy as np

    from patentclip.search.engine import SearchEngine, SearchRequest
    from patentclip.search.query import Query
    from patentclip.store import CollectionInfo

    asked = []

    class Encoder:
        model_version, dim = "m1", 2

        def encode_texts(self, texts, timeout=None):
            return np.ones((len(texts), 2), np.float32)

    class Store:
        def describe(self, name):
            return CollectionInfo(name=name, model_version="m1", dim=2, rows=1)

        def lexical_off(self, collection):
            return "off"

        def search(self, collection, vectors, k, filters=None, modality=None, group=True,
                   timeout=None, on_stage=None):
            return [[hit("D0900001", 1, 0.9, "drawing")] for _ in vectors]

        def has_region_rows(self, collection, timeout=None):
            asked.append("has")
            return False

        def region_rows(self, collection, sheets, timeout=None):
            raise AssertionError("no region rows to look up")

    engine = SearchEngine(Encoder(), Store(), "c")
    for _ in range(3):
        assert engine.search(Query(text="lid"), SearchRequest()).hits[0].region is None
    assert asked == ["has"]
