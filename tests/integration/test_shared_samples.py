"""The reader on the 40 real 2021 design grants in ../shared (copied before modifying)."""

import io
import shutil
import tarfile
import zipfile

import pytest

from patentclip.grants.reader import GrantReader

EXPECTED = {  # number: (title, locarno class, first USPC, figures, sheet files, FIG. 1 view)
    "D0907292": ("Shaving blade cartridge", "28", "D28/47", 8, 9, "perspective"),
    "D0908314": ("Garment with a side pocket", "02", "D2/728", 7, 5, "perspective"),
    "D0913174": ("Display screen for automobile", "14", "D12/192", 8, 9, "perspective"),
    "D0919445": ("Dispenser bottle", "09", "D9/726", 6, 4, "perspective"),
    "D0928323": ("Dental abutment", "24", "D24/156", 7, 8, "left"),
    "D0939223": ("Fabric with surface pattern", "05", "D5/46", 2, 3, "top"),
}


@pytest.fixture(scope="module")
def sample_grants(sample_dir):
    reader = GrantReader()
    docs = {d.grant.patent_number: d for d in reader.read(sample_dir)}
    return reader, docs


def test_every_real_sample_parses(sample_grants):
    reader, docs = sample_grants
    assert len(docs) == 40 and reader.report.errors == []
    for doc in docs.values():
        assert doc.grant.kind == "S1" and doc.grant.title and doc.grant.locarno
        assert len(doc.images) == len(doc.grant.sheets)  # every sheet image found


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_exact_fields(sample_grants, number):
    title, klass, uspc, n_figures, n_sheets, view1 = EXPECTED[number]
    g = sample_grants[1][number].grant
    assert g.title == title
    assert g.locarno.main_class == klass and g.locarno.edition == "13"
    assert g.uspc[0].normalized == uspc and g.uspc[0].main
    assert len(g.figures) == n_figures == g.declared_figure_count
    assert len(g.sheets) == n_sheets
    assert g.sheets[0].file_name == f"US{number}-{g.grant_date}-D00000.TIF"
    first = g.figures[0]
    assert first.view.value == view1


def test_shaving_cartridge_details(sample_grants):
    g = sample_grants[1]["D0907292"].grant
    assert g.grant_date == 20210105 and g.uspc[0].raw == "D28 47"
    assert g.figure("2").view_text == "bottom view"
    assert g.sheets[2].figure_numbers == ("2",)
    assert g.sheet_caption(g.sheets[2]) == "bottom view of a shaving blade cartridge"
    assert g.claim == "The ornamental design for a shaving blade cartridge, as shown and described."


def test_several_figures_per_sheet_are_not_guessed(sample_grants):
    g = sample_grants[1]["D0919445"].grant  # FIG. 1 and FIG. 2 share sheet 1
    assert len(g.figures) == 6 and len(g.sheets) == 4
    assert all(s.figure_numbers == () for s in g.sheets)
    assert g.sheet_view(g.sheets[1]) == "unknown"


