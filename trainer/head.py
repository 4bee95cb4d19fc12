"""The classification head: warm-started, and kept with the model it was trained beside.

A random head's first gradients are noise, and they reach a pretrained backbone before the
head means anything. So a run's head starts from

* its parent's head, where the parent was registered with one (``classification_head.*``
  in its folder) over the same classes; else
* a linear probe: multinomial logistic regression on the parent's *frozen* image features
  of a seeded sample of the training sheets (L-BFGS, a small L2 penalty).

After the run the head is written beside the model (``save_head``) and the registry keeps
it with the version (``patentclip.model.registry.HEAD_FILES``), so the next weekly cycle
continues from it. The seed's objective keeps its random head fixed and is not warm-started.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from patentclip.model.registry import HEAD_FILES

logger = logging.getLogger(__name__)

PROBE_SHEETS = 2048  # frozen features the probe fits on (a seeded sample)
PROBE_L2 = 1e-4
PROBE_ITERATIONS = 100


def parent_head(spec: str, classes: Sequence[str]) -> dict[str, torch.Tensor] | None:
    """The parent's saved head, if it is a local folder holding one for these classes."""
    if not spec.startswith("local-dir:"):
        return None
    folder = Path(spec.removeprefix("local-dir:"))
    weights, meta = (folder / name for name in HEAD_FILES)
    if not (weights.is_file() and meta.is_file()):
        return None
    from safetensors.torch import load_file

    if json.loads(meta.read_text()).get("classes") != list(classes):
        return None  # another class list: the rows would mean other classes
    return load_file(str(weights))


@torch.no_grad()
def frozen_features(model, pixels: Callable[[int], torch.Tensor], indices: Sequence[int],
                    batch_size: int, device: str) -> torch.Tensor:
    """Unit image embeddings of the given samples, the model in eval mode, no gradients."""
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, len(indices), batch_size):
        batch = torch.stack([pixels(i) for i in indices[start:start + batch_size]])
        parts.append(torch.nn.functional.normalize(
            model.encode_image(batch.to(device)).float(), dim=-1).cpu())
    model.train(was_training)
    return torch.cat(parts)


def linear_probe(features: torch.Tensor, labels: torch.Tensor, classes: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of logistic regression on frozen features (L-BFGS, L2 ``PROBE_L2``)."""
    weight = torch.zeros(classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=PROBE_ITERATIONS,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weight.T + bias, labels) + \
            PROBE_L2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def warm_start(head: torch.nn.Linear, spec: str, classes: Sequence[str], model,
               pixels: Callable[[int], torch.Tensor], labels: torch.Tensor, seed: int,
               batch_size: int, device: str) -> dict:
    """Set ``head`` from the parent's head or a linear probe; return what was done, with
    the head's accuracy on the probe's sample before (random) and after."""
    saved = parent_head(spec, classes)
    if saved is not None:
        head.weight.data.copy_(saved["weight"])
        head.bias.data.copy_(saved["bias"])
        logger.info("classification head: the parent's (%s)", spec)
        return {"source": "parent"}
    rng = np.random.default_rng(seed)
    count = min(PROBE_SHEETS, len(labels))
    indices = sorted(rng.choice(len(labels), size=count, replace=False).tolist())
    features = frozen_features(model, pixels, indices, batch_size, device)
    targets = labels[indices]
    before = _accuracy(features, targets, head.weight.detach().cpu(), head.bias.detach().cpu())
    weight, bias = linear_probe(features, targets, len(classes))
    head.weight.data.copy_(weight.to(head.weight.device))
    head.bias.data.copy_(bias.to(head.bias.device))
    after = _accuracy(features, targets, weight, bias)
    logger.info("classification head: a linear probe on %d frozen features, accuracy %.3f "
                "(random head %.3f)", count, after, before)
    return {"source": "linear_probe", "sheets": count, "random_accuracy": before,
            "probe_accuracy": after}


def save_head(head: torch.nn.Linear, classes: Sequence[str], folder: Path, init: dict
              ) -> None:
    """Write the head beside the model (the registry copies it with the version)."""
    from safetensors.torch import save_file

    weights, meta = (folder / name for name in HEAD_FILES)
    save_file({"weight": head.weight.detach().cpu().contiguous(),
               "bias": head.bias.detach().cpu().contiguous()}, str(weights))
    meta.write_text(json.dumps({"classes": list(classes), "init": init}, indent=2))


def _accuracy(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor) -> float:
    return float(((features @ weight.T + bias).argmax(1) == labels).float().mean())
