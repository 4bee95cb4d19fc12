"""GrantConsumer: the embedder's loop. Poll -> decode -> encode -> upsert -> commit.

Delivery is at-least-once with idempotent writes, which gives exactly one row per sheet:

1. poll a micro-batch (``batch_grants`` events, or what arrived within ``batch_max_wait_ms``);
2. start fetching and decoding its drawings in worker threads (``SheetEmbedder.prepare``),
   then finish the *previous* batch while they run, so the encoder never waits on TIFFs;
3. finishing a batch: encode, upsert into the model version's collection (keyed rows),
   dead-letter the events that cannot be used, and only then commit offsets (last + 1).

A crash anywhere before the commit re-delivers the batch; the upsert replaces the same
keys. Retriable failures (Milvus, image store, broker) are retried with capped back-off
while the consumer is paused in its group: nothing is skipped or committed past what was
written. On shutdown the batch not yet written is abandoned uncommitted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import wait as wait_for_all
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from tqdm import tqdm

from patentclip.codec.events import (
    REASON_INVALID_GRANT,
    check_event_key,
    decode_event,
    tombstone_patent,
)
from patentclip.drawings.parts import Tiling
from patentclip.errors import EventDecodeError, UnavailableError
from patentclip.ingest.sheets import EmbeddedBatch, PreparedBatch, SheetEmbedder, SheetJob
from patentclip.model.encoder import Encoder
from patentclip.store import PatentStore
from services.common.broker import make_consumer, make_producer, partition_lag
from services.common.failpoints import Failpoints
from services.common.retry import Backoff, Stopping
from services.embedder.config import EmbedderSettings, embedder_group
from services.embedder.metrics import EmbedderMetrics

logger = logging.getLogger(__name__)

HEADER_PREFIX = "patentclip."


class _KafkaUnavailable(UnavailableError):
    """A produce or commit to the broker failed in a way worth retrying."""


@dataclass(frozen=True)
class DeadLetter:
    """An event that cannot be ingested, and why."""

    record: object  # kafka ConsumerRecord
    reason: str
    detail: str
    failed_sheets: tuple[str, ...] = ()


@dataclass
class MicroBatch:
    records: list
    dead: list[DeadLetter]
    prepared: PreparedBatch
    offsets: dict[TopicPartition, int]  # next offset to commit, per partition
    withdrawn: tuple[str, ...] = ()  # patents whose tombstone is in this batch


@dataclass
class ConsumeSummary:
    """What a run did (returned to the CLI and to tests)."""

    collection: str = ""
    model_version: str = ""
    events: int = 0
    sheets: int = 0
    rows: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    withdrawn: int = 0  # tombstones applied (patents removed)
    seconds: float = 0.0
    caught_up: bool = False


class GrantConsumer:
    """One member of the embedder consumer group.

    Batch N+1's drawings are decoded while batch N is encoded and written (``prefetch``,
    the default). ``prefetch=False`` finishes decoding each batch before the next poll:
    the serial baseline ``make bench-ingest`` measures the overlap against.
    """

    def __init__(self, settings: EmbedderSettings, encoder: Encoder, store: PatentStore,
                 images, metrics: EmbedderMetrics | None = None,
                 stop: threading.Event | None = None, progress: bool = False,
                 prefetch: bool = True) -> None:
        self.settings, self.encoder, self.store = settings, encoder, store
        self.metrics = metrics or EmbedderMetrics()
        self.stop = stop or threading.Event()
        self.embedder = SheetEmbedder(encoder, images, settings.consumer.decode_workers,
                                      Tiling.of(settings.core.tile_scales()))
        self.failpoints = Failpoints(settings.consumer.failpoint)
        self.progress, self.prefetch = progress, prefetch
        self.summary = ConsumeSummary(model_version=encoder.model_version)
        self.ready_reason = "starting"
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._unflushed = 0  # rows written since the last flush
        c = settings.consumer
        self.backoff = Backoff(c.retry_initial_s, c.retry_max_s, self.stop,
                               keepalive=self._keepalive, on_retry=self._on_retry,
                               on_recovered=self._on_recovered)

    # -- lifecycle

    def run(self, until_caught_up: bool = False) -> ConsumeSummary:
        """Consume until stop is set (or, with ``until_caught_up``, until no lag is left)."""
        started = time.perf_counter()
        try:
            self.summary.collection = self._target_collection()
        except Stopping:
            logger.info("stop requested while waiting for Milvus to create the collection")
            self._close()
            return self.summary
        self.metrics.model.info({"model_version": self.encoder.model_version,
                                 "collection": self.summary.collection})
        self._connect()
        pending: MicroBatch | None = None
        bar = tqdm(desc="ingesting", unit="event", disable=not self.progress)
        try:
            self._set_ready("")
            while not self.stop.is_set():
                records = self._poll_batch()
                batch = self._prepare(records) if records else None
                if pending is not None:
                    self._finish(pending)
                    bar.update(len(pending.records))
                pending = batch
                if pending is None:
                    self._flush_if_idle()
                lag = partition_lag(self._consumer)
                self.metrics.set_lag(lag)
                if lag:
                    bar.set_postfix(lag=sum(lag.values()), refresh=False)
                if until_caught_up and pending is None and self._caught_up(lag):
                    self.summary.caught_up = True
                    break
        except Stopping:
            logger.info("stop requested while waiting on a dependency")
        finally:
            bar.close()
            if pending is not None:
                logger.info("abandoning an uncommitted batch of %d events (re-delivered "
                            "later)", len(pending.records))
            self._close()
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    def assignment(self) -> set[TopicPartition]:
        """Partitions this member holds now (empty before it joined its group)."""
        return set(self._consumer.assignment()) if self._consumer else set()

    def _target_collection(self) -> str:
        """The model version's collection, created if missing; waits (capped back-off,
        /readyz says why) for as long as Milvus is down, also when the embedder starts."""
        return self.backoff.call(self._ensure_target, (UnavailableError,), "milvus")

    def _ensure_target(self) -> str:
        info = self.encoder.info
        collection = self.store.ensure_collection(info.model_version, info.dim, info.spec,
                                                  info.pretrained)
        if self.settings.consumer.set_live_if_missing:
            live = self.store.set_live_if_missing(collection)
            if live != collection:
                logger.warning("writing to %s while the live alias points at %s (a reindex "
                               "or a rollout in progress?)", collection, live)
        return collection

    def _connect(self) -> None:
        k, c = self.settings.kafka, self.settings.consumer
        group = c.group_id or embedder_group(self.encoder.model_version)
        self._consumer = make_consumer(k, group, "embedder", c.session_timeout_ms,
                                       c.max_poll_interval_ms, c.batch_grants)
        self._consumer.subscribe([k.topic], listener=_RebalanceLog(self.metrics))
        self._producer = make_producer(k, "embedder-dlq")
        logger.info("consuming %s as group %s into %s (model %s)", k.topic, group,
                    self.summary.collection, self.encoder.model_version)

    def _close(self) -> None:
        self._set_ready("stopped")
        if self._consumer is not None:
            self._consumer.close(autocommit=False)  # leaves the group: partitions move now
        if self._producer is not None:
            self._producer.close(timeout=5)
        self.embedder.close()

    # -- the loop's steps

    def _poll_batch(self) -> list:
        """Up to ``batch_grants`` events; returns early when ``batch_max_wait_ms`` passed
        since the first one, or after an empty 200 ms poll."""
        c = self.settings.consumer
        records: list = []
        deadline = None
        while len(records) < c.batch_grants and not self.stop.is_set():
            now = time.monotonic()
            timeout_ms = 200 if deadline is None else int(max(0.0, deadline - now) * 1000)
            polled = self._consumer.poll(timeout_ms=timeout_ms,
                                         max_records=c.batch_grants - len(records))
            for messages in polled.values():
                records.extend(messages)
            if records and deadline is None:
                deadline = now + c.batch_max_wait_ms / 1000
            if not polled and (deadline is None or time.monotonic() >= deadline):
                break
        self.metrics.messages_consumed.inc(len(records))
        return records

    def _prepare(self, records: list) -> MicroBatch:
        """Parse events and start decoding their drawings (returns before decoding ends,
        unless ``prefetch`` is off).

        A tombstone (null value, key = patent) withdraws the patent: its rows are deleted
        before this batch's upsert, and a grant of that patent earlier in the same batch is
        dropped, so the last event of a patent wins, as under compaction."""
        jobs, dead, withdrawn = [], [], {}
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
            try:
                if record.value is None:
                    patent = tombstone_patent(record.key)
                    jobs = [job for job in jobs if job.grant.patent_number != patent]
                    withdrawn[patent] = record
                    continue
                grant = decode_event(record.value, self.settings.kafka.max_event_bytes).grant
                check_event_key(record.key, grant)
            except EventDecodeError as exc:
                dead.append(DeadLetter(record, exc.reason, exc.detail))
                continue
            except Exception as exc:  # noqa: BLE001 - no event may stop the embedder
                logger.exception("event %s[%d]@%d: unexpected failure reading it",
                                 record.topic, record.partition, record.offset)
                dead.append(DeadLetter(record, REASON_INVALID_GRANT,
                                       f"unreadable event ({type(exc).__name__}: {exc})"))
                continue
            jobs += [SheetJob(grant, sheet, sheet.image_uri, tag=record) for sheet in grant.sheets]
        prepared = self.embedder.prepare(jobs)
        if not self.prefetch:
            wait_for_all(prepared.futures)  # failures are still read where they always are
        return MicroBatch(records, dead, prepared, offsets, tuple(withdrawn))

    def _finish(self, batch: MicroBatch) -> None:
        """Encode, upsert, dead-letter, commit: in this order, each retried if retriable."""
        embedded = self.backoff.call(lambda: self._embed(batch), (UnavailableError,),
                                     "image_store")
        dead = batch.dead + _dead_letters_for(embedded)
        self.failpoints.hit("before_upsert")
        started = time.perf_counter()
        self._withdraw(batch.withdrawn)
        rows = self.backoff.call(
            lambda: self.store.upsert(self.summary.collection, embedded.rows),
            (UnavailableError,), "milvus", alongside=True)
        self.metrics.stage_seconds.labels("upsert").observe(time.perf_counter() - started)
        self.failpoints.hit("after_upsert")
        if dead:
            self.backoff.call(lambda: self._send_dead_letters(dead), (_KafkaUnavailable,),
                              "kafka")
        self._commit(batch.offsets)
        self._count(batch, embedded, rows, dead)

    def _withdraw(self, patents: tuple[str, ...]) -> None:
        """Delete the rows of withdrawn patents (their tombstones), before the upsert."""
        for patent in patents:
            deleted = self.backoff.call(
                lambda p=patent: self.store.delete_patent(self.summary.collection, p),
                (UnavailableError,), "milvus", alongside=True)
            logger.info("withdrawn %s: deleted %d rows from %s (tombstone)", patent, deleted,
                        self.summary.collection)
        self.metrics.withdrawn.inc(len(patents))
        self.summary.withdrawn += len(patents)
        self._unflushed += len(patents)

    def _flush_if_idle(self) -> None:
        """Seal what this embedder wrote once the topic goes quiet: Milvus Lite searches
        growing (unsealed) rows by brute force in Python, tens of times slower than its
        indexed segments (docs/performance.md); a weekly burst is sealed once, when done."""
        if not self.settings.consumer.flush_when_idle or not self._unflushed:
            return
        started = time.perf_counter()
        self.backoff.call(lambda: self.store.flush(self.summary.collection),
                          (UnavailableError,), "milvus", alongside=True)
        self.metrics.stage_seconds.labels("flush").observe(time.perf_counter() - started)
        logger.info("sealed %d rows in %s (topic idle)", self._unflushed,
                    self.summary.collection)
        self._unflushed = 0

    def _embed(self, batch: MicroBatch) -> EmbeddedBatch:
        try:
            embedded = self.embedder.embed(batch.prepared)
        except UnavailableError:
            batch.prepared = self.embedder.prepare(batch.prepared.jobs)  # fresh fetches
            raise
        self.metrics.stage_seconds.labels("decode").observe(embedded.decode_wait_seconds)
        self.metrics.stage_seconds.labels("encode").observe(embedded.encode_seconds)
        self.metrics.batch_sheets.observe(len(embedded.embedded))
        return embedded

    def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        topic = self.settings.kafka.dlq_topic
        try:
            limit = self.settings.kafka.max_event_bytes
            futures = [self._producer.send(topic, key=d.record.key,
                                           value=(d.record.value or b"")[:limit],
                                           headers=_dlq_headers(d)) for d in dead]
            self._producer.flush(timeout=self.settings.kafka.request_timeout_ms / 1000)
            for future in futures:
                future.get(timeout=1)
        except KafkaError as exc:
            raise _KafkaUnavailable(f"dead-letter topic {topic}: {exc}") from exc
        for d in dead:
            logger.warning("dead-lettered %s[%d]@%d: %s", d.record.topic, d.record.partition,
                           d.record.offset, d.detail)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        owned = self._consumer.assignment()
        mine = {tp: OffsetAndMetadata(offset, None, -1) for tp, offset in offsets.items()
                if tp in owned}
        if not mine:
            return
        started = time.perf_counter()
        try:
            self.backoff.call(lambda: self._commit_once(mine), (_KafkaUnavailable,), "kafka")
        except CommitFailedError as exc:
            # The group rebalanced: the new owner re-reads these events; upserts are keyed.
            logger.warning("commit refused after a rebalance (events will be re-delivered): "
                           "%s", exc)
        self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - started)

    def _commit_once(self, offsets: dict) -> None:
        try:
            self._consumer.commit(offsets=offsets)
        except CommitFailedError:
            raise
        except KafkaError as exc:
            raise _KafkaUnavailable(f"offset commit: {exc}") from exc

    def _count(self, batch: MicroBatch, embedded: EmbeddedBatch, rows: int,
               dead: list[DeadLetter]) -> None:
        dead_records = {id(d.record) for d in dead}
        ingested = sum(1 for r in batch.records
                       if id(r) not in dead_records and r.value is not None)
        self.metrics.grants_ingested.inc(ingested)
        self.metrics.sheets_embedded.inc(len(embedded.embedded))
        for job in embedded.embedded:
            self.metrics.sheets_by_figures.labels(job.sheet.mapping.value).inc()
        for row in embedded.rows:
            if row.modality in ("figure", "part"):
                self.metrics.part_rows.labels(row.modality).inc()
        for d in dead:
            self.metrics.dead_lettered.labels(d.reason).inc()
            self.summary.dead_lettered[d.reason] = self.summary.dead_lettered.get(d.reason,
                                                                                  0) + 1
        if embedded.embedded:
            self.metrics.last_ingest.set_to_current_time()
        self.summary.events += len(batch.records)
        self.summary.sheets += len(embedded.embedded)
        self.summary.rows += rows
        self._unflushed += rows

    def _caught_up(self, lag: dict[int, int]) -> bool:
        assigned = self._consumer.assignment()
        return bool(assigned) and len(lag) == len(assigned) and not any(lag.values())

    # -- back-off hooks

    def _keepalive(self) -> None:
        """While waiting to retry, or on a slow Milvus write: stay in the group without
        taking new events."""
        assigned = self._consumer.assignment() if self._consumer else set()
        if assigned:
            self._consumer.pause(*assigned)
            self._consumer.poll(timeout_ms=0)

    def _on_retry(self, dependency: str, exc: Exception) -> None:
        self.metrics.retries.labels(dependency).inc()
        self._set_ready(f"waiting for {dependency}: {exc}")

    def _on_recovered(self, dependency: str) -> None:
        if self._consumer is not None and self._consumer.paused():
            self._consumer.resume(*self._consumer.paused())
        self._set_ready("")

    def _set_ready(self, reason: str) -> None:
        self.ready_reason = reason
        self.metrics.ready.set(0 if reason else 1)


class _RebalanceLog(ConsumerRebalanceListener):
    """Logs partition moves and drops lag series of partitions this member gave up."""

    def __init__(self, metrics: EmbedderMetrics) -> None:
        self.metrics = metrics

    def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            try:
                self.metrics.lag.remove(str(tp.partition))
            except KeyError:
                pass  # never measured
        if revoked:
            logger.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned) -> None:
        logger.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))


def _dead_letters_for(embedded: EmbeddedBatch) -> list[DeadLetter]:
    """One dead letter per event that had sheets fail, naming them and the first reason."""
    by_record: dict[int, list] = {}
    for failure in embedded.failures:
        by_record.setdefault(id(failure.job.tag), []).append(failure)
    letters = []
    for failures in by_record.values():
        reasons = Counter(f.reason for f in failures)
        letters.append(DeadLetter(
            failures[0].job.tag, reasons.most_common(1)[0][0],
            "; ".join(f.detail for f in failures),
            tuple(f.job.sheet.file_name for f in failures)))
    return letters


def _dlq_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    record = dead.record
    headers = {
        "reason": dead.reason, "detail": dead.detail[:1000], "source.topic": record.topic,
        "source.partition": str(record.partition), "source.offset": str(record.offset),
        "failed-sheets": ",".join(dead.failed_sheets),
        "dead-lettered-unix-ms": str(int(time.time() * 1000)),
        # An oversized value is cut to the limit here; the whole one stays in the source
        # topic (kept forever) at the offset above.
        "value-bytes": str(len(record.value or b"")),
    }
    return [(HEADER_PREFIX + k, v.encode("utf-8")) for k, v in headers.items()]
