"""Figures and their labels on real sheets, read by Tesseract (Debian's tesseract-ocr,
installed by `make tools`): USD0919445, whose XML describes 6 figures on 3 sheets (the
reader cannot tell which is where), read from the drawings themselves."""

from __future__ import annotations

import shutil

from patentclip.drawings.figures import TesseractReader, segment
from patentclip.drawings.preprocess import DrawingPreprocessor


def test_the_labels_on_real_sheets_name_their_figures(sample_dir):
    assert shutil.which("tesseract"), "run `make tools` (Debian's tesseract-ocr)"
    folder = sample_dir / "USD0919445-20210518"
    decoder, reader = DrawingPreprocessor(224), TesseractReader()
    read = {}
    for sheet in (1, 2, 3):
        data = (folder / f"USD0919445-20210518-D0000{sheet}.TIF").read_bytes()
        read[sheet] = segment(decoder.decode(data), reader)
    assert [read[s].numbers for s in (1, 2, 3)] == [["1", "2"], ["3", "4", "5"], ["6"]]
    first, second = read[1].figures  # FIG. 1 left, FIG. 2 right, side by side
    assert first.box[2] < second.box[0] and first.number == "1"
    assert all(f.box[2] <= read[1].width and f.box[3] <= read[1].height
               for f in read[1].figures)


def test_indexing_with_figure_labels_gives_unmapped_sheets_their_figures(tmp_path, sample_dir,
                                                                         tiny_model_dir):
    """PATENTCLIP_FIGURE_LABELS: the sheets of USD0919445 (counts disagree) are stored with
    the figures their labels name, and their views; a grant whose counts agree is not read
    (USD0907292: no block of it reaches the reader)."""
    import shutil as sh

    from patentclip.grants.model import SheetFigureMapping
    from patentclip.grants.reader import GrantReader
    from patentclip.ingest.figures import FigureLabeller
    from patentclip.ingest.indexer import Indexer
    from patentclip.model.encoder import Encoder
    from patentclip.store import PatentStore

    source = tmp_path / "grants"
    for name in ("USD0919445-20210518", "USD0907292-20210105"):
        sh.copytree(sample_dir / name, source / name)
    reader = TesseractReader()
    calls = []

    class Counting:
        def read(self, block):
            calls.append(len(calls))
            return reader.read(block)

    with PatentStore(str(tmp_path / "p.db"), prefix="fl") as store:
        encoder = Encoder.load(f"local-dir:{tiny_model_dir}")
        labeller = FigureLabeller(Counting())
        alone, _ = labeller.label(next(GrantReader().read(source / "USD0907292-20210105")))
        assert not calls and alone.grant.sheets[1].mapping is SheetFigureMapping.ONE_PER_SHEET
        summary = Indexer(encoder, store, progress=False, labeller=labeller).index([source])
        assert summary.figure_labels == {"mapped": 1} and calls
        rows = [r for r in store.patent_rows(summary.collection, "D0919445")
                if r["modality"] == "drawing" and r["sheet"] > 0]
    assert [r["figures"] for r in rows] == ["1,2", "3,4,5", "6"]
    assert all(r["view"] != "unknown" for r in rows[2:]), rows
