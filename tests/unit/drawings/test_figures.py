"""Figure segmentation's pure parts: a label's text to a figure number, and labels to
regions, with a fake reader over drawn sheets (the real OCR: tests/integration/
test_figures.py)."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from patentclip.drawings.figures import figure_number, segment


@pytest.mark.parametrize("text, number", [
    ("FIG. 1", "1"), ("FIG.2A\n", "2A"), ("Fig 12", "12"), ("FIGURE 3", "3"),
    ("FIG.", None), ("FIGURE", None), ("1", None), ("", None), ("FIG, 7b", "7B")])
def test_a_labels_text_gives_its_figure_number(text, number):
    assert figure_number(text) == number


class Reader:
    """Reads blocks by where they are: the test drew the labels, so it knows them."""

    def __init__(self, labels):
        self.labels, self.calls = labels, 0

    def read(self, block):
        self.calls += 1
        return self.labels.pop(0) if self.labels else ""


def test_two_figures_and_their_labels_become_two_named_regions():
    sheet = Image.new("L", (1000, 1400), 255)
    pen = ImageDraw.Draw(sheet)
    pen.rectangle((60, 100, 420, 1000), outline=0, width=6)  # figure A
    pen.ellipse((560, 150, 940, 950), outline=0, width=6)    # figure B
    for x in (120, 620):  # a label under each: a block of glyph-sized marks
        for i in range(4):
            pen.rectangle((x + i * 30, 1120, x + i * 30 + 18, 1150), fill=0)
    found = segment(sheet, Reader(["FIG. 1", "FIG. 2"]))
    assert found.numbers == ["1", "2"]
    left, right = found.figures
    assert left.box[2] < 500 < right.box[0]  # FIG. 1 the rectangle, FIG. 2 the ellipse


def test_a_sheet_without_labels_is_one_unnamed_figure():
    sheet = Image.new("L", (800, 1000), 255)
    ImageDraw.Draw(sheet).rectangle((100, 100, 700, 900), outline=0, width=5)
    found = segment(sheet, Reader([]))
    assert found.numbers == [] and len(found.figures) == 1
    assert found.figures[0].number is None
