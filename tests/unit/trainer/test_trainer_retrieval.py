"""Trainer metrics and losses against brute-force references and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.losses import (
    DistributionAwareCrossEntropy,
    PatentClipLoss,
    class_aware_sample_weights,
    class_balanced_weights,
    trainable_parameters,
)
from trainer.retrieval import (
    average_precision,
    clip_retrieval_metrics,
    frequency_terciles,
    patent_aware_metrics,
    prior_art_map,
    recall_by_frequency_tercile,
)


def _brute_rank(scores, relevant):
    """0-based rank of the first relevant candidate, ties by index (a plain loop)."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return next(r for r, j in enumerate(order) if relevant[j])


@pytest.mark.parametrize("seed", range(5))
def test_standard_protocol_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    sim = rng.standard_normal((30, 30)).round(1)  # rounding makes ties
    metrics = clip_retrieval_metrics(sim)
    for name, matrix in (("image_to_text", sim), ("text_to_image", sim.T)):
        ranks = [_brute_rank(matrix[i], [j == i for j in range(30)]) for i in range(30)]
        for k in (1, 5, 10):
            assert metrics[f"{name}_R@{k}"] == pytest.approx(np.mean([r < k for r in ranks]))
        assert metrics[f"{name}_mean_rank"] == pytest.approx(np.mean(ranks) + 1)
        assert metrics[f"{name}_median_rank"] == np.floor(np.median(ranks)) + 1


@pytest.mark.parametrize("seed", range(5))
def test_patent_aware_protocol_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    images = [f"D{i // 3}" for i in range(24)]  # 8 patents, 3 sheets each
    texts = [f"D{i}" for i in rng.permutation(8)] + [f"D{i}" for i in range(8)]
    sim = rng.standard_normal((24, 16)).round(1)
    metrics = patent_aware_metrics(sim, images, texts)
    i2t = [_brute_rank(sim[i], [t == images[i] for t in texts]) for i in range(24)]
    t2i = [_brute_rank(sim[:, j], [p == texts[j] for p in images]) for j in range(16)]
    for k in (1, 5, 10):
        assert metrics[f"image_to_text_R@{k}"] == pytest.approx(np.mean([r < k for r in i2t]))
        assert metrics[f"text_to_image_R@{k}"] == pytest.approx(np.mean([r < k for r in t2i]))


def test_patent_aware_credits_another_view_the_standard_protocol_does_not():
    # text 0 describes patent A; its best image is A's second sheet (not the paired one)
    sim = np.array([[0.5, 0.0], [0.9, 0.8]])  # images A1, A2 (rows) x texts (cols)
    standard = clip_retrieval_metrics(sim)
    aware = patent_aware_metrics(sim, ["A", "A"], ["A", "A"])
    assert standard["text_to_image_R@1"] == 0.5 and aware["text_to_image_R@1"] == 1.0


def _brute_ap(scores, relevant):
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    hits, precisions = 0, []
    for rank, j in enumerate(order, start=1):
        if relevant[j]:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / len(precisions)


@pytest.mark.parametrize("seed", range(5))
def test_prior_art_map_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    patents = [f"D{i}" for i in rng.integers(0, 7, 25)]
    sim = rng.standard_normal((25, 25)).round(1)
    result = prior_art_map(sim, patents)
    aps, p1 = [], []
    for i in range(25):
        others = [j for j in range(25) if j != i]
        rel = [patents[j] == patents[i] for j in others]
        if not any(rel):
            continue
        scores = [sim[i][j] for j in others]
        aps.append(_brute_ap(scores, rel))
        p1.append(float(rel[sorted(range(len(others)), key=lambda j: (-scores[j], j))[0]]))
    assert result["queries"] == len(aps)
    assert result["map"] == pytest.approx(np.mean(aps))
    assert result["p_at_1"] == pytest.approx(np.mean(p1))


def test_average_precision_hand_example():
    # relevant at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.5, 0.7]), np.array([True, True, False])) == \
        pytest.approx((1 + 2 / 3) / 2)


def test_terciles_and_recall_by_tercile():
    counts = {"06": 50, "09": 40, "02": 30, "26": 5, "12": 4, "08": 1}
    terciles = frequency_terciles(counts)
    assert terciles == {"06": "head", "09": "head", "02": "middle", "26": "middle",
                        "12": "tail", "08": "tail"}
    recall = recall_by_frequency_tercile(np.array([0, 20, 3, 50, 9]),
                                         ["06", "09", "02", "26", "08"], counts, k=10)
    assert recall == {"head": 0.5, "middle": 0.5, "tail": 1.0}


def test_logit_adjusted_loss_equals_hand_computation():
    counts, logits = [10, 30, 60], torch.tensor([[1.0, 2.0, 0.0]])
    loss = DistributionAwareCrossEntropy(counts, "logit_adjusted", tau=1.0)(
        logits, torch.tensor([0]))
    adjusted = [1 + math.log(0.1), 2 + math.log(0.3), 0 + math.log(0.6)]
    expected = -adjusted[0] + math.log(sum(math.exp(a) for a in adjusted))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_class_balanced_loss_equals_hand_computation():
    counts, beta = [100, 10, 1], 0.99
    raw = [(1 - beta) / (1 - beta ** n) for n in counts]
    weights = [w * 3 / sum(raw) for w in raw]
    assert class_balanced_weights(counts, beta).tolist() == pytest.approx(weights, rel=1e-5)
    logits = torch.tensor([[2.0, 0.5, 0.1], [0.3, 0.2, 1.5]])
    labels = torch.tensor([0, 2])
    loss = DistributionAwareCrossEntropy(counts, "class_balanced", beta=beta)(logits, labels)

    def ce(row, y):
        return -row[y] + math.log(sum(math.exp(v) for v in row))

    rows = logits.tolist()
    expected = (weights[0] * ce(rows[0], 0) + weights[2] * ce(rows[1], 2)) / (
        weights[0] + weights[2])
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("beta", "ratio"), [(0.0, 4.0), (0.5, 2.0), (1.0, 1.0)])
def test_class_aware_sampling_interpolates_from_sheets_to_classes(beta, ratio):
    """p_c proportional to f_c ** (1 - beta): 0 = the classes' sheet shares (8:2), 1 =
    uniform over classes; never past uniform (a rare class never outdraws a frequent one)."""
    labels, counts = [0] * 8 + [1] * 2, [8, 2]
    weights = class_aware_sample_weights(labels, counts, beta=beta)
    p0, p1 = weights[:8].sum(), weights[8:].sum()
    assert p0 / p1 == pytest.approx(ratio)
    assert weights.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must be in"):
        class_aware_sample_weights(labels, counts, beta=1.5)


def test_the_classification_head_trains():
    """Regression test for the public code's flaw: a head outside the optimizer."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)  # stands in for the CLIP towers
    loss_fn = PatentClipLoss(embed_dim=8, class_counts=[5, 3, 1], lam=1.0)
    before = loss_fn.head.weight.detach().clone()
    optimizer = torch.optim.SGD(list(trainable_parameters(model, loss_fn)), lr=0.5)
    features = torch.nn.functional.normalize(model(torch.randn(6, 8)), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    total, parts = loss_fn(features, texts, torch.tensor(10.0), torch.tensor([0, 1, 2, 0, 1, 0]))
    total.backward()
    optimizer.step()
    assert not torch.equal(before, loss_fn.head.weight.detach())
    assert set(parts) == {"contrastive", "classification"}
