"""Our own services as tests and benchmarks drive them: bundles, publishing, embedder and
query service processes, metrics, topic reading, client load."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from harness import REPO
from harness.processes import free_port
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.grants.reader import GrantReader
from patentclip.ingest.figures import FigureLabeller
from services.common.broker import KafkaSettings, ensure_topics, make_producer
from services.embedder.config import ConsumerSettings, EmbedderSettings
from services.publisher import GrantPublisher, PublishSummary

# Tansu's first group join waits for the rebalance timeout: keep these short in tests.
FAST_CONSUMER = ConsumerSettings(batch_grants=8, batch_max_wait_ms=200, session_timeout_ms=3000,
                                 max_poll_interval_ms=6000, retry_initial_s=0.2,
                                 retry_max_s=1.0, metrics_port=0)


def make_bundle(out: Path, patents: int, seed: int = 0, day: str = "2021-01-05",
                first_number: int | None = None) -> Path:
    from datetime import date

    from patentclip_cli.synthetic import BundleGenerator

    return BundleGenerator(seed=seed).write_bundle(out, date.fromisoformat(day), patents,
                                                   first_number=first_number)


def publish(kafka: KafkaSettings, images_dir: Path, *sources: Path,
            labeller=None) -> PublishSummary:
    ensure_topics(kafka, kafka.topic, kafka.dlq_topic)
    producer = make_producer(kafka, "test-publisher")
    try:
        return GrantPublisher(producer, LocalImageStore(images_dir), kafka.topic,
                              send_timeout_s=10, progress=False,
                              labeller=labeller).publish(sources)
    finally:
        producer.close(timeout=5)


def sheet_ids(*sources: Path) -> set[str]:
    """Primary keys the collection must hold: one per sheet image and modality."""
    from patentclip.store import row_id

    ids = set()
    for source in sources:
        for document in GrantReader().read(source):
            for sheet in document.grant.sheets:
                if sheet.file_name in document.images:
                    for modality in ("drawing", "caption"):
                        ids.add(row_id(document.grant.patent_number, sheet.number, modality))
    return ids


def settings(kafka: KafkaSettings, milvus_uri: str, model_dir: Path, images_dir: Path,
             prefix: str, **consumer) -> EmbedderSettings:
    from patentclip.config import CoreSettings

    core = CoreSettings(model=f"local-dir:{model_dir}", milvus_uri=milvus_uri,
                        images_dir=str(images_dir), collection_prefix=prefix, batch_size=16)
    return EmbedderSettings(core, kafka, replace(FAST_CONSUMER, **consumer))


def stored_ids(store, collection: str, kinds: tuple[str, ...] = ("drawing", "caption")
               ) -> list[str]:
    """The keys of the collection's rows of ``kinds`` (by default the sheets' own rows, not
    their figures' and parts')."""
    store.load(collection)
    rows = store.client.query(collection, filter=f"modality in {list(kinds)!r}".replace(
        "'", '"'), output_fields=["id"], limit=16384, consistency_level="Strong")
    return [r["id"] for r in rows]


def committed_offsets(kafka: KafkaSettings, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=kafka.servers, request_timeout_ms=10_000)
    try:
        offsets = admin.list_group_offsets(group)
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.get(group, {}).items()}


def read_topic(kafka: KafkaSettings, topic: str, expected: int, timeout: float = 20.0) -> list:
    """All messages of ``topic`` (stops when ``expected`` arrived or at the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers, enable_auto_commit=False,
                             request_timeout_ms=11_000)
    partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    messages, deadline = [], time.monotonic() + timeout
    while len(messages) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=300).values():
            messages.extend(batch)
    consumer.close()
    return messages


def produce_raw(kafka: KafkaSettings, items: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka.servers, acks="all")
    for key, value in items:
        producer.send(kafka.topic, key=key, value=value)
    producer.flush(timeout=10)
    producer.close()


