"""TrainerSettings: the trainer service's one typed config (env PATENTCLIP_TRAINER_*, then
flags). Core settings (image store, registry, Milvus, device) and Kafka settings (for the
reindex of a rollout) come from their own prefixes."""

from __future__ import annotations

from dataclasses import dataclass, field

from patentclip.config import CoreSettings, require_positive, settings_from_env, with_flags
from patentclip.errors import InvalidInputError
from services.broker import KafkaSettings
from services.embedder.config import ConsumerSettings
from trainer.benchmark import PRIMARY_METRIC
from trainer.pipeline import CyclePlan
from trainer.rollout import RolloutGate
from trainer.train import LOSSES, SAMPLINGS, TrainConfig

POLICIES = ("auto", "approve")


@dataclass(frozen=True)
class JobSettings:
    """When and how the trainer runs (env PATENTCLIP_TRAINER_*)."""

    policy: str = "approve"  # auto: roll out a candidate that passes the gate; approve: wait
    schedule_weekday: int = 2  # 0 = Monday; Wednesday, after Tuesday's grants are ingested
    schedule_hour_utc: int = 6
    runs_dir: str = "data/runs"
    eval_set: str = ""  # frozen evaluation set name; empty = the newest week's (week-YYYYMMDD)
    eval_weeks: int = 1
    caption_files: str = ""  # comma-separated CSVs with id,caption columns (extra captions)
    base_model: str = ""  # empty = fine-tune from the live model
    epochs: int = 2
    batch_size: int = 32
    accum_freq: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 0
    loss: str = "logit_adjusted"  # contrastive | plain | logit_adjusted | class_balanced
    cls_weight: float = 0.5
    tau: float = 1.0
    cb_beta: float = 0.999
    sampling: str = "uniform"  # uniform | class_aware
    sampling_beta: float = 0.5
    lock_image_unlocked: int = -1
    lock_text_unlocked: int = -1
    seed: int = 0
    max_steps_per_epoch: int = 0
    gate_metric: str = PRIMARY_METRIC
    gate_margin: float = 0.0
    gate_tercile_tolerance: float = 0.02
    gate_min_tercile_queries: int = 20  # terciles with fewer eval queries are not gated
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9103  # /metrics /healthz /readyz; 0 = off
    failpoint: str = ""  # tests only: "after_checkpoint@N" blocks after the Nth checkpoint

    @classmethod
    def from_env(cls, env=None) -> JobSettings:
        return settings_from_env(cls, "PATENTCLIP_TRAINER_", env)

    def validate(self) -> None:
        require_positive(self, ("eval_weeks", "epochs", "batch_size", "accum_freq"), "trainer")
        checks = (("policy", self.policy, POLICIES), ("loss", self.loss, LOSSES),
                  ("sampling", self.sampling, SAMPLINGS))
        for name, value, allowed in checks:
            if value not in allowed:
                raise InvalidInputError(f"trainer setting {name}={value!r}: expected one of "
                                        f"{allowed}")
        if not 0 <= self.schedule_weekday <= 6 or not 0 <= self.schedule_hour_utc <= 23:
            raise InvalidInputError("trainer schedule: weekday 0-6 (Monday = 0), hour 0-23")

    def plan(self, device: str) -> CyclePlan:
        train = TrainConfig(
            base_model=self.base_model, epochs=self.epochs, batch_size=self.batch_size,
            accum_freq=self.accum_freq, lr=self.lr, weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps, loss=self.loss, cls_weight=self.cls_weight,
            tau=self.tau, cb_beta=self.cb_beta, sampling=self.sampling,
            sampling_beta=self.sampling_beta, lock_image_unlocked=self.lock_image_unlocked,
            lock_text_unlocked=self.lock_text_unlocked, seed=self.seed, device=device,
            max_steps_per_epoch=self.max_steps_per_epoch)
        files = tuple(f.strip() for f in self.caption_files.split(",") if f.strip())
        return CyclePlan(train, self.runs_dir, self.policy, self.eval_set, self.eval_weeks,
                         files, RolloutGate(self.gate_metric, self.gate_margin,
                                            self.gate_tercile_tolerance,
                                            self.gate_min_tercile_queries), self.failpoint)


@dataclass(frozen=True)
class TrainerSettings:
    core: CoreSettings = field(default_factory=CoreSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)  # reindex consumer
    job: JobSettings = field(default_factory=JobSettings)

    @classmethod
    def from_env(cls, env=None) -> TrainerSettings:
        return cls(CoreSettings.from_env(env), KafkaSettings.from_env(env),
                   ConsumerSettings.from_env(env), JobSettings.from_env(env))

    def override(self, core: dict | None = None, kafka: dict | None = None,
                 job: dict | None = None) -> TrainerSettings:
        return TrainerSettings(with_flags(self.core, core), with_flags(self.kafka, kafka),
                               self.consumer, with_flags(self.job, job))
