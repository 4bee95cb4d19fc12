"""The search API's enum maps: view names and what a search matches, between the names the
core uses and the protobuf enums of ``protos/``. The client library reads these without the
topic codec.
"""

from __future__ import annotations

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
                      "caption": search_pb2.AGAINST_CAPTION, "both": search_pb2.AGAINST_BOTH}
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


