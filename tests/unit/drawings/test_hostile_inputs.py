"""Hostile and broken inputs to the grant reader and the drawing decoder.

Every case ends in a documented error (GrantParseError / InvalidInputError /
ImageDecodeError) or a line in the read report, never a crash and never a silent skip.
The fuzz tests are bounded (a fixed number of derandomized examples), so they take the same
few seconds on every run and a failure reproduces.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness import REPO
from patentclip.drawings.preprocess import DrawingPreprocessor
from patentclip.errors import GrantParseError, ImageDecodeError, InvalidInputError
from patentclip.grants.reader import ArchiveLimits, GrantReader
from patentclip.grants.xml_parser import parse_grant_xml
from patentclip_cli.synthetic import BundleGenerator

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return BundleGenerator(seed=7).write_bundle(tmp_path_factory.mktemp("b"), date(2021, 1, 5),
                                                3)


@pytest.fixture(scope="module")
def design_zip(bundle) -> tuple[str, bytes]:
    with tarfile.open(bundle) as tar:
        member = next(m for m in tar if "/USD" in m.name)
        return member.name, tar.extractfile(member).read()


@pytest.fixture(scope="module")
def grant_xml(design_zip) -> bytes:
    with zipfile.ZipFile(io.BytesIO(design_zip[1])) as archive:
        name = next(n for n in archive.namelist() if n.upper().endswith(".XML"))
        return archive.read(name)


def _only_documented_errors(data: bytes) -> None:
    try:
        parse_grant_xml(data, "fuzz.xml")
    except GrantParseError as exc:
        assert str(exc).startswith("fuzz.xml: ")  # names the source, says why


# ----------------------------------------------------------------------------- XML


@pytest.mark.parametrize("dtd", ["v3.0 1999-01-01", "v5.0 2030-01-01", "ST.96"])
def test_other_dtd_versions_are_refused_by_name(grant_xml, dtd):
    data = grant_xml.replace(b'dtd-version="v4.5 2014-04-03"', f'dtd-version="{dtd}"'.encode())
    with pytest.raises(GrantParseError, match=f"unsupported dtd-version '{dtd}'"):
        parse_grant_xml(data, "x.xml")


def test_pre_2005_sgml_style_documents_are_refused_by_root(grant_xml):
    with pytest.raises(GrantParseError, match="root element is <PATDOC>"):
        parse_grant_xml(b"<?xml version='1.0'?><PATDOC><B100/></PATDOC>", "old.xml")


@pytest.mark.parametrize("element", ["us-bibliographic-data-grant", "publication-reference",
                                     "doc-number", "invention-title"])
def test_missing_required_elements_are_named(grant_xml, element):
    start = grant_xml.index(f"<{element}".encode())
    end = grant_xml.index(f"</{element}>".encode()) + len(element) + 3
    with pytest.raises(GrantParseError, match=f"missing.*{element.split('-')[0]}"):
        parse_grant_xml(grant_xml[:start] + grant_xml[end:], "x.xml")


@pytest.mark.parametrize("payload", [
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "http://169.254.169.254/latest/meta-data/">]>',
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
])
def test_entities_in_a_real_document_are_refused(grant_xml, payload):
    head, rest = grant_xml.split(b"?>", 1)
    data = head + b"?>" + payload + rest.split(b"]>", 1)[-1].replace(
        b"<invention-title", b"<invention-title>&e;</invention-title><x", 1)
    with pytest.raises(GrantParseError, match="refused unsafe XML|malformed XML"):
        parse_grant_xml(data, "evil.xml")


@FUZZ
@given(st.data())
def test_fuzzed_real_documents_raise_only_documented_errors(grant_xml, data):
    """Truncations, byte flips, insertions and deletions of a valid grant document."""
    doc = bytearray(grant_xml)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(doc)))
        action = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        if action == "truncate":
            del doc[at:]
        elif action == "flip" and at < len(doc):
            doc[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            doc[at:at] = data.draw(st.sampled_from(
                [b"<", b">", b"&", b"&amp;", b"]]>", b"<!--", b"\x00", b"\xff\xfe",
                 b"<figure num='x'><img file='../../etc'/></figure>", b"<p>FIG. 99-1</p>"]))
        else:
            del doc[at:at + data.draw(st.integers(1, 200))]
    _only_documented_errors(bytes(doc))


@FUZZ
@given(st.recursive(
    st.text(max_size=30),
    lambda inner: st.builds(
        lambda tag, children, attr: f'<{tag} num="{attr}">{"".join(children)}</{tag}>',
        st.sampled_from(["us-bibliographic-data-grant", "publication-reference", "document-id",
                         "doc-number", "kind", "date", "invention-title", "figures",
                         "number-of-figures", "drawings", "figure", "description",
                         "description-of-drawings", "p", "claims", "claim", "claim-text",
                         "classification-locarno", "main-classification"]),
        st.lists(inner, max_size=4), st.text(max_size=6)),
    max_leaves=30))
def test_structured_random_documents_raise_only_documented_errors(body):
    from xml.sax.saxutils import escape

    text = body if body.startswith("<") else escape(body)
    _only_documented_errors(f'<?xml version="1.0"?><us-patent-grant>{text}</us-patent-grant>'
                            .encode("utf-8", "surrogatepass"))


# ----------------------------------------------------------------------------- archives


def _tar(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path = tmp_path / "I20210105.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _read(path: Path, **limits) -> tuple[list, list[str]]:
    reader = GrantReader(ArchiveLimits(**limits)) if limits else GrantReader()
    docs = list(reader.read(path))
    return docs, reader.report.errors


@pytest.mark.parametrize(("name", "words"), [
    ("../../etc/USD0000001-20210105.ZIP", "escapes the archive"),
    ("/tmp/USD0000001-20210105.ZIP", "absolute path"),
    ("C:/x/USD0000001-20210105.ZIP", "absolute path"),
    ("DESIGN\\..\\..\\USD0000001-20210105.ZIP", "escapes the archive"),
])
def test_tar_member_paths_that_escape_are_refused_and_the_rest_read(tmp_path, design_zip,
                                                                    name, words):
    good, data = design_zip
    path = _tar(tmp_path, [(tarfile.TarInfo(name), data), (tarfile.TarInfo(good), data)])
    docs, errors = _read(path)
    assert len(docs) == 1 and len(errors) == 1 and words in errors[0]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path, design_zip, kind):
    link = tarfile.TarInfo("DESIGN/USD0000009-20210105.ZIP")
    link.type, link.linkname = kind, "/etc/passwd"
    docs, errors = _read(_tar(tmp_path, [(link, None)]))
    assert docs == [] and "link or special file" in errors[0]


def _zip(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@pytest.mark.parametrize(("members", "symlinks", "words"), [
    ({"../../x.XML": b"<x/>"}, (), "escapes the archive"),
    ({"/abs/x.XML": b"<x/>"}, (), "absolute path"),
    ({"USD1/link.TIF": b"/etc/passwd", "USD1/USD1.XML": b"<x/>"}, ("USD1/link.TIF",),
     "symbolic link"),
])
def test_zip_members_that_escape_or_link_are_refused(tmp_path, members, symlinks, words):
    path = tmp_path / "USD0000002-20210105.ZIP"
    path.write_bytes(_zip(members, symlinks))
    docs, errors = _read(path)
    assert docs == [] and words in errors[0]


def test_zip_bomb_stopped_at_the_member_limit_even_when_the_header_lies(tmp_path):
    """10 MB of zeros compress to ~10 KB; the header is then edited to claim 100 bytes."""
    data = bytearray(_zip({"USD3/USD3.XML": b"\0" * 10_000_000}))
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature)
        struct.pack_into("<I", data, at + size_offset, 100)
    path = tmp_path / "USD0000003-20210105.ZIP"
    path.write_bytes(bytes(data))
    docs, errors = _read(path, max_member_bytes=1_000_000)
    assert docs == [] and len(errors) == 1
    assert "USD3.XML" in errors[0] and ("cannot be read" in errors[0] or "limit" in errors[0])


def test_zip_bomb_by_declared_size_is_refused_before_inflating(tmp_path):
    path = tmp_path / "USD0000004-20210105.ZIP"
    path.write_bytes(_zip({"USD4/USD4.XML": b"\0" * 3_000_000}))
    docs, errors = _read(path, max_member_bytes=1_000_000)
    assert docs == [] and "exceeds the limit of 1000000" in errors[0]


def test_too_many_members_and_too_many_bytes_are_refused(tmp_path, design_zip):
    path = tmp_path / "USD0000005-20210105.ZIP"
    path.write_bytes(_zip({f"USD5/{i}.TIF": b"x" for i in range(50)}))
    assert "50 members, limit 10" in _read(path, max_members=10)[1][0]
    many = _zip({f"USD5/{i}.TIF": b"x" * 1000 for i in range(10)} | {"USD5/a.XML": b"<x/>"})
    path.write_bytes(many)
    assert "total limit of 5000 bytes" in _read(path, max_total_bytes=5000)[1][0]
    good, data = design_zip
    bundle = _tar(tmp_path, [(tarfile.TarInfo(good.replace("USD", f"USD{i}")), data)
                             for i in range(1, 6)])
    docs, errors = _read(bundle, max_members=3)
    assert "more than 3 members" in errors[-1]


def test_truncated_bundle_keeps_what_came_before(tmp_path, bundle):
    whole = bundle.read_bytes()
    cut = tmp_path / "I20210105.tar"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    docs, errors = _read(cut)
    assert 1 <= len(docs) < 3 and errors  # the cut member is reported, the rest read


@FUZZ
@given(st.data())
def test_fuzzed_zips_and_bundles_raise_only_documented_errors(tmp_path_factory, design_zip,
                                                              bundle, data):
    source = data.draw(st.sampled_from(["zip", "tar"]))
    blob = bytearray(design_zip[1] if source == "zip" else bundle.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del blob[data.draw(st.integers(0, len(blob))):]
    path = tmp_path_factory.mktemp("fuzz") / ("USD0000006-20210105.ZIP" if source == "zip"
                                              else "I20210105.tar")
    path.write_bytes(bytes(blob))
    reader = GrantReader()
    try:
        docs = list(reader.read(path))
    except InvalidInputError as exc:
        assert path.name in str(exc)
        return
    for doc in docs:
        assert doc.grant.patent_number.startswith("D")


# ----------------------------------------------------------------------------- images


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _png(20_000, 20_000)  # 400 M pixels in ~50 KB
    assert len(bomb) < 200_000
    with pytest.raises(ImageDecodeError, match="D00001.TIF: refused as a decompression bomb"):
        DrawingPreprocessor(image_size=64)(bomb, "D00001.TIF")


@pytest.mark.parametrize(("side", "words"), [
    (8_000, "8000x8000 pixels exceeds the limit of 60000000"),  # ours, before decoding
    (60_000, "refused as a decompression bomb"),  # Pillow's, already at open
])
def test_tiff_header_declaring_huge_dimensions_is_refused(side, words):
    buffer = io.BytesIO()
    Image.new("1", (64, 64), 1).save(buffer, format="TIFF", compression="group4")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):  # patch ImageWidth/ImageLength
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            fmt = "<H" if kind == 3 else "<I"
            struct.pack_into(fmt, data, entry + 8, side)
    with pytest.raises(ImageDecodeError, match=f"D00002.TIF: {words}"):
        DrawingPreprocessor(image_size=64)(bytes(data), "D00002.TIF")


@pytest.mark.parametrize(("data", "words"), [
    (b"%PDF-1.7\n1 0 obj <<>> endobj", "not a readable image"),
    (b"GIF89a" + b"\0" * 10, "D00003.TIF"),
    (b"<html>not found</html>", "not a readable image"),
    (b"", "D00003.TIF"),
])
def test_wrong_formats_behind_a_tif_name_are_named(data, words):
    with pytest.raises(ImageDecodeError, match=words):
        DrawingPreprocessor(image_size=64)(data, "D00003.TIF")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the corrupt tags
@FUZZ
@given(st.data())
def test_fuzzed_tiffs_raise_only_image_decode_errors(data):
    buffer = io.BytesIO()
    Image.new("1", (120, 80), 1).save(buffer, format="TIFF", compression="group4")
    blob = bytearray(buffer.getvalue())
    for _ in range(data.draw(st.integers(1, 5))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del blob[data.draw(st.integers(8, len(blob))):]
    try:
        image = DrawingPreprocessor(image_size=32)(bytes(blob), "fuzz.TIF")
    except ImageDecodeError as exc:
        assert "fuzz.TIF" in str(exc)
    else:
        assert image.size == (32, 32)


@pytest.mark.parametrize("fmt", ["EPS", "GIF", "BMP", "ICO", "WEBP", "PPM"])
def test_only_tiff_png_and_jpeg_are_decoded(fmt):
    """Pillow opens every format it knows unless told: EPS reached its Ghostscript step."""
    image = Image.new("RGB" if fmt != "EPS" else "L", (32, 32), 255)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    with pytest.raises(ImageDecodeError, match="expected TIFF, PNG or JPEG"):
        DrawingPreprocessor(image_size=32)(buffer.getvalue(), f"query.{fmt.lower()}")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGB"])
def test_transparent_parts_become_white_paper(mode):
    image = Image.new(mode, (40, 40), (0,) * len(mode))  # black, and transparent if it can be
    if "A" in mode:
        image.paste((0,) * (len(mode) - 1) + (255,), (10, 10, 30, 30))  # an opaque black box
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    gray = DrawingPreprocessor(image_size=40).decode(buffer.getvalue())
    assert gray.mode == "L"
    assert gray.getpixel((20, 20)) == 0
    assert gray.getpixel((2, 2)) == (255 if "A" in mode else 0)


MEMORY_PROBE = """
import io, resource, sys
from PIL import Image
side = int(sys.argv[1])
buffer = io.BytesIO()
Image.new("RGBA", (side, side), (255, 255, 255, 0)).save(buffer, "PNG")
data = buffer.getvalue()
del buffer
import gc; gc.collect()
from patentclip.drawings.preprocess import DrawingPreprocessor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
DrawingPreprocessor(224).query(data, "probe")
print(len(data), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_the_memory_of_decoding_a_query_is_bounded_by_its_pixels(tmp_path):
    """The worst a query drawing can cost: a transparent RGBA PNG (4 bytes a pixel decoded,
    a few hundred KB compressed). Measured in a fresh process as peak RSS growth beyond
    what building the test image took: under 8 bytes a pixel (12 in this probe before the
    grayscale conversion kept to 1-byte bands; docs/reliability.md has the figures)."""
    import subprocess
    import sys

    side = 4096  # 16.8 Mpx: the probe's own image (67 MB) stays below the decode's peak
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    out = subprocess.run([sys.executable, str(script), str(side)], check=True, text=True,
                         capture_output=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO)})
    compressed, grown = map(int, out.stdout.split())
    assert compressed < 200_000  # a small upload ...
    assert grown < 8 * side * side, f"{grown / 2**20:.0f} MiB for {side * side / 1e6:.1f} Mpx"
