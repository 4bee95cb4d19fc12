"""services/query/rpc: protobuf conversion (options, filters, hits, page tokens) and the
gRPC column of the error table."""

from __future__ import annotations

import grpc
import pytest

from patentclip.errors import (
    DeadlineExceededError,
    EventDecodeError,
    ImageDecodeError,
    InvalidQueryError,
    ModelVersionMismatchError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from patentclip.search.engine import Deadline
from patentclip.store import Hit, SearchFilters
from patentclip.v1 import grant_pb2, search_pb2
from services.query.rpc import convert
from services.query.rpc.interceptor import status_for


@pytest.mark.parametrize(("error", "code"), [
    (InvalidQueryError("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (ImageDecodeError("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (EventDecodeError("r", "x"), grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError("x"), grpc.StatusCode.NOT_FOUND),
    (StoreUnavailableError("x"), grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceededError("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (ModelVersionMismatchError("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError("x"), None),
    (RuntimeError("x"), None),
])
def test_domain_errors_map_to_status_codes(error, code):
    assert status_for(error) == code


class _NoDeadline:
    def time_remaining(self):
        return None


def test_options_defaults_and_filters():
    q = convert.request(search_pb2.SearchOptions(), "v", _NoDeadline())
    assert (q.top_k, q.offset, q.group, q.against, q.deadline) == (10, 0, True, "", Deadline())
    options = search_pb2.SearchOptions(
        top_k=5, group_by_patent=False, against=search_pb2.AGAINST_CAPTION,
        filters=search_pb2.Filters(locarno=["0204"], date_from=20210101,
                                   views=[grant_pb2.VIEW_FRONT, grant_pb2.VIEW_IN_USE]))
    q = convert.request(options, "v", _NoDeadline())
    assert (q.top_k, q.group, q.against) == (5, False, "caption")
    assert q.filters == SearchFilters(locarno=("0204",), date_from=20210101,
                                      views=("front", "in-use"))


@pytest.mark.parametrize(("filters", "words"), [
    (search_pb2.Filters(locarno=["2"]), "locarno filter '2'"),
    (search_pb2.Filters(date_from=20220101, date_to=20210101), "date range is empty"),
    (search_pb2.Filters(date_from=2021), "date_from 2021"),
    (search_pb2.Filters(views=[99]), r"filters.views\[0\]: 99 is not a View value"),
    (search_pb2.Filters(views=[grant_pb2.VIEW_FRONT, grant_pb2.VIEW_UNSPECIFIED]),
     r"filters.views\[1\]: VIEW_UNSPECIFIED is no view; choose from VIEW_FRONT"),
    (search_pb2.Filters(date_from=20211399), "date_from 20211399: not a calendar date"),
    (search_pb2.Filters(date_to=20210230), "date_to 20210230: not a calendar date"),
])
def test_bad_filters_are_named(filters, words):
    with pytest.raises(InvalidQueryError, match=words):
        convert.filters(filters)


def test_hit_conversion_carries_sheet_views_in_the_enum_and_by_name():
    hit = Hit(patent="D0900001", sheet=2, modality="drawing", score=0.5, view="mixed",
              locarno="0204", grant_date=20210105, title="Vase", figures=("2", "3"),
              caption="front view", image_uri="file:///x")
    message = convert.hit(hit)
    assert message.view == grant_pb2.VIEW_MIXED and message.view_name == "mixed"
    assert list(message.figure_numbers) == ["2", "3"] and message.matched == "drawing"
    assert convert.hit(Hit(**{**hit.__dict__, "view": "in-use"})).view == grant_pb2.VIEW_IN_USE


