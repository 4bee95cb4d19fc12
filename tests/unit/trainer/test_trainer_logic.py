"""Trainer logic without I/O: captions, labels, the time split, the gate, the schedule,
gradient accumulation and the benchmark's protocols on hand-made vectors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import open_clip
import pytest
import torch

from patentclip.errors import InvalidInputError
from patentclip.grants.model import (
    DrawingSheet,
    Figure,
    Grant,
    LocarnoClass,
    SheetFigureMapping,
    View,
)
from patentclip.model.encoder import TINY_MODEL_CONFIG
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
from trainer.gate import RolloutGate
from trainer.losses import PatentClipLoss
from trainer.main import next_run
from trainer.train import EpochData, TrainConfig, accumulated_backward


def _grant(number="D0900001", locarno="0901", date=20210105) -> Grant:
    figures = (Figure("1", View.PERSPECTIVE, "front perspective",
                      "FIG. 1 is a front perspective view of a bottle showing our new design;"),
               Figure("2", View.TOP, "top plan", "FIG. 2 is a top plan view thereof."))
    sheets = tuple(DrawingSheet(i, f"s{i}.TIF", (str(i),), SheetFigureMapping.ONE_PER_SHEET,
                                f"file:///img/{number}/s{i}.TIF") for i in (1, 2))
    return Grant(number, "S1", "Bottle", date, LocarnoClass(locarno) if locarno else None, (),
                 "claim", figures, sheets)


def test_captions_come_from_the_figures_the_title_and_an_extra_caption():
    """The extra (LLaVA) caption describes the front-page image: only that sheet gets it."""
    grant = _grant()
    extra = "  A tall   bottle with a narrow neck. "
    assert sheet_captions(grant, grant.sheets[1], extra) == ("top plan view of a bottle",
                                                             "a drawing of a bottle")
    assert sheet_captions(grant, grant.sheets[0])[0] == \
        "front perspective view of a bottle showing our new design"
    front = DrawingSheet(0, "s0.TIF", (), SheetFigureMapping.FRONT_PAGE, "file:///img/s0.TIF")
    assert sheet_captions(grant, front, extra) == ("front page drawing of a bottle",
                                                   "a drawing of a bottle",
                                                   "A tall bottle with a narrow neck.")


def test_examples_record_where_their_caption_comes_from():
    grant = _grant()
    front = DrawingSheet(0, "s0.TIF", (), SheetFigureMapping.FRONT_PAGE, "file:///img/s0.TIF")
    unmapped = DrawingSheet(3, "s3.TIF", (), SheetFigureMapping.UNKNOWN, "file:///img/s3.TIF")
    grant = replace(grant, sheets=(front, *grant.sheets, unmapped))
    examples = examples_from_grant(grant, {})
    assert [e.caption_source for e in examples] == ["front_page", "figures", "figures", "views"]
    assert examples[3].captions[0] == "a bottle in one of its views: perspective, top"
    report = DataReport()
    examples_from_grant(_grant(), {"D0900001": "a bottle"}, report)
    assert report.skipped == {"extra caption without a front page to attach it to": 1}


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
# The paired bootstrap itself: tests/unit/trainer/test_gate.py.


def test_gate_with_no_live_model_promotes():
    assert RolloutGate().decide({"per_query": []}, None).passed


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


def _epoch_data(cfg, n=12):
    examples = [TrainingExample(f"D{i}", 1, "u", ("a", "b", "c"), "09" if i % 3 else "06", 1)
                for i in range(n)]
    labels = torch.tensor([0 if i % 3 else 1 for i in range(n)])
    tokenizer = lambda texts: torch.tensor([[ord(t[0])] for t in texts])  # noqa: E731
    return EpochData(examples, lambda i: torch.full((3, 4, 4), float(i)), labels, tokenizer,
                     cfg)


def test_epoch_order_and_captions_depend_only_on_seed_and_epoch():
    cfg = TrainConfig(base_model="x", batch_size=2, accum_freq=2, sampling="class_aware",
                      loss="plain")

    def order(config, epoch):
        return [(m[0][:, 0, 0, 0].tolist(), m[1].flatten().tolist())
                for step in _epoch_data(config).batches(epoch) for m in step]

    assert order(cfg, 0) == order(cfg, 0)
    assert order(cfg, 0) != order(cfg, 1)
    assert order(cfg, 0) != order(replace(cfg, seed=1), 0)
    assert len(order(cfg, 0)) == 6  # 12 samples / (2 x 2) = 3 steps of 2 micro-batches


@pytest.mark.parametrize("sampling", ["uniform", "class_aware"])
def test_no_sheet_is_twice_in_one_contrastive_batch(sampling):
    """Class-aware sampling used to draw with replacement: copies of a rare sheet were
    each other's negatives. Now each step (the whole accumulated batch) is without
    repeats, and the DataLoader's workers build the same batches as the main process."""
    cfg = TrainConfig(base_model="x", batch_size=4, accum_freq=2, sampling=sampling,
                      loss="plain", sampling_beta=1.0)
    data = _epoch_data(cfg, n=40)
    for indices in data.step_indices(0):
        assert len(indices) == 8 and len(set(indices)) == 8
    inline = [[m[0][:, 0, 0, 0].tolist() for m in step] for step in data.batches(0)]
    data.workers = 2
    assert [[m[0][:, 0, 0, 0].tolist() for m in step] for step in data.batches(0)] == inline


