"""Figures read from the sheets at ingest: a grant whose figure and sheet counts disagree
(the XML does not say which figure is on which sheet) gets each sheet's figures from the
"FIG. n" labels printed on it (``patentclip.drawings.figures``), when those labels agree
with the figures the XML describes (``Grant.with_sheet_labels``). Where they disagree the
sheets stay "unknown", and the disagreement is counted (the index summary, the publish
report). Grants whose counts agree are not read: the XML's mapping holds for them.
Sheets of two or more figures keep where each is (``DrawingSheet.regions``): the embedder
writes a row per figure for them.

Costly (0.5 s a sheet on one CPU core, ``docs/figures.md``), so a setting turns it on
(``PATENTCLIP_FIGURE_LABELS``).
"""

from __future__ import annotations

from dataclasses import replace

from patentclip.drawings.figures import LabelReader, SheetFigures, TesseractReader, segment
from patentclip.drawings.preprocess import DrawingPreprocessor
from patentclip.errors import ImageDecodeError
from patentclip.grants.model import FigureRegion, Region, SheetFigureMapping
from patentclip.grants.reader import GrantDocument

OUTCOMES = ("mapped", "disagreed")  # a grant whose counts disagree: its labels agreed or not


class FigureLabeller:
    """Reads the labels of a grant's unmapped sheets and maps them when they agree."""

    def __init__(self, reader: LabelReader | None = None) -> None:
        self.reader = reader or TesseractReader()
        self.decoder = DrawingPreprocessor(224)

    def counted(self, document: GrantDocument, counts: dict[str, int]) -> GrantDocument:
        """``label``, with its outcome counted in ``counts`` (an index summary, a bundle's
        row of the publish report)."""
        document, outcome = self.label(document)
        if outcome:
            counts[outcome] = counts.get(outcome, 0) + 1
        return document

    def label(self, document: GrantDocument) -> tuple[GrantDocument, str]:
        """The document with its sheets mapped by their labels, and the outcome: "" (no
        sheet needed it), "mapped" or "disagreed"."""
        grant = document.grant
        unmapped = [s for s in grant.sheets if s.mapping is SheetFigureMapping.UNKNOWN]
        if not unmapped:
            return document, ""
        read, regions = {}, {}
        for sheet in unmapped:
            data = document.images.get(sheet.file_name)
            if data is None:
                return document, "disagreed"
            try:
                shown = segment(self.decoder.decode(data, sheet.file_name), self.reader)
            except ImageDecodeError:
                return document, "disagreed"
            read[sheet.number] = shown.numbers
            regions[sheet.number] = figure_regions(shown)
        mapped = grant.with_sheet_labels(read, regions)
        if mapped is None:
            return document, "disagreed"
        return replace(document, grant=mapped), "mapped"


def figure_regions(shown: SheetFigures) -> list[FigureRegion]:
    """The named figures of a segmented sheet as regions (fractions of the sheet)."""
    regions = []
    for figure in shown.figures:
        try:
            if figure.number:
                regions.append(FigureRegion(figure.number, Region.of_pixels(
                    figure.box, shown.width, shown.height)))
        except ValueError:  # a box thinner than a thousandth of the sheet: no figure row
            continue
    return regions
