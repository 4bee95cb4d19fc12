"""One trainer cycle: data from everything ingested -> fine-tune from live -> benchmark ->
register -> roll out (policy ``auto``) or wait for approval (policy ``approve``).

The helpers here are shared by ``python -m trainer`` and the ``patentclip train``,
``benchmark`` and ``rollout`` commands, so each step behaves the same from both.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from patentclip.config import CoreSettings
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import InvalidInputError
from patentclip.model.encoder import Encoder
from patentclip.model.registry import ModelRegistry, ModelVersion, family_of
from patentclip.store import PatentStore
from services.common.failpoints import Failpoints
from trainer.benchmark import DistractorVectors, Protocol, encode_distractors, run_benchmark
from trainer.cited import Corpus
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
from trainer.gate import RolloutGate
from trainer.rollout import Reindex, Rollout
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


def ensure_eval_sets(registry: ModelRegistry, images: LocalImageStore,
                     examples: Sequence[TrainingExample], name: str = "", weeks: int = 4,
                     gap_weeks: int = 0) -> tuple[list[EvalSet], list[str]]:
    """The evaluation sets the gate pools, oldest first, and notes on how they were chosen.

    With a ``name``: that one frozen set (frozen now from the newest ``weeks`` weeks if it
    does not exist). Otherwise one set per week, ``week-YYYYMMDD``, for the newest
    ``weeks`` grant weeks, each frozen the first time it is used. Training needs at least
    one week older than the ``gap_weeks`` before them, so with fewer weeks ingested fewer
    are pooled (and the notes say so).
    """
    if name:
        return [ensure_eval_set(registry, images, examples, name, weeks)], []
    all_weeks = sorted({grant_week(e.grant_date) for e in examples})
    pooled = min(weeks, len(all_weeks) - 1 - gap_weeks)
    if pooled < 1:
        if len(all_weeks) > 1:
            raise InvalidInputError(f"{len(all_weeks)} grant weeks are ingested: too few for "
                                    f"an evaluation week, {gap_weeks} gap week(s) and a week "
                                    "to train on")
        time_split(examples, 1)  # raises: a time split needs more than one week
    notes = [] if pooled == weeks else [
        f"pooling {pooled} of the configured {weeks} evaluation weeks: {len(all_weeks)} grant "
        f"weeks are ingested and training needs the older ones ({gap_weeks} gap week(s) "
        "between)"]
    first = all_weeks[-pooled]
    train = [e for e in examples if grant_week(e.grant_date) < first]
    sets = []
    for week in all_weeks[-pooled:]:
        week_name = f"week-{week:%Y%m%d}"
        path = registry.eval_set_path(week_name)
        if path.is_file():
            sets.append(EvalSet.load(path))
            continue
        evaluation = [e for e in examples if grant_week(e.grant_date) == week]
        sets.append(freeze_eval_set(week_name, evaluation, train, images))
        sets[-1].save(path)
        logger.info("froze evaluation set %s: %d sheets of %d patents", week_name,
                    len(evaluation), len({e.patent for e in evaluation}))
    return sets, notes


def training_examples(examples: Sequence[TrainingExample], eval_sets: EvalSet |
                      Sequence[EvalSet], gap_weeks: int = 0) -> list[TrainingExample]:
    """Everything older than the oldest evaluation week by more than ``gap_weeks`` weeks,
    never a patent of a set."""
    eval_sets = [eval_sets] if isinstance(eval_sets, EvalSet) else list(eval_sets)
    first = min(grant_week(s.window["first_grant_date"]) for s in eval_sets)
    first -= timedelta(weeks=gap_weeks)
    held_out = {i.patent for s in eval_sets for i in s.items}
    return [e for e in examples
            if grant_week(e.grant_date) < first and e.patent not in held_out]


def ensure_distractors(registry: ModelRegistry, images: LocalImageStore,
                       examples: Sequence[TrainingExample], eval_sets: Sequence[EvalSet],
                       sheets: int, gap_weeks: int = 0) -> EvalSet | None:
    """The fixed gallery of older sheets the served protocol adds to every evaluation set,
    frozen once as ``distractors-<sheets>`` (a seeded sample of the sheets granted before
    the pooled weeks and their gap) and reused by every later cycle, so results stay
    comparable. None with ``sheets`` 0. Fewer sheets than asked when fewer are older; the
    frozen set's size is in every result (``served.distractor_sheets``)."""
    if sheets <= 0:
        return None
    path = registry.eval_set_path(f"distractors-{sheets}")
    held_out = {i.patent for s in eval_sets for i in s.items}
    if path.is_file():
        frozen = EvalSet.load(path)
        if held_out & {i.patent for i in frozen.items}:
            raise InvalidInputError(f"{path.name} holds patents of the evaluation sets; remove "
                                    "it to freeze a new one (older results will not pair)")
        return frozen
    older = training_examples(examples, eval_sets, gap_weeks)
    if not older:
        return None
    rng = np.random.default_rng(0)
    chosen = sorted(rng.choice(len(older), size=min(sheets, len(older)), replace=False))
    frozen = freeze_eval_set(path.stem, [older[i] for i in chosen], [], images)
    frozen.save(path)
    logger.info("froze the distractor gallery %s: %d sheets of %d patents", path.stem,
                len(frozen.items), len({i.patent for i in frozen.items}))
    return frozen


