"""``patentclip search``'s query flags, derived from the API's Query message: one flag per
field (``--text``, ``--image``, ``--crop``, ``--patent``, ...), so a new query mode in the
proto is a new flag here without a line written for it. The flags build the same message
a gRPC client sends; the core validates it (``patentclip.search.query``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from patentclip.codec.api import query_message as api_query_message
from patentclip.errors import InvalidInputError
from patentclip.v1 import search_pb2

FIELDS = search_pb2.Query.DESCRIPTOR.fields
# What the flags say beyond their type; a field without a line here still gets its flag.
HELP = {"text": "words; with --image, text and drawing fused",
        "image": "TIFF, PNG or JPEG drawing (a file)",
        "image_name": "the drawing's name in messages (default: the file's name)",
        "crop": "--image: search with this part of it (fractions, 0..1)",
        "patent": "designs like this patent's drawings (e.g. D0907292), excluding itself",
        "sheet": "--patent: only this drawing sheet",
        "mode": "what the drawings are: line (default), photo (turned into lines first) "
                "or sketch",
        "drawings": "another view of the design (a file, optionally @LEFT,TOP,RIGHT,BOTTOM "
                    "to search part of it); repeatable, 7 drawings in all with --image"}
ALIASES = {"patent": ("--similar",)}  # the flag's name before it was derived


def add_query_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of the Query message, its value parsed by the field's type."""
    for field in FIELDS:
        flags = (_flag(field.name), *ALIASES.get(field.name, ()))
        help_text = HELP.get(field.name, f"the query's {field.name} (the API's Query message)")
        if field.is_repeated:  # files of a message with a bytes field: FILE[@crop]
            parser.add_argument(*flags, dest=field.name, action="append", type=Path,
                                metavar="FILE[@L,T,R,B]", help=help_text)
        elif field.message_type is not None:
            names = ",".join(f.name.upper() for f in field.message_type.fields)
            parser.add_argument(*flags, dest=field.name, metavar=names, help=help_text)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            parser.add_argument(*flags, dest=field.name, type=Path, metavar="FILE",
                                help=help_text)
        else:
            parser.add_argument(*flags, dest=field.name, type=_PYTHON_TYPES[field.type],
                                help=help_text)


_PYTHON_TYPES = {FieldDescriptor.TYPE_STRING: str, FieldDescriptor.TYPE_INT32: int,
                 FieldDescriptor.TYPE_INT64: int, FieldDescriptor.TYPE_BOOL: bool,
                 FieldDescriptor.TYPE_FLOAT: float, FieldDescriptor.TYPE_DOUBLE: float}


def query_message(args: argparse.Namespace) -> search_pb2.Query:
    """The Query message the flags describe: a file flag's bytes (its name filling the
    ``<field>_name`` field when the message has one and it was not given), a message flag
    as comma-separated values in its fields' order. Refusals name the flag."""
    values = {field.name: getattr(args, field.name) for field in FIELDS}
    for field in FIELDS:
        value = values[field.name]
        if value is None:
            continue
        if field.is_repeated:
            values[field.name] = [_file_part(field, path, _flag(field.name)) for path in value]
        elif field.message_type is not None:
            values[field.name] = _numbers(field, value, _flag(field.name))
        elif field.type == FieldDescriptor.TYPE_BYTES:
            if not value.is_file():
                raise InvalidInputError(f"{_flag(field.name)} {value}: no such file")
            values[field.name] = value.read_bytes()
            if values.get(f"{field.name}_name", "") is None:  # a field of the message, unset
                values[f"{field.name}_name"] = str(value)
    return api_query_message(values, label=_flag)


def _file_part(field: FieldDescriptor, path: Path, flag: str) -> dict:
    """A repeated file flag's message: FILE, or FILE@L,T,R,B for the part of it searched
    (the message's bytes field, its name, and its one message field)."""
    text, _, numbers = str(path).partition("@")
    path = Path(text)
    if not path.is_file():
        raise InvalidInputError(f"{flag} {path}: no such file")
    parts = {f.type: f for f in field.message_type.fields}
    values = {parts[FieldDescriptor.TYPE_BYTES].name: path.read_bytes(),
              parts[FieldDescriptor.TYPE_STRING].name: str(path)}
    if numbers:
        region = parts[FieldDescriptor.TYPE_MESSAGE]
        values[region.name] = _numbers(region, numbers, flag)
    return values


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _numbers(field: FieldDescriptor, text: str, flag: str) -> tuple[float, ...]:
    """A message flag's comma-separated numbers, one per field of the message."""
    parts = field.message_type.fields
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != len(parts):
        names = ",".join(p.name for p in parts)
        raise InvalidInputError(f"{flag} {text!r}: {len(parts)} numbers, {names}")
    return values
