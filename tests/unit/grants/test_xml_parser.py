"""Parsing of us-patent-grant XML documents built in the test (no files needed)."""

import pytest

from patentclip.errors import GrantParseError, NotADesignGrantError
from patentclip.grants.model import SheetFigureMapping, View
from patentclip.grants.xml_parser import parse_grant_xml


def grant_xml(kind="S1", number="D0912345", paragraphs=None, sheets=3, figures=None,
              title="Bottle", dtd="v4.5 2014-04-03", extra_biblio="", doctype=True):
    paragraphs = paragraphs if paragraphs is not None else [
        '<figref idref="DRAWINGS">FIG. 1</figref> is a front perspective view of a bottle;',
        '<figref idref="DRAWINGS">FIG. 2</figref> is a top plan view thereof; and,',
        '<figref idref="DRAWINGS">FIG. 3</figref> is a bottom view thereof.',
        'The broken lines form no part of the claimed design.',
    ]
    figures = figures if figures is not None else 3
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    imgs = "".join(f'<figure num="{i:05d}"><img file="US{number}-20210105-D{i:05d}.TIF"/>'
                   f"</figure>" for i in range(sheets + 1))
    head = ('<!DOCTYPE us-patent-grant SYSTEM "us-patent-grant-v45-2014-04-03.dtd" [ ]>'
            if doctype else "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>{head}
<us-patent-grant dtd-version="{dtd}"><us-bibliographic-data-grant>
<publication-reference><document-id><country>US</country><doc-number>{number}</doc-number>
<kind>{kind}</kind><date>20210105</date></document-id></publication-reference>
<classification-locarno><edition>13</edition><main-classification>0901</main-classification>
</classification-locarno>
<classification-national><country>US</country><main-classification>D 9538</main-classification>
<further-classification>D 9516</further-classification></classification-national>
<invention-title>{title}</invention-title>{extra_biblio}
<figures><number-of-drawing-sheets>{sheets}</number-of-drawing-sheets>
<number-of-figures>{figures}</number-of-figures></figures>
</us-bibliographic-data-grant>
<drawings>{imgs}</drawings>
<description><description-of-drawings>{body}</description-of-drawings></description>
<claims><claim><claim-text>The ornamental design for a bottle, as shown.</claim-text></claim>
</claims></us-patent-grant>""".encode()


def test_fields_and_one_figure_per_sheet():
    g = parse_grant_xml(grant_xml(), "test.xml")
    assert (g.patent_number, g.kind, g.title, g.grant_date) == ("D0912345", "S1", "Bottle",
                                                                20210105)
    assert g.locarno.code == "0901" and g.locarno.edition == "13"
    assert [(u.raw, u.normalized, u.main) for u in g.uspc] == [
        ("D 9538", "D9/538", True), ("D 9516", "D9/516", False)]
    assert [(f.number, f.view) for f in g.figures] == [
        ("1", View.PERSPECTIVE), ("2", View.TOP), ("3", View.BOTTOM)]
    assert g.drawing_notes == ("The broken lines form no part of the claimed design.",)
    assert g.claim.startswith("The ornamental design for a bottle")
    assert [s.mapping for s in g.sheets] == [SheetFigureMapping.FRONT_PAGE] + [
        SheetFigureMapping.ONE_PER_SHEET] * 3
    assert [s.figure_numbers for s in g.sheets] == [(), ("1",), ("2",), ("3",)]
    assert g.sheet_caption(g.sheets[2]) == "top plan view of a bottle"


def test_figure_counts_differing_from_sheets_leave_mapping_unknown():
    g = parse_grant_xml(grant_xml(sheets=2), "test.xml")
    assert [s.mapping for s in g.sheets[1:]] == [SheetFigureMapping.UNKNOWN] * 2
    assert all(s.figure_numbers == () for s in g.sheets)


def test_figure_paragraph_forms():
    paragraphs = [
        "The FIGURE is a front view of a display screen showing the new design.",
    ]
    g = parse_grant_xml(grant_xml(paragraphs=paragraphs, sheets=1, figures=1), "t")
    assert [(f.number, f.view) for f in g.figures] == [("1", View.FRONT)]
    paragraphs = [
        '<figref idref="DRAWINGS">FIGS. 1</figref> and <figref>2</figref> are perspective '
        "views thereof;",
        '<figref idref="DRAWINGS">FIGS. 3-5</figref> are side views thereof;',
        '<figref idref="DRAWINGS">FIG. 6A</figref> is an exploded view thereof.',
    ]
    g = parse_grant_xml(grant_xml(paragraphs=paragraphs, sheets=7, figures=7), "t")
    assert [f.number for f in g.figures] == ["1", "2", "3", "4", "5", "6A"]
    assert g.figure("6A").view is View.EXPLODED


def test_hague_reproductions():
    paragraphs = ["1. Belt buckle", '<figref idref="DRAWINGS">1.1 </figref>: Perspective',
                  '<figref idref="DRAWINGS">1.2 </figref>: Front']
    g = parse_grant_xml(grant_xml(paragraphs=paragraphs, sheets=2, figures=2), "t")
    assert [(f.number, f.view) for f in g.figures] == [("1.1", View.PERSPECTIVE),
                                                       ("1.2", View.FRONT)]
    assert g.sheets[1].figure_numbers == ("1.1",)
    assert g.drawing_notes == ("1. Belt buckle",)


@pytest.mark.parametrize("kind, number", [("B2", "10881234"), ("P3", "PP32001"),
                                          ("E", "RE48500")])
def test_non_design_documents_are_refused_as_such(kind, number):
    with pytest.raises(NotADesignGrantError) as err:
        parse_grant_xml(grant_xml(kind=kind, number=number), "util.xml")
    assert err.value.doc_kind == kind


def test_truncated_xml_names_source_and_reason():
    data = grant_xml()[:400]
    with pytest.raises(GrantParseError) as err:
        parse_grant_xml(data, "I20210105.tar!DESIGN/USD0912345-20210105.ZIP")
    assert "USD0912345" in str(err.value) and "malformed XML" in str(err.value)


def test_missing_title_is_a_clear_error():
    data = grant_xml().replace(b"<invention-title>Bottle</invention-title>", b"")
    with pytest.raises(GrantParseError, match="missing required element <invention-title>"):
        parse_grant_xml(data, "x.xml")


def test_external_entities_are_refused():
    data = b"""<?xml version="1.0"?>
<!DOCTYPE us-patent-grant [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<us-patent-grant><x>&xxe;</x></us-patent-grant>"""
    with pytest.raises(GrantParseError, match="refused unsafe XML"):
        parse_grant_xml(data, "evil.xml")


def test_entity_expansion_is_refused():
    data = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>
<us-patent-grant>&lol2;</us-patent-grant>"""
    with pytest.raises(GrantParseError, match="refused unsafe XML"):
        parse_grant_xml(data, "bomb.xml")


def test_older_dtd_without_locarno_still_parses():
    data = grant_xml(dtd="v4.0 2004-12-02").replace(
        b"<classification-locarno><edition>13</edition><main-classification>0901"
        b"</main-classification>\n</classification-locarno>", b"")
    g = parse_grant_xml(data, "old.xml")
    assert g.locarno is None and g.dtd_version.startswith("v4.0")
