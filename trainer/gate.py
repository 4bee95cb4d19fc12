"""The rollout gate: paired tests over patents on per-query benchmark results.

A promotion costs a full reindex (days of CPU, hours of GPU at 3.6M sheets), so it must
mean a real improvement, not noise. The gate therefore:

* pairs the two models query by query on the served protocol (``trainer/served.py``: the
  same evaluation sets and distractors, the same queries; ``per_query`` keeps the 1-based
  rank of the relevant patent as the service ranks patents);
* tests by patent, not by query: a patent's queries are correlated. The default statistic
  is the exact paired sign-flip test on mean reciprocal rank (capped at 100), which uses
  the queries both models answer at different ranks and holds its level at any size;
* promotes only a gain above ``margin`` (the cost of a reindex), at a per-decision level
  that keeps false promotions to ``yearly_alpha`` over a year of weekly decisions;
* vetoes a candidate not shown non-inferior on drawing -> patent (``drawing_margin``);
* lets a class-frequency tercile veto only on a significant regression (the upper bound
  of its bootstrap interval below zero), and only if it holds at least
  ``min_tercile_patents`` patents: a 7-patent tercile moves by 0.14 with one patent.

``RolloutGate.decide`` is what ``patentclip gate compare`` and the rollout both call. Pure:
results dicts in, a :class:`GateResult` out. ``tests/unit/trainer/test_gate.py`` measures its
false promotion rate and power on simulated per-query outcomes; trainer/README.md has the
rates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from patentclip.errors import InvalidInputError
from trainer.served import PER_QUERY_CUTOFF

PRIMARY_METRIC = "served.text_R@10"  # the served protocol (trainer/served.py)
TERCILES = ("head", "middle", "tail")
STATISTICS = ("bootstrap_recall", "sign_flip_rr")
RR_CUTOFF = PER_QUERY_CUTOFF  # reciprocal rank counts to the ranks per_query keeps
EXACT_UP_TO = 16  # patents: every sign vector is enumerated (2**16); above, a seeded sample


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # why it passed or failed, one line per check
    summary: dict = field(default_factory=dict)  # the figures behind the reasons (JSON)


@dataclass(frozen=True)
class PairedOutcomes:
    """Hits at K of both models, summed per patent (the bootstrap's unit)."""

    patents: list[str]
    terciles: list[str]
    queries: np.ndarray  # per patent
    candidate_hits: np.ndarray
    live_hits: np.ndarray
    candidate_rr: np.ndarray  # reciprocal ranks (0 past RR_CUTOFF), summed per patent
    live_rr: np.ndarray

    def subset(self, tercile: str) -> PairedOutcomes:
        keep = [i for i, t in enumerate(self.terciles) if t == tercile]
        return PairedOutcomes([self.patents[i] for i in keep], [tercile] * len(keep),
                              self.queries[keep], self.candidate_hits[keep],
                              self.live_hits[keep], self.candidate_rr[keep],
                              self.live_rr[keep])

    def recall(self) -> tuple[float, float]:
        total = max(int(self.queries.sum()), 1)
        return float(self.candidate_hits.sum()) / total, float(self.live_hits.sum()) / total


def metric_cutoff(metric: str) -> int:
    """K of the gate's metric: it must be read from per-query results."""
    match = re.fullmatch(r"(?:served\.text|cited)_R@(\d+)", metric)
    if not match:
        raise InvalidInputError(f"gate metric {metric!r}: the gate decides on per-query "
                                "results, so it takes served.text_R@K (or cited_R@K with "
                                "per_query_cited)")
    return int(match.group(1))


def pair(candidate: Sequence[dict], live: Sequence[dict], k: int,
         per_query: str = "per_query") -> PairedOutcomes:
    """Pair two models' benchmark results set by set (by ``eval_set_sha256``) and query by
    query; refuse results that are not on the same sets or queries. ``per_query``: the list
    (``per_query``: text -> patent; ``per_query_drawing``: drawing -> patent)."""
    by_set = {_set_key(r, i): r for i, r in enumerate(live)}
    rows: dict[str, list] = {}
    for i, cand in enumerate(candidate):
        key = _set_key(cand, i)
        if key not in by_set:
            raise InvalidInputError(f"candidate results on evaluation set {_set_name(cand)} "
                                    "have no live results on the same set (sha256) made under "
                                    f"the same protocol: {key}")
        live_queries = _queries(by_set.pop(key), "live", per_query)
        cand_queries = _queries(cand, "candidate", per_query)
        if set(cand_queries) != set(live_queries):
            missing = len(set(cand_queries) ^ set(live_queries))
            raise InvalidInputError(f"evaluation set {_set_name(cand)}: {missing} queries are "
                                    "in one model's results only; benchmark both on the same "
                                    "frozen set")
        for query, (patent, tercile, rank) in cand_queries.items():
            entry = rows.setdefault(f"{key}/{patent}", [patent, tercile, 0, 0, 0, 0.0, 0.0])
            entry[2] += 1
            entry[3] += _hit(rank, k)
            entry[4] += _hit(live_queries[query][2], k)
            entry[5] += _reciprocal(rank)
            entry[6] += _reciprocal(live_queries[query][2])
    if by_set:
        names = ", ".join(_set_name(r) for r in by_set.values())
        raise InvalidInputError(f"live results on {names} have no candidate results")
    if not rows:
        raise InvalidInputError("no per-query results to compare")
    values = list(rows.values())
    return PairedOutcomes([v[0] for v in values], [v[1] for v in values],
                          *(np.array([v[j] for v in values]) for j in range(2, 7)))


def combine(outcomes: Sequence[PairedOutcomes]) -> PairedOutcomes:
    """Several pairings of the same patents (e.g. one per training seed) as one: each
    patent's queries and hits summed, so a resample draws a patent with all its runs."""
    rows: dict[str, list] = {}
    for part in outcomes:
        for i, patent in enumerate(part.patents):
            entry = rows.setdefault(patent, [part.terciles[i], 0, 0, 0, 0.0, 0.0])
            entry[1] += int(part.queries[i])
            entry[2] += int(part.candidate_hits[i])
            entry[3] += int(part.live_hits[i])
            entry[4] += float(part.candidate_rr[i])
            entry[5] += float(part.live_rr[i])
    return PairedOutcomes(list(rows), [v[0] for v in rows.values()],
                          *(np.array([v[j] for v in rows.values()]) for j in range(1, 6)))


def bootstrap_interval(outcomes: PairedOutcomes, resamples: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float, float]:
    """(difference, low, high): candidate - live R@K over the pooled queries, and the
    percentile interval of that difference with patents resampled with replacement."""
    n = len(outcomes.patents)
    diff_per_patent = (outcomes.candidate_hits - outcomes.live_hits).astype(np.float64)
    queries = outcomes.queries.astype(np.float64)
    observed = diff_per_patent.sum() / queries.sum()
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for start in range(0, resamples, 250):  # bounded memory: 250 x n indices at a time
        idx = rng.integers(0, n, size=(min(250, resamples - start), n))
        draws[start:start + len(idx)] = diff_per_patent[idx].sum(1) / queries[idx].sum(1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(observed), float(low), float(high)


def seed_patent_interval(per_seed: Sequence[PairedOutcomes], resamples: int = 2000,
                         seed: int = 0, confidence: float = 0.95
                         ) -> tuple[float, float, float]:
    """(difference, low, high) of candidate - live R@K over several training seeds, with a
    two-way bootstrap: each resample draws the seeds with replacement *and* the patents
    with replacement, so the interval carries the run-to-run variance of training as well
    as the sampling of patents. (:func:`combine` then :func:`bootstrap_interval` treats the
    seeds as fixed.) The pairings must hold the same patents."""
    patents = per_seed[0].patents
    index = {p: i for i, p in enumerate(patents)}
    diff = np.zeros((len(per_seed), len(patents)))
    queries = np.zeros_like(diff)
    for s, part in enumerate(per_seed):
        if sorted(part.patents) != sorted(patents):
            raise InvalidInputError("seed-by-patent bootstrap: the seeds' pairings hold "
                                    "different patents")
        for i, patent in enumerate(part.patents):
            diff[s, index[patent]] = part.candidate_hits[i] - part.live_hits[i]
            queries[s, index[patent]] = part.queries[i]
    observed = float(diff.sum() / queries.sum())
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for r in range(resamples):
        seeds = rng.integers(0, len(per_seed), len(per_seed))
        chosen = rng.integers(0, len(patents), len(patents))
        draws[r] = diff[np.ix_(seeds, chosen)].sum() / queries[np.ix_(seeds, chosen)].sum()
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return observed, float(low), float(high)


def sign_flip_test(outcomes: PairedOutcomes, margin: float = 0.0, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """(difference, p): candidate - live mean reciprocal rank (capped at RR_CUTOFF) over the
    pooled queries, and the one-sided p-value of "no better than ``margin``" by flipping
    which model is which within each patent. Exact (every sign vector) up to EXACT_UP_TO
    patents, where the percentile bootstrap is anti-conservative; a seeded sample of
    ``resamples`` sign vectors above, with the (1 + hits) / (1 + draws) p-value, which
    never understates. Rank-sensitive: the queries both models answer at different ranks
    count, not only those one finds in the top K and the other does not."""
    queries = outcomes.queries.astype(np.float64)
    shifted = (outcomes.candidate_rr - outcomes.live_rr) - margin * queries
    total = queries.sum()
    observed = float(shifted.sum() / total)
    n = len(shifted)
    if n <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        flipped = signs @ shifted / total
        return observed + margin, float(np.mean(flipped >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, 250):
        signs = rng.choice((-1.0, 1.0), size=(min(250, resamples - start), n))
        hits += int(np.sum(signs @ shifted / total >= observed - 1e-12))
    return observed + margin, (1 + hits) / (1 + resamples)


@dataclass(frozen=True)
class RolloutGate:
    """Candidate vs live on the same pooled evaluation sets.

    ``statistic``: ``sign_flip_rr`` (default) promotes when the exact paired sign-flip test
    finds the candidate's mean reciprocal rank above live's by more than ``margin``, at the
    per-decision level ``yearly_alpha / decisions_per_year``: a Bonferroni split of the
    year's false-promotion budget over its weekly decisions, which holds whatever the
    dependence between weeks (pooled weeks overlap). ``bootstrap_recall`` is the earlier
    paired bootstrap of R@K (lower bound above ``margin`` at ``confidence``).
    ``drawing_margin``: the drawing -> patent guard promotes only a candidate shown no
    worse than live by more than this in mean reciprocal rank (one-sided, at the
    confidence level's tail)."""

    metric: str = PRIMARY_METRIC
    margin: float = 0.005  # MRR: the smallest gain worth a full reindex (trainer/README.md)
    min_tercile_patents: int = 30  # a tercile with fewer patents is reported, never vetoes
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0
    statistic: str = "sign_flip_rr"  # or bootstrap_recall (STATISTICS)
    yearly_alpha: float = 0.05  # false promotions: at most this chance a year ...
    decisions_per_year: int = 52  # ... over this many decisions (one a week)
    drawing_margin: float = 0.02  # MRR the drawing -> patent guard tolerates losing; >= 1: off
    per_query: str = "per_query"  # or per_query_cited: examiner-cited prior art (cited.py)

    @property
    def alpha(self) -> float:
        """The one-sided level of one promotion decision (sign_flip_rr)."""
        return self.yearly_alpha / self.decisions_per_year

    def decide(self, candidate: Sequence[dict] | dict,
               live: Sequence[dict] | dict | None) -> GateResult:
        """``candidate`` and ``live``: benchmark results, one per evaluation set."""
        if live is None:
            return GateResult(True, ["no live model: nothing to compare with"],
                              {"decision": "promote"})
        k = metric_cutoff(self.metric)
        candidates, lives = _as_list(candidate), _as_list(live)
        outcomes = pair(candidates, lives, k, self.per_query)
        new, old = outcomes.recall()
        level = f"{self.confidence:.0%}"
        summary = {"metric": self.metric, "candidate": new, "live": old,
                   "difference": new - old, "confidence": self.confidence,
                   "margin": self.margin, "patents": len(outcomes.patents),
                   "queries": int(outcomes.queries.sum()), "resamples": self.resamples,
                   "seed": self.seed, "statistic": self.statistic,
                   "eval_sets": [_set_name(r) for r in candidates], "terciles": {}}
        head = (f"{self.metric} {new:.4f} vs live {old:.4f} ({new - old:+.4f}) over "
                f"{len(outcomes.patents)} patents ({summary['queries']} queries)")
        if self.statistic == "sign_flip_rr":
            passed, verdict = self._sign_flip(outcomes, summary)
        else:
            passed, verdict = self._bootstrap(outcomes, summary, level)
        reasons = [head, verdict]
        guard_ok, line = self._drawing_guard(candidates, lives, summary)
        reasons.append(line)
        passed = passed and guard_ok
        for tercile in TERCILES:
            line, veto, figures = self._tercile(outcomes.subset(tercile), tercile, level)
            summary["terciles"][tercile] = figures
            reasons.append(line)
            passed = passed and not veto
        summary["decision"] = "promote" if passed else "reject"
        return GateResult(passed, reasons, summary)

    def _bootstrap(self, outcomes: PairedOutcomes, summary: dict, level: str
                   ) -> tuple[bool, str]:
        diff, low, high = bootstrap_interval(outcomes, self.resamples, self.seed,
                                             self.confidence)
        summary["interval"] = [low, high]
        passed = low > self.margin
        return passed, (f"{level} interval [{low:+.4f}, {high:+.4f}]: lower bound "
                        + (f"> margin {self.margin}: promote" if passed else
                           f"<= margin {self.margin}: does not beat live significantly"))

    def _sign_flip(self, outcomes: PairedOutcomes, summary: dict) -> tuple[bool, str]:
        """Whether the sign-flip test of mean reciprocal rank finds the candidate better
        than live by ``margin`` at the per-decision level, and the reason line. Enough
        sign vectors are drawn that the p-value can reach the level (20 / alpha)."""
        resamples = max(self.resamples, math.ceil(20 / self.alpha))
        diff, p = sign_flip_test(outcomes, self.margin, resamples, self.seed)
        if self.margin <= -1:  # MRR differences lie in [-1, 1]: an operator's approval
            summary.update({"mrr_difference": diff, "p_value": p})
            return True, (f"MRR@{RR_CUTOFF} difference {diff:+.4f}; margin {self.margin} <= -1 "
                          "promotes any candidate (an operator's approval)")
        summary.update({"mrr_difference": diff, "p_value": p, "alpha": self.alpha,
                        "yearly_alpha": self.yearly_alpha,
                        "decisions_per_year": self.decisions_per_year})
        n = len(outcomes.patents)
        how = "exact" if n <= EXACT_UP_TO else f"{resamples} flips"
        verdict = (f"p <= {self.alpha:.5f}: promote" if p <= self.alpha else
                   f"p > {self.alpha:.5f}: does not beat live by the margin significantly")
        return p <= self.alpha, (
            f"MRR@{RR_CUTOFF} difference {diff:+.4f} (margin {self.margin}), sign-flip "
            f"p = {p:.5f} over {n} patents ({how}; level {self.yearly_alpha} a year over "
            f"{self.decisions_per_year} decisions): {verdict}")

    def _drawing_guard(self, candidate: list[dict], live: list[dict], summary: dict
                       ) -> tuple[bool, str]:
        """Non-inferiority on drawing -> patent: the candidate's MRR must be shown above
        live's minus ``drawing_margin`` (sign-flip p <= (1 - confidence) / 2). Results
        without drawing queries on both sides (older protocols, simulations) skip it, and
        the line says so."""
        if self.drawing_margin >= 1:  # MRR differences lie in [-1, 1]: off
            summary["drawing_guard"] = None
            return True, f"drawing -> patent guard off (margin {self.drawing_margin} >= 1)"
        if not any("per_query_drawing" in r for r in [*candidate, *live]):
            summary["drawing_guard"] = None
            return True, "drawing -> patent guard: no per_query_drawing results; not applied"
        outcomes = pair(candidate, live, 10, "per_query_drawing")
        alpha = (1 - self.confidence) / 2
        diff, p = sign_flip_test(outcomes, -self.drawing_margin, self.resamples, self.seed)
        passed = p <= alpha
        summary["drawing_guard"] = {"mrr_difference": diff, "p_value": p, "alpha": alpha,
                                    "margin": self.drawing_margin,
                                    "patents": len(outcomes.patents),
                                    "queries": int(outcomes.queries.sum()),
                                    "passed": bool(passed)}
        return passed, (
            f"drawing -> patent MRR difference {diff:+.4f} over {len(outcomes.patents)} "
            f"patents: " + (f"no worse than -{self.drawing_margin} (p = {p:.4f})" if passed
                            else f"not shown within -{self.drawing_margin} of live "
                                 f"(p = {p:.4f} > {alpha:.3f}): vetoed"))

    def _tercile(self, outcomes: PairedOutcomes, tercile: str, level: str
                 ) -> tuple[str, bool, dict]:
        patents = len(outcomes.patents)
        if patents == 0:
            return f"{tercile} tercile: no evaluation queries", False, {"patents": 0}
        new, old = outcomes.recall()
        diff, low, high = bootstrap_interval(outcomes, self.resamples, self.seed,
                                             self.confidence)
        figures = {"patents": patents, "candidate": new, "live": old, "difference": diff,
                   "interval": [low, high]}
        head = (f"{tercile} tercile R@{metric_cutoff(self.metric)} {new:.4f} vs live "
                f"{old:.4f} ({diff:+.4f}, {level} [{low:+.4f}, {high:+.4f}], {patents} patents)")
        if patents < self.min_tercile_patents:
            return f"{head}: not gated, {patents} patents < {self.min_tercile_patents}", \
                False, figures
        if high < 0:
            return f"{head}: significant regression, vetoed", True, figures
        return f"{head}: no significant regression", False, figures


def _as_list(results: Sequence[dict] | dict) -> list[dict]:
    return [results] if isinstance(results, dict) else list(results)


def _set_key(results: dict, position: int) -> str:
    """The set and the protocol: results of another protocol are never paired."""
    protocol = results.get("protocol") or "no protocol recorded"
    return f"{results.get('eval_set_sha256') or f'#{position}'} ({protocol})"


def _reciprocal(rank) -> float:
    return 1.0 / rank if rank is not None and rank <= RR_CUTOFF else 0.0


def _set_name(results: dict) -> str:
    return str(results.get("eval_set") or results.get("eval_set_sha256", "")[:12] or "?")


def _queries(results: dict, side: str, key: str = "per_query"
             ) -> dict[str, tuple[str, str, int | None]]:
    """query -> (patent, tercile, rank) of one benchmark result's ``key`` list."""
    per_query = results.get(key)
    if not isinstance(per_query, list):
        raise InvalidInputError(f"{side} results on {_set_name(results)} have no {key} "
                                "list (benchmarked before per-query results were kept: "
                                "run patentclip benchmark again)")
    out = {}
    for i, row in enumerate(per_query):
        try:
            rank = row["relevant_rank"]
            if rank is not None and (not isinstance(rank, int) or rank < 1):
                raise ValueError(f"relevant_rank {rank!r} is not a positive integer or null")
            out[f"{row['patent']}/{row['query']}"] = (str(row["patent"]),
                                                      str(row.get("tercile", "")), rank)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{side} results, {key}[{i}]: {exc!r} (each entry "
                                    "needs query, patent, locarno and relevant_rank)") from exc
    return out


def _hit(rank: int | None, k: int) -> int:
    return int(rank is not None and rank <= k)
