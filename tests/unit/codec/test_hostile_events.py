"""Hostile grant events from producers that are not ours: every field is checked once, at
decode (patentclip/codec/events.py ``check_grant``), and a failing event is refused as
``invalid_grant`` naming the field, never a crash, a crash loop or a stalled partition."""

from __future__ import annotations

from dataclasses import replace

import pytest

from patentclip.codec.events import (
    REASON_INVALID_GRANT,
    check_event_key,
    decode_event,
    encode_event,
    grant_to_proto,
)
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import (
    EventDecodeError,
    InvalidInputError,
    NotADesignGrantError,
    NotFoundError,
)
from patentclip.grants.model import DrawingSheet, Grant, LocarnoClass, is_patent_number
from patentclip.grants.xml_parser import parse_grant_xml


def _grant(**changes) -> Grant:
    grant = Grant(patent_number="D0907292", kind="S1", title="Bottle", grant_date=20210105,
                  uspc=(), claim="The ornamental design for a bottle.", figures=(),
                  locarno=LocarnoClass("0901", "13"),
                  sheets=(DrawingSheet(1, "USD0907292-20210105-D00001.TIF", ("1",),
                                       image_uri="file:///data/images/D0907292/D00001.TIF"),))
    return replace(grant, **changes)


def _event(mutate) -> bytes:
    """A valid event whose Grant message ``mutate`` then changes, as a foreign producer
    could write it (bypassing our domain model)."""
    from patentclip.v1 import grant_pb2 as pb
    message = pb.GrantEvent(schema_version=1, grant=grant_to_proto(_grant()))
    mutate(message.grant)
    return message.SerializeToString()


def _refused(data: bytes) -> str:
    with pytest.raises(EventDecodeError) as info:
        decode_event(data)
    assert info.value.reason == REASON_INVALID_GRANT
    return str(info.value)


def test_a_valid_event_round_trips():
    assert decode_event(encode_event(_grant())).grant == _grant()


def _set(path: str, value):
    def mutate(grant):
        target = grant
        *parents, last = path.split(".")
        for part in parents:
            target = (getattr(target, part.split("[")[0])[int(part.split("[")[1][:-1])]
                      if "[" in part else getattr(target, part))
        setattr(target, last, value)
    return mutate


@pytest.mark.parametrize("path, value, named", [
    ("patent_number", "D０９０７２９２", "patent_number"),  # non-ASCII digits
    ("patent_number", "D0907292<script>", "patent_number"),
    ("locarno.code", "<!--", "locarno.code"),
    ("locarno.code", "０９０１", "locarno.code"),
    ("kind", "S1<b>", "kind"),
    ("title", "x" * 1001, "title"),
    ("title", "bottle\x00", "title"),
    ("sheets[0].figure_numbers", None, "figure_numbers"),  # set below
    ("sheets[0].image_uri", "file:///data/images/D0907292/a\x00b", "image_uri"),
    ("sheets[0].image_uri", "file:///" + "a/" * 600, "image_uri"),
    ("sheets[0].image_uri", "file:///data/images/D0907292/a b.TIF", "image_uri"),
    ("sheets[0].image_uri", "", "image_uri"),
    ("sheets[0].file_name", "../../etc/passwd", "file_name"),
    ("sheets[0].number", 100000, "number"),
    ("grant_date", 20210230, "grant_date"),
])
def test_an_event_that_breaks_a_field_rule_is_refused_naming_the_field(path, value, named):
    if value is None:  # a figure number holding markup, as a foreign producer could write
        def mutate(grant):
            grant.sheets[0].figure_numbers[:] = ['1<meta http-equiv="refresh" content="0">']
    else:
        mutate = _set(path, value)
    assert named in _refused(_event(mutate))


def test_figure_descriptions_and_counts_are_bounded():
    def many_figures(grant):
        for _ in range(501):
            grant.figures.add(number="1", description="a view")
    assert "figures: 501 items" in _refused(_event(many_figures))

    def figure_markup(grant):
        grant.figures.add(number="<dialog>", description="a view")
    assert "figures[0].number" in _refused(_event(figure_markup))


