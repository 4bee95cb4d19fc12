"""The store on both backends: Milvus Lite and a real Milvus 2.3.5 server."""

import numpy as np
import pytest

from patentclip.errors import InvalidQueryError, ModelVersionMismatchError, NotFoundError
from patentclip.store import SearchFilters, SheetRow

DIM = 16


def rows(n_patents=6, sheets=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patents):
        for s in range(sheets):
            for modality in ("drawing", "caption"):
                v = rng.normal(size=DIM)
                out.append(SheetRow(
                    patent=f"D09000{p:02d}", sheet=s, modality=modality,
                    vector=v / np.linalg.norm(v), view=("front", "top", "perspective")[s],
                    locarno=("0901", "0204", "2606")[p % 3], grant_date=20210105 + 7 * p,
                    title=f"Design {p}", figures=str(s), caption=f"caption {p}-{s}"))
    return out


def test_upsert_twice_leaves_no_duplicates(store):
    name = store.ensure_collection("m1", DIM)
    data = rows()
    assert store.upsert(name, data) == len(data)
    store.upsert(name, data)
    store.upsert(name, data[:5])
    store.flush(name)
    assert store.count(name) == len(data)
    assert store.count(name, "drawing") == len(data) // 2


def test_search_finds_exact_vector_and_respects_filters(store):
    name = store.ensure_collection("m1", DIM)
    data = rows()
    store.upsert(name, data)
    store.flush(name)
    target = next(r for r in data if r.patent == "D0900004" and r.sheet == 1
                  and r.modality == "drawing")
    top = store.search(name, np.asarray(target.vector), 3, modality="drawing", group=False)[0]
    assert (top[0].patent, top[0].sheet, top[0].modality) == ("D0900004", 1, "drawing")
    assert top[0].score == pytest.approx(1.0, abs=1e-4)
    assert top[0].locarno == "0204" and top[0].title == "Design 4" and top[0].view == "top"

    query = np.asarray(data[0].vector)
    for filters, check in [
        (SearchFilters(locarno=("02",)), lambda h: h.locarno.startswith("02")),
        (SearchFilters(locarno=("2606",)), lambda h: h.locarno == "2606"),
        (SearchFilters(date_from=20210112, date_to=20210126),
         lambda h: 20210112 <= h.grant_date <= 20210126),
        (SearchFilters(views=("front", "top")), lambda h: h.view in ("front", "top")),
        (SearchFilters(exclude_patents=("D0900000",)), lambda h: h.patent != "D0900000"),
    ]:
        hits = store.search(name, query, 50, filters, group=False)[0]
        expected = [r for r in data if check(r)]
        assert hits and all(check(h) for h in hits)
        assert len(hits) == len(expected)  # small collection: every matching row returned


def test_grouping_returns_each_patent_once_with_its_best_sheet(store):
    name = store.ensure_collection("m1", DIM)
    data = rows()
    store.upsert(name, data)
    store.flush(name)
    query = np.asarray(data[7].vector)
    ungrouped = store.search(name, query, 36, group=False)[0]
    grouped = store.search(name, query, 4)[0]
    assert len(grouped) == 4 and len({h.patent for h in grouped}) == 4
    best = {}
    for h in ungrouped:
        best.setdefault(h.patent, h)
    assert [(h.patent, h.sheet, h.modality) for h in grouped] == [
        (h.patent, h.sheet, h.modality) for h in list(best.values())[:4]]


def test_collection_records_its_model_and_refuses_another(store):
    name = store.ensure_collection("model_a", DIM)
    info = store.describe(name)
    assert (info.model_version, info.dim, info.rows) == ("model_a", DIM, 0)
    assert store.ensure_collection("model_a", DIM) == name
    with pytest.raises(ModelVersionMismatchError):
        store.ensure_collection("model_a", DIM * 2)


def test_alias_switches_between_versions(store):
    a = store.ensure_collection("va", DIM)
    b = store.ensure_collection("vb", DIM)
    store.upsert(a, rows()[:4])
    store.flush(a)
    store.set_alias(store.live_alias, a)
    assert store.resolve(store.live_alias) == a
    assert store.describe(store.live_alias).rows == 4
    store.set_alias(store.live_alias, b)
    assert store.resolve(store.live_alias) == b
    with pytest.raises(NotFoundError):
        store.resolve("no_such_collection")


def test_bad_k_is_refused(store):
    name = store.ensure_collection("m1", DIM)
    with pytest.raises(InvalidQueryError):
        store.search(name, np.ones(DIM), 0)


