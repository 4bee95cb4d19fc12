"""The design-grant domain model: what one US design patent says about itself.

A grant has *figures* (numbered views described in the text, "FIG. 2 is a bottom
view thereof") and *drawing sheets* (the TIFF images). They are not the same thing:
one sheet can carry several figures, and the front-page image (``D00000``) repeats
a representative figure. The XML lists both but never says which figure is on which
sheet, so :class:`SheetFigureMapping` records how a sheet's figures were inferred.
See ``docs/grant-model.md``.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from patentclip.errors import InvalidQueryError


class View(enum.StrEnum):
    """The fixed vocabulary of drawing views. The original wording is kept beside it."""

    FRONT = "front"
    REAR = "rear"
    LEFT = "left"
    RIGHT = "right"
    TOP = "top"
    BOTTOM = "bottom"
    PERSPECTIVE = "perspective"
    EXPLODED = "exploded"
    SECTION = "section"
    DETAIL = "detail"
    IN_USE = "in-use"
    OTHER = "other"


# What a *sheet* may be filed under besides a figure's view: "unknown" when the XML does
# not say which figures the sheet holds, "mixed" when they have different views. This is
# the one vocabulary of view names: the store's filter, the proto enum (VIEW_UNKNOWN,
# VIEW_MIXED) and the CLI's --view choices are built from it or tested against it.
UNKNOWN_VIEW = "unknown"
MIXED_VIEW = "mixed"
SHEET_VIEWS: tuple[str, ...] = (*(view.value for view in View), UNKNOWN_VIEW, MIXED_VIEW)

# Checked in order: the first rule whose pattern matches the view phrase wins. Special
# views (exploded, section, detail, in use) beat the direction they are seen from, and
# "perspective" beats "front" in "front perspective view". "Elevation" alone says the view
# is horizontal, not from which side: "front elevation" is front, but "side elevation" and
# a bare "elevation view" are OTHER, like an unqualified "side view".
_VIEW_RULES: tuple[tuple[View, re.Pattern[str]], ...] = tuple(
    (view, re.compile(pattern, re.IGNORECASE))
    for view, pattern in (
        (View.EXPLODED, r"\bexploded\b"),
        (View.SECTION, r"\b(cross[- ]?)?section(al)?\b|\bcut[- ]?away\b"),
        (View.DETAIL, r"\b(enlarged|detail(ed)?|fragmentary|partial|close[- ]?up|zoomed)\b"),
        (View.IN_USE,
         r"\b(in[- ]use|environment(al)?|in an? (exemplary )?environment|installed"
         r"|in (an? )?(condition|state) of use)\b"),
        (View.PERSPECTIVE, r"\b(perspective|isometric|3-?d)\b"),
        (View.BOTTOM, r"\b(bottom|underside|lower plan)\b"),
        (View.TOP, r"\b(top|plan)\b"),
        (View.REAR, r"\b(rear|back)\b"),
        (View.LEFT, r"\bleft\b"),
        (View.RIGHT, r"\bright\b"),
        (View.FRONT, r"\b(front|from view)\b"),
    )
)


# Special views that the rest of a figure's sentence can add to its view phrase: "a
# perspective view ..., shown exploded", "a front view ... in condition of use".
SPECIAL_VIEWS = frozenset({View.EXPLODED, View.SECTION, View.DETAIL, View.IN_USE})
_SENTENCE_VIEWS = (View.EXPLODED, View.IN_USE)


def figure_view(view_phrase: str, sentence: str) -> View:
    """The view of a figure from its view phrase ("perspective view") and its whole
    sentence: an exploded or in-use remark after the phrase wins over the direction."""
    view = normalize_view(view_phrase)
    if view in SPECIAL_VIEWS:
        return view
    return next((special for special in _SENTENCE_VIEWS if _rule(special).search(sentence)),
                view)


def _rule(view: View) -> re.Pattern[str]:
    return next(pattern for rule_view, pattern in _VIEW_RULES if rule_view is view)


def normalize_view(text: str) -> View:
    """Map a view phrase ("front perspective view", "1.3 : Left") to the vocabulary.

    Unrecognised phrases ("a side view", "a second image thereof") map to OTHER; the
    caller keeps the original text, so nothing is lost.
    """
    for view, pattern in _VIEW_RULES:
        if pattern.search(text):
            return view
    return View.OTHER


# A patent number as stored (USPTO's 8-character doc-number): D0907292, D1049406,
# 06836899 (utility), PP034567, RE049123.
# ASCII digits only: \d alone also matches other scripts' digits ("D０９０７２９２").
PATENT_NUMBER = re.compile(r"[A-Z]{0,2}\d{5,8}", re.ASCII)
_TYPED_NUMBER = re.compile(r"(?P<series>D|PP|RE|H|T)?(?P<digits>\d{1,8})(?P<kind>[A-Z]\d?)?",
                           re.ASCII)
# A figure number as the reader writes it: 1, 2A, 1.3 (Hague reproductions).
FIGURE_NUMBER = re.compile(r"\d{1,4}(?:\.\d{1,4})?[A-Za-z]?", re.ASCII)
# A Locarno code as stored: class and subclass, four ASCII digits (0204).
LOCARNO_CODE = re.compile(r"\d{4}", re.ASCII)


def normalize_patent_number(text: str, what: str = "patent number") -> str:
    """The stored form of a patent number as examiners type it.

    ``D907,292``, ``D907292``, ``USD0907292S1``, ``Des. 907,292`` and ``d 907292`` all
    give ``D0907292``; ``D1049406`` stays; ``D900003`` gives ``D0900003``. The number is
    zero-padded to USPTO's 8 characters and a trailing kind code (S1, B2, E) is dropped.
    InvalidQueryError names ``what`` when the text is no patent number.
    """
    compact = re.sub(r"[\s,.]", "", (text or "").upper())
    compact = re.sub(r"^DES(?=\d)", "D", compact.removeprefix("US"))
    match = _TYPED_NUMBER.fullmatch(compact)
    series = (match["series"] or "") if match else ""
    if not match or len(series) + len(match["digits"].lstrip("0") or "0") > 8:
        raise InvalidQueryError(f"{what} {text!r}: not a patent number (e.g. D0907292, "
                                "D907,292 or USD0907292S1)")
    return series + match["digits"].zfill(8 - len(series))


def is_patent_number(text: str) -> bool:
    """Whether ``text`` is a patent number as stored (``D0907292``): the one rule."""
    return bool(PATENT_NUMBER.fullmatch(text or ""))


def check_patent_number(patent: str, what: str = "patent number") -> str:
    """``patent`` when it is a patent number as stored, else InvalidQueryError naming
    ``what``: for values that go into a Milvus expression."""
    if not is_patent_number(patent):
        raise InvalidQueryError(f"{what} {patent!r}: expected e.g. D0907292")
    return patent


def yyyymmdd(day: datetime.date | None) -> int | None:
    """A date as the API and the store write it (20210105); None for None."""
    return int(day.strftime("%Y%m%d")) if day else None


def iso_date(yyyymmdd: int) -> str:
    """A stored date (20210105) as ISO 8601 ("2021-01-05"): the one conversion for every
    output (the web API, the CLI)."""
    return f"{yyyymmdd // 10000:04d}-{yyyymmdd // 100 % 100:02d}-{yyyymmdd % 100:02d}"


def is_calendar_date(yyyymmdd: int) -> bool:
    """True when ``yyyymmdd`` (e.g. 20210105) is a real date of the calendar."""
    try:
        datetime.date(yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100)
    except ValueError:
        return False
    return 10000101 <= yyyymmdd <= 99991231


class SheetFigureMapping(enum.StrEnum):
    """How the figures on a drawing sheet were determined."""

    ONE_PER_SHEET = "one-per-sheet"  # figure count == sheet count: sheet n holds FIG n
    FRONT_PAGE = "front-page"  # D00000 repeats a representative figure, not named in XML
    UNKNOWN = "unknown"  # counts differ: the XML does not say which figures a sheet holds
    LABELS = "labels"  # read from the sheet's own "FIG. n" labels (drawings/figures.py)


# Locarno Classification (14th edition) main classes, for display and zero-shot prompts.
LOCARNO_MAIN_CLASSES: dict[str, str] = {
    "01": "Foodstuffs",
    "02": "Articles of clothing and haberdashery",
    "03": "Travel goods, cases, parasols and personal belongings",
    "04": "Brushware",
    "05": "Textile piecegoods, artificial and natural sheet material",
    "06": "Furnishing",
    "07": "Household goods",
    "08": "Tools and hardware",
    "09": "Packages and containers for the transport or handling of goods",
    "10": "Clocks and watches and other measuring, checking and signalling instruments",
    "11": "Articles of adornment",
    "12": "Means of transport or hoisting",
    "13": "Equipment for production, distribution or transformation of electricity",
    "14": "Recording, telecommunication or data processing equipment",
    "15": "Machines",
    "16": "Photographic, cinematographic and optical apparatus",
    "17": "Musical instruments",
    "18": "Printing and office machinery",
    "19": "Stationery and office equipment, artists' and teaching materials",
    "20": "Sales and advertising equipment, signs",
    "21": "Games, toys, tents and sports goods",
    "22": "Arms, pyrotechnic articles, articles for hunting, fishing and pest killing",
    "23": "Fluid distribution, sanitary, heating, ventilation and air-conditioning equipment",
    "24": "Medical and laboratory equipment",
    "25": "Building units and construction elements",
    "26": "Lighting apparatus",
    "27": "Tobacco and smokers' supplies",
    "28": "Pharmaceutical and cosmetic products, toilet articles and apparatus",
    "29": "Devices and equipment against fire hazards, for accident prevention and rescue",
    "30": "Articles for the care and handling of animals",
    "31": "Machines and appliances for preparing food or drink",
    "32": "Graphic symbols and logos, surface patterns, ornamentation",
    "99": "Miscellaneous",
}


@dataclass(frozen=True)
class LocarnoClass:
    """Locarno classification, e.g. code '0204' = class '02', subclass '04', edition '13'."""

    code: str
    edition: str = ""

    @property
    def main_class(self) -> str:
        return self.code[:2]

    @property
    def subclass(self) -> str:
        return self.code[2:4]


@dataclass(frozen=True)
class UspcClass:
    """US national classification in USPTO's fixed-width form ('D28 47') and normalized."""

    raw: str
    main: bool = True

    @property
    def normalized(self) -> str:
        """'D28 47' -> 'D28/47'; 'D 2728' -> 'D2/728'; 'D14486' -> 'D14/486'."""
        return normalize_uspc(self.raw)


