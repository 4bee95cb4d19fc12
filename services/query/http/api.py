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
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime

from google.protobuf.descriptor import FieldDescriptor
from pydantic import BaseModel, ConfigDict, Field, create_model

from patentclip.codec.api import check_unicode
from patentclip.codec.api import query_message as api_query_message
from patentclip.errors import InvalidQueryError
from patentclip.grants.model import (
    LOCARNO_MAIN_CLASSES,
    Citation,
    Grant,
    iso_date,
)
from patentclip.search.engine import (
    MAX_RESULT_WINDOW,
    MAX_TOP_K,
    Deadline,
    PatentRecord,
    SearchRequest,
    SearchResult,
)
from patentclip.search.query import query_from_message
from patentclip.store import Hit, SearchFilters
from patentclip.v1 import search_pb2
from services.query.plane import paging
from services.query.plane.drawings import CitationLinks

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


# The web body's query fields are the API's Query message, field for field (so a new query
# mode reaches the web without a line here): a message field is a model (Crop: the one
# below; others derived the same way), a repeated one a list of them, bytes are base64
# text, and a field with presence (optional, a message) may be null.
_MESSAGE_MODELS: dict[str, type[BaseModel]] = {"patentclip.v1.Crop": CropIn}
_SCALAR_TYPES = {FieldDescriptor.TYPE_STRING: str, FieldDescriptor.TYPE_BYTES: str,
                 FieldDescriptor.TYPE_INT32: int, FieldDescriptor.TYPE_INT64: int,
                 FieldDescriptor.TYPE_BOOL: bool, FieldDescriptor.TYPE_FLOAT: float,
                 FieldDescriptor.TYPE_DOUBLE: float}
MAX_BODY_DRAWINGS = 16  # a bound for the body's list; the query's own limit is MAX_DRAWINGS


def _message_model(descriptor) -> type[BaseModel]:
    """The body model of a message type (derived once per type)."""
    if descriptor.full_name not in _MESSAGE_MODELS:
        _MESSAGE_MODELS[descriptor.full_name] = create_model(
            descriptor.name + "In", __base__=Strict,
            **{f.name: _query_field(f) for f in descriptor.fields})
    return _MESSAGE_MODELS[descriptor.full_name]


def _query_field(field: FieldDescriptor) -> tuple:
    kind = _message_model(field.message_type) if field.message_type else _SCALAR_TYPES[
        field.type]
    if field.is_repeated:
        return list[kind], Field(default_factory=list, max_length=MAX_BODY_DRAWINGS)
    return (kind | None, None) if field.has_presence else (kind, field.default_value or
                                                            kind())


QueryFieldsIn = create_model(
    "QueryFieldsIn", __base__=Strict,
    **{f.name: _query_field(f) for f in search_pb2.Query.DESCRIPTOR.fields})


class SearchIn(QueryFieldsIn):
    """One search from the web app: the query's fields (text, a drawing as base64, its
    name and crop, or a patent number and sheet) and how to search. A field it does not
    know is refused (the page number and model version of old bodies: use page_token)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    filters: FiltersIn = Field(default_factory=FiltersIn)
    against: str = ""
    page_size: int = 24
    page_token: str = ""  # a later page: next_page_token of the one before
    counts_depth: int = DEFAULT_COUNTS_DEPTH
    suggest_classes: int = 3  # the model's head: the query's most probable classes (0: none)


class RecordDrawingIn(Strict):
    name: str
    sha256: str
    crop: CropIn | None


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
    mode: str = ""  # records written before the query modes have neither
    drawings: list[RecordDrawingIn] = Field(default_factory=list, max_length=MAX_BODY_DRAWINGS)


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

    def __init__(self, body: SearchIn, max_image_bytes: int, timeout_s: float,
                 model_version: str) -> None:
        self.body = body
        self.query = query_from_message(query_message(body), max_image_bytes)
        if not 1 <= body.page_size <= MAX_TOP_K:
            raise InvalidQueryError(f"page_size={body.page_size}: 1 <= page_size <= {MAX_TOP_K}")
        self.request = SearchRequest(
            top_k=body.page_size, offset=paging.offset(body.page_token, model_version,
                                                       "page_token"),
            filters=filters(body.filters), against=body.against,
            deadline=Deadline.after(timeout_s),
            count_depth=min(max(body.counts_depth, 0), MAX_RESULT_WINDOW),
            suggest=body.suggest_classes)

    def run(self, engine) -> SearchResult:
        return engine.search(self.query, self.request)

    def described(self) -> dict:
        """The query as the search record states it (the image by its hash, not its bytes)."""
        q = self.query
        return {"kind": q.kind, "text": q.text or "",
                "image_sha256": hashlib.sha256(q.image).hexdigest() if q.image else "",
                "image_name": q.image_name if q.image else "", "image_bytes": len(q.image),
                "crop": self.body.crop.model_dump() if q.crop else None,
                "patent": q.patent, "sheet": q.sheet,
                "filters": self.body.filters.model_dump(), "against": self.body.against,
                "mode": q.mode if q.all_drawings else "",
                "drawings": [{"name": d.name, "sha256": hashlib.sha256(d.image).hexdigest(),
                              "crop": asdict(d.crop) if d.crop else None} for d in q.drawings]}


def query_message(body: QueryFieldsIn) -> search_pb2.Query:
    """The Query message of a body's query fields. A form's empty field is an unset one
    ("" and null), so the page may send every field; bytes fields are base64."""
    return api_query_message(_values(body, search_pb2.Query.DESCRIPTOR, ""))


def _values(body: BaseModel, descriptor, prefix: str) -> dict:
    """A body model's values by field name, as ``query_message`` takes them."""
    values = {}
    for field in descriptor.fields:
        value = getattr(body, field.name)
        if value is None or value == "":
            continue
        name = prefix + field.name
        if field.is_repeated:
            value = [_values(item, field.message_type, f"{name}[{i}].")
                     for i, item in enumerate(value)]
        elif field.message_type is not None:
            value = _values(value, field.message_type, name + ".")
        elif field.type == FieldDescriptor.TYPE_BYTES:
            value = _base64(value, name)
        values[field.name] = value
    return values


