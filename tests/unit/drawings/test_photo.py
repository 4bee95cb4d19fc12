"""Photo mode on generated photos of real sample drawings (harness/photos.py: shaded,
coloured, blurred, noisy JPEGs with no outlines): the line drawing it extracts must lie on
the drawing's own lines (precision) and cover most of them (recall), within 4 pixels at
768 pixels a side. Searching the photo as a line drawing instead gives the model shaded
areas; the test shows the extracted drawing is the closer of the two to the real one."""

from __future__ import annotations

import numpy as np
import pytest

from harness.photos import drawing_lines, photo_of, share_near
from patentclip.drawings.photo import photo_to_line_drawing
from patentclip.drawings.preprocess import DrawingPreprocessor


@pytest.fixture(scope="module")
def drawings(sample_dir):
    return [p.read_bytes() for p in sorted(sample_dir.rglob("*D00001.TIF"))[:12]]


def test_a_photo_becomes_the_line_drawing_of_its_design(drawings):
    decoder = DrawingPreprocessor(224)
    precision, recall, shaded = [], [], []
    for seed, drawing in enumerate(drawings):
        lines = drawing_lines(drawing)
        photo = decoder.decode(photo_of(drawing, seed))
        extracted = np.asarray(photo_to_line_drawing(photo)) < 128
        assert extracted.shape == lines.shape
        precision.append(share_near(extracted, lines))
        recall.append(share_near(lines, extracted))
        # What line mode gives the model: the photo's dark pixels, fills included
        shaded.append(share_near(np.asarray(photo) < 160, lines))
    assert np.mean(precision) > 0.9 and min(precision) > 0.75, precision
    assert np.mean(recall) > 0.7, recall
    assert np.mean(precision) > np.mean(shaded) + 0.1, (precision, shaded)


def test_a_flat_image_has_no_lines_and_a_large_photo_is_shrunk():
    from PIL import Image

    flat = Image.new("L", (3000, 1500), 200)
    out = photo_to_line_drawing(flat)
    assert out.size == (1024, 512) and out.getextrema() == (255, 255)
