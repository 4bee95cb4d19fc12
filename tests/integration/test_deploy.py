"""deploy/ checked offline with the real tools: promtool (config, rules, rule unit tests),
docker-compose (`config`), kubectl's kustomize and kubernetes-validate's schemas. Every port,
topic, setting and metric name in the deployment files must match the code's defaults."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from harness import REPO, import_file
from services.common.broker import KafkaSettings
from services.embedder.config import ConsumerSettings, embedder_group
from services.embedder.metrics import EmbedderMetrics
from services.query.config import ServerSettings
from services.query.metrics import QueryMetrics
from trainer.config import JobSettings
from trainer.metrics import TrainerMetrics

DEPLOY = REPO / "deploy"
dashboards = import_file(DEPLOY / "grafana" / "dashboards.py")

APP_SERVICES = {"embedder": ConsumerSettings().metrics_port,
                "query": ServerSettings().metrics_port,
                "trainer": JobSettings().metrics_port}
K8S_VERSION = "1.32.0"
RULE_TESTS = sorted((DEPLOY / "prometheus").glob("rules_test*.yml"))


def run(*cmd: str, cwd: Path = REPO) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def documented_settings() -> set[str]:
    return set(re.findall(r"^(PATENTCLIP_[A-Z0-9_]+)=", (REPO / ".env.example").read_text(),
                          re.M))


# --- Prometheus and Grafana --------------------------------------------------------------

def test_promtool_checks_config_and_rules_and_runs_the_rule_unit_tests():
    run("promtool", "check", "config", "deploy/prometheus/prometheus.yml")
    run("promtool", "check", "rules", "deploy/prometheus/rules.yml")
    out = run("promtool", "test", "rules", *map(str, RULE_TESTS))
    assert out.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_a_firing_unit_test():
    rules = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = [t for path in RULE_TESTS for t in yaml.safe_load(path.read_text())["tests"]]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert alerts == fired, f"alerts without a test that fires them: {alerts - fired}"


def test_committed_dashboards_are_the_generated_ones():
    for name, text in dashboards.rendered().items():
        assert (DEPLOY / "grafana/dashboards" / name).read_text() == text, \
            f"{name} drifted from deploy/grafana/dashboards.py: run `make dashboards`"
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
                            .read_text())["datasources"][0]
    for name in dashboards.rendered():
        board = json.loads((DEPLOY / "grafana/dashboards" / name).read_text())
        assert all(p["datasource"]["uid"] == source["uid"] for p in board["panels"])


def _registries() -> list[CollectorRegistry]:
    return [EmbedderMetrics().registry, QueryMetrics().registry, TrainerMetrics().registry]


def _exported_names() -> set[str]:
    """Series names from each family's type (labelled families may have no samples yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "info": ("_info",), "gauge": ("",)}
    return {family.name + suffix for registry in _registries()
            for family in registry.collect() for suffix in suffixes[family.type]}


def test_metric_names_follow_prometheus_conventions_with_bounded_labels():
    allowed_labels = {"stage", "reason", "dependency", "partition", "method", "code", "kind",
                      "mapping",
                      "result", "status", "step", "decision", "model", "metric", "le",
                      "model_version", "collection", "candidate", "parent", "eval_set"}
    for registry in _registries():
        for family in registry.collect():
            assert family.name.startswith("patentclip_"), family.name
            if family.type == "histogram" and "seconds" not in family.name:
                assert family.name.endswith(("_sheets", "_size")), family.name
            if family.type == "gauge" and "time" in family.name:
                assert family.name.endswith("_timestamp_seconds"), family.name
            for sample in family.samples:
                assert set(sample.labels) <= allowed_labels, (family.name, sample.labels)


def test_rules_and_dashboards_only_read_metrics_the_services_export():
    exported = _exported_names()
    rules = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exprs += [e for d in dashboards.DASHBOARDS for p in d.panels for e, _ in p.targets]
    used = {m for e in exprs for m in re.findall(r"\bpatentclip[_:][a-z0-9_:]+", e)}
    unknown = {m for m in used if m not in exported and m not in recorded}
    assert not unknown, f"queried but never exported: {sorted(unknown)}"


# --- docker compose ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.gpu.yml"]
    run("docker-compose", *files, "config", "-q", cwd=DEPLOY / "compose")
    return yaml.safe_load(run("docker-compose", "-f", "docker-compose.yml", "config",
                              cwd=DEPLOY / "compose"))


def test_compose_pins_images_and_runs_services_non_root_with_health_checks(compose):
    services = compose["services"]
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} not pinned"
        assert "healthcheck" in service or name == "publish", f"{name} has no health check"
    for name in APP_SERVICES:
        assert services[name]["user"] == "10001"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)


