"""Searching over gRPC: every query kind (the one Search RPC and the RPCs of one kind), filters,
grouping, pages, fusion, crops, Locarno counts, concurrency.

The service is the package's one (conftest.py): the 40 real sample grants, indexed with
the tiny model into Milvus Lite, served on free ports."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from PIL import Image

from harness.query_service import MAX_IMAGE_BYTES, rpc_code
from patentclip.v1 import grant_pb2, search_pb2
from patentclip_client import PatentSearchClient


def test_text_search_names_the_model_and_fills_every_hit_field(client, encoder, corpus):
    page = client.search_text("front perspective view of a shaving cartridge", k=5)
    assert page.model_version == encoder.model_version and page.collection == corpus[3]
    assert len(page.hits) == 5 and len({h.patent_number for h in page.hits}) == 5
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True)
    for h in page.hits:
        assert h.patent_number in corpus[2] and h.title and h.grant_date >= 20210101
        assert h.locarno and h.image_uri.startswith("file://") and h.matched in (
            "drawing", "caption", "words") and h.view_name
        assert h.found_by and set(h.found_by) <= {"drawing", "caption", "words"}


def test_words_are_matched_as_words_by_the_lexical_leg(client, corpus):
    """Milvus Lite has full-text search: a text query's default legs include BM25 over the
    patents' words; AGAINST_WORDS alone returns only patents whose words hold the term, and
    fused, a patent whose title says "microphone" is found by the words leg."""
    assert client.server_info().lexical and not client.server_info().lexical_note
    page = client.search(text="microphone", k=5)
    assert page.legs == ["drawing", "caption", "words"] and not page.legs_note
    assert "words" in page.hits[0].found_by and "Microphone" in page.hits[0].title
    words = client.search(text="shoe", k=10, against="words")
    assert words.legs == ["words"] and {h.title for h in words.hits} == {"Shoe", "Shoe midsole"}
    assert all(h.matched == "words" and h.found_by == ["words"] for h in words.hits)
    assert len(words.hits) == 5 and words.next_page_token == ""  # the 5 shoe patents, no more
    dense = client.search(text="shoe", k=10, against="both")
    assert all("words" not in h.found_by for h in dense.hits)


def test_filters_narrow_results(client, corpus):
    documents = corpus[2]
    locarno = next(iter(documents.values())).grant.locarno.code[:2]
    page = client.search_text("a design", k=50, locarno=[locarno])
    assert page.hits and all(h.locarno.startswith(locarno) for h in page.hits)
    dates = sorted({d.grant.grant_date for d in documents.values()})
    from datetime import date as d

    cut = d(dates[-1] // 10000, dates[-1] // 100 % 100, dates[-1] % 100)
    page = client.search_text("a design", k=50, date_from=cut)
    assert page.hits and all(h.grant_date >= dates[-1] for h in page.hits)
    page = client.search_text("a design", k=50, views=["front"], group=False)
    assert page.hits and all(h.view_name == "front" for h in page.hits)


def test_grouping_off_returns_sheets(client):
    grouped = client.search_text("bottle", k=30)
    sheets = client.search_text("bottle", k=30, group=False)
    assert len({h.patent_number for h in grouped.hits}) == len(grouped.hits)
    assert len({(h.patent_number, h.sheet) for h in sheets.hits}) == len(sheets.hits)
    assert len({h.patent_number for h in sheets.hits}) < len(sheets.hits)


@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "JPEG"])
def test_image_search_finds_the_drawing_it_was_given(client, corpus, fmt):
    document = next(d for d in corpus[2].values() if len(d.images) > 1)
    name, data = sorted(document.images.items())[1]
    if fmt != "TIFF":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("L").save(buffer, fmt)
        data = buffer.getvalue()
    page = client.search_image(data, k=3)
    assert page.hits[0].patent_number == document.grant.patent_number


def test_similar_excludes_the_patent_itself(client, corpus):
    patent = next(iter(corpus[2]))
    page = client.search_similar(patent, k=10)
    assert len(page.hits) == 10 and patent not in {h.patent_number for h in page.hits}
    assert rpc_code(lambda: client.search_similar("D0000001"))[0] == grpc.StatusCode.NOT_FOUND
    code, details = rpc_code(lambda: client.search_similar("not a patent"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "patent number" in details


def test_pages_continue_where_the_last_ended(client):
    whole = client.search_text("container", k=12)
    first = client.search_text("container", k=6)
    second = client.search_text("container", k=6, page_token=first.next_page_token)
    assert [h.patent_number for h in first.hits + second.hits] == \
        [h.patent_number for h in whole.hits]


def test_the_search_rpc_answers_every_kind_as_the_rpc_of_that_kind(server, client, corpus):
    """One Search over the API's Query message, and the four RPCs of one kind each (kept
    for existing clients): the same query gives the same page either way."""
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 1)
    drawing = sorted(document.images.values())[1]
    crop = (0.1, 0.1, 0.9, 0.9)
    pairs = [(client.search_text("bottle", k=5), {"text": "bottle"}),
             (client.search_image(drawing, k=5, crop=crop), {"image": drawing, "crop": crop}),
             (client.search_text_and_image("bottle", drawing, k=5),
              {"text": "bottle", "image": drawing}),
             (client.search_similar(patent, k=5, sheet=1), {"patent": patent, "sheet": 1})]
    for legacy, fields in pairs:
        page = client.search(5, **fields)
        assert [(h.patent_number, h.sheet) for h in page.hits] == [
            (h.patent_number, h.sheet) for h in legacy.hits], fields
        assert page.hits and page.next_page_token == legacy.next_page_token
    code, details = rpc_code(lambda: client.search(5, text="lid", patent=patent))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "takes no text or image" in details
    code, details = rpc_code(lambda: client.search(5, image=b"\0" * (MAX_IMAGE_BYTES + 1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == f"query.image: {MAX_IMAGE_BYTES + 1} bytes, limit {MAX_IMAGE_BYTES}"


def test_views_enum_round_trips_through_the_client():
    from patentclip_client import search_options

    options = search_options(5, views=["front", "in-use"])
    assert list(options.filters.views) == [grant_pb2.VIEW_FRONT, grant_pb2.VIEW_IN_USE]
    assert isinstance(options, search_pb2.SearchOptions)


def test_text_and_drawing_together_fuse_two_rankings(client, corpus):
    document = next(d for d in corpus[2].values() if len(d.images) > 1)
    patent = document.grant.patent_number
    _, data = sorted(document.images.items())[1]
    page = client.search_text_and_image(document.grant.title, data, k=10)
    assert patent in [h.patent_number for h in page.hits[:3]]
    assert all(0 < h.score <= 2 / 61 + 1e-6 for h in page.hits)  # reciprocal-rank scores
    locarno = document.grant.locarno.code[:2]
    filtered = client.search_text_and_image("a design", data, k=20, locarno=[locarno])
    assert filtered.hits and all(h.locarno.startswith(locarno) for h in filtered.hits)
    code, details = rpc_code(lambda: client.search_text_and_image("  ", data))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "text query is empty" in details
    code, details = rpc_code(lambda: client.search_text_and_image("lid", b""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image: empty" in details


def test_a_cropped_drawing_searches_for_that_part(client, corpus):
    document = next(d for d in corpus[2].values() if len(d.images) > 1)
    _, data = sorted(document.images.items())[1]
    whole = client.search_image(data, k=10, group=False)
    part = client.search_image(data, k=10, group=False, crop=(0.0, 0.0, 0.5, 0.5))
    assert [h.score for h in part.hits] != [h.score for h in whole.hits]
    code, details = rpc_code(lambda: client.search_image(data, crop=(0.6, 0.0, 0.4, 1.0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "left < right" in details


def test_locarno_counts_cover_the_stated_window(client, corpus):
    from collections import Counter

    expected = Counter(d.grant.locarno.code[:2] for d in corpus[2].values())
    page = client.search_text("a design", k=5, locarno_counts_depth=1000)
    assert len(page.hits) == 5 and page.counted_results == len(corpus[2])
    assert page.locarno_counts == dict(expected)
    first_ten = client.search_text("a design", k=10)
    shallow = client.search_text("a design", k=5, locarno_counts_depth=10)
    assert shallow.counted_results == 10
    assert shallow.locarno_counts == dict(Counter(h.locarno[:2] for h in first_ten.hits))
    top = max(expected, key=expected.get)
    narrowed = client.search_text("a design", k=5, locarno=[top], locarno_counts_depth=200)
    assert narrowed.locarno_counts == {top: expected[top]}
    assert client.search_text("a design", k=5).locarno_counts == {}  # only when asked
    code, details = rpc_code(lambda: client.search_text("a", locarno_counts_depth=1001))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "locarno_counts_depth" in details


def test_more_like_one_sheet_uses_only_that_sheets_drawing(client, corpus):
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 2)
    one = client.search_similar(patent, k=10, sheet=1)
    every = client.search_similar(patent, k=10)
    assert patent not in {h.patent_number for h in one.hits}
    assert [h.score for h in one.hits] != [h.score for h in every.hits]
    code, details = rpc_code(lambda: client.search_similar(patent, sheet=999))
    assert code == grpc.StatusCode.NOT_FOUND and "no drawing sheet 999" in details


def test_a_text_search_against_drawings_reaches_every_patent(client, corpus):
    """Every sample patent is reachable from every title, against drawings and against
    captions. Before drawings and captions were partitions of their own, Milvus Lite's
    filtered HNSW walk returned 0 of 372 drawing rows for "Shaving blade cartridge" (its
    text vector lands among the captions, across CLIP's modality gap)."""
    patents = len(corpus[2])
    for document in corpus[2].values():
        for against in ("drawing", "caption"):
            page = client.search_text(document.grant.title, k=patents, against=against)
            assert len(page.hits) == patents, (document.grant.title, against)


def test_thirty_two_concurrent_clients_get_the_single_client_results(client, server):
    queries = ["lamp", "bottle", "chair", "shoe", "container with lid", "vehicle", "toy",
               "handle"]
    expected = {q: [h.patent_number for h in client.search_text(q, k=10).hits]
                for q in queries}
    target = f"127.0.0.1:{server.port}"

    def run(i):
        with PatentSearchClient(target, timeout=60) as own:
            rotated = queries[i % 8:] + queries[:i % 8]
            return [(q, [h.patent_number for h in own.search_text(q, k=10).hits])
                    for q in rotated[:3]]

    with ThreadPoolExecutor(32) as pool:
        for answers in pool.map(run, range(32)):
            for q, patents in answers:
                assert patents == expected[q]
