"""USPTO grant XML (DTD v4.0 to v4.7, 2005 on) as a :class:`~patentclip.grants.model.Grant`.

One document in, one grant out, or a GrantParseError naming the source and the reason;
utility, plant and reissue documents raise NotADesignGrantError. XML is parsed with
defusedxml: external entities and entity expansion are refused. How the fields map is in
docs/grant-model.md. Walking bundles and archives is ``patentclip.grants.reader``'s job.
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from patentclip.errors import GrantParseError, NotADesignGrantError
from patentclip.grants.model import (
    CITATION_CATEGORIES,
    SOLE_FIGURE_LEAD,
    Citation,
    DrawingSheet,
    Figure,
    Grant,
    LocarnoClass,
    SheetFigureMapping,
    UspcClass,
    figure_view,
    is_calendar_date,
)

DESIGN_KINDS = frozenset({"S1", "S"})
# v4.0 (2005, written "v40 2004-12-02") ... v4.7 (2022 on); v4.5 2014-2021.
SUPPORTED_DTD = re.compile(r"v?4\.?\d\b")
# Documents that weekly ipg files concatenate between grants and that are not grants.
OTHER_DOCUMENTS = {"sequence-cwu": "sequence listing (sequence-cwu)"}


def parse_grant_xml(data: bytes, source: str) -> Grant:
    """Parse one us-patent-grant XML document (DTD v4.0-v4.7) into a :class:`Grant`.

    Raises NotADesignGrantError for utility/plant/reissue grants and for the other
    documents of a weekly file (sequence listings), and GrantParseError (naming
    ``source``) for anything malformed or missing. The kind is checked before the DTD
    version, so a utility grant of any version is a skip, not an error.
    """
    root = _parse_root(data, source)
    if root.tag in OTHER_DOCUMENTS:
        raise NotADesignGrantError(source, root.tag, OTHER_DOCUMENTS[root.tag])
    if root.tag != "us-patent-grant":
        raise GrantParseError(source, f"root element is <{root.tag}>, expected <us-patent-grant>")
    biblio = root.find("us-bibliographic-data-grant")
    dtd = root.get("dtd-version", "")
    supported = not dtd or SUPPORTED_DTD.match(dtd)
    if biblio is None:
        raise GrantParseError(source, _unsupported_dtd(dtd) if not supported
                              else "missing <us-bibliographic-data-grant>")
    kind = _text(biblio.find("publication-reference/document-id/kind"))
    if kind and kind not in DESIGN_KINDS:
        raise NotADesignGrantError(source, kind)
    if not supported:
        raise GrantParseError(source, _unsupported_dtd(dtd))
    number, kind, date = _publication(biblio, source)
    if kind not in DESIGN_KINDS or not number.startswith("D"):
        raise NotADesignGrantError(source, kind)
    figures, notes = _figures(root.find("description/description-of-drawings"))
    declared_figures = _int_or_none(biblio.findtext("figures/number-of-figures"))
    sheets = _sheets(root.find("drawings"), [f.number for f in figures], declared_figures,
                     source)
    return Grant(
        patent_number=number,
        kind=kind,
        title=_required_text(biblio, "invention-title", source),
        grant_date=date,
        locarno=_locarno(biblio),
        uspc=_uspc(biblio),
        claim=_claim(root),
        figures=tuple(figures),
        sheets=tuple(sheets),
        drawing_notes=tuple(notes),
        dtd_version=root.get("dtd-version", ""),
        source=source,
        declared_figure_count=declared_figures,
        declared_sheet_count=_int_or_none(biblio.findtext("figures/number-of-drawing-sheets")),
        citations=_citations(biblio),
    )


def _unsupported_dtd(dtd: str) -> str:
    return (f"unsupported dtd-version {dtd!r}: this reader reads us-patent-grant v4.0-v4.7 "
            "(2005 onwards)")


def _parse_root(data: bytes, source: str) -> Element:
    try:
        return safe_et.fromstring(data, forbid_dtd=False, forbid_entities=True,
                                  forbid_external=True)
    except DefusedXmlException as exc:
        raise GrantParseError(source, f"refused unsafe XML ({type(exc).__name__})") from exc
    except safe_et.ParseError as exc:
        raise GrantParseError(source, f"malformed XML: {exc}") from exc


def _text(element: Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _required_text(parent: Element, path: str, source: str) -> str:
    text = _text(parent.find(path))
    if not text:
        raise GrantParseError(source, f"missing required element <{path}>")
    return text


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def _publication(biblio: Element, source: str) -> tuple[str, str, int]:
    doc = biblio.find("publication-reference/document-id")
    if doc is None:
        raise GrantParseError(source, "missing <publication-reference>")
    number = _required_text(doc, "doc-number", source)
    kind = _text(doc.find("kind"))
    date_text = _text(doc.find("date"))
    if not re.fullmatch(r"\d{8}", date_text) or not is_calendar_date(int(date_text)):
        raise GrantParseError(source, f"bad or missing grant <date>: {date_text!r}")
    return number, kind, int(date_text)


def _locarno(biblio: Element) -> LocarnoClass | None:
    node = biblio.find("classification-locarno")
    if node is None:
        return None
    code = re.sub(r"\D", "", _text(node.find("main-classification")))
    if not code:
        return None
    return LocarnoClass(code=code.zfill(4)[:4], edition=_text(node.find("edition")))


def _uspc(biblio: Element) -> tuple[UspcClass, ...]:
    node = biblio.find("classification-national")
    if node is None:
        return ()
    classes = []
    for child in node:
        if child.tag in ("main-classification", "further-classification") and child.text:
            classes.append(UspcClass(raw=child.text.strip("\n"),
                                     main=child.tag == "main-classification"))
    return tuple(classes)


# v4.0-v4.2 write <references-cited><citation>; v4.3 on <us-references-cited><us-citation>.
_CITATION_PATHS = ("references-cited/citation", "us-references-cited/us-citation")
_CATEGORY = re.compile(rf"cited by ({'|'.join(CITATION_CATEGORIES)})", re.IGNORECASE)


def _citations(biblio: Element) -> tuple[Citation, ...]:
    """Every reference the grant cites, in the XML's order."""
    out = []
    for path in _CITATION_PATHS:
        for node in biblio.findall(path):
            match = _CATEGORY.fullmatch(_text(node.find("category")))
            category = match[1].lower() if match else ""
            doc = node.find("patcit/document-id")
            if doc is not None:
                date = _text(doc.find("date"))
                out.append(Citation(
                    country=_text(doc.find("country")), number=_text(doc.find("doc-number")),
                    kind=_text(doc.find("kind")), name=_text(doc.find("name")),
                    date=int(date) if re.fullmatch(r"\d{8}", date) else 0,
                    category=category))
            else:
                out.append(Citation(text=_text(node.find("nplcit/othercit")),
                                    category=category))
    return tuple(out)


