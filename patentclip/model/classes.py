"""Suggested classes: the classification head a model was trained with, served.

The trainer keeps a run's head beside its model (``classification_head.safetensors`` and
``.json``: weights and the Locarno main classes, trainer/head.py) and the registry copies it
into the version. A model folder that holds one can suggest the classes of a query, as
KIPO's examiner tool suggests a query image's classification: softmax probabilities of the
head on the query's unit embedding. The head was trained on drawings' embeddings; on a text
query's embedding (the same joint space) it is an approximation, and the API says which
vector it used. A model without a head suggests nothing and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patentclip.errors import ModelLoadError
from patentclip.model.registry import HEAD_FILES

MAX_SUGGESTIONS = 10


@dataclass(frozen=True)
class ClassHead:
    classes: tuple[str, ...]
    weight: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)

    @classmethod
    def load(cls, folder: str | Path, dim: int) -> ClassHead | None:
        """The head kept in a model folder, or None when the folder holds none.
        ModelLoadError when it is there but unreadable or of another embedding size."""
        weights, meta = (Path(folder) / name for name in HEAD_FILES)
        if not (weights.is_file() and meta.is_file()):
            return None
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(weights))
            classes = tuple(str(c) for c in json.loads(meta.read_text())["classes"])
            head = cls(classes, tensors["weight"].astype(np.float32),
                       tensors["bias"].astype(np.float32))
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise ModelLoadError(f"{weights}: not a readable classification head ({exc})") \
                from exc
        if head.weight.shape != (len(classes), dim) or head.bias.shape != (len(classes),):
            raise ModelLoadError(f"{weights}: a head of shape {head.weight.shape} for "
                                 f"{len(classes)} classes does not fit embeddings of {dim}")
        return head

    def save(self, folder: str | Path, init: dict) -> None:
        """Write the head beside a model (the registry copies both files with the version);
        ``init`` records how it started (trainer/head.py)."""
        from safetensors.numpy import save_file

        weights, meta = (Path(folder) / name for name in HEAD_FILES)
        save_file({"weight": np.ascontiguousarray(self.weight, np.float32),
                   "bias": np.ascontiguousarray(self.bias, np.float32)}, str(weights))
        meta.write_text(json.dumps({"classes": list(self.classes), "init": init}, indent=2))

    def suggest(self, vector: np.ndarray, k: int) -> tuple[tuple[str, float], ...]:
        """The ``k`` most probable classes of one unit vector, with their probabilities."""
        logits = self.weight @ np.asarray(vector, dtype=np.float32) + self.bias
        logits = logits - logits.max()
        probabilities = np.exp(logits) / np.exp(logits).sum()
        order = np.argsort(-probabilities, kind="stable")[:min(k, MAX_SUGGESTIONS)]
        return tuple((self.classes[i], float(probabilities[i])) for i in order)
