"""Faults with real components: Milvus and the broker restarted under load, every service
killed with SIGKILL at random points, and corrupted model weights. After each, nothing is
lost: the stored rows are exactly the expected ones, the registry is consistent and the
live alias points at a complete collection."""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections import Counter
from dataclasses import replace

import pytest

from harness.processes import free_port
from harness.services import (
    EmbedderProcess,
    QueryLoad,
    QueryProcess,
    committed_offsets,
    make_bundle,
    metric_value,
    publish,
    settings,
    sheet_ids,
    stored_ids,
    wait_ingested,
    wait_until,
)
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.errors import ModelLoadError
from patentclip.ingest.indexer import Indexer
from patentclip.model.encoder import Encoder, create_tiny_model, weights_digest
from patentclip.model.registry import ModelRegistry
from patentclip.store import PatentStore
from patentclip_client import PatentSearchClient


def test_milvus_restart_under_queries_and_ingestion_loses_nothing(
        lite_server, tiny_model_dir, kafka_settings, tmp_path):
    """Queries are UNAVAILABLE while Milvus is down and succeed again after it is back,
    without restarting the query service; the grants published during the outage are all
    ingested once."""
    prefix = f"mr{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    week1 = make_bundle(tmp_path / "w1", patents=6, seed=31)
    week2 = make_bundle(tmp_path / "w2", patents=8, seed=32, day="2021-01-12",
                        first_number=950_000)
    publish(kafka_settings, images, week1)
    embedder_settings = settings(kafka_settings, lite_server.uri, tiny_model_dir, images,
                                 prefix, group_id=f"g-{prefix}")
    metrics_port = free_port()
    timeouts = {"PATENTCLIP_MILVUS_TIMEOUT_S": "3"}
    embedder = EmbedderProcess(embedder_settings, tmp_path / "embedder.log",
                               metrics_port=metrics_port, extra_env=timeouts)
    query = None
    load = None
    try:
        wait_ingested(metrics_port, 6, "week 1 ingested")
        query = QueryProcess(tiny_model_dir, lite_server.uri, prefix, tmp_path / "query.log",
                             env={**timeouts, "PATENTCLIP_IMAGES_DIR": str(images)})
        query.wait_serving()
        load = QueryLoad(query.target)
        wait_until(lambda: load.count("OK") >= 10, 60, "queries answered")

        lite_server.stop()
        publish(kafka_settings, images, week2)
        wait_until(lambda: load.count("UNAVAILABLE") >= 3, 60, "queries to be UNAVAILABLE")
        time.sleep(2)  # the outage goes on while grants wait on the topic
        lite_server.start()
        ok_before = load.count("OK")
        wait_until(lambda: load.count("OK") >= ok_before + 20, 90,
                   "queries to succeed again without a restart")
        wait_ingested(metrics_port, 14, "week 2 ingested after Milvus came back")
    finally:
        codes = load.stop() if load else Counter()
        if query:
            assert query.terminate() == 0
        assert embedder.terminate() == 0
    assert set(codes) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}, codes
    assert query.proc.returncode == 0  # one process throughout: never restarted
    with PatentStore(lite_server.uri, prefix=prefix) as store:
        ids = stored_ids(store, store.resolve(store.live_alias))
    assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(week1, week2)


