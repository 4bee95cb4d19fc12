"""Pure logic behind GetDrawing and the web app: rendering and its bounded cache, crops,
Locarno counts, the web search body's validation and the exported search record."""

from __future__ import annotations

import base64
import csv
import io
import re

import grpc
import pytest
from PIL import Image
from pydantic import ValidationError

from harness import REPO
from patentclip.drawings.preprocess import CropBox
from patentclip.drawings.render import DrawingRenderer, long_edge, render_png
from patentclip.errors import (
    ERROR_ANSWERS,
    INTERNAL_ANSWER,
    ImageTooLargeError,
    InvalidInputError,
    InvalidQueryError,
    OverloadedError,
    PatentClipError,
)
from patentclip.search.admission import Admission
from patentclip.search.engine import SearchResult, locarno_counts
from patentclip.store import Hit
from services.query.config import LOOPBACK_NAMES, ServerSettings
from services.query.http import api
from services.query.http.edge import RoutePolicy, error_body, policy_for
from services.query.plane import paging


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
               locarno=locarno, grant_date=20210105, title="t", figures=("1",), caption="c",
               image_uri="")


def test_locarno_counts_count_classes_most_first():
    hits = [_hit("D1", "0901"), _hit("D2", "2606"), _hit("D3", "0905"), _hit("D4", "")]
    assert locarno_counts(hits) == (("09", 2), ("", 1), ("26", 1))


@pytest.mark.parametrize(("body", "words"), [
    ({}, "give a description, a drawing or a patent number"),
    ({"text": "lid", "patent": "D907,292"}, "takes no text or image"),
    ({"patent": "a lamp"}, "patent 'a lamp': not a patent number"),
    ({"text": "lid", "filters": {"date_from": "2021-13-01"}}, "filters.date_from"),
    ({"text": "lid", "page_size": 500}, "page_size"),
    ({"text": "lid", "page_token": paging.token(1200, "v1")}, r"offset=1200: offset \+ top_k"),
    ({"text": "lid", "page_token": paging.token(24, "v0")}, "page_token: issued by model v"),
    ({"text": "lid", "page_token": "not a token"}, "page_token: not a token this service issued"),
    ({"text": "lid", "sheet": 2}, "sheet: only a 'more like this' search has a sheet"),
    ({"image": "not base64!"}, "image: not base64"),
    ({"text": "lid", "crop": {"left": 0.5, "top": 0, "right": 0.2, "bottom": 1}}, "left < right"),
    ({"text": "lid", "filters": {"views": ["sideways"]}}, "view filter 'sideways'"),
])
def test_a_web_search_body_is_refused_by_field(body, words):
    with pytest.raises(InvalidQueryError, match=words):
        api.WebSearch(api.SearchIn(**body), max_image_bytes=1000, timeout_s=5,
                      model_version="v1")


def test_a_web_search_body_becomes_a_request_and_says_what_it_is():
    image = base64.b64encode(b"x" * 10).decode()
    query = api.WebSearch(api.SearchIn(text=" hinged lid ", image=image, image_name="s.png",
                                   filters={"date_from": "2021-01-05", "locarno": ["09"]},
                                   page_token=paging.token(20, "v1"), page_size=10),
                          max_image_bytes=1000, timeout_s=5, model_version="v1")
    assert query.query.kind == "text+drawing" and query.query.text == "hinged lid"
    assert query.request.offset == 20 and query.request.top_k == 10
    assert query.request.filters.date_from == 20210105 and query.request.count_depth == 200
    described = query.described()
    assert described["image_bytes"] == 10 and len(described["image_sha256"]) == 64
    with pytest.raises(ImageTooLargeError, match="limit 5"):
        api.WebSearch(api.SearchIn(image=image), max_image_bytes=5, timeout_s=5,
                      model_version="v1")
    similar = api.WebSearch(api.SearchIn(patent="USD0907292S1", sheet=2), 1000, 5, "v1")
    assert (similar.query.kind, similar.query.patent, similar.query.sheet) == (
        "similar", "D0907292", 2)


def test_the_search_record_exports_as_one_flat_csv_table():
    query = api.WebSearch(api.SearchIn(text='a "quoted", lid'), 1000, 5, "v1")
    result = SearchResult([_hit("D0900001", "0901"), _hit("D0900002", "2606")], "v1", "c1",
                          (("09", 1), ("26", 1)), 2)
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


