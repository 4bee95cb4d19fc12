"""The trainer service's Prometheus metrics (one registry per process).

Labels are bounded: status (succeeded, failed, stopped), step (data, train, benchmark,
rollout), decision (promoted, rejected, awaiting_approval), model (candidate, live),
metric (the few gate metrics below) and bound (low, estimate, high). Never a version
string as a label value except in the ``_info`` metric, which has one series.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from trainer.benchmark import metric as read_metric

EXPORTED_METRICS = ("served.text_R@10", "served.text_mrr", "served.drawing_mrr",
                    "patent_aware.text_to_image_R@10", "standard.text_to_image_R@10",
                    "standard.image_to_text_R@10", "prior_art.map",
                    "terciles_R@10.patent_aware.tail", "zero_shot_accuracy")
STEPS = ("idle", "data", "train", "benchmark", "rollout")
DECISIONS = ("promoted", "rejected", "awaiting_approval")


class TrainerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter("patentclip_trainer_runs_total", "Trainer cycles by outcome",
                            ["status"], registry=r)
        self.duration = Gauge("patentclip_trainer_last_run_duration_seconds",
                              "Wall time of the last finished cycle", registry=r)
        self.last_success = Gauge("patentclip_trainer_last_success_timestamp_seconds",
                                  "Unix time the last cycle succeeded", registry=r)
        self.last_status = Gauge("patentclip_trainer_last_run_failed",
                                 "1 if the last cycle failed, else 0", registry=r)
        self.step = Gauge("patentclip_trainer_step", "1 for the step the trainer is in",
                          ["step"], registry=r)
        self.decisions = Counter("patentclip_trainer_rollout_decisions_total",
                                 "Rollout decisions by outcome", ["decision"], registry=r)
        self.benchmark = Gauge("patentclip_trainer_benchmark_metric",
                               "Latest benchmark results of the candidate and of live",
                               ["model", "metric"], registry=r)
        self.gate = Gauge("patentclip_trainer_gate_difference",
                          "Last gate: candidate - live on the gate metric, with the bounds of "
                          "its bootstrap interval (sign_flip_rr: the MRR difference as "
                          "the estimate)", ["bound"], registry=r)
        self.gate_p = Gauge("patentclip_trainer_gate_p_value",
                            "Last gate (sign_flip_rr): the one-sided p-value of the candidate "
                            "beating live by the margin", registry=r)
        self.gate_patents = Gauge("patentclip_trainer_gate_patents",
                                  "Evaluation patents the last gate decided on", registry=r)
        self.versions = Info("patentclip_trainer_versions",
                             "Latest candidate, its parent and the evaluation set", registry=r)
        for status in ("succeeded", "failed", "stopped"):  # series exist from the start, so
            self.runs.labels(status)  # increase() counts the first run and decision too
        for decision in DECISIONS:
            self.decisions.labels(decision)
        self.set_step("idle")

    def set_step(self, step: str) -> None:
        for name in STEPS:
            self.step.labels(name).set(1 if name == step else 0)

    def record(self, result) -> None:
        """Export a finished CycleResult."""
        self.runs.labels(result.status).inc()
        self.duration.set(result.seconds)
        self.last_status.set(1 if result.status == "failed" else 0)
        if result.status == "succeeded":
            self.last_success.set(time.time())
        if result.decision:
            self.decisions.labels(result.decision).inc()
        for model, results in (("candidate", result.candidate_metrics),
                               ("live", result.live_metrics)):
            for name in EXPORTED_METRICS:
                value = read_metric(results or {}, name)
                if value is not None:
                    self.benchmark.labels(model, name).set(value)
        gate = getattr(result, "gate", None) or {}
        if "interval" in gate:  # bootstrap_recall
            low, high = gate["interval"]
            for bound, value in (("low", low), ("estimate", gate["difference"]),
                                 ("high", high)):
                self.gate.labels(bound).set(value)
        if "p_value" in gate:  # sign_flip_rr: the MRR difference and its p-value
            self.gate.labels("estimate").set(gate["mrr_difference"])
            self.gate_p.set(gate["p_value"])
        if "patents" in gate:
            self.gate_patents.set(gate["patents"])
        self.versions.info({"candidate": result.version, "parent": result.parent,
                            "eval_set": result.eval_set})
        self.set_step("idle")