def normalize_uspc(raw: str) -> str:
    """Normalize a USPC class string to 'CLASS/SUBCLASS'.

    USPTO writes a 3-character class field then the subclass ('D28 47', 'D 2728' is class
    D2 subclass 728). The fixed width is the only reliable separator, so split at 3.
    """
    text = raw.rstrip()
    if len(text) <= 3:
        return text.replace(" ", "")
    klass, sub = text[:3].replace(" ", ""), text[3:].strip()
    return f"{klass}/{sub}" if sub else klass


@dataclass(frozen=True)
class Figure:
    """One numbered figure as described in 'description-of-drawings'."""

    number: str
    view: View
    view_text: str
    description: str


@dataclass(frozen=True)
class Region:
    """A box on a drawing sheet as fractions of its width and height (0..1, left < right,
    top < bottom): where a figure is, a stored part, the part of a hit that matched. Stored
    in a row's key at per-mille precision (``key``: "250,0,750,500")."""

    left: float
    top: float
    right: float
    bottom: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.left < self.right <= 1.0 and 0.0 <= self.top < self.bottom <= 1.0):
            raise ValueError(f"region {self.as_tuple()}: expected fractions 0..1 with "
                             "left < right and top < bottom")

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.right, self.bottom)

    @property
    def key(self) -> str:
        """Per-mille corners: "250,0,750,500"."""
        return ",".join(str(round(v * 1000)) for v in self.as_tuple())

    @classmethod
    def from_key(cls, key: str) -> Region:
        values = [int(v) / 1000 for v in key.split(",")]
        if len(values) != 4:
            raise ValueError(f"region key {key!r}: expected four per-mille corners")
        return cls(*values)

    @classmethod
    def per_mille(cls, left: float, top: float, right: float, bottom: float) -> Region:
        """The region of these fractions at the per-mille precision rows keep; ValueError
        when it is out of 0..1, empty, or thinner than a thousandth of the sheet."""
        return cls.from_key(",".join(str(round(v * 1000)) for v in (left, top, right, bottom)))

    @classmethod
    def of_pixels(cls, box: Sequence[int], width: int, height: int) -> Region:
        """A pixel box (left, top, right, bottom) of a width x height sheet, per-mille."""
        return cls.per_mille(*(min(max(v / s, 0.0), 1.0) for v, s in
                               zip(box, (width, height, width, height), strict=True)))

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a width x height image, at least one pixel each way: where
        a query's crop and a stored part are cut, the same way."""
        left, top = int(self.left * width), int(self.top * height)
        return (left, top, max(round(self.right * width), left + 1),
                max(round(self.bottom * height), top + 1))


