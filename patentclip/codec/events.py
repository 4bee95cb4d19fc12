"""Grant events: the protobuf message on the grants topic, to and from the domain model.

The topic is the system of record, so an event carries everything the embedder and a
later reindex need: the whole grant (title, classes, figures, sheets) and, per sheet, the
image store URI of its drawing. The image bytes themselves stay in the image store.

This module knows protobuf (the schema in ``protos/``), not the broker.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from patentclip.codec.api import VIEW_NAME_TO_PB
from patentclip.errors import EventDecodeError
from patentclip.grants.model import (
    FIGURE_NUMBER,
    LOCARNO_CODE,
    Citation,
    DrawingSheet,
    Figure,
    FigureRegion,
    Grant,
    LocarnoClass,
    Region,
    SheetFigureMapping,
    UspcClass,
    View,
    is_calendar_date,
    is_patent_number,
)
from patentclip.v1 import grant_pb2 as pb

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

# Dead-letter reasons: a fixed, small set (they are metric labels and message headers).
REASON_UNDECODABLE = "undecodable_event"
REASON_SCHEMA_VERSION = "unsupported_schema_version"
REASON_INVALID_GRANT = "invalid_grant"
REASON_MISSING_IMAGE = "missing_image"
REASON_CORRUPT_IMAGE = "corrupt_image"
REASON_OVERSIZED = "oversized_event"
REASON_KEY_MISMATCH = "key_mismatch"
DEAD_LETTER_REASONS = (REASON_UNDECODABLE, REASON_SCHEMA_VERSION, REASON_INVALID_GRANT,
                       REASON_MISSING_IMAGE, REASON_CORRUPT_IMAGE, REASON_OVERSIZED,
                       REASON_KEY_MISMATCH)

_VIEW_TO_PB = {view: VIEW_NAME_TO_PB[view.value] for view in View}
_VIEW_FROM_PB = {number: view for view, number in _VIEW_TO_PB.items()}
_MAPPING_TO_PB = {
    SheetFigureMapping.ONE_PER_SHEET: pb.SHEET_FIGURE_MAPPING_ONE_PER_SHEET,
    SheetFigureMapping.FRONT_PAGE: pb.SHEET_FIGURE_MAPPING_FRONT_PAGE,
    SheetFigureMapping.UNKNOWN: pb.SHEET_FIGURE_MAPPING_UNKNOWN,
    SheetFigureMapping.LABELS: pb.SHEET_FIGURE_MAPPING_LABELS,
}
_MAPPING_FROM_PB = {number: mapping for mapping, number in _MAPPING_TO_PB.items()}
CATEGORY_TO_PB = {"": pb.CITATION_CATEGORY_UNSPECIFIED,  # Citation.category -> the enum
                  "examiner": pb.CITATION_CATEGORY_EXAMINER,
                  "applicant": pb.CITATION_CATEGORY_APPLICANT,
                  "other": pb.CITATION_CATEGORY_OTHER}
CATEGORY_FROM_PB = {number: name for name, number in CATEGORY_TO_PB.items()}


@dataclass(frozen=True)
class PublishedGrant:
    """A grant as read back from the topic: sheets carry their image URIs."""

    grant: Grant
    bundle: str
    published_unix_ms: int
    schema_version: int


def event_key(grant: Grant) -> bytes:
    """The message key: the patent number, so every event of a patent lands in one
    partition, in order, and log compaction would keep the latest."""
    return grant.patent_number.encode("ascii")


def check_event_key(key: bytes | None, grant: Grant) -> None:
    """The contract: an event's key is its grant's patent number (partitioning, ordering
    and compaction all rely on it). EventDecodeError ``key_mismatch`` otherwise: under
    compaction, an event keyed D0900002 carrying D0999998 could later erase D0900002."""
    expected = event_key(grant)
    if key != expected:
        shown = "no key" if key is None else f"key {key.decode('utf-8', 'replace')!r}"
        raise EventDecodeError(REASON_KEY_MISMATCH, f"{shown} but the event is grant "
                               f"{grant.patent_number}; key events by patent number")


def tombstone_patent(key: bytes | None) -> str:
    """The patent a tombstone (null value) withdraws: its key. EventDecodeError when the
    key is missing or is no patent number, since nothing could be removed then."""
    if key is None:
        raise EventDecodeError(REASON_UNDECODABLE, "empty message value with no key")
    patent = key.decode("ascii", "replace")
    if not is_patent_number(patent):
        raise EventDecodeError(REASON_KEY_MISMATCH, f"tombstone key {patent!r} is not a "
                               "patent number (e.g. D0907292)")
    return patent


def encode_event(grant: Grant, bundle: str = "", published_unix_ms: int | None = None) -> bytes:
    """Serialize a grant (sheets with their ``image_uri`` set) as a GrantEvent."""
    event = pb.GrantEvent(
        schema_version=SCHEMA_VERSION, grant=grant_to_proto(grant), bundle=bundle,
        published_unix_ms=int(time.time() * 1000) if published_unix_ms is None
        else published_unix_ms)
    return event.SerializeToString(deterministic=True)


def decode_event(data: bytes | None, max_bytes: int | None = None) -> PublishedGrant:
    """Parse and validate one message value; EventDecodeError says why it is unusable.

    Values over ``max_bytes`` are refused unparsed: a grant event holds metadata and image
    URIs (a few KB), so a huge one is a producer bug or hostile, not a grant.
    """
    if not data:
        raise EventDecodeError(REASON_UNDECODABLE, "empty message value")
    if max_bytes is not None and len(data) > max_bytes:
        raise EventDecodeError(REASON_OVERSIZED, f"{len(data)} bytes, limit {max_bytes} "
                               "(PATENTCLIP_KAFKA_MAX_EVENT_BYTES)")
    event = pb.GrantEvent()
    try:
        event.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        raise EventDecodeError(REASON_UNDECODABLE, f"not a GrantEvent protobuf ({exc})") from exc
    if event.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        raise EventDecodeError(REASON_SCHEMA_VERSION,
                               f"schema_version {event.schema_version}; this consumer reads "
                               f"{sorted(SUPPORTED_SCHEMA_VERSIONS)}")
    return PublishedGrant(grant=grant_from_proto(event.grant), bundle=event.bundle,
                          published_unix_ms=event.published_unix_ms,
                          schema_version=event.schema_version)


def grant_to_proto(grant: Grant) -> pb.Grant:
    message = pb.Grant(
        patent_number=grant.patent_number, kind=grant.kind, title=grant.title,
        grant_date=grant.grant_date, claim=grant.claim, drawing_notes=list(grant.drawing_notes),
        dtd_version=grant.dtd_version, source=grant.source)
    if grant.locarno:
        message.locarno.code, message.locarno.edition = grant.locarno.code, grant.locarno.edition
    message.uspc.extend(pb.UspcClass(raw=u.raw, normalized=u.normalized, main=u.main)
                        for u in grant.uspc)
    message.figures.extend(pb.Figure(number=f.number, view=_VIEW_TO_PB[f.view],
                                     view_text=f.view_text, description=f.description)
                           for f in grant.figures)
    message.sheets.extend(pb.DrawingSheet(number=s.number, file_name=s.file_name,
                                          image_uri=s.image_uri,
                                          figure_numbers=list(s.figure_numbers),
                                          mapping=_MAPPING_TO_PB[s.mapping],
                                          regions=[_figure_to_proto(r) for r in s.regions])
                          for s in grant.sheets)
    message.citations.extend(pb.Citation(country=c.country, doc_number=c.number, kind=c.kind,
                                         date=c.date, name=c.name,
                                         category=CATEGORY_TO_PB[c.category], text=c.text)
                             for c in grant.citations)
    return message


# Bounds of a grant's fields (characters, or items of a repeated field). Real grants sit far
# below them (the longest title of the 5,101 2021 grants is 96 characters); they exist so a
# producer that is not ours cannot make the embedder, Milvus or the page hold megabytes.
MAX_CHARS = {"kind": 4, "title": 1_000, "claim": 20_000, "dtd_version": 64, "source": 512,
             "locarno.edition": 16, "uspc.raw": 32, "view_text": 500, "description": 5_000,
             "drawing_notes": 5_000, "file_name": 128, "image_uri": 1_024,
             "citation.country": 4, "citation.doc_number": 32, "citation.kind": 4,
             "citation.name": 500, "citation.text": 5_000}
MAX_ITEMS = {"uspc": 64, "figures": 500, "sheets": 500, "drawing_notes": 100,
             "figure_numbers": 100, "citations": 5_000}
_KIND = re.compile(r"[A-Z0-9]{0,4}", re.ASCII)
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
# An image URI: printable ASCII without spaces (file://, s3://; other bytes percent-encoded).
_URI = re.compile(r"[a-z][a-z0-9+.-]*://[!-~]+", re.ASCII)


def check_grant(message: pb.Grant) -> None:
    """The rules every field of a grant event must meet, the XML reader's own: a patent
    number and Locarno code in ASCII digits of the right shape, figure numbers in the
    figure grammar, a calendar date, bounded lengths, safe file names and image URIs.
    EventDecodeError ``invalid_grant`` names the first field that breaks them. The one
    owner of these rules for events: every consumer reads grants through it."""
    number = message.patent_number
    if not is_patent_number(number):
        _invalid(f"patent_number {number[:40]!r} is not a patent number (ASCII, e.g. "
                 "D0907292)")
    where = f"{number}: "
    if not is_calendar_date(message.grant_date):
        _invalid(f"{where}grant_date {message.grant_date} is not a date (YYYYMMDD)")
    if not _KIND.fullmatch(message.kind):
        _invalid(f"{where}kind {message.kind[:10]!r}: expected e.g. S1")
    for name in ("title", "claim", "dtd_version", "source"):
        _check_text(where + name, getattr(message, name), MAX_CHARS[name])
    _check_count(where + "drawing_notes", "drawing_notes", message.drawing_notes)
    for i, note in enumerate(message.drawing_notes):
        _check_text(f"{where}drawing_notes[{i}]", note, MAX_CHARS["drawing_notes"])
    if message.HasField("locarno") and message.locarno.code:
        if not LOCARNO_CODE.fullmatch(message.locarno.code):
            _invalid(f"{where}locarno.code {message.locarno.code[:10]!r}: expected four ASCII "
                     "digits (e.g. 0901)")
        _check_text(where + "locarno.edition", message.locarno.edition,
                    MAX_CHARS["locarno.edition"])
    _check_count(where + "uspc", "uspc", message.uspc)
    for i, uspc in enumerate(message.uspc):
        _check_text(f"{where}uspc[{i}].raw", uspc.raw, MAX_CHARS["uspc.raw"])
    _check_count(where + "figures", "figures", message.figures)
    for i, figure in enumerate(message.figures):
        _check_figure_number(f"{where}figures[{i}].number", figure.number)
        _check_text(f"{where}figures[{i}].view_text", figure.view_text, MAX_CHARS["view_text"])
        _check_text(f"{where}figures[{i}].description", figure.description,
                    MAX_CHARS["description"])
    _check_count(where + "sheets", "sheets", message.sheets)
    for i, sheet in enumerate(message.sheets):
        _check_sheet(f"{where}sheets[{i}]", sheet)
    _check_count(where + "citations", "citations", message.citations)
    for i, citation in enumerate(message.citations):
        _check_citation(f"{where}citations[{i}]", citation)


def _check_citation(where: str, citation: pb.Citation) -> None:
    for name in ("country", "doc_number", "kind", "name", "text"):
        _check_text(f"{where}.{name}", getattr(citation, name), MAX_CHARS[f"citation.{name}"])
    if citation.category not in CATEGORY_FROM_PB:
        _invalid(f"{where}.category {citation.category}: not a CitationCategory")
    if not 0 <= citation.date <= 99_991_231:
        _invalid(f"{where}.date {citation.date}: expected YYYYMMDD or 0")


def _check_sheet(where: str, sheet: pb.DrawingSheet) -> None:
    if not 0 <= sheet.number < 1000:
        _invalid(f"{where}.number {sheet.number}: expected 0..999")
    if len(sheet.file_name) > MAX_CHARS["file_name"] or not _FILE_NAME.fullmatch(
            sheet.file_name):
        _invalid(f"{where}.file_name {sheet.file_name[:40]!r}: expected a plain file name "
                 f"(letters, digits, . _ -; at most {MAX_CHARS['file_name']})")
    if not sheet.image_uri:
        _invalid(f"{where}.image_uri: empty (sheet {sheet.number} has no image_uri)")
    if len(sheet.image_uri) > MAX_CHARS["image_uri"] or not _URI.fullmatch(sheet.image_uri):
        _invalid(f"{where}.image_uri {sheet.image_uri[:60]!r}: expected a URI of printable "
                 f"ASCII (e.g. file:///...), at most {MAX_CHARS['image_uri']} characters")
    _check_count(where + ".figure_numbers", "figure_numbers", sheet.figure_numbers)
    for j, figure in enumerate(sheet.figure_numbers):
        _check_figure_number(f"{where}.figure_numbers[{j}]", figure)
    if sheet.regions and [r.figure_number for r in sheet.regions] != list(
            sheet.figure_numbers):
        _invalid(f"{where}.regions: one per figure number, in their order "
                 f"({', '.join(sheet.figure_numbers)}), expected")
    for j, figure in enumerate(sheet.regions):
        try:
            region_from_proto(figure.region)
        except ValueError as exc:  # out of 0..1, empty, or thinner than a thousandth
            _invalid(f"{where}.regions[{j}].region: {exc}")


def region_to_proto(region: Region) -> pb.Region:
    """A Region as the protos carry it (a figure's place, a hit's matched part)."""
    return pb.Region(left=region.left, top=region.top, right=region.right,
                     bottom=region.bottom)


def region_from_proto(box: pb.Region) -> Region:
    """A Region from the protos, at the per-mille precision rows keep; ValueError when
    it is no region."""
    return Region.per_mille(box.left, box.top, box.right, box.bottom)


def _figure_from_proto(figure: pb.FigureRegion) -> FigureRegion:
    return FigureRegion(figure.figure_number, region_from_proto(figure.region))


def _figure_to_proto(figure: FigureRegion) -> pb.FigureRegion:
    return pb.FigureRegion(figure_number=figure.number, region=region_to_proto(figure.region))


def _check_figure_number(where: str, value: str) -> None:
    if not FIGURE_NUMBER.fullmatch(value):
        _invalid(f"{where} {value[:20]!r}: not a figure number (e.g. 1, 2A, 1.3)")


def _check_text(where: str, value: str, limit: int) -> None:
    if len(value) > limit:
        _invalid(f"{where}: {len(value)} characters, limit {limit}")
    if "\x00" in value:
        _invalid(f"{where}: contains a NUL character")


def _check_count(where: str, field: str, items) -> None:
    limit = MAX_ITEMS[field]
    if len(items) > limit:
        _invalid(f"{where}: {len(items)} items, limit {limit}")


def _invalid(detail: str) -> None:
    raise EventDecodeError(REASON_INVALID_GRANT, detail)


def grant_from_proto(message: pb.Grant) -> Grant:
    """The domain grant, from a message that meets ``check_grant``."""
    check_grant(message)
    number = message.patent_number
    locarno = (LocarnoClass(message.locarno.code, message.locarno.edition)
               if message.HasField("locarno") and message.locarno.code else None)
    return Grant(
        patent_number=number, kind=message.kind, title=message.title,
        grant_date=message.grant_date, locarno=locarno,
        uspc=tuple(UspcClass(u.raw, u.main) for u in message.uspc), claim=message.claim,
        figures=tuple(Figure(f.number, _VIEW_FROM_PB.get(f.view, View.OTHER), f.view_text,
                             f.description) for f in message.figures),
        sheets=tuple(DrawingSheet(s.number, s.file_name, tuple(s.figure_numbers),
                                  _MAPPING_FROM_PB.get(s.mapping, SheetFigureMapping.UNKNOWN),
                                  s.image_uri, tuple(_figure_from_proto(r) for r in s.regions))
                     for s in message.sheets),
        drawing_notes=tuple(message.drawing_notes), dtd_version=message.dtd_version,
        source=message.source,
        citations=tuple(Citation(c.country, c.doc_number, c.kind, c.date, c.name,
                                 CATEGORY_FROM_PB[c.category], c.text)
                        for c in message.citations))
