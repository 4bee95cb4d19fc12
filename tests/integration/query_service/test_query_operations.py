"""The query service as operators run it: health, reflection, readiness, hot swap, Milvus down,
metrics, the process and SIGTERM.

The service is the package's one (conftest.py): the 40 real sample grants, indexed with
the tiny model into Milvus Lite, served on free ports."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.query_service import query_settings, rpc_code
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.ingest.indexer import Indexer
from patentclip.store import PatentStore
from patentclip_client import PatentSearchClient
from services.query.main import SERVICE_NAME, QueryServer


def test_health_and_reflection(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert SERVICE_NAME in services and "grpc.health.v1.Health" in services


def test_health_is_not_serving_until_a_collection_is_live(tmp_path, encoder):
    with PatentStore(str(tmp_path / "empty.db"), prefix="e") as store:
        query_server = QueryServer(query_settings(store, tmp_path / "images"), encoder=encoder,
                                   store=store).start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{query_server.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)

                def status():
                    return health.Check(health_pb2.HealthCheckRequest(), timeout=5).status

                assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
                with PatentSearchClient(f"127.0.0.1:{query_server.port}") as c:
                    code, details = rpc_code(lambda: c.search_text("lamp"))
                assert code == grpc.StatusCode.UNAVAILABLE and "e_live" in details
                name = store.ensure_collection(encoder.model_version, encoder.dim)
                store.set_alias(store.live_alias, name)
                deadline = time.monotonic() + 10
                while status() != health_pb2.HealthCheckResponse.SERVING:
                    assert time.monotonic() < deadline, "never became SERVING"
                    time.sleep(0.1)
        finally:
            query_server.stop(grace=0)


def test_refuses_a_collection_built_by_another_model(tmp_path, encoder):
    with PatentStore(str(tmp_path / "other.db"), prefix="m") as store:
        name = store.ensure_collection("someone_else_123", encoder.dim)  # no model spec
        store.set_alias(store.live_alias, name)
        query_server = QueryServer(query_settings(store, tmp_path), encoder=encoder,
                                   store=store).start()
        try:
            assert not query_server.live.serving
            assert "someone_else_123" in query_server.live.reason
        finally:
            query_server.stop(grace=0)


def test_metrics_count_requests_batches_and_cache(server, client):
    client.search_text("metrics probe", k=3)
    client.search_text("metrics probe", k=3)
    metrics = server.metrics
    assert metrics.requests.labels("SearchByText", "OK")._value.get() >= 2
    assert metrics.cache.labels("hit")._value.get() >= 1
    assert metrics.requests.labels("SearchByText", "INVALID_ARGUMENT")._value.get() >= 0
    assert metrics.stage.labels("search")._sum.get() > 0
    assert metrics.batch_size.labels("text")._sum.get() >= 1


def test_hot_swap_to_a_new_model_drops_no_request(tmp_path, encoder, sample_dir):
    from patentclip.model.encoder import Encoder, create_tiny_model

    store = PatentStore(str(tmp_path / "swap.db"), prefix="h")
    images = LocalImageStore(tmp_path / "images")
    old = Indexer(encoder, store, images, progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, old)
    new_encoder = Encoder.load(f"local-dir:{create_tiny_model(tmp_path / 'v2', seed=1)}")
    new = Indexer(new_encoder, store, images, progress=False).index([sample_dir]).collection
    query_server = QueryServer(query_settings(store, tmp_path / "images"), encoder=encoder,
                               store=store).start()
    seen, failures, stop = [], [], threading.Event()

    def loop():
        mine = []
        seen.append(mine)  # each client's own sequence: calls in flight on the old snapshot
        with PatentSearchClient(f"127.0.0.1:{query_server.port}", timeout=30) as c:
            while not stop.is_set():  # may finish after another client's first new answer
                try:
                    mine.append(c.search_text("lamp", k=3).model_version)
                except grpc.RpcError as exc:
                    failures.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        store.set_alias(store.live_alias, new)
        deadline = time.monotonic() + 30
        while not all(mine and mine[-1] == new_encoder.model_version for mine in seen):
            assert time.monotonic() < deadline, "the service never swapped"
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        query_server.stop(grace=1)
        store.close()
    assert failures == [] and len(seen) == 4
    both = [encoder.model_version, new_encoder.model_version]
    changes = [[v for i, v in enumerate(mine) if i == 0 or v != mine[i - 1]] for mine in seen]
    assert all(c in (both, both[1:]) for c in changes), changes  # never back to the old
    assert both in changes


def test_milvus_unreachable_is_unavailable(lite_server, encoder, sample_dir, tmp_path):
    store = PatentStore(lite_server.uri, prefix="u", timeout=3)
    images = LocalImageStore(tmp_path / "images")
    collection = Indexer(encoder, store, images, progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, collection)
    settings = query_settings(store, tmp_path / "images")
    query_server = QueryServer(replace(settings, server=replace(settings.server,
                                                                alias_poll_s=60)),
                               encoder=encoder, store=store).start()
    try:
        with PatentSearchClient(f"127.0.0.1:{query_server.port}", timeout=30) as c:
            assert c.search_text("lamp", k=3).hits
            lite_server.stop()
            code, details = rpc_code(lambda: c.search_text("lamp", k=3))
            assert code == grpc.StatusCode.UNAVAILABLE and "Milvus" in details
    finally:
        query_server.stop(grace=0)


def test_runs_as_a_process_with_metrics_and_stops_gracefully_on_sigterm(
        lite_server, encoder, tiny_model_dir, sample_dir, tmp_path):
    import subprocess
    import sys
    import urllib.request

    from harness import REPO
    from harness.processes import free_port

    store = PatentStore(lite_server.uri, prefix="p")
    collection = Indexer(encoder, store, LocalImageStore(tmp_path / "images"),
                         progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, collection)
    store.close()
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "PATENTCLIP_MODEL": f"local-dir:{tiny_model_dir}",
           "PATENTCLIP_MILVUS_URI": lite_server.uri, "PATENTCLIP_COLLECTION_PREFIX": "p",
           "PATENTCLIP_IMAGES_DIR": str(tmp_path / "images"),
           "PATENTCLIP_QUERY_HOST": "127.0.0.1", "PATENTCLIP_QUERY_PORT": str(port),
           "PATENTCLIP_QUERY_METRICS_HOST": "127.0.0.1",
           "PATENTCLIP_QUERY_METRICS_PORT": str(metrics_port)}
    log = tmp_path / "query.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.query"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        with PatentSearchClient(f"127.0.0.1:{port}") as c:
            assert c.search_text("lamp", k=3).model_version == encoder.model_version
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            text = r.read().decode()
        assert 'patentclip_query_requests_total{code="OK",method="SearchByText"} 1.0' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz") as r:
            assert r.status == 200
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert "draining in-flight requests" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_reflection_answers_under_v1_and_v1alpha(server):
    from grpc_reflection.v1alpha import reflection_pb2

    from services.query.main import SERVICE_NAME

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for package in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
            info = channel.stream_stream(
                f"/{package}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
            requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol=SERVICE_NAME)]
            listed, described = list(info(iter(requests), timeout=10))
            names = {s.name for s in listed.list_services_response.service}
            assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection"} <= names, package
            assert described.file_descriptor_response.file_descriptor_proto, package
