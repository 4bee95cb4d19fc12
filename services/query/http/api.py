"""JSON <-> domain for the web app: the search body, hits, the patent view and the search
record an examiner exports for the file. The only web module that knows both sides; the
routes (app.py) stay a few lines each, like the gRPC servicer's."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import re
from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field

from patentclip.drawings.preprocess import CropBox
from patentclip.errors import InvalidQueryError
from patentclip.grants.model import (
    LOCARNO_MAIN_CLASSES,
    Grant,
    iso_date,
    normalize_patent_number,
)
from patentclip.search.engine import (
    MAX_RESULT_WINDOW,
    MAX_TOP_K,
    PatentRecord,
    Query,
    SearchRequest,
    SearchResult,
    check_image,
    check_unicode,
)
from patentclip.store import Hit, SearchFilters

RECORD_FORMAT = "patentclip-search-record/1"
DEFAULT_COUNTS_DEPTH = 200
USPTO_URL = "https://ppubs.uspto.gov/pubwebapp/external.html?q={number}.pn.&db=USPAT"


class Strict(BaseModel):
    """Request bodies take JSON's own types: "1" is no number (the OpenAPI document says
    so, and Schemathesis holds the API to it)."""

    model_config = ConfigDict(strict=True)


class CropIn(Strict):
    left: float
    top: float
    right: float
    bottom: float


class FiltersIn(Strict):
    locarno: list[str] = Field(default_factory=list)
    date_from: str = ""  # YYYY-MM-DD, as <input type=date> gives it; "" = open
    date_to: str = ""
    views: list[str] = Field(default_factory=list)


class SearchIn(Strict):
    """One search from the web app: text, a drawing (base64), both, or a patent number."""

    text: str = ""
    image: str = ""  # base64 of the file's bytes (TIFF, PNG or JPEG)
    image_name: str = Field("", max_length=200)
    crop: CropIn | None = None
    patent: str = ""  # "more like this": the patent as examiners type it
    sheet: int | None = None  # ... only this sheet's drawing
    filters: FiltersIn = Field(default_factory=FiltersIn)
    against: str = ""
    page: int = 0
    page_size: int = 24
    counts_depth: int = DEFAULT_COUNTS_DEPTH
    model_version: str = ""  # a later page: the version that ranked the first


class RecordQueryIn(Strict):
    kind: str
    text: str
    image_sha256: str
    image_name: str
    crop: CropIn | None
    patent: str
    sheet: int | None
    filters: FiltersIn
    against: str


class RecordResultIn(Strict):
    rank: int
    patent: str
    sheet: int
    title: str
    grant_date: str
    locarno: str
    view: str
    figures: list[str]
    score: float
    matched: str


class RecordIn(Strict):
    """A search record as ``search_response`` writes it (what the page exports)."""

    format: str
    searched_at: str
    model_version: str
    collection: str
    query: RecordQueryIn
    results: list[RecordResultIn] = Field(max_length=MAX_RESULT_WINDOW)


class WebSearch:
    """A validated web search: the core ``Query`` and ``SearchRequest`` it runs, and what the
    search record says about it."""

    def __init__(self, body: SearchIn, max_image_bytes: int, timeout_s: float) -> None:
        self.body = body
        drawing = _image_bytes(body.image, max_image_bytes)
        crop = CropBox(**body.crop.model_dump()) if body.crop else None
        self.query = Query(
            text=check_unicode(body.text.strip(), "text") or None, drawing=drawing,
            drawing_name=body.image_name or "the drawing",
            crop=crop if drawing else None,  # the page keeps a crop only with its drawing
            patent=normalize_patent_number(body.patent, "patent") if body.patent else "",
            sheet=body.sheet if body.patent else None)
        if body.page < 0 or not 1 <= body.page_size <= MAX_TOP_K:
            raise InvalidQueryError(f"page={body.page}, page_size={body.page_size}: page >= 0 "
                                    f"and 1 <= page_size <= {MAX_TOP_K}")
        self.request = SearchRequest(
            top_k=body.page_size, offset=body.page * body.page_size, filters=filters(body.filters),
            against=body.against, timeout=timeout_s,
            count_depth=min(max(body.counts_depth, 0), MAX_RESULT_WINDOW))

    def run(self, engine) -> SearchResult:
        if self.body.model_version and self.body.model_version != engine.model_version:
            raise InvalidQueryError(f"page {self.body.page + 1}: the results were ranked by model "
                                    f"{self.body.model_version}, now serving "
                                    f"{engine.model_version}; search again from the first page")
        return engine.search(self.query, self.request)

    def described(self) -> dict:
        """The query as the search record states it (the image by its hash, not its bytes)."""
        q = self.query
        return {"kind": q.kind, "text": q.text or "",
                "image_sha256": hashlib.sha256(q.drawing).hexdigest() if q.drawing else "",
                "image_name": self.body.image_name if q.drawing else "",
                "image_bytes": len(q.drawing),
                "crop": self.body.crop.model_dump() if q.crop else None,
                "patent": q.patent, "sheet": self.body.sheet,
                "filters": self.body.filters.model_dump(), "against": self.body.against}


def _image_bytes(encoded: str, max_image_bytes: int) -> bytes:
    if not encoded:
        return b""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidQueryError(f"image: not base64 ({exc})") from exc
    return check_image(data, "image", max_image_bytes)


def filters(body: FiltersIn) -> SearchFilters:
    return SearchFilters(locarno=tuple(body.locarno), date_from=_day(body.date_from, "date_from"),
                         date_to=_day(body.date_to, "date_to"), views=tuple(body.views))


def _day(text: str, field: str) -> int | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidQueryError(f"filters.{field}: {text!r} is not a date (YYYY-MM-DD)") from exc
    return day.year * 10000 + day.month * 100 + day.day


def drawing_url(patent: str, sheet: int) -> str:
    return f"/api/drawing/{patent}/{sheet}"


def hit(h: Hit, rank: int) -> dict:
    return {"rank": rank, "patent": h.patent, "title": h.title,
            "grant_date": iso_date(h.grant_date), "locarno": h.locarno,
            "locarno_title": LOCARNO_MAIN_CLASSES.get(h.locarno[:2], ""), "sheet": h.sheet,
            "view": h.view, "figures": list(h.figures),
            "figure_text": h.caption, "score": round(float(h.score), 4), "matched": h.modality,
            "drawing": drawing_url(h.patent, h.sheet)}


def search_response(query: WebSearch, result: SearchResult) -> dict:
    """The page of results, the Locarno counts and the search record for the file."""
    offset = query.request.offset
    hits = [hit(h, offset + i + 1) for i, h in enumerate(result.hits)]
    counts = [{"locarno_class": c, "title": LOCARNO_MAIN_CLASSES.get(c, ""), "results": n}
              for c, n in result.locarno_counts]
    record = {"format": RECORD_FORMAT,
              "searched_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "model_version": result.model_version, "collection": result.collection,
              "query": query.described(),
              "results": [{k: h[k] for k in RECORD_COLUMNS} for h in hits]}
    return {"hits": hits, "page": query.body.page, "page_size": query.request.top_k,
            "has_more": query.request.next_offset(len(hits)) is not None,
            "locarno_counts": counts, "counts_depth": query.request.count_depth,
            "counted": result.counted, "model_version": result.model_version,
            "collection": result.collection, "record": record}


def patent_view(record: PatentRecord, grant: Grant | None, model_version: str) -> dict:
    """The patent view: every sheet in the collection with its figure descriptions, the
    claim (from the stored grant record, when there is one) and the USPTO link."""
    descriptions = {f.number: f.description for f in grant.figures} if grant else {}
    sheets = []
    for sheet in record.sheets:
        texts = [descriptions[n] for n in sheet.figures if n in descriptions] or (
            [sheet.caption] if sheet.caption else [])
        sheets.append({"sheet": sheet.sheet, "view": sheet.view, "figures": list(sheet.figures),
                       "descriptions": texts, "drawing": drawing_url(record.patent,
                                                                     sheet.sheet)})
    return {"patent": record.patent, "title": record.title, "kind": grant.kind if grant else "",
            "grant_date": iso_date(record.grant_date), "locarno": record.locarno,
            "locarno_title": LOCARNO_MAIN_CLASSES.get(record.locarno[:2], ""),
            "uspc": [u.normalized for u in grant.uspc] if grant else [],
            "claim": grant.claim if grant else "",
            "drawing_notes": list(grant.drawing_notes) if grant else [],
            "sheets": sheets, "uspto_url": uspto_url(record.patent),
            "model_version": model_version}


def uspto_url(patent: str) -> str:
    """The patent in USPTO's public search (Patent Public Search), e.g. D907292."""
    number = patent[0] + patent[1:].lstrip("0") if patent[:1].isalpha() else patent.lstrip("0")
    return USPTO_URL.format(number=number)


