"""Generate the Grafana dashboards in deploy/grafana/dashboards/ (`make dashboards`).

The dashboards are data: a title and PromQL per panel. Writing them here keeps the JSON
consistent (one data source, one grid) and lets tests read every panel's query; the
integration test runs each one through a real Prometheus. Do not edit the JSON by hand.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
OUT = Path(__file__).parent / "dashboards"
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    """One time series (or stat) panel: its title, unit and PromQL targets (expr, legend)."""

    title: str
    targets: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel] = field(default_factory=list)


def quantiles(metric: str, by: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))",
                  f"p{round(q * 100)} {{{{{by}}}}}") for q in (0.5, 0.95, 0.99))


INGESTION = Dashboard("patentclip-ingestion", "PatentCLIP / Ingestion",
                      "Grants topic -> embedder -> Milvus: throughput, lag, stages, dead letters", [
    Panel("Grants ingested per second", (
        ("sum(rate(patentclip_embedder_grants_ingested_total[$__rate_interval]))", "grants/s"),
        ("sum(rate(patentclip_embedder_sheets_embedded_total[$__rate_interval]))", "sheets/s"),
    ), unit="ops"),
    Panel("Consumer lag per partition", (
        ("sum by (partition) (patentclip_embedder_consumer_lag_messages)",
         "partition {{partition}}"),
    ), description="Messages not yet consumed; KEDA scales the embedder on this"),
    Panel("Stage latency per micro-batch (p95)", (
        ("histogram_quantile(0.95, sum by (le, stage) "
         "(rate(patentclip_embedder_stage_seconds_bucket[$__rate_interval])))", "{{stage}}"),
    ), unit="s"),
    Panel("Dead-lettered grants by reason", (
        ("sum by (reason) (increase(patentclip_embedder_dead_lettered_total[$__rate_interval]))",
         "{{reason}}"),
    )),
    Panel("Sheets by how their figures are known", (
        ("sum by (mapping) (increase(patentclip_embedder_sheets_by_figures_total"
         "[$__rate_interval]))", "{{mapping}}"),
    ), description="unknown: counts disagree and the labels, where read, disagreed with the "
       "XML (kept as whole sheets); labels: figures read from the sheet"),
    Panel("Rows for parts of sheets", (
        ("sum by (kind) (rate(patentclip_embedder_part_rows_total[$__rate_interval]))",
         "{{kind}}"),
    ), unit="ops"),
    Panel("Sheets per micro-batch (p50)", (
        ("histogram_quantile(0.5, sum by (le) "
         "(rate(patentclip_embedder_batch_sheets_bucket[$__rate_interval])))", "p50"),
    )),
    Panel("Retries by dependency", (
        ("sum by (dependency) (increase(patentclip_embedder_retries_total[$__rate_interval]))",
         "{{dependency}}"),
    )),
    Panel("Hours since the last grant was ingested", (
        ("(time() - max(patentclip_embedder_last_ingest_timestamp_seconds)) / 3600", "hours"),
    ), kind="stat", description="The weekly feed alert fires after 8 days"),
    Panel("Embedder ready", (("patentclip_embedder_ready", "{{instance}}"),), kind="stat"),
])

SEARCH = Dashboard("patentclip-search", "PatentCLIP / Search",
                   "Query service: gRPC and HTTP load, latency, status codes, batching, caches", [
    Panel("Requests per second by method", (
        ("sum by (method) (rate(patentclip_query_requests_total[$__rate_interval]))",
         "{{method}}"),
    ), unit="reqps"),
    Panel("Latency by method (p50, p95, p99)",
          quantiles("patentclip_query_request_seconds", "method"), unit="s"),
    Panel("Requests by status code", (
        ("sum by (code) (rate(patentclip_query_requests_total[$__rate_interval]))", "{{code}}"),
    ), unit="reqps"),
    Panel("Server error ratio (SLO 1%)", (
        ("patentclip:query_errors:ratio_rate5m", "errors"),
    ), unit="percentunit"),
    Panel("Stage latency (p95)", (
        ("histogram_quantile(0.95, sum by (le, stage) "
         "(rate(patentclip_query_stage_seconds_bucket[$__rate_interval])))", "{{stage}}"),
    ), unit="s"),
    Panel("Encoder batch size (p50)", (
        ("histogram_quantile(0.5, sum by (le, kind) "
         "(rate(patentclip_query_encoder_batch_size_bucket[$__rate_interval])))", "{{kind}}"),
    )),
    Panel("Text-embedding cache hit ratio", (
        ('sum(rate(patentclip_query_text_cache_total{result="hit"}[$__rate_interval])) '
         "/ sum(rate(patentclip_query_text_cache_total[$__rate_interval]))", "hit ratio"),
    ), unit="percentunit"),
    Panel("Web app and embedding provider: HTTP requests by route and status", (
        ("sum by (route, status) (rate(patentclip_query_http_requests_total"
         "[$__rate_interval]))", "{{route}} {{status}}"),
    ), unit="reqps"),
    Panel("HTTP latency by route (p95)", (
        ("histogram_quantile(0.95, sum by (le, route) "
         "(rate(patentclip_query_http_request_seconds_bucket[$__rate_interval])))",
         "{{route}}"),
    ), unit="s"),
    Panel("Refused at the edge: HTTP by reason, overloaded decodes, tokens", (
        ("sum by (reason) (rate(patentclip_query_http_refused_total[$__rate_interval]))",
         "http {{reason}}"),
        ("sum(rate(patentclip_query_overloaded_total[$__rate_interval]))", "overloaded"),
        ("sum by (reason) (rate(patentclip_query_auth_failures_total[$__rate_interval]))",
         "auth {{reason}}"),
    ), unit="reqps", description="Host, token, body-limit and malformed refusals before any "
       "route ran; decodes refused after waiting for a slot (PATENTCLIP_QUERY_MAX_DECODES)"),
    Panel("Rendered-drawing cache hit ratio (GetDrawing, web thumbnails)", (
        ('sum(rate(patentclip_query_drawing_cache_total{result="hit"}[$__rate_interval])) '
         "/ sum(rate(patentclip_query_drawing_cache_total[$__rate_interval]))", "hit ratio"),
    ), unit="percentunit"),
    Panel("Serving", (("patentclip_query_serving", "{{instance}}"),), kind="stat"),
])

MODELS = Dashboard("patentclip-models", "PatentCLIP / Models",
                   "Live model, candidate vs live benchmarks, trainer cycles and rollouts", [
    Panel("Live model (query service)", (
        ("patentclip_query_model_info", "{{model_version}} ({{collection}})"),
    ), kind="stat"),
    Panel("Model the embedder writes with", (
        ("patentclip_embedder_model_info", "{{model_version}}"),
    ), kind="stat"),
    Panel("Served text->patent R@10 (the gate's protocol): candidate vs live", (
        ('patentclip_trainer_benchmark_metric{metric="served.text_R@10"}', "{{model}}"),
    ), unit="percentunit"),
    Panel("All gate metrics", (
        ("patentclip_trainer_benchmark_metric", "{{model}} {{metric}}"),
    ), unit="percentunit"),
    Panel("Last gate: candidate - live (MRR, or R@10 with its bootstrap interval), p-value", (
        ("patentclip_trainer_gate_difference", "{{bound}}"),
        ("patentclip_trainer_gate_p_value", "p-value (sign-flip)"),
        ("patentclip_trainer_gate_patents", "evaluation patents"),
    )),
    Panel("Rollout decisions and alias switches", (
        ("sum by (decision) (increase(patentclip_trainer_rollout_decisions_total[1h]))",
         "{{decision}}"),
        ("sum(increase(patentclip_query_model_swaps_total[1h]))", "query service swaps"),
    )),
    Panel("Trainer cycles by outcome", (
        ("sum by (status) (increase(patentclip_trainer_runs_total[1d]))", "{{status}}"),
    )),
    Panel("Trainer step", (("patentclip_trainer_step == 1", "{{step}}"),), kind="stat"),
    Panel("Rows in the live collection", (("patentclip_query_corpus_rows", "rows"),),
          kind="stat"),
])

DASHBOARDS = (INGESTION, SEARCH, MODELS)


def render(dashboard: Dashboard) -> dict:
    """The Grafana dashboard model (schemaVersion 39), two panels a row."""
    panels = []
    for i, panel in enumerate(dashboard.panels):
        panels.append({
            "id": i + 1, "type": panel.kind, "title": panel.title,
            "description": panel.description, "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + j), "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend}
                        for j, (expr, legend) in enumerate(panel.targets)],
        })
    return {"uid": dashboard.uid, "title": dashboard.title,
            "description": dashboard.description, "tags": ["patentclip"],
            "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
            "time": {"from": "now-24h", "to": "now"}, "panels": panels}


def rendered() -> dict[str, str]:
    """File name -> JSON text for every dashboard."""
    return {f"{d.uid.removeprefix('patentclip-')}.json":
            json.dumps(render(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