def test_citations_are_bounded_and_their_category_is_one_of_the_enum():
    def long_text(grant):
        grant.citations.add(text="x" * 5001)
    assert "citations[0].text: 5001 characters" in _refused(_event(long_text))

    def unknown_category(grant):
        grant.citations.add(doc_number="D844798", category=99)
    assert "citations[0].category 99" in _refused(_event(unknown_category))

    def many(grant):
        for _ in range(5001):
            grant.citations.add(doc_number="D844798")
    assert "citations: 5001 items" in _refused(_event(many))


def test_non_ascii_digits_are_no_patent_number_so_the_key_check_is_never_reached():
    assert not is_patent_number("D０９０７２９２")
    assert not is_patent_number("D٠٩٠٧٢٩٢")  # Arabic-Indic digits
    assert "patent_number" in _refused(_event(_set("patent_number", "D٠٩٠٧٢٩٢")))
    check_event_key(b"D0907292", _grant())  # the valid grant's key is its number


def test_every_real_grant_of_every_dtd_version_passes(sample_dir):
    shared = sample_dir.parent
    files = [*shared.glob("uspto-sample*/*/*.XML"), *shared.glob("uspto-dtd/*.XML")]
    assert len(files) >= 70
    for path in files:
        try:
            grant = parse_grant_xml(path.read_bytes(), path.name)
        except NotADesignGrantError:  # the 3 utility grants of uspto-dtd
            continue
        sheets = tuple(replace(s, image_uri=f"file:///data/images/{grant.patent_number}/"
                               f"{s.file_name}") for s in grant.sheets)
        stored = replace(grant, sheets=sheets)
        decoded = decode_event(encode_event(stored)).grant  # no EventDecodeError
        assert grant_to_proto(decoded) == grant_to_proto(stored), path.name


# ------------------------------------------------------------------ the image store


@pytest.fixture
def images(tmp_path) -> LocalImageStore:
    store = LocalImageStore(tmp_path / "images")
    store.put("D0907292", "D00001.TIF", b"II*\x00")
    return store


@pytest.mark.parametrize("uri, error", [
    ("file:///nope/D00001.TIF", InvalidInputError),  # outside the store
    ("http://example.com/a.tif", InvalidInputError),
    ("IMAGES/D0907292/a%00b.TIF", InvalidInputError),  # a NUL, percent-encoded
    ("IMAGES/D0907292/" + "a" * 300 + ".TIF", InvalidInputError),  # ENAMETOOLONG
    ("IMAGES/D0907292/D00001.TIF/x.TIF", InvalidInputError),  # ENOTDIR: through a file
    ("IMAGES/" + "a/" * 600, InvalidInputError),  # over the path limit
    ("IMAGES/D0907292/D00002.TIF", NotFoundError),
])
def test_a_uri_that_cannot_be_read_is_the_uri_fault_never_retried(images, uri, error):
    uri = uri.replace("IMAGES", images.root.as_uri())
    with pytest.raises(error):
        images.get(uri)



def _two_figures() -> Grant:
    from patentclip.grants.model import FigureRegion, Region, SheetFigureMapping

    sheet = replace(_grant().sheets[0], figure_numbers=("1", "2"),
                    mapping=SheetFigureMapping.LABELS, regions=(
                        FigureRegion("1", Region(0.0, 0.0, 0.479, 0.953)),
                        FigureRegion("2", Region(0.522, 0.0, 1.0, 0.917))))
    return _grant(sheets=(sheet,))


def test_figure_regions_round_trip_and_a_foreign_producers_are_checked_by_field():
    assert decode_event(encode_event(_two_figures())).grant == _two_figures()

    def event(mutate) -> bytes:
        from patentclip.v1 import grant_pb2 as pb
        message = pb.GrantEvent(schema_version=1, grant=grant_to_proto(_two_figures()))
        mutate(message.grant.sheets[0])
        return message.SerializeToString()

    def swap(sheet):  # one per figure number, in their order
        sheet.regions[0].figure_number, sheet.regions[1].figure_number = "2", "1"

    def box(left=0.0, top=0.0, right=0.5, bottom=0.5):
        def mutate(sheet):
            r = sheet.regions[1].region
            r.left, r.top, r.right, r.bottom = left, top, right, bottom
        return mutate

    assert "sheets[0].regions: one per figure number" in _refused(event(swap))
    for bad in (box(right=1.5), box(left=0.6), box(top=float("nan")), box(right=0.0004)):
        assert "sheets[0].regions[1].region" in _refused(event(bad))
