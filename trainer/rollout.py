"""Gated rollout and rollback of registered model versions.

``Rollout.promote(version)``:

1. verify the version's files against its manifest checksums;
2. drop the evaluation sets that overlap the training window of either model (a
   registered version's window is in its manifest; an outside checkpoint's is configured,
   ``outside_trained_through``), and say so;
3. benchmark candidate and live on each remaining set (results stored under the set's
   content hash are reused);
4. :class:`trainer.gate.RolloutGate`: paired tests over the pooled sets' patents on the
   served protocol; the candidate must beat live by the margin at the per-decision level,
   be shown non-inferior on drawing -> patent, and no tercile of at least 30 patents may
   regress significantly;
5. reindex the corpus into the candidate's collection (the grants topic replayed from
   offset 0, the streaming reindex);
6. check the candidate collection has exactly as many rows as live's;
7. switch the live alias (one atomic ``alter_alias``); query services follow it.

Every decision, passed or not, is printed by the caller and appended to the registry's
``decisions.jsonl`` with its reasons and the gate's figures. ``rollback()`` points the alias
back at the collection the last promotion replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta

from patentclip.errors import InvalidInputError, ModelLoadError, NotFoundError, PatentClipError
from patentclip.model.registry import ModelRegistry, ModelVersion
from patentclip.store import CollectionInfo, PatentStore
from trainer.benchmark import Protocol
from trainer.data import EvalSet, grant_week
from trainer.gate import RolloutGate

logger = logging.getLogger(__name__)

# Kept in manifests, left out of decisions.jsonl:
BULKY = ("per_query", "per_query_drawing", "per_query_sheets", "per_class")


@dataclass(frozen=True)
class TrainingWindow:
    """The grant dates a model was trained on (None: unknown, or not bounded there)."""

    first: int | None = None
    last: int | None = None
    source: str = ""  # where the window comes from, for the reasons
    gap_weeks: int = 0  # weeks after ``last`` that no evaluation set may start in

    def overlaps(self, eval_set: EvalSet) -> bool:
        """Whether the set starts within the window or the ``gap_weeks`` after it: grants
        of the week after training share designs, filings and examiners with it, so an
        evaluation that starts there is not a fair test of what comes later."""
        if self.last is None:
            return False
        window = eval_set.window
        end = grant_week(self.last) + timedelta(weeks=self.gap_weeks + 1)
        return grant_week(window["first_grant_date"]) < end and \
            (self.first is None or window["last_grant_date"] >= self.first)

    def __str__(self) -> str:
        """'<source>: trained on grants <first>–<last>' (… where unbounded): the reasons'."""
        return f"{self.source}: trained on grants {self.first or '…'}–{self.last}"

    def joined(self, other: TrainingWindow) -> TrainingWindow:
        """The window of a model and its ancestor: from the earlier first date (None if
        either is unbounded there) to the later last one."""
        if other.last is None:
            return self
        if self.last is None:
            return replace(other, gap_weeks=self.gap_weeks)
        first = None if self.first is None or other.first is None else min(self.first,
                                                                          other.first)
        return TrainingWindow(first, max(self.last, other.last),
                              f"{self.source} and its ancestors", self.gap_weeks)


@dataclass
class RolloutDecision:
    """What a rollout or rollback decided, and why (stored in decisions.jsonl)."""

    action: str  # rollout | rollback
    version: str
    decision: str  # promoted | rejected | rolled_back
    reasons: list[str] = field(default_factory=list)
    eval_sets: list[str] = field(default_factory=list)
    live_version: str = ""
    live_collection: str = ""
    collection: str = ""
    candidate_metrics: dict = field(default_factory=dict)  # the newest set's, in brief
    live_metrics: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)  # GateResult.summary

    def lines(self) -> list[str]:
        head = f"{self.action} {self.version}: {self.decision.upper()}"
        return [head, *(f"  - {r}" for r in self.reasons)]


Benchmark = Callable[[str, str, EvalSet], dict]  # (model spec, pretrained, set) -> results
Reindex = Callable[[ModelVersion], str]  # version -> the collection it was written into


