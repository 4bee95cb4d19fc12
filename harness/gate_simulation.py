"""Simulated per-query benchmark results, to measure what the rollout gate decides.

A model pair is simulated on an evaluation set of ``patents`` patents, each with 1-9
caption queries (about 5 on average, as real design grants have sheets). Whether a query
finds its patent in the top 10 follows a latent-difficulty model:

    difficulty(query) = patent effect ~ N(0, 1) + query effect ~ N(0, 0.7)
    hit(model, query) = difficulty + model noise ~ N(0, 0.5) < threshold(model, tercile)

so a patent's queries are correlated (the reason the gate resamples patents), and the two
models agree on most queries (what pairing exploits). Thresholds are set so that live's
R@10 is ``base`` and the candidate's is ``base + delta`` (``+ tail_delta`` on the tail
tercile). The agreement between the two models (``discordant`` share of queries) is
reported beside every rate, since the gate's power depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from trainer.gate import RolloutGate

PATENT_SD, QUERY_SD, MODEL_SD = 1.0, 0.7, 0.5
TERCILE_SHARES = (("head", 0.55), ("middle", 0.27), ("tail", 0.18))  # of the patents


@dataclass(frozen=True)
class Scenario:
    patents: int
    delta: float = 0.0  # true candidate - live R@10, every tercile
    tail_delta: float = 0.0  # added on the tail tercile
    base: float = 0.30  # live's true R@10
    tail_patents: int = 0  # exactly this many tail patents (0: drawn with TERCILE_SHARES)
    model_sd: float = MODEL_SD  # more: the two models disagree on more queries


def _threshold(recall: float, model_sd: float = MODEL_SD) -> float:
    total_sd = np.sqrt(PATENT_SD ** 2 + QUERY_SD ** 2 + model_sd ** 2)
    return float(NormalDist().inv_cdf(float(np.clip(recall, 1e-6, 1 - 1e-6))) * total_sd)


def simulate(scenario: Scenario, seed: int) -> tuple[dict, dict, float]:
    """(candidate results, live results, discordant share) with ``per_query`` lists."""
    rng = np.random.default_rng(seed)
    shares = np.array([s for _, s in TERCILE_SHARES])
    names = [t for t, _ in TERCILE_SHARES]
    terciles = rng.choice(len(names), size=scenario.patents, p=shares / shares.sum())
    if scenario.tail_patents:
        terciles = rng.choice(2, size=scenario.patents, p=shares[:2] / shares[:2].sum())
        terciles[:scenario.tail_patents] = 2
    candidate, live, discordant, total = [], [], 0, 0
    for p in range(scenario.patents):
        tercile = names[terciles[p]]
        queries = int(rng.integers(1, 10))
        difficulty = rng.normal(0, PATENT_SD) + rng.normal(0, QUERY_SD, size=queries)
        delta = scenario.delta + (scenario.tail_delta if tercile == "tail" else 0.0)
        sd = scenario.model_sd
        live_hit = difficulty + rng.normal(0, sd, queries) < _threshold(scenario.base, sd)
        cand_hit = difficulty + rng.normal(0, sd, queries) < \
            _threshold(scenario.base + delta, sd)
        discordant += int((live_hit != cand_hit).sum())
        total += queries
        for q in range(queries):
            row = {"query": f"q{q}", "patent": f"D{p:07d}", "locarno": "09", "tercile": tercile}
            live.append({**row, "relevant_rank": 1 if live_hit[q] else None})
            candidate.append({**row, "relevant_rank": 1 if cand_hit[q] else None})
    sha = f"sim-{seed}"
    return ({"eval_set": sha, "eval_set_sha256": sha, "per_query": candidate},
            {"eval_set": sha, "eval_set_sha256": sha, "per_query": live}, discordant / total)


def promotion_rate(scenario: Scenario, runs: int, gate: RolloutGate | None = None,
                   seed: int = 0) -> dict:
    """Share of ``runs`` simulated evaluations the gate promotes, and how often the tail
    tercile vetoed."""
    gate = gate or RolloutGate(resamples=1000)
    promoted = vetoed = 0
    discordant = []
    for run in range(runs):
        candidate, live, share = simulate(scenario, seed * 1_000_003 + run)
        verdict = gate.decide(candidate, live)
        promoted += verdict.passed
        vetoed += any("tail tercile" in r and "vetoed" in r for r in verdict.reasons)
        discordant.append(share)
    return {"patents": scenario.patents, "delta": scenario.delta,
            "tail_delta": scenario.tail_delta, "tail_patents": scenario.tail_patents,
            "model_sd": scenario.model_sd,
            "runs": runs, "promoted": promoted / runs,
            "tail_vetoed": vetoed / runs, "discordant_share": float(np.mean(discordant))}


def yearly_false_promotions(patents: int, years: int, gate: RolloutGate,
                            decisions_per_year: int = 52, seed: int = 0) -> dict:
    """A year of weekly gate decisions with no true difference, ``years`` times: the share
    of decisions that promoted, and the share of years with at least one false promotion.
    Each week's evaluation is drawn afresh (independent weeks); real pooled weeks overlap,
    which correlates the decisions and can only lower the yearly share for the same
    per-decision rate."""
    promoted, years_hit = 0, 0
    for year in range(years):
        this_year = 0
        for week in range(decisions_per_year):
            candidate, live, _ = simulate(Scenario(patents),
                                          seed * 1_000_003 + year * 1000 + week)
            this_year += gate.decide(candidate, live).passed
        promoted += this_year
        years_hit += this_year > 0
    decisions = years * decisions_per_year
    return {"patents": patents, "years": years, "decisions": decisions,
            "promoted": promoted, "per_decision": promoted / decisions,
            "per_year": years_hit / years}


def wilson(successes: float, runs: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a simulated rate (successes of runs)."""
    if runs == 0:
        return 0.0, 1.0
    p = successes / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * np.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))