def test_the_error_table_lists_subclasses_before_their_bases():
    errors = [error for error, _ in ERROR_ANSWERS]
    assert all(issubclass(e, PatentClipError) for e in errors)
    for i, later in enumerate(errors):
        assert not any(issubclass(later, earlier) for earlier in errors[:i]), later


def test_every_row_of_the_error_table_is_a_real_code_on_each_transport():
    """The table's columns are plain values (the core imports no transport): each gRPC
    name is a grpc.StatusCode, each HTTP status a refusal, and the web, gRPC and OpenAI
    answers agree on who is at fault (4xx with a client's OpenAI type)."""
    for error, answer in (*ERROR_ANSWERS, (Exception, INTERNAL_ANSWER)):
        assert grpc.StatusCode[answer.grpc] is not grpc.StatusCode.OK, error
        assert 400 <= answer.http < 600, error
        client = answer.http < 500
        assert (answer.openai_type != "server_error") == client, error


# ----------------------------------------------------------------- hostile data at the edge

STATIC = REPO / "services" / "query" / "http" / "static"


def test_the_page_never_builds_html_from_strings():
    """Data reaches the DOM through textContent and attributes only: any HTML-string sink
    in the page's code fails this test (the CSP's Trusted Types would refuse it too)."""
    scripts = list(STATIC.glob("*.js"))
    assert scripts, STATIC
    for path in scripts:
        code = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "createContextualFragment", "DOMParser", "eval(", "new Function"):
            assert sink not in code, f"{path.name} uses {sink}"


def test_the_page_is_es_modules_that_build_dom_one_way():
    """No build step: the browser loads app.js as a module and it imports the others by
    relative path; only dom.js creates elements (el(), the one DOM helper)."""
    assert '<script type="module" src="/app.js">' in (STATIC / "index.html").read_text()
    modules = {p.name: p.read_text() for p in STATIC.glob("*.js")}
    imported = {name for code in modules.values()
                for name in re.findall(r'^import .* from "\./([\w-]+\.js)";$', code, re.M)}
    assert imported == set(modules) - {"app.js"}, "a module nothing imports, or a missing one"
    assert [n for n, code in modules.items() if "createElement" in code] == ["dom.js"]
    assert not [n for n, code in modules.items() if re.search(r'from "(?!\./)', code)]


def test_the_page_has_a_message_for_every_kind_the_server_sends():
    code = (STATIC / "messages.js").read_text()
    messages = set(re.findall(r"^  (\w+): \"", code.split("const MESSAGES = {")[1]
                              .split("};")[0], re.MULTILINE))
    kinds = {answer.kind for _, answer in ERROR_ANSWERS} | {INTERNAL_ANSWER.kind}
    kinds |= {"auth", "permission", "host", "too_large", "malformed"}  # the edge's refusals
    assert kinds <= messages, f"no message for {sorted(kinds - messages)}"


def test_every_control_of_the_page_has_a_label():
    html = (STATIC / "index.html").read_text()
    labelled = set(re.findall(r'<label for="([\w-]+)"', html))
    for tag in re.findall(r"<(?:input|textarea|select)\b[^>]*>", html):
        ident = re.search(r'id="([\w-]+)"', tag)[1]
        assert ident in labelled or "aria-label" in tag or re.search(
            rf"<label>[^<]*<input id=\"{ident}\"", html), f"#{ident} has no label"


@pytest.mark.parametrize("cell, shown", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("-0.125", "-0.125"), ("Bottle", "Bottle"), ("1e-05", "1e-05"),
])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell, shown):
    assert api.neutralized(cell) == shown


def test_an_exported_record_with_formulas_and_odd_stamps_is_safe():
    query = api.WebSearch(api.SearchIn(text="lid"), 1000, 5, "v1")
    hit = _hit("D0900001", "0901")
    result = SearchResult([hit], "v1", "c1")
    record = api.search_response(query, result)["record"]
    record["results"][0]["title"] = '=HYPERLINK("http://evil","x")'
    record["searched_at"] = 'ünï"\r\nSet-Cookie: x'
    text, name = api.export_record(api.RecordIn(**record).model_dump(mode="json"), "csv")
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["title"].startswith("'=HYPERLINK")
    assert re.fullmatch(r"patentclip-search-[0-9A-Za-z+-]*", name)  # a plain header value


