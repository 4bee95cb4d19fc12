"""The figures on a drawing sheet: where each one is, and which "FIG. n" label names it.

The XML lists a grant's figures and its sheets but never says which figure is on which
sheet; where the counts agree the reader assumes sheet n holds FIG. n, where they do not
(several figures on one sheet) it cannot tell. The sheet itself says: each figure is a
cluster of ink, and each has a printed label ("FIG. 1", "FIG. 2A"; sometimes turned 90
degrees with the figure). Segmentation, on the sheet shrunk to ``WORK_SIDE`` pixels:

1. **Label candidates.** The ink, dilated along the line of text (``WORD_GAP`` of the long
   side that way, ``WORD_JOIN`` across; both ways round, for turned labels) so a label's
   glyphs join into one block while whitespace keeps it apart from its figure; blocks of
   a line of text's shape (short side between ``LINE_MIN`` and ``LINE_MAX`` of the long
   side, long side at most ``WORD_MAX``). Hatching and the figures' own strokes join
   into large clusters and are never read.
2. **Labels read** by an OCR engine (``LabelReader``; Tesseract through ``pytesseract``,
   Debian's ``tesseract-ocr``), each block alone as one line of text, upright and, for a
   block taller than wide, turned both ways; ``FIG``/``FIGURE`` and a figure number.
3. **Figure regions.** The rest of the ink, dilated by ``JOIN`` of the long side so a
   figure's strokes, hatching and leader lines make one cluster; clusters smaller than
   ``MIN_REGION`` of the sheet are dropped (specks, page numbers).
4. **Labels to regions.** Each label names the region nearest to it (box to box); regions
   no label names are merged into the nearest named one, so an exploded view stays one
   figure. A sheet without a label read is one region, unnamed.

Boxes are in the sheet's own pixels. ``benchmarks/figures.py`` measures it on every real
shared grant (``docs/figures.md``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 1400
INK_BELOW = 128
WORD_JOIN, WORD_GAP = 0.008, 0.05
LINE_MIN, LINE_MAX, WORD_MAX = 0.01, 0.05, 0.2
JOIN = 0.02
MIN_REGION = 0.004  # of the sheet's area: a figure's bounding box is larger
LABEL = re.compile(r"\bFIG(?:URE)?S?\s*[.,:]?\s*([0-9]{1,3}[A-Z]?)\b", re.IGNORECASE)

Box = tuple[int, int, int, int]  # left, top, right, bottom


class LabelReader(Protocol):
    """Reads one block of glyphs as a line of text (an OCR engine)."""

    def read(self, block: Image.Image) -> str: ...


class TesseractReader:
    """Tesseract (Debian's ``tesseract-ocr``) through ``pytesseract``: one line of text
    (page segmentation mode 7), characters limited to what labels hold."""

    CONFIG = "--psm 7 -c tessedit_char_whitelist=FIGUREfigure.,:0123456789ABCDEFabcdef"

    def read(self, block: Image.Image) -> str:
        import pytesseract

        return pytesseract.image_to_string(block, config=self.CONFIG)


@dataclass(frozen=True)
class Figure:
    """One figure of a sheet: its box and the number its label gives (None: unnamed)."""

    box: Box
    number: str | None


@dataclass(frozen=True)
class SheetFigures:
    """What a sheet shows: its figures in reading order (top to bottom, left to right)."""

    width: int
    height: int
    figures: tuple[Figure, ...]

    @property
    def numbers(self) -> list[str]:
        """The figure numbers read, in reading order."""
        return [f.number for f in self.figures if f.number]


def figure_number(text: str) -> str | None:
    """The figure number a label's text gives: "FIG. 2A" -> "2A"; None when it is no label."""
    match = LABEL.search(text.replace("\n", " "))
    return match[1].upper() if match else None


def segment(image: Image.Image, reader: LabelReader) -> SheetFigures:
    """The figures of a grayscale sheet ('L') and their labels (module docstring)."""
    scale = min(1.0, WORK_SIDE / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        Image.Resampling.BOX)
    gray = np.asarray(small, dtype=np.uint8)
    ink = (gray < INK_BELOW).astype(np.uint8)
    side = max(ink.shape)
    blocks = _glyph_blocks(ink, side)
    labels = []
    for box in blocks:
        number = _read_label(small, box, reader)
        if number:
            labels.append((box, number))
    for box, _ in labels:  # a label's glyphs are no part of a figure
        ink[box[1]:box[3], box[0]:box[2]] = 0
    regions = _regions(ink, side)
    figures = _named(regions, labels)
    back = 1.0 / scale
    return SheetFigures(image.width, image.height, tuple(
        Figure(tuple(int(round(v * back)) for v in f.box), f.number) for f in figures))


def _components(mask: np.ndarray) -> list[Box]:
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _ in stats[1:count]]


