"""The reader on real grants of 2005-2024 (DTD v4.0-v4.7) and ten more real 2021 grants.

Every file of ../shared/uspto-dtd and ../shared/uspto-sample-extra is compared field by
field with tests/data/shared_grants_expected.json, whose values were taken from the XML
without the reader (see its "_about"). The three utility grants must be skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import SHARED
from patentclip.grants.reader import GrantReader

EXPECTED = json.loads((Path(__file__).parent.parent / "data" /
                       "shared_grants_expected.json").read_text())["grants"]


@pytest.fixture(scope="module")
def shared_root() -> Path:
    if not (SHARED / "uspto-dtd").is_dir():
        print(f"SKIP REASON: {SHARED / 'uspto-dtd'} is absent (../shared not beside the checkout)")
        pytest.skip("../shared/uspto-dtd is absent")
    return SHARED


def _read(path: Path, load_images: bool):
    reader = GrantReader(load_images=load_images)
    return list(reader.read(path)), reader.report


@pytest.mark.parametrize("expected", EXPECTED, ids=[e["file"].split("/")[-1] for e in EXPECTED])
def test_every_shared_document_reads_with_its_exact_fields(shared_root, expected):
    path = shared_root / expected["file"]
    with_images = expected["file"].startswith("uspto-sample-extra")
    documents, report = _read(path if not with_images else path.parent, with_images)
    if "skipped" in expected:
        assert documents == [] and report.errors == []
        assert report.skipped == {expected["skipped"]: 1}
        return
    assert report.errors == [] and len(documents) == 1
    document = documents[0]
    grant = document.grant
    assert (grant.patent_number, grant.kind, grant.grant_date, grant.title) == (
        expected["number"], expected["kind"], expected["date"], expected["title"])
    assert grant.locarno.code == expected["locarno"]
    assert [s.file_name for s in grant.sheets] == expected["sheet_files"]
    assert grant.declared_figure_count == expected["declared_figures"]
    assert {f.number: f.view.value for f in grant.figures} == expected["figures"]
    assert {str(s.number): list(s.figure_numbers) for s in grant.sheets} == expected["sheets"]
    assert sorted({s.mapping.value for s in grant.sheets if s.number}) == expected["mapping"]
    if with_images:  # the 2021 grants come with every TIFF
        assert sorted(document.images) == sorted(expected["sheet_files"])
    for sheet in grant.sheets:  # a sheet with figures is captioned from them, not the title
        if grant.sheet_figures(sheet):
            assert grant.sheet_caption(sheet) != grant.unmapped_caption()


def test_a_weekly_file_of_every_year_skips_utility_grants_and_sequence_listings(
        shared_root, tmp_path):
    """An ipg-style concatenation of all 23 documents plus a sequence listing, as weekly
    ipg files interleave them: 20 designs read, 3 utility grants and the listing skipped."""
    sequence = (b'<?xml version="1.0" encoding="UTF-8"?>\n<sequence-cwu id="SEQLST-1" '
                b'file="US11646472-20230509-S00001.XML"><publication-reference>'
                b'</publication-reference></sequence-cwu>\n')
    parts = [p.read_bytes() for p in sorted((shared_root / "uspto-dtd").glob("*.XML"))]
    weekly = tmp_path / "ipg241231.xml"
    weekly.write_bytes(b"\n".join(parts[:2] + [sequence] + parts[2:]))
    documents, report = _read(weekly, load_images=False)
    assert len(documents) == 20 and report.errors == []
    assert report.skipped == {"not a design grant (kind B1)": 1,
                              "not a design grant (kind B2)": 2,
                              "sequence listing (sequence-cwu)": 1}
    assert {d.grant.dtd_version.split()[0] for d in documents} == {"v4.1", "v4.2", "v4.3",
                                                                   "v4.7"}