def test_compose_serves_the_query_service_with_a_generated_token(compose):
    """Published ports listen beyond loopback: the query service ships with tokens (made
    once into the data volume by the tokens service) and a Host allow-list."""
    services = compose["services"]
    query = services["query"]["environment"]
    assert query["PATENTCLIP_QUERY_HOST"] == "0.0.0.0"
    assert query["PATENTCLIP_QUERY_AUTH_TOKENS_FILE"] == "/data/auth/tokens"
    assert query["PATENTCLIP_QUERY_HTTP_ALLOWED_HOSTS"]
    assert services["query"]["depends_on"]["tokens"]["condition"] == \
        "service_completed_successfully"
    assert services["tokens"]["entrypoint"][:3] == ["patentclip", "token", "init"]
    assert "/data/auth" in services["tokens"]["entrypoint"]


def test_token_init_writes_the_digest_and_the_token_once(tmp_path):
    import os
    import sys

    from services.common.auth import TokenAuthenticator
    cli = [sys.executable, "-m", "patentclip_cli", "token", "init", "--dir", str(tmp_path)]
    first = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, check=True)
    token = (tmp_path / "examiner.token").read_text().strip()
    assert token not in first.stdout  # the token goes to its file only
    assert os.stat(tmp_path / "examiner.token").st_mode & 0o077 == 0
    TokenAuthenticator(tmp_path / "tokens").authenticate(token)
    again = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, check=True)
    assert "left as is" in again.stdout
    assert (tmp_path / "examiner.token").read_text().strip() == token


def test_compose_settings_ports_and_topics_match_the_services(compose):
    services, kafka = compose["services"], KafkaSettings()
    known = documented_settings()
    for name in (*APP_SERVICES, "publish"):
        env = services[name]["environment"]
        assert set(k for k in env if k.startswith("PATENTCLIP_")) <= known
        assert env["PATENTCLIP_KAFKA_TOPIC"] == kafka.topic
        assert env["PATENTCLIP_KAFKA_DLQ_TOPIC"] == kafka.dlq_topic
        host, port = env["PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS"].split(":")
        assert f"PLAINTEXT://{host}:{port}" in \
            services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        assert env["PATENTCLIP_MILVUS_URI"] == "http://milvus:19530"
    published = {name: {p["target"] for p in s.get("ports", [])}
                 for name, s in services.items()}
    assert 19530 in published["milvus"]
    assert ServerSettings().port in published["query"]
    assert services["query"]["environment"]["PATENTCLIP_QUERY_PORT"] == str(ServerSettings().port)
    for name, port in APP_SERVICES.items():
        assert port in published[name]
        assert f":{port}/" in " ".join(services[name]["healthcheck"]["test"])
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in prometheus["scrape_configs"]}
    for name, port in APP_SERVICES.items():
        assert targets[f"patentclip-{name}"] == [f"{name}:{port}"]
    mounts = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
              if v.startswith("/")]  # bind mounts, resolved by docker-compose
    assert len(mounts) >= 4 and all(Path(m).exists() for m in mounts if "bundles" not in m)


