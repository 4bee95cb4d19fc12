"""Riding out an outage of the real Milvus 2.3.5 server (the ``milvus`` wheel), not only of
``milvus-lite server``: the server SIGKILLed under 4 query clients (text, drawing, similar;
10 s deadlines) and ingestion, then started again on the same data; and both services
started while Milvus is down. The services wait instead of exiting, health says what is
true, clients get UNAVAILABLE at once (never INTERNAL, never a deadline waited out, through
the restart and the warm-up after it), and every sheet is stored exactly once.

Each test prints what docs/reliability.md reports: the seconds from Milvus answering again
to SERVING, and the status codes the clients saw.
"""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.processes import free_port
from harness.services import (
    EmbedderProcess,
    QueryLoad,
    QueryProcess,
    http_get,
    make_bundle,
    publish,
    settings,
    sheet_ids,
    stored_ids,
    wait_ingested,
    wait_until,
)
from patentclip.grants.reader import GrantReader
from patentclip.store import PatentStore

FAST = {"PATENTCLIP_MILVUS_TIMEOUT_S": "3"}
QUERY_ENV = {**FAST, "PATENTCLIP_QUERY_UNAVAILABLE_GRACE_S": "1",
             "PATENTCLIP_QUERY_ALIAS_POLL_S": "1"}


@pytest.fixture
def milvus(milvus_server):
    """The session's Milvus server (there can be one per machine), running again after."""
    yield milvus_server.ensure_running()
    milvus_server.ensure_running()


def check_lexical_leg_is_off(query: QueryProcess) -> None:
    """A 2.3 server has no full-text search: the service serves the dense legs, says why
    the lexical one is off (ServerInfo, each text search, metrics) and logs it once."""
    from patentclip_client import PatentSearchClient

    with PatentSearchClient(query.target, timeout=20) as client:
        info = client.server_info()
        assert not info.lexical and "no full-text search" in info.lexical_note, info
        page = client.search(text="bottle", k=5)
        assert page.hits and page.legs == ["drawing", "caption"], page.legs
        assert page.legs_note.startswith("lexical leg off: Milvus server v2.3"), page.legs_note
        assert all(set(h.found_by) <= {"drawing", "caption"} for h in page.hits)
    assert "patentclip_query_lexical_enabled 0.0" in http_get(query.metrics_port,
                                                               "/metrics")[1]
    assert query.text().count("lexical (BM25) leg off") == 1


