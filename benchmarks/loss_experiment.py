"""Contrastive loss alone vs. the distribution-aware variants, on a long-tailed corpus.

    python -m benchmarks.loss_experiment      (make experiment-loss)

Defaults are the committed run's: 14 weeks x 40 grants, 3 evaluation weeks, 20 epochs,
seeds 0, 1 and 2.

Generates a long-tailed synthetic corpus (Zipf over design types), ingests it into an
image store, freezes the newest weeks as the evaluation set, then fine-tunes the tiny
model once per variant and seed (same seed, same steps, same data) and benchmarks each.
Each variant is reported as its difference to contrastive-only (same seed, same steps),
with the 95% interval of a paired bootstrap over evaluation patents (``trainer.gate``: the
seeds' outcomes of a patent are resampled together), overall and per class-frequency
tercile. Writes ``<out>/distribution-aware-loss.json`` (every run's results and config),
``distribution-aware-loss.table.md`` and ``distribution-aware-loss.png``;
``make experiment-loss`` writes them to docs/experiments/, beside the written report.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from harness import REPO as ROOT
from harness.machine import machine
from patentclip.drawings.imagestore import LocalImageStore, store_grant
from patentclip.grants.reader import GrantReader
from patentclip.model.encoder import create_tiny_model
from patentclip.model.registry import ModelRegistry
from patentclip_cli.synthetic import BundleGenerator
from trainer.benchmark import metric, plot_recall_by_class
from trainer.data import class_frequencies
from trainer.pipeline import (
    benchmark_spec,
    build_examples,
    ensure_eval_set,
    training_examples,
)
from trainer.train import FineTuner, TrainConfig

VARIANTS = {  # name -> TrainConfig overrides
    "contrastive only": {"loss": "contrastive"},
    "+ plain CE": {"loss": "plain"},
    "+ logit-adjusted CE": {"loss": "logit_adjusted"},
    "+ class-balanced CE": {"loss": "class_balanced"},
    # Class-aware sampling with logit adjustment corrects for the prior twice (refused by
    # TrainConfig); it is tried with plain CE.
    "+ plain CE, class-aware sampling": {"loss": "plain", "sampling": "class_aware"},
}
BASELINE = "contrastive only"
DELTAS = [("overall", None), ("head", "head"), ("middle", "middle"), ("tail", "tail")]
COLUMNS = [("patent_aware.text_to_image_R@10", "T→I R@10 (patent-aware)"),
           ("terciles_R@10.patent_aware.tail", "tail (patent-aware)"),
           ("terciles_R@10.patent_aware.head", "head (patent-aware)"),
           ("standard.text_to_image_R@10", "T→I R@10 (standard)"),
           ("terciles_R@10.standard.tail", "tail (standard)"),
           ("standard.image_to_text_R@10", "I→T R@10 (standard)"),
           ("prior_art.map", "drawing→drawing mAP"),
           ("zero_shot_accuracy", "zero-shot Locarno acc.")]


def build_corpus(work: Path, weeks: int, patents: int, zipf_s: float) -> LocalImageStore:
    images = LocalImageStore(work / "images")
    marker = work / "corpus.json"
    wanted = {"weeks": weeks, "patents": patents, "zipf_s": zipf_s}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return images
    shutil.rmtree(work, ignore_errors=True)
    generator = BundleGenerator(seed=11, zipf_s=zipf_s)
    for week in range(weeks):
        day = date(2021, 1, 5) + timedelta(weeks=week)
        bundle = generator.write_bundle(work / "bundles", day, patents)
        for document in GrantReader().read(bundle):
            store_grant(images, document)
        print(f"generated and ingested week {day} ({week + 1}/{weeks})", flush=True)
    marker.write_text(json.dumps(wanted))
    return images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "data" / "experiments" / "loss")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "experiments")
    p.add_argument("--weeks", type=int, default=14)
    p.add_argument("--patents", type=int, default=40, help="patents per week")
    p.add_argument("--zipf", type=float, default=1.5, help="long tail: Zipf exponent")
    p.add_argument("--eval-weeks", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--reanalyze", action="store_true",
                   help="no training: recompute the intervals of <out>/distribution-aware-loss"
                        ".json's runs (their per-query results) and rewrite the tables and plot")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.reanalyze:
        return reanalyze(args.out)

    images = build_corpus(args.work, args.weeks, args.patents, args.zipf)
    tiny = args.work / "tiny"
    if not (tiny / "open_clip_config.json").is_file():
        create_tiny_model(tiny, seed=0)
    registry = ModelRegistry(args.work / "registry")
    examples, _ = build_examples(images)
    eval_set = ensure_eval_set(registry, images, examples, "loss-experiment", args.eval_weeks)
    train = training_examples(examples, eval_set)
    print(f"{len(train)} training sheets, {len(eval_set.items)} evaluation sheets; classes "
          f"(training sheets): {eval_set.class_counts}", flush=True)

    runs: list[dict] = []
    baseline = benchmark_spec(f"local-dir:{tiny}", "", eval_set, images)
    runs.append({"variant": "untrained (random weights)", "seed": None, "results": baseline,
                 "seconds": 0.0})
    for seed in args.seeds:
        for name in args.variants:
            config = TrainConfig(base_model=f"local-dir:{tiny}", epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr, seed=seed,
                                 lock_text_unlocked=0, cls_weight=0.5, **VARIANTS[name])
            run_dir = args.work / "runs" / f"{config.digest}"
            started = time.perf_counter()
            trained = FineTuner(config, train, images, run_dir, progress=True).run()
            results = benchmark_spec(f"local-dir:{trained.model_dir}", "", eval_set, images)
            seconds = time.perf_counter() - started
            runs.append({"variant": name, "seed": seed, "results": results,
                         "seconds": round(seconds, 1), "config": config.__dict__,
                         "final_loss": trained.epoch_losses[-1] if trained.epoch_losses else {},
                         "head_accuracy": [e.get("head_accuracy") for e in
                                           trained.epoch_losses],
                         "samples_per_second": round(trained.samples_per_second, 1)})
            print(f"{name} (seed {seed}): patent-aware T→I R@10 "
                  f"{metric(results, COLUMNS[0][0]):.3f}, tail "
                  f"{metric(results, COLUMNS[1][0])}, {seconds:.0f}s", flush=True)
    report(args, runs, eval_set, train, machine())
    return 0


def report(args, runs: list[dict], eval_set, train, host: dict) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    deltas = paired_deltas(runs, args.seeds)
    body = {"machine": host, "corpus": {"weeks": args.weeks, "patents_per_week": args.patents,
                                        "zipf_s": args.zipf, "eval_weeks": args.eval_weeks},
            "eval_set": {"name": eval_set.name, "sha256": eval_set.sha256,
                         "sheets": len(eval_set.items),
                         "queries": runs[0]["results"]["queries"],
                         "tercile_queries": runs[0]["results"]["tercile_queries"],
                         "caption_cases": runs[0]["results"]["caption_cases"]},
            "training": {"sheets": len(train), "class_frequencies": class_frequencies(train),
                         "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr},
            "deltas_vs_contrastive": deltas, "runs": runs}
    (args.out / "distribution-aware-loss.json").write_text(json.dumps(body, indent=2))
    table = _delta_table(deltas) + "\n\n" + _table(runs, args.seeds)
    (args.out / "distribution-aware-loss.table.md").write_text(table + "\n")
    plot_deltas(deltas, args.out / "distribution-aware-loss.png")
    plot_runs = {r["variant"] + ("" if r["seed"] is None else f" s{r['seed']}"): r["results"]
                 for r in runs if r["seed"] in (None, args.seeds[0])}
    plot_recall_by_class(plot_runs, args.out / "distribution-aware-loss.by-class.png")
    print(table)


def reanalyze(out: Path) -> int:
    """The committed runs' per-query results, analysed again (seed-by-patent bootstrap)."""
    path = out / "distribution-aware-loss.json"
    body = json.loads(path.read_text())
    seeds = sorted({r["seed"] for r in body["runs"] if r["seed"] is not None})
    body["deltas_vs_contrastive"] = deltas = paired_deltas(body["runs"], seeds)
    body["analysis"] = ("seed-by-patent bootstrap (seeds and patents resampled), 2,000 "
                        "resamples; patents_only_interval holds the seeds fixed")
    path.write_text(json.dumps(body, indent=2))
    table = _delta_table(deltas) + "\n\n" + _table(body["runs"], seeds)
    (out / "distribution-aware-loss.table.md").write_text(table + "\n")
    plot_deltas(deltas, out / "distribution-aware-loss.png")
    print(table)
    return 0


