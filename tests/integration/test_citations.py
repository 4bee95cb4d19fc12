"""Citations (us-references-cited) of every real grant in ../shared, field by field.

The expected values come from the raw XML text by regular expressions, not from the reader
(its ElementTree walk): each <citation> (DTD v4.0-v4.2) or <us-citation> (v4.3 on) block's
country, doc-number, kind, date, name, category and non-patent text. Then the grant event
carries them unchanged.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from harness import SHARED
from patentclip.codec.events import grant_from_proto, grant_to_proto
from patentclip.grants.xml_parser import parse_grant_xml

BLOCK = re.compile(r"<(us-citation|citation)>(.*?)</\1>", re.S)


def _design_files() -> list[Path]:
    files = sorted(SHARED.glob("uspto-sample/*/*.XML")) + \
        sorted(SHARED.glob("uspto-sample-extra/*/*.XML")) + \
        sorted(SHARED.glob("uspto-dtd/D*.XML"))
    return files


FILES = _design_files()


def _field(block: str, tag: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", block, re.S)
    if not match:
        return ""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match[1])).split())


def _raw_citations(xml: str) -> list[dict]:
    out = []
    for block in (m[2] for m in BLOCK.finditer(xml)):
        category = re.fullmatch(r"cited by (\w+)", _field(block, "category"))
        date = _field(block, "date")
        out.append({"country": _field(block, "country"), "number": _field(block, "doc-number"),
                    "kind": _field(block, "kind"), "name": _field(block, "name"),
                    "date": int(date) if re.fullmatch(r"\d{8}", date) else 0,
                    "category": category[1] if category else "",
                    "text": _field(block, "othercit")})
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_citation_of_a_shared_grant_is_read_as_the_xml_states_it(path):
    if not path.is_file():
        pytest.skip("../shared is absent")
    data = path.read_bytes()
    grant = parse_grant_xml(data, path.name)
    expected = _raw_citations(data.decode("utf-8"))
    assert expected, "every shared design grant cites something"
    assert [c.__dict__ for c in grant.citations] == expected
    stored = replace(grant, sheets=tuple(replace(s, image_uri="file:///x") for s in grant.sheets))
    assert grant_from_proto(grant_to_proto(stored)).citations == grant.citations


def test_citations_per_dtd_version_and_the_design_patents_cited():
    """The counts the closing note gives, and the stored form of a cited design patent."""
    if not FILES:
        pytest.skip("../shared is absent")
    counts: Counter = Counter()
    for path in FILES:
        grant = parse_grant_xml(path.read_bytes(), path.name)
        version = grant.dtd_version.split()[0]
        counts[(version, "grants")] += 1
        for c in grant.citations:
            counts[(version, c.category or "unstated")] += 1
            counts[(version, "design, by examiner")] += c.design and c.category == "examiner"
    print("\n" + "\n".join(f"{k[0]} {k[1]}: {v}" for k, v in sorted(counts.items())))
    assert counts[("v4.5", "grants")] == 50
    first = parse_grant_xml(next(p for p in FILES if "D1049406" in p.name).read_bytes(), "x")
    assert first.citations[0].us_patent == "D0844798" and first.citations[0].design


def test_the_cites_command_lists_citations_links_the_corpus_and_says_who_cites_it(
        tmp_path, capsys):
    """Two real grants in an image store; the second's record also cites the first, as
    the examiner would: `patentclip cites` shows that one as in the corpus, the others with
    their USPTO link, and the first as cited by the second."""
    from patentclip.drawings.imagestore import LocalImageStore, store_grant
    from patentclip.grants.model import Citation
    from patentclip.grants.reader import GrantReader
    from patentclip_cli.main import main

    folders = sorted(p for p in (SHARED / "uspto-sample").iterdir() if p.is_dir())[:2]
    if len(folders) < 2:
        pytest.skip("../shared is absent")
    images = LocalImageStore(tmp_path / "images")
    first, second = (store_grant(images, next(iter(GrantReader().read(f)))) for f in folders)
    extra = Citation("US", first.patent_number.replace("D0", "D", 1), "S", 20200100, "Doe",
                     "examiner")
    images.put_grant(replace(second, citations=(*second.citations, extra)))
    flags = ["--images-dir", str(images.root)]
    assert main(["cites", second.patent_number, *flags]) == 0
    out = capsys.readouterr().out
    examiner = sum(c.category == "examiner" for c in second.citations) + 1
    assert f"cites {len(second.citations) + 1} references, {examiner} by the examiner; " \
           "1 are in this corpus" in out
    line = next(x for x in out.splitlines() if first.patent_number in x)
    assert line.startswith("examiner") and line.endswith("in this corpus")
    assert main(["cites", first.patent_number, *flags, "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["cited_by"] == [{"patent": second.patent_number, "category": "examiner"}]
    assert main(["cites", "D0000001", *flags]) != 0
    assert "no grant record" in capsys.readouterr().err
