"""The embedder's Prometheus metrics (one registry per service instance).

Labels are bounded: stage (5 values), reason (the fixed dead-letter codes), dependency
(milvus, image_store, kafka), mapping (4 values), kind (figure, part) and partition (the
topic's partition count). Never a patent number.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from patentclip.codec.events import DEAD_LETTER_REASONS
from patentclip.grants.model import SheetFigureMapping

STAGES = ("decode", "encode", "upsert", "commit", "flush")
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class EmbedderMetrics:
    """Counters, histograms and gauges of one embedder process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_consumed = Counter(
            "patentclip_embedder_messages_consumed_total",
            "Grant events taken from the topic (before any processing)", registry=r)
        self.grants_ingested = Counter(
            "patentclip_embedder_grants_ingested_total",
            "Grant events whose sheets were all written to Milvus", registry=r)
        self.sheets_embedded = Counter(
            "patentclip_embedder_sheets_embedded_total",
            "Drawing sheets encoded and upserted (drawing + caption rows)", registry=r)
        self.sheets_by_figures = Counter(
            "patentclip_embedder_sheets_by_figures_total",
            "Sheets embedded, by how their figures are known: one-per-sheet (the XML's "
            "counts agree), labels (read from the sheet), unknown (counts disagree and the "
            "labels, where read, disagreed with the XML: kept as whole sheets), front-page",
            ["mapping"], registry=r)
        self.part_rows = Counter(
            "patentclip_embedder_part_rows_total",
            "Rows written for parts of sheets: a figure of a sheet of several, or a tile",
            ["kind"], registry=r)
        self.dead_lettered = Counter(
            "patentclip_embedder_dead_lettered_total",
            "Events sent to the dead-letter topic, by reason", ["reason"], registry=r)
        self.withdrawn = Counter(
            "patentclip_embedder_patents_withdrawn_total",
            "Tombstones applied: patents whose rows were deleted (withdrawn after issue)",
            registry=r)
        self.retries = Counter(
            "patentclip_embedder_retries_total",
            "Retries of a batch after a retriable failure, by dependency", ["dependency"],
            registry=r)
        self.batch_sheets = Histogram(
            "patentclip_embedder_batch_sheets", "Drawing sheets per micro-batch",
            buckets=_BATCH_BUCKETS, registry=r)
        self.stage_seconds = Histogram(
            "patentclip_embedder_stage_seconds",
            "Time per micro-batch and stage (decode = time the encoder waited for decoding)",
            ["stage"], buckets=_STAGE_BUCKETS, registry=r)
        self.lag = Gauge(
            "patentclip_embedder_consumer_lag_messages",
            "Messages not yet consumed, per partition of the grants topic", ["partition"],
            registry=r)
        self.last_ingest = Gauge(
            "patentclip_embedder_last_ingest_timestamp_seconds",
            "Unix time the last grant was written (alert when the weekly feed stops)",
            registry=r)
        self.ready = Gauge(
            "patentclip_embedder_ready", "1 when consuming normally, 0 while waiting on a "
            "dependency or starting", registry=r)
        self.model = Info(
            "patentclip_embedder_model", "Model version and collection being written",
            registry=r)
        for stage in STAGES:  # every bounded series exists from the start, so rate() and
            self.stage_seconds.labels(stage)  # increase() see the first event too
        for reason in DEAD_LETTER_REASONS:
            self.dead_lettered.labels(reason)
        for mapping in SheetFigureMapping:
            self.sheets_by_figures.labels(mapping.value)
        for kind in ("figure", "part"):
            self.part_rows.labels(kind)
        for dependency in ("milvus", "image_store", "kafka"):
            self.retries.labels(dependency)

    def set_lag(self, lag: dict[int, int]) -> None:
        for partition, value in lag.items():
            self.lag.labels(str(partition)).set(value)
