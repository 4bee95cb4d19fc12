"""``make bench-web``: the examiner web app's round trips, measured in a real browser, beside
the same queries over gRPC, in one run; and the screenshots in docs/screenshots/.

    python -m benchmarks.web --out reports/bench-web [--screenshots docs/screenshots]

The query service runs as its own process (``python -m services.query``, text cache off so
every query encodes) over the 50 real sample grants (``../shared``), with a random-weight
ViT-B-32 (``--model tiny``: the test model). Debian's Chromium, driven by Playwright, loads
the app and runs 50 text searches (titles of other 2021 design patents, from the IMPACT
metadata) and 50 drawing searches (sample sheets, uploaded as TIFF). The page's own
``performance.measure("search")`` is the round trip an examiner sees: request, search,
results on screen (thumbnails then load lazily). "Ready" is the time from navigation to
the header filled (the page usable), over fresh page loads. The same texts and drawings
go through the Python gRPC client first, with the same page size and Locarno counts.
GetDrawing thumbnails are timed cold (rendered from the G4 TIFF) and warm (cached).

Writes ``latency.json``, ``latency.md`` and ``latency.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness import REPO
from harness.bench import in_child, random_weights_model
from harness.browser import chromium, drag_crop
from harness.machine import machine
from harness.processes import free_port
from harness.services import QueryProcess

SHARED = REPO.parent / "shared"
SAMPLES = (SHARED / "uspto-sample", SHARED / "uspto-sample-extra")
PAGE_SIZE = 24
COUNTS_DEPTH = 200


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--loads", type=int, default=20, help="fresh page loads timed")
    p.add_argument("--model", choices=("vit-b-32", "tiny"), default="vit-b-32")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-web")
    p.add_argument("--screenshots", type=Path, default=None,
                   help="also write the app's main screens here (docs/screenshots)")
    p.add_argument("--screenshots-only", action="store_true",
                   help="only the screens, over an index with part tiles and USD0919445's "
                   "figure labels read (the part-match and figure screens too)")
    args = p.parse_args(argv)
    if not all(s.is_dir() for s in SAMPLES):
        print(f"{SHARED} lacks the sample grants: nothing to measure", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = _model(args.model, work)
        sheets = in_child(_index, str(model), str(work / "patents.db"), str(work / "images"),
                          args.screenshots_only)
        http_port = free_port()
        service = QueryProcess(model, str(work / "patents.db"), "web", work / "query.log", env={
            "PATENTCLIP_IMAGES_DIR": str(work / "images"),
            "PATENTCLIP_QUERY_TEXT_CACHE_SIZE": "0",
            "PATENTCLIP_QUERY_HTTP_PORT": str(http_port),
            "PATENTCLIP_QUERY_HTTP_HOST": "127.0.0.1"})
        try:
            service.wait_serving(timeout=300)
            if args.screenshots_only:
                screenshots(http_port, args.screenshots or REPO / "docs" / "screenshots",
                            parts=True)
                return 0
            results = measure(service, http_port, args)
            if args.screenshots:
                screenshots(http_port, args.screenshots)
        finally:
            service.terminate()
    results.update(machine=machine(), model=args.model, corpus_sheets=sheets,
                   page_size=PAGE_SIZE, counts_depth=COUNTS_DEPTH, queries=args.queries)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / "latency.md").write_text(table + "\n")
    plot(results, args.out / "latency.png")
    print(table)
    return 0


def _model(name: str, work: Path) -> Path:
    if name == "tiny":
        from patentclip.model.encoder import create_tiny_model

        return create_tiny_model(work / "model")
    return random_weights_model("ViT-B-32", work / "model")


def _index(model_dir: str, uri: str, images: str, parts: bool = False) -> int:
    """The samples indexed in a child process (it must release the Milvus Lite file); with
    ``parts``, part tiles (0.5) and USD0919445's figure labels read."""
    from harness.services import LabelsOf
    from patentclip.drawings.imagestore import LocalImageStore
    from patentclip.drawings.parts import Tiling
    from patentclip.ingest.indexer import Indexer
    from patentclip.model.encoder import Encoder
    from patentclip.store import PatentStore

    store = PatentStore(uri, prefix="web")
    summary = Indexer(Encoder.load(f"local-dir:{model_dir}"), store, LocalImageStore(images),
                      progress=True, tiling=Tiling((0.5,)) if parts else None,
                      labeller=LabelsOf(("D0919445",)) if parts else None
                      ).index(list(SAMPLES))
    store.set_alias(store.live_alias, summary.collection)
    store.close()
    return summary.sheets