@pytest.mark.parametrize("body, words", [
    (b"[" * 5000 + b"]" * 5000, "not JSON"),  # Python's parser recursion
    (b"[" * 40 + b"]" * 40, "deeper than 32"),
    (b'{"a": "\xff"}', "not JSON"),
    (b"{", "not JSON"),
])
def test_bodies_that_are_not_json_or_too_deep_are_refused_by_name(body, words):
    with pytest.raises(InvalidQueryError, match=words):
        api.parse_json(body, "the body")


def test_a_lone_surrogate_is_refused_naming_the_field():
    with pytest.raises(InvalidQueryError, match="text: not valid Unicode"):
        api.WebSearch(api.SearchIn(text="bottle \ud800"), 1000, 5, "v1")
    with pytest.raises((InvalidQueryError, ValidationError), match="image_name"):
        api.WebSearch(api.SearchIn(text="bottle", image_name="\udfff"), 1000, 5, "v1")


def test_each_route_has_its_body_limit_and_its_token_rule():
    assert policy_for("/api/search", 3000) == RoutePolicy(True, 4000 + 64 * 1024, "api")
    assert policy_for("/api/preview", 3000) == RoutePolicy(True, 3000, "api")
    assert policy_for("/api/info", 3000) == RoutePolicy(True, 0, "api")
    assert policy_for("/api/openapi.json", 3000).auth is False
    assert policy_for("/v1/embeddings", 3000).protocol == "openai"
    assert policy_for("/embed", 3000).protocol == "tei"
    assert policy_for("/health", 3000) == RoutePolicy(False, 0, "plain")
    assert policy_for("/app.js", 3000) == RoutePolicy(False, 0, "plain")


def test_refusals_answer_in_the_routes_own_protocol():
    assert error_body("api", 401, "auth", "no")["kind"] == "auth"
    assert error_body("openai", 401, "auth", "no")["error"]["type"] == "authentication_error"
    assert error_body("tei", 413, "too_large", "no")["error_type"] == "Validation"


def test_a_refused_small_body_is_read_into_nothing_and_a_large_one_left_unread():
    """Closing on an unread body resets the connection (the client can lose the 401): a
    refused request's small declared body is drained first; a large or chunked one is not
    (it is never parsed either way)."""
    import asyncio

    from services.query.http.edge import DISCARD_BYTES, _discard_small_body

    def run(length: str | None, parts: list[bytes]) -> int:
        pending = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                   for i, p in enumerate(parts)]
        taken = []

        async def receive():
            taken.append(pending.pop(0))
            return taken[-1]

        headers = [(b"content-length", length.encode())] if length is not None else []
        asyncio.run(_discard_small_body({"type": "http", "headers": headers}, receive))
        return len(taken)

    assert run("6", [b"abc", b"def"]) == 2  # drained: the close is clean
    assert run(str(DISCARD_BYTES + 1), [b"x"]) == 0  # too large: left unread
    assert run(None, [b"chunked"]) == 0  # no declared length: left unread


def test_admission_bounds_holders_and_refuses_after_the_wait():
    refused = []
    admission = Admission(1, 0.05, on_refused=refused.append)
    with admission.slot("a"):
        with pytest.raises(OverloadedError, match="b: 1 already in flight") as info:
            with admission.slot("b"):
                pass
        assert info.value.retry_after_s >= 1
    with admission.slot("c"):  # released: free again
        pass
    assert refused == ["b"]


@pytest.mark.parametrize("host, tokens, allow, ok", [
    ("127.0.0.1", False, False, True), ("localhost", False, False, True),
    ("::1", False, False, True), ("0.0.0.0", False, False, False),
    ("10.1.2.3", False, False, False), ("0.0.0.0", True, False, True),
    ("0.0.0.0", False, True, True),
])
def test_no_listener_beyond_loopback_without_tokens_unless_said(host, tokens, allow, ok):
    settings = ServerSettings(host=host, allow_unauthenticated=allow)
    if ok:
        settings.check_exposure(tokens)
    else:
        with pytest.raises(InvalidInputError, match="without a token"):
            settings.check_exposure(tokens)


def test_http_on_another_address_than_grpc_is_checked_too():
    with pytest.raises(InvalidInputError, match="HTTP on 0.0.0.0"):
        ServerSettings(host="127.0.0.1", http_port=8080, http_host="0.0.0.0").check_exposure(False)
    assert ServerSettings(host="127.0.0.1").allowed_hosts() == LOOPBACK_NAMES
    assert ServerSettings(host="0.0.0.0").allowed_hosts() == ()
    assert ServerSettings(http_allowed_hosts="Search.Example, x:8080").allowed_hosts() == (
        "search.example", "x:8080")
