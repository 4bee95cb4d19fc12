"""Generate a bundle, index it through the CLI, find planted patents by caption and drawing."""

import json
import subprocess
import sys
import tarfile
import zipfile
from datetime import date
from pathlib import Path

import pytest

from harness import REPO
from patentclip.grants.reader import GrantReader
from patentclip_cli.main import main


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("e2e")
    env = {"milvus": str(root / "patents.db"), "model": f"local-dir:{tiny_model_dir}",
           "images": str(root / "images")}
    assert main(["generate", "--out", str(root), "--date", "2021-01-12", "--patents", "30",
                 "--seed", "5"]) == 0
    bundle = root / "I20210112.tar"
    assert main(["index", str(bundle), "--model", env["model"], "--milvus-uri", env["milvus"],
                 "--images-dir", env["images"], "--no-progress"]) == 0
    docs = list(GrantReader().read(bundle))
    return env, bundle, docs


def search(env, capsys, *args):
    capsys.readouterr()
    assert main(["search", *args, "--json", "--model", env["model"],
                 "--milvus-uri", env["milvus"]]) == 0
    return json.loads(capsys.readouterr().out)


def test_bundle_layout_is_uspto(indexed):
    _, bundle, docs = indexed
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert len(docs) == 30
    assert all(n.startswith(("DESIGN/USD09", "UTIL")) and n.endswith(".ZIP") for n in names)
    with tarfile.open(bundle) as tar:
        member = tar.extractfile(next(n for n in names if n.startswith("DESIGN/")))
        with zipfile.ZipFile(member) as zf:
            inner = zf.namelist()
    assert any(n.endswith(".XML") for n in inner) and any(n.endswith("D00001.TIF")
                                                          for n in inner)


@pytest.mark.parametrize("pick", [3, 17])
def test_planted_patent_found_by_its_own_caption(indexed, capsys, pick):
    env, _, docs = indexed
    grant = docs[pick].grant
    sheet = grant.sheets[1]
    result = search(env, capsys, "--text", grant.sheet_caption(sheet), "--against", "caption",
                    "--k", "5", "--no-group")
    hits = result["hits"]
    same_text = [h for h in hits if h["caption"] == grant.sheet_caption(sheet)]
    assert hits[0]["caption"] == grant.sheet_caption(sheet)
    assert grant.patent_number in {h["patent"] for h in same_text}
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("pick", [3, 17])
def test_planted_patent_found_by_its_own_drawing(indexed, capsys, pick, tmp_path):
    env, _, docs = indexed
    doc = docs[pick]
    sheet = doc.grant.sheets[2]
    query = tmp_path / sheet.file_name
    query.write_bytes(doc.images[sheet.file_name])
    result = search(env, capsys, "--image", str(query), "--k", "5")
    top = result["hits"][0]
    assert (top["patent"], top["sheet"]) == (doc.grant.patent_number, 2)
    assert top["image_uri"].endswith(sheet.file_name) and Path(top["image_uri"][7:]).is_file()
    assert result["model_version"].startswith("patentclip_tiny_")


