"""Gated rollout and rollback of registered model versions.

``Rollout.promote(version)``:

1. verify the version's files against its manifest checksums;
2. benchmark candidate and live on the same frozen evaluation set (results already in a
   manifest are reused);
3. :class:`RolloutGate`: the primary metric (default patent-aware text -> image R@10) must
   beat live's by more than ``margin``, and no class-frequency tercile may drop more than
   ``tercile_tolerance`` below live's;
4. reindex the corpus into the candidate's collection (the grants topic replayed from
   offset 0, the streaming reindex);
5. check the candidate collection has exactly as many rows as live's;
6. switch the live alias (one atomic ``alter_alias``); query services follow it.

Every decision, passed or not, is printed by the caller and appended to the registry's
``decisions.jsonl`` with its reasons. ``rollback()`` points the alias back at the
collection the last promotion replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from patentclip.errors import InvalidInputError, ModelLoadError, NotFoundError, PatentClipError
from patentclip.registry import ModelRegistry, ModelVersion
from patentclip.store import CollectionInfo, PatentStore
from trainer.benchmark import PRIMARY_METRIC, metric

logger = logging.getLogger(__name__)

TERCILES = ("head", "middle", "tail")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # why it passed or failed, one line per check


@dataclass(frozen=True)
class RolloutGate:
    """Candidate vs live on one evaluation set (pure: results dicts in, verdict out)."""

    metric: str = PRIMARY_METRIC
    margin: float = 0.0
    tercile_tolerance: float = 0.02
    min_tercile_queries: int = 20  # a tercile with fewer eval queries is reported, not gated

    def decide(self, candidate: dict, live: dict | None) -> GateResult:
        if live is None:
            return GateResult(True, ["no live model: nothing to compare with"])
        reasons, passed = [], True
        new, old = metric(candidate, self.metric), metric(live, self.metric)
        if new is None or old is None:
            return GateResult(False, [f"metric {self.metric!r} missing from the results"])
        if new > old + self.margin:
            reasons.append(f"{self.metric} {new:.4f} > live {old:.4f} + margin {self.margin}")
        else:
            passed = False
            reasons.append(f"{self.metric} {new:.4f} does not beat live {old:.4f} + margin "
                           f"{self.margin}")
        for tercile in TERCILES:
            name = f"terciles_R@10.patent_aware.{tercile}"
            new_t, old_t = metric(candidate, name), metric(live, name)
            queries = metric(candidate, f"tercile_queries.{tercile}")
            if new_t is None or old_t is None:
                reasons.append(f"{tercile} tercile: no evaluation queries")
                continue
            if queries is not None and queries < self.min_tercile_queries:
                reasons.append(f"{tercile} tercile R@10 {new_t:.4f} vs live {old_t:.4f}: not "
                               f"gated, {queries} queries < {self.min_tercile_queries}")
            elif new_t < old_t - self.tercile_tolerance:
                passed = False
                reasons.append(f"{tercile} tercile R@10 {new_t:.4f} regressed below live "
                               f"{old_t:.4f} - tolerance {self.tercile_tolerance}")
            else:
                reasons.append(f"{tercile} tercile R@10 {new_t:.4f} vs live {old_t:.4f}: "
                               "within tolerance")
        return GateResult(passed, reasons)


@dataclass
class RolloutDecision:
    """What a rollout or rollback decided, and why (stored in decisions.jsonl)."""

    action: str  # rollout | rollback
    version: str
    decision: str  # promoted | rejected | rolled_back
    reasons: list[str] = field(default_factory=list)
    eval_set: str = ""
    live_version: str = ""
    live_collection: str = ""
    collection: str = ""
    candidate_metrics: dict = field(default_factory=dict)
    live_metrics: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        head = f"{self.action} {self.version}: {self.decision.upper()}"
        return [head, *(f"  - {r}" for r in self.reasons)]


Benchmark = Callable[[str, str], dict]  # (model spec, pretrained) -> results on the eval set
Reindex = Callable[[ModelVersion], str]  # version -> the collection it was written into


class Rollout:
    """Promotes registered versions behind the gate; rolls back."""

    def __init__(self, registry: ModelRegistry, store: PatentStore,
                 gate: RolloutGate | None = None, eval_set: str = "",
                 benchmark: Benchmark | None = None, reindex: Reindex | None = None) -> None:
        """``gate``, ``eval_set``, ``benchmark`` and ``reindex`` are what ``promote`` needs;
        ``rollback`` needs only the registry and the store."""
        self.registry, self.store, self.gate = registry, store, gate or RolloutGate()
        self.eval_set, self.benchmark, self.reindex = eval_set, benchmark, reindex

    def promote(self, version: str) -> RolloutDecision:
        if self.benchmark is None or self.reindex is None or not self.eval_set:
            raise InvalidInputError("a rollout needs an evaluation set, a benchmark and a "
                                    "reindex source")
        decision = RolloutDecision("rollout", version, "rejected", eval_set=self.eval_set)
        try:
            candidate = self.registry.verify(version)
        except ModelLoadError as exc:  # missing or corrupted files: refused, and recorded
            decision.reasons = [f"refused: {exc}"]
            return self._record(decision)
        live = self._live()
        if live is not None:
            decision.live_version, decision.live_collection = live.model_version, live.name
            if live.model_version == version:
                raise InvalidInputError(f"{version} is already live ({live.name})")
        decision.candidate_metrics = self._results(candidate.version, candidate.spec, "")
        if live is not None:
            decision.live_metrics = self._results(live.model_version, live.model_spec,
                                                  live.pretrained)
        verdict = self.gate.decide(decision.candidate_metrics,
                                   decision.live_metrics if live is not None else None)
        decision.reasons = list(verdict.reasons)
        if verdict.passed:
            self._switch(candidate, live, decision)
        return self._record(decision)

    def rollback(self) -> RolloutDecision:
        """Point the alias back at the collection the last promotion replaced."""
        live = self._live()
        if live is None:
            raise NotFoundError("no live alias: nothing to roll back")
        for past in reversed(self.registry.decisions()):
            if past.get("decision") == "promoted" and past.get("collection") == live.name \
                    and past.get("live_collection"):
                previous = self.store.describe(past["live_collection"])
                if previous.rows == 0:
                    raise InvalidInputError(f"{previous.name} is empty; not rolling back to it")
                self.store.set_alias(self.store.live_alias, previous.name)
                return self._record(RolloutDecision(
                    "rollback", previous.model_version, "rolled_back",
                    [f"live alias {self.store.live_alias}: {live.name} -> {previous.name}"],
                    live_version=live.model_version, live_collection=live.name,
                    collection=previous.name))
        raise NotFoundError(f"no recorded promotion to {live.name} to roll back from")

    # -- steps

    def _live(self) -> CollectionInfo | None:
        return self.store.live_info()

    def _results(self, version: str, spec: str, pretrained: str) -> dict:
        """A version's results on the eval set: from its manifest, else benchmarked now."""
        if self.registry.exists(version):
            stored = self.registry.get(version).manifest.get("benchmarks", {})
            if self.eval_set in stored:
                return stored[self.eval_set]
        if not spec:
            raise PatentClipError(f"cannot benchmark {version}: its collection records no "
                                  "model spec")
        results = self.benchmark(spec, pretrained)
        if self.registry.exists(version):
            self.registry.record_benchmark(version, self.eval_set, results)
        return results

    def _switch(self, candidate: ModelVersion, live: CollectionInfo | None,
                decision: RolloutDecision) -> None:
        collection = self.reindex(candidate)
        decision.collection = collection
        rows = self.store.count(collection)
        live_rows = self.store.count(live.name) if live is not None else rows
        if rows != live_rows:
            decision.reasons.append(f"row count: {collection} has {rows} rows, live "
                                    f"{live.name} has {live_rows}; alias not switched")
            return
        self.store.set_alias(self.store.live_alias, collection)
        decision.decision = "promoted"
        decision.reasons.append(f"reindexed {rows} rows; live alias {self.store.live_alias}: "
                                f"{live.name if live else '(none)'} -> {collection}")
        decision.reasons.append(
            f"next: run the embedder with PATENTCLIP_MODEL={candidate.spec}; its consumer "
            f"group continues where the reindex stopped. Keep the previous version's "
            "embedder until the rollback window closes: it keeps the rollback target complete")

    def _record(self, decision: RolloutDecision) -> RolloutDecision:
        body = asdict(decision)
        self.registry.record_decision(body)
        for line in decision.lines():
            logger.info(line)
        return decision
