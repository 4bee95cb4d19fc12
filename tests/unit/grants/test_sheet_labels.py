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