def test_class_aware_sampling_with_a_prior_correcting_loss_is_refused():
    for loss in ("logit_adjusted", "class_balanced"):
        with pytest.raises(InvalidInputError, match="corrects for the class prior twice"):
            TrainConfig(base_model="x", sampling="class_aware", loss=loss).validate()
    TrainConfig(base_model="x", sampling="class_aware", loss="plain").validate()


def test_train_config_rejects_unknown_choices():
    with pytest.raises(InvalidInputError, match="loss 'focal'"):
        TrainConfig(base_model="x", loss="focal").validate()
    with pytest.raises(InvalidInputError, match="accum_freq must be >= 1"):
        TrainConfig(base_model="x", accum_freq=0).validate()


# ----------------------------------------------------------------------------- benchmark


def _items(patents: list[str], labels: list[str]) -> list[EvalItem]:
    return [EvalItem(p, i + 1, "u", "h", f"caption {i}", label, 20210105)
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


def test_caption_queries_are_deduplicated_and_kept_per_query():
    """Sheets 0-1 of D1 share a caption: one query. D2's sheet has the same words but is
    another patent's question: its own query, counted as shared. The front page (sheet 0)
    is no drawing -> drawing query."""
    rng = np.random.default_rng(1)
    images = rng.normal(size=(5, 8))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    items = [EvalItem("D1", 0, "u", "h", "a chair", "06", 1, "front_page"),
             EvalItem("D1", 1, "u", "h", "A  Chair", "06", 1, "views"),
             EvalItem("D2", 1, "u", "h", "a chair", "06", 1, "views"),
             EvalItem("D2", 2, "u", "h", "top view of a chair", "06", 1, "figures"),
             EvalItem("D3", 1, "u", "h", "a lamp", "26", 1, "figures")]
    results = benchmark_vectors(images, images.copy(), items, {"06": 3, "26": 1})
    assert results["queries"] == 4 and results["gallery"] == 5
    assert [(q["patent"], q["query"]) for q in results["per_query_sheets"]] == [
        ("D1", "a chair"), ("D2", "a chair"), ("D2", "top view of a chair"), ("D3", "a lamp")]
    assert results["per_query_sheets"][0]["relevant_rank"] == 1  # its own (front-page) image
    assert results["caption_cases"] == {"figures": 0.4, "views": 0.4, "front_page": 0.2,
                                        "duplicate_captions": pytest.approx(0.2),
                                        "shared_with_another_patent": 0.5}
    assert results["prior_art"]["front_pages_left_out"] == 1
    assert results["prior_art"]["queries"] == 2  # D2's two sheets; D1 has one drawing left
    # A random ranking of 5 sheets: the queries have 2, 2, 2 and 1 relevant sheets.
    assert results["chance"]["patent_aware"]["R@1"] == pytest.approx(np.mean([2, 2, 2, 1]) / 5)
    assert results["chance"]["patent_aware"]["R@5"] == 1.0
    assert results["chance"]["standard"]["R@1"] == pytest.approx(1 / 5)


# ------------------------------------------------------------- the regime for real checkpoints


def test_the_loss_is_computed_in_fp32_even_under_bf16_autocast(monkeypatch):
    """Under autocast, ops after a .float() cast run in bf16 again: the loss must be
    computed with autocast off (it was not: the casts alone did nothing)."""
    import trainer.train as train

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_MODEL_CONFIG)
    loss_fn = PatentClipLoss(64, [6, 3, 1], lam=0.5, mode="plain")
    seen = []
    contrastive = loss_fn.contrastive.forward

    def spy(images, texts, scale):
        seen.append((torch.is_autocast_enabled("cpu"), images.dtype, scale.dtype))
        return contrastive(images, texts, scale)
    monkeypatch.setattr(loss_fn.contrastive, "forward", spy)
    monkeypatch.setattr(train, "_autocast", lambda device: torch.autocast("cpu", torch.bfloat16))
    micro = [(torch.randn(4, 3, 64, 64), torch.randint(1, 1000, (4, 77)),
              torch.tensor([0, 1, 2, 0]))]
    parts = accumulated_backward(model, loss_fn, micro)
    assert seen == [(False, torch.float32, torch.float32)]
    assert np.isfinite(parts["loss"]) and parts["classification"] > 0


