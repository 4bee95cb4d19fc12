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
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from patentclip.config import Section, setting
from patentclip.encoder import Encoder, save_local_model, weights_digest
from patentclip.errors import ImageDecodeError, InvalidInputError, NotFoundError
from patentclip.imagestore import LocalImageStore
from services.common.failpoints import Failpoints
from trainer.data import TrainingExample, class_frequencies, data_window
from trainer.losses import MODES, PatentClipLoss, class_aware_sample_weights, trainable_parameters

logger = logging.getLogger(__name__)

LOSSES = ("contrastive", *MODES)
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
    lr: float = setting(1e-4, "peak learning rate (AdamW, cosine after the warm-up)")
    weight_decay: float = setting(0.1, "AdamW weight decay")
    warmup_steps: int = setting(0, "optimizer steps of linear warm-up")
    loss: str = setting("logit_adjusted", "the objective", choices=LOSSES)
    cls_weight: float = setting(0.5, "lambda of the classification term")
    tau: float = setting(1.0, "logit adjustment strength")
    cb_beta: float = setting(0.999, "class-balanced effective-number beta")
    sampling: str = setting("uniform", "how batches are drawn", choices=SAMPLINGS)
    sampling_beta: float = setting(0.5, "class-aware: p_c proportional to f_c ** -beta")
    lock_image_unlocked: int = setting(
        -1, "lock the image tower except its last N groups (-1: train it all)")
    lock_text_unlocked: int = setting(
        -1, "lock the text tower except its last N layers (-1: train it all)")
    seed: int = setting(0, "seeds weights, data order and sampling")
    device: str = "cpu"  # CoreSettings.device: not part of the run's identity (digest)
    max_steps_per_epoch: int = setting(0, "0 = a full pass over the data")

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss {self.loss!r}: expected one of {LOSSES}")
        if self.sampling not in SAMPLINGS:
            raise InvalidInputError(f"sampling {self.sampling!r}: expected one of {SAMPLINGS}")
        for name in ("epochs", "batch_size", "accum_freq"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InvalidInputError(f"lr must be > 0, got {self.lr}")

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
    skipped: list[str] = field(default_factory=list)


class FineTuner:
    """One fine-tuning run over examples whose drawings are in an image store."""

    def __init__(self, config: TrainConfig, examples: Sequence[TrainingExample],
                 images: LocalImageStore, run_dir: str | Path, progress: bool = True,
                 stop: threading.Event | None = None,
                 failpoints: Failpoints | None = None) -> None:
        config.validate()
        if not examples:
            raise InvalidInputError("no training examples (nothing ingested before the "
                                    "evaluation weeks?)")
        self.config, self.examples, self.images = config, list(examples), images
        self.run_dir = Path(run_dir)
        self.progress, self.stop = progress, stop or threading.Event()
        self.failpoints = failpoints or Failpoints()  # none set: production

    # -- the run

    def run(self) -> TrainResult:
        started = time.perf_counter()
        cfg = self.config
        result = TrainResult(run_dir=str(self.run_dir))
        _seed_everything(cfg.seed)
        encoder = Encoder.load(cfg.base_model, pretrained=cfg.pretrained or None,
                               device=cfg.device)
        model_cfg = model_config_for(encoder.info.spec)
        result.parent_version = encoder.model_version
        pixels, examples, result.skipped = self._decode(encoder)
        frequencies = class_frequencies(examples)
        classes = list(frequencies)
        result.data = data_window(examples)
        self._write_params(result.data, frequencies, encoder)
        model = encoder.model
        _lock_towers(model, cfg)
        torch.manual_seed(cfg.seed)  # the head's initial weights
        loss_fn = PatentClipLoss(encoder.dim, [frequencies[c]["sheets"] for c in classes],
                                 lam=0.0 if cfg.loss == "contrastive" else cfg.cls_weight,
                                 mode="plain" if cfg.loss == "contrastive" else cfg.loss,
                                 tau=cfg.tau, beta=cfg.cb_beta).to(cfg.device)
        optimizer = _optimizer(model, loss_fn, cfg)
        start_epoch, step = self._resume(model, loss_fn, optimizer, result)
        labels = torch.tensor([classes.index(e.label) for e in examples])
        data = _EpochData(examples, pixels, labels, encoder.tokenizer, cfg)
        total_steps = cfg.epochs * data.steps_per_epoch
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            summary, step = self._epoch(model, loss_fn, optimizer, data, epoch, step,
                                        total_steps)
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
            out = save_local_model(model, model_cfg, self.run_dir / "model")
            result.model_dir, result.weights_digest = str(out.resolve()), weights_digest(model)
        result.seconds = time.perf_counter() - started
        trained = sum(e["samples"] for e in result.epoch_losses)
        busy = sum(e["seconds"] for e in result.epoch_losses)
        result.samples_per_second = trained / busy if busy else 0.0
        (self.run_dir / "results.json").write_text(json.dumps(asdict(result), indent=2))
        return result

    def _epoch(self, model, loss_fn, optimizer, data: _EpochData, epoch: int, step: int,
               total_steps: int) -> tuple[dict | None, int]:
        cfg = self.config
        batches = data.batches(epoch)
        sums = {"loss": 0.0, "contrastive": 0.0, "classification": 0.0}
        samples, started = 0, time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not self.progress)
        for micro in bar:
            if self.stop.is_set():
                logger.info("stop requested: leaving epoch %d unfinished (not checkpointed)",
                            epoch + 1)
                return None, step
            _set_lr(optimizer, _lr_at(step, total_steps, cfg))
            optimizer.zero_grad(set_to_none=True)
            parts = accumulated_backward(model, loss_fn, micro, cfg.device)
            optimizer.step()
            with torch.no_grad():  # as open_clip: the temperature stays <= 100
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            samples += sum(len(m[2]) for m in micro)
            for key in sums:
                sums[key] += parts[key]
            rate = samples / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{parts['loss']:.3f}", samples_s=f"{rate:.1f}")
        bar.close()
        n = max(len(batches), 1)
        seconds = time.perf_counter() - started
        summary = {"epoch": epoch + 1, "steps": len(batches), "samples": samples,
                   "seconds": round(seconds, 3),
                   "samples_per_second": round(samples / seconds, 2) if seconds else 0.0,
                   **{k: v / n for k, v in sums.items()}}
        with (self.run_dir / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(summary) + "\n")
        logger.info("epoch %d: loss %.4f (contrastive %.4f, classification %.4f), %.1f "
                    "samples/s", epoch + 1, summary["loss"], summary["contrastive"],
                    summary["classification"], summary["samples_per_second"])
        return summary, step

    # -- data

    def _decode(self, encoder: Encoder) -> tuple[list[torch.Tensor], list[TrainingExample],
                                                 list[str]]:
        """Decode every drawing once (threads); unreadable ones are reported and left out."""
        def one(example: TrainingExample) -> torch.Tensor | str:
            try:
                return encoder.drawing_pixels(self.images.get(example.image_uri),
                                              example.image_uri)
            except (ImageDecodeError, NotFoundError) as exc:
                return f"{example.key}: {exc}"

        with ThreadPoolExecutor(2) as pool:
            decoded = list(tqdm(pool.map(one, self.examples), total=len(self.examples),
                                desc="decoding drawings", unit="sheet",
                                disable=not self.progress))
        kept = [(p, e) for p, e in zip(decoded, self.examples, strict=True)
                if isinstance(p, torch.Tensor)]
        skipped = [p for p in decoded if isinstance(p, str)]
        for reason in skipped:
            logger.warning("training without a drawing: %s", reason)
        if not kept:
            raise InvalidInputError("no training drawing could be decoded")
        return [p for p, _ in kept], [e for _, e in kept], skipped

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
        for old in sorted(folder.glob("epoch_*.pt"))[:-2]:  # keep the last two
            old.unlink()
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


MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # pixels, tokens, labels


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
    parts = {"contrastive": 0.0, "classification": 0.0}
    for j, (pixels, tokens, labels) in enumerate(micro):
        with autocast:
            image = model.encode_image(pixels, normalize=True)
            text = model.encode_text(tokens, normalize=True)
            images = torch.cat([c[0] for c in cached[:j]] + [image] +
                               [c[0] for c in cached[j + 1:]])
            texts = torch.cat([c[1] for c in cached[:j]] + [text] +
                              [c[1] for c in cached[j + 1:]])
            scale = model.logit_scale.exp()
            contrastive = loss_fn.contrastive(images.float(), texts.float(),
                                              scale if j == 0 else scale.detach())
            total = contrastive
            if loss_fn.lam:
                classification = loss_fn.classification_part(image.float(), labels, all_labels)
                total = total + loss_fn.lam * classification
                parts["classification"] += float(classification.detach())
        total.backward()
        if j == 0:
            parts["contrastive"] = float(contrastive.detach())
    parts["loss"] = parts["contrastive"] + loss_fn.lam * parts["classification"]
    return parts


class _EpochData:
    """Sample order, caption choice and batching for one epoch, all from (seed, epoch)."""

    def __init__(self, examples, pixels, labels: torch.Tensor, tokenizer, cfg: TrainConfig):
        self.examples, self.pixels, self.labels = examples, pixels, labels
        self.tokenizer, self.cfg = tokenizer, cfg
        counts = np.bincount(labels.numpy())
        self.weights = torch.from_numpy(class_aware_sample_weights(labels.numpy(), counts,
                                                                   cfg.sampling_beta))
        self.per_step = cfg.batch_size * cfg.accum_freq
        steps = max(1, len(examples) // self.per_step)
        self.steps_per_epoch = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch \
            else steps

    def batches(self, epoch: int) -> list[list[MicroBatch]]:
        generator = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        n = len(self.examples)
        if self.cfg.sampling == "class_aware":
            order = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        rng = np.random.default_rng([self.cfg.seed, epoch])
        chosen = rng.integers(0, 1 << 30, size=n)
        size = min(self.per_step, n)
        steps = []
        for s in range(self.steps_per_epoch):
            indices = order[s * size:(s + 1) * size].tolist()
            micro = [self._micro(indices[i:i + self.cfg.batch_size], chosen)
                     for i in range(0, len(indices), self.cfg.batch_size)]
            steps.append(micro)
        return steps

    def _micro(self, indices: list[int], chosen: np.ndarray) -> MicroBatch:
        captions = [self.examples[i].captions[chosen[i] % len(self.examples[i].captions)]
                    for i in indices]
        return (torch.stack([self.pixels[i] for i in indices]), self.tokenizer(captions),
                self.labels[indices])


# ----------------------------------------------------------------------------- helpers


def model_config_for(spec: str) -> dict:
    """The open_clip model config of a loadable spec (an open_clip name, ``local-dir:`` or
    ``hf-hub:``), to save the fine-tuned weights with: open_clip's own reader."""
    import open_clip

    config = open_clip.get_model_config(spec)
    if config is None:
        raise InvalidInputError(f"{spec}: unknown open_clip model; cannot save its config")
    return config


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


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
    """AdamW; as open_clip, no weight decay on gains, biases and the temperature."""
    decay, no_decay = [], []
    names = {id(p): n for n, p in [*model.named_parameters(), *loss_fn.named_parameters()]}
    for parameter in trainable_parameters(model, loss_fn):
        name = names.get(id(parameter), "")
        exclude = parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name \
            or "logit_scale" in name
        (no_decay if exclude else decay).append(parameter)
    return torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                              {"params": decay, "weight_decay": cfg.weight_decay}], lr=cfg.lr,
                             betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero (a function of the step: resumes exactly)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def _set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