def _queries(n: int) -> tuple[list[str], list[tuple[str, bytes]]]:
    """n titles of 2021 design patents (IMPACT metadata), n sample drawing sheets."""
    with open(SHARED / "impact-metadata" / "test2021.csv", newline="") as f:
        titles = list(dict.fromkeys(row["title"] for row in csv.DictReader(f)))
    drawings = sorted(p for s in SAMPLES for p in s.rglob("*.TIF") if not p.stem.endswith("D00000"))
    step = max(1, len(drawings) // n)
    picked = [(p.name, p.read_bytes()) for p in drawings[::step][:n]]
    return titles[:n], picked


def measure(service: QueryProcess, port: int, args) -> dict:
    texts, drawings = _queries(args.queries)
    url = f"http://127.0.0.1:{port}/"
    # gRPC first: its thumbnails are then cold (the browser's results would warm the cache).
    grpc_text, grpc_drawing, cold, warm = _grpc(service, texts, drawings)
    with chromium() as browser, tempfile.TemporaryDirectory() as tmp:
        ready = [_load_time(browser, url) for _ in tqdm(range(args.loads + 2), desc="page loads")]
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_selector("#server-info:has-text('model')")
        for text in texts[:3]:  # warm-up
            _browser_search(page, lambda t=text: page.fill("#query-text", t))
        web_text = [_browser_search(page, lambda t=text: page.fill("#query-text", t))
                    for text in tqdm(texts, desc="browser text searches")]
        page.fill("#query-text", "")
        web_drawing = []
        for name, data in tqdm(drawings, desc="browser drawing searches"):
            path = Path(tmp) / name
            path.write_bytes(data)
            web_drawing.append(_browser_search(page, lambda p=path: _upload(page, p)))
    return {"ready_ms": ready[2:], "web_text_ms": web_text, "web_drawing_ms": web_drawing,
            "grpc_text_ms": grpc_text, "grpc_drawing_ms": grpc_drawing,
            "thumbnail_cold_ms": cold, "thumbnail_warm_ms": warm}


def _load_time(browser, url: str) -> float:
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#server-info:has-text('model')")
    started = page.evaluate("performance.getEntriesByName('ready')[0].startTime")
    page.close()
    return started


def _upload(page, path: Path) -> None:
    """A new query drawing, its preview shown (the search then sends it)."""
    previous = page.get_attribute("#query-preview", "src") or ""
    page.set_input_files("#file-input", str(path))
    page.wait_for_function("previous => { const src = document.querySelector('#query-preview')"
                           ".src; return src.startsWith('blob:') && src !== previous; }",
                           arg=previous)


def _browser_search(page, prepare) -> float:
    """One search through the UI; the page's own measure of it, in ms."""
    before = page.evaluate("performance.getEntriesByName('search').length")
    prepare()
    page.click("#search-button")
    page.wait_for_function("n => performance.getEntriesByName('search').length > n",
                           arg=before)
    return page.evaluate("performance.getEntriesByName('search').at(-1).duration")


def _grpc(service: QueryProcess, texts, drawings):
    from patentclip_client import PatentSearchClient

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    options = {"k": PAGE_SIZE, "locarno_counts_depth": COUNTS_DEPTH}
    with PatentSearchClient(service.target, timeout=60) as client:
        text = [timed(lambda t=t: client.search_text(t, **options))
                for t in tqdm(texts, desc="gRPC text searches")]
        drawing = [timed(lambda d=d: client.search_image(d, **options))
                   for _, d in tqdm(drawings, desc="gRPC drawing searches")]
        hits = client.search_text("a design", k=50).hits
        cold = [timed(lambda h=h: client.get_drawing(h.patent_number, h.sheet)) for h in hits]
        warm = [timed(lambda h=h: client.get_drawing(h.patent_number, h.sheet)) for h in hits]
    return text, drawing, cold, warm


def _stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)), "mean": float(np.mean(values))}