# The result columns of an exported record; the CSV repeats the query's on every row.
RECORD_COLUMNS = ("rank", "patent", "sheet", "title", "grant_date", "locarno", "view",
                  "figures", "score", "matched")
QUERY_COLUMNS = ("searched_at", "model_version", "collection", "query_kind", "query_text",
                 "image_sha256", "image_name", "crop", "patent_query", "filters")


def record_csv(record: dict) -> str:
    """A search record as one flat CSV table: the query's columns, then a result's."""
    try:
        query = record["query"]
        fixed = [record["searched_at"], record["model_version"], record["collection"],
                 query["kind"], query["text"], query["image_sha256"], query["image_name"],
                 json.dumps(query["crop"]) if query["crop"] else "",
                 query["patent"] + (f" sheet {query['sheet']}"
                                    if query["patent"] and query["sheet"] is not None else ""),
                 json.dumps(query["filters"], sort_keys=True)]
        fixed = [_cell(cell) for cell in fixed]
        rows = [[*fixed, *(_cell(result[c]) for c in RECORD_COLUMNS)]
                for result in record["results"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidQueryError(f"record: not a search record from this service (missing "
                                f"{str(exc)[:100]})") from exc
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*QUERY_COLUMNS, *RECORD_COLUMNS])
    writer.writerows(rows)
    return buffer.getvalue()