class Rollout:
    """Promotes registered versions behind the gate; rolls back."""

    def __init__(self, registry: ModelRegistry, store: PatentStore,
                 gate: RolloutGate | None = None, eval_sets: Sequence[EvalSet] = (),
                 benchmark: Benchmark | None = None, reindex: Reindex | None = None,
                 outside_windows: Sequence[tuple[str, int]] = (), gap_weeks: int = 1) -> None:
        """``gate``, ``eval_sets``, ``benchmark`` and ``reindex`` are what ``promote`` needs;
        ``rollback`` needs only the registry and the store. ``outside_windows``: (spec
        prefix, last grant date trained on) of models that are not registered versions.
        ``gap_weeks``: weeks after a model's training window no evaluation set may start in."""
        self.registry, self.store, self.gate = registry, store, gate or RolloutGate()
        self.eval_sets, self.benchmark, self.reindex = list(eval_sets), benchmark, reindex
        self.outside_windows, self.gap_weeks = tuple(outside_windows), gap_weeks

    def promote(self, version: str) -> RolloutDecision:
        if self.benchmark is None or self.reindex is None or not self.eval_sets:
            raise InvalidInputError("a rollout needs evaluation sets, a benchmark and a "
                                    "reindex source")
        decision = RolloutDecision("rollout", version, "rejected")
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
        sets, notes = self._outside_training(candidate, live)
        decision.eval_sets = [s.name for s in sets]
        if not sets:
            decision.reasons = [*notes, "no evaluation set is outside both models' training "
                                "windows: nothing to decide on"]
            return self._record(decision)
        candidate_results = [self._results(candidate.version, candidate.spec, "", s)
                             for s in sets]
        live_results = None if live is None else \
            [self._results(live.model_version, live.model_spec, live.pretrained, s)
             for s in sets]
        verdict = self.gate.decide(candidate_results, live_results)
        decision.reasons, decision.gate = [*notes, *verdict.reasons], verdict.summary
        decision.candidate_metrics = _brief(candidate_results[-1])
        decision.live_metrics = _brief(live_results[-1]) if live_results else {}
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

    def window(self, version: str, spec: str) -> TrainingWindow:
        """The training window of a model's whole lineage: a registered version's (its
        manifest) joined with its parent's, and theirs, up to an outside checkpoint, whose
        window is the configured one of the first matching spec prefix; else unknown. A
        candidate fine-tuned from a parent has seen what the parent saw."""
        window, seen = TrainingWindow(source="unknown", gap_weeks=self.gap_weeks), set()
        while version and version not in seen:
            seen.add(version)
            if not self.registry.exists(version):
                break
            manifest = self.registry.get(version).manifest
            data = manifest.get("data", {})
            window = window.joined(TrainingWindow(data.get("first_grant_date"),
                                                  data.get("last_grant_date"),
                                                  f"{version}'s manifest", self.gap_weeks))
            version = manifest.get("parent", "")
            spec = manifest.get("hyperparameters", {}).get("base_model", "")  # the parent's
        for prefix, last in self.outside_windows:
            if spec.startswith(prefix):
                window = window.joined(TrainingWindow(
                    None, last, f"outside_trained_through {prefix}={last}", self.gap_weeks))
                break
        return window

    def _outside_training(self, candidate: ModelVersion, live: CollectionInfo | None
                          ) -> tuple[list[EvalSet], list[str]]:
        """The evaluation sets neither model trained on, and a line per set refused."""
        windows = {"candidate": (candidate.version,
                                 self.window(candidate.version, candidate.spec))}
        if live is not None:
            windows["live"] = (live.model_version,
                               self.window(live.model_version, live.model_spec))
        notes = [f"{side} {name}: training window unknown (not a registered version, and no "
                 "outside_trained_through prefix matches); its evaluation sets are not checked"
                 for side, (name, w) in windows.items() if w.source == "unknown"]
        usable = []
        for eval_set in self.eval_sets:
            overlapping = [f"{side} ({w})"
                           for side, (_, w) in windows.items() if w.overlaps(eval_set)]
            if overlapping:
                notes.append(f"evaluation set {eval_set.name} refused: it overlaps the training "
                             f"window of {', '.join(overlapping)}")
            else:
                usable.append(eval_set)
        return usable, notes

    def _results(self, version: str, spec: str, pretrained: str, eval_set: EvalSet) -> dict:
        """A model's results on a set: stored under the set's content hash, else now."""
        # A Benchmarker names its protocol (backend, distractors); a plain function's
        # results are the default protocol's.
        how = getattr(self.benchmark, "protocol", Protocol().name)
        stored = self.registry.benchmark_results(version, eval_set.sha256, how)
        if stored is not None and "per_query" in stored:
            return stored
        if not spec:
            raise PatentClipError(f"cannot benchmark {version}: its collection records no "
                                  "model spec")
        results = self.benchmark(spec, pretrained, eval_set)
        self.registry.record_benchmark(version, results)
        return results

    def _switch(self, candidate: ModelVersion, live: CollectionInfo | None,
                decision: RolloutDecision) -> None:
        collection = self.reindex(candidate)
        decision.collection = collection
        # Complete means every sheet: figure and part rows follow settings (labels read,
        # PATENTCLIP_PART_TILES), which may differ between the two collections.
        rows = self.store.count(collection, "drawing")
        live_rows = self.store.count(live.name, "drawing") if live is not None else rows
        if rows != live_rows:
            decision.reasons.append(f"row count: {collection} has {rows} drawing sheets, live "
                                    f"{live.name} has {live_rows}; alias not switched")
            return
        self.store.set_alias(self.store.live_alias, collection)
        decision.decision = "promoted"
        decision.reasons.append(f"reindexed {rows} drawing sheets; live alias "
                                f"{self.store.live_alias}: "
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


def _brief(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in BULKY}
