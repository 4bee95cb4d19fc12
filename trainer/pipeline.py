"""One trainer cycle: data from everything ingested -> fine-tune from live -> benchmark ->
register -> roll out (policy ``auto``) or wait for approval (policy ``approve``).

The helpers here are shared by ``python -m trainer`` and the ``patentclip train``,
``benchmark`` and ``rollout`` commands, so each step behaves the same from both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from patentclip.config import CoreSettings
from patentclip.encoder import Encoder
from patentclip.errors import InvalidInputError
from patentclip.imagestore import LocalImageStore
from patentclip.registry import ModelRegistry, ModelVersion, family_of
from patentclip.store import PatentStore
from services.common.failpoints import Failpoints
from trainer.benchmark import run_benchmark
from trainer.data import (
    DataReport,
    EvalSet,
    IngestedGrants,
    TrainingExample,
    data_hash,
    examples_from_grant,
    freeze_eval_set,
    grant_week,
    load_extra_captions,
    time_split,
)
from trainer.rollout import Reindex, Rollout, RolloutGate
from trainer.train import FineTuner, TrainConfig, TrainResult

logger = logging.getLogger(__name__)


def build_examples(images: LocalImageStore, caption_files: Sequence[str] = ()
                   ) -> tuple[list[TrainingExample], DataReport]:
    """Training examples from every grant record in the image store."""
    report = DataReport()
    extra = load_extra_captions(caption_files)
    grants = IngestedGrants(images).read(report)
    examples = [e for g in grants for e in examples_from_grant(g, extra, report)]
    if not examples:
        raise InvalidInputError(f"no training examples in {images.root} "
                                f"({report.grants} grant records read)")
    return examples, report


def ensure_eval_set(registry: ModelRegistry, images: LocalImageStore,
                    examples: Sequence[TrainingExample], name: str = "",
                    eval_weeks: int = 1) -> EvalSet:
    """The named frozen set; frozen now from the newest ``eval_weeks`` weeks if it does not
    exist. An empty name means the rolling set of the newest week, ``week-YYYYMMDD``."""
    train, evaluation = time_split(examples, eval_weeks)
    name = name or f"week-{grant_week(max(e.grant_date for e in evaluation)):%Y%m%d}"
    path = registry.eval_set_path(name)
    if path.is_file():
        return EvalSet.load(path)
    eval_set = freeze_eval_set(name, evaluation, train, images)
    eval_set.save(path)
    logger.info("froze evaluation set %s: %d sheets of %d patents", name, len(eval_set.items),
                len({i.patent for i in eval_set.items}))
    return eval_set


def training_examples(examples: Sequence[TrainingExample], eval_set: EvalSet
                      ) -> list[TrainingExample]:
    """Everything older than the evaluation window, never a patent of the set."""
    first = eval_set.window["first_grant_date"]
    held_out = {i.patent for i in eval_set.items}
    return [e for e in examples
            if grant_week(e.grant_date) < grant_week(first) and e.patent not in held_out]


def benchmark_spec(spec: str, pretrained: str, eval_set: EvalSet, images: LocalImageStore,
                   device: str = "cpu", out_dir: Path | None = None) -> dict:
    encoder = Encoder.load(spec, pretrained=pretrained or None, device=device)
    return run_benchmark(encoder, eval_set, images, out_dir)


def resolve_model(registry: ModelRegistry, name: str) -> str:
    """A registered version's local-dir spec, or the name unchanged (any open_clip spec)."""
    return registry.get(name).spec if registry.exists(name) else name


def register_run(registry: ModelRegistry, result: TrainResult, config: TrainConfig
                 ) -> ModelVersion:
    return registry.register(result.model_dir, result.weights_digest,
                             family=family_of(result.parent_version),
                             parent=result.parent_version, data=result.data,
                             hyperparameters=asdict(config))


@dataclass
class CycleResult:
    """What one trainer cycle did (also exported as metrics)."""

    status: str = "running"  # succeeded | failed | stopped
    version: str = ""
    parent: str = ""
    eval_set: str = ""
    decision: str = ""  # promoted | rejected | awaiting_approval | ""
    reasons: list[str] = field(default_factory=list)
    candidate_metrics: dict = field(default_factory=dict)
    live_metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    run_dir: str = ""