class Benchmarker:
    """``bench(spec, pretrained, eval_set, out_dir=None) -> results``, loading each model as
    the query service does (``CoreSettings.encoder_options``: device, batch size, backend),
    with the distractor gallery. It keeps the last model it loaded and that model's
    distractor vectors: a cycle benchmarks the candidate, then live, on every pooled week,
    and loading a ViT-L-14 once per week would cost more than some of its benchmarks."""

    def __init__(self, images: LocalImageStore, options: dict | None = None,
                 distractors: EvalSet | None = None, cited: bool = False,
                 reference: bool = False) -> None:
        """``cited``: also the examiner-cited prior-art protocol, against every grant
        record of the image store (the whole corpus: costly at scale, so opt-in);
        ``reference``: open_clip's reference preprocessing of the images."""
        self.images, self.options = images, dict(options or {})
        self.corpus = Corpus(IngestedGrants(images).read(DataReport()), images) if cited \
            else None
        self.how = Protocol(self.options.get("backend", "eager"), distractors, reference)
        self.loaded: dict[tuple[str, str], tuple[Encoder, DistractorVectors]] = {}

    @property
    def protocol(self) -> str:
        """The protocol results made here are stored and paired under."""
        return self.how.name

    def __call__(self, spec: str, pretrained: str, eval_set: EvalSet,
                 out_dir: Path | None = None) -> dict:
        if (spec, pretrained) not in self.loaded:
            self.loaded.clear()  # one model held at a time
            encoder = Encoder.load(spec, pretrained=pretrained or None, **self.options)
            self.loaded[(spec, pretrained)] = (encoder, encode_distractors(
                encoder, self.how.distractors, self.images))
        encoder, gallery = self.loaded[(spec, pretrained)]
        return run_benchmark(encoder, eval_set, self.images, out_dir, self.how, gallery,
                             self.corpus)


def benchmark_spec(spec: str, pretrained: str, eval_set: EvalSet, images: LocalImageStore,
                   options: dict | None = None, out_dir: Path | None = None,
                   distractors: EvalSet | None = None) -> dict:
    """One model on one set (``options``: Encoder.load's, as CoreSettings.encoder_options)."""
    return Benchmarker(images, options, distractors)(spec, pretrained, eval_set, out_dir)