def test_many_query_vectors_in_one_request_match_one_at_a_time(store):
    """search() sends all vectors in one Milvus request (Lite's per-request cost grows with
    the collection); each query still gets its own grouped results, and a query whose first
    candidates held too few patents is fetched again, deeper."""
    name = store.ensure_collection("m1", DIM)
    data = rows(n_patents=12, sheets=3)
    rng = np.random.default_rng(1)
    near = [np.asarray(data[0].vector) + 0.02 * rng.normal(size=DIM) for _ in range(60)]
    many_sheets = [SheetRow(patent="D0911111", sheet=s, modality="drawing",
                            vector=v / np.linalg.norm(v), title="many sheets")
                   for s, v in enumerate(near)]
    store.upsert(name, data + many_sheets)
    store.flush(name)
    queries = np.asarray([data[0].vector, data[9].vector, data[30].vector])
    stages = []
    together = store.search(name, queries, 5, on_stage=lambda s, t: stages.append((s, t)))
    alone = [store.search(name, q, 5)[0] for q in queries]
    assert [[(h.patent, h.sheet) for h in hits] for hits in together] == \
        [[(h.patent, h.sheet) for h in hits] for hits in alone]
    # query 0's 40 first candidates are D0911111's near-copies of it: fetched again
    assert len({h.patent for h in together[0]}) == 5
    assert {s for s, _ in stages} == {"search", "group"}
    assert sum(1 for s, _ in stages if s == "search") == 2  # one request, one deeper one
    assert all(t >= 0 for _, t in stages)


def test_wait_indexed_returns_once_the_index_covers_the_rows(store):
    name = store.ensure_collection("m1", DIM)
    data = rows()
    store.upsert(name, data)
    store.flush(name)
    assert store.wait_indexed(name, timeout=120) == len(data)


def test_a_large_milvus_lite_collection_logs_advice_to_use_the_server(store, caplog,
                                                                        monkeypatch):
    import patentclip.store.lite as store_module

    name = store.ensure_collection("m1", DIM)
    store.upsert(name, rows())
    store.flush(name)
    monkeypatch.setattr(store_module, "LITE_ADVISED_MAX_ROWS", 10)
    store._loaded.discard(name)
    with caplog.at_level("WARNING", logger="patentclip.store"):
        store.load(name)
        store.load(name)
    advice = [r.getMessage() for r in caplog.records if "Milvus Lite" in r.getMessage()]
    if store.is_lite:
        assert len(advice) == 1  # once per collection
        assert "36 rows" in advice[0] and "Milvus server" in advice[0]
    else:
        assert advice == []  # a server is what the advice recommends


def test_a_milvus_lite_server_is_recognised_by_its_version(lite_server, milvus_server_uri):
    """The size advice also reaches deployments that run `milvus-lite server` by URI."""
    from patentclip.store import PatentStore

    with PatentStore(lite_server.uri, prefix="v") as lite, \
            PatentStore(milvus_server_uri, prefix="v") as server:
        assert lite.is_lite and not server.is_lite



def test_a_collection_made_before_modality_partitions_still_searches(store, caplog):
    """Older collections hold both modalities in one partition: the store filters by
    modality there (and warns that a reindex gives complete results)."""
    from patentclip.store.schema import DIM_PROPERTY, VERSION_PROPERTY, milvus_schema

    name = store.collection_name("legacy")
    store.client.create_collection(name, schema=milvus_schema(DIM),
                                   index_params=store._index_params(),
                                   properties={VERSION_PROPERTY: "legacy",
                                               DIM_PROPERTY: str(DIM)})
    data = rows()
    assert store.upsert(name, data) == len(data)
    store.flush(name)
    target = next(r for r in data if r.modality == "caption")
    top = store.search(name, np.asarray(target.vector), 2, modality="caption", group=False)[0]
    assert (top[0].patent, top[0].sheet, top[0].modality) == (target.patent, target.sheet,
                                                              "caption")
    assert {h.modality for h in store.search(name, np.asarray(target.vector), 6,
                                             modality="drawing")[0]} == {"drawing"}
    assert "has no modality partitions" in caplog.text