def test_broker_restart_during_ingestion_indexes_every_grant_exactly_once(
        tiny_model_dir, milvus_server_uri, tmp_path):
    """Tansu keeps messages in memory only: after its restart the topic is empty, so the
    bundles are published again (as an operator re-runs the publisher). The embedder
    reconnects on its own, and upserts by row id keep every sheet exactly once."""
    from harness.processes import TansuBroker
    from services.common.broker import KafkaSettings

    broker = TansuBroker(tmp_path / "tansu.log").start()
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, topic="grants",
                          dlq_topic="grants.dlq", partitions=4, request_timeout_ms=10_000)
    prefix = f"br{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    bundles = [make_bundle(tmp_path / f"w{i}", patents=10, seed=40 + i,
                           day=f"2021-01-{5 + 7 * i:02d}", first_number=960_000 + 100 * i)
               for i in range(2)]
    publish(kafka, images, bundles[0])
    metrics_port = free_port()
    embedder = EmbedderProcess(
        settings(kafka, milvus_server_uri, tiny_model_dir, images, prefix,
                 group_id=f"g-{prefix}", batch_grants=2),
        tmp_path / "embedder.log", metrics_port=metrics_port)
    try:
        wait_until(lambda: metric_value(metrics_port,
                                        "patentclip_embedder_grants_ingested_total") >= 4,
                   120, "ingestion under way")
        broker.stop()  # mid-week: some of week 1 is committed, the rest is not
        time.sleep(3)
        broker.start()
        publish(kafka, images, *bundles)  # the topic was lost with the broker's memory
        wait_until(lambda: embedder.proc.poll() is None and _stored(
            milvus_server_uri, prefix) == sheet_ids(*bundles), 180,
            f"every grant indexed after the restart:\n{embedder.text()[-2000:]}")
    finally:
        code = embedder.terminate()
        broker.stop()
    assert code == 0
    with PatentStore(milvus_server_uri, prefix=prefix) as store:
        collection = store.resolve(store.live_alias)
        ids = stored_ids(store, collection)
        assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(*bundles)
        store.drop(collection)


def _committed(kafka, group: str) -> int:
    return sum(committed_offsets(kafka, group).values())


def _stored(uri: str, prefix: str) -> set[str]:
    try:
        with PatentStore(uri, prefix=prefix) as store:
            return set(stored_ids(store, store.resolve(store.live_alias)))
    except Exception:  # not created yet
        return set()


def test_embedder_killed_at_random_points_loses_and_duplicates_nothing(
        tiny_model_dir, kafka_settings, lite_server, tmp_path):
    prefix = f"ke{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    # Enough grants that three short runs cannot finish them: a restarted embedder can
    # commit 30 grants in under a second on an idle machine.
    patents = 120
    bundle = make_bundle(tmp_path / "b", patents=patents, seed=50)
    publish(kafka_settings, images, bundle)
    embedder_settings = settings(kafka_settings, lite_server.uri, tiny_model_dir, images,
                                 prefix, group_id=f"g-{prefix}", batch_grants=2)
    rng = random.Random(8)
    group = embedder_settings.consumer.group_id
    committed = []
    for _ in range(3):
        process = EmbedderProcess(embedder_settings, tmp_path / "embedder.log")
        before = _committed(kafka_settings, group)
        wait_until(lambda before=before: _committed(kafka_settings, group) > before, 120,
                   "progress since the last kill")
        time.sleep(rng.uniform(0.0, 0.8))  # somewhere in the next batches
        process.kill()
        committed.append(_committed(kafka_settings, group))
    assert committed[-1] < patents, committed  # killed mid-stream: work was left to finish
    process = EmbedderProcess(embedder_settings, tmp_path / "embedder.log")
    try:
        process.wait_for("partitions assigned", timeout=120)
        wait_until(lambda: _stored(lite_server.uri, prefix) == sheet_ids(bundle), 180,
                   "every sheet stored after three SIGKILLs")
    finally:
        assert process.terminate() == 0
    with PatentStore(lite_server.uri, prefix=prefix) as store:
        ids = stored_ids(store, store.resolve(store.live_alias))
    assert len(ids) == len(set(ids)) == len(sheet_ids(bundle))


def test_query_service_killed_under_load_comes_back_with_the_same_answers(
        encoder, tiny_model_dir, lite_server, tmp_path):
    prefix = f"kq{uuid.uuid4().hex[:6]}"
    bundle = make_bundle(tmp_path / "b", patents=8, seed=60)
    with PatentStore(lite_server.uri, prefix=prefix) as store:
        collection = Indexer(encoder, store, LocalImageStore(tmp_path / "images"),
                             progress=False).index([bundle]).collection
        store.set_alias(store.live_alias, collection)
    query = QueryProcess(tiny_model_dir, lite_server.uri, prefix, tmp_path / "query.log")
    query.wait_serving()
    with PatentSearchClient(query.target, timeout=10) as client:
        expected = [h.patent_number for h in client.search_text("chair", k=5).hits]
    rng = random.Random(9)
    try:
        for _ in range(3):
            load = QueryLoad(query.target, clients=4)
            time.sleep(rng.uniform(0.5, 2.5))
            query.kill()
            codes = load.stop()
            assert set(codes) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"}, codes
            query.start().wait_serving()
            with PatentSearchClient(query.target, timeout=10) as client:
                assert [h.patent_number for h in client.search_text("chair", k=5).hits] \
                    == expected
    finally:
        if query.proc.poll() is None:
            query.terminate()


