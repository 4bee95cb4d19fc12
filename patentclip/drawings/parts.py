"""The parts of a drawing sheet that get vectors of their own, beside the sheet's.

* **Figures**: on a sheet of two or more figures whose labels were read at ingest
  (``DrawingSheet.regions``), each figure is a row of its own, with its view and number,
  so a view filter acts on figures and a hit names the figure that matched.
* **Parts**: tiles of each figure (of the sheet's ink where no figures are known) at the
  scales of a :class:`Tiling`, each ``scale`` of the figure's width and height, half a tile
  apart, kept where they hold ink. A cropped query (the handle of a kettle) is matched
  against them as well as against whole sheets: part matching, as KIPO's examiner search
  matches part of a composite image. ``benchmarks/parts.py`` measures what it gains and
  costs (``docs/figures.md``).

Regions are fractions of the sheet (``Region``); a tile is cut from the decoded sheet and
squared exactly as a cropped query is (``DrawingPreprocessor.query``), so the two meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from patentclip.drawings.preprocess import INK_BELOW
from patentclip.grants.model import FigureRegion, Region

MIN_INK = 0.003  # share of a tile's pixels that are ink (at MASK_SIDE); emptier: dropped
MASK_SIDE = 512


@dataclass(frozen=True)
class Tiling:
    """How a figure is cut into parts: tiles of ``scales`` of its sides, half a tile
    apart (scale 0.5: 3 x 3 tiles)."""

    scales: tuple[float, ...] = (0.5,)

    def __post_init__(self) -> None:
        if not self.scales or not all(0.1 <= s < 1.0 for s in self.scales):
            raise ValueError(f"tile scales {self.scales}: expected fractions in [0.1, 1)")

    @classmethod
    def of(cls, scales: Sequence[float]) -> Tiling | None:
        """The tiling of ``scales`` (``CoreSettings.tile_scales``); None for none."""
        return cls(tuple(scales)) if scales else None


@dataclass(frozen=True)
class SheetPart:
    """A part of a sheet to store: a figure ("figure") or a tile ("part"); ``figure`` is
    the figure number it belongs to ("" where not known)."""

    modality: str
    region: Region
    figure: str = ""


def sheet_parts(image: Image.Image, figures: Sequence[FigureRegion],
                tiling: Tiling | None) -> list[SheetPart]:
    """The figure rows and part tiles of a decoded grayscale sheet ('L')."""
    parts = [SheetPart("figure", f.region, f.number) for f in figures]
    if tiling is None:
        return parts
    ink = ink_mask(image)
    areas = [(f.region, f.number) for f in figures] or [(ink_region(ink), "")]
    for area, number in areas:
        if area is None:
            continue
        parts += [SheetPart("part", tile, number) for tile in _tiles(area, tiling)
                  if ink_share(ink, tile) >= MIN_INK]
    return parts


def part_pixels(image: Image.Image, region: Region) -> Image.Image:
    """The part of a sheet ``region`` covers, cut as a query's crop is (to be squared)."""
    return image.crop(region.pixels(*image.size))


def _tiles(area: Region, tiling: Tiling) -> list[Region]:
    tiles: list[Region] = []
    width, height = area.right - area.left, area.bottom - area.top
    for scale in tiling.scales:
        steps = max(1, round((1 - scale) / (scale / 2))) + 1
        offsets = np.linspace(0.0, 1 - scale, steps)
        for dy in offsets:
            for dx in offsets:
                try:
                    tile = Region.per_mille(
                        area.left + dx * width, area.top + dy * height,
                        area.left + (dx + scale) * width, area.top + (dy + scale) * height)
                except ValueError:  # thinner than a thousandth of the sheet
                    continue
                if tile not in tiles:
                    tiles.append(tile)
    return tiles


def ink_mask(image: Image.Image) -> np.ndarray:
    scale = min(1.0, MASK_SIDE / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
        Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8) < INK_BELOW


def ink_share(ink: np.ndarray, region: Region) -> float:
    height, width = ink.shape
    window = ink[int(region.top * height):max(int(region.bottom * height), 1),
                 int(region.left * width):max(int(region.right * width), 1)]
    return float(window.mean()) if window.size else 0.0


def ink_region(ink: np.ndarray) -> Region | None:
    """The box around the sheet's ink as a region; None on a blank sheet."""
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return None
    try:
        return Region.of_pixels((columns[0], rows[0], columns[-1] + 1, rows[-1] + 1),
                                ink.shape[1], ink.shape[0])
    except ValueError:
        return None


def working_copy(image: Image.Image, tiling: Tiling | None, image_size: int) -> Image.Image:
    """The sheet shrunk once (PIL's integer ``reduce``, the box filter ``square`` applies
    to each part anyway) so that its smallest tiles still hold at least twice the model's
    input side: cutting and squaring parts then costs a fraction of full resolution."""
    smallest = min(tiling.scales) if tiling else 1.0
    factor = int(smallest * max(image.size) / 2 / (2 * image_size))
    return image.reduce(factor) if factor >= 2 else image
