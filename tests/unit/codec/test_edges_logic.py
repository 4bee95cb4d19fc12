"""Edges other people's software reaches: patent numbers as examiners type them, one view
vocabulary across proto/CLI/store, calendar dates, enum values a newer client may send,
"no deadline", key/patent mismatches, and the order and resume state of a backfill."""

from __future__ import annotations

import argparse
import datetime
import json
import os

import pytest

from patentclip.codec.api import VIEW_NAME_TO_PB, view_from_proto, view_to_proto
from patentclip.codec.events import check_event_key, tombstone_patent
from patentclip.errors import EventDecodeError, InvalidQueryError
from patentclip.grants.model import (
    SHEET_VIEWS,
    View,
    error_reason,
    figure_view,
    is_calendar_date,
    normalize_patent_number,
    normalize_view,
)
from patentclip.store import SearchFilters
from patentclip.v1 import grant_pb2, search_pb2
from patentclip_cli.synthetic import BundleGenerator
from patentclip_client import search_options
from services.query.rpc import convert


@pytest.mark.parametrize(("typed", "stored"), [
    ("D907,292", "D0907292"), ("D907292", "D0907292"), ("USD0907292S1", "D0907292"),
    ("Des. 907,292", "D0907292"), ("D1049406", "D1049406"), ("D900003", "D0900003"),
    (" d0907292 ", "D0907292"), ("US D907,292 S", "D0907292"), ("11646472", "11646472"),
    ("US 11,646,472 B2", "11646472"), ("RE49123", "RE049123"), ("D0907292", "D0907292"),
])
def test_patent_numbers_as_examiners_type_them_resolve_to_the_stored_number(typed, stored):
    assert normalize_patent_number(typed) == stored


@pytest.mark.parametrize("typed", ["", "  ", "not a patent", "D", "D12345678", "XYZ123",
                                   "D907-292-1"])
def test_text_that_is_no_patent_number_is_refused_naming_the_field(typed):
    with pytest.raises(InvalidQueryError, match="patent_number .*not a patent number"):
        normalize_patent_number(typed, "patent_number")


def test_one_view_vocabulary_every_copy_agrees():
    proto_names = {n for n in grant_pb2.View.keys() if n != "VIEW_UNSPECIFIED"}
    assert proto_names == {"VIEW_" + v.upper().replace("-", "_") for v in SHEET_VIEWS}
    assert set(VIEW_NAME_TO_PB) == set(SHEET_VIEWS)
    assert [view_from_proto(view_to_proto(v)) for v in SHEET_VIEWS] == list(SHEET_VIEWS)
    assert {v.value for v in View} < set(SHEET_VIEWS)  # figures' views, plus unknown/mixed
    from patentclip_cli.main import _parser

    search = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    view_flag = next(a for a in search.choices["search"]._actions if "--view" in
                     a.option_strings)
    assert tuple(view_flag.choices) == SHEET_VIEWS
    for view in SHEET_VIEWS:  # the store's filter and the client accept every name
        SearchFilters(views=(view,))  # validated when built
        assert list(search_options(5, views=[view]).filters.views) == [VIEW_NAME_TO_PB[view]]
    with pytest.raises(ValueError, match="choose from front"):
        search_options(5, views=["sideways"])


def test_one_against_vocabulary_every_copy_agrees():
    """search.proto's Against, the core's AGAINST, the one name<->proto map (events), the
    CLI's --against choices and the client all say the same three names."""
    from patentclip.codec.api import AGAINST_NAME_TO_PB, AGAINST_PB_TO_NAME
    from patentclip.search.engine import AGAINST
    from patentclip.v1 import search_pb2
    from patentclip_cli.main import _parser
    from services.query.rpc import convert

    proto = {n for n in search_pb2.Against.keys() if n != "AGAINST_UNSPECIFIED"}
    assert proto == {"AGAINST_" + name.upper() for name in AGAINST}
    assert tuple(AGAINST_NAME_TO_PB) == AGAINST
    assert {AGAINST_PB_TO_NAME[AGAINST_NAME_TO_PB[a]] for a in AGAINST} == set(AGAINST)
    search = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    flag = next(a for a in search.choices["search"]._actions if "--against" in
                a.option_strings)
    assert tuple(flag.choices) == AGAINST
    for name in AGAINST:  # the client sends what the service reads back
        options = search_options(5, against=name)
        assert convert._against(options.against) == name
    assert convert._against(search_options(5).against) == ""  # the query's default
    with pytest.raises(ValueError, match="choose from drawing"):
        search_options(5, against="sketch")


@pytest.mark.parametrize(("value", "ok"), [(20210105, True), (20240229, True),
                                           (20230229, False), (20211399, False),
                                           (20210132, False), (2021, False), (99999999, False)])
def test_calendar_dates(value, ok):
    assert is_calendar_date(value) is ok