def test_corrupted_or_missing_weights_are_refused_by_rollout_and_the_query_service(
        encoder, tmp_path, caplog):
    from services.query.config import QuerySettings, ServerSettings
    from services.query.main import QueryServer
    from trainer.gate import RolloutGate
    from trainer.rollout import Rollout

    registry = ModelRegistry(tmp_path / "registry")
    model_dir = create_tiny_model(tmp_path / "candidate", seed=11)
    entry = registry.register(model_dir, weights_digest(Encoder.load(
        f"local-dir:{model_dir}").model), family="tiny")
    bundle = make_bundle(tmp_path / "b", patents=4, seed=70)
    images = LocalImageStore(tmp_path / "images")
    store = PatentStore(str(tmp_path / "m.db"), prefix="cw")
    live = Indexer(encoder, store, images, progress=False).index([bundle]).collection
    store.set_alias(store.live_alias, live)
    built = Indexer(Encoder.load(entry.spec), store, images,
                    progress=False).index([bundle]).collection
    assert store.describe(built).model_spec == entry.spec  # how the service would load it

    weights = entry.path / "open_clip_model.safetensors"
    pristine = weights.read_bytes()
    rollout = Rollout(registry, store, RolloutGate(), [_an_eval_set()],
                      benchmark=lambda spec, pretrained, eval_set: {}, reindex=lambda v: built)
    core_settings = QuerySettings().core
    server = QueryServer(QuerySettings(
        replace(core_settings, milvus_uri=store.uri, collection_prefix="cw",
                images_dir=str(images.root)),
        ServerSettings(host="127.0.0.1", port=0, metrics_port=0, alias_poll_s=60)),
        encoder=encoder, store=PatentStore(store.uri, prefix="cw")).start()
    try:
        for damage, words in (("corrupt", "does not match its checksum"),
                              ("missing", "is missing")):
            if damage == "corrupt":
                weights.write_bytes(pristine[:-64] + bytes(64))
            else:
                weights.unlink()
            decision = rollout.promote(entry.version)
            assert decision.decision == "rejected" and words in decision.reasons[0]
            assert store.resolve(store.live_alias) == live

            store.set_alias(store.live_alias, built)  # as if an operator moved it by hand
            with PatentSearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
                reply = client.reload()
                assert not reply.swapped and reply.collection == live
                assert client.search_text("chair", k=3).model_version == encoder.model_version
            assert any(r.levelname == "ERROR" and entry.path.name in r.getMessage()
                       for r in caplog.records)
            store.set_alias(store.live_alias, live)
            caplog.clear()
        with pytest.raises(ModelLoadError):
            Encoder.load(entry.spec)
        refused = [d for d in registry.decisions() if d["decision"] == "rejected"]
        assert len(refused) == 2  # both refusals are on record
        shutil.copyfile(model_dir / "open_clip_model.safetensors", weights)  # repaired
        assert registry.verify(entry.version).version == entry.version
    finally:
        server.stop(grace=0)
        store.close()


