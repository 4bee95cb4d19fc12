"""Clients other than the Python stub: the CLI, Node's @grpc/grpc-js and a client-only install.

The service is the package's one (conftest.py): the 40 real sample grants, indexed with
the tiny model into Milvus Lite, served on free ports."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from harness import REPO


def test_cli_talks_to_the_server(server, corpus, capsys, tmp_path):
    import json

    from patentclip_cli.main import main

    target = f"127.0.0.1:{server.port}"
    assert main(["search", "--server", target, "--text", "bottle", "--k", "4",
                 "--suggest-classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "patent" in out and "4 hits from" in out and "more: --page-token" in out
    assert "suggested classes: model" in out and "has no classification head" in out
    assert "searched: drawing, caption, words" in out
    patent = next(iter(corpus[2]))
    assert main(["search", "--server", target, "--similar", patent, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and patent not in {h["patent"] for h in hits}
    assert main(["search", "--server", target, "--similar", "D0000001"]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err
    drawing = tmp_path / "sketch.png"
    Image.new("L", (120, 90), 255).save(drawing)
    for flags in (["--text", "bottle", "--image", str(drawing), "--crop", "0.1,0.1,0.9,0.9"],
                  ["--image", str(drawing), "--drawings", f"{drawing}@0,0,0.5,1",
                   "--mode", "photo"],
                  ["--similar", patent, "--sheet", "1"]):  # every mode, remotely too
        assert main(["search", "--server", target, *flags, "--json"]) == 0, flags
        assert json.loads(capsys.readouterr().out)["hits"], flags
    # A part (FIG. 4 of USD0919445's sheet 2): each hit says where on its sheet it matched.
    labelled = corpus[2]["D0919445"]
    sheet = tmp_path / "sheet2.tif"
    sheet.write_bytes(next(d for n, d in labelled.images.items() if n.endswith("D00002.TIF")))
    part = ["search", "--server", target, "--image", str(sheet), "--crop", "0.55,0.1,1,0.45"]
    assert main([*part, "--k", "3"]) == 0
    assert capsys.readouterr().out.count("; matched") == 3
    assert main([*part, "--json"]) == 0
    regions = [h["region"] for h in json.loads(capsys.readouterr().out)["hits"]]
    assert all(0 <= r["left"] < r["right"] <= 1 for r in regions), regions
    # What a grant cites, from GetPatent: the same rows as the local image store gives.
    document = corpus[2][patent]
    assert main(["cites", patent, "--server", target, "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert main(["cites", patent, "--images-dir", str(corpus[1]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == remote
    assert [r["number"] for r in remote["citations"]] == sorted(
        (c.number for c in document.grant.citations),
        key=lambda n: [c.number for c in document.grant.citations if c.category == "examiner"
                       ].count(n) == 0)  # the examiner's first, each group in XML order


def test_a_node_grpc_js_client_searches_pages_fetches_a_thumbnail_and_gets_clear_errors(
        server, corpus):
    """Examiner tooling in JavaScript: @grpc/grpc-js + proto-loader from `make tools`,
    loading protos/ directly, never setting a deadline."""
    import json
    import shutil
    import subprocess

    repo = REPO
    modules = repo / ".tools" / "node" / "node_modules"
    assert (modules / "@grpc" / "grpc-js").is_dir(), "run `make tools` (npm @grpc/grpc-js)"
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 1)
    drawing = Path(str(server.settings.core.images_dir)) / "node-query.tif"
    drawing.write_bytes(sorted(document.images.values())[1])
    digits = patent[1:].lstrip("0")
    result = subprocess.run(
        [shutil.which("node"), str(REPO / "tests" / "integration" / "node" / "client.js"),
         f"127.0.0.1:{server.port}", str(repo / "protos"), str(drawing),
         f"D{digits[:-3]},{digits[-3:]}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(modules)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["text"]["code"] == "OK" and len(out["text"]["hits"]) == 3
    assert out["image"]["code"] == "OK" and out["image"]["hits"][0]["patent"] == patent
    assert all(h["view"].startswith("VIEW_") for h in out["image"]["hits"])
    paged = [h["patent"] for page in out["pages"] for h in page["hits"]]
    assert paged == [h["patent"] for h in out["whole"]["hits"]]
    assert out["search_image"]["hits"] == out["image"]["hits"]  # Search = SearchByImage
    similar = out["search_similar"]
    assert similar["code"] == "OK" and patent not in [h["patent"] for h in similar["hits"]]
    assert out["search_both"]["code"] == "OK" and len(out["search_both"]["hits"]) == 3
    assert out["search_nothing"] == {"code": "INVALID_ARGUMENT", "details":
                                     "give a description, a drawing or a patent number"}
    assert out["words"]["code"] == "OK" and out["words"]["legs"] == ["words"]
    shoes = {p for p, d in corpus[2].items() if "shoe" in d.grant.title.lower()}
    assert {h["patent"] for h in out["words"]["hits"]} == shoes
    assert all(h["found_by"] == ["words"] for h in out["words"]["hits"])
    assert out["views"] == {"code": "OK", "legs": ["drawing"],
                            "found_by": ["view 1", "view 2"]}
    assert out["too_many"]["code"] == "INVALID_ARGUMENT"
    assert "8 drawings in one query, limit 7" in out["too_many"]["details"]
    assert out["bad_mode"] == {"code": "INVALID_ARGUMENT", "details":
                               "mode: 'x-ray' is not one of line, photo, sketch"}
    part = out["part"]  # a crop: matched against parts, each hit with its region
    assert part["code"] == "OK" and len(part["hits"]) == 3
    for hit in part["hits"]:
        box = hit["region"]
        assert 0 <= box["left"] < box["right"] <= 1 and 0 <= box["top"] < box["bottom"] <= 1
    assert {h["matched"] for h in part["hits"]} <= {"drawing", "figure", "part"}
    labelled = out["labelled"]  # USD0919445: 6 figures on 3 sheets, read from the labels
    assert labelled["code"] == "OK"
    assert [(s["figures"], s["regions"]) for s in labelled["sheets"] if s["number"]] == [
        (["1", "2"], ["1", "2"]), (["3", "4", "5"], ["3", "4", "5"]), (["6"], [])]
    assert {s["mapping"] for s in labelled["sheets"] if s["number"]} == {
        "SHEET_FIGURE_MAPPING_LABELS"}
    assert labelled["views"]["4"] == "VIEW_TOP" and labelled["views"]["2"] == "VIEW_FRONT"
    assert out["suggest"]["code"] == "OK" and out["suggest"]["suggested"] == 0
    assert "no classification head" in out["suggest"]["note"]
    grant = corpus[2][patent].grant
    assert out["typed_patent"] == {
        "code": "OK", "number": patent, "citations": len(grant.citations), "in_corpus": [],
        "examiner": [c.number for c in grant.citations if c.category == "examiner"]}
    assert out["health"] == {"code": "OK", "status": "SERVING"}
    assert out["empty_text"] == {"code": "INVALID_ARGUMENT", "details": "text query is empty"}
    assert out["bad_date"]["code"] == "INVALID_ARGUMENT"
    assert "date_from 20211399: not a calendar date" in out["bad_date"]["details"]
    assert out["bad_view"]["code"] == "INVALID_ARGUMENT"
    assert "VIEW_UNSPECIFIED is no view" in out["bad_view"]["details"]
    thumbnail = out["thumbnail"]  # a drawing, fetched by the hit's sheet reference
    assert thumbnail["code"] == "OK" and thumbnail["png_signature"] == "89504e470d0a1a0a"
    assert thumbnail["ref"] == thumbnail["drawing"] and thumbnail["ref"]["patent_number"] == patent
    assert max(thumbnail["width"], thumbnail["height"]) == 256 and thumbnail["bytes"] > 100
    assert out["unknown_sheet"]["code"] == "NOT_FOUND"
    assert "no drawing sheet 999" in out["unknown_sheet"]["details"]


CLIENT_ONLY = """
import json, sys
from patentclip_client import PatentSearchClient
try:
    import torch  # noqa: F401
    sys.exit("torch is installed: not a client-only install")