# --- Kubernetes ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["dev", "prod"])
def rendered(request) -> tuple[str, list[dict]]:
    out = run("kubectl", "kustomize", str(DEPLOY / "k8s/overlays" / request.param))
    return request.param, [d for d in yaml.safe_load_all(out) if d]


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None
                                                        or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_k8s_core_objects_pass_strict_schema_validation(rendered):
    _, docs = rendered
    crds = {"ScaledObject", "PodMonitor"}
    for doc in docs:
        if doc["kind"] in crds:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(_one(docs, "Deployment", "query")))
    broken["spec"]["replicaz"] = 2  # the validator is strict: an unknown field fails
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_k8s_settings_ports_and_probes_match_the_services(rendered):
    _, docs = rendered
    settings = _one(docs, "ConfigMap")["data"]
    assert set(settings) <= documented_settings()
    for name, port in APP_SERVICES.items():
        assert settings[f"PATENTCLIP_{name.upper()}_METRICS_PORT"] == str(port)
    assert settings["PATENTCLIP_QUERY_PORT"] == str(ServerSettings().port)
    query = _one(docs, "Deployment", "query")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in query["ports"]}
    http_port = int(settings["PATENTCLIP_QUERY_HTTP_PORT"])  # the web app: on, as configured
    assert ports == {"grpc": ServerSettings().port, "metrics": ServerSettings().metrics_port,
                     "http": http_port}
    service = {p["name"]: p["targetPort"] for p in _one(docs, "Service", "query")["spec"]["ports"]}
    assert service["http"] == "http"
    overlay = rendered[0]
    if overlay == "prod":  # TLS on gRPC: Kubernetes' gRPC probe speaks plaintext only
        assert query["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert settings["PATENTCLIP_QUERY_TLS_CERT"].startswith("/etc/patentclip/tls/")
    else:
        assert query["readinessProbe"]["grpc"]["port"] == ServerSettings().port
    # Safe by default: the pods listen beyond loopback, so they carry tokens (a required
    # secret, mounted where the setting points) and a Host allow-list.
    assert settings["PATENTCLIP_QUERY_HOST"] == "0.0.0.0"
    mounts = {m["name"]: m["mountPath"] for m in query["volumeMounts"]}
    assert settings["PATENTCLIP_QUERY_AUTH_TOKENS_FILE"] == mounts["tokens"] + "/tokens"
    volumes = {v["name"]: v for v in _one(docs, "Deployment", "query")["spec"]["template"]
               ["spec"]["volumes"]}
    assert volumes["tokens"]["secret"] == {"secretName": "patentclip-query-tokens"}
    assert "query" in settings["PATENTCLIP_QUERY_HTTP_ALLOWED_HOSTS"].split(",")
    embedder = _one(docs, "Deployment", "embedder")["spec"]["template"]["spec"]
    assert embedder["containers"][0]["ports"][0]["containerPort"] == \
        ConsumerSettings().metrics_port
    for kind, name in (("Deployment", "embedder"), ("Deployment", "query")):
        pod = _one(docs, kind, name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_keda_scales_the_live_versions_consumer_group_up_to_the_partition_count(rendered):
    _, docs = rendered
    settings = _one(docs, "ConfigMap")["data"]
    scaled = _one(docs, "ScaledObject", "embedder")["spec"]
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    version = settings["PATENTCLIP_MODEL"].rstrip("/").rsplit("/", 1)[1]
    assert trigger["metadata"]["consumerGroup"] == embedder_group(version)
    assert trigger["metadata"]["topic"] == settings["PATENTCLIP_KAFKA_TOPIC"]
    assert trigger["metadata"]["bootstrapServers"] == \
        settings["PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS"]
    assert scaled["maxReplicaCount"] <= int(settings["PATENTCLIP_KAFKA_PARTITIONS"])
    assert _one(docs, "Deployment", scaled["scaleTargetRef"]["name"])
    hpa = _one(docs, "HorizontalPodAutoscaler", "query")["spec"]
    assert _one(docs, "Deployment", hpa["scaleTargetRef"]["name"])


def test_trainer_cronjob_asks_for_a_gpu_in_prod_only(rendered):
    overlay, docs = rendered
    job = _one(docs, "CronJob", "trainer")["spec"]
    container = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "trainer", "--once"]
    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    device = {e["name"]: e["value"] for e in container.get("env", [])}["PATENTCLIP_DEVICE"]
    assert (gpus, device) == ((1, "cuda") if overlay == "prod" else (None, "cpu"))
    assert job["schedule"] == f"0 {JobSettings().schedule_hour_utc} * * " \
        f"{(JobSettings().schedule_weekday + 1) % 7}"  # cron counts from Sunday


def test_prod_pod_monitor_selects_every_service_pod_by_its_metrics_port(rendered):
    overlay, docs = rendered
    if overlay != "prod":
        assert not [d for d in docs if d["kind"] == "PodMonitor"]
        return
    monitor = _one(docs, "PodMonitor")["spec"]
    selector = monitor["selector"]["matchLabels"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "metrics"
    templates = [_one(docs, "Deployment", n)["spec"]["template"] for n in ("embedder", "query")]
    templates.append(_one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"])
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()
        assert "metrics" in {p["name"] for p in template["spec"]["containers"][0]["ports"]}


def test_strimzi_topics_match_the_settings():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s/platform/kafka.yaml").read_text()))
    topics = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "KafkaTopic"}
    settings = dict(line.split("=", 1) for line in
                    (DEPLOY / "k8s/base/settings.env").read_text().splitlines()
                    if line and not line.startswith("#"))
    grants = topics[settings["PATENTCLIP_KAFKA_TOPIC"]]
    assert grants["partitions"] == int(settings["PATENTCLIP_KAFKA_PARTITIONS"])
    assert grants["config"]["retention.ms"] == KafkaSettings().retention_ms == -1
    assert settings["PATENTCLIP_KAFKA_DLQ_TOPIC"] in topics
    cluster = next(d for d in docs if d["kind"] == "Kafka")["metadata"]["name"]
    assert settings["PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS"].startswith(
        f"{cluster}-kafka-bootstrap.")
    values = yaml.safe_load((DEPLOY / "k8s/platform/milvus-values.yaml").read_text())
    assert values["externalKafka"]["brokerList"] == settings["PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS"]
    assert settings["PATENTCLIP_MILVUS_URI"].endswith(":19530")
