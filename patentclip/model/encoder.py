"""The PatentCLIP encoder: one object over an open_clip model.

``Encoder.load`` accepts what open_clip accepts and what users have:

* an open_clip architecture name plus a pretrained tag or checkpoint file
  (``Encoder.load("ViT-B-32", pretrained="/ckpt/epoch_10.pt")``);
* ``hf-hub:org/repo`` (e.g. ``hf-hub:hhshomee/PatentCLIP_ViT_L``);
* ``local-dir:/path`` holding ``open_clip_config.json`` + weights, the layout
  ``save_local_model`` writes and the Hugging Face repos use.

Outputs are L2-normalized float32 arrays. ``model_version`` is derived from the weights
themselves, so the same weights always give the same version, whatever the path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from patentclip.config import CoreSettings
from patentclip.drawings.preprocess import CropBox, DrawingPreprocessor
from patentclip.errors import ModelLoadError
from patentclip.model.backends import make_backend
from patentclip.model.classes import ClassHead

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"

# A deliberately tiny open_clip ViT for tests and the demo: trains and encodes fast on CPU.
TINY_MODEL_CONFIG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                   "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}


@dataclass(frozen=True)
class EncoderInfo:
    """What a caller needs to know about a loaded encoder."""

    spec: str  # loadable from any working directory (local-dir: paths are absolute)
    model_version: str
    dim: int
    image_size: int
    pretrained: str = ""


class Encoder:
    """Encode drawings and texts into PatentCLIP's joint embedding space."""

    def __init__(self, model: torch.nn.Module, normalize, tokenizer, spec: str,
                 image_size: int, device: str = "cpu", batch_size: int = 32,
                 pretrained: str = "", backend: str = "eager",
                 onnx_cache_dir: str | Path = "data/onnx") -> None:
        self.model = model.eval().to(device)
        self.class_head: ClassHead | None = None  # set by load from a folder that keeps one
        self._normalize = normalize
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.preprocessor = DrawingPreprocessor(image_size=image_size)
        digest = weights_digest(self.model)
        version = _registered_version(spec, digest) or f"{_slug(spec)}_{digest[:12]}"
        probe = tokenizer(["x"])
        with torch.inference_mode():
            dim = int(self.model.encode_text(probe.to(device)).shape[-1])
        self.info = EncoderInfo(spec=spec, model_version=version, dim=dim, image_size=image_size,
                                pretrained=pretrained)
        # How the towers run (patentclip.model.backends); self.model stays the fp32 eager module.
        self.backend = make_backend(backend, self.model, device, version,
                                    torch.zeros(1, 3, image_size, image_size), probe,
                                    onnx_cache_dir)

    @property
    def model_version(self) -> str:
        return self.info.model_version

    @property
    def dim(self) -> int:
        return self.info.dim

    @classmethod
    def load(cls, spec: str, pretrained: str | None = None, device: str = "cpu",
             batch_size: int = 32, backend: str = "eager",
             onnx_cache_dir: str | Path = "data/onnx") -> Encoder:
        """Load an encoder; raise ModelLoadError with instructions if weights are missing."""
        import open_clip  # heavy import, only when a model is really loaded

        _check_spec(spec, pretrained)
        if spec.startswith(LOCAL_DIR):
            spec = LOCAL_DIR + str(Path(spec[len(LOCAL_DIR):]).resolve())
        if pretrained and Path(pretrained).is_file():
            pretrained = str(Path(pretrained).resolve())
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec, pretrained=pretrained, device="cpu")
            tokenizer = open_clip.get_tokenizer(spec)
        except ModelLoadError:
            raise
        except Exception as exc:  # open_clip/hub raise many types; all mean "cannot load"
            raise ModelLoadError(_load_failure_message(spec, pretrained, exc)) from exc
        image_size = _image_size(model)
        if pretrained is None and not spec.startswith((LOCAL_DIR, HF_HUB)):
            logger.warning("model %s has random weights (no pretrained tag or checkpoint)", spec)
        # open_clip's eval transform (resize, crop, normalize) is kept as is: our drawings
        # arrive square at the model's size, so its resize and crop are no-ops.
        encoder = cls(model, preprocess, tokenizer, spec, image_size, device=device,
                      batch_size=batch_size, pretrained=pretrained or "", backend=backend,
                      onnx_cache_dir=onnx_cache_dir)
        if spec.startswith(LOCAL_DIR):  # a trained version keeps its head beside it
            encoder.class_head = ClassHead.load(spec[len(LOCAL_DIR):], encoder.dim)
        return encoder

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Encoder:
        """The configured model (PATENTCLIP_MODEL, PATENTCLIP_PRETRAINED) with the serving
        options (device, batch size, backend): what the CLI and the services load."""
        return cls.load(settings.model, pretrained=settings.pretrained or None,
                        **settings.encoder_options())

    def encode_drawings(self, blobs: Sequence[bytes], names: Sequence[str] | None = None,
                        timeout: float | None = None) -> np.ndarray:
        """Decode, pad and encode raw drawing bytes (TIFF, PNG, JPEG).

        ``timeout`` is accepted for interface parity with BatchedEncoder; a direct encode
        is synchronous and always finishes.
        """
        names = names or [f"image {i}" for i in range(len(blobs))]
        pairs = zip(blobs, names, strict=True)
        return self.encode_pixels([self.drawing_pixels(b, n) for b, n in pairs])

    def drawing_pixels(self, data: bytes, name: str = "image", crop: CropBox | None = None,
                       mode: str = "line") -> torch.Tensor:
        """Decode, crop (a query for part of a design), turn a photo into lines (``mode``
        "photo"), pad and normalize one drawing into the model's input tensor.

        Pure CPU work that releases the GIL in PIL; pipelines run it in worker threads so
        the model never waits on decoding (see patentclip.ingest.sheets).
        """
        return self.square_pixels(self.preprocessor.query(data, name, crop, mode))

    def reference_pixels(self, data: bytes, name: str = "image") -> torch.Tensor:
        """One drawing as open_clip's reference eval transform prepares it (resize the
        short side, centre crop, normalize), with no margin trim or square padding: how the
        published PatentCLIP numbers were measured (``patentclip benchmark --reference-
        preprocessing``). Decoded with the same size and format checks."""
        return self._normalize(self.preprocessor.decode(data, name).convert("RGB"))

    def square_pixels(self, square: Image.Image) -> torch.Tensor:
        """A drawing already decoded and squared (``DrawingPreprocessor.square``: what the
        trainer's sheet cache holds) -> the model's input tensor."""
        return self._normalize(square.convert("RGB"))

    def encode_pixels(self, pixels: Sequence[torch.Tensor], timeout: float | None = None
                      ) -> np.ndarray:
        """Encode tensors made by :meth:`drawing_pixels` -> (n, dim) unit vectors."""
        return self._batched(list(pixels), self._encode_pixel_batch)

    def encode_texts(self, texts: Sequence[str], timeout: float | None = None) -> np.ndarray:
        """Encode texts -> (n, dim) unit vectors (``timeout``: see encode_drawings)."""
        return self._batched(list(texts), self._encode_text_batch)

    def _batched(self, items: Sequence, encode) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [encode(items[i:i + self.batch_size])
                 for i in range(0, len(items), self.batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _encode_pixel_batch(self, pixels: Sequence[torch.Tensor]) -> np.ndarray:
        return _unit(self.backend.encode_image(torch.stack(list(pixels))))

    def _encode_text_batch(self, texts: Sequence[str]) -> np.ndarray:
        return _unit(self.backend.encode_text(self.tokenizer(list(texts))))


def weights_digest(model: torch.nn.Module | dict) -> str:
    """A stable hex digest of a model's weights (names + values, in sorted order); accepts a
    model or its state dict (e.g. a safetensors file's tensors)."""
    state = model if isinstance(model, dict) else model.state_dict()
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_local_model(model: torch.nn.Module, model_cfg: dict, out_dir: str | Path,
                     preprocess_cfg: dict | None = None) -> Path:
    """Write a model in open_clip's local-dir/HF layout (config + safetensors)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return out


def create_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Create the tiny test/demo model with seeded random weights; return its folder."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_MODEL_CONFIG)
    return save_local_model(model, TINY_MODEL_CONFIG, out_dir)


def _unit(features: torch.Tensor) -> np.ndarray:
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy()


def _image_size(model: torch.nn.Module) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _registered_version(spec: str, digest: str) -> str | None:
    """A registry folder's version (see patentclip.model.registry); None for other models."""
    from patentclip.model.registry import registered_version

    if not spec.startswith(LOCAL_DIR):
        return None
    return registered_version(Path(spec[len(LOCAL_DIR):]), digest)


def _slug(spec: str) -> str:
    if spec.startswith(LOCAL_DIR):
        spec = Path(spec[len(LOCAL_DIR):]).name or "local"
    elif spec.startswith(HF_HUB):
        spec = spec[len(HF_HUB):].split("/")[-1]
    return re.sub(r"[^a-z0-9]+", "_", spec.lower()).strip("_")[:40] or "model"


def _check_spec(spec: str, pretrained: str | None) -> None:
    if spec.startswith(LOCAL_DIR):
        folder = Path(spec[len(LOCAL_DIR):])
        if not (folder / "open_clip_config.json").is_file():
            raise ModelLoadError(f"{spec}: no open_clip_config.json in {folder} (a local model "
                                 "folder holds open_clip_config.json and open_clip_model."
                                 "safetensors; `patentclip model init-tiny --out DIR` makes one)")
    if pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))):
        if not Path(pretrained).is_file():
            raise ModelLoadError(f"checkpoint file not found: {pretrained}")


def _load_failure_message(spec: str, pretrained: str | None, exc: Exception) -> str:
    what = f"{spec}" + (f" (pretrained={pretrained})" if pretrained else "")
    hint = ""
    if spec.startswith(HF_HUB) or pretrained:
        repo = spec[len(HF_HUB):] if spec.startswith(HF_HUB) else f"the '{pretrained}' weights"
        hint = (f" The weights could not be fetched (no network, or the hub is unreachable). "
                f"On a machine with access run `hf download {repo} --local-dir DIR`, copy DIR "
                f"here and use --model local-dir:DIR.")
    return f"cannot load model {what}: {type(exc).__name__}: {exc}.{hint}"
