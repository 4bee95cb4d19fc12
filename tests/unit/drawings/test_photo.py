"""Photo mode on generated photos of real sample drawings (harness/photos.py: shaded,
coloured, blurred, noisy JPEGs with no outlines): the line drawing it extracts must lie on
the drawing's own lines (precision) and cover most of them (recall), within 4 pixels at
768 pixels a side. Searching the photo as a line drawing instead gives the model shaded
areas; the test shows the extracted drawing is the closer of the two to the real one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from harness.photos import drawing_lines, photo_of
from patentclip.drawings.photo import photo_to_line_drawing
from patentclip.drawings.preprocess import DrawingPreprocessor

TOLERANCE = 4  # pixels


def near(mask: np.ndarray, target: np.ndarray) -> float:
    """The share of ``mask``'s pixels within TOLERANCE of ``target``'s."""
    distance = cv2.distanceTransform((~target).astype(np.uint8), cv2.DIST_L2, 3)
    return float((distance[mask] <= TOLERANCE).mean()) if mask.any() else 0.0


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
        precision.append(near(extracted, lines))
        recall.append(near(lines, extracted))
        # What line mode gives the model: the photo's dark pixels, fills included
        shaded.append(near(np.asarray(photo) < 160, lines))
    assert np.mean(precision) > 0.9 and min(precision) > 0.75, precision
    assert np.mean(recall) > 0.7, recall
    assert np.mean(precision) > np.mean(shaded) + 0.1, (precision, shaded)


def test_a_flat_image_has_no_lines_and_a_large_photo_is_shrunk():
    from PIL import Image

    flat = Image.new("L", (3000, 1500), 200)
    out = photo_to_line_drawing(flat)
    assert out.size == (1024, 512) and out.getextrema() == (255, 255)