ROWS = (("page ready (navigation to header filled)", "ready_ms"),
        ("text search, browser (request to results on screen)", "web_text_ms"),
        ("text search, gRPC client", "grpc_text_ms"),
        ("drawing search (G4 TIFF), browser", "web_drawing_ms"),
        ("drawing search (G4 TIFF), gRPC client", "grpc_drawing_ms"),
        ("GetDrawing thumbnail, cold (rendered)", "thumbnail_cold_ms"),
        ("GetDrawing thumbnail, warm (cached)", "thumbnail_warm_ms"))


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, no GPU; model "
             f"{results['model']} (random weights); {results['corpus_sheets']} drawing sheets "
             f"of the 50 sample grants; page of {results['page_size']} with Locarno counts over "
             f"{results['counts_depth']} results.", "",
             "| what | n | p50 ms | p95 ms | mean ms |", "|---|---:|---:|---:|---:|"]
    for label, key in ROWS:
        s = _stats(results[key])
        lines.append(f"| {label} | {s['n']} | {s['p50']:.1f} | {s['p95']:.1f} | "
                     f"{s['mean']:.1f} |")
    for kind in ("text", "drawing"):
        web, grpc = (_stats(results[f"{side}_{kind}_ms"])["p50"] for side in ("web", "grpc"))
        lines.append(f"\n{kind} search: browser p50 / gRPC p50 = **{web / grpc:.2f}x** "
                     f"(+{web - grpc:.1f} ms: JSON, base64, HTTP, rendering the grid)")
    cold, warm = (_stats(results[f"thumbnail_{t}_ms"])["p50"] for t in ("cold", "warm"))
    lines.append(f"\nthumbnail cache: cold / warm p50 = **{cold / warm:.1f}x**")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    keys = [key for _, key in ROWS]
    ax.boxplot([results[k] for k in keys], orientation="horizontal", showfliers=False)
    ax.set_yticks(range(1, len(keys) + 1), [label for label, _ in ROWS], fontsize=8)
    ax.set_xlabel("ms")
    ax.set_title(f"Web app vs gRPC round trips ({results['model']}, "
                 f"{results['machine'].get('cores', '?')} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def screenshots(port: int, out: Path, parts: bool = False) -> None:
    """The main screens, on the real samples: results, drawing with crop, filter, patent
    view, compare, and the token prompt; with ``parts`` (an index with part tiles and
    USD0919445's labels read), also a crop matched by parts and a sheet's figures."""
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/"
    drawing = sorted((SHARED / "uspto-sample").rglob("*D00001.TIF"))[3]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        page.wait_for_selector("#server-info:has-text('model')")

        def settle(name: str) -> None:
            page.wait_for_timeout(800)  # lazy thumbnails on screen
            page.screenshot(path=str(out / f"{name}.png"))

        page.fill("#query-text", "front perspective view of a bottle")
        page.click("#search-button")
        page.wait_for_selector("#results .card img[data-loaded]")
        settle("results")
        first_class = page.locator("#locarno-list input").first
        first_class.check()
        page.wait_for_timeout(600)
        settle("locarno-filter")
        first_class.uncheck()
        page.fill("#query-text", "")
        page.set_input_files("#file-input", str(drawing))
        page.wait_for_selector("#query-preview[src^='blob:']")
        drag_crop(page, 0.15, 0.15, 0.6, 0.55)
        page.click("#search-button")
        page.wait_for_selector("#results .card img[data-loaded]")
        settle("drawing-crop")
        page.locator("#results .card [data-act=compare]").first.click()
        page.click("#compare-button")
        page.wait_for_selector("#compare-view[open]")
        settle("compare")
        page.keyboard.press("Escape")
        page.locator("#results .card [data-act=open]").first.click()
        page.wait_for_selector("#patent-sheets img[data-loaded]")
        settle("patent-view")
        page.keyboard.press("Escape")
        page.click("#remove-drawing")
        page.fill("#query-text", "a lamp")
        page.fill("#date-from", "2030-01-01")
        page.click("#search-button")
        page.wait_for_selector("#message[data-kind=empty]")
        settle("empty-result")
        if parts:
            part_screens(page, out, settle)
        page.close()
    print(f"screenshots in {out}")


def part_screens(page, out: Path, settle) -> None:
    """FIG. 4 of USD0919445 cropped: where each hit matched; then its patent view's sheet 2
    with each figure boxed, numbered and named by view."""
    sheet = next((SHARED / "uspto-sample").glob("USD0919445-*/*-D00002.TIF"))
    page.fill("#date-from", "")
    page.fill("#query-text", "")
    page.set_input_files("#file-input", str(sheet))
    page.wait_for_selector("#query-preview[src^='blob:']")
    drag_crop(page, 0.55, 0.12, 0.98, 0.42)
    with page.expect_response(lambda r: "/api/search" in r.url):
        page.click("#search-button")
    page.wait_for_selector("#results .card .mark.match")
    page.wait_for_selector("#results .card img[data-loaded]")
    settle("part-match")
    page.click("#remove-drawing")
    page.fill("#query-text", "dispenser bottle")
    page.click("#search-button")
    page.wait_for_selector("#results .card[data-patent='D0919445']")
    page.locator("#results .card[data-patent='D0919445'] .thumb").first.click()
    page.wait_for_selector("#patent-sheets figure[data-sheet='2'] img[data-loaded]")
    page.locator("#patent-sheets figure[data-sheet='2']").scroll_into_view_if_needed()
    settle("figures")
    page.keyboard.press("Escape")


if __name__ == "__main__":
    sys.exit(main())
