"""The query value (patentclip/search/query.py) and the surfaces derived from the API's
Query message: the gRPC conversion, the web body, the CLI's flags and the client. These
tests are what makes "a new query mode is a field in the message and the value, and a
branch in the engine" true: a field added to one and not the other fails here."""

from __future__ import annotations

import argparse
import base64
import dataclasses

import pytest

from patentclip.drawings.preprocess import CropBox
from patentclip.errors import ImageTooLargeError, InvalidInputError, InvalidQueryError
from patentclip.search.query import Query, query_from_message, query_to_message
from patentclip.v1 import search_pb2

MESSAGE_FIELDS = [f.name for f in search_pb2.Query.DESCRIPTOR.fields]


def test_a_query_is_validated_once_and_knows_its_kind():
    """Every transport builds this one value; the engine runs it."""
    from patentclip.drawings.preprocess import CropBox
    from patentclip.search.query import QUERY_KINDS, Query

    crop = CropBox(0.1, 0.1, 0.5, 0.5)
    kinds = [Query(text=" lid ").kind, Query(image=b"x", crop=crop).kind,
             Query(text="lid", image=b"x").kind, Query(patent="D0907292", sheet=2).kind]
    assert kinds == list(QUERY_KINDS)
    assert Query(text=" hinged lid ").text == "hinged lid"
    for fields, words in (({}, "give a description"), ({"text": "  "}, "text query is empty"),
                          ({"text": "x" * 2001}, "limit 2000"),
                          ({"patent": "D0907292", "text": "lid"}, "more like this"),
                          ({"text": "lid", "crop": crop}, "only a drawing can be cropped"),
                          ({"text": "lid", "sheet": 1}, "sheet"),
                          ({"text": "", "image": b"x"}, "text query is empty"),
                          ({"image": b"x", "image_name": "\udfff"}, "image_name")):
        with pytest.raises(InvalidQueryError, match=words):
            Query(**fields)



def test_the_query_value_and_the_api_message_hold_the_same_fields():
    assert [f.name for f in dataclasses.fields(Query)] == MESSAGE_FIELDS


@pytest.mark.parametrize("query", [
    Query(text="hinged lid"), Query(image=b"png", image_name="d.png",
                                    crop=CropBox(0.25, 0.0, 0.75, 0.5)),
    Query(text="lid", image=b"png"), Query(patent="D0907292", sheet=0),
    Query(patent="D0907292")])
def test_a_query_survives_the_api_message_both_ways(query):
    message = query_to_message(query)
    assert query_from_message(message, max_image_bytes=10) == query
    again = search_pb2.Query.FromString(message.SerializeToString())
    assert query_from_message(again, max_image_bytes=10) == query


def test_a_message_is_read_as_examiners_type_and_refused_by_field():
    query = query_from_message(search_pb2.Query(patent="USD907,292S1", sheet=0), None)
    assert (query.patent, query.sheet, query.kind) == ("D0907292", 0, "similar")
    with pytest.raises(ImageTooLargeError, match="^query.image: 5 bytes, limit 4"):
        query_from_message(search_pb2.Query(image=b"12345"), 4, "query.")
    with pytest.raises(InvalidQueryError, match="text query is empty"):
        query_from_message(search_pb2.Query(text=""), 4)  # set, though empty: not absent
    with pytest.raises(InvalidQueryError, match="sheet: -1 is negative"):
        query_from_message(search_pb2.Query(patent="D0907292", sheet=-1), 4)
    with pytest.raises(InvalidQueryError, match="image_name: 201 characters"):
        query_from_message(search_pb2.Query(image=b"1", image_name="n" * 201), 4)


def test_the_cli_has_a_flag_for_every_field_and_builds_the_same_message(tmp_path):
    from patentclip_cli import queries

    parser = argparse.ArgumentParser()
    queries.add_query_flags(parser)
    assert {a.dest for a in parser._actions} >= set(MESSAGE_FIELDS)
    drawing = tmp_path / "d.png"
    drawing.write_bytes(b"png")
    args = parser.parse_args(["--text", "lid", "--image", str(drawing),
                              "--crop", "0.25,0,0.75,0.5"])
    assert query_from_message(queries.query_message(args), None) == Query(
        text="lid", image=b"png", image_name=str(drawing), crop=CropBox(0.25, 0.0, 0.75, 0.5))
    similar = parser.parse_args(["--similar", "D907,292", "--sheet", "2"])
    assert queries.query_message(similar) == search_pb2.Query(patent="D907,292", sheet=2)
    with pytest.raises(InvalidInputError, match="--crop '0,1': 4 numbers"):
        queries.query_message(parser.parse_args(["--image", str(drawing), "--crop", "0,1"]))
    with pytest.raises(InvalidInputError, match="--image /nonexistent.png: no such file"):
        queries.query_message(parser.parse_args(["--image", "/nonexistent.png"]))
    with pytest.raises(InvalidQueryError, match="--text: not valid Unicode"):
        queries.query_message(parser.parse_args(["--text", "lid \udcff"]))


def test_the_web_body_has_every_field_and_builds_the_same_message():
    from services.query.http import api

    assert set(api.SearchIn.model_fields) >= set(MESSAGE_FIELDS)
    body = api.SearchIn(text="lid", image=base64.b64encode(b"png").decode(),
                        image_name="d.png", crop={"left": 0.25, "top": 0.0, "right": 0.75,
                                                  "bottom": 0.5}, patent="", sheet=None)
    assert query_from_message(api.query_message(body), 10) == Query(
        text="lid", image=b"png", image_name="d.png", crop=CropBox(0.25, 0.0, 0.75, 0.5))
    with pytest.raises(InvalidQueryError, match="image: not base64"):
        api.query_message(api.SearchIn(image="not base64!"))
    with pytest.raises(Exception, match="page"):  # the old paging fields are refused
        api.SearchIn(text="lid", page=2)


def test_the_client_builds_the_message_from_keywords():
    from patentclip_client.client import query_message

    assert query_message({"text": "lid", "crop": (0.25, 0.0, 0.75, 0.5), "sheet": None}) == \
        search_pb2.Query(text="lid", crop=search_pb2.Crop(left=0.25, top=0.0, right=0.75,
                                                          bottom=0.5))
    with pytest.raises(ValueError, match="not fields of a query"):
        query_message({"drawing": b"x"})