def test_trainer_killed_at_random_points_leaves_registry_and_alias_consistent(
        encoder, tiny_model_dir, kafka_settings, lite_server, tmp_path):
    """The weekly cycle (fine-tune, benchmark, register, reindex from the topic, switch the
    alias) SIGKILLed three times at random moments, then run to the end: every registered
    version verifies, the decision log parses, and the alias always points at a complete
    collection."""
    import json
    import os
    import subprocess
    import sys

    from harness import REPO
    from patentclip.config import CoreSettings
    from services.embedder.config import ConsumerSettings, EmbedderSettings
    from services.embedder.main import reindex_topic

    prefix = f"kt{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    bundles = [make_bundle(tmp_path / f"w{i}", patents=8, seed=80 + i,
                           day=f"2021-01-{5 + 7 * i:02d}", first_number=970_000 + 100 * i)
               for i in range(2)]
    publish(kafka_settings, images, *bundles)
    core = CoreSettings(model=f"local-dir:{tiny_model_dir}", milvus_uri=lite_server.uri,
                        images_dir=str(images), collection_prefix=prefix,
                        registry_dir=str(tmp_path / "registry"))
    consumer = ConsumerSettings(session_timeout_ms=3000, max_poll_interval_ms=6000,
                                metrics_port=0, group_id=f"g-{prefix}")
    assert reindex_topic(EmbedderSettings(core, kafka_settings, consumer), encoder,
                         progress=False) == 0
    expected = sheet_ids(*bundles)
    with PatentStore(lite_server.uri, prefix=prefix) as store:
        store.set_alias(store.live_alias, store.collection_name(encoder.model_version))
    env = {**os.environ, "PATENTCLIP_MODEL": core.model, "PATENTCLIP_MILVUS_URI": core.milvus_uri,
           "PATENTCLIP_IMAGES_DIR": core.images_dir, "PATENTCLIP_REGISTRY_DIR": core.registry_dir,
           "PATENTCLIP_COLLECTION_PREFIX": prefix,
           "PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
           "PATENTCLIP_KAFKA_TOPIC": kafka_settings.topic,
           "PATENTCLIP_KAFKA_DLQ_TOPIC": kafka_settings.dlq_topic,
           "PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS": "3000",
           "PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS": "6000",
           "PATENTCLIP_TRAINER_RUNS_DIR": str(tmp_path / "runs"),
           "PATENTCLIP_TRAINER_METRICS_PORT": "0", "PATENTCLIP_TRAINER_POLICY": "auto",
           "PATENTCLIP_TRAINER_EPOCHS": "6", "PATENTCLIP_TRAINER_LR": "0.001",
           "PATENTCLIP_TRAINER_BATCH_SIZE": "16",
           "PATENTCLIP_TRAINER_LOCK_TEXT_UNLOCKED": "0",
           "PATENTCLIP_TRAINER_GAP_WEEKS": "0",  # two weeks: none to spare for a gap
           # Always promote, so every cycle also reindexes and moves the alias.
           "PATENTCLIP_TRAINER_GATE_MARGIN": "-1", "PATENTCLIP_TRAINER_GATE_DRAWING_MARGIN": "1",
           "PATENTCLIP_TRAINER_GATE_MIN_TERCILE_PATENTS": "1000000"}
    log = tmp_path / "trainer.log"

    def run() -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "trainer", "--once"], cwd=REPO,
                                    env=env, stdout=out, stderr=subprocess.STDOUT)

    def check_consistent() -> str:
        registry = ModelRegistry(core.registry_dir)
        for version in registry.list():
            registry.verify(version.version)  # a listed version is always complete
        for decision in registry.decisions():
            assert decision["decision"] in ("promoted", "rejected", "rolled_back")
        with PatentStore(lite_server.uri, prefix=prefix) as store:
            live = store.describe(store.live_alias)
            ids = stored_ids(store, live.name)
        assert len(ids) == len(set(ids)) and set(ids) == expected, live.name
        return live.model_version

    rng = random.Random(10)
    kills = []
    for _ in range(3):
        process = run()
        delay = rng.uniform(5.0, 14.0)  # start-up ~5 s, then train, benchmark, reindex
        try:
            process.wait(timeout=delay)  # finished before the kill
            kills.append(None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            kills.append(round(delay, 1))
        check_consistent()
    final = run()
    assert final.wait(timeout=600) == 0, log.read_text()[-3000:]
    live_version = check_consistent()
    assert any(kills), f"no run was killed: {kills}"
    registry = ModelRegistry(core.registry_dir)
    promoted = [d for d in registry.decisions() if d["decision"] == "promoted"]
    assert promoted and live_version == promoted[-1]["version"]
    assert json.loads(json.dumps(registry.decisions()))  # the log is whole JSON lines


def _an_eval_set():
    """A frozen set for rollouts that are refused before they benchmark anything."""
    from trainer.data import EvalItem, EvalSet

    item = EvalItem("D0900001", 1, "file:///x", "0" * 64, "a chair", "06", 20210105)
    return EvalSet("eval", "2021-01-06T00:00:00+00:00", (item,), {"06": 1},
                   {"first_grant_date": 20210105, "last_grant_date": 20210105})