def _bundle_from_folders(sample_dir, tmp_path, extra_members=()):
    """Build I20210105.tar in USPTO's layout from the per-patent folders."""
    bundle = tmp_path / "I20210105.tar"
    with tarfile.open(bundle, "w") as tar:
        for folder in sorted(sample_dir.iterdir()):
            if not folder.is_dir():
                continue
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as zf:
                for f in sorted(folder.iterdir()):
                    zf.write(f, f"{folder.name}/{f.name}")
            _add(tar, f"DESIGN/{folder.name}.ZIP", buffer.getvalue())
        for name, data in extra_members:
            _add(tar, name, data)
    return bundle


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _zip(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_bundle_in_uspto_layout_reads_the_same(sample_dir, sample_grants, tmp_path):
    reader = GrantReader()
    docs = {d.grant.patent_number: d for d in reader.read(_bundle_from_folders(sample_dir,
                                                                               tmp_path))}
    folder_docs = sample_grants[1]
    assert docs.keys() == folder_docs.keys() and reader.report.errors == []
    for number, doc in docs.items():
        ref = folder_docs[number]
        assert (doc.grant.title, doc.grant.figures, doc.grant.uspc, doc.grant.locarno) == (
            ref.grant.title, ref.grant.figures, ref.grant.uspc, ref.grant.locarno)
        assert doc.images == ref.images


def test_broken_members_are_reported_and_the_rest_is_read(sample_dir, tmp_path):
    work = tmp_path / "sample"
    shutil.copytree(sample_dir, work)  # ../shared is read-only: change a copy
    for f in work.rglob("*"):
        f.chmod(0o644 if f.is_file() else 0o755)
    # 1. truncated XML
    xml = work / "USD0907292-20210105" / "USD0907292-20210105.XML"
    xml.write_bytes(xml.read_bytes()[:3000])
    # 2. corrupt TIFF sheet (parses; the image fails at decode time)
    tif = work / "USD0908314-20210126" / "USD0908314-20210126-D00001.TIF"
    tif.write_bytes(b"II*\x00garbage")
    slip = _zip({"../x.XML": b"<x/>", "USD0999999-20210105/USD0999999-20210105.XML": b""})
    utility = _zip({"US10881234-20210105/US10881234-20210105.XML": b"<us-patent-grant/>"})
    bundle = _bundle_from_folders(work, tmp_path, extra_members=[
        ("DESIGN/USD0999999-20210105.ZIP", slip),
        ("UTIL0105/US10881234-20210105.ZIP", utility),
    ])
    reader = GrantReader()
    docs = {d.grant.patent_number: d for d in reader.read(bundle)}
    assert len(docs) == 39 and "D0907292" not in docs
    errors = "\n".join(reader.report.errors)
    assert "USD0907292-20210105.XML: malformed XML" in errors
    assert "USD0999999-20210105.ZIP: member path escapes the archive: ../x.XML" in errors
    assert reader.report.skipped == {"not a design grant (utility)": 1}
    assert docs["D0908314"].images["USD0908314-20210126-D00001.TIF"] == b"II*\x00garbage"


def test_corrupt_tiff_is_reported_by_the_indexer_and_the_rest_indexed(sample_dir, tmp_path,
                                                                      encoder):
    from patentclip.ingest.indexer import Indexer
    from patentclip.store import PatentStore

    work = tmp_path / "two"
    for name in ("USD0913943-20210323", "USD0929296-20210831"):
        shutil.copytree(sample_dir / name, work / name)
    bad = work / "USD0929296-20210831" / "USD0929296-20210831-D00001.TIF"
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes()[:200])
    store = PatentStore(str(tmp_path / "p.db"))
    summary = Indexer(encoder, store, progress=False).index([work])
    assert summary.grants == 2 and summary.sheets == 9 + 2
    assert any("USD0929296-20210831-D00001.TIF" in e and "truncated" in e
               for e in summary.errors)
    assert store.count(summary.collection, "drawing") == 11


def test_text_only_ipg_zip_reads_designs_and_skips_others(sample_dir, tmp_path):
    xmls = [next(d.glob("*.XML")).read_bytes() for d in sorted(sample_dir.iterdir())
            if d.is_dir()][:5]
    utility = (b'<?xml version="1.0" encoding="UTF-8"?>\n<us-patent-grant><us-bibliographic-'
               b"data-grant><publication-reference><document-id><doc-number>10881234</doc-"
               b"number><kind>B2</kind><date>20210105</date></document-id></publication-"
               b"reference></us-bibliographic-data-grant></us-patent-grant>\n")
    ipg = tmp_path / "ipg210105.zip"
    with zipfile.ZipFile(ipg, "w") as zf:
        zf.writestr("ipg210105.xml", b"\n".join([xmls[0], utility, *xmls[1:]]))
    reader = GrantReader()
    docs = list(reader.read(ipg))
    assert len(docs) == 5 and reader.report.errors == []
    assert reader.report.skipped == {"not a design grant (kind B2)": 1}
    assert all(d.images == {} and d.grant.sheets for d in docs)
    assert docs[0].grant.source == "ipg210105.zip!ipg210105.xml#doc1"


def test_design_zip_without_its_drawings_reports_them_missing(sample_dir, tmp_path):
    folder = sample_dir / "USD0929296-20210831"
    xml = next(folder.glob("*.XML"))
    path = tmp_path / "USD0929296-20210831.ZIP"
    path.write_bytes(_zip({f"{folder.name}/{xml.name}": xml.read_bytes()}))
    reader = GrantReader()
    docs = list(reader.read(path))
    assert len(docs) == 1 and docs[0].images == {}
    assert "missing drawing files: USD0929296-20210831-D00000.TIF" in reader.report.errors[0]
