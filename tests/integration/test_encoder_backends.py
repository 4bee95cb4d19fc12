"""Encoder backends (patentclip/model/backends.py) against the fp32 eager reference: the same model
version, embeddings within the parity each backend promises, and the CLI's search through the
configured backend finding what eager finds."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from patentclip.errors import InvalidInputError
from patentclip.grants.reader import GrantReader
from patentclip.model.encoder import Encoder
from patentclip_cli.synthetic import BundleGenerator

# Minimum cosine to eager per backend: fp32 backends reorder float sums only; int8 quantizes
# every Linear layer's weights and activations.
PARITY = {"torch": 0.9999, "onnx": 0.9999, "int8": 0.99}
TEXTS = ["front perspective view of a lamp shade", "storage box with a hinged lid", "chair",
         "ornamental design for a bottle showing our new design, rear elevational view"]


@pytest.fixture(scope="module")
def drawings(tmp_path_factory, encoder):
    bundle = BundleGenerator(seed=11).write_bundle(tmp_path_factory.mktemp("backends"),
                                                   date(2021, 1, 5), 4)
    blobs = [(name, data) for doc in GrantReader().read(bundle)
             for name, data in doc.images.items()][:12]
    return [encoder.drawing_pixels(data, name) for name, data in blobs]


@pytest.mark.parametrize("backend", sorted(PARITY))
def test_backend_matches_eager_within_its_parity(backend, tiny_model_dir, encoder, drawings,
                                                 tmp_path):
    other = Encoder.load(f"local-dir:{tiny_model_dir}", batch_size=5, backend=backend,
                         onnx_cache_dir=tmp_path / "onnx")
    assert other.model_version == encoder.model_version  # same weights, same collection
    assert other.backend.name == backend
    for mine, reference in ((other.encode_pixels(drawings), encoder.encode_pixels(drawings)),
                            (other.encode_texts(TEXTS), encoder.encode_texts(TEXTS))):
        assert mine.shape == reference.shape and mine.dtype == np.float32
        assert np.allclose(np.linalg.norm(mine, axis=1), 1, atol=1e-5)
        assert (mine * reference).sum(axis=1).min() >= PARITY[backend]


def test_onnx_towers_are_exported_once_per_model_version(tiny_model_dir, encoder, tmp_path):
    cache = tmp_path / "onnx"
    Encoder.load(f"local-dir:{tiny_model_dir}", backend="onnx", onnx_cache_dir=cache)
    files = sorted((cache / encoder.model_version).glob("*.onnx"))
    assert [f.name for f in files] == ["image.onnx", "text.onnx"]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = Encoder.load(f"local-dir:{tiny_model_dir}", backend="onnx", onnx_cache_dir=cache)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not re-exported
    assert again.encode_texts(["lamp"]).shape == (1, encoder.dim)


@pytest.mark.parametrize(("backend", "message"), [
    ("bf16", "needs PATENTCLIP_DEVICE=cuda"), ("fp16", "needs PATENTCLIP_DEVICE=cuda"),
    ("tensorrt", "choose one of eager, torch, onnx, int8, bf16, fp16")])
def test_unusable_backend_is_a_clear_error(backend, message, tiny_model_dir):
    with pytest.raises(InvalidInputError, match=message):
        Encoder.load(f"local-dir:{tiny_model_dir}", backend=backend)


def test_cli_search_through_the_configured_backend_finds_what_eager_finds(
        tmp_path, tiny_model_dir, monkeypatch, capsys):
    from patentclip_cli.main import main

    bundle = BundleGenerator(seed=12).write_bundle(tmp_path, date(2021, 1, 12), 12)
    monkeypatch.setenv("PATENTCLIP_MODEL", f"local-dir:{tiny_model_dir}")
    monkeypatch.setenv("PATENTCLIP_MILVUS_URI", str(tmp_path / "m.db"))
    monkeypatch.setenv("PATENTCLIP_IMAGES_DIR", str(tmp_path / "images"))
    monkeypatch.setenv("PATENTCLIP_ONNX_CACHE_DIR", str(tmp_path / "onnx"))
    assert main(["index", str(bundle), "--no-progress"]) == 0
    query = next((tmp_path / "images").glob("D*/*-D00002.TIF"))
    results = {}
    for backend in ("eager", "onnx", "int8"):
        monkeypatch.setenv("PATENTCLIP_ENCODER_BACKEND", backend)
        capsys.readouterr()
        assert main(["search", "--image", str(query), "--k", "3", "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        results[backend] = [(h["patent"], h["sheet"]) for h in hits]
    assert results["eager"][0][0] == query.parent.name
    assert results["onnx"] == results["eager"]
    assert results["int8"][0] == results["eager"][0]
