"""A real Prometheus (Debian's package) on loopback scrapes the running embedder, query
service and trainer with deploy/prometheus/prometheus.yml and rules.yml; after real traffic,
every Grafana panel's query runs through Prometheus' HTTP API."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import REPO, demo, import_file
from harness.processes import free_port, wait_for_port
from harness.services import (
    EmbedderProcess,
    make_bundle,
    produce_raw,
    publish,
    settings,
    wait_until,
)

dashboards = import_file(REPO / "deploy" / "grafana" / "dashboards.py")  # the dashboards' source
JOBS = ("patentclip-embedder", "patentclip-query", "patentclip-trainer")


def prometheus_config(tmp: Path, ports: dict[str, int]) -> Path:
    """deploy/prometheus/prometheus.yml and rules.yml with the test's targets, 1 s scrapes
    (the demo's helper, so the demo and this test run Prometheus the same way)."""
    demo.prometheus(str(REPO / "deploy/prometheus/prometheus.yml"), str(tmp),
                         *(str(ports[job]) for job in JOBS), interval="1s")
    return tmp / "prometheus.yml"


class Prometheus:
    def __init__(self, config: Path, data: Path) -> None:
        self.port = free_port()
        self.log = open(data.parent / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list:
        body = self.api("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def _scalar(found: list, /, **labels) -> float:
    for series in found:
        if all(series["metric"].get(k) == v for k, v in labels.items()):
            return float(series["value"][1])
    raise AssertionError(f"no series with {labels} in {found}")


@pytest.fixture
def stack(tmp_path, kafka_settings, lite_server, tiny_model_dir):
    """Embedder (process), query service and trainer (threads), all with metrics ports."""
    from services.query.main import main as query_main
    from trainer.main import main as trainer_main

    ports = {job: free_port() for job in JOBS}
    images = tmp_path / "images"
    bundles = [make_bundle(tmp_path / "bundles", 10, seed=s, day=d)
               for s, d in ((1, "2021-01-05"), (2, "2021-01-12"))]
    embedder = settings(kafka_settings, lite_server.uri, tiny_model_dir, images, "mon")
    env = {"PATENTCLIP_MODEL": f"local-dir:{tiny_model_dir}",
           "PATENTCLIP_MILVUS_URI": lite_server.uri, "PATENTCLIP_IMAGES_DIR": str(images),
           "PATENTCLIP_COLLECTION_PREFIX": "mon",
           "PATENTCLIP_REGISTRY_DIR": str(tmp_path / "registry"),
           "PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
           "PATENTCLIP_KAFKA_TOPIC": kafka_settings.topic,
           "PATENTCLIP_KAFKA_DLQ_TOPIC": kafka_settings.dlq_topic,
           "PATENTCLIP_QUERY_METRICS_HOST": "127.0.0.1", "PATENTCLIP_TRAINER_METRICS_HOST":
           "127.0.0.1", "PATENTCLIP_TRAINER_RUNS_DIR": str(tmp_path / "runs"),
           "PATENTCLIP_TRAINER_GAP_WEEKS": "0",  # two weeks: none to spare for a gap
           # the auto rollout's reindex joins a consumer group on Tansu: keep joins short
           "PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS": "3000",
           "PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS": "6000"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stop = threading.Event()
    threads, proc = [], None
    # Prometheus first, as in production: it sees the counters start at 0 and move.
    prometheus = Prometheus(prometheus_config(tmp_path, ports), tmp_path / "tsdb")
    try:
        publish(kafka_settings, images, *bundles)
        produce_raw(kafka_settings, [(b"D0999999", b"not a grant event")])
        proc = EmbedderProcess(embedder, tmp_path / "embedder.log",
                               metrics_port=ports["patentclip-embedder"])
        wait_until(lambda: _sample(ports["patentclip-embedder"],
                                   "patentclip_embedder_grants_ingested_total") == 20, 120,
                   "the embedder to ingest both weeks")
        grpc_port, http_port = free_port(), free_port()
        threads = [threading.Thread(target=fn, daemon=True) for fn in (
            lambda: query_main(["--port", str(grpc_port), "--host", "127.0.0.1",
                                "--metrics-port", str(ports["patentclip-query"]),
                                "--http-port", str(http_port)], stop=stop),
            lambda: trainer_main(["--now", "--policy", "auto", "--epochs", "1",
                                  "--batch-size", "16", "--lock-text-unlocked", "0",
                                  "--metrics-port", str(ports["patentclip-trainer"])],
                                 stop=stop))]
        for thread in threads:
            thread.start()
        wait_for_port(grpc_port)
        yield {"prometheus": prometheus, "grpc": grpc_port, "http": http_port}
    finally:
        prometheus.stop()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if proc:
            proc.terminate()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sample(port: int, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return None
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _send_search_traffic(port: int, http_port: int) -> None:
    import json
    import urllib.request

    import grpc

    from patentclip_client import PatentSearchClient

    with PatentSearchClient(f"127.0.0.1:{port}", timeout=30) as client:
        wait_until(lambda: _serving(client), 60, "the query service to serve")
        for _ in range(2):  # the second identical text is a cache hit
            client.search_text("ornamental design for a storage box", 5)
        client.search_similar("D0901001", 5)
        with pytest.raises(grpc.RpcError) as info:
            client.search_similar("D0999999", 5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        for _ in range(2):  # rendered, then from the cache
            client.get_drawing("D0901001", 1)
    search = urllib.request.Request(  # the web app's API, as its page calls it
        f"http://127.0.0.1:{http_port}/api/search", headers={"Content-Type": "application/json"},
        data=json.dumps({"text": "a storage box"}).encode())
    assert json.loads(urllib.request.urlopen(search, timeout=30).read())["hits"]


def _serving(client) -> bool:
    import grpc

    try:
        client.search_text("box", 1)
        return True
    except grpc.RpcError:
        return False


def test_prometheus_scrapes_every_service_and_every_dashboard_query_returns_data(stack):
    prometheus = stack["prometheus"]
    _send_search_traffic(stack["grpc"], stack["http"])
    # The trainer's first cycle (--now) trains one epoch, benchmarks candidate and live, and
    # the gate decides (auto policy); wait for it.
    wait_until(lambda: prometheus.query(
        'patentclip_trainer_runs_total{status="succeeded"} > 0'), 240,
        "the trainer cycle to be scraped")
    time.sleep(3)  # a few more scrapes and rule evaluations after the last traffic

    targets = prometheus.api("targets")["data"]["activeTargets"]
    health = {t["labels"]["job"]: t["health"] for t in targets}
    assert all(health[job] == "up" for job in JOBS), health
    groups = prometheus.api("rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 18 and all(r["health"] == "ok" for r in rules), \
        [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]

    empty = []
    for dashboard in dashboards.DASHBOARDS:
        for panel in dashboard.panels:
            for expr, _ in panel.targets:
                if not prometheus.query(expr.replace("$__rate_interval", "1m")):
                    empty.append(f"{dashboard.title} / {panel.title}: {expr}")
    assert not empty, "panels without data after traffic:\n" + "\n".join(empty)

    # Values the traffic must have produced, not just series that exist.
    dead = prometheus.query("sum by (reason) (patentclip_embedder_dead_lettered_total)")
    assert _scalar(dead, reason="undecodable_event") == 1
    assert _scalar(prometheus.query("patentclip_embedder_grants_ingested_total")) == 20
    codes = prometheus.query("sum by (method, code) (patentclip_query_requests_total)")
    assert _scalar(codes, method="SearchSimilar", code="NOT_FOUND") == 1
    assert _scalar(codes, method="SearchByText", code="OK") >= 3
    cache = prometheus.query("sum by (result) (patentclip_query_text_cache_total)")
    assert _scalar(cache, result="hit") >= 1
    decisions = prometheus.query(
        "sum by (decision) (patentclip_trainer_rollout_decisions_total)")
    assert _scalar(decisions, decision="promoted") + \
        _scalar(decisions, decision="rejected") == 1  # the auto policy's gate decided
    bench = prometheus.query('patentclip_trainer_benchmark_metric'
                             '{metric="served.text_R@10"}')
    assert {s["metric"]["model"] for s in bench} == {"candidate", "live"}
    assert not prometheus.query('ALERTS{alertstate="firing", '
                                'alertname=~"PatentClipTargetDown|PatentClipQueryErrorsHigh"}')
    dlq_alert = prometheus.query('ALERTS{alertname="PatentClipDeadLetters"}')
    assert dlq_alert and dlq_alert[0]["metric"]["reason"] == "undecodable_event"