@dataclass(frozen=True)
class FigureRegion:
    """Where one figure is on its sheet, as its label says (read at ingest)."""

    number: str
    region: Region


@dataclass(frozen=True)
class DrawingSheet:
    """One drawing image (a TIFF sheet) of a grant. ``regions``: where each of its figures
    is, when the sheet's labels were read and agreed with the XML (mapping LABELS)."""

    number: int
    file_name: str
    figure_numbers: tuple[str, ...] = ()
    mapping: SheetFigureMapping = SheetFigureMapping.UNKNOWN
    image_uri: str = ""
    regions: tuple[FigureRegion, ...] = ()

    @property
    def front_page(self) -> bool:
        return self.mapping is SheetFigureMapping.FRONT_PAGE


CITATION_CATEGORIES = ("examiner", "applicant", "other")  # "cited by examiner", ...


@dataclass(frozen=True)
class Citation:
    """One reference a grant cites (``us-references-cited``), as its XML states it: a patent
    document (country, number, kind, date, name) or other literature (``text``), and who
    cited it (``category``: examiner, applicant, other; "" when the XML does not say).
    ``date`` is the XML's YYYYMMDD, whose day is often 00 (month precision)."""

    country: str = ""
    number: str = ""
    kind: str = ""
    date: int = 0
    name: str = ""
    category: str = ""
    text: str = ""  # non-patent literature

    @property
    def us_patent(self) -> str:
        """The cited US patent in the stored form (``D844798`` -> ``D0844798``), else ""
        (another country, or literature)."""
        if self.country != "US" or not self.number:
            return ""
        try:
            return normalize_patent_number(self.number)
        except InvalidQueryError:
            return ""

    @property
    def design(self) -> bool:
        """A cited US design patent: what the design corpus can hold."""
        return self.us_patent.startswith("D")


