"""The parts of a sheet that get rows of their own (``patentclip.drawings.parts``): figure
rows where the figures' places are known, and tiles of each figure for part matching."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from patentclip.drawings.parts import Tiling, part_pixels, sheet_parts, working_copy
from patentclip.grants.model import FigureRegion, Region


def _sheet(*boxes) -> Image.Image:
    """A white 1000 x 1000 sheet with an outlined rectangle per box (pixels)."""
    image = Image.new("L", (1000, 1000), 255)
    draw = ImageDraw.Draw(image)
    for box in boxes:
        draw.rectangle(box, outline=0, width=6)
    return image


def test_tiles_of_half_the_ink_half_a_tile_apart_where_they_hold_ink():
    # Ink in two corners of a 600 x 600 block: the middle tile and the empty corners'
    # tiles hold none and are dropped.
    image = _sheet((200, 200, 300, 300), (700, 700, 800, 800))
    parts = sheet_parts(image, (), Tiling((0.5,)))
    assert {p.modality for p in parts} == {"part"} and all(p.figure == "" for p in parts)
    assert [[round(v, 1) for v in p.region.as_tuple()] for p in parts] == [
        [0.2, 0.2, 0.5, 0.5], [0.5, 0.5, 0.8, 0.8]]  # of the 3 x 3 grid, the two with ink
    assert sheet_parts(image, (), None) == []  # no tiling: no parts
    assert sheet_parts(Image.new("L", (500, 500), 255), (), Tiling((0.5,))) == []  # blank


def test_known_figures_are_rows_of_their_own_and_tiled_each_with_its_number():
    image = _sheet((50, 100, 450, 900), (550, 100, 950, 500), (550, 600, 950, 900))
    figures = (FigureRegion("3", Region(0.04, 0.09, 0.46, 0.91)),
               FigureRegion("4", Region(0.54, 0.09, 0.96, 0.51)),
               FigureRegion("5", Region(0.54, 0.59, 0.96, 0.91)))
    parts = sheet_parts(image, figures, Tiling((0.5, 0.3)))
    assert [(p.modality, p.figure) for p in parts[:3]] == [("figure", "3"), ("figure", "4"),
                                                          ("figure", "5")]
    assert [p.region for p in parts[:3]] == [f.region for f in figures]
    for part in parts[3:]:  # each tile inside its own figure
        figure = next(f.region for f in figures if f.number == part.figure)
        assert figure.left - 1e-3 <= part.region.left < part.region.right <= figure.right + 1e-3
        assert figure.top - 1e-3 <= part.region.top < part.region.bottom <= figure.bottom + 1e-3
    assert {p.figure for p in parts[3:]} == {"3", "4", "5"}
    assert sheet_parts(image, figures, None) == parts[:3]  # figure rows without tiles


def test_a_part_is_cut_where_its_region_says_and_the_sheet_is_shrunk_once():
    image = _sheet((100, 100, 300, 300))
    cut = part_pixels(image, Region(0.1, 0.1, 0.3, 0.3))
    assert cut.size == (200, 200) and cut.getpixel((0, 100)) == 0  # the left edge's ink
    big = Image.new("L", (2000, 2400), 255)  # a half tile: 600 px, over 2 x 64 four times
    assert working_copy(big, Tiling((0.5,)), 64).size == (500, 600)  # reduce(4)
    assert working_copy(big, Tiling((0.5,)), 224) is big  # less than twice 2 x 224
    assert working_copy(big, None, 64).size == (223, 267)  # the whole sheet: reduce(9)


@pytest.mark.parametrize("scales", [(), (0.05,), (1.0,)])
def test_a_tiling_needs_fractions_between_a_tenth_and_one(scales):
    if not scales:
        assert Tiling.of(scales) is None
        return
    with pytest.raises(ValueError, match="tile scales"):
        Tiling(scales)


def test_a_region_is_fractions_of_the_sheet_kept_per_mille():
    region = Region.of_pixels((50, 100, 450, 900), 1000, 2000)
    assert region == Region(0.05, 0.05, 0.45, 0.45) and region.key == "50,50,450,450"
    assert Region.from_key(region.key) == region
    for bad in ((0.5, 0, 0.5, 1), (0, 0, 1.2, 1), (-0.1, 0, 1, 1)):
        with pytest.raises(ValueError, match="expected fractions"):
            Region(*bad)