def paired_deltas(runs: list[dict], seeds: list[int], resamples: int = 2000) -> dict:
    """Variant - contrastive-only on the gate's per-query R@10, paired per query and seed,
    with a 95% seed-by-patent bootstrap interval (seeds and patents both resampled: the
    interval carries training's run-to-run variance) and, for comparison, the interval with
    the seeds held fixed (patents only); overall and per tercile."""
    from trainer.gate import bootstrap_interval, combine, pair, seed_patent_interval

    by = {(r["variant"], r["seed"]): r["results"] for r in runs}
    out = {}
    for name in dict.fromkeys(r["variant"] for r in runs if r["seed"] is not None):
        if name == BASELINE or not all((name, s) in by and (BASELINE, s) in by for s in seeds):
            continue
        per_seed = [pair([by[(name, s)]], [by[(BASELINE, s)]], 10) for s in seeds]
        pooled = combine(per_seed)
        out[name] = {}
        for label, tercile in DELTAS:
            part = pooled if tercile is None else pooled.subset(tercile)
            if not part.patents:
                out[name][label] = None
                continue
            _, fixed_low, fixed_high = bootstrap_interval(part, resamples, seed=0)
            parts = [o if tercile is None else o.subset(tercile) for o in per_seed]
            diff, low, high = seed_patent_interval(parts, resamples, seed=0)
            variant, baseline = part.recall()
            seed_diffs = [float(np.subtract(*(o if tercile is None else o.subset(tercile)
                                              ).recall())) for o in per_seed]
            # (a seed whose tercile is empty counts as 0: every seed has the same queries)
            out[name][label] = {"difference": diff, "interval": [low, high],
                                "patents_only_interval": [fixed_low, fixed_high],
                                "variant": variant, "baseline": baseline,
                                "patents": len(part.patents),
                                "queries_per_seed": int(part.queries.sum()) // len(seeds),
                                "per_seed": seed_diffs}
    return out


