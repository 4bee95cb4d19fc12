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
