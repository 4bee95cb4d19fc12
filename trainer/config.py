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
from trainer.gate import STATISTICS, RolloutGate
from trainer.pipeline import CyclePlan
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
        "", "a frozen evaluation set's name (the gate then uses that set alone); empty = "
        "pool the newest eval_weeks weekly sets (week-YYYYMMDD)")
    eval_weeks: int = setting(
        4, "weekly evaluation sets the gate pools; the candidate trains on older weeks only")
    caption_files: str = setting(
        "", "comma-separated CSVs with id,caption columns (extra captions)", flag="--captions")
    gate_metric: str = setting(PRIMARY_METRIC)
    gate_statistic: str = setting(
        "sign_flip_rr", "sign_flip_rr: the paired sign-flip test over patents of mean "
        "reciprocal rank (capped at 100), exact up to 16 patents; bootstrap_recall: the "
        "paired bootstrap of R@K's difference (anti-conservative below about 30 patents)",
        choices=STATISTICS)
    gate_margin: float = setting(
        0.005, "the smallest gain worth a full reindex, in the statistic's units (MRR for "
        "sign_flip_rr): promote only a candidate shown better than live by more than this; "
        "-1 promotes any candidate (an operator's approval)")
    gate_yearly_alpha: float = setting(
        0.05, "sign_flip_rr: the chance of any false promotion in a year of decisions; each "
        "decision is tested at gate_yearly_alpha / gate_decisions_per_year")
    gate_decisions_per_year: int = setting(52, "gate decisions a year (one a week)")
    gate_drawing_margin: float = setting(
        0.02, "drawing -> patent guard: promote only a candidate shown no worse than live by "
        "more than this in mean reciprocal rank; 1 or more = off")
    gate_per_query: str = setting(
        "per_query", "what the gate pairs: per_query (the served protocol's text queries) or "
        "per_query_cited (examiner-cited prior art; needs cited_protocol and a corpus that "
        "holds the cited patents: trainer/README.md says how many)",
        choices=("per_query", "per_query_cited"))
    cited_protocol: bool = setting(
        False, "benchmark examiner-cited prior art too: each evaluation grant searches the "
        "whole image store for its examiner's design citations (costly at scale)")
    gate_min_tercile_patents: int = setting(30, "terciles with fewer patents never veto")
    gate_confidence: float = setting(0.95, "of the paired bootstrap interval")
    gate_resamples: int = setting(2000, "bootstrap resamples (of patents)")
    gate_seed: int = setting(0, "the bootstrap's seed: the same results give the same decision")
    outside_trained_through: str = setting(
        "hf-hub:hhshomee/PatentCLIP=20221231",
        "training windows of models that are not registered versions: comma-separated "
        "spec-prefix=YYYYMMDD (last grant date trained on); evaluation weeks up to that day "
        "are refused. The published PatentCLIP checkpoints saw grants through 2022")
    gap_weeks: int = setting(
        1, "weeks between the last week a model (with its ancestors) trained on and the first "
        "evaluation week: training stops that much earlier, and the gate refuses sets that "
        "start within it")
    distractor_sheets: int = setting(
        2000, "older sheets (a fixed, seeded sample, frozen once) added to every evaluation "
        "gallery, so the gate ranks among distractors as the service does; 0 = none")
    replay_ratio: float = setting(
        1.0, "a cycle trains on the sheets granted after its parent's training window plus "
        "this many older sheets per new one (a seeded replay sample), not on all history "
        "again; < 0 = all history")
    keep_checkpoints: int = setting(2, "epoch checkpoints kept per run (the last K)")
    loader_workers: int = setting(
        -1, "DataLoader worker processes; 0 = batches built in the trainer; -1 = auto: 0 on "
        "CPU (faster there: workers take the training threads' cores), min(8, cores - 1) on "
        "CUDA")
    sheet_cache_dir: str = setting("", "decoded-sheet cache; empty = <runs_dir>/sheet-cache")
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
        if not 0.5 <= self.gate_confidence < 1 or self.gate_resamples < 100:
            raise InvalidInputError("trainer gate: confidence in [0.5, 1), resamples >= 100")
        if not 0 < self.gate_yearly_alpha < 1 or self.gate_decisions_per_year < 1:
            raise InvalidInputError("trainer gate: yearly_alpha in (0, 1), decisions_per_year "
                                    ">= 1")
        if self.distractor_sheets < 0:
            raise InvalidInputError("trainer setting distractor_sheets: must be >= 0")
        if self.gap_weeks < 0:
            raise InvalidInputError(f"trainer setting gap_weeks={self.gap_weeks}: must be >= 0")
        if self.keep_checkpoints < 1 or self.loader_workers < -1:
            raise InvalidInputError("trainer settings: keep_checkpoints >= 1, loader_workers >= "
                                    "-1 (auto)")
        outside_windows(self.outside_trained_through)

    def gate(self) -> RolloutGate:
        return RolloutGate(self.gate_metric, self.gate_margin, self.gate_min_tercile_patents,
                           self.gate_confidence, self.gate_resamples, self.gate_seed,
                           self.gate_statistic, self.gate_yearly_alpha,
                           self.gate_decisions_per_year, self.gate_drawing_margin,
                           self.gate_per_query)

    def plan(self, train: TrainConfig) -> CyclePlan:
        files = tuple(f.strip() for f in self.caption_files.split(",") if f.strip())
        return CyclePlan(train, self.runs_dir, self.policy, self.eval_set, self.eval_weeks,
                         files, self.gate(), self.failpoint,
                         outside_windows(self.outside_trained_through), self.keep_checkpoints,
                         self.loader_workers, self.sheet_cache_dir, gap_weeks=self.gap_weeks,
                         replay_ratio=self.replay_ratio,
                         distractor_sheets=self.distractor_sheets,
                         cited_protocol=self.cited_protocol)


def outside_windows(text: str) -> tuple[tuple[str, int], ...]:
    """'prefix=YYYYMMDD,...' -> ((prefix, yyyymmdd), ...)."""
    windows = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        prefix, _, day = part.rpartition("=")
        if not prefix or not (day.isdigit() and len(day) == 8):
            raise InvalidInputError(f"trainer setting outside_trained_through: {part!r} is not "
                                    "spec-prefix=YYYYMMDD")
        windows.append((prefix, int(day)))
    return tuple(windows)


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
