"""Fine-tuning: open_clip's contrastive loss plus the distribution-aware classification term.

A run lives in one folder::

    params.json            the config, the data window and hash, the classes
    class_frequencies.json training sheets and patents per Locarno main class
    checkpoints/epoch_NNN.pt   model, head, optimizer and step after each epoch (atomic)
    metrics.jsonl          one line per epoch: losses, samples/s, seconds
    model/                 the final weights in open_clip's local-dir layout
    results.json           what the run did

Running the same config in the same folder again resumes after the last checkpoint, so a
killed run loses at most one epoch. Every random choice (head init, sample order, which
caption a sheet gets) is derived from ``seed`` and the epoch, so a resumed run ends with the
weights an uninterrupted one would have.

Gradient accumulation follows open_clip: the features of all micro-batches are computed
first without gradients, then each micro-batch is recomputed with gradients against the
others' cached features. The contrastive term sees the whole accumulated batch as
negatives; the classification term is summed per micro-batch over the whole batch's
normalizer; ``logit_scale`` is differentiated once. The resulting gradient equals the
non-accumulated one (a test checks this).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from patentclip.config import Section, setting
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import InvalidInputError
from patentclip.model.encoder import Encoder, save_local_model, weights_digest
from services.common.failpoints import Failpoints
from trainer.cache import MicroBatch, SheetCache, StepBatches, fill_cache, step_loader
from trainer.data import TrainingExample, class_frequencies, data_window
from trainer.head import save_head, warm_start
from trainer.losses import MODES, PatentClipLoss, class_aware_sample_weights, trainable_parameters

logger = logging.getLogger(__name__)

LOSSES = ("contrastive", *MODES, "seed")
REGULARIZERS = ("to_anchor", "to_zero")
SAMPLINGS = ("uniform", "class_aware")


@dataclass(frozen=True)
class TrainConfig(Section):
    """Hyperparameters of one fine-tuning run (all recorded in params.json and the manifest).

    Also the trainer service's training settings (env PATENTCLIP_TRAINER_*): the one
    declaration of each hyperparameter.
    """

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_TRAINER_"

    base_model: str = setting(
        "", "open_clip name, hf-hub:..., local-dir:...; empty = fine-tune from the live model")
    pretrained: str = ""  # of the base model: resolved with it, not a setting
    epochs: int = setting(2, "passes over the training data")
    batch_size: int = setting(32, "micro-batch; the contrastive batch is batch_size * accum_freq")
    accum_freq: int = setting(1, "micro-batches per optimizer step")
    lr: float = setting(
        1e-5, "peak learning rate (AdamW, cosine after the warm-up); 1e-5 to 3e-5 is the usual "
        "end-to-end fine-tune of a pretrained CLIP")
    head_lr_scale: float = setting(
        10.0, "the classification head's learning rate, as a multiple of lr (the head is "
        "warm-started from the parent's head or a linear probe: trainer/head.py)")
    weight_decay: float = setting(0.1, "decoupled weight decay (see regularize)")
    regularize: str = setting(
        "to_anchor", "to_anchor: the decay pulls weights toward the anchor's (L2-SP, decoupled "
        "as AdamW's), so repeated weekly runs stay near it; to_zero: AdamW's decay toward zero "
        "(shrinks a pretrained model's weights every run)", choices=REGULARIZERS)
    anchor_model: str = setting(
        "", "the weights to_anchor pulls toward (open_clip name, hf-hub:..., local-dir:...): "
        "a fixed anchor bounds the drift of the whole weekly lineage; empty = the run's base "
        "model (its parent)")
    warmup_steps: int = setting(
        -1, "optimizer steps of linear warm-up; -1 = a tenth of the run's steps (at least 1)")
    loss: str = setting(
        "contrastive", "the objective: contrastive only until a real-data run decides; seed = "
        "the seed's (a fixed random head, weight 0.2, dropout 0.3, plain CE)", choices=LOSSES)
    cls_weight: float = setting(0.5, "lambda of the classification term (seed: 0.2)")
    tau: float = setting(1.0, "logit adjustment strength")
    cb_beta: float = setting(0.999, "class-balanced effective-number beta")
    sampling: str = setting("uniform", "how batches are drawn", choices=SAMPLINGS)
    sampling_beta: float = setting(
        0.5, "class-aware: class c is drawn with p_c proportional to f_c ** (1 - beta): 0 = "
        "uniform over sheets, 1 = uniform over classes")
    lock_image_unlocked: int = setting(
        -1, "lock the image tower except its last N groups (open_clip's groups: a ViT's are "
        "the embeddings, each block, the final norm and projection; -1: train it all)")
    lock_text_unlocked: int = setting(
        -1, "lock the text tower except its last N groups (the last is the final norm and "
        "projection, then one per transformer block; -1: train it all)")
    seed: int = setting(0, "seeds weights, data order and sampling")
    device: str = "cpu"  # CoreSettings.device: not part of the run's identity (digest)
    max_steps_per_epoch: int = setting(0, "0 = a full pass over the data")

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss {self.loss!r}: expected one of {LOSSES}")
        if self.regularize not in REGULARIZERS:
            raise InvalidInputError(f"regularize {self.regularize!r}: expected one of "
                                    f"{REGULARIZERS}")
        if self.sampling not in SAMPLINGS:
            raise InvalidInputError(f"sampling {self.sampling!r}: expected one of {SAMPLINGS}")
        for name in ("epochs", "batch_size", "accum_freq"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.head_lr_scale <= 0:
            raise InvalidInputError(f"lr and head_lr_scale must be > 0, got {self.lr} and "
                                    f"{self.head_lr_scale}")
        if not 0 <= self.sampling_beta <= 1:
            raise InvalidInputError(f"sampling_beta {self.sampling_beta}: must be in [0, 1] "
                                    "(0 = uniform over sheets, 1 = uniform over classes)")
        if self.sampling == "class_aware" and self.loss in ("logit_adjusted", "class_balanced"):
            raise InvalidInputError(
                f"sampling=class_aware with loss={self.loss} corrects for the class prior "
                "twice: the sampler already evens out the classes the loss reweights (or "
                "offsets by the training prior). Use class-aware sampling with loss=plain or "
                "contrastive, or this loss with sampling=uniform")

    @property
    def digest(self) -> str:
        """Identifies the run a checkpoint belongs to (the device is not part of it)."""
        body = {k: v for k, v in asdict(self).items() if k != "device"}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """What a run produced; written to results.json."""

    run_dir: str
    model_dir: str = ""
    status: str = "running"  # completed | stopped
    epochs_done: int = 0
    steps: int = 0
    resumed_from_epoch: int = 0
    parent_version: str = ""
    weights_digest: str = ""
    seconds: float = 0.0
    samples_per_second: float = 0.0
    epoch_losses: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    head_init: dict = field(default_factory=dict)  # where the classification head started
    skipped: list[str] = field(default_factory=list)


class FineTuner:
    """One fine-tuning run over examples whose drawings are in an image store."""

    def __init__(self, config: TrainConfig, examples: Sequence[TrainingExample],
                 images: LocalImageStore, run_dir: str | Path, progress: bool = True,
                 stop: threading.Event | None = None,
                 failpoints: Failpoints | None = None, keep_checkpoints: int = 2,
                 cache_dir: str | Path | None = None, loader_workers: int = -1) -> None:
        """``cache_dir``: the decoded-sheet cache (default ``<run_dir>/../sheet-cache``,
        shared by the runs of one runs folder); ``keep_checkpoints``: the last K epoch
        checkpoints kept (a ViT-L-14 one is about 5 GB); ``loader_workers``: DataLoader
        processes (0 = build batches in the training process; -1 = auto, see
        :func:`loader_workers_for`)."""
        config.validate()
        if keep_checkpoints < 1 or loader_workers < -1:
            raise InvalidInputError(f"keep_checkpoints must be >= 1 and loader_workers >= -1, "
                                    f"got {keep_checkpoints} and {loader_workers}")
        if not examples:
            raise InvalidInputError("no training examples (nothing ingested before the "
                                    "evaluation weeks?)")
        self.config, self.examples, self.images = config, list(examples), images
        self.run_dir = Path(run_dir)
        self.progress, self.stop = progress, stop or threading.Event()
        self.failpoints = failpoints or Failpoints()  # none set: production
        self.keep_checkpoints = keep_checkpoints
        self.loader_workers = loader_workers_for(config.device) if loader_workers < 0 \
            else loader_workers
        self.cache_dir = Path(cache_dir) if cache_dir else self.run_dir.parent / "sheet-cache"

    # -- the run

    def run(self) -> TrainResult:
        started = time.perf_counter()
        cfg = self.config
        result = TrainResult(run_dir=str(self.run_dir))
        _seed_everything(cfg.seed)
        encoder = Encoder.load(cfg.base_model, pretrained=cfg.pretrained or None,
                               device=cfg.device)
        model_cfg, preprocess_cfg = parent_configs(encoder)
        result.parent_version = encoder.model_version
        pixels, examples, result.skipped = self._cache(encoder)
        frequencies = class_frequencies(examples)
        classes = list(frequencies)
        result.data = data_window(examples)
        self._write_params(result.data, frequencies, encoder)
        model = encoder.model
        _lock_towers(model, cfg)
        torch.manual_seed(cfg.seed)  # the head's initial weights
        loss_fn = objective(cfg, encoder.dim, [frequencies[c]["sheets"] for c in classes])
        loss_fn = loss_fn.to(cfg.device)
        anchor = Anchor.of(model, cfg) if cfg.regularize == "to_anchor" else None
        optimizer = _optimizer(model, loss_fn, cfg)
        start_epoch, step = self._resume(model, loss_fn, optimizer, result)
        labels = torch.tensor([classes.index(e.label) for e in examples])
        trains_head = loss_fn.lam > 0 and loss_fn.head.weight.requires_grad
        if trains_head and start_epoch == 0:  # a resumed run's head is in its checkpoint
            result.head_init = warm_start(loss_fn.head, encoder.class_head, classes, model,
                                          pixels, labels, cfg.seed, cfg.batch_size, cfg.device)
        data = EpochData(examples, pixels, labels, encoder.tokenizer, cfg, self.loader_workers)
        total_steps = cfg.epochs * data.steps_per_epoch
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            summary, step = self._epoch(model, loss_fn, optimizer, data, epoch, step,
                                        total_steps, anchor)
            if summary is None:
                result.status = "stopped"
                break
            result.epoch_losses.append(summary)
            self._checkpoint(model, loss_fn, optimizer, epoch + 1, step)
            self.failpoints.hit("after_checkpoint")
        else:
            result.status = "completed"
        result.steps, result.epochs_done = step, len(result.epoch_losses) + start_epoch
        if result.status == "completed":
            model.eval()
            out = save_local_model(model, model_cfg, self.run_dir / "model", preprocess_cfg)
            result.model_dir, result.weights_digest = str(out.resolve()), weights_digest(model)
            if trains_head:
                save_head(loss_fn.head, classes, out, result.head_init)
        result.seconds = time.perf_counter() - started
        trained = sum(e["samples"] for e in result.epoch_losses)
        busy = sum(e["seconds"] for e in result.epoch_losses)
        result.samples_per_second = trained / busy if busy else 0.0
        (self.run_dir / "results.json").write_text(json.dumps(asdict(result), indent=2))
        return result

    def _epoch(self, model, loss_fn, optimizer, data: EpochData, epoch: int, step: int,
               total_steps: int, anchor: Anchor | None) -> tuple[dict | None, int]:
        cfg = self.config
        batches = data.batches(epoch)
        sums = {"loss": 0.0, "contrastive": 0.0, "classification": 0.0}
        samples, head_correct, started = 0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   total=data.steps_per_epoch, disable=not self.progress)
        for micro in bar:
            if self.stop.is_set():
                logger.info("stop requested: leaving epoch %d unfinished (not checkpointed)",
                            epoch + 1)
                return None, step
            lr = _lr_at(step, total_steps, cfg)
            _set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            parts = accumulated_backward(model, loss_fn, micro, cfg.device)
            optimizer.step()
            if anchor is not None:
                anchor.pull(lr * cfg.weight_decay)
            with torch.no_grad():  # as open_clip: the temperature stays <= 100
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            samples += sum(len(m[2]) for m in micro)
            head_correct += parts["head_correct"]
            for key in sums:
                sums[key] += parts[key]
            rate = samples / max(time.perf_counter() - started, 1e-9)
            shown = {"head_acc": f"{head_correct / samples:.2f}"} if loss_fn.lam else {}
            bar.set_postfix(loss=f"{parts['loss']:.3f}", **shown, samples_s=f"{rate:.1f}")
        bar.close()
        n = max(data.steps_per_epoch, 1)
        seconds = time.perf_counter() - started
        summary = {"epoch": epoch + 1, "steps": data.steps_per_epoch, "samples": samples,
                   "seconds": round(seconds, 3),
                   "samples_per_second": round(samples / seconds, 2) if seconds else 0.0,
                   **{k: v / n for k, v in sums.items()},
                   # The head's train-time accuracy (its argmax on the batch's drawings,
                   # before the step): shows the classification term is learning something.
                   "head_accuracy": round(head_correct / samples, 4)
                   if samples and loss_fn.lam else None}  # None: no head (contrastive only)
        with (self.run_dir / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(summary) + "\n")
        logger.info("epoch %d: loss %.4f (contrastive %.4f, classification %.4f), head "
                    "accuracy %s, %.1f samples/s", epoch + 1, summary["loss"],
                    summary["contrastive"], summary["classification"],
                    summary["head_accuracy"], summary["samples_per_second"])
        return summary, step

    # -- data

    def _cache(self, encoder: Encoder) -> tuple[Callable[[int], torch.Tensor],
                                                list[TrainingExample], list[str]]:
        """Cache every drawing (decoding only what the cache lacks); unreadable ones are
        reported and left out. Returns sample i's model input as a function: pixels are
        read from the cache when a batch is built, never all held at once."""
        cache = SheetCache(self.cache_dir, encoder.info.image_size)
        kept, keys, skipped = fill_cache(cache, self.examples, self.images.get,
                                         progress=self.progress)
        for reason in skipped:
            logger.warning("training without a drawing: %s", reason)
        if not kept:
            raise InvalidInputError("no training drawing could be decoded")
        def pixels(index: int) -> torch.Tensor:  # as Encoder.drawing_pixels, from the cache
            return encoder.square_pixels(cache.load(keys[index]))

        return pixels, [self.examples[i] for i in kept], skipped

    def _write_params(self, data: dict, frequencies: dict, encoder: Encoder) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        params = {"config": asdict(self.config), "config_digest": self.config.digest,
                  "parent_version": encoder.model_version, "classes": list(frequencies),
                  "data": data}
        path = self.run_dir / "params.json"
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous.get("config_digest") != self.config.digest or \
                    previous.get("data", {}).get("sha256") != params["data"]["sha256"]:
                raise InvalidInputError(f"{self.run_dir} holds a run with other settings or "
                                        "data; use a new run folder")
        path.write_text(json.dumps(params, indent=2))
        (self.run_dir / "class_frequencies.json").write_text(
            json.dumps(frequencies, indent=2))

    # -- checkpoints

    def _checkpoint(self, model, loss_fn, optimizer, epoch: int, step: int) -> Path:
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch_{epoch:03d}.pt"
        tmp = path.with_suffix(".part")
        torch.save({"epoch": epoch, "step": step, "config_digest": self.config.digest,
                    "model": model.state_dict(), "loss": loss_fn.state_dict(),
                    "optimizer": optimizer.state_dict()}, tmp)
        tmp.replace(path)
        for old in sorted(folder.glob("epoch_*.pt"))[:-self.keep_checkpoints]:
            old.unlink()  # keep the last K
        return path

    def _resume(self, model, loss_fn, optimizer, result: TrainResult) -> tuple[int, int]:
        checkpoints = sorted((self.run_dir / "checkpoints").glob("epoch_*.pt"))
        if not checkpoints:
            return 0, 0
        state = torch.load(checkpoints[-1], map_location=self.config.device, weights_only=True)
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        result.resumed_from_epoch = state["epoch"]
        logger.info("resuming %s after epoch %d (step %d)", self.run_dir, state["epoch"],
                    state["step"])
        if self.progress:
            print(f"resuming from {checkpoints[-1].name} (epoch {state['epoch']})", flush=True)
        return int(state["epoch"]), int(state["step"])


# ----------------------------------------------------------------------------- steps


def accumulated_backward(model, loss_fn: PatentClipLoss, micro: Sequence[MicroBatch],
                         device: str = "cpu") -> dict[str, float]:
    """Backward of the loss over all micro-batches as one batch; returns its parts."""
    micro = [tuple(t.to(device) for t in m) for m in micro]
    all_labels = torch.cat([m[2] for m in micro])
    autocast = _autocast(device)
    cached = []  # other micro-batches' features; one batch alone needs none
    if len(micro) > 1:
        with torch.no_grad(), autocast:
            cached = [(model.encode_image(m[0], normalize=True),
                       model.encode_text(m[1], normalize=True)) for m in micro]
    parts = {"contrastive": 0.0, "classification": 0.0, "head_correct": 0}
    for j, (pixels, tokens, labels) in enumerate(micro):
        with autocast:
            image = model.encode_image(pixels, normalize=True)
            text = model.encode_text(tokens, normalize=True)
            images = torch.cat([c[0] for c in cached[:j]] + [image] +
                               [c[0] for c in cached[j + 1:]])
            texts = torch.cat([c[1] for c in cached[:j]] + [text] +
                              [c[1] for c in cached[j + 1:]])
        # The loss in fp32, outside autocast: inside it, the ops after .float() would run
        # in bf16 again, so the casts alone did nothing.
        with torch.autocast(_device_type(device), enabled=False):
            scale = model.logit_scale.float().exp()
            contrastive = loss_fn.contrastive(images.float(), texts.float(),
                                              scale if j == 0 else scale.detach())
            total = contrastive
            if loss_fn.lam:
                classification, logits = loss_fn.classification_part(image.float(), labels,
                                                                     all_labels)
                total = total + loss_fn.lam * classification
                parts["classification"] += float(classification.detach())
                parts["head_correct"] += int((logits.detach().argmax(1) == labels).sum())
        total.backward()
        if j == 0:
            parts["contrastive"] = float(contrastive.detach())
    parts["loss"] = parts["contrastive"] + loss_fn.lam * parts["classification"]
    return parts


class EpochData:
    """Sample order, caption choice and batching for one epoch, all from (seed, epoch).

    ``uniform`` draws a permutation. ``class_aware`` draws each step's samples without
    replacement, class c with probability proportional to f_c ** (1 - sampling_beta), so no
    sheet is twice in one contrastive batch (where its copies would be each other's
    negatives); a sheet can recur in later steps. Batches are built lazily by a DataLoader
    (``trainer.cache.StepBatches``).
    """

    def __init__(self, examples, pixels: Callable[[int], torch.Tensor], labels: torch.Tensor,
                 tokenizer, cfg: TrainConfig, workers: int = 0):
        self.examples, self.pixels, self.labels = examples, pixels, labels
        self.tokenizer, self.cfg, self.workers = tokenizer, cfg, workers
        counts = np.bincount(labels.numpy())
        self.weights = torch.from_numpy(class_aware_sample_weights(labels.numpy(), counts,
                                                                   cfg.sampling_beta))
        self.per_step = min(cfg.batch_size * cfg.accum_freq, len(examples))
        steps = max(1, len(examples) // self.per_step)
        self.steps_per_epoch = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch \
            else steps

    def step_indices(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        size = self.per_step
        if self.cfg.sampling == "class_aware":
            return [torch.multinomial(self.weights, size, replacement=False,
                                      generator=generator).tolist()
                    for _ in range(self.steps_per_epoch)]
        order = torch.randperm(len(self.examples), generator=generator)
        return [order[s * size:(s + 1) * size].tolist() for s in range(self.steps_per_epoch)]

    def captions(self, epoch: int) -> list[str]:
        rng = np.random.default_rng([self.cfg.seed, epoch])
        chosen = rng.integers(0, 1 << 30, size=len(self.examples))
        return [e.captions[c % len(e.captions)]
                for e, c in zip(self.examples, chosen, strict=True)]

    def batches(self, epoch: int) -> Iterable[list[MicroBatch]]:
        dataset = StepBatches(self.step_indices(epoch), self.captions(epoch), self.labels,
                              self.pixels, self.tokenizer, self.cfg.batch_size)
        return step_loader(dataset, self.workers, self.cfg.device)


# ----------------------------------------------------------------------------- helpers


def model_config_for(spec: str) -> dict:
    """The open_clip model config of a loadable spec (an open_clip name, ``local-dir:`` or
    ``hf-hub:``), to save the fine-tuned weights with: open_clip's own reader."""
    import open_clip

    config = open_clip.get_model_config(spec)
    if config is None:
        raise InvalidInputError(f"{spec}: unknown open_clip model; cannot save its config")
    return config


