"""The search API's enum maps (view names and what a search matches, between the names the
core uses and the protobuf enums of ``protos/``) and the one builder of its ``Query``
message from a transport's values. The client library reads these without the topic codec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from patentclip.errors import InvalidQueryError
from patentclip.grants.model import SHEET_VIEWS
from patentclip.v1 import grant_pb2 as pb
from patentclip.v1 import search_pb2

# The one map between view names (grants.SHEET_VIEWS) and the proto enum: "in-use" is
# VIEW_IN_USE, "unknown" VIEW_UNKNOWN. Tests check that both sides hold the same names.
VIEW_NAME_TO_PB: dict[str, int] = {
    name: pb.View.Value("VIEW_" + name.upper().replace("-", "_")) for name in SHEET_VIEWS}
VIEW_PB_TO_NAME: dict[int, str] = {number: name for name, number in VIEW_NAME_TO_PB.items()}
# What a search matches (search.proto Against), by the names the core uses. The one map:
# the client sends these, the query service reads them (AGAINST_UNSPECIFIED: the default).
AGAINST_NAME_TO_PB = {"drawing": search_pb2.AGAINST_DRAWING,
                      "caption": search_pb2.AGAINST_CAPTION, "both": search_pb2.AGAINST_BOTH,
                      "words": search_pb2.AGAINST_WORDS, "all": search_pb2.AGAINST_ALL}
AGAINST_PB_TO_NAME = {number: name for name, number in AGAINST_NAME_TO_PB.items()}


def view_to_proto(name: str) -> int:
    """The proto View of a stored view name; VIEW_UNSPECIFIED for a name outside SHEET_VIEWS."""
    return VIEW_NAME_TO_PB.get(name, pb.VIEW_UNSPECIFIED)


def view_from_proto(number: int, field: str = "view") -> str:
    """The view name of a proto View; InvalidQueryError naming ``field`` for
    VIEW_UNSPECIFIED or a number outside the enum (a newer client's value)."""
    if number in VIEW_PB_TO_NAME:
        return VIEW_PB_TO_NAME[number]
    choices = ", ".join(pb.View.Name(n) for n in VIEW_PB_TO_NAME)
    what = "VIEW_UNSPECIFIED is no view" if number == pb.VIEW_UNSPECIFIED else (
        f"{number} is not a View value")
    raise InvalidQueryError(f"{field}: {what}; choose from {choices}")


def check_unicode(text: str, what: str) -> str:
    """``text`` when it is valid Unicode, else InvalidQueryError naming ``what``: JSON can
    carry lone surrogates ("\\ud800") that no UTF-8 encoder (tokenizer, response) takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidQueryError(f"{what}: not valid Unicode (a lone surrogate at character "
                                f"{exc.start})") from None
    return text


def query_message(values: Mapping[str, object], label: Callable[[str], str] = str
                  ) -> search_pb2.Query:
    """The API's Query message from a transport's values by field name (the web body, the
    CLI's flags, the client's keywords): None leaves a field unset; a message field (the
    crop) may be a mapping or a sequence of its fields in order, a repeated one (drawings) a
    sequence of those. Text that is not valid Unicode is refused by ``label(field name)``
    (protobuf would raise). Names that are no field of the message are the caller's to
    refuse."""
    return _fill(search_pb2.Query(), values, label)


def _fill(message, values: Mapping[str, object], label: Callable[[str], str]):
    """``message`` with ``values`` set by field name (see ``query_message``)."""
    for field in message.DESCRIPTOR.fields:
        value = values.get(field.name)
        if value is None:
            continue
        if field.is_repeated and field.message_type is not None:
            items = getattr(message, field.name)
            for item in value:
                _fill_part(items.add(), item, label)
        elif field.message_type is not None:
            _fill_part(getattr(message, field.name), value, label)
        else:
            if isinstance(value, str):
                check_unicode(value, label(field.name))
            setattr(message, field.name, value)
    return message


def _fill_part(part, value, label: Callable[[str], str]) -> None:
    if isinstance(value, type(part)):
        part.CopyFrom(value)
        return
    if not isinstance(value, Mapping):
        value = dict(zip(part.DESCRIPTOR.fields_by_name, value, strict=True))
    _fill(part, value, label)