def produce_foreign(kafka: KafkaSettings, items: list[tuple[bytes | None, bytes | None]]
                    ) -> None:
    """Produce with librdkafka (confluent-kafka): a producer that is not ours, with its own
    partitioner (consistent_random, as most non-Java clients default to)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "acks": "all",
                         "partitioner": "consistent_random"})
    failures = []
    for key, value in items:
        producer.produce(kafka.topic, key=key, value=value,
                         on_delivery=lambda err, msg: err and failures.append(err))
    assert producer.flush(30) == 0 and not failures, failures


class EmbedderProcess:
    """``python -m services.embedder`` in a child process, its log in a file."""

    def __init__(self, embedder: EmbedderSettings, log: Path, failpoint: str = "",
                 metrics_port: int = 0, extra_env: dict | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.log, self.metrics_port = log, metrics_port
        c, k, core = embedder.consumer, embedder.kafka, embedder.core
        env = dict(os.environ)
        env.update({
            "PATENTCLIP_MODEL": core.model, "PATENTCLIP_MILVUS_URI": core.milvus_uri,
            "PATENTCLIP_MILVUS_TOKEN": core.milvus_token,
            "PATENTCLIP_IMAGES_DIR": core.images_dir, "PATENTCLIP_BATCH_SIZE": "16",
            "PATENTCLIP_COLLECTION_PREFIX": core.collection_prefix,
            "PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "PATENTCLIP_KAFKA_TOPIC": k.topic, "PATENTCLIP_KAFKA_DLQ_TOPIC": k.dlq_topic,
            "PATENTCLIP_KAFKA_PARTITIONS": str(k.partitions),
            "PATENTCLIP_EMBEDDER_GROUP_ID": c.group_id,
            "PATENTCLIP_EMBEDDER_BATCH_GRANTS": str(c.batch_grants),
            "PATENTCLIP_EMBEDDER_BATCH_MAX_WAIT_MS": str(c.batch_max_wait_ms),
            "PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS": str(c.session_timeout_ms),
            "PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS": str(c.max_poll_interval_ms),
            "PATENTCLIP_EMBEDDER_RETRY_INITIAL_S": str(c.retry_initial_s),
            "PATENTCLIP_EMBEDDER_RETRY_MAX_S": str(c.retry_max_s),
            "PATENTCLIP_EMBEDDER_METRICS_HOST": "127.0.0.1",
            "PATENTCLIP_EMBEDDER_METRICS_PORT": str(metrics_port),
            "PATENTCLIP_EMBEDDER_FAILPOINT": failpoint,
            **(extra_env or {}),
        })
        self._out = open(log, "ab")
        self._offset = log.stat().st_size  # text() is this process' part of the log
        self.proc = subprocess.Popen([sys.executable, "-m", "services.embedder", *args],
                                     cwd=REPO, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def text(self) -> str:
        with open(self.log, "rb") as handle:
            handle.seek(self._offset)
            return handle.read().decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"embedder exited ({self.proc.returncode}) before "
                                     f"{needle!r}:\n{self.text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {needle!r} in the embedder log after {timeout}s:\n"
                             f"{self.text()[-3000:]}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._out.close()

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code


def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of a loopback HTTP GET; (0, 'unreachable') when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError:
        return 0, "unreachable"


def metric_value(port: int, name: str) -> float:
    """One sample of a service's /metrics (``name`` may carry labels); 0 when absent."""
    status, text = http_get(port, "/metrics")
    if status != 200:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or (("{" in name) and line.startswith(name)):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_ingested(metrics_port: int, grants: int, what: str, timeout: float = 120.0) -> None:
    """Wait until an embedder's /metrics counts ``grants`` ingested grant events."""
    wait_until(lambda: metric_value(metrics_port, "patentclip_embedder_grants_ingested_total")
               == grants, timeout, what)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class QueryProcess:
    """``python -m services.query`` in a child process on free ports, its log in a file.

    ``env`` adds to the defaults (model, Milvus, prefix, ports); ``channel`` makes a channel
    with the credentials the caller needs for the health check (default plaintext).
    """

    def __init__(self, model_dir: Path, milvus_uri: str, prefix: str, log: Path,
                 env: dict | None = None, args: tuple[str, ...] = ()) -> None:
        self.log, self.port, self.metrics_port = log, free_port(), free_port()
        self._env = {**os.environ, "PATENTCLIP_MODEL": f"local-dir:{model_dir}",
                     "PATENTCLIP_MILVUS_URI": milvus_uri, "PATENTCLIP_COLLECTION_PREFIX": prefix,
                     "PATENTCLIP_IMAGES_DIR": str(log.parent / "images"),
                     "PATENTCLIP_QUERY_HOST": "127.0.0.1",
                     "PATENTCLIP_QUERY_PORT": str(self.port),
                     "PATENTCLIP_QUERY_METRICS_HOST": "127.0.0.1",
                     "PATENTCLIP_QUERY_METRICS_PORT": str(self.metrics_port),
                     "PATENTCLIP_QUERY_ALIAS_POLL_S": "0.5", **(env or {})}
        self._args = args
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> QueryProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.query", *self._args],
                                         cwd=REPO, env=self._env, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout: float = 90.0, credentials=None) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        def serving() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"query service exited ({self.proc.returncode}):\n"
                                     f"{self.text()[-3000:]}")
            channel = (grpc.secure_channel(self.target, credentials) if credentials
                       else grpc.insecure_channel(self.target))
            with channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.RpcError:
                    return False
            return reply.status == health_pb2.HealthCheckResponse.SERVING

        wait_until(serving, timeout, f"query service SERVING:\n{self.text()[-2000:]}")

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as reply:
            return reply.read().decode()

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class QueryLoad:
    """Client threads querying without pause; every outcome is counted by status code.

    ``drawing`` (bytes) and ``patent`` add drawing and similar-patent queries to the text
    ones, taken in turn by each client. ``retry`` False counts each answer of the server:
    with the client's retries, four quick UNAVAILABLEs can add up to a DEADLINE_EXCEEDED.
    """

    def __init__(self, target: str, clients: int = 4, timeout: float = 5.0,
                 drawing: bytes | None = None, patent: str | None = None,
                 retry: bool = True) -> None:
        import threading
        from collections import Counter

        self.codes: Counter[str] = Counter()
        self.versions: set[str] = set()
        self._calls = [lambda c: c.search_text(random.choice(["chair", "lamp", "bottle"]), k=5)]
        if drawing:
            self._calls.append(lambda c: c.search_image(drawing, k=5))
        if patent:
            self._calls.append(lambda c: c.search_similar(patent, k=5))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(target, timeout, i, retry),
                                          daemon=True) for i in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self, target: str, timeout: float, index: int, retry: bool) -> None:
        import grpc

        from patentclip_client import PatentSearchClient

        with PatentSearchClient(target, timeout=timeout, retry=retry) as client:
            turn = index
            while not self._stop.is_set():
                call = self._calls[turn % len(self._calls)]
                turn += 1
                try:
                    page = call(client)
                    code = "OK"
                    with self._lock:
                        self.versions.add(page.model_version)
                except grpc.RpcError as exc:
                    code = exc.code().name
                with self._lock:
                    self.codes[code] += 1
                time.sleep(0.02)

    def count(self, code: str) -> int:
        with self._lock:
            return self.codes[code]

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.codes