def loader_workers_for(device: str) -> int:
    """Auto DataLoader workers: none on CPU, where they take cores from the training
    threads (2 workers trained the tiny model at 0.6x the samples/s of none on the 2-core
    VM), and min(8, cores - 1) on CUDA, where the CPU only feeds the GPU."""
    if not device.startswith("cuda"):
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def parent_configs(encoder: Encoder) -> tuple[dict, dict]:
    """(model config, preprocessing config) to save a fine-tuned child with: the parent's
    architecture and tokenizer settings (``text_cfg``: context length, HF tokenizer name and
    kwargs) and its image mean, std and resize settings. Without the latter a child reloads
    with open_clip's defaults (OpenAI's mean and std), whatever its parent used."""
    import open_clip

    model_cfg = json.loads(json.dumps(model_config_for(encoder.info.spec)))
    text_cfg = model_cfg.setdefault("text_cfg", {})
    context_length = getattr(encoder.tokenizer, "context_length", None)
    if context_length:
        text_cfg["context_length"] = int(context_length)
    hf_name = getattr(getattr(encoder.tokenizer, "tokenizer", None), "name_or_path", "")
    if hf_name and not text_cfg.get("hf_tokenizer_name"):
        text_cfg["hf_tokenizer_name"] = hf_name  # hf-hub parents that named it by repo only
    preprocess = open_clip.get_model_preprocess_cfg(encoder.model)
    return model_cfg, json.loads(json.dumps(preprocess))  # tuples -> lists, as JSON has


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _device_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _autocast(device: str):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # fp32 on CPU


