"""The query value: what an examiner searches with, validated once, and its API message.

``Query`` is field for field the API's ``Query`` message (protos/patentclip/v1/search.proto).
Every transport converts by field name through this module: the gRPC service and the web
API read a message (the web body's query fields are derived from it), the CLI's flags are
derived from it, and the client builds one. A new query mode is a field in the message and
here, and a branch in the engine; nothing else is written by hand
(``tests/unit/search/test_query.py`` keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from google.protobuf.descriptor import FieldDescriptor

from patentclip.codec.api import check_unicode
from patentclip.drawings.preprocess import CropBox
from patentclip.errors import ImageTooLargeError, InvalidQueryError, TextTooLongError
from patentclip.grants.model import normalize_patent_number
from patentclip.v1 import search_pb2

MAX_NAME_CHARS = 200  # a query image's file name (messages, the search record)

MAX_TEXT_CHARS = 2000


def check_text(text: str, what: str) -> str:
    """The stripped text; InvalidQueryError when empty, TextTooLongError when over
    MAX_TEXT_CHARS, each naming ``what``. The one rule for search, EncodeText and the HTTP
    embedding provider."""
    stripped = check_unicode((text or "").strip(), what)
    if not stripped:
        raise InvalidQueryError(f"{what} is empty")
    if len(stripped) > MAX_TEXT_CHARS:
        raise TextTooLongError(f"{what} has {len(stripped)} characters, limit {MAX_TEXT_CHARS}")
    return stripped


def check_image(data: bytes, what: str, max_bytes: int) -> bytes:
    """A query image's bytes; InvalidQueryError naming ``what`` when empty or larger than
    ``max_bytes``. The one rule for the gRPC RPCs and the web app."""
    if not data:
        raise InvalidQueryError(f"{what}: empty; send TIFF, PNG or JPEG bytes")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{what}: {len(data)} bytes, limit {max_bytes}")
    return data


QUERY_KINDS = ("text", "drawing", "text+drawing", "similar")
DRAWING_MODES = ("line", "photo", "sketch")
MAX_DRAWINGS = 7  # views of one design in one query (EUIPO's design search takes 7)


def _check_name(name: str, field: str) -> None:
    check_unicode(name, field)
    if len(name) > MAX_NAME_CHARS:
        raise InvalidQueryError(f"{field}: {len(name)} characters, limit {MAX_NAME_CHARS}")


@dataclass(frozen=True)
class QueryDrawing:
    """One drawing of a query: its bytes, its name (messages, the search record) and the
    part of it searched (``crop``; None: all of it)."""

    image: bytes
    name: str = "query image"
    crop: CropBox | None = None


@dataclass(frozen=True)
class Query:
    """What an examiner searches with: words, a drawing (or the ``crop`` of it), both, or a
    stored patent ("more like this": all its drawing sheets, or its one ``sheet``).

    Validated once, here, each refusal naming its field; ``kind`` is derived. Field for
    field the API's ``Query`` message (protos/patentclip/v1/search.proto): the gRPC service,
    the web API's body and the CLI's flags are all derived from that message and converted
    by name, so a new query mode is a field here and there and a branch in the engine
    (``tests/unit/services/query/test_queries.py`` keeps the two equal).
    """

    text: str | None = None  # None: no words; words given must say something
    image: bytes = b""
    image_name: str = "query image"
    crop: CropBox | None = None
    patent: str = ""  # as examiners type it; normalized here ("D907,292" -> "D0907292")
    sheet: int | None = None
    mode: str = "line"  # what the drawings are: one of DRAWING_MODES
    drawings: tuple[QueryDrawing, ...] = ()  # more views of the design, after ``image``

    def __post_init__(self) -> None:
        if self.text is not None:
            object.__setattr__(self, "text", check_text(self.text, "text query"))
        _check_name(self.image_name, "image_name")
        object.__setattr__(self, "drawings", tuple(self.drawings))
        for i, drawing in enumerate(self.drawings):
            _check_name(drawing.name, f"drawings[{i}].name")
            if not drawing.image:
                raise InvalidQueryError(f"drawings[{i}].image: empty; send TIFF, PNG or JPEG "
                                        "bytes")
        if len(self.all_drawings) > MAX_DRAWINGS:
            raise InvalidQueryError(f"drawings: {len(self.all_drawings)} drawings in one "
                                    f"query, limit {MAX_DRAWINGS} (the views of one design)")
        if self.mode not in DRAWING_MODES:
            raise InvalidQueryError(f"mode: {self.mode!r} is not one of "
                                    f"{', '.join(DRAWING_MODES)}")
        if self.mode != "line" and not self.all_drawings:
            raise InvalidQueryError(f"mode: {self.mode!r} says what the query's drawings are, "
                                    "and it has none")
        if self.patent:
            object.__setattr__(self, "patent", normalize_patent_number(self.patent, "patent"))
        if self.patent and (self.text or self.all_drawings):
            raise InvalidQueryError("patent: a 'more like this' search takes no text or image")
        if not (self.text or self.all_drawings or self.patent):
            raise InvalidQueryError("give a description, a drawing or a patent number")
        if self.crop is not None and not self.image:
            raise InvalidQueryError("crop: only a drawing can be cropped")
        if self.sheet is not None and not self.patent:
            raise InvalidQueryError("sheet: only a 'more like this' search has a sheet")
        if self.sheet is not None and self.sheet < 0:
            raise InvalidQueryError(f"sheet: {self.sheet} is negative")

    @property
    def all_drawings(self) -> tuple[QueryDrawing, ...]:
        """Every drawing of the query: ``image`` (with its name and crop) first, then
        ``drawings``."""
        first = (QueryDrawing(self.image, self.image_name, self.crop),) if self.image else ()
        return first + self.drawings

    @property
    def kind(self) -> str:
        """One of QUERY_KINDS."""
        if self.patent:
            return "similar"
        if self.text and self.all_drawings:
            return "text+drawing"
        return "drawing" if self.all_drawings else "text"


def _crop(message: search_pb2.Crop) -> CropBox:
    return CropBox(message.left, message.top, message.right, message.bottom)


def _crop_message(crop: CropBox) -> search_pb2.Crop:
    return search_pb2.Crop(left=crop.left, top=crop.top, right=crop.right, bottom=crop.bottom)


def _drawing(message: search_pb2.QueryDrawing, field: str, max_image_bytes: int | None
             ) -> QueryDrawing:
    image = (message.image if max_image_bytes is None or not message.image
             else check_image(message.image, f"{field}.image", max_image_bytes))
    return QueryDrawing(image=image, name=message.name or field,
                        crop=_crop(message.crop) if message.HasField("crop") else None)


def _drawing_message(drawing: QueryDrawing) -> search_pb2.QueryDrawing:
    message = search_pb2.QueryDrawing(image=drawing.image, name=drawing.name)
    if drawing.crop is not None:
        message.crop.CopyFrom(_crop_message(drawing.crop))
    return message


# Message types of Query's fields and the core values they convert to (and back).
_FROM_MESSAGE = {"patentclip.v1.Crop": _crop}
_TO_MESSAGE = {CropBox: _crop_message}


def query_fields(message: search_pb2.Query, max_image_bytes: int | None,
                 prefix: str = "") -> dict:
    """The fields ``message`` sets, as Query's values: unset optional fields and proto3
    defaults ("", b"", 0) are left out, so Query's own defaults apply. Bytes fields are
    query images: refused when larger than ``max_image_bytes`` (None: no byte limit; the
    decoder's pixel limit still holds). ``prefix`` names the fields in refusals
    ("query." for a SearchRequest)."""
    values = {}
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:  # drawings: more views
            items = getattr(message, field.name)
            if items:
                values[field.name] = tuple(
                    _drawing(item, f"{prefix}{field.name}[{i}]", max_image_bytes)
                    for i, item in enumerate(items))
            continue
        if field.has_presence and not message.HasField(field.name):
            continue
        value = getattr(message, field.name)
        if not field.has_presence and value == field.default_value:
            continue
        if field.message_type is not None:
            value = _FROM_MESSAGE[field.message_type.full_name](value)
        elif field.type == FieldDescriptor.TYPE_BYTES and max_image_bytes is not None:
            value = check_image(value, prefix + field.name, max_image_bytes)
        values[field.name] = value
    return values


def query_from_message(message: search_pb2.Query, max_image_bytes: int | None,
                       prefix: str = "") -> Query:
    """The validated Query of an API message (see ``query_fields``)."""
    return Query(**query_fields(message, max_image_bytes, prefix))


def query_to_message(query: Query) -> search_pb2.Query:
    """The API message of a Query (what the CLI sends to a server)."""
    message = search_pb2.Query()
    for field in fields(query):
        value = getattr(query, field.name)
        if value is None:
            continue
        if field.name == "drawings":
            message.drawings.extend(_drawing_message(d) for d in value)
            continue
        convert = _TO_MESSAGE.get(type(value))
        if convert is not None:
            getattr(message, field.name).CopyFrom(convert(value))
        else:
            setattr(message, field.name, value)
    return message