def test_the_objectives_contrastive_by_default_and_the_seeds_as_a_variant():
    assert TrainConfig().loss == "contrastive" and TrainConfig().lr == 1e-5
    from trainer.train import objective

    counts = [6, 3, 1]
    plain = objective(TrainConfig(), 64, counts)
    assert plain.lam == 0.0
    seed = objective(TrainConfig(loss="seed"), 64, counts)
    assert (seed.lam, seed.dropout.p, seed.classification.mode) == (0.2, 0.3, "plain")
    assert not any(p.requires_grad for p in seed.head.parameters())  # fixed, never trained
    trained = objective(TrainConfig(loss="logit_adjusted", cls_weight=0.5), 64, counts)
    assert trained.lam == 0.5 and all(p.requires_grad for p in trained.head.parameters())


def test_the_warm_up_is_a_tenth_of_the_run_unless_set():
    from trainer.train import _lr_at, warmup_steps

    cfg = TrainConfig(lr=1e-5)
    assert warmup_steps(200, cfg) == 20 and warmup_steps(5, cfg) == 1
    assert warmup_steps(200, TrainConfig(warmup_steps=0)) == 0
    rates = [_lr_at(step, 200, cfg) for step in range(200)]
    assert rates[0] == pytest.approx(1e-5 / 20) and max(rates) == pytest.approx(1e-5)
    assert rates.index(max(rates)) == 19 and rates[-1] < 1e-7