def _lock_towers(model, cfg: TrainConfig) -> None:
    if cfg.lock_image_unlocked >= 0:
        model.lock_image_tower(unlocked_groups=cfg.lock_image_unlocked)
    if cfg.lock_text_unlocked >= 0:
        model.lock_text_tower(unlocked_layers=cfg.lock_text_unlocked)


def _optimizer(model, loss_fn, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; as open_clip, no weight decay on gains, biases and the temperature. The head's
    parameters learn at ``head_lr_scale`` x lr (their groups carry ``lr_scale``)."""
    head = {id(p) for p in loss_fn.parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    names = {id(p): n for n, p in [*model.named_parameters(), *loss_fn.named_parameters()]}
    for parameter in trainable_parameters(model, loss_fn):
        exclude = not decays(names.get(id(parameter), ""), parameter)
        groups.setdefault((id(parameter) in head, exclude), []).append(parameter)
    anchored = cfg.regularize == "to_anchor"  # the model's decay is Anchor.pull's then
    params = [{"params": ps, "weight_decay": 0.0 if no_decay or (anchored and not is_head)
               else cfg.weight_decay, "lr_scale": cfg.head_lr_scale if is_head else 1.0}
              for (is_head, no_decay), ps in sorted(groups.items())]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def decays(name: str, parameter) -> bool:
    """Whether weight decay applies, as open_clip: not to gains, biases, norms or the
    temperature."""
    return not (parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name
                or "logit_scale" in name)


def warmup_steps(total: int, cfg: TrainConfig) -> int:
    """The configured warm-up, or a tenth of the run (at least one step) for -1."""
    return cfg.warmup_steps if cfg.warmup_steps >= 0 else max(1, total // 10)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero (a function of the step: resumes exactly)."""
    warmup = warmup_steps(total, cfg)
    if warmup and step < warmup:
        return cfg.lr * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def objective(cfg: TrainConfig, embed_dim: int, class_counts: Sequence[int]
              ) -> PatentClipLoss:
    """The run's loss module: contrastive only; the seed's objective (its head random and
    fixed, as the seed's never trained: weight 0.2, dropout 0.3, plain CE); or contrastive
    plus ``cls_weight`` times a trained head's distribution-aware term."""
    if cfg.loss == "contrastive":
        return PatentClipLoss(embed_dim, class_counts, lam=0.0, mode="plain")
    if cfg.loss == "seed":
        return PatentClipLoss(embed_dim, class_counts, lam=0.2, mode="plain", dropout=0.3,
                              train_head=False)
    return PatentClipLoss(embed_dim, class_counts, lam=cfg.cls_weight, mode=cfg.loss,
                          tau=cfg.tau, beta=cfg.cb_beta)


class Anchor:
    """The weights decay pulls toward (``regularize=to_anchor``): after each optimizer step,
    ``w -= lr * weight_decay * (w - anchor)``, AdamW's decoupled decay with the anchor in
    place of zero (L2-SP, Li et al. 2018). Without new signal the weights then stay near
    the anchor run after run instead of shrinking toward zero every week."""

    def __init__(self, pairs: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
        self.pairs = pairs

    @classmethod
    def of(cls, model, cfg: TrainConfig) -> Anchor:
        """The anchor of ``model``'s decayed weights: ``cfg.anchor_model``'s, or the model's
        own weights now (its parent's, before any step)."""
        source = dict(model.named_parameters())
        if cfg.anchor_model:
            anchor_model = Encoder.load(cfg.anchor_model, device=cfg.device).model
            source = dict(anchor_model.named_parameters())
        pairs = []
        for name, parameter in model.named_parameters():
            if not (parameter.requires_grad and decays(name, parameter)):
                continue
            if name not in source or source[name].shape != parameter.shape:
                raise InvalidInputError(f"anchor_model {cfg.anchor_model}: no weight {name} "
                                        f"of shape {tuple(parameter.shape)}; an anchor must "
                                        "have the trained model's architecture")
            pairs.append((parameter, source[name].detach().clone()))
        return cls(pairs)

    @torch.no_grad()
    def pull(self, rate: float) -> None:
        for parameter, anchor in self.pairs:
            parameter.add_(anchor - parameter, alpha=rate)



def weight_distance(model, anchor) -> float:
    """Relative L2 distance of ``model``'s decayed weights from ``anchor``'s (the same
    architecture): ||w - a|| / ||a||. How far a lineage of weekly runs has drifted."""
    anchors = dict(anchor.named_parameters())
    diff = norm = 0.0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if decays(name, parameter):
                a = anchors[name].to(parameter.device)
                diff += float((parameter - a).pow(2).sum())
                norm += float(a.pow(2).sum())
    return math.sqrt(diff / norm) if norm else 0.0


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)