def replay_selection(train: Sequence[TrainingExample], trained_through: int | None,
                     ratio: float, seed: int) -> tuple[list[TrainingExample], str]:
    """What a cycle trains on: the sheets granted after its parent's (lineage's) training
    window, plus a replay sample of the older ones, ``ratio`` times as many (seeded), not
    full epochs over all history again. All of it when the parent's window is unknown (an
    outside checkpoint without one, the first run), when nothing is new, or ratio < 0.
    Returns the examples and a line saying which."""
    if ratio < 0 or trained_through is None:
        return list(train), f"{len(train)} sheets, all history (no parent window or ratio < 0)"
    new = [e for e in train if e.grant_date > trained_through]
    old = [e for e in train if e.grant_date <= trained_through]
    if not new:
        return list(train), (f"nothing granted after the parent's window ({trained_through}): "
                             f"all {len(train)} sheets")
    rng = np.random.default_rng(seed)
    take = min(len(old), math.ceil(ratio * len(new)))
    replay = [old[i] for i in sorted(rng.choice(len(old), size=take, replace=False))]
    return new + replay, (f"{len(new)} new sheets (after {trained_through}) and a replay "
                          f"sample of {len(replay)} of {len(old)} older ones")


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
    candidate_metrics: dict = field(default_factory=dict)  # on the newest evaluation set
    live_metrics: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)  # the gate's figures (GateResult.summary)
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
    outside_windows: tuple[tuple[str, int], ...] = ()  # (spec prefix, trained through)
    keep_checkpoints: int = 2
    loader_workers: int = -1  # auto (train.loader_workers_for)
    sheet_cache_dir: str = ""
    gap_weeks: int = 1  # between the last training week and the first evaluation week
    replay_ratio: float = 1.0  # older sheets replayed per new one; < 0: all history
    distractor_sheets: int = 2000  # older sheets added to every evaluation gallery; 0: none
    cited_protocol: bool = False  # also examiner-cited prior art (the whole image store)


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
        eval_sets, notes = ensure_eval_sets(self.registry, self.images, examples,
                                            self.plan.eval_set, self.plan.eval_weeks,
                                            self.plan.gap_weeks)
        newest = eval_sets[-1]
        result.eval_set = ",".join(s.name for s in eval_sets)
        train = training_examples(examples, eval_sets, self.plan.gap_weeks)
        logger.info("trainer data: %d sheets (%d for training) from %d grants; evaluation sets "
                    "%s; skipped %s", len(examples), len(train), report.grants, result.eval_set,
                    report.skipped or "nothing")
        for note in notes:
            logger.info("evaluation: %s", note)
        self.on_step("train")
        base_spec, base_pretrained, base_version = self._base_model()
        config = replace(self.plan.train, base_model=base_spec, pretrained=base_pretrained)
        parent_window = Rollout(self.registry, self.store, outside_windows=self.plan.outside_windows
                                ).window(base_version, base_spec)
        train, note = replay_selection(train, parent_window.last, self.plan.replay_ratio,
                                       self.plan.train.seed)
        logger.info("trainer data: %s", note)
        # Same settings and data -> same folder, so a killed cycle resumes; new data or
        # settings -> a new run.
        data_digest = data_hash(train)[:8]
        run_dir = Path(self.plan.runs_dir) / f"{newest.name}-{config.digest}-{data_digest}"
        result.run_dir = str(run_dir)
        trained = FineTuner(config, train, self.images, run_dir, progress=self.progress,
                            stop=self.stop, failpoints=Failpoints(self.plan.failpoint),
                            keep_checkpoints=self.plan.keep_checkpoints,
                            cache_dir=self.plan.sheet_cache_dir or None,
                            loader_workers=self.plan.loader_workers).run()
        result.parent = trained.parent_version
        if trained.status != "completed":
            result.status = "stopped"
            return self._done(result, started)
        self.on_step("benchmark")
        version = register_run(self.registry, trained, config)
        result.version = version.version
        bench, pooled = self.benchmarker(eval_sets, examples), []
        for eval_set in eval_sets:  # the newest set's report goes to <run>/benchmark
            out = run_dir / "benchmark" if eval_set is newest else None
            pooled.append(bench(version.spec, "", eval_set, out))
            self.registry.record_benchmark(version.version, pooled[-1])
        (run_dir / "benchmark" / "pooled.json").write_text(json.dumps(pooled))
        result.candidate_metrics = pooled[-1]
        self.on_step("rollout")
        if self.plan.policy == "auto":
            decision = self.rollout(eval_sets, bench).promote(version.version)
            result.decision, result.reasons = decision.decision, [*notes, *decision.reasons]
            result.live_metrics, result.gate = decision.live_metrics, decision.gate
        else:
            result.decision = "awaiting_approval"
            result.reasons = [*notes,
                              f"policy 'approve': run `patentclip rollout {version.version}`"]
        result.status = "succeeded"
        return self._done(result, started)

    def benchmarker(self, eval_sets: Sequence[EvalSet],
                    examples: Sequence[TrainingExample]) -> Benchmarker:
        """Benchmarks as the service runs: its encoder options and the distractors."""
        distractors = ensure_distractors(self.registry, self.images, examples, eval_sets,
                                         self.plan.distractor_sheets, self.plan.gap_weeks)
        return Benchmarker(self.images, self.core.encoder_options(), distractors,
                           self.plan.cited_protocol)

    def rollout(self, eval_sets: Sequence[EvalSet], bench: Benchmarker) -> Rollout:
        if self.reindex is None:
            raise InvalidInputError("rollout needs a reindex source (Kafka settings)")
        return Rollout(self.registry, self.store, self.plan.gate, eval_sets, bench,
                       self.reindex, self.plan.outside_windows, self.plan.gap_weeks)

    def _base_model(self) -> tuple[str, str, str]:
        """(spec, pretrained, registered version or "") to fine-tune from: the configured
        model, else the live model (the alias' recorded spec), else the core model."""
        if self.plan.train.base_model:
            name = self.plan.train.base_model
            return resolve_model(self.registry, name), self.plan.train.pretrained, name
        live = self.store.live_info()
        if live and live.model_spec:
            return live.model_spec, live.pretrained, live.model_version
        return (resolve_model(self.registry, self.core.model), self.core.pretrained,
                self.core.model)

    def _done(self, result: CycleResult, started: float) -> CycleResult:
        result.seconds = time.perf_counter() - started
        logger.info("trainer cycle %s: version %s, decision %s (%.1fs)", result.status,
                    result.version or "-", result.decision or "-", result.seconds)
        return result