class HealthLog:
    """gRPC health of the query service every 0.2 s, as (monotonic time, status name)."""

    def __init__(self, target: str) -> None:
        self.samples: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: str) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self._stop.is_set():
                try:
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(stub.Check(
                        health_pb2.HealthCheckRequest(), timeout=2).status)
                except grpc.RpcError as exc:
                    status = f"error {exc.code().name}"
                self.samples.append((time.monotonic(), status))
                time.sleep(0.2)

    def first(self, status: str, after: float) -> float | None:
        return next((t for t, s in self.samples if s == status and t >= after), None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_milvus_server_killed_under_load_the_services_wait_and_health_tells_the_truth(
        milvus, tiny_model_dir, kafka_settings, tmp_path):
    prefix = f"out{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    week1 = make_bundle(tmp_path / "w1", patents=6, seed=41)
    week2 = make_bundle(tmp_path / "w2", patents=8, seed=42, day="2021-01-12",
                        first_number=960_000)
    publish(kafka_settings, images, week1)
    document = next(d for d in GrantReader().read(week1) if len(d.images) > 1)
    metrics_port = free_port()
    embedder = EmbedderProcess(settings(kafka_settings, milvus.uri, tiny_model_dir, images,
                                        prefix, group_id=f"g-{prefix}"),
                               tmp_path / "embedder.log", metrics_port=metrics_port,
                               extra_env=FAST)
    query = load = health = None
    try:
        wait_ingested(metrics_port, 6, "week 1 ingested")
        query = QueryProcess(tiny_model_dir, milvus.uri, prefix, tmp_path / "query.log",
                             env={**QUERY_ENV, "PATENTCLIP_IMAGES_DIR": str(images)})
        query.wait_serving()
        check_lexical_leg_is_off(query)
        health = HealthLog(query.target)
        load = QueryLoad(query.target, clients=4, timeout=10,  # each answer counted as it is:
                         drawing=sorted(document.images.values())[1],  # no client retries
                         patent=document.grant.patent_number, retry=False)
        wait_until(lambda: load.count("OK") >= 12, 60, "queries answered")

        publish(kafka_settings, images, week2)  # ingestion in progress when Milvus dies
        killed = time.monotonic()
        milvus.kill()
        wait_until(lambda: health.first("NOT_SERVING", killed), 30,
                   f"health NOT_SERVING during the outage:\n{query.text()[-2000:]}")
        status, reason = http_get(query.metrics_port, "/readyz")
        assert status == 503 and "Milvus" in reason, (status, reason)
        assert http_get(query.metrics_port, "/healthz")[0] == 200  # alive: not killed by k8s
        wait_until(lambda: "waiting for milvus" in http_get(metrics_port, "/readyz")[1], 60,
                   "the embedder's /readyz to say it waits for Milvus")
        assert embedder.proc.poll() is None and query.proc.poll() is None
        milvus.start()
        back = time.monotonic()
        serving = wait_until(lambda: health.first("SERVING", back), 120,
                             f"SERVING after Milvus returned:\n{query.text()[-2000:]}")
        wait_ingested(metrics_port, 14,
                      f"week 2 ingested after the outage:\n{embedder.text()[-2000:]}")
        ok_after = load.count("OK")
        wait_until(lambda: load.count("OK") >= ok_after + 10, 60, "queries answered again")
        assert embedder.proc.poll() is None and query.proc.poll() is None  # never exited
        outage_log = embedder.text()[embedder.text().find("is unavailable"):]
        assert "partitions revoked" not in outage_log  # it stayed in its group, paused
    finally:
        codes = load.stop() if load else {}
        if health:
            health.stop()
        if query:
            assert query.terminate() == 0
        assert embedder.terminate() == 0
    print(f"\nkill under load: outage {back - killed:.1f}s (Milvus restart included), "
          f"SERVING {serving - back:.1f}s after Milvus was back, codes {dict(codes)}")
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes  # failing fast: none waits its deadline
    assert codes["UNAVAILABLE"] > 0
    log = query.text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("NOT_SERVING:") <= 3, "\n".join(  # a line per change of state
        line for line in log.splitlines() if "SERVING" in line or "Milvus" in line)
    with PatentStore(milvus.uri, prefix=prefix) as store:
        ids = stored_ids(store, store.resolve(store.live_alias))
    assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(week1, week2)


def test_both_services_start_while_milvus_is_down_and_come_up_by_themselves(
        milvus, tiny_model_dir, kafka_settings, tmp_path):
    prefix = f"down{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    week = make_bundle(tmp_path / "w1", patents=5, seed=43)
    publish(kafka_settings, images, week)
    milvus.kill()  # down before either service starts
    metrics_port = free_port()
    embedder = EmbedderProcess(settings(kafka_settings, milvus.uri, tiny_model_dir, images,
                                        prefix, group_id=f"g-{prefix}"),
                               tmp_path / "embedder.log", metrics_port=metrics_port,
                               extra_env=FAST)
    query = QueryProcess(tiny_model_dir, milvus.uri, prefix, tmp_path / "query.log",
                         env={**QUERY_ENV, "PATENTCLIP_IMAGES_DIR": str(images)})
    try:
        wait_until(lambda: http_get(query.metrics_port, "/readyz")[0] == 503, 90,
                   f"the query service up and not ready:\n{query.text()[-2000:]}")
        wait_until(lambda: "waiting for milvus" in http_get(metrics_port, "/readyz")[1], 90,
                   f"the embedder up and waiting:\n{embedder.text()[-2000:]}")
        time.sleep(3)  # Milvus stays down a while: both must still be there
        assert embedder.proc.poll() is None and query.proc.poll() is None
        status, reason = http_get(query.metrics_port, "/readyz")
        assert status == 503 and "unavailable" in reason.lower(), reason
        milvus.start()  # on the same data and ports
        back = time.monotonic()
        wait_ingested(metrics_port, 5,
                      f"ingested once Milvus is up:\n{embedder.text()[-2000:]}")
        query.wait_serving(timeout=120)
        serving = time.monotonic()
        assert http_get(query.metrics_port, "/readyz")[0] == 200
    finally:
        assert query.terminate() == 0
        assert embedder.terminate() == 0
    print(f"\nstarted while down: SERVING {serving - back:.1f}s after Milvus was up")
    assert "Traceback" not in query.text()
    with PatentStore(milvus.uri, prefix=prefix) as store:
        ids = stored_ids(store, store.resolve(store.live_alias))
    assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(week)