def _delta_table(deltas: dict) -> str:
    header = ("| variant − contrastive only | " +
              " | ".join(f"{label} Δ R@10 [95% CI]" for label, _ in DELTAS) +
              " | overall, seeds held fixed | overall Δ per seed |")
    lines = [header, "|---" * (len(DELTAS) + 3) + "|"]
    for name, rows in deltas.items():
        cells = ["—" if r is None else
                 f"{r['difference']:+.3f} [{r['interval'][0]:+.3f}, {r['interval'][1]:+.3f}]"
                 for r in (rows[label] for label, _ in DELTAS)]
        fixed = rows["overall"].get("patents_only_interval")
        fixed = f"[{fixed[0]:+.3f}, {fixed[1]:+.3f}]" if fixed else "—"
        seeds = ", ".join(f"{d:+.3f}" for d in rows["overall"]["per_seed"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fixed} | {seeds} |")
    first = next(iter(deltas.values()), {})
    sizes = ", ".join(f"{label} {first[label]['patents']} patents / "
                      f"{first[label]['queries_per_seed']} queries"
                      for label, _ in DELTAS if first.get(label))
    return "\n".join(lines) + (f"\n\nEvaluation per seed: {sizes}. Intervals: seed-by-patent "
                               "bootstrap (the seeds and the patents resampled).")


def plot_deltas(deltas: dict, path: Path) -> Path:
    """Forest plot: each variant's difference to contrastive-only with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(DELTAS), figsize=(13, 0.6 * len(deltas) + 1.8), sharey=True)
    names = list(deltas)
    for ax, (label, _) in zip(axes, DELTAS, strict=True):
        for y, name in enumerate(names):
            row = deltas[name][label]
            if row is None:
                continue
            low, high = row["interval"]
            ax.errorbar(row["difference"], y, xerr=[[row["difference"] - low],
                                                    [high - row["difference"]]],
                        fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=1)
        ax.set_title(f"{label} (Δ R@10)")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    fig.suptitle("Patent-aware text → image R@10, variant − contrastive only "
                 "(95% seed-by-patent bootstrap)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(runs: list[dict], seeds: list[int]) -> str:
    """Absolute figures: the mean over seeds (min–max when there are several)."""
    header = "| variant | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|"]
    names = list(dict.fromkeys(r["variant"] for r in runs))
    for name in names:
        group = [r["results"] for r in runs if r["variant"] == name]
        cells = []
        for key, _ in COLUMNS:
            values = [v for v in (metric(g, key) for g in group) if v is not None]
            if not values:
                cells.append("—")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{np.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
