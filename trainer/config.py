"""TrainerSettings: the trainer service's one typed config (env PATENTCLIP_TRAINER_*, then
flags). Core settings (image store, registry, Milvus, device) and Kafka settings (for the
reindex of a rollout) come from their own prefixes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from patentclip.config import CoreSettings, Section, ServiceSettings, setting
from patentclip.errors import InvalidInputError
from services.common.broker import KafkaSettings
from services.embedder.config import ConsumerSettings
from trainer.benchmark import PRIMARY_METRIC
from trainer.pipeline import CyclePlan
from trainer.rollout import RolloutGate
from trainer.train import TrainConfig

POLICIES = ("auto", "approve")


@dataclass(frozen=True)
class JobSettings(Section):
    """When the trainer runs, on what, and how it decides (env PATENTCLIP_TRAINER_*); the
    hyperparameters are TrainConfig's (the same prefix)."""

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_TRAINER_"

    policy: str = setting(
        "approve", "auto: roll out a candidate that passes the gate; approve: wait",
        choices=POLICIES)
    schedule_weekday: int = setting(2, "0 = Monday; Wednesday, after Tuesday's grants are ingested")
    schedule_hour_utc: int = setting(6)
    runs_dir: str = setting("data/runs")
    eval_set: str = setting(
        "", "frozen evaluation set name; empty = the newest week's (week-YYYYMMDD)")
    eval_weeks: int = setting(1)
    caption_files: str = setting(
        "", "comma-separated CSVs with id,caption columns (extra captions)", flag="--captions")
    gate_metric: str = setting(PRIMARY_METRIC)
    gate_margin: float = setting(0.0)
    gate_tercile_tolerance: float = setting(0.02)
    gate_min_tercile_queries: int = setting(20, "terciles with fewer eval queries are not gated")
    metrics_host: str = setting("0.0.0.0")
    metrics_port: int = setting(9103, "/metrics /healthz /readyz; 0 = off")
    failpoint: str = setting(
        "", "tests only: \"after_checkpoint@N\" blocks after the Nth checkpoint")

    def validate(self) -> None:
        if self.eval_weeks < 1:
            raise InvalidInputError(f"trainer setting eval_weeks={self.eval_weeks}: must be "
                                    "at least 1")
        if self.policy not in POLICIES:
            raise InvalidInputError(f"trainer setting policy={self.policy!r}: expected one of "
                                    f"{POLICIES}")
        if not 0 <= self.schedule_weekday <= 6 or not 0 <= self.schedule_hour_utc <= 23:
            raise InvalidInputError("trainer schedule: weekday 0-6 (Monday = 0), hour 0-23")

    def plan(self, train: TrainConfig) -> CyclePlan:
        files = tuple(f.strip() for f in self.caption_files.split(",") if f.strip())
        return CyclePlan(train, self.runs_dir, self.policy, self.eval_set, self.eval_weeks,
                         files, RolloutGate(self.gate_metric, self.gate_margin,
                                            self.gate_tercile_tolerance,
                                            self.gate_min_tercile_queries), self.failpoint)


@dataclass(frozen=True)
class TrainerSettings(ServiceSettings):
    core: CoreSettings = field(default_factory=CoreSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)  # reindex consumer
    job: JobSettings = field(default_factory=JobSettings)
    train: TrainConfig = field(default_factory=TrainConfig)  # hyperparameters


    def validate(self) -> None:
        self.job.validate()
        self.train.validate()

    def plan(self) -> CyclePlan:
        """What one cycle does: the hyperparameters on the core's device, and the job."""
        return self.job.plan(replace(self.train, device=self.core.device))