@pytest.mark.parametrize(("phrase", "sentence", "view"), [
    ("side elevation view", "FIGS. 2 and 3 are side elevation views thereof", View.OTHER),
    ("elevation view", "FIG. 5 is an elevation view thereof, rotated 45 degrees", View.OTHER),
    ("front elevation view", "FIG. 2 is a front elevation view thereof", View.FRONT),
    ("left side elevation view", "FIG. 5 is a left side elevation view thereof", View.LEFT),
    ("top, front, left perspective view",
     "FIG. 11 is a top, front, left perspective view ... shown exploded in a second "
     "configuration", View.EXPLODED),
    ("top, front, left perspective view",
     "FIG. 9 is a top, front, left perspective view ... shown assembled in condition of use",
     View.IN_USE),
    ("Bottom Perspective, in condition of use", "1.8 : Bottom Perspective, in condition of use",
     View.IN_USE),
    ("Back", "1.2 : Back", View.REAR),
])
def test_figure_views_of_other_years(phrase, sentence, view):
    assert figure_view(phrase, sentence) is view


def test_an_unqualified_side_view_is_other():
    assert normalize_view("a side view") is View.OTHER
    assert normalize_view("heel side view") is View.OTHER


def test_request_enums_outside_the_schema_are_refused_by_field():
    with pytest.raises(InvalidQueryError, match="options.against: 7 is not an Against value"):
        convert.request(search_pb2.SearchOptions(against=7), "v1", _Context(None))
    q = convert.request(search_pb2.SearchOptions(), "v1", _Context(None))
    assert q.against == "" and q.matching("drawing") == ("drawing",)  # the query's default


class _Context:
    def __init__(self, remaining):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


def test_no_deadline_means_no_deadline():
    assert convert.deadline(_Context(9.2e18)) is None  # what grpcio reports with none
    assert convert.deadline(_Context(None)) is None
    assert convert.deadline(_Context(2.5)) == 2.5


def test_an_event_whose_key_is_not_its_patent_is_refused():
    grant = next(iter(BundleGenerator(0).patents(datetime.date(2021, 1, 5), 1)))
    from patentclip.grants.xml_parser import parse_grant_xml
    from patentclip_cli.synthetic import grant_xml

    parsed = parse_grant_xml(grant_xml(grant), "x.xml")
    check_event_key(parsed.patent_number.encode(), parsed)
    for key, words in ((b"D0999998", "key 'D0999998' but the event is grant"),
                       (None, "no key but the event is grant")):
        with pytest.raises(EventDecodeError, match=words) as info:
            check_event_key(key, parsed)
        assert info.value.reason == "key_mismatch"
    assert tombstone_patent(b"D0900002") == "D0900002"
    with pytest.raises(EventDecodeError, match="tombstone key 'junk'"):
        tombstone_patent(b"junk")


def test_report_reasons_drop_sources_and_numbers():
    assert error_reason("I20210105.tar!DESIGN/USD0900001.ZIP: not a valid zip (File is not "
                        "a zip file)") == "not a valid zip"
    assert error_reason("x.xml: missing drawing files: a.TIF, b.TIF") == "missing drawing files"
    assert error_reason("b.tar: member of 300 bytes exceeds the limit of 200") == \
        "member of N bytes exceeds the limit of N"


def test_a_folder_of_weekly_bundles_publishes_in_date_order(tmp_path):
    from services.publisher import bundle_date, weekly_sources

    names = ["I20210112.tar", "ipg210105.zip", "I20201229.tar", "notes.txt", "I20210105.tar"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    grants = tmp_path / "grants"
    grants.mkdir()
    ordered = weekly_sources([tmp_path, grants])
    assert [p.name for p in ordered] == ["grants", "I20201229.tar", "I20210105.tar",
                                         "ipg210105.zip", "I20210112.tar"]
    assert bundle_date("ipg210105.zip") == 20210105 and bundle_date("x.tar") is None


def test_backfill_state_resumes_only_unchanged_bundles(tmp_path):
    from services.publisher import BundleSummary, PublishState

    bundle = tmp_path / "I20210105.tar"
    bundle.write_bytes(b"week 1")
    state = PublishState(tmp_path / "state" / "state.json", "broker:9092/grants")
    state.record(bundle, BundleSummary(name=bundle.name, grants=3, sheets=12))
    again = PublishState(tmp_path / "state" / "state.json", "broker:9092/grants")
    resumed = again.finished(bundle)
    assert resumed.resumed and resumed.grants == 3 and resumed.sheets == 12
    other_topic = PublishState(tmp_path / "state" / "state.json", "broker:9092/other")
    assert other_topic.finished(bundle) is None  # never published there
    bundle.write_bytes(b"week 1, republished with a fix")
    os.utime(bundle, ns=(1, 1))
    assert again.finished(bundle) is None
    assert json.loads((tmp_path / "state" / "state.json").read_text())["version"] == 1