@dataclass(frozen=True)
class Grant:
    """One US design patent grant, as its XML states it."""

    patent_number: str
    kind: str
    title: str
    grant_date: int
    locarno: LocarnoClass | None
    uspc: tuple[UspcClass, ...]
    claim: str
    figures: tuple[Figure, ...]
    sheets: tuple[DrawingSheet, ...]
    drawing_notes: tuple[str, ...] = ()
    dtd_version: str = ""
    source: str = ""
    declared_figure_count: int | None = None
    declared_sheet_count: int | None = None
    citations: tuple[Citation, ...] = ()

    def figure(self, number: str) -> Figure | None:
        return next((f for f in self.figures if f.number == number), None)

    def with_sheet_labels(self, read: dict[int, Sequence[str]],
                          regions: dict[int, Sequence[FigureRegion]] | None = None
                          ) -> Grant | None:
        """This grant with its unmapped sheets' figures as their labels say (``read``: the
        figure numbers read on each sheet, by sheet number), when the labels agree with
        the XML: every unmapped sheet reads at least one label, and the labels, each
        sheet's in figure order and the sheets in order, are the figures the XML
        describes, each once. None when they disagree (the sheets stay "unknown"); the
        grant itself when no sheet is unmapped. ``regions``: where each labelled figure
        is, by sheet; kept on sheets of two or more figures (their figure rows)."""
        unmapped = [s for s in self.sheets if s.mapping is SheetFigureMapping.UNKNOWN]
        if not unmapped:
            return self
        order = {f.number: i for i, f in enumerate(self.figures)}
        labels = {s.number: sorted(dict.fromkeys(read.get(s.number, ())),
                                   key=lambda n: order.get(n, len(order))) for s in unmapped}
        mapped = {n for s in self.sheets if s.mapping is SheetFigureMapping.ONE_PER_SHEET
                  for n in s.figure_numbers}
        expected = [f.number for f in self.figures if f.number not in mapped]
        if any(not labels[s.number] for s in unmapped) or \
                [n for s in unmapped for n in labels[s.number]] != expected:
            return None
        boxes = regions or {}

        def kept(sheet: DrawingSheet) -> tuple[FigureRegion, ...]:
            found = {r.number: r for r in boxes.get(sheet.number, ())}
            if len(labels[sheet.number]) < 2 or set(found) != set(labels[sheet.number]):
                return ()
            return tuple(found[n] for n in labels[sheet.number])

        sheets = tuple(replace(s, figure_numbers=tuple(labels[s.number]),
                               mapping=SheetFigureMapping.LABELS, regions=kept(s))
                       if s.mapping is SheetFigureMapping.UNKNOWN else s for s in self.sheets)
        return replace(self, sheets=sheets)

    def sheet_figures(self, sheet: DrawingSheet) -> list[Figure]:
        return [f for n in sheet.figure_numbers if (f := self.figure(n)) is not None]

    def sheet_view(self, sheet: DrawingSheet) -> str:
        """The normalized view of a sheet: its single figure's view, else 'unknown'/'mixed'."""
        views = {f.view.value for f in self.sheet_figures(sheet)}
        if not views:
            return "unknown"
        return views.pop() if len(views) == 1 else "mixed"

    def figure_caption(self, figure: Figure) -> str:
        """A caption for one figure (a figure row, and each figure of a sheet's caption):
        its description, "thereof" read as the title (``sheet_caption``)."""
        return _figure_phrase(figure, self.title.strip().rstrip("."))

    def sheet_caption(self, sheet: DrawingSheet) -> str:
        """A caption for a sheet built only from what the patent says about it.

        'thereof' in a figure description refers to the claimed article, so it is
        replaced by the title: "FIG. 2 is a bottom view thereof" -> "bottom view of a
        shaving blade cartridge".
        """
        parts = [self.figure_caption(f) for f in self.sheet_figures(sheet)]
        if parts:
            return "; ".join(parts)
        title = self.title.strip().rstrip(".")
        if sheet.front_page:
            return f"front page drawing of a {title.lower()}"
        return self.unmapped_caption()

    def unmapped_caption(self) -> str:
        """A sheet whose figures the XML does not name: the title and the patent's list of
        views ("a shaving blade cartridge in one of its views: perspective, front, top"),
        not "drawing sheet 3", which no one searches for."""
        title = self.title.strip().rstrip(".").lower()
        views = [v for v in dict.fromkeys(f.view.value for f in self.figures)
                 if v != View.OTHER.value]
        if not views:
            return f"a drawing of a {title}"
        return f"a {title} in one of its views: {', '.join(views)}"