def test_every_query_mode_works_from_the_cli(indexed, capsys, tmp_path):
    """Text and drawing fused, a crop of a drawing, one sheet of a patent: the CLI builds
    the core's Query, so it has the modes the services have."""
    env, _, docs = indexed
    doc = docs[5]
    sheet = doc.grant.sheets[1]
    drawing = tmp_path / sheet.file_name
    drawing.write_bytes(doc.images[sheet.file_name])
    both = search(env, capsys, "--text", doc.grant.title, "--image", str(drawing), "--k", "5")
    assert doc.grant.patent_number in {h["patent"] for h in both["hits"]}
    cropped = search(env, capsys, "--image", str(drawing), "--crop", "0,0,1,1", "--k", "3")
    assert cropped["hits"][0]["patent"] == doc.grant.patent_number  # the whole sheet
    part = search(env, capsys, "--image", str(drawing), "--crop", "0.2,0.2,0.6,0.6", "--k", "3")
    assert [h["score"] for h in part["hits"]] != [h["score"] for h in cropped["hits"]]
    one = search(env, capsys, "--similar", doc.grant.patent_number, "--sheet", "1", "--k", "3")
    every = search(env, capsys, "--similar", doc.grant.patent_number, "--k", "3")
    assert doc.grant.patent_number not in {h["patent"] for h in one["hits"] + every["hits"]}
    assert [h["score"] for h in one["hits"]] != [h["score"] for h in every["hits"]]
    other = tmp_path / doc.grant.sheets[2].file_name
    other.write_bytes(doc.images[other.name])
    views = search(env, capsys, "--image", str(drawing), "--drawings", str(other),
                   "--drawings", f"{drawing}@0.1,0.1,0.9,0.9", "--mode", "sketch", "--k", "3")
    # (the generated designs are near copies: the tiny model's cosines between them 0.9999)
    assert doc.grant.patent_number in [h["patent"] for h in views["hits"]]
    assert views["hits"][0]["legs"] == ["view 1", "view 2", "view 3"] and views["legs"] == [
        "drawing"]
    words = search(env, capsys, "--text", doc.grant.title, "--against", "words", "--k", "3")
    assert words["legs"] == ["words"] and words["hits"]
    assert all(doc.grant.title.lower() in h["title"].lower() for h in words["hits"])


def test_filters_and_table_output(indexed, capsys):
    env, _, docs = indexed
    result = search(env, capsys, "--text", "bottle", "--locarno", "09", "--k", "50")
    assert result["hits"] and all(h["locarno"].startswith("09") for h in result["hits"])
    assert len({h["patent"] for h in result["hits"]}) == len(result["hits"])  # grouped
    capsys.readouterr()
    assert main(["search", "--text", "lamp shade", "--k", "3", "--model", env["model"],
                 "--milvus-uri", env["milvus"]]) == 0
    out = capsys.readouterr().out
    assert "patent" in out and "score" in out and "3 hits from patentclip_" in out


def test_reindexing_the_same_bundle_adds_nothing(indexed, capsys):
    env, bundle, _ = indexed
    from patentclip.store import PatentStore

    store = PatentStore(env["milvus"])
    before = store.describe(store.live_alias).rows
    store.close()
    assert main(["index", str(bundle), "--model", env["model"], "--milvus-uri", env["milvus"],
                 "--images-dir", env["images"], "--no-progress"]) == 0
    store = PatentStore(env["milvus"])
    assert store.describe(store.live_alias).rows == before
    store.close()


@pytest.mark.parametrize("args, message", [
    (["search", "--text", "  "], "text query is empty"),
    (["search", "--text", "x", "--locarno", "2"], "locarno filter"),
    (["search", "--text", "x", "--k", "0"], "top_k=0"),
    (["search", "--image", "/nonexistent.tif"], "no such file"),
    (["search"], "give a description, a drawing or a patent number"),
    (["search", "--text", "x", "--similar", "D0907292"], "more like this"),
    (["search", "--text", "x", "--crop", "0,0,0.5,0.5"], "only a drawing can be cropped"),
    (["search", "--text", "x", "--crop", "0,0,1"], "4 numbers, left,top,right,bottom"),
    (["index", "/nonexistent.tar"], "no such file or folder"),
])
def test_bad_input_is_one_clear_line(indexed, capsys, args, message):
    env, _, _ = indexed
    capsys.readouterr()
    code = main([*args, "--model", env["model"], "--milvus-uri", env["milvus"]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_runs_as_module_and_console_script(tmp_path):
    # a fresh database: Milvus Lite lets one process at a time open a data file
    result = subprocess.run([sys.executable, "-m", "patentclip_cli.main", "collections",
                             "--milvus-uri", str(tmp_path / "fresh.db")], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0 and "no collections at" in result.stdout
    script = Path(sys.executable).parent / "patentclip"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "search" in result.stdout


def test_generated_bundle_is_deterministic(tmp_path):
    from patentclip_cli.synthetic import BundleGenerator

    a = BundleGenerator(seed=1).write_bundle(tmp_path / "a", date(2021, 1, 5), 3)
    b = BundleGenerator(seed=1).write_bundle(tmp_path / "b", date(2021, 1, 5), 3)
    assert a.read_bytes() == b.read_bytes()
