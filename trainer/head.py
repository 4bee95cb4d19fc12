"""The classification head: warm-started, and kept with the model it was trained beside.

A random head's first gradients are noise, and they reach a pretrained backbone before the
head means anything. So a run's head starts from

* its parent's head, where the parent was registered with one (``classification_head.*``
  in its folder, loaded with the model: ``Encoder.class_head``) over the same classes; else
* a linear probe: multinomial logistic regression on the parent's *frozen* image features
  of a seeded sample of the training sheets (L-BFGS, a small L2 penalty).

After the run the head is written beside the model (``save_head``, in the format
``patentclip.model.classes.ClassHead`` owns) and the registry keeps it with the version, so
the next weekly cycle
continues from it. The seed's objective keeps its random head fixed and is not warm-started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from patentclip.model.classes import ClassHead

logger = logging.getLogger(__name__)

PROBE_SHEETS = 2048  # frozen features the probe fits on (a seeded sample)
PROBE_L2 = 1e-4
PROBE_ITERATIONS = 100


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


def warm_start(head: torch.nn.Linear, parent: ClassHead | None, classes: Sequence[str],
               model, pixels: Callable[[int], torch.Tensor], labels: torch.Tensor, seed: int,
               batch_size: int, device: str) -> dict:
    """Set ``head`` from the parent's head (``Encoder.class_head``, loaded with the parent
    model) when it covers the same classes, else from a linear probe; return what was done,
    with the head's accuracy on the probe's sample before (random) and after."""
    if parent is not None and parent.classes == tuple(classes):
        head.weight.data.copy_(torch.from_numpy(parent.weight))
        head.bias.data.copy_(torch.from_numpy(parent.bias))
        logger.info("classification head: the parent's")
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
    ClassHead(tuple(classes), head.weight.detach().cpu().numpy(),
              head.bias.detach().cpu().numpy()).save(folder, init)


def _accuracy(features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor) -> float:
    return float(((features @ weight.T + bias).argmax(1) == labels).float().mean())
