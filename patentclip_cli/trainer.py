"""The model commands of ``patentclip``: train, benchmark, models, rollout, rollback.

    patentclip train --epochs 3 --lr 1e-3            (one trainer cycle now; rerun resumes)
    patentclip benchmark patentclip_tiny_0123456789ab --eval-set week-20210315
    patentclip models list | models show VERSION
    patentclip rollout VERSION --margin 0.01         (gate, reindex, switch the live alias)
    patentclip gate compare --candidate A.json --live B.json [--margin M] [--json]
    patentclip rollback
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from patentclip.config import CoreSettings
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import InvalidInputError
from patentclip.model.registry import ModelRegistry
from patentclip.store import open_store
from patentclip_cli.common import core_flags, kafka_flags, kafka_settings
from trainer.benchmark import PRIMARY_METRIC, metric, summary_markdown

logger = logging.getLogger(__name__)

EXIT_REJECTED = 1


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    kafka = kafka_flags()
    train = sub.add_parser("train", help="run one trainer cycle now (python -m trainer "
                           "--once): data, fine-tune, benchmark, register; flags as "
                           "python -m trainer")
    train.add_argument("trainer_args", nargs=argparse.REMAINDER)  # main() forwards them

    bench = sub.add_parser("benchmark", parents=[common, core_flags("images_dir")],
                           help="benchmark a model version (or any model spec) on a frozen "
                           "evaluation set")
    bench.add_argument("version", help="registered version, or open_clip name / local-dir:")
    bench.add_argument("--eval-set", default="", help="frozen set name (default: the newest "
                       "week's, frozen now from the image store if missing)")
    bench.add_argument("--eval-weeks", type=int, default=1)
    bench.add_argument("--captions", action="append", default=[],
                       help="CSV with id,caption columns (extra captions); repeatable")
    bench.add_argument("--out", type=Path, help="report folder (default data/benchmarks/...)")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--impact", type=Path, metavar="CSV",
                       help="the seed's test set instead (IMPACT format, e.g. "
                       "../shared/impact-metadata/test2021.csv): front pages with LLaVA captions")
    bench.add_argument("--impact-images", type=Path, metavar="DIR",
                       help="--impact: the folder its filepath column is relative to")
    bench.add_argument("--limit", type=int, default=0, help="--impact: the first N rows only")
    bench.add_argument("--reference-preprocessing", action="store_true",
                       help="prepare images as open_clip's eval transform does (resize, centre "
                       "crop), as the published numbers were measured, not trimmed and padded")
    bench.add_argument("--allow-training-overlap", action="store_true",
                       help="benchmark even when the set lies inside the model's training "
                       "window (e.g. the hub PatentCLIP models on 2021 grants); logged and "
                       "recorded in the results")
    bench.add_argument("--cited", action="store_true",
                       help="also examiner-cited prior art: the set's grants search every grant "
                       "of the image store for the design patents their examiner cited")
    bench.set_defaults(run=_run_benchmark)

    models = sub.add_parser("models", parents=[common], help="the model registry")
    models_sub = models.add_subparsers(title="models commands")
    listing = models_sub.add_parser("list", parents=[common], help="registered versions")
    listing.set_defaults(run=_run_models_list)
    show = models_sub.add_parser("show", parents=[common], help="one version's manifest and "
                                 "decisions")
    show.add_argument("version")
    show.set_defaults(run=_run_models_show)

    rollout = sub.add_parser("rollout", parents=[common, kafka, core_flags("images_dir")],
                             help="gate a version against live, reindex, switch the alias")
    rollout.add_argument("version")
    rollout.add_argument("--eval-set", default="", help="default: the newest sets the "
                         "version was benchmarked on (PATENTCLIP_TRAINER_EVAL_WEEKS of them)")
    gate_flags(rollout)
    rollout.set_defaults(run=_run_rollout)

    gate = sub.add_parser("gate", parents=[common], help="the rollout gate on result files")
    gate_sub = gate.add_subparsers(title="gate commands")
    compare = gate_sub.add_parser(
        "compare", parents=[common], help="paired bootstrap of candidate vs live benchmark "
        "results (benchmark.json, or a JSON list of them: pooled weeks); exit 0 promote, "
        "1 reject, 2 bad input")
    compare.add_argument("--candidate", type=Path, required=True)
    compare.add_argument("--live", type=Path, required=True)
    gate_flags(compare)
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(run=_run_gate_compare)

    rollback = sub.add_parser("rollback", parents=[common],
                              help="point the live alias back at the previous collection")
    rollback.set_defaults(run=_run_rollback)


def gate_flags(parser: argparse.ArgumentParser) -> None:
    """The gate's flags, defaulting to the trainer's gate settings (PATENTCLIP_TRAINER_GATE_*)."""
    parser.add_argument("--metric", default=None, help=f"default {PRIMARY_METRIC}")
    parser.add_argument("--margin", type=float, default=None,
                        help="the lower bound of candidate - live must be above this")
    parser.add_argument("--min-tercile-patents", type=int, default=None,
                        help="a tercile with fewer patents never vetoes")
    parser.add_argument("--seed", type=int, default=None, help="the bootstrap's seed")


def _gate(args):
    from trainer.config import JobSettings

    job = JobSettings.from_env()
    overrides = {"gate_metric": args.metric, "gate_margin": args.margin,
                 "gate_min_tercile_patents": args.min_tercile_patents, "gate_seed": args.seed}
    return dataclasses.replace(job, **{k: v for k, v in overrides.items() if v is not None}
                               ).gate()


def _run_gate_compare(args, settings: CoreSettings) -> int:
    candidate, live = _read_results(args.candidate), _read_results(args.live)
    try:
        verdict = _gate(args).decide(candidate, live)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--candidate {args.candidate}, --live {args.live}: {exc}"
                                ) from exc
    if args.json:
        print(json.dumps({**verdict.summary, "reasons": verdict.reasons}, indent=2))
    else:
        print(f"gate: {verdict.summary['decision'].upper()}")
        print("\n".join(f"  - {r}" for r in verdict.reasons))
    return 0 if verdict.passed else EXIT_REJECTED


def _read_results(path: Path) -> list[dict]:
    """A benchmark.json (one evaluation set) or a JSON list of them (pooled weeks)."""
    try:
        body = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read benchmark results: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidInputError(f"{path}: not JSON: {exc}") from exc
    results = [body] if isinstance(body, dict) else body
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise InvalidInputError(f"{path}: expected a benchmark result object or a list of them")
    return results


def _run_benchmark(args, settings: CoreSettings) -> int:
    from trainer.benchmark import write_reports
    from trainer.pipeline import Benchmarker, resolve_model

    registry = ModelRegistry(settings.registry_dir)
    if args.impact:
        eval_set, images = _impact_set(args)
    else:
        images = LocalImageStore(settings.images_dir)
        eval_set = _eval_set(registry, images, args.eval_set, args.eval_weeks, args.captions)
    spec = resolve_model(registry, args.version)
    overlap = _training_overlap(registry, args.version, spec, eval_set)
    if overlap and not args.allow_training_overlap:
        raise InvalidInputError(f"{eval_set.name} lies inside the training window of "
                                f"{args.version} ({overlap}): its figures would be on training "
                                "data. --allow-training-overlap benchmarks it anyway (logged)")
    if overlap:
        logger.warning("benchmarking %s on %s inside its training window (%s): "
                       "--allow-training-overlap", args.version, eval_set.name, overlap)
    name = args.version if registry.exists(args.version) else Path(spec).name
    out = args.out or Path("data/benchmarks") / name / eval_set.name
    if args.impact:  # the IMPACT images are outside the image store: no distractors
        bench = Benchmarker(images, settings.encoder_options(), None, False,
                            args.reference_preprocessing)
    else:
        bench = _benchmarker(registry, images, settings, [eval_set], args.captions,
                             args.cited, args.reference_preprocessing)
    results = bench(spec, settings.pretrained if spec == settings.model else "", eval_set)
    if overlap:
        results["training_window_overridden"] = overlap
    write_reports(results, out)
    if registry.exists(args.version):
        registry.record_benchmark(args.version, results)
    print(json.dumps(results, indent=2) if args.json else summary_markdown(results))
    print(f"reports: {out}/benchmark.json, benchmark.md, recall_by_class.png",
          file=sys.stderr if args.json else sys.stdout)  # --json: stdout is JSON only
    return 0


def _run_models_list(args, settings: CoreSettings) -> int:
    registry = ModelRegistry(settings.registry_dir)
    live = _live_version(settings)
    versions = registry.list()
    if not versions:
        print(f"no model versions in {registry.root} (run `patentclip train`)")
        return 0
    print(f"{'version':<36} {'created':<20} {'parent':<36} {'sheets':>6}  {PRIMARY_METRIC}")
    for v in versions:
        m = v.manifest
        results = list(m.get("benchmarks", {}).values())
        score = f"{metric(results[-1], PRIMARY_METRIC):.3f} on {results[-1].get('eval_set')}" \
            if results else "-"
        marker = " (live)" if v.version == live else ""
        print(f"{v.version + marker:<36} {m.get('created', '')[:19]:<20} "
              f"{m.get('parent', '') or '-':<36} {m.get('data', {}).get('sheets', 0):>6}  {score}")
    return 0


def _run_models_show(args, settings: CoreSettings) -> int:
    registry = ModelRegistry(settings.registry_dir)
    entry = registry.get(args.version)
    decisions = [d for d in registry.decisions() if d.get("version") == args.version]
    print(json.dumps({"version": entry.version, "spec": entry.spec,
                      "live": entry.version == _live_version(settings),
                      "manifest": entry.manifest, "decisions": decisions}, indent=2))
    return 0


def _run_rollout(args, settings: CoreSettings) -> int:
    from trainer.config import TrainerSettings, outside_windows
    from trainer.data import EvalSet
    from trainer.main import topic_reindexer
    from trainer.rollout import Rollout

    registry = ModelRegistry(settings.registry_dir)
    entry = registry.verify(args.version)
    images = LocalImageStore(settings.images_dir)
    trainer = dataclasses.replace(TrainerSettings.from_env(), core=settings,
                                  kafka=kafka_settings(args))
    if args.eval_set:
        eval_sets = [_eval_set(registry, images, args.eval_set, 1, [])]
    else:  # the sets the version was benchmarked on, newest eval_weeks of them
        names = dict.fromkeys(r.get("eval_set", "") for r in
                              entry.manifest.get("benchmarks", {}).values())
        names.pop("", None)
        if not names:
            raise InvalidInputError(f"{args.version} has no benchmark results: run patentclip "
                                    "benchmark first or name --eval-set")
        eval_sets = sorted((EvalSet.load(registry.eval_set_path(n)) for n in names),
                           key=lambda s: s.window["first_grant_date"])[-trainer.job.eval_weeks:]
    with open_store(settings) as store:
        rollout = Rollout(registry, store, _gate(args), eval_sets,
                          _benchmarker(registry, images, settings, eval_sets, []),
                          topic_reindexer(trainer),
                          outside_windows(trainer.job.outside_trained_through),
                          trainer.job.gap_weeks)
        decision = rollout.promote(args.version)
    print("\n".join(decision.lines()))
    return 0 if decision.decision == "promoted" else EXIT_REJECTED


def _run_rollback(args, settings: CoreSettings) -> int:
    from trainer.rollout import Rollout

    registry = ModelRegistry(settings.registry_dir)
    with open_store(settings) as store:
        decision = Rollout(registry, store).rollback()
    print("\n".join(decision.lines()))
    return 0


def _eval_set(registry: ModelRegistry, images: LocalImageStore, name: str, weeks: int,
              captions: list[str]):
    """The named frozen set; else frozen now from the newest weeks in the image store."""
    from trainer.data import EvalSet
    from trainer.pipeline import build_examples, ensure_eval_set

    path = registry.eval_set_path(name) if name else None
    if path is not None and path.is_file():
        return EvalSet.load(path)
    examples, _ = build_examples(images, captions)
    return ensure_eval_set(registry, images, examples, name, weeks)


def _impact_set(args):
    from trainer.impact import load_impact

    if not args.impact_images:
        raise InvalidInputError("--impact needs --impact-images DIR (the folder of its "
                                "filepath column)")
    eval_set, report = load_impact(args.impact, args.impact_images, limit=args.limit)
    left_out = ", ".join(f"{n} {reason}" for reason, n in report.left_out.items())
    print(f"{args.impact}: {report.used} of {report.rows} rows"
          + (f" (left out: {left_out})" if left_out else ""), file=sys.stderr)
    return eval_set, LocalImageStore(args.impact_images)


def _training_overlap(registry: ModelRegistry, version: str, spec: str, eval_set) -> str:
    """The model's training window when the set starts inside it, else ""."""
    from trainer.config import JobSettings, outside_windows
    from trainer.rollout import Rollout

    windows = outside_windows(JobSettings.from_env().outside_trained_through)
    window = Rollout(registry, None, outside_windows=windows, gap_weeks=0).window(version, spec)
    if not window.overlaps(eval_set):
        return ""
    return str(window)


def _benchmarker(registry: ModelRegistry, images: LocalImageStore, settings: CoreSettings,
                 eval_sets: list, captions: list[str], cited: bool = False,
                 reference: bool = False):
    """Benchmarks as the trainer's cycle does: the service's encoder options and the
    distractor gallery (the frozen one; frozen now if there is none yet)."""
    from trainer.config import JobSettings
    from trainer.pipeline import Benchmarker, build_examples, ensure_distractors

    job = JobSettings.from_env()
    path = registry.eval_set_path(f"distractors-{job.distractor_sheets}")
    examples = [] if path.is_file() or job.distractor_sheets == 0 else \
        build_examples(images, captions)[0]
    distractors = ensure_distractors(registry, images, examples, eval_sets,
                                     job.distractor_sheets, job.gap_weeks)
    return Benchmarker(images, settings.encoder_options(), distractors, cited, reference)


def _live_version(settings: CoreSettings) -> str:
    with open_store(settings) as store:
        live = store.live_info()
    return live.model_version if live else ""
