"""``make bench-query``: latency and QPS of the gRPC query service under load.

For each Milvus backend (Milvus Lite, Milvus 2.3.5 server) and corpus size (10k and 100k
drawing sheets, random unit vectors: the search cost depends on the count, not the
content), the query service runs as its own process (``python -m services.query``) with
dynamic batching off (``max_batch=1``) and on (``max_batch=32``, 5 ms). A load generator
sends unique text queries (the text cache cannot help; every query goes through the real
encoder) from 1, 8 and 32 concurrent clients and records p50/p95/p99 and QPS.

Writes ``<out>/query.json``, ``query.md`` (table) and ``query.png`` (plot).

    python scripts/bench_query.py --out reports/bench-query
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = ["lamp", "bottle", "chair", "shoe", "vase", "handle", "toy", "cup", "lid", "box",
         "knife", "wheel", "bag", "clock", "fan", "phone"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-query-"))
    model_dir = _model(args.model, work)
    results = []
    for backend in args.backends:
        with _milvus(backend, work) as uri:
            for size in args.corpus:
                collection = _in_child(_corpus, uri, model_dir, size, backend, work)
                for batching in (False, True):
                    results += _serve_and_load(args, uri, model_dir, collection, size, backend,
                                               batching)
    summary = {"machine": _machine(), "model": args.model, "duration_s": args.duration,
               "runs": results, "batching_gain_at_32": _gains(results)}
    _write(Path(args.out), summary)
    for gain in summary["batching_gain_at_32"]:
        print(f"{gain['backend']:>6} {gain['corpus']:>7}: batching x{gain['qps_ratio']:.2f} "
              f"QPS, p99 {gain['p99_off_ms']:.0f} -> {gain['p99_on_ms']:.0f} ms")
    print(f"wrote {args.out}/")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ViT-B-32",
                   help="open_clip architecture; random weights saved once to a local dir")
    p.add_argument("--corpus", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--backends", nargs="+", default=["lite", "server"],
                   choices=["lite", "server"])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=float, default=8.0, help="seconds per load run")
    p.add_argument("--out", default="reports/bench-query")
    return p


def _model(name: str, work: Path) -> Path:
    """A random-weight model saved locally, so server and bench load the same version."""
    import open_clip
    import torch

    from patentclip.encoder import save_local_model

    torch.manual_seed(0)
    model = open_clip.create_model(name)
    out = work / "model"
    save_local_model(model, open_clip.get_model_config(name), out)
    return out


class _milvus:
    """Context manager yielding a URI: a Milvus Lite file, or a Milvus 2.3.5 server."""

    def __init__(self, backend: str, work: Path) -> None:
        self.backend, self.work, self.server = backend, work, None

    def __enter__(self) -> str:
        if self.backend == "lite":
            return str(self.work / "lite.db")
        from milvus import MilvusServer

        self.server = MilvusServer()
        self.server.set_base_dir(str(self.work / "milvus-server"))
        self.server.start()
        return f"http://127.0.0.1:{self.server.listen_port}"

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.stop()


def _in_child(fn, *args):
    """Run ``fn`` in a fresh process: a Milvus Lite file stays locked by the process that
    opened it, and the query service process must be the one to open it next."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _corpus(uri: str, model_dir: Path, size: int, backend: str, work: Path) -> str:
    """``size`` drawing rows of random unit vectors in a collection for the model."""
    from patentclip.encoder import Encoder
    from patentclip.store import PatentStore, SheetRow

    info = Encoder.load(f"local-dir:{model_dir}").info
    prefix = f"bench{size}"
    store = PatentStore(uri, prefix=prefix, timeout=600)
    for name in store.list_collections():
        store.drop(name)
    collection = store.ensure_collection(info.model_version, info.dim, info.spec)
    rng = np.random.default_rng(size)
    started = time.perf_counter()
    for start in range(0, size, 5000):
        vectors = rng.standard_normal((min(5000, size - start), info.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [SheetRow(patent=f"D{(start + i) // 6 + 900000:07d}", sheet=(start + i) % 6,
                         modality="drawing", vector=v, view="front", locarno="0901",
                         grant_date=20210105, title="synthetic design", caption="a drawing")
                for i, v in enumerate(vectors)]
        store.upsert(collection, rows)
    store.flush(collection)
    store.set_alias(store.live_alias, collection)
    print(f"{backend}: {size} rows in {time.perf_counter() - started:.0f}s")
    store.close()  # Milvus Lite: the query service process must be the only one on the file
    return collection


def _serve_and_load(args, uri: str, model_dir: Path, collection: str, size: int,
                    backend: str, batching: bool) -> list[dict]:
    """Start the service, warm it up, run each concurrency level, stop it (SIGTERM)."""
    log = Path(tempfile.mkdtemp()) / "query.log"
    proc, target = _start_server(uri, model_dir, f"bench{size}", batching, log)
    runs = []
    try:
        _wait_serving(target, proc)
        _load(target, 4, 2.0)  # warm-up: first searches load segments, JIT paths, caches
        for concurrency in args.concurrency:
            result = _load(target, concurrency, args.duration)
            result.update(backend=backend, corpus=size, batching=batching)
            runs.append(result)
            print(f"{backend:>6} {size:>7} batching {'on ' if batching else 'off'} "
                  f"c={concurrency:<3} {result['qps']:>7.1f} QPS  p50 {result['p50_ms']} ms  "
                  f"p99 {result['p99_ms']} ms  errors {result['errors']}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return runs


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(uri: str, model_dir: Path, prefix: str, batching: bool, log: Path,
                  metrics_port: int = 0):
    """``python -m services.query`` on a free port (text cache off: every query encodes)."""
    port = _free_port()
    env = dict(os.environ)
    env.update({"PATENTCLIP_MODEL": f"local-dir:{model_dir}", "PATENTCLIP_MILVUS_URI": uri,
                "PATENTCLIP_COLLECTION_PREFIX": prefix, "PATENTCLIP_IMAGES_DIR": "",
                "PATENTCLIP_QUERY_HOST": "127.0.0.1", "PATENTCLIP_QUERY_PORT": str(port),
                "PATENTCLIP_QUERY_METRICS_PORT": str(metrics_port),
                "PATENTCLIP_QUERY_MAX_BATCH": "32" if batching else "1",
                "PATENTCLIP_QUERY_MAX_DELAY_MS": "5", "PATENTCLIP_QUERY_TEXT_CACHE_SIZE": "0",
                "PATENTCLIP_QUERY_SEARCH_MAX_BATCH": "16" if batching else "1",
                "PATENTCLIP_QUERY_MAX_WORKERS": "64"})
    proc = subprocess.Popen([sys.executable, "-m", "services.query"], cwd=REPO, env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return proc, f"127.0.0.1:{port}"


def _wait_serving(target: str, proc, timeout: float = 300) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"query service exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise TimeoutError("query service did not become SERVING")


def _load(target: str, concurrency: int, duration: float) -> dict:
    """``concurrency`` clients sending unique text queries back to back for ``duration``."""
    from services.query.client import PatentSearchClient

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    counter = iter(range(10**9))

    def client_loop(worker: int) -> None:
        with PatentSearchClient(target, timeout=60) as client:
            own = []
            while time.monotonic() < stop_at:
                n = next(counter)
                text = f"{WORDS[n % len(WORDS)]} design number {n} seen from the front"
                started = time.perf_counter()
                try:
                    client.search_text(text, k=10, against="drawing")
                    own.append(time.perf_counter() - started)
                except Exception:
                    with lock:
                        errors[0] += 1
            with lock:
                latencies.extend(own)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors[0],
            "qps": round(len(latencies) / elapsed, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def _gains(runs: list[dict]) -> list[dict]:
    gains = []
    for backend in sorted({r["backend"] for r in runs}):
        for size in sorted({r["corpus"] for r in runs}):
            pick = {r["batching"]: r for r in runs if r["backend"] == backend
                    and r["corpus"] == size and r["concurrency"] == 32}
            if True in pick and False in pick and pick[False]["qps"]:
                gains.append({"backend": backend, "corpus": size,
                              "qps_ratio": round(pick[True]["qps"] / pick[False]["qps"], 2),
                              "p99_off_ms": pick[False]["p99_ms"],
                              "p99_on_ms": pick[True]["p99_ms"]})
    return gains


def _machine() -> str:
    import platform

    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), no GPU, Python {platform.python_version()}"


def _write(out: Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "query.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = ["| backend | corpus (sheets) | batching | clients | QPS | p50 ms | p95 ms | "
             "p99 ms | errors |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary["runs"]:
        table.append(f"| {r['backend']} | {r['corpus']} | {'on' if r['batching'] else 'off'} "
                     f"| {r['concurrency']} | {r['qps']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p99_ms']} | {r['errors']} |")
    gains = ["| backend | corpus | QPS on/off at 32 clients | p99 off ms | p99 on ms |",
             "|---|---:|---:|---:|---:|"]
    gains += [f"| {g['backend']} | {g['corpus']} | {g['qps_ratio']} | {g['p99_off_ms']} | "
              f"{g['p99_on_ms']} |" for g in summary["batching_gain_at_32"]]
    (out / "query.md").write_text(
        f"# Query service benchmark\n\nMachine: {summary['machine']}. Model `{summary['model']}`"
        f" (random weights; text queries through the real text tower, unique, no cache), "
        f"{summary['duration_s']:.0f} s per run, text -> drawing search, top 10, grouped.\n\n"
        + "\n".join(table) + "\n\n## Dynamic batching at 32 clients\n\n" + "\n".join(gains)
        + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["backend"], r["corpus"]) for r in summary["runs"]})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for ax, (backend, size) in zip(axes[0], keys, strict=True):
        for batching in (False, True):
            runs = [r for r in summary["runs"] if r["backend"] == backend
                    and r["corpus"] == size and r["batching"] == batching]
            ax.plot([r["concurrency"] for r in runs], [r["qps"] for r in runs], marker="o",
                    label=f"batching {'on' if batching else 'off'}")
        ax.set_title(f"{backend}, {size // 1000}k sheets")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("QPS")
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "query.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