def test_figure_and_part_rows_are_searched_by_kind_and_keep_their_regions(store):
    """Figure rows live with the sheets (a drawing search finds them), part rows in their
    own partition (only a search that asks for parts finds them); both keyed by region;
    ungrouped results keep one row per sheet; region_rows returns a sheet's parts."""
    from dataclasses import replace

    from patentclip.grants.model import Region
    from patentclip.store.schema import IMAGE_ROWS

    name = store.ensure_collection("m1", DIM)
    data = rows(n_patents=3)
    rng = np.random.default_rng(7)

    def unit():
        v = rng.normal(size=DIM)
        return v / np.linalg.norm(v)

    figure = SheetRow(patent="D0900001", sheet=2, modality="figure", vector=unit(),
                      view="bottom", figures="5", region=Region(0.5, 0.6, 1.0, 0.9))
    tiles = [SheetRow(patent="D0900002", sheet=1, modality="part", vector=unit(), view="top",
                      figures="1", region=Region(x / 4, 0.0, x / 4 + 0.5, 0.5))
             for x in range(3)]
    assert store.upsert(name, data) == len(data)
    store.flush(name)
    assert not store.has_region_rows(name)
    assert store.upsert(name, [figure, *tiles]) == 4
    store.flush(name)
    assert store.has_region_rows(name)
    assert (store.count(name, "figure"), store.count(name, "part")) == (1, 3)
    sheets = store.search(name, np.asarray(figure.vector), 1, modality=IMAGE_ROWS)[0]
    assert (sheets[0].modality, sheets[0].figures, sheets[0].view, sheets[0].region) == (
        "figure", ("5",), "bottom", figure.region)
    tile = tiles[1]
    without = store.search(name, np.asarray(tile.vector), 20, modality=IMAGE_ROWS)[0]
    assert all(h.modality != "part" for h in without)
    found = store.search(name, np.asarray(tile.vector), 2, modality=(*IMAGE_ROWS, "part"),
                         group=False)[0]
    assert (found[0].modality, found[0].region) == ("part", tile.region)
    assert len({(h.patent, h.sheet) for h in found}) == len(found)  # a sheet once
    viewed = store.search(name, np.asarray(figure.vector), 5, SearchFilters(views=("bottom",)),
                          modality=IMAGE_ROWS)[0]
    assert [(h.patent, h.modality) for h in viewed] == [("D0900001", "figure")]
    regions = store.region_rows(name, [("D0900002", 1), ("D0900001", 2), ("D0900000", 0)])
    assert sorted(r["id"] for r in regions) == sorted([figure.id, *(t.id for t in tiles)])
    assert all(len(r["vector"]) == DIM for r in regions)
    # Written again with other tiles (a new tiling, labels read since), the sheet keeps
    # only its new parts; other sheets keep theirs.
    sheet = next(r for r in data if (r.patent, r.sheet, r.modality) == ("D0900002", 1,
                                                                         "drawing"))
    store.upsert(name, [sheet, replace(tiles[0], region=Region(0.0, 0.5, 0.5, 1.0))])
    store.flush(name)
    kept = store.region_rows(name, [("D0900002", 1), ("D0900001", 2)])
    assert sorted(r["id"] for r in kept) == sorted(
        [figure.id, "D0900002-001:part@0,500,500,1000"])


WORDS = {0: "Bottle with a hinged lid", 1: "Microphone stand", 2: "Wheel for a vehicle",
         3: "Hinged box", 4: "Bottle cap", 5: "Lamp shade"}


def test_the_lexical_leg_is_milvus_bm25_where_the_backend_has_it(store, caplog):
    """Milvus Lite 3.x: caption rows carry their words, Milvus' BM25 function ranks them
    (filters and grouping as for vectors). The 2.3.5 server has no full-text search: the
    collection is made without the fields, writes drop the words, and the reason is given
    (and logged once) instead of a lexical search."""
    name = store.ensure_collection("m1", DIM)
    data = [SheetRow(**{**r.__dict__, "text": f"{WORDS[int(r.patent[-2:])]} sheet {r.sheet}"
                        if r.modality == "caption" else ""}) for r in rows()]
    assert store.upsert(name, data) == len(data)
    store.flush(name)
    if store.is_lite:
        assert store.lexical_off(name) == ""
        hits = store.search_words(name, ["hinged lid bottle"], 10)[0]
        assert hits[0].patent == "D0900000"  # all three words; then one word each
        assert all(h.modality == "words" and h.score > 0 for h in hits)
        assert hits[0].score > hits[1].score
        assert {h.patent for h in hits} == {"D0900000", "D0900003", "D0900004"}  # no others
        sheets = store.search_words(name, ["hinged"], 10, group=False)[0]
        assert len(sheets) == 6 and {h.patent for h in sheets} == {"D0900000", "D0900003"}
        only = store.search_words(name, ["bottle"], 10, SearchFilters(locarno=("0901",)))[0]
        assert [h.patent for h in only] == ["D0900000"]  # D0900004 is in class 02
    else:
        reason = store.lexical_off(name)
        assert "no full-text search" in reason and "2.3" in reason
        assert "lexical (BM25) leg off" in caplog.text
        with pytest.raises(InvalidQueryError, match="lexical search is off"):
            store.search_words(name, ["bottle"], 10)
        assert store.count(name) == len(data)  # the words were dropped, the rows kept
