"""``make bench-query``: latency and QPS of the gRPC query service under load.

For each Milvus backend (Milvus Lite, Milvus 2.3.5 server) and corpus size (10k and 100k
drawing sheets, random unit vectors: the search cost depends on the count, not the
content), the query service runs as its own process (``python -m services.query``) with
dynamic batching off (``max_batch=1``) and on (``max_batch=32``, 5 ms). A load generator
sends unique text queries (the text cache cannot help; every query goes through the real
encoder) from 1, 8 and 32 concurrent clients and records p50/p95/p99 and QPS.

Writes ``<out>/query.json``, ``query.md`` (table) and ``query.png`` (plot).

    python -m benchmarks.query --out reports/bench-query
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from harness.bench import MilvusBackend, in_child, query_service_for_load, random_weights_model
from harness.machine import machine_line

WORDS = ["lamp", "bottle", "chair", "shoe", "vase", "handle", "toy", "cup", "lid", "box",
         "knife", "wheel", "bag", "clock", "fan", "phone"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-query-"))
    model_dir = random_weights_model(args.model, work / "model")
    results = []
    for backend in args.backends:
        with MilvusBackend(backend, work) as uri:
            for size in args.corpus:
                collection = in_child(_corpus, uri, model_dir, size, backend, work)
                for batching in (False, True):
                    results += _serve_and_load(args, uri, model_dir, collection, size, backend,
                                               batching)
    summary = {"machine": machine_line(), "model": args.model, "duration_s": args.duration,
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


def _corpus(uri: str, model_dir: Path, size: int, backend: str, work: Path) -> str:
    """``size`` drawing rows of random unit vectors in a collection for the model."""
    from patentclip.model.encoder import Encoder
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
    service = query_service_for_load(uri, model_dir, f"bench{size}", log, batching)
    target, runs = service.target, []
    try:
        service.wait_serving(timeout=300)
        _load(target, 4, 2.0)  # warm-up: first searches load segments, JIT paths, caches
        for concurrency in args.concurrency:
            result = _load(target, concurrency, args.duration)
            result.update(backend=backend, corpus=size, batching=batching)
            runs.append(result)
            print(f"{backend:>6} {size:>7} batching {'on ' if batching else 'off'} "
                  f"c={concurrency:<3} {result['qps']:>7.1f} QPS  p50 {result['p50_ms']} ms  "
                  f"p99 {result['p99_ms']} ms  errors {result['errors']}", flush=True)
    finally:
        service.terminate(timeout=60)
    return runs


def _load(target: str, concurrency: int, duration: float) -> dict:
    """``concurrency`` clients sending unique text queries back to back for ``duration``."""
    from patentclip_client import PatentSearchClient

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
