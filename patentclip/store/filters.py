"""The filter language: examiners' filters, validated once, as Milvus boolean expressions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from patentclip.errors import InvalidQueryError
from patentclip.grants.model import SHEET_VIEWS, check_patent_number, is_calendar_date


@dataclass(frozen=True)
class SearchFilters:
    """Filters an examiner narrows a search by.

    Validated once, when built (values go into a Milvus expression): whoever holds a
    SearchFilters can trust it. Sequences are kept as tuples, so filters stay hashable.
    """

    locarno: tuple[str, ...] = ()  # '02' (class) or '0204' (class + subclass)
    date_from: int | None = None  # YYYYMMDD, inclusive
    date_to: int | None = None
    views: tuple[str, ...] = ()
    exclude_patents: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("locarno", "views", "exclude_patents"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    def excluding(self, patent: str) -> SearchFilters:
        """The same filters, also excluding ``patent`` (a "more like this" search)."""
        return replace(self, exclude_patents=(*self.exclude_patents, patent))

    def _validate(self) -> None:
        for code in self.locarno:
            if not re.fullmatch(r"\d{2}|\d{4}", code):
                raise InvalidQueryError(f"locarno filter {code!r}: expected 2 digits (class, "
                                        "e.g. 02) or 4 digits (class+subclass, e.g. 0204)")
        for name, value in (("date_from", self.date_from), ("date_to", self.date_to)):
            if value is not None and not is_calendar_date(value):
                raise InvalidQueryError(f"{name} {value}: not a calendar date; expected "
                                        "YYYYMMDD, e.g. 20210105")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidQueryError(f"date range is empty: {self.date_from} > {self.date_to}")
        for view in self.views:
            if view not in SHEET_VIEWS:
                raise InvalidQueryError(f"view filter {view!r}: expected one of "
                                        f"{', '.join(SHEET_VIEWS)}")
        for patent in self.exclude_patents:
            check_patent_number(patent)

    def expression(self, modalities: tuple[str, ...] = ()) -> str:
        """The Milvus boolean expression for these filters (and, for collections without
        partitions, the kinds of rows searched)."""
        clauses = []
        if modalities:
            clauses.append(f"modality in {_string_list(modalities)}")
        classes = [c for c in self.locarno if len(c) == 2]
        subclasses = [c for c in self.locarno if len(c) == 4]
        ors = []
        if classes:
            ors.append(f"locarno_class in {_string_list(classes)}")
        if subclasses:
            ors.append(f"locarno in {_string_list(subclasses)}")
        if ors:
            clauses.append("(" + " or ".join(ors) + ")")
        if self.date_from is not None:
            clauses.append(f"grant_date >= {int(self.date_from)}")
        if self.date_to is not None:
            clauses.append(f"grant_date <= {int(self.date_to)}")
        if self.views:
            clauses.append(f"view in {_string_list(self.views)}")
        if self.exclude_patents:
            clauses.append(f"patent not in {_string_list(self.exclude_patents)}")
        return " and ".join(clauses)


def _string_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"
