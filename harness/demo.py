"""Waits and checks for scripts/demo.sh, each a subcommand that exits 0 when its condition
holds and 1 (with the reason) when it times out.

  metric  PORT NAME MIN        a /metrics sample reaches MIN (prints the ingestion summary)
  serving PORT                 the gRPC health check says SERVING
  found   PORT PATENT          the query service finds PATENT (a new week is searchable)
  serves  PORT VERSION         the query service answers with model VERSION
  newest  REGISTRY_DIR         prints the newest registered version
  prometheus CONFIG OUT PORTS  writes deploy's prometheus.yml for the demo's ports
  promql  PORT                 prints a few SLIs and the firing alerts from Prometheus
  web     PORT TEXT            the web app answers: its page, a search for TEXT, a thumbnail
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

TIMEOUT_S = 120


def _until(check, what: str, timeout: float = TIMEOUT_S) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return 0
        time.sleep(0.5)
    print(f"timed out after {timeout:.0f} s waiting for {what}", file=sys.stderr)
    return 1


def _samples(port: str) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return {}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines() if line and not line.startswith("#")}


def metric(port: str, name: str, minimum: str) -> int:
    code = _until(lambda: _samples(port).get(name, -1) >= float(minimum),
                  f"{name} >= {minimum} on :{port}")
    for key, value in _samples(port).items():
        if key.startswith(("patentclip_embedder_grants_ingested_total",
                           "patentclip_embedder_sheets_embedded_total",
                           "patentclip_embedder_consumer_lag")) \
                or (key.startswith("patentclip_embedder_dead_lettered_total") and value):
            print(f"  {key} {value:g}")
    return code


def serving(port: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def check() -> bool:
        try:
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1
        except grpc.RpcError:
            return False

    return _until(check, f"the query service on :{port} to be SERVING")


def _client(port: str):
    from patentclip_client import PatentSearchClient

    return PatentSearchClient(f"127.0.0.1:{port}", timeout=10)


def found(port: str, patent: str) -> int:
    import grpc

    def check() -> bool:
        try:
            return bool(client.search_similar(patent, 1).hits)
        except grpc.RpcError:
            return False

    with _client(port) as client:
        return _until(check, f"{patent} to become searchable")


def serves(port: str, version: str) -> int:
    with _client(port) as client:
        return _until(lambda: client.search_text("storage box", 1).model_version == version,
                      f"the query service to answer with {version}")


def web(port: str, text: str) -> int:
    """The examiner web app as a browser uses it: the page, /api/info, a search, a drawing."""
    import json

    base = f"http://127.0.0.1:{port}"

    def get(path: str, body: dict | None = None) -> bytes:
        request = urllib.request.Request(
            base + path, data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=30).read()

    try:
        assert b"PatentCLIP Search" in get("/")
        info = json.loads(get("/api/info"))
        hits = json.loads(get("/api/search", {"text": text, "page_size": 24}))["hits"]
        thumbnail = get(hits[0]["drawing"] + "?size=thumbnail")
    except (OSError, AssertionError, KeyError, IndexError, ValueError) as exc:
        print(f"the web app on :{port} did not answer as expected: {exc!r}", file=sys.stderr)
        return 1
    png = thumbnail.startswith(b"\x89PNG")
    print(f"web app {base}/ : model {info['model_version']}, {info['corpus_sheets']} sheets; "
          f"{len(hits)} results for {text!r}, thumbnails render ({len(thumbnail)} bytes PNG: "
          f"{png})")
    return 0


def newest(registry_dir: str) -> int:
    from patentclip.model.registry import ModelRegistry

    print(ModelRegistry(registry_dir).list()[-1].version)
    return 0


def prometheus(config: str, out: str, embedder: str, query: str, trainer: str,
               interval: str = "2s") -> int:
    """deploy's prometheus.yml and rules.yml in ``out``, scraping the services on these
    loopback ports every ``interval`` (the demo's and the monitoring test's Prometheus)."""
    import yaml

    settings = yaml.safe_load(Path(config).read_text())
    ports = {"patentclip-embedder": embedder, "patentclip-query": query,
             "patentclip-trainer": trainer}
    settings["global"].update(scrape_interval=interval, evaluation_interval=interval)
    jobs = {job["job_name"]: job for job in settings["scrape_configs"]}
    missing = set(ports) - set(jobs)
    if missing:
        raise ValueError(f"{config} does not scrape {sorted(missing)}")
    for name, port in ports.items():
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    settings["scrape_configs"] = [jobs[name] for name in ports]
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "prometheus.yml").write_text(yaml.safe_dump(settings))
    (Path(out) / "rules.yml").write_text((Path(config).parent / "rules.yml").read_text())
    return 0


def promql(port: str) -> int:
    import json
    import urllib.parse

    def query(expr: str) -> list:
        url = f"http://127.0.0.1:{port}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]

    time.sleep(4)  # two more scrapes and rule evaluations after the last request
    shown = (("query p99 latency, s", "patentclip:query_request_seconds:p99_5m", "method"),
             ("requests by status", "sum by (code) (patentclip_query_requests_total)", "code"),
             ("grants, this embedder", "sum(patentclip_embedder_grants_ingested_total)", ""),
             ("alerts firing", 'ALERTS{alertstate="firing"}', "alertname"))
    for title, expr, label in shown:
        values = [f"{s['metric'].get(label, '') or 'all'}={float(s['value'][1]):.3g}"
                  for s in query(expr)]
        print(f"  {title:22} {', '.join(values) or 'none'}    [{expr}]")
    return 0


COMMANDS = {"metric": metric, "serving": serving, "found": found, "serves": serves, "web": web,
            "newest": newest, "prometheus": prometheus, "promql": promql}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