_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?", re.ASCII)


def _cell(value) -> str:
    return neutralized(",".join(value) if isinstance(value, list) else str(value))


def neutralized(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one that starts with = + - @, a tab or a
    CR (a formula such as =HYPERLINK(...) in a title) gets a leading apostrophe; plain
    numbers (a negative score) stay numbers. OWASP's CSV-injection rule."""
    return "'" + cell if _FORMULA.match(cell) and not _NUMBER.fullmatch(cell) else cell


MAX_JSON_DEPTH = 32  # a search record is 4 levels deep


def parse_json(body: bytes, what: str) -> object:
    """A JSON body; InvalidQueryError naming ``what`` when it is not JSON, not UTF-8, or
    nested deeper than MAX_JSON_DEPTH (Python's parser and encoder recurse)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidQueryError(f"{what}: not JSON ({str(exc)[:200]})") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidQueryError(f"{what}: nested deeper than {MAX_JSON_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return value


def export_record(record: dict, format: str) -> tuple[str, str]:  # noqa: A002
    """The exported file's text and name (without extension) for a record validated as
    RecordIn."""
    stamp = re.sub(r"[^0-9A-Za-z+-]", "", record["searched_at"])[:32]  # a plain header value
    text = record_csv(record) if format == "csv" else json.dumps(record, indent=2)
    return check_unicode(text, "record"), f"patentclip-search-{stamp or 'record'}"
