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
    from patentclip.store import PatentStore

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
        rows = [r for r in store.patent_rows(summary.collection, "D0919445")
                if r["modality"] == "drawing" and r["sheet"] > 0]
    assert [r["figures"] for r in rows] == ["1,2", "3,4,5", "6"]
    assert all(r["view"] != "unknown" for r in rows[2:]), rows
