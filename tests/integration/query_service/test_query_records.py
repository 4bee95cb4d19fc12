"""What a hit leads to over gRPC: the patent's record, its drawings in every size, the encoders and
the server's facts.

The service is the package's one (conftest.py): the 40 real sample grants, indexed with
the tiny model into Milvus Lite, served on free ports."""

from __future__ import annotations

import io

import grpc
import numpy as np
from PIL import Image

from harness.query_service import rpc_code
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.v1 import search_pb2


def test_get_patent_returns_metadata_sheets_and_figure_descriptions(client, corpus):
    patent, document = next((p, d) for p, d in corpus[2].items() if d.grant.figures)
    grant = client.get_patent(patent).grant
    assert grant.patent_number == patent and grant.title == document.grant.title
    assert grant.locarno.code == document.grant.locarno.code
    assert [f.description for f in grant.figures] == [f.description
                                                      for f in document.grant.figures]
    assert len(grant.sheets) == len(document.images)
    assert all(s.image_uri.startswith("file://") for s in grant.sheets)
    assert rpc_code(lambda: client.get_patent("D0000001"))[0] == grpc.StatusCode.NOT_FOUND


def test_get_patent_lists_its_citations_and_links_them_within_the_corpus(client, corpus):
    """A real grant's citations come back as its XML states them. The shared grants cite
    each other nowhere, so one corpus grant's record is given an examiner's citation of
    another (as a grant citing it would be stored): the cited one is then listed as in the
    corpus, and the other way round as cited by."""
    from dataclasses import replace

    from patentclip.grants.model import Citation

    (cited, _), (citing, document) = list(corpus[2].items())[:2]
    images = LocalImageStore(corpus[1])
    stored = images.get_grant(citing)
    assert [c.doc_number for c in client.get_patent(citing).grant.citations] == [
        c.number for c in document.grant.citations]
    extra = Citation("US", cited[0] + cited[1:].lstrip("0"), "S", 20200100, "Someone",
                     "examiner")
    images.put_grant(replace(stored, citations=(*stored.citations, extra)))
    try:
        response = client.get_patent(citing)
        assert list(response.cited_in_corpus) == [cited]
        assert response.grant.citations[-1].category == 1  # CITATION_CATEGORY_EXAMINER
        back = client.get_patent(cited).cited_by
        assert [(c.patent_number, c.category) for c in back] == [(citing, 1)]
    finally:
        images.put_grant(stored)  # the record as indexed; the marker stays (a later
        # grant citing it would leave one too)


def test_encode_rpcs_match_the_local_encoder(client, encoder, corpus):
    response = client.encode_texts(["lamp shade", "bottle"])
    vectors = np.array([v.values for v in response.vectors], dtype=np.float32)
    assert response.dim == encoder.dim and response.model_version == encoder.model_version
    np.testing.assert_allclose(vectors, encoder.encode_texts(["lamp shade", "bottle"]),
                               atol=1e-5)
    data = next(iter(next(iter(corpus[2].values())).images.values()))
    response = client.encode_images([data])
    np.testing.assert_allclose(response.vectors[0].values, encoder.encode_drawings([data])[0],
                               atol=1e-5)


def test_server_info(client, encoder, corpus):
    info = client.server_info()
    assert info.model_version == encoder.model_version and info.collection == corpus[3]
    assert info.alias == f"{corpus[0].prefix}_live" and info.dim == encoder.dim
    assert info.corpus_sheets == sum(len(d.images) for d in corpus[2].values())


def test_hits_carry_sheet_refs_and_get_drawing_renders_each_size(client, corpus):
    hit = client.search_text("front perspective view of a bottle", k=3).hits[0]
    assert (hit.drawing.patent_number, hit.drawing.sheet) == (hit.patent_number, hit.sheet)
    source = Image.open(io.BytesIO(LocalImageStore(corpus[1]).get(hit.image_uri)))
    sizes = {}
    for size in ("thumbnail", "medium", "full"):
        reply = client.get_drawing(hit.drawing.patent_number, hit.drawing.sheet, size)
        png = Image.open(io.BytesIO(reply.png))
        assert png.format == "PNG" and png.size == (reply.width, reply.height)
        assert reply.drawing == hit.drawing
        assert list(reply.figure_numbers) == list(hit.figure_numbers)
        sizes[size] = png.size
    assert sizes["full"] == source.size
    for size, edge in (("thumbnail", 256), ("medium", 1024)):
        assert max(sizes[size]) == min(edge, max(source.size))
        ratio = sizes[size][0] / sizes[size][1]
        assert abs(ratio - source.size[0] / source.size[1]) < 0.02  # not distorted


def test_get_drawing_refuses_unknown_sheets_and_bad_references(client, corpus):
    patent = next(iter(corpus[2]))
    assert rpc_code(lambda: client.get_drawing("D0000001", 1))[0] == grpc.StatusCode.NOT_FOUND
    code, details = rpc_code(lambda: client.get_drawing(patent, 999))
    assert code == grpc.StatusCode.NOT_FOUND and f"{patent} has no drawing sheet 999" in details
    code, details = rpc_code(lambda: client.get_drawing("a lamp", 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "drawing.patent_number" in details
    code, details = rpc_code(lambda: client.stub.GetDrawing(search_pb2.GetDrawingRequest(),
                                                         timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "drawing: required" in details


def test_get_patent_lists_the_sheet_references_of_its_drawings(client, corpus):
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 2)
    reply = client.get_patent(patent)
    assert [d.patent_number for d in reply.drawings] == [patent] * len(document.images)
    assert [d.sheet for d in reply.drawings] == sorted(s.number for s in reply.grant.sheets)
    last = reply.drawings[-1]
    assert client.get_drawing(last.patent_number, last.sheet).png.startswith(b"\x89PNG")
