"""The encoder on the tiny local model, loaded through the same local-dir: path users use."""

import numpy as np
import pytest

from patentclip.errors import ModelLoadError
from patentclip.model.encoder import Encoder, create_tiny_model
from patentclip_cli.synthetic import BundleGenerator, render_sheets


@pytest.fixture(scope="module")
def drawings():
    from datetime import date

    patent = BundleGenerator(seed=3).patents(date(2021, 1, 5), 1)[0]
    return list(render_sheets(patent).values())


def test_outputs_are_unit_float32(encoder, drawings):
    images = encoder.encode_drawings(drawings)
    texts = encoder.encode_texts(["a bottle", "front perspective view of a lamp shade"])
    for vectors, n in ((images, len(drawings)), (texts, 2)):
        assert vectors.shape == (n, encoder.dim) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_same_input_same_vector_and_batch_equals_single(encoder, drawings):
    batch = encoder.encode_drawings(drawings)
    single = np.concatenate([encoder.encode_drawings([d]) for d in drawings])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_array_equal(encoder.encode_drawings(drawings), batch)  # deterministic
    texts = ["a", "bottle with a narrow neck", "a"]
    t = encoder.encode_texts(texts)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    np.testing.assert_allclose(t[1], encoder.encode_texts([texts[1]])[0], atol=1e-5)


def test_version_comes_from_the_weights(encoder, tiny_model_dir, tmp_path):
    again = Encoder.load(f"local-dir:{tiny_model_dir}")
    assert again.model_version == encoder.model_version
    assert encoder.model_version.startswith("patentclip_tiny_")
    other = Encoder.load(f"local-dir:{create_tiny_model(tmp_path / 'patentclip-tiny', seed=1)}")
    assert other.model_version != encoder.model_version


def test_hub_id_without_network_says_how_to_provide_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        Encoder.load("hf-hub:hhshomee/PatentCLIP_ViT_L")
    message = str(err.value)
    assert "hhshomee/PatentCLIP_ViT_L" in message and "local-dir:" in message


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no open_clip_config.json"):
        Encoder.load(f"local-dir:{tmp_path / 'nothing'}")


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(ModelLoadError, match="checkpoint file not found"):
        Encoder.load("RN50", pretrained=str(tmp_path / "epoch_1.pt"))