def _base64(encoded: str, field: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidQueryError(f"{field}: not base64 ({exc})") from exc


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
            "found_by": list(h.legs), "drawing": drawing_url(h.patent, h.sheet),
            "region": list(h.region.as_tuple()) if h.region else None}


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
    following = query.request.next_offset(len(hits))
    return {"hits": hits, "page": offset // query.request.top_k,
            "page_size": query.request.top_k, "has_more": following is not None,
            "next_page_token": "" if following is None else paging.token(
                following, result.model_version),
            "locarno_counts": counts, "counts_depth": query.request.count_depth,
            "counted": result.counted, "model_version": result.model_version,
            "suggested_classes": [{"locarno": c, "title": LOCARNO_MAIN_CLASSES.get(c, ""),
                                   "probability": p} for c, p in result.suggested],
            "suggestions_note": result.suggest_note,
            "legs": list(result.legs), "legs_note": result.legs_note,
            "collection": result.collection, "record": record}


def patent_view(record: PatentRecord, grant: Grant | None, model_version: str,
                links: CitationLinks | None = None) -> dict:
    """The patent view: every sheet in the collection with its figure descriptions, the
    claim (from the stored grant record, when there is one), the USPTO link, the references
    the grant cites (examiner's first, each linked to its patent view when the corpus
    holds it, else to the USPTO) and the corpus's grants that cite it."""
    descriptions = {f.number: f.description for f in grant.figures} if grant else {}
    sheets = []
    for sheet in record.sheets:
        texts = [descriptions[n] for n in sheet.figures if n in descriptions] or (
            [sheet.caption] if sheet.caption else [])
        sheets.append({"sheet": sheet.sheet, "view": sheet.view, "figures": list(sheet.figures),
                       "descriptions": texts, "drawing": drawing_url(record.patent,
                                                                     sheet.sheet),
                       "regions": [{"figure": f.number, "view": f.view,
                                    "region": list(f.region.as_tuple())}
                                   for f in sheet.regions]})
    return {"patent": record.patent, "title": record.title, "kind": grant.kind if grant else "",
            "grant_date": iso_date(record.grant_date), "locarno": record.locarno,
            "locarno_title": LOCARNO_MAIN_CLASSES.get(record.locarno[:2], ""),
            "uspc": [u.normalized for u in grant.uspc] if grant else [],
            "claim": grant.claim if grant else "",
            "drawing_notes": list(grant.drawing_notes) if grant else [],
            "sheets": sheets, "uspto_url": uspto_url(record.patent),
            "model_version": model_version,
            **citations_view(grant.citations if grant else (), links or CitationLinks())}


CATEGORY_ORDER = {"examiner": 0, "applicant": 1, "other": 2, "": 3}


def citations_view(citations: Sequence[Citation], links: CitationLinks) -> dict:
    """``citations`` (examiner's first, then in the order cited) and ``cited_by``: what the
    web app's patent view and ``patentclip cites`` show."""
    held = set(links.in_corpus)
    rows = []
    for citation in citations:
        patent = citation.us_patent
        rows.append({"category": citation.category, "country": citation.country,
                     "number": citation.number, "kind": citation.kind,
                     "date": citation.date, "name": citation.name, "text": citation.text,
                     "patent": patent, "in_corpus": patent in held,
                     "uspto_url": uspto_url(patent) if patent else ""})
    rows.sort(key=lambda r: CATEGORY_ORDER.get(r["category"], 3))
    return {"citations": rows,
            "cited_by": [{"patent": p, "category": c} for p, c in links.cited_by]}


def uspto_url(patent: str) -> str:
    """The patent in USPTO's public search (Patent Public Search), e.g. D907292."""
    number = patent[0] + patent[1:].lstrip("0") if patent[:1].isalpha() else patent.lstrip("0")
    return USPTO_URL.format(number=number)


# The result columns of an exported record; the CSV repeats the query's on every row.
RECORD_COLUMNS = ("rank", "patent", "sheet", "title", "grant_date", "locarno", "view",
                  "figures", "score", "matched")
QUERY_COLUMNS = ("searched_at", "model_version", "collection", "query_kind", "query_text",
                 "image_sha256", "image_name", "crop", "patent_query", "filters", "mode",
                 "more_drawings")


def record_csv(record: dict) -> str:
    """A search record as one flat CSV table: the query's columns, then a result's."""
    try:
        query = record["query"]
        fixed = [record["searched_at"], record["model_version"], record["collection"],
                 query["kind"], query["text"], query["image_sha256"], query["image_name"],
                 json.dumps(query["crop"]) if query["crop"] else "",
                 query["patent"] + (f" sheet {query['sheet']}"
                                    if query["patent"] and query["sheet"] is not None else ""),
                 json.dumps(query["filters"], sort_keys=True), query.get("mode", ""),
                 " ".join(d["sha256"] for d in query.get("drawings", []))]
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
