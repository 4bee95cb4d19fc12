"""Pure logic behind GetDrawing and the web app: rendering and its bounded cache, crops,
Locarno counts, the web search body's validation and the exported search record."""

from __future__ import annotations

import base64
import csv
import io

import pytest
from PIL import Image

from patentclip.drawings import DrawingRenderer, long_edge, render_png
from patentclip.errors import ImageTooLargeError, InvalidQueryError, PatentClipError
from patentclip.images import CropBox
from patentclip.search import locarno_counts
from patentclip.store import Hit
from services.query.web import api
from services.query.web.app import HTTP_STATUS_BY_ERROR


def _sheet(width: int, height: int) -> bytes:
    """A bilevel CCITT G4 TIFF with a black frame, as USPTO ships drawing sheets."""
    image = Image.new("1", (width, height), 1)
    for x in range(width):
        image.putpixel((x, 0), 0)
        image.putpixel((x, height - 1), 0)
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", compression="group4")
    return buffer.getvalue()


def _png(rendered) -> Image.Image:
    image = Image.open(io.BytesIO(rendered.png))
    assert image.format == "PNG" and image.size == (rendered.width, rendered.height)
    return image


def test_render_scales_to_the_long_edge_keeping_the_aspect_and_never_enlarges():
    sheet = _sheet(1700, 2200)
    thumbnail = _png(render_png(sheet, 256))
    assert thumbnail.size == (198, 256)
    assert _png(render_png(sheet, 1024)).size == (791, 1024)
    full = _png(render_png(sheet, None))
    assert full.size == (1700, 2200) and full.mode == "1"  # bilevel stays 1-bit
    assert _png(render_png(_sheet(100, 50), 256)).size == (100, 50)


def test_size_names_are_checked():
    assert long_edge("thumbnail") == 256 and long_edge("full") is None
    with pytest.raises(InvalidQueryError, match="thumbnail, medium, full"):
        long_edge("huge")


def test_renders_are_cached_by_uri_and_size_and_the_cache_stays_within_its_bytes():
    sheets = {f"file:///s/{i}.tif": _sheet(800, 1000 + i) for i in range(4)}
    reads, lookups = [], []
    renderer = DrawingRenderer(lambda uri: reads.append(uri) or sheets[uri], cache_bytes=10**9,
                               on_cache=lookups.append)
    first = renderer.render("file:///s/0.tif", "thumbnail")
    assert renderer.render("file:///s/0.tif", "thumbnail") is first
    renderer.render("file:///s/0.tif", "medium")
    assert reads == ["file:///s/0.tif"] * 2 and lookups == [False, True, False]
    one = len(first.png)
    small = DrawingRenderer(sheets.__getitem__, cache_bytes=int(2.5 * one))
    for uri in sheets:
        small.render(uri, "thumbnail")
    assert small.cached_bytes <= 2.5 * one and len(small._cache) == 2
    assert [uri for uri, _ in small._cache] == list(sheets)[-2:]  # the most recent


def test_a_crop_is_fractions_of_the_drawing_and_is_validated():
    assert CropBox(0.1, 0.2, 0.6, 0.7).pixels(1000, 2000) == (100, 400, 600, 1400)
    assert CropBox(0.5, 0.5, 0.5001, 0.5001).pixels(10, 10) == (5, 5, 6, 6)  # >= 1 pixel
    with pytest.raises(InvalidQueryError, match="left < right"):
        CropBox(0.6, 0.0, 0.4, 1.0)
    with pytest.raises(InvalidQueryError, match="between 0 and 1"):
        CropBox(-0.1, 0.0, 0.5, 1.2)


def _hit(patent: str, locarno: str) -> Hit:
    return Hit(patent=patent, sheet=1, modality="drawing", score=0.5, view="front",
               locarno=locarno, grant_date=20210105, title="t", figures="1", caption="c",
               image_uri="")


def test_locarno_counts_count_classes_most_first():
    hits = [_hit("D1", "0901"), _hit("D2", "2606"), _hit("D3", "0905"), _hit("D4", "")]
    assert locarno_counts(hits) == (("09", 2), ("", 1), ("26", 1))


@pytest.mark.parametrize(("body", "words"), [
    ({}, "give a description, a drawing or a patent number"),
    ({"text": "lid", "patent": "D907,292"}, "takes no text or drawing"),
    ({"patent": "a lamp"}, "patent 'a lamp': not a patent number"),
    ({"text": "lid", "filters": {"date_from": "2021-13-01"}}, "filters.date_from"),
    ({"text": "lid", "page_size": 500}, "page_size"),
    ({"text": "lid", "page": 50, "page_size": 24}, r"offset=1200: offset \+ top_k"),
    ({"image": "not base64!"}, "image: not base64"),
    ({"text": "lid", "crop": {"left": 0.5, "top": 0, "right": 0.2, "bottom": 1}}, "left < right"),
    ({"text": "lid", "filters": {"views": ["sideways"]}}, "view filter 'sideways'"),
])
def test_a_web_search_body_is_refused_by_field(body, words):
    with pytest.raises(InvalidQueryError, match=words):
        api.Query(api.SearchIn(**body), max_image_bytes=1000, timeout_s=5)


def test_a_web_search_body_becomes_a_request_and_says_what_it_is():
    image = base64.b64encode(b"x" * 10).decode()
    query = api.Query(api.SearchIn(text=" hinged lid ", image=image, image_name="s.png",
                                   filters={"date_from": "2021-01-05", "locarno": ["09"]},
                                   page=2, page_size=10), max_image_bytes=1000, timeout_s=5)
    assert query.kind == "text+drawing" and query.text == "hinged lid"
    assert query.request.offset == 20 and query.request.top_k == 10
    assert query.request.filters.date_from == 20210105 and query.request.count_depth == 200
    described = query.described()
    assert described["image_bytes"] == 10 and len(described["image_sha256"]) == 64
    with pytest.raises(ImageTooLargeError, match="limit 5"):
        api.Query(api.SearchIn(image=image), max_image_bytes=5, timeout_s=5)
    similar = api.Query(api.SearchIn(patent="USD0907292S1", sheet=2), 1000, 5)
    assert (similar.kind, similar.patent) == ("similar", "D0907292")


def test_the_search_record_exports_as_one_flat_csv_table():
    query = api.Query(api.SearchIn(text='a "quoted", lid'), 1000, 5)
    result = type("Result", (), {"hits": [_hit("D0900001", "0901"), _hit("D0900002", "2606")],
                                 "locarno_counts": (("09", 1), ("26", 1)), "counted": 2,
                                 "model_version": "v1", "collection": "c1"})()
    response = api.search_response(query, result)
    assert [h["rank"] for h in response["hits"]] == [1, 2]
    rows = list(csv.DictReader(io.StringIO(api.record_csv(response["record"]))))
    assert [r["patent"] for r in rows] == ["D0900001", "D0900002"]
    assert {r["query_text"] for r in rows} == {'a "quoted", lid'}
    assert {r["model_version"] for r in rows} == {"v1"}
    with pytest.raises(InvalidQueryError, match="not a search record"):
        api.record_csv({"query": {}})


def test_the_uspto_link_uses_the_number_without_padding():
    assert "q=D907292.pn." in api.uspto_url("D0907292")
    assert "q=D1049406.pn." in api.uspto_url("D1049406")


def test_the_http_status_table_lists_subclasses_before_their_bases():
    errors = [error for error, _, _ in HTTP_STATUS_BY_ERROR]
    assert all(issubclass(e, PatentClipError) for e in errors)
    for i, later in enumerate(errors):
        assert not any(issubclass(later, earlier) for earlier in errors[:i]), later
