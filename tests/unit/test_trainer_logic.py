"""Trainer logic without I/O: captions, labels, the time split, the gate, the schedule,
gradient accumulation and the benchmark's protocols on hand-made vectors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import open_clip
import pytest
import torch

from patentclip.encoder import TINY_MODEL_CONFIG
from patentclip.errors import InvalidInputError
from patentclip.grants import DrawingSheet, Figure, Grant, LocarnoClass, SheetFigureMapping, View
from trainer.benchmark import benchmark_vectors, metric
from trainer.data import (
    DataReport,
    EvalItem,
    TrainingExample,
    class_frequencies,
    examples_from_grant,
    sheet_captions,
    time_split,
)
from trainer.losses import PatentClipLoss
from trainer.main import next_run
from trainer.rollout import RolloutGate
from trainer.train import TrainConfig, _EpochData, accumulated_backward


def _grant(number="D0900001", locarno="0901", date=20210105) -> Grant:
    figures = (Figure("1", View.PERSPECTIVE, "front perspective",
                      "FIG. 1 is a front perspective view of a bottle showing our new design;"),
               Figure("2", View.TOP, "top plan", "FIG. 2 is a top plan view thereof."))
    sheets = tuple(DrawingSheet(i, f"s{i}.TIF", (str(i),), SheetFigureMapping.ONE_PER_SHEET,
                                f"file:///img/{number}/s{i}.TIF") for i in (1, 2))
    return Grant(number, "S1", "Bottle", date, LocarnoClass(locarno) if locarno else None, (),
                 "claim", figures, sheets)


def test_captions_come_from_the_figures_the_title_and_an_extra_caption():
    grant = _grant()
    captions = sheet_captions(grant, grant.sheets[1], "  A tall   bottle with a narrow neck. ")
    assert captions == ("top plan view of a bottle", "a drawing of a bottle",
                        "A tall bottle with a narrow neck.")
    assert sheet_captions(grant, grant.sheets[0])[0] == \
        "front perspective view of a bottle showing our new design"


def test_examples_are_labelled_with_the_locarno_main_class_and_unlabelled_grants_reported():
    report = DataReport()
    examples = examples_from_grant(_grant(locarno="0901"), {}, report)
    assert [e.label for e in examples] == ["09", "09"]
    assert examples_from_grant(_grant("D0900002", locarno=None), {}, report) == []
    assert report.skipped == {"no Locarno class": 1}
    assert "D0900002" in report.errors[0]


def _example(patent: str, date: int, label: str = "09", sheet: int = 1) -> TrainingExample:
    return TrainingExample(patent, sheet, f"file:///{patent}/{sheet}", ("c",), label, date)


def test_time_split_puts_the_newest_week_in_evaluation_and_no_patent_on_both_sides():
    examples = [_example("D1", 20210105), _example("D1", 20210105, sheet=2),
                _example("D2", 20210112), _example("D3", 20210119), _example("D4", 20210119)]
    train, evaluation = time_split(examples, eval_weeks=1)
    assert {e.patent for e in evaluation} == {"D3", "D4"}
    assert {e.patent for e in train} == {"D1", "D2"}
    train2, evaluation2 = time_split(examples, eval_weeks=2)
    assert {e.patent for e in evaluation2} == {"D2", "D3", "D4"}
    with pytest.raises(InvalidInputError, match="more than 1 grant week"):
        time_split([_example("D1", 20210105)], 1)


def test_class_frequencies_count_sheets_and_patents_most_frequent_first():
    examples = [_example("D1", 1, "06", 1), _example("D1", 1, "06", 2), _example("D2", 1, "09")]
    assert class_frequencies(examples) == {"06": {"sheets": 2, "patents": 1},
                                           "09": {"sheets": 1, "patents": 1}}


# ----------------------------------------------------------------------------- gate


def _results(r10: float, head=0.5, middle=0.5, tail=0.5, queries=50) -> dict:
    return {"patent_aware": {"text_to_image_R@10": r10},
            "terciles_R@10": {"patent_aware": {"head": head, "middle": middle, "tail": tail}},
            "tercile_queries": {"head": queries, "middle": queries, "tail": queries}}


def test_gate_promotes_a_better_candidate_and_says_why():
    verdict = RolloutGate(margin=0.01).decide(_results(0.40), _results(0.30))
    assert verdict.passed
    assert "0.4000 > live 0.3000" in verdict.reasons[0]


def test_gate_rejects_a_candidate_that_does_not_beat_live_by_the_margin():
    verdict = RolloutGate(margin=0.05).decide(_results(0.33), _results(0.30))
    assert not verdict.passed
    assert "does not beat live 0.3000 + margin 0.05" in verdict.reasons[0]


def test_gate_rejects_a_tail_regression_even_when_the_primary_metric_improves():
    verdict = RolloutGate(tercile_tolerance=0.02).decide(_results(0.5, tail=0.40),
                                                         _results(0.3, tail=0.45))
    assert not verdict.passed
    assert any("tail tercile R@10 0.4000 regressed" in r for r in verdict.reasons)
    assert RolloutGate(tercile_tolerance=0.10).decide(_results(0.5, tail=0.40),
                                                      _results(0.3, tail=0.45)).passed


def test_gate_does_not_gate_terciles_with_too_few_queries():
    verdict = RolloutGate(min_tercile_queries=20).decide(
        _results(0.5, tail=0.0, queries=7), _results(0.3, tail=1.0, queries=7))
    assert verdict.passed
    assert any("not gated, 7 queries < 20" in r for r in verdict.reasons)


def test_gate_with_no_live_model_promotes():
    assert RolloutGate().decide(_results(0.1), None).passed


def test_next_run_is_the_next_scheduled_weekday_and_hour():
    wednesday_6 = (2, 6)
    now = datetime(2021, 1, 5, 12, 0, tzinfo=UTC)  # a Tuesday
    assert next_run(now, *wednesday_6) == datetime(2021, 1, 6, 6, 0, tzinfo=UTC)
    at = datetime(2021, 1, 6, 6, 0, tzinfo=UTC)  # exactly then: next week
    assert next_run(at, *wednesday_6) == datetime(2021, 1, 13, 6, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("mode", ["contrastive", "plain", "logit_adjusted", "class_balanced"])
def test_accumulated_gradient_equals_the_full_batch_gradient(mode):
    """open_clip-style accumulation: the contrastive term sees all negatives, the
    classification term and logit_scale are counted once."""
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_MODEL_CONFIG)
    loss_fn = PatentClipLoss(64, [6, 3, 1], lam=0.0 if mode == "contrastive" else 0.7,
                             mode="plain" if mode == "contrastive" else mode)
    pixels = torch.randn(8, 3, 64, 64)
    tokens = torch.randint(1, 1000, (8, 77))
    labels = torch.tensor([0, 0, 1, 2, 0, 1, 0, 2])

    def gradients(micro):
        for p in [*model.parameters(), *loss_fn.parameters()]:
            p.grad = None
        parts = accumulated_backward(model, loss_fn, micro)
        grads = {n: p.grad.clone() for n, p in [*model.named_parameters(),
                                                *loss_fn.named_parameters()]
                 if p.grad is not None}
        return grads, parts

    full, full_parts = gradients([(pixels, tokens, labels)])
    split, split_parts = gradients([(pixels[:3], tokens[:3], labels[:3]),
                                    (pixels[3:], tokens[3:], labels[3:])])
    assert set(full) == set(split)
    assert ("head.weight" in full) == (mode != "contrastive")
    for name in full:
        torch.testing.assert_close(split[name], full[name], rtol=1e-4, atol=1e-6,
                                   msg=f"gradient of {name}")
    assert split_parts["loss"] == pytest.approx(full_parts["loss"], rel=1e-5)


def test_epoch_order_and_captions_depend_only_on_seed_and_epoch():
    examples = [TrainingExample(f"D{i}", 1, "u", ("a", "b", "c"), "09" if i % 3 else "06", 1)
                for i in range(12)]
    pixels = [torch.full((3, 4, 4), float(i)) for i in range(12)]
    labels = torch.tensor([0 if i % 3 else 1 for i in range(12)])
    cfg = TrainConfig(base_model="x", batch_size=2, accum_freq=2, sampling="class_aware")
    tokenizer = lambda texts: torch.tensor([[ord(t[0])] for t in texts])  # noqa: E731

    def order(config, epoch):
        data = _EpochData(examples, pixels, labels, tokenizer, config)
        return [(m[0][:, 0, 0, 0].tolist(), m[1].flatten().tolist())
                for step in data.batches(epoch) for m in step]

    assert order(cfg, 0) == order(cfg, 0)
    assert order(cfg, 0) != order(cfg, 1)
    assert order(cfg, 0) != order(replace(cfg, seed=1), 0)
    assert len(order(cfg, 0)) == 6  # 12 samples / (2 x 2) = 3 steps of 2 micro-batches


def test_train_config_rejects_unknown_choices():
    with pytest.raises(InvalidInputError, match="loss 'focal'"):
        TrainConfig(base_model="x", loss="focal").validate()
    with pytest.raises(InvalidInputError, match="accum_freq must be >= 1"):
        TrainConfig(base_model="x", accum_freq=0).validate()


# ----------------------------------------------------------------------------- benchmark


def _items(patents: list[str], labels: list[str]) -> list[EvalItem]:
    return [EvalItem(p, i, "u", "h", "c", label, 20210105)
            for i, (p, label) in enumerate(zip(patents, labels, strict=True))]


def test_benchmark_protocols_on_hand_made_vectors():
    """Two sheets per patent; each caption vector equals its own sheet's image vector, so
    the standard protocol is perfect, and a patent's other sheet is the nearest drawing."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    images = np.repeat(centres, 2, axis=0) + 0.01 * rng.normal(size=(6, 16))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    items = _items(["D1", "D1", "D2", "D2", "D3", "D3"], ["09", "09", "06", "06", "12", "12"])
    prompts = (["06", "09", "12"], np.stack([images[2], images[0], images[4]]))
    results = benchmark_vectors(images, images.copy(), items, {"09": 10, "06": 5, "12": 1},
                                prompts)
    assert metric(results, "patent_aware.text_to_image_R@1") == 1.0
    assert metric(results, "standard.text_to_image_R@10") == 1.0
    assert results["prior_art"]["p_at_1"] == 1.0 and results["prior_art"]["map"] == 1.0
    assert results["zero_shot_accuracy"] == 1.0
    assert results["terciles_R@10"]["patent_aware"] == {"head": 1.0, "middle": 1.0,
                                                        "tail": 1.0}
    assert results["tercile_queries"] == {"head": 2, "middle": 2, "tail": 2}
    assert results["per_class"]["12"] == {"train_sheets": 1, "tercile": "tail", "queries": 2,
                                          "R@10": 1.0}
