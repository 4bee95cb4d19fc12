"""The model commands of ``patentclip``: train, benchmark, models, rollout, rollback.

    patentclip train --epochs 3 --lr 1e-3            (one trainer cycle now; rerun resumes)
    patentclip benchmark patentclip_tiny_0123456789ab --eval-set week-20210315
    patentclip models list | models show VERSION
    patentclip rollout VERSION --margin 0.01         (gate, reindex, switch the live alias)
    patentclip rollback
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from patentclip.config import CoreSettings
from patentclip.imagestore import LocalImageStore
from patentclip.registry import ModelRegistry
from patentclip.store import open_store
from patentclip_cli.common import core_flags, kafka_flags, kafka_settings
from trainer.benchmark import PRIMARY_METRIC, metric, summary_markdown

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
    rollout.add_argument("--eval-set", default="", help="default: the set the version was "
                         "benchmarked on last")
    rollout.add_argument("--metric", default=PRIMARY_METRIC)
    rollout.add_argument("--margin", type=float, default=0.0,
                         help="the candidate must beat live by more than this")
    rollout.add_argument("--tercile-tolerance", type=float, default=0.02,
                         help="largest allowed drop of a class tercile's R@10")
    rollout.add_argument("--min-tercile-queries", type=int, default=20,
                         help="terciles with fewer evaluation queries are not gated")
    rollout.set_defaults(run=_run_rollout)

    rollback = sub.add_parser("rollback", parents=[common],
                              help="point the live alias back at the previous collection")
    rollback.set_defaults(run=_run_rollback)


def _run_benchmark(args, settings: CoreSettings) -> int:
    from trainer.pipeline import benchmark_spec, resolve_model

    registry = ModelRegistry(settings.registry_dir)
    images = LocalImageStore(settings.images_dir)
    eval_set = _eval_set(registry, images, args.eval_set, args.eval_weeks, args.captions)
    spec = resolve_model(registry, args.version)
    name = args.version if registry.exists(args.version) else Path(spec).name
    out = args.out or Path("data/benchmarks") / name / eval_set.name
    results = benchmark_spec(spec, settings.pretrained if spec == settings.model else "",
                             eval_set, images, settings.device, out)
    if registry.exists(args.version):
        registry.record_benchmark(args.version, eval_set.name, results)
    print(json.dumps(results, indent=2) if args.json else summary_markdown(results))
    print(f"reports: {out}/benchmark.json, benchmark.md, recall_by_class.png")
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
        results = list(m.get("benchmarks", {}).items())
        score = f"{metric(results[-1][1], PRIMARY_METRIC):.3f} on {results[-1][0]}" \
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
    from trainer.config import TrainerSettings
    from trainer.main import topic_reindexer
    from trainer.pipeline import benchmark_spec
    from trainer.rollout import Rollout, RolloutGate

    registry = ModelRegistry(settings.registry_dir)
    entry = registry.verify(args.version)
    images = LocalImageStore(settings.images_dir)
    name = args.eval_set or next(reversed(entry.manifest.get("benchmarks", {})), "")
    eval_set = _eval_set(registry, images, name, 1, [])
    trainer = dataclasses.replace(TrainerSettings.from_env(), core=settings,
                                  kafka=kafka_settings(args))
    gate = RolloutGate(args.metric, args.margin, args.tercile_tolerance,
                      args.min_tercile_queries)
    with open_store(settings) as store:
        rollout = Rollout(registry, store, gate, eval_set.name,
                          lambda spec, pretrained: benchmark_spec(spec, pretrained, eval_set,
                                                                  images, settings.device),
                          topic_reindexer(trainer))
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


def _live_version(settings: CoreSettings) -> str:
    with open_store(settings) as store:
        live = store.live_info()
    return live.model_version if live else ""