def _claim(root: Element) -> str:
    return " ".join(_text(c) for c in root.findall("claims/claim/claim-text"))


_FIG_LEAD = re.compile(
    r"^\s*(?:FIGS?\.?|FIGURES?)\s*(?P<nums>\d+(?:\.\d+)?[A-Z]?(?:\s*(?:,|and|to|through|-|–)\s*"
    r"(?:FIGS?\.?\s*)?\d+(?:\.\d+)?[A-Z]?)*)\s*(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_THE_FIGURE = re.compile(rf"^\s*{SOLE_FIGURE_LEAD}\s*(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_HAGUE = re.compile(r"^\s*(?P<num>\d+\.\d+)\s*:?\s*(?P<rest>.*)$", re.DOTALL)
_VIEW_PHRASE = re.compile(r"(?:is|are|provides|shows)\s+(?:an?\s+|the\s+)?(?P<view>.*?\bviews?\b)",
                          re.IGNORECASE)



def _figures(node: Element | None) -> tuple[list[Figure], list[str]]:
    """Figures from description-of-drawings paragraphs; other paragraphs become notes."""
    if node is None:
        return [], []
    figures: list[Figure] = []
    notes: list[str] = []
    for para in node.iter("p"):
        text = _text(para)
        parsed = _parse_figure_paragraph(text)
        if parsed is None:
            if text:
                notes.append(text)
            continue
        numbers, view_text = parsed
        view = figure_view(view_text, text)  # "a perspective view, shown exploded"
        known = {f.number for f in figures}
        # A figure described twice (e.g. again in a Hague "reproduction" note) keeps its
        # first description; the later paragraph is kept as a note.
        if all(n in known for n in numbers):
            notes.append(text)
            continue
        figures.extend(Figure(number=n, view=view, view_text=view_text, description=text)
                       for n in numbers if n not in known)
    return figures, notes


def _parse_figure_paragraph(text: str) -> tuple[list[str], str] | None:
    """Return (figure numbers, view phrase) if the paragraph describes figures."""
    if match := _THE_FIGURE.match(text):
        return ["1"], _view_phrase(match["rest"])
    if match := _HAGUE.match(text):
        rest = match["rest"].strip()
        return [match["num"]], _view_phrase(rest) if _VIEW_PHRASE.match(rest) else rest or "view"
    if match := _FIG_LEAD.match(text):
        return _expand_figure_numbers(match["nums"]), _view_phrase(match["rest"])
    return None


def _view_phrase(rest: str) -> str:
    match = _VIEW_PHRASE.search(rest)
    return match["view"] if match else rest.split(";")[0].strip()[:120]


def _expand_figure_numbers(text: str) -> list[str]:
    """'1 and 2' -> [1, 2]; '3-5' / '3 through 5' -> [3, 4, 5]; '2A' stays '2A'."""
    tokens = re.findall(r"\d+(?:\.\d+)?[A-Z]?|to|through|-|–", text, re.IGNORECASE)
    numbers: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        is_range = (i + 2 < len(tokens) and tokens[i + 1].lower() in ("to", "through", "-", "–")
                    and token.isdigit() and tokens[i + 2].isdigit())
        if is_range:
            numbers.extend(str(n) for n in range(int(token), int(tokens[i + 2]) + 1))
            i += 3
        else:
            if token[0].isdigit():
                numbers.append(token)
            i += 1
    return numbers


def _sheets(node: Element | None, figure_numbers: list[str],
            declared_figures: int | None, source: str) -> list[DrawingSheet]:
    """Drawing sheets in XML order; D00000 is the front page.

    Sheet n holds the n-th described figure only when the described figures, the declared
    figure count and the number of (non-front-page) sheets all agree; otherwise the XML
    does not say which figures a sheet holds and the mapping is UNKNOWN.
    """
    if node is None:
        return []
    files = []
    for figure in node.iter("figure"):
        img = figure.find("img")
        if img is not None and img.get("file"):
            num = (figure.get("num") or "0").strip()
            if not num.isdecimal():
                raise GrantParseError(source, f"<figure num={num!r}> in <drawings>: not a "
                                      "sheet number")
            files.append((int(num), img.get("file")))
    body = [f for f in files if f[0] != 0]
    one_per_sheet = (len(figure_numbers) == len(body) > 0
                     and declared_figures in (None, len(body)))
    body_figures = iter(figure_numbers if one_per_sheet else [])
    sheets = []
    for num, file_name in files:
        if num == 0:
            sheets.append(DrawingSheet(number=0, file_name=file_name,
                                       mapping=SheetFigureMapping.FRONT_PAGE))
        elif one_per_sheet:
            sheets.append(DrawingSheet(number=num, file_name=file_name,
                                       figure_numbers=(next(body_figures),),
                                       mapping=SheetFigureMapping.ONE_PER_SHEET))
        else:
            sheets.append(DrawingSheet(number=num, file_name=file_name))
    return sheets
