"""A grant whose figure and sheet counts disagree gets its sheets' figures from the labels
read on them, when the labels agree with the XML (``Grant.with_sheet_labels``), on the real
USD0919445: 6 figures described, 3 drawing sheets."""

from __future__ import annotations

import pytest

from patentclip.grants.model import SheetFigureMapping
from patentclip.grants.reader import GrantReader


@pytest.fixture(scope="module")
def grant(sample_dir):
    return next(GrantReader().read(sample_dir / "USD0919445-20210518")).grant


def test_labels_that_agree_with_the_xml_give_each_sheet_its_figures_and_views(grant):
    drawing = [s for s in grant.sheets if not s.front_page]
    assert [s.mapping for s in drawing] == [SheetFigureMapping.UNKNOWN] * 3
    assert grant.sheet_view(drawing[0]) == "unknown"
    mapped = grant.with_sheet_labels({1: ["2", "1"], 2: ["3", "4", "5"], 3: ["6"]})
    sheets = [s for s in mapped.sheets if not s.front_page]
    assert [s.figure_numbers for s in sheets] == [("1", "2"), ("3", "4", "5"), ("6",)]
    assert {s.mapping for s in sheets} == {SheetFigureMapping.LABELS}
    assert mapped.sheet_view(sheets[2]) == grant.figure("6").view.value
    caption = mapped.sheet_caption(sheets[0])  # both figures' phrases, not the guess
    assert caption != grant.sheet_caption(drawing[0]) == grant.unmapped_caption()
    assert caption.count("; ") == 1


@pytest.mark.parametrize("read", [
    {1: ["1", "2"], 2: ["3", "4", "5"], 3: []},          # a sheet with no label read
    {1: ["14", "2"], 2: ["3", "4", "5"], 3: ["6"]},      # a misread
    {1: ["1", "2"], 2: ["3", "4"], 3: ["6"]},            # a figure missing
    {1: ["1", "2", "3"], 2: ["3", "4", "5"], 3: ["6"]},  # a figure on two sheets
])
def test_labels_that_disagree_leave_the_sheets_unknown(grant, read):
    assert grant.with_sheet_labels(read) is None


def test_labels_that_agree_keep_where_each_figure_is_on_sheets_of_several(grant):
    from patentclip.grants.model import FigureRegion, Region

    def at(number, left):
        return FigureRegion(number, Region(left, 0.1, left + 0.3, 0.9))

    regions = {1: [at("2", 0.6), at("1", 0.1)], 2: [at("3", 0.0), at("4", 0.35), at("5", 0.7)],
               3: [at("6", 0.2)]}
    mapped = grant.with_sheet_labels({1: ["2", "1"], 2: ["3", "4", "5"], 3: ["6"]}, regions)
    sheets = [s for s in mapped.sheets if not s.front_page]
    assert [[r.number for r in s.regions] for s in sheets] == [["1", "2"], ["3", "4", "5"], []]
    assert sheets[0].regions[0].region.left == 0.1  # FIG. 1 where its label said
    # A sheet whose regions do not name exactly its figures keeps none (its whole sheet).
    partial = grant.with_sheet_labels({1: ["1", "2"], 2: ["3", "4", "5"], 3: ["6"]},
                                      {1: [at("1", 0.1)], 2: regions[2]})
    assert [len(s.regions) for s in partial.sheets if not s.front_page] == [0, 3, 0]
