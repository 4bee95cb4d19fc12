import pytest

from patentclip.grants.model import (
    DrawingSheet,
    Figure,
    Grant,
    LocarnoClass,
    SheetFigureMapping,
    View,
    normalize_uspc,
    normalize_view,
)


@pytest.mark.parametrize("text, view", [
    ("front perspective view", View.PERSPECTIVE),
    ("front view", View.FRONT),
    ("front elevational view", View.FRONT),
    ("back view", View.REAR),
    ("rear elevation view", View.REAR),
    ("left side view", View.LEFT),
    ("right side view", View.RIGHT),
    ("top plan view", View.TOP),
    ("bottom plan view", View.BOTTOM),
    ("exploded perspective view", View.EXPLODED),
    ("cross-sectional view taken along line 4-4", View.SECTION),
    ("enlarged partial perspective view", View.DETAIL),
    ("perspective view shown in an environment", View.IN_USE),
    ("isometric view", View.PERSPECTIVE),
    ("Back", View.REAR),
    ("side view", View.OTHER),
    ("second image thereof", View.OTHER),
])
def test_normalize_view(text, view):
    assert normalize_view(text) is view


@pytest.mark.parametrize("raw, normalized", [
    ("D28 47", "D28/47"), ("D 2728", "D2/728"), ("D14486", "D14/486"), (" D2840", "D2/840"),
    ("D 5 57", "D5/57"), ("D21", "D21"),
])
def test_normalize_uspc_fixed_width(raw, normalized):
    assert normalize_uspc(raw) == normalized


def _grant(sheets, figures):
    return Grant(patent_number="D0000001", kind="S1", title="Shaving blade cartridge",
                 grant_date=20210105, locarno=LocarnoClass("2803", "13"), uspc=(),
                 claim="", figures=tuple(figures), sheets=tuple(sheets))


def test_sheet_caption_replaces_thereof_with_title():
    fig = Figure("2", View.BOTTOM, "bottom view", "FIG. 2 is a bottom view thereof;")
    sheet = DrawingSheet(2, "x-D00002.TIF", ("2",), SheetFigureMapping.ONE_PER_SHEET)
    grant = _grant([sheet], [fig])
    assert grant.sheet_caption(sheet) == "bottom view of a shaving blade cartridge"
    assert grant.sheet_view(sheet) == "bottom"


def test_sheet_without_known_figures_has_honest_caption_and_unknown_view():
    front = DrawingSheet(0, "x-D00000.TIF", mapping=SheetFigureMapping.FRONT_PAGE)
    other = DrawingSheet(3, "x-D00003.TIF")
    grant = _grant([front, other], [])
    assert front.front_page and not other.front_page
    assert grant.sheet_caption(front) == "front page drawing of a shaving blade cartridge"
    assert grant.sheet_caption(other) == "a drawing of a shaving blade cartridge"
    assert grant.sheet_view(other) == "unknown"


def test_an_unmapped_sheet_is_captioned_from_the_title_and_the_patents_views():
    figures = [Figure("1", View.PERSPECTIVE, "perspective view", "FIG. 1 is a perspective view"),
               Figure("2", View.FRONT, "front view", "FIG. 2 is a front view thereof"),
               Figure("3", View.FRONT, "front view", "FIG. 3 is a front view, enlarged"),
               Figure("4", View.OTHER, "view", "FIG. 4 is a view thereof")]
    unmapped = DrawingSheet(2, "x-D00002.TIF")
    grant = _grant([unmapped], figures)
    assert grant.sheet_caption(unmapped) == \
        "a shaving blade cartridge in one of its views: perspective, front"


def test_locarno_parts():
    loc = LocarnoClass("0204", "13")
    assert (loc.main_class, loc.subclass, loc.edition) == ("02", "04", "13")
