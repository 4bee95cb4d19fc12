"""Sustained-load soak: weeks of ingestion, then minutes of mixed queries, watching memory.

    python -m benchmarks.soak                       # make soak: 6 weeks, then 5 min x 32 clients
    python -m benchmarks.soak --duration 20 --clients 8 --weeks 2   # the quick run in make test

1. Ingestion: a Tansu broker, a Milvus backend (``milvus-lite server`` or the Milvus 2.3.5
   server) and ``python -m services.embedder``. Generated weeks are published one at a time;
   after each is ingested the embedder's resident memory is sampled. Afterwards the stored
   rows are compared with the sheets published (the data lost must be zero).
2. Queries: ``python -m services.query`` on that collection; ``--clients`` threads send
   text (half), drawing (a quarter) and similar-patent (a quarter) searches without pause
   for ``--duration`` seconds. The service's resident memory is sampled every
   ``--sample-s``; growth is the median of the last 30 s over the median of the 30 s after
   ``--warmup``.

Writes soak.json, soak.md (table) and soak.png (memory and throughput over time) to
``--out``. Exits 1 when a request failed, a row was lost, or memory grew by
``--max-rss-growth`` or more.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from tqdm import tqdm

from harness import REPO
from harness.bench import query_service_for_load
from harness.machine import machine_line
from harness.processes import LiteServer, MilvusServerProcess, TansuBroker, free_port, rss_bytes
from harness.services import metric_value

WORDS = ("chair", "lamp", "bottle", "hinged", "case", "mirror", "handle", "wheel", "round",
         "cosmetic", "container", "lid", "shoe", "sole", "table", "light", "fixture", "cup")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = run(args, Path(tmp))
    _write(out, result)
    print((out / "soak.md").read_text())
    return 0 if result["passed"] else 1


def run(args, work: Path) -> dict:
    from patentclip.model.encoder import create_tiny_model

    model_dir = create_tiny_model(work / "model", seed=0)
    milvus = (LiteServer(work / "lite") if args.backend == "lite"
              else MilvusServerProcess(work / "milvus-server"))
    uri = milvus.start().uri
    broker = TansuBroker(work / "tansu.log").start()
    try:
        ingest = _ingest_soak(args, work, model_dir, uri, broker.bootstrap)
        query = _query_soak(args, work, model_dir, uri, ingest["drawings"])
    finally:
        broker.stop()
        milvus.stop()
    del ingest["drawings"]
    passed = (query["failed"] == 0 and ingest["lost_rows"] == 0
              and query["rss_growth"] < args.max_rss_growth
              and ingest["rss_growth"] < args.max_rss_growth)
    return {"machine": machine_line(), "params": vars(args), "ingest": ingest, "query": query,
            "passed": passed}


# ----------------------------------------------------------------------------- ingestion


def _ingest_soak(args, work: Path, model_dir: Path, uri: str, bootstrap: str) -> dict:
    from patentclip.drawings.imagestore import LocalImageStore
    from patentclip.grants.reader import GrantReader
    from patentclip.store import PatentStore
    from patentclip_cli.synthetic import BundleGenerator
    from services.common.broker import KafkaSettings, ensure_topics, make_producer
    from services.publisher import GrantPublisher

    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic="soak", dlq_topic="soak.dlq",
                          partitions=2)
    ensure_topics(kafka, kafka.topic, kafka.dlq_topic)
    images = LocalImageStore(work / "images")
    metrics_port = free_port()
    embedder = _start_embedder(work, model_dir, uri, kafka, metrics_port)
    producer = make_producer(kafka, "soak")
    weeks, sheets, drawings = [], 0, []
    try:
        for week in tqdm(range(args.weeks), desc="ingestion soak (weeks)"):
            day = date(2021, 1, 5) + timedelta(weeks=week)
            bundle = BundleGenerator(seed=100 + week).write_bundle(
                work / "bundles", day, args.patents_per_week,
                first_number=900_000 + week * 1000)
            started = time.monotonic()
            GrantPublisher(producer, images, kafka.topic, progress=False).publish([bundle])
            for document in GrantReader().read(bundle):
                sheets += len(document.grant.sheets)
                drawings += [(document.grant.patent_number, blob)
                             for blob in list(document.images.values())[:1]]
            _wait_metric(metrics_port, "patentclip_embedder_grants_ingested_total",
                         (week + 1) * args.patents_per_week, embedder)
            weeks.append({"week": week + 1, "seconds": round(time.monotonic() - started, 2),
                          "rss_mb": round(rss_bytes(embedder.pid) / 2**20, 1)})
    finally:
        producer.close(timeout=10)
        embedder.terminate()
        embedder.wait(timeout=60)
    with PatentStore(uri, prefix="soak") as store:
        stored = store.count(store.live_collection())
    warm = weeks[0]["rss_mb"]
    return {"weeks": weeks, "expected_rows": sheets * 2, "stored_rows": stored,
            "lost_rows": sheets * 2 - stored,
            "rss_growth": round(weeks[-1]["rss_mb"] / warm - 1, 4) if warm else 0.0,
            "drawings": drawings}


def _start_embedder(work: Path, model_dir: Path, uri: str, kafka, metrics_port: int):
    env = {**os.environ, "PATENTCLIP_MODEL": f"local-dir:{model_dir}",
           "PATENTCLIP_MILVUS_URI": uri, "PATENTCLIP_COLLECTION_PREFIX": "soak",
           "PATENTCLIP_IMAGES_DIR": str(work / "images"),
           "PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "PATENTCLIP_KAFKA_TOPIC": kafka.topic, "PATENTCLIP_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
           "PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS": "3000",
           "PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS": "60000",
           "PATENTCLIP_EMBEDDER_METRICS_HOST": "127.0.0.1",
           "PATENTCLIP_EMBEDDER_METRICS_PORT": str(metrics_port)}
    return subprocess.Popen([sys.executable, "-m", "services.embedder"], cwd=REPO, env=env,
                            stdout=open(work / "embedder.log", "wb"), stderr=subprocess.STDOUT)


def _wait_metric(port: int, name: str, value: float, proc, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedder exited with {proc.returncode}")
        if metric_value(port, name) >= value:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not reach {value} within {timeout}s")


# ----------------------------------------------------------------------------- queries


class QueryMix:
    """``clients`` threads of text / drawing / similar searches; outcomes by status code."""

    def __init__(self, target: str, clients: int, drawings: list[tuple[str, bytes]]) -> None:
        self.target, self.drawings = target, drawings
        self.codes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.done = 0
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(seed,), daemon=True)
                         for seed in range(clients)]

    def start(self) -> QueryMix:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _client(self, seed: int) -> None:
        import grpc

        from patentclip_client import PatentSearchClient

        rng = random.Random(seed)
        with PatentSearchClient(self.target, timeout=30) as client:
            while not self._stop.is_set():
                kind = rng.choice(("text", "text", "image", "similar"))
                patent, drawing = rng.choice(self.drawings)
                started = time.perf_counter()
                try:
                    if kind == "text":
                        client.search_text(" ".join(rng.sample(WORDS, 3)), k=10)
                    elif kind == "image":
                        client.search_image(drawing, k=10)
                    else:
                        client.search_similar(patent, k=10)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with self._lock:
                    self.codes[f"{kind}:{code}"] += 1
                    self.latencies.append(time.perf_counter() - started)
                    self.done += 1


def _query_soak(args, work: Path, model_dir: Path, uri: str,
                drawings: list[tuple[str, bytes]]) -> dict:
    service = query_service_for_load(uri, model_dir, "soak", work / "query.log")
    try:
        service.wait_serving(timeout=300)
        mix = QueryMix(service.target, args.clients, drawings).start()
        samples = _sample(service.proc, mix, args.duration, args.sample_s)
        mix.stop()
    finally:
        code = service.terminate(timeout=60)
    failed = sum(n for key, n in mix.codes.items() if not key.endswith(":OK"))
    return {"requests": mix.done, "failed": failed, "codes": dict(sorted(mix.codes.items())),
            "qps": round(mix.done / args.duration, 1),
            "p50_ms": round(1000 * statistics.median(mix.latencies), 1),
            "p99_ms": round(1000 * sorted(mix.latencies)[int(0.99 * (len(mix.latencies) - 1))],
                            1),
            "samples": samples, "rss_growth": _growth(samples, args.warmup),
            "stopped_cleanly": code == 0}


def _sample(proc, mix: QueryMix, duration: float, every: float) -> list[dict]:
    samples, started, last_done = [], time.monotonic(), 0
    with tqdm(total=int(duration), desc="query soak (s)") as bar:
        while (elapsed := time.monotonic() - started) < duration:
            time.sleep(min(every, duration - elapsed))
            done = mix.done
            samples.append({"t": round(time.monotonic() - started, 1),
                            "rss_mb": round(rss_bytes(proc.pid) / 2**20, 1),
                            "qps": round((done - last_done) / every, 1)})
            last_done = done
            bar.n = int(min(samples[-1]["t"], duration))
            bar.refresh()
    return samples


def _growth(samples: list[dict], warmup: float, window: float = 30.0) -> float:
    """Median RSS of the last ``window`` s over the median of ``window`` s after warm-up."""
    after = [s["rss_mb"] for s in samples if warmup <= s["t"] < warmup + window]
    last = [s["rss_mb"] for s in samples if s["t"] >= samples[-1]["t"] - window]
    if not after or not last:
        return 0.0
    return round(statistics.median(last) / statistics.median(after) - 1, 4)


# ----------------------------------------------------------------------------- report


def _write(out: Path, result: dict) -> None:
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    (out / "soak.md").write_text(_markdown(result))
    _plot(out / "soak.png", result)


def _markdown(result: dict) -> str:
    q, i, p = result["query"], result["ingest"], result["params"]
    rows = [
        "| scenario | load | outcome | data lost | memory growth after warm-up |",
        "|---|---|---|---|---|",
        f"| query soak | {p['clients']} clients x {p['duration']:.0f} s, text/image/similar "
        f"2:1:1 | {q['requests']} requests, {q['failed']} failed, {q['qps']} QPS, p50 "
        f"{q['p50_ms']} ms, p99 {q['p99_ms']} ms | - | {100 * q['rss_growth']:+.1f}% |",
        f"| ingestion soak | {p['weeks']} weeks x {p['patents_per_week']} grants | "
        f"{i['stored_rows']} of {i['expected_rows']} rows stored | {i['lost_rows']} rows | "
        f"{100 * i['rss_growth']:+.1f}% (week 1 -> {p['weeks']}) |",
    ]
    verdict = "PASSED" if result["passed"] else "FAILED"
    return (f"# Soak ({verdict})\n\n{result['machine']}; backend {p['backend']}.\n\n"
            + "\n".join(rows) + f"\n\nStatus codes: {q['codes']}\n")


def _plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, weeks = result["query"]["samples"], result["ingest"]["weeks"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([s["t"] for s in samples], [s["rss_mb"] for s in samples], label="RSS (MB)")
    left.axvline(result["params"]["warmup"], color="grey", linestyle=":", label="warm-up end")
    left.set(xlabel="seconds", ylabel="query service RSS (MB)", title="Query soak")
    twin = left.twinx()
    twin.plot([s["t"] for s in samples], [s["qps"] for s in samples], color="tab:orange",
              alpha=0.6)
    twin.set_ylabel("QPS", color="tab:orange")
    left.legend(loc="lower right")
    right.plot([w["week"] for w in weeks], [w["rss_mb"] for w in weeks], marker="o")
    right.set(xlabel="week ingested", ylabel="embedder RSS (MB)", title="Ingestion soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=300.0, help="query soak seconds")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--weeks", type=int, default=6, help="generated weeks to ingest")
    p.add_argument("--patents-per-week", type=int, default=40)
    p.add_argument("--backend", choices=("lite", "server"), default="lite")
    p.add_argument("--max-rss-growth", type=float, default=0.10)
    p.add_argument("--out", default="reports/soak")
    return p


if __name__ == "__main__":
    sys.exit(main())