except ModuleNotFoundError:
    pass
with PatentSearchClient(sys.argv[1], timeout=30) as client:
    page = client.search_text("ornamental design for a bottle", k=3, locarno=["09"])
    patent = client.get_patent(page.hits[0].patent_number)
    print(json.dumps({"hits": [h.patent_number for h in page.hits],
                      "model": page.model_version, "title": patent.grant.title,
                      "modules": sorted(m for m in ("numpy", "pymilvus", "kafka", "PIL")
                                        if m in sys.modules)}))
"""


def test_a_client_only_install_has_no_torch_and_searches_the_service(server, client,
                                                                      tmp_path):
    """``pip install patentclip-search`` (no extra) in a fresh venv: grpcio, protobuf, the
    generated code and the typed client, and nothing of the services."""
    import shutil
    import subprocess
    import sys

    from harness import REPO

    source = tmp_path / "source"  # a copy: building in the checkout would leave build/
    for part in ("patentclip", "patentclip_client", "patentclip_cli", "services", "trainer"):
        shutil.copytree(REPO / part, source / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert {"grpcio", "protobuf", "patentclip-search"} <= installed
    assert not installed & {"torch", "numpy", "pymilvus", "kafka-python", "open-clip-torch"}
    run = subprocess.run([str(python), "-c", CLIENT_ONLY, f"127.0.0.1:{server.port}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout)
    expected = client.search_text("ornamental design for a bottle", k=3, locarno=["09"])
    assert answer["hits"] == [h.patent_number for h in expected.hits] and answer["hits"]
    assert answer["model"] == expected.model_version and answer["title"]
    assert answer["modules"] == []  # the client reached none of the services' libraries