@dataclass(frozen=True)
class CyclePlan:
    """How a cycle trains and decides (from TrainerSettings)."""

    train: TrainConfig
    runs_dir: str
    policy: str = "approve"  # auto | approve
    eval_set: str = ""
    eval_weeks: int = 1
    caption_files: tuple[str, ...] = ()
    gate: RolloutGate = RolloutGate()
    failpoint: str = ""  # tests only (services.common.failpoints)


class TrainingCycle:
    """Runs the whole loop once; each step's outcome is logged and returned."""

    def __init__(self, core: CoreSettings, plan: CyclePlan, store: PatentStore,
                 reindex: Reindex | None, stop: threading.Event | None = None,
                 progress: bool = False, on_step: Callable[[str], None] | None = None) -> None:
        self.core, self.plan, self.store, self.reindex = core, plan, store, reindex
        self.stop, self.progress = stop or threading.Event(), progress
        self.on_step = on_step or (lambda step: None)
        self.images = LocalImageStore(core.images_dir)
        self.registry = ModelRegistry(core.registry_dir)

    def run(self) -> CycleResult:
        started = time.perf_counter()
        result = CycleResult()
        self.on_step("data")
        examples, report = build_examples(self.images, self.plan.caption_files)
        eval_set = ensure_eval_set(self.registry, self.images, examples, self.plan.eval_set,
                                   self.plan.eval_weeks)
        result.eval_set = eval_set.name
        train = training_examples(examples, eval_set)
        logger.info("trainer data: %d sheets (%d for training) from %d grants; evaluation set "
                    "%s; skipped %s", len(examples), len(train), report.grants, eval_set.name,
                    report.skipped or "nothing")
        self.on_step("train")
        base_spec, base_pretrained = self._base_model()
        config = replace(self.plan.train, base_model=base_spec, pretrained=base_pretrained)
        # Same settings and data -> same folder, so a killed cycle resumes; new data or
        # settings -> a new run.
        data_digest = data_hash(train)[:8]
        run_dir = Path(self.plan.runs_dir) / f"{eval_set.name}-{config.digest}-{data_digest}"
        result.run_dir = str(run_dir)
        trained = FineTuner(config, train, self.images, run_dir, progress=self.progress,
                            stop=self.stop, failpoints=Failpoints(self.plan.failpoint)).run()
        result.parent = trained.parent_version
        if trained.status != "completed":
            result.status = "stopped"
            return self._done(result, started)
        self.on_step("benchmark")
        version = register_run(self.registry, trained, config)
        result.version = version.version
        result.candidate_metrics = benchmark_spec(version.spec, "", eval_set, self.images,
                                                  self.core.device, run_dir / "benchmark")
        self.registry.record_benchmark(version.version, eval_set.name, result.candidate_metrics)
        self.on_step("rollout")
        if self.plan.policy == "auto":
            decision = self.rollout(eval_set).promote(version.version)
            result.decision, result.reasons = decision.decision, decision.reasons
            result.live_metrics = decision.live_metrics
        else:
            result.decision = "awaiting_approval"
            result.reasons = [f"policy 'approve': run `patentclip rollout {version.version}`"]
        result.status = "succeeded"
        return self._done(result, started)

    def rollout(self, eval_set: EvalSet) -> Rollout:
        if self.reindex is None:
            raise InvalidInputError("rollout needs a reindex source (Kafka settings)")

        def bench(spec: str, pretrained: str) -> dict:
            return benchmark_spec(spec, pretrained, eval_set, self.images, self.core.device)

        return Rollout(self.registry, self.store, self.plan.gate, eval_set.name, bench,
                       self.reindex)

    def _base_model(self) -> tuple[str, str]:
        """Fine-tune from the live model (the alias' recorded spec), else the configured one."""
        if self.plan.train.base_model:
            return resolve_model(self.registry, self.plan.train.base_model), \
                self.plan.train.pretrained
        live = self.store.live_info()
        if live and live.model_spec:
            return live.model_spec, live.pretrained
        return resolve_model(self.registry, self.core.model), self.core.pretrained

    def _done(self, result: CycleResult, started: float) -> CycleResult:
        result.seconds = time.perf_counter() - started
        logger.info("trainer cycle %s: version %s, decision %s (%.1fs)", result.status,
                    result.version or "-", result.decision or "-", result.seconds)
        return result

