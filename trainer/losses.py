"""PatentCLIP's training objective: contrastive loss + distribution-aware classification.

    loss = ClipLoss(image, text) + lambda * CE_distribution_aware(head(image), locarno_class)

Design classes are long-tailed, so the classification term is one of:

* ``plain``: cross-entropy;
* ``logit_adjusted``: cross-entropy on ``logits + tau * log(prior)`` (Menon et al. 2021),
  which shifts decisions toward rare classes without reweighting samples;
* ``class_balanced``: cross-entropy weighted by the effective number of samples,
  ``w_c = (1 - beta) / (1 - beta ** n_c)`` normalized to mean 1 (Cui et al. 2019).

The public PatentCLIP code created its head after the optimizer (so it never trained) and
commented its class weights out. Here the head is a submodule of the loss module: build
the optimizer over ``model.parameters()`` *and* ``loss.parameters()`` (see
:func:`trainable_parameters`), and a test checks the head's weights move.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from open_clip.loss import ClipLoss
from torch import nn

MODES = ("plain", "logit_adjusted", "class_balanced")


def class_balanced_weights(counts: Sequence[int], beta: float = 0.999) -> torch.Tensor:
    """Effective-number weights, normalized so they average to 1 over the classes."""
    n = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1)
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), n))
    return (weights * len(counts) / weights.sum()).float()


def log_prior(counts: Sequence[int]) -> torch.Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1)
    return torch.log(n / n.sum()).float()


def class_aware_sample_weights(labels: Sequence[int], counts: Sequence[int],
                               beta: float = 0.5) -> np.ndarray:
    """Sampling weights per training sample for class-aware sampling.

    Class c is drawn with probability p_c proportional to f_c ** (1 - beta): beta = 0 is
    uniform over samples (p_c = the class's share), beta = 1 uniform over classes, and
    values between interpolate (0.5: square-root sampling). Within a class, samples are
    equally likely, so each sample of class c weighs f_c ** -beta. Sums to 1.

    (An earlier form, p_c proportional to f_c ** -beta, went past uniform over classes: with
    beta 0.5 the rarest class got more draws than the most frequent one.)
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta {beta}: must be in [0, 1]")
    counts_arr = np.maximum(np.asarray(counts, dtype=np.float64), 1)
    per_sample = counts_arr ** (-beta)
    weights = per_sample[np.asarray(labels)]
    return weights / weights.sum()


class DistributionAwareCrossEntropy(nn.Module):
    """Cross-entropy over Locarno classes in one of :data:`MODES`."""

    def __init__(self, class_counts: Sequence[int], mode: str = "logit_adjusted",
                 tau: float = 1.0, beta: float = 0.999) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        self.mode, self.tau = mode, tau
        self.register_buffer("log_prior", log_prior(class_counts))
        self.register_buffer("weights", class_balanced_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor,
                batch_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over a batch. With ``batch_labels`` (the whole accumulated batch), the
        loss of this part only, divided by the whole batch's normalizer, so the parts of an
        accumulated batch sum to the loss of the batch."""
        batch_labels = labels if batch_labels is None else batch_labels
        if self.mode == "logit_adjusted":
            logits = logits + self.tau * self.log_prior
        losses = F.cross_entropy(logits, labels, reduction="none")
        if self.mode == "class_balanced":  # as F.cross_entropy(weight=w): sum(w*l) / sum(w)
            return (losses * self.weights[labels]).sum() / self.weights[batch_labels].sum()
        return losses.sum() / len(batch_labels)


class PatentClipLoss(nn.Module):
    """Contrastive loss plus ``lam`` times the classification loss of a linear head on the
    image embedding. Returns the total and its two parts (for logging)."""

    def __init__(self, embed_dim: int, class_counts: Sequence[int], lam: float = 0.1,
                 mode: str = "logit_adjusted", tau: float = 1.0, beta: float = 0.999,
                 dropout: float = 0.0, train_head: bool = True) -> None:
        """``dropout`` on the image features before the head; ``train_head`` False keeps the
        head's random weights fixed (the seed's objective, whose head never trained)."""
        super().__init__()
        self.lam = lam
        self.head = nn.Linear(embed_dim, len(class_counts))
        self.head.requires_grad_(train_head)
        self.dropout = nn.Dropout(dropout)
        self.classification = DistributionAwareCrossEntropy(class_counts, mode, tau, beta)
        self.contrastive = ClipLoss()

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        contrastive = self.contrastive(image_features, text_features, logit_scale)
        classification = self.classification(self.head(self.dropout(image_features)), labels)
        total = contrastive + self.lam * classification
        return total, {"contrastive": float(contrastive.detach()),
                       "classification": float(classification.detach())}


    def classification_part(self, image_features: torch.Tensor, labels: torch.Tensor,
                            batch_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The classification term of one micro-batch of an accumulated batch, and the head's
        logits (for its train-time accuracy)."""
        logits = self.head(self.dropout(image_features))
        return self.classification(logits, labels, batch_labels), logits


def trainable_parameters(model: nn.Module, loss: nn.Module) -> Iterable[nn.Parameter]:
    """What the optimizer must see: the model's trainable weights *and* the head's (unless
    the head is fixed)."""
    seen = set()
    for module in (model, loss):
        for parameter in module.parameters():
            if parameter.requires_grad and id(parameter) not in seen:
                seen.add(id(parameter))
                yield parameter