def test_decay_pulls_toward_the_anchor_and_the_optimizer_no_longer_decays_to_zero():
    from trainer.train import Anchor, _optimizer, weight_distance

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_MODEL_CONFIG)
    anchor_model = open_clip.CLIP(**TINY_MODEL_CONFIG)
    anchor_model.load_state_dict(model.state_dict())
    loss_fn = PatentClipLoss(64, [6, 3, 1], lam=0.5, mode="plain")
    cfg = TrainConfig()
    anchor = Anchor.of(model, cfg)
    decays = {g["weight_decay"] for g in _optimizer(model, loss_fn, cfg).param_groups
              if g["lr_scale"] == 1.0}
    assert decays == {0.0}  # the model's decay is the anchor's pull
    with torch.no_grad():
        for parameter, _ in anchor.pairs:
            parameter.add_(torch.randn_like(parameter))
    before = weight_distance(model, anchor_model)
    anchor.pull(0.25)
    assert weight_distance(model, anchor_model) == pytest.approx(0.75 * before, rel=1e-4)
    zero = {g["weight_decay"] for g in _optimizer(model, loss_fn, TrainConfig(
        regularize="to_zero")).param_groups if g["lr_scale"] == 1.0}
    assert zero == {0.0, 0.1}  # AdamW's own: gains and biases excluded


def test_cached_pixels_and_stored_results_are_keyed_by_the_preprocessing_and_protocol(
        tmp_path, monkeypatch):
    """A change of preprocessing or benchmark protocol is a cache miss and a new benchmark,
    never a silent reuse of what the old code made."""
    import io

    from PIL import Image

    from patentclip.drawings import preprocess
    from patentclip.model.registry import ModelRegistry
    from trainer import benchmark
    from trainer.cache import SheetCache

    buffer = io.BytesIO()
    Image.new("L", (40, 30), 255).save(buffer, "PNG")
    assert SheetCache(tmp_path, 32).add(buffer.getvalue())[1] is True
    assert SheetCache(tmp_path, 32).add(buffer.getvalue())[1] is False  # cached
    monkeypatch.setattr(preprocess, "PREPROCESS_VERSION", preprocess.PREPROCESS_VERSION + 1)
    assert SheetCache(tmp_path, 32).add(buffer.getvalue())[1] is True  # decoded again

    registry = ModelRegistry(tmp_path / "registry")
    now = benchmark.protocol()
    registry.record_benchmark("outside-v1", {"eval_set_sha256": "abc", "protocol": "bench1-pre1",
                                             "per_query": []})
    assert now == f"bench{benchmark.BENCHMARK_VERSION}-pre{preprocess.PREPROCESS_VERSION}"
    assert registry.benchmark_results("outside-v1", "abc", "bench1-pre1") is not None
    assert registry.benchmark_results("outside-v1", "abc", now) is None  # benchmark again
    # The backend the service runs and the distractor gallery are part of the protocol.
    from trainer.data import EvalItem, EvalSet

    gallery = EvalSet("distractors-2", "t", (EvalItem("D1", 1, "u", "h", "c", "06", 1),),
                      {}, {})
    names = {benchmark.Protocol().name, benchmark.Protocol("onnx").name,
             benchmark.Protocol("eager", gallery).name}
    assert len(names) == 3 and all(n.startswith(now) for n in names)


def test_a_cycle_trains_on_the_new_weeks_and_a_replay_sample_not_all_history():
    from trainer.pipeline import replay_selection

    old = [TrainingExample(f"D{i}", 1, "u", ("c",), "09", 20210105) for i in range(30)]
    new = [TrainingExample(f"E{i}", 1, "u", ("c",), "09", 20210112) for i in range(5)]
    chosen, note = replay_selection(old + new, 20210105, 1.0, seed=0)
    assert chosen[:5] == new and len(chosen) == 10 and set(chosen[5:]) <= set(old)
    assert "5 new sheets" in note and "replay sample of 5 of 30" in note
    assert replay_selection(old + new, 20210105, 1.0, seed=0)[0] == chosen  # seeded
    assert replay_selection(old + new, 20210105, 1.0, seed=1)[0] != chosen
    assert replay_selection(old + new, None, 1.0, seed=0)[0] == old + new  # window unknown
    assert replay_selection(old + new, 20210105, -1, seed=0)[0] == old + new  # all history
    assert replay_selection(old, 20210105, 1.0, seed=0)[0] == old  # nothing new