# "The FIGURE is ...", "The sole FIGURE shows ...": a one-figure grant's only figure (1).
SOLE_FIGURE_LEAD = r"The\s+(?:sole\s+|single\s+|only\s+)?FIGURE\b"


def _figure_phrase(figure: Figure, title: str) -> str:
    text = figure.description.strip().rstrip(";,.").removesuffix(" and").rstrip(";,")
    match = re.match(rf"^(?:FIGS?\.?|FIGURES?|{SOLE_FIGURE_LEAD})\s*[\w.\-]*\s*"
                     r"(?:is|are|provides|shows)\s+(?:an?\s+|the\s+)?", text, re.IGNORECASE)
    phrase = text[match.end():] if match else text
    phrase = re.sub(r"\bthereof\b", f"of a {title.lower()}", phrase)
    return phrase.strip()


@dataclass
class ReadReport:
    """What a read of one source produced: counts and per-document problems."""

    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def errors_by_reason(self) -> dict[str, int]:
        """Error counts by reason, without the file names and numbers that make each
        message unique ("missing drawing files", "not a valid zip"): a report's columns."""
        return dict(Counter(error_reason(message) for message in self.errors))


def error_reason(message: str) -> str:
    """The reason of a "source: reason (detail)" report message, numbers as N."""
    reason = message.split(": ", 1)[-1]
    reason = reason.split(" (", 1)[0].split(": ", 1)[0]
    return re.sub(r"\d+", "N", reason).strip()[:80]
