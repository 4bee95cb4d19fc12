"""Figures and their labels on real sheets, read by Tesseract (Debian's tesseract-ocr,
installed by `make tools`): USD0919445, whose XML describes 6 figures on 3 sheets (the
reader cannot tell which is where), read from the drawings themselves."""

from __future__ import annotations

import shutil

from patentclip.drawings.figures import TesseractReader, segment
from patentclip.drawings.preprocess import DrawingPreprocessor

GRANT = "USD0919445-20210518"


def test_two_labelled_figures_side_by_side_on_a_real_sheet(sample_dir):
    assert shutil.which("tesseract"), "run `make tools` (Debian's tesseract-ocr)"
    data = (sample_dir / GRANT / f"{GRANT}-D00001.TIF").read_bytes()
    found = segment(DrawingPreprocessor(224).decode(data), TesseractReader())
    assert found.numbers == ["1", "2"]
    first, second = found.figures  # FIG. 1 left, FIG. 2 right
    assert first.box[2] < second.box[0] and first.number == "1"
    assert all(f.box[2] <= found.width and f.box[3] <= found.height for f in found.figures)


def test_indexing_with_figure_labels_gives_unmapped_sheets_their_figures(tmp_path, sample_dir,
                                                                         encoder):
    """PATENTCLIP_FIGURE_LABELS: the sheets of USD0919445 (counts disagree) are stored with
    the figures their labels name, and their views; a grant whose counts agree is not read
    (USD0907292: no block of it reaches the reader)."""
    from patentclip.grants.reader import GrantReader
    from patentclip.ingest.figures import FigureLabeller
    from patentclip.ingest.indexer import Indexer
    from patentclip.search.engine import SearchEngine, SearchRequest
    from patentclip.search.query import Query
    from patentclip.store import PatentStore, SearchFilters

    source = tmp_path / "grants"
    shutil.copytree(sample_dir / GRANT, source / GRANT)
    reader, calls = TesseractReader(), []

    class Counting:
        def read(self, block):
            calls.append(len(calls))
            return reader.read(block)

    labeller = FigureLabeller(Counting())
    agreeing = next(GrantReader().read(sample_dir / "USD0907292-20210105"))
    alone, outcome = labeller.label(agreeing)
    assert not calls and outcome == "" and alone is agreeing
    with PatentStore(str(tmp_path / "p.db"), prefix="fl") as store:
        summary = Indexer(encoder, store, progress=False, labeller=labeller).index([source])
        assert summary.figure_labels == {"mapped": 1} and calls
        stored = store.patent_rows(summary.collection, "D0919445")
        engine = SearchEngine(encoder, store, summary.collection)
        top = engine.search(Query(text="dispenser bottle"),
                            SearchRequest(filters=SearchFilters(views=("top",))))
        record = engine.get_patent("D0919445")
    rows = [r for r in stored if r["modality"] == "drawing" and r["sheet"] > 0]
    assert [r["figures"] for r in rows] == ["1,2", "3,4,5", "6"]
    assert all(r["view"] != "unknown" for r in rows[2:]), rows
    # A row per figure of the sheets of several: its number, its view, where it is.
    figures = [(r["sheet"], r["figures"], r["view"]) for r in stored if r["modality"] == "figure"]
    assert figures == [(1, "1", "perspective"), (1, "2", "front"), (2, "3", "right"),
                       (2, "4", "top"), (2, "5", "bottom")]
    # A view filter acts on figures: the top view (FIG. 4, on sheet 2 with two others)
    # answers for its sheet, and the hit names the figure and where it is.
    (hit,) = top.hits
    assert (hit.patent, hit.sheet, hit.modality, hit.figures, hit.view) == (
        "D0919445", 2, "figure", ("4",), "top")
    assert hit.region.left > 0.5 and hit.region.bottom < 0.5  # upper right of the sheet
    # The patent view's sheets: where each figure is, with its view.
    second = next(s for s in record.sheets if s.sheet == 2)
    assert [(f.number, f.view) for f in second.regions] == [("3", "right"), ("4", "top"),
                                                           ("5", "bottom")]  # top to bottom


def test_published_labels_reach_the_embedder_as_figure_rows(tmp_path, sample_dir, encoder,
                                                            tiny_model_dir, kafka_settings):
    """PATENTCLIP_FIGURE_LABELS at the publisher: the grant event carries each figure's
    region (the topic is the system of record), and the embedder writes a row per figure
    and counts the sheets by how their figures are known."""
    from harness.services import publish, settings, stored_ids
    from patentclip.drawings.imagestore import LocalImageStore
    from patentclip.ingest.figures import FigureLabeller
    from patentclip.store import PatentStore
    from services.embedder.consumer import GrantConsumer
    from services.embedder.metrics import EmbedderMetrics

    source = tmp_path / "grants"
    shutil.copytree(sample_dir / GRANT, source / GRANT)
    images = tmp_path / "images"
    published = publish(kafka_settings, images, source, labeller=FigureLabeller())
    assert published.published == 1 and published.bundles[0].figure_labels == {"mapped": 1}
    metrics = EmbedderMetrics()
    embedder = settings(kafka_settings, str(tmp_path / "p.db"), tiny_model_dir, images, "fk")
    with PatentStore(embedder.core.milvus_uri, prefix="fk") as store:
        consumer = GrantConsumer(embedder, encoder, store, LocalImageStore(images), metrics)
        summary = consumer.run(until_caught_up=True)
        figures = sorted(stored_ids(store, summary.collection, ("figure",)))
    assert [key.split("@")[0] for key in figures] == ["D0919445-001:figure"] * 2 + [
        "D0919445-002:figure"] * 3
    sheets = {m: metrics.registry.get_sample_value(
        "patentclip_embedder_sheets_by_figures_total", {"mapping": m})
        for m in ("labels", "front-page", "unknown")}
    assert sheets == {"labels": 3.0, "front-page": 1.0, "unknown": 0.0}
    assert metrics.registry.get_sample_value("patentclip_embedder_part_rows_total",
                                             {"kind": "figure"}) == 5
