"""``make bench-gate``: how often the rollout gate promotes, by evaluation size and true gain,
and how often it promotes falsely over a year of weekly decisions.

    python -m benchmarks.gate_rates --out reports/bench-gate

Simulated per-query outcomes (``harness.gate_simulation``: correlated queries within a
patent, two models that agree on most queries) fed to ``trainer.gate.RolloutGate`` with its
defaults (the sign-flip test of MRR, margin 0.005, 0.05 a year over 52 decisions). For each
evaluation size (patents) and true difference it reports the share of runs promoted with
its 95% Wilson interval; delta 0 is the false-promotion rate. The simulated ranks are 1 or
past 100, so a difference in R@10 is the same difference in MRR. Then 0.14 tail-tercile
regressions under a +0.03 overall gain, and years of 52 decisions with no true difference
for three gates: the default, the same test at 0.025 a decision, and the earlier bootstrap
gate (margin 0). Writes ``rates.json``, ``rates.md`` and ``rates.png``. The unit test
``tests/unit/trainer/test_gate.py`` asserts thresholds on fewer runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from harness import REPO
from harness.gate_simulation import Scenario, promotion_rate, wilson, yearly_false_promotions
from harness.machine import machine
from trainer.gate import RolloutGate

DISAGREEING = 0.8  # model noise sd giving about 22% discordant queries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--patents", type=int, nargs="+", default=[40, 120, 650, 2600])
    p.add_argument("--deltas", type=float, nargs="+", default=[0.0, 0.01, 0.02, 0.05, 0.10])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--years", type=int, default=20, help="simulated years of 52 decisions")
    p.add_argument("--year-patents", type=int, nargs="+", default=[120, 650])
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-gate")
    args = p.parse_args(argv)
    gate = RolloutGate(resamples=args.resamples)
    scenarios = [Scenario(n, d) for n in args.patents for d in args.deltas]
    # The same power rows with models that disagree on about 22% of queries, as two
    # independently trained variants of the loss experiment did.
    scenarios += [Scenario(n, d, model_sd=DISAGREEING) for n in (650, 2600)
                  for d in args.deltas if n in args.patents]
    scenarios += [Scenario(170, 0.03, -0.14, tail_patents=30),
                  Scenario(650, 0.03, -0.14, tail_patents=30), Scenario(650, 0.03, -0.14)]
    rows = [promotion_rate(s, args.runs, gate, seed=11)
            for s in tqdm(scenarios, desc="gate scenarios", unit="scenario")]
    years = [{"gate": name, **yearly_false_promotions(n, args.years, each, seed=5)}
             for n in tqdm(args.year_patents, desc="simulated years", unit="size")
             for name, each in yearly_gates(args.resamples).items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rates.json").write_text(json.dumps(
        {"machine": machine(), "runs": args.runs, "resamples": args.resamples,
         "rows": rows, "years": years}, indent=2))
    table = markdown(rows, args) + "\n\n" + yearly_markdown(years, args)
    (args.out / "rates.md").write_text(table + "\n")
    plot(rows, args, args.out / "rates.png")
    print(table)
    return 0


def yearly_gates(resamples: int) -> dict[str, RolloutGate]:
    """The default, the same test without the yearly split, and the earlier bootstrap."""
    return {"default: sign-flip MRR, margin 0.005, 0.05 a year / 52":
            RolloutGate(resamples=resamples),
            "sign-flip MRR, margin 0, 0.025 a decision":
            RolloutGate(resamples=resamples, margin=0, yearly_alpha=0.025,
                        decisions_per_year=1),
            "earlier: bootstrap R@10, margin 0":
            RolloutGate(resamples=resamples, margin=0, statistic="bootstrap_recall")}


def yearly_markdown(years: list[dict], args) -> str:
    lines = ["| gate | patents | decisions | false promotions | per decision | "
             "years with one or more [95% CI] |", "|---|---|---|---|---|---|"]
    for y in years:
        low, high = wilson(y["per_year"] * y["years"], y["years"])
        lines.append(f"| {y['gate']} | {y['patents']} | {y['decisions']} | {y['promoted']} | "
                     f"{y['per_decision']:.2%} | {y['per_year']:.0%} [{low:.0%}, {high:.0%}] |")
    lines += ["", f"{args.years} simulated years of 52 weekly decisions with no true "
              "difference, independent weeks (harness/gate_simulation.py)."]
    return "\n".join(lines)


def markdown(rows: list[dict], args) -> str:
    lines = ["| patents | models disagree on | " +
             " | ".join(f"true Δ R@10 {d:+.2f}" for d in args.deltas) + " |",
             "|---" * (len(args.deltas) + 2) + "|"]
    for sd in sorted({r["model_sd"] for r in rows}):
        plain = [r for r in rows if r["tail_delta"] == 0 and r["model_sd"] == sd]
        for n in sorted({r["patents"] for r in plain}):
            part = [next(r for r in plain if r["patents"] == n and r["delta"] == d)
                    for d in args.deltas]
            share = sum(r["discordant_share"] for r in part) / len(part)
            lines.append(f"| {n} | {share:.0%} of queries | " +
                         " | ".join(_rate(r) for r in part) + " |")
    lines += ["", "| patents | tail patents | overall Δ | tail Δ | promoted | tail vetoed |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if r["tail_delta"]:
            tail = r["tail_patents"] or "about 18%"
            lines.append(f"| {r['patents']} | {tail} | {r['delta']:+.2f} | "
                         f"{r['tail_delta']:+.2f} | {r['promoted']:.1%} | "
                         f"{r['tail_vetoed']:.1%} |")
    lines += ["", f"Share of runs promoted [95% Wilson interval], {args.runs} simulated "
              "evaluations per cell, the default gate; live R@10 0.30 "
              "(harness/gate_simulation.py). The tail rows use the first disagreement level."]
    return "\n".join(lines)


def _rate(row: dict) -> str:
    low, high = wilson(row["promoted"] * row["runs"], row["runs"])
    return f"{row['promoted']:.1%} [{low:.0%}, {high:.0%}]"


def plot(rows: list[dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for n in args.patents:
        part = [r for r in rows if r["patents"] == n and r["tail_delta"] == 0
                and r["model_sd"] != DISAGREEING]
        ax.plot([r["delta"] for r in part], [r["promoted"] for r in part], marker="o",
                label=f"{n} patents")
    ax.axhline(0.05, color="grey", ls=":", lw=1)
    ax.axhline(0.70, color="grey", ls=":", lw=1)
    ax.set_xlabel("true candidate − live R@10 (= MRR here)")
    ax.set_ylabel("share promoted")
    ax.set_title("Rollout gate: promotion rate by evaluation size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