def _glyph_blocks(ink: np.ndarray, side: int) -> list[Box]:
    """Boxes of blocks of ink shaped like a line of text, apart from other ink: along rows
    (upright labels) and along columns (turned ones)."""
    across, along = max(3, int(WORD_JOIN * side)), max(5, int(WORD_GAP * side))
    blocks: list[Box] = []
    for kernel in (np.ones((across, along), np.uint8), np.ones((along, across), np.uint8)):
        pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2  # the dilation's margin
        for left, top, right, bottom in _components(cv2.dilate(ink, kernel)):
            box = (left + pad_x, top + pad_y, right - pad_x, bottom - pad_y)
            short, long = sorted((box[2] - box[0], box[3] - box[1]))
            if LINE_MIN * side <= short <= LINE_MAX * side and long <= WORD_MAX * side \
                    and long >= 1.5 * short and box not in blocks:
                blocks.append(box)
    return blocks


def _read_label(sheet: Image.Image, box: Box, reader: LabelReader) -> str | None:
    """The figure number a block reads as, upright or turned either way."""
    pad = max(4, (box[3] - box[1]) // 3)
    crop = sheet.crop((max(box[0] - pad, 0), max(box[1] - pad, 0),
                       min(box[2] + pad, sheet.width), min(box[3] + pad, sheet.height)))
    crop = crop.resize((crop.width * 2, crop.height * 2), Image.Resampling.LANCZOS)
    turns = (0, 90, 270) if box[3] - box[1] > box[2] - box[0] else (0,)
    for angle in turns:
        number = figure_number(reader.read(crop.rotate(angle, expand=True, fillcolor=255)))
        if number:
            return number
    return None


def _regions(ink: np.ndarray, side: int) -> list[Box]:
    size = max(3, int(JOIN * side))
    grown = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    area = ink.shape[0] * ink.shape[1]
    return [b for b in _components(grown)
            if (b[2] - b[0]) * (b[3] - b[1]) >= MIN_REGION * area]


def _named(regions: Sequence[Box], labels: Sequence[tuple[Box, str]]) -> list[Figure]:
    """Each label to its nearest region; unnamed regions merged into the nearest named."""
    if not regions:
        return []
    if not labels:
        return [Figure(_union(regions), None)]
    names: dict[int, str] = {}
    pairs = sorted((_gap(box, region), r, number) for box, number in labels
                   for r, region in enumerate(regions))
    used: set[str] = set()
    for _, r, number in pairs:
        if r not in names and number not in used:
            names[r] = number
            used.add(number)
    if not names:
        return [Figure(_union(regions), None)]
    members: dict[int, list[Box]] = {r: [regions[r]] for r in names}
    for r, region in enumerate(regions):
        if r not in names:
            nearest = min(names, key=lambda n: _gap(region, regions[n]))
            members[nearest].append(region)
    figures = [Figure(_union(boxes), names[r]) for r, boxes in members.items()]
    return sorted(figures, key=lambda f: (f.box[1] // 50, f.box[0]))


def _gap(a: Box, b: Box) -> float:
    """The distance between two boxes (0 when they overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2], 0)
    dy = max(a[1] - b[3], b[1] - a[3], 0)
    return float(np.hypot(dx, dy))


def _union(boxes: Sequence[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))
