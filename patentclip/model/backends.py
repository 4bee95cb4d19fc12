"""Inference backends for the encoder's two towers, selectable by config
(``PATENTCLIP_ENCODER_BACKEND``). All take the same inputs (normalized pixel tensors and
token ids) and return unnormalized features; the Encoder normalizes.

- ``eager``: PyTorch fp32, as open_clip runs it. The reference the others are checked against.
- ``torch``: PyTorch fp32 tuned for CPU inference: inference mode, channels-last images.
- ``onnx``: ONNX Runtime fp32, both towers exported once per model version and cached.
- ``int8``: PyTorch dynamic int8 quantization of every Linear layer (weights int8,
  activations quantized per batch); convolutions stay fp32.
- ``bf16`` / ``fp16``: CUDA autocast (a GPU only).

The model version is the weights' digest whatever the backend: a backend changes how the
same weights are run, within the parity the tests and benchmarks check (cosine to eager).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from patentclip.errors import InvalidInputError

logger = logging.getLogger(__name__)

BACKENDS = ("eager", "torch", "onnx", "int8", "bf16", "fp16")


class TowerBackend(Protocol):
    name: str

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


def to_device(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """``tensor`` on ``device``. To a GPU it goes through pinned (page-locked) memory with a
    non-blocking copy, so the transfer overlaps the kernels queued before it; the features
    come back with a synchronizing ``.cpu()`` later, so nothing reads them early."""
    if device.startswith("cuda") and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class EagerBackend:
    name = "eager"

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.model, self.device = model, device

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(to_device(pixels, self.device))

    @torch.inference_mode()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(to_device(tokens, self.device))


class TunedTorchBackend(EagerBackend):
    """Channels-last weights and inputs: oneDNN's preferred layout for convolutions."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        super().__init__(copy.deepcopy(model).to(memory_format=torch.channels_last), device)

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = to_device(pixels, self.device).contiguous(memory_format=torch.channels_last)
        return self.model.encode_image(pixels)


class Int8Backend(EagerBackend):
    name = "int8"

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        if device != "cpu":
            raise InvalidInputError("PATENTCLIP_ENCODER_BACKEND=int8 runs on the CPU only "
                                    f"(PATENTCLIP_DEVICE is {device})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notices
            quantized = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
        # open_clip asks a transformer for its dtype through `mlp.c_fc.weight.dtype`, which
        # a quantized Linear has no more (weight() is a method); activations stay fp32.
        for tower in (quantized, getattr(quantized, "visual", None)):
            transformer = getattr(tower, "transformer", None)
            if transformer is not None and hasattr(transformer, "get_cast_dtype"):
                transformer.get_cast_dtype = lambda: torch.float32
        super().__init__(quantized, device)


class AutocastBackend(EagerBackend):
    def __init__(self, model: torch.nn.Module, device: str, dtype: torch.dtype) -> None:
        if not device.startswith("cuda"):
            raise InvalidInputError(f"PATENTCLIP_ENCODER_BACKEND={_DTYPES[dtype]} is CUDA "
                                    f"autocast and needs PATENTCLIP_DEVICE=cuda (got {device})")
        super().__init__(model, device)
        self.dtype, self.name = dtype, _DTYPES[dtype]

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=self.dtype):
            return super().encode_image(pixels).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=self.dtype):
            return super().encode_text(tokens).float()


_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


class _Tower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, which: str) -> None:
        super().__init__()
        self.model, self.which = model, which

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x) if self.which == "image" \
            else self.model.encode_text(x)


class OnnxBackend:
    """Both towers as ONNX graphs run by ONNX Runtime on the CPU, exported on first use into
    ``cache_dir/<model version>/`` and reused by every later process."""

    name = "onnx"

    def __init__(self, model: torch.nn.Module, device: str, cache_dir: Path,
                 example_pixels: torch.Tensor, example_tokens: torch.Tensor) -> None:
        import onnxruntime as ort

        if device != "cpu":
            raise InvalidInputError("PATENTCLIP_ENCODER_BACKEND=onnx runs on the CPU here "
                                    f"(PATENTCLIP_DEVICE is {device})")
        cache_dir.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.sessions = {}
        for which, example in (("image", example_pixels), ("text", example_tokens)):
            path = cache_dir / f"{which}.onnx"
            if not path.is_file():
                _export(_Tower(model, which), example, path)
            self.sessions[which] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run("image", pixels.numpy())

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run("text", tokens.numpy())

    def _run(self, which: str, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.sessions[which].run(None, {"input": array})[0])


def _export(tower: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export one tower with a dynamic batch axis; written atomically (other processes may
    be loading the same cache)."""
    logger.info("exporting the %s tower to %s (once per model version)", tower.which, path)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # Grad mode on: without it nn.MultiheadAttention takes its fused fast path
    # (_native_multi_head_attention), which has no ONNX export.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(tower.eval(), (example,), str(tmp), input_names=["input"],
                          output_names=["features"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}})
    tmp.replace(path)


def make_backend(name: str, model: torch.nn.Module, device: str, model_version: str,
                 example_pixels: torch.Tensor, example_tokens: torch.Tensor,
                 cache_dir: str | Path = "data/onnx") -> TowerBackend:
    """The backend called ``name`` over ``model`` (see the module docstring)."""
    if name == "eager":
        return EagerBackend(model, device)
    if name == "torch":
        return TunedTorchBackend(model, device)
    if name == "int8":
        return Int8Backend(model, device)
    if name in ("bf16", "fp16"):
        return AutocastBackend(model, device, torch.bfloat16 if name == "bf16" else torch.float16)
    if name == "onnx":
        return OnnxBackend(model, device, Path(cache_dir) / model_version, example_pixels,
                           example_tokens)
    raise InvalidInputError(f"PATENTCLIP_ENCODER_BACKEND={name!r} is not a backend; "
                            f"choose one of {', '.join(BACKENDS)}")