class LabelsOf(FigureLabeller):
    """A figure labeller (``PATENTCLIP_FIGURE_LABELS``) that reads only ``patents``: the
    real thing for the grants a test looks at, without Tesseract's 0.5 s a sheet for all."""

    def __init__(self, patents: Sequence[str]) -> None:
        super().__init__()
        self.patents = set(patents)

    def label(self, document):
        if document.grant.patent_number not in self.patents:
            return document, ""
        return super().label(document)


def index_samples(encoder, root: Path, prefix: str, *sources: Path, parts: bool = False,
                  labelled: Sequence[str] = ()):
    """Real sample grants indexed with ``encoder`` into a Milvus Lite file under ``root``,
    the live alias set: (store, images dir, {patent: GrantDocument}, collection). With
    ``parts``, part tiles as ``PATENTCLIP_PART_TILES=0.5`` stores them; ``labelled``: the
    grants whose figure labels are read (as ``PATENTCLIP_FIGURE_LABELS`` reads all)."""
    from patentclip.drawings.parts import Tiling
    from patentclip.ingest.indexer import Indexer
    from patentclip.store import PatentStore

    store = PatentStore(str(root / "patents.db"), prefix=prefix)
    images = root / "images"
    tiling = Tiling((0.5,)) if parts else None
    summary = Indexer(encoder, store, LocalImageStore(images), progress=False,
                      labeller=LabelsOf(labelled) if labelled else None,
                      tiling=tiling).index(list(sources))
    store.set_alias(store.live_alias, summary.collection)
    documents = {d.grant.patent_number: d for source in sources
                 for d in GrantReader().read(source)}
    return store, images, documents, summary.collection
