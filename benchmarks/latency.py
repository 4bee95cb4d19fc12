"""``make bench-latency``: where a query's time goes, end to end through the gRPC service.

Runs the query service as its own process (``python -m services.query``) over a Milvus
collection of clustered vectors (``bench_search.dataset``; 6 sheets per patent) with a
random-weight model, and sends text, image and similar-patent queries one at a time. The
service's own stage histograms (``patentclip_query_stage_seconds``: decode, encode, lookup,
search, group, serialize) are scraped before and after each kind; the client times each
call. What is left of the client's time after the core stages (decode, encode, lookup,
search, group) is the service overhead: serialization, gRPC, the interceptor, threads.

Writes ``<out>/latency.json``, ``latency.md`` and ``latency.png``.

    python -m benchmarks.latency --out reports/bench-latency
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.bench import MilvusBackend, in_child, query_service_for_load, random_weights_model
from harness.machine import machine

CORE_STAGES = ("decode", "encode", "lookup", "search", "group")
STAGES = CORE_STAGES + ("serialize",)
SHEETS_PER_PATENT = 6
KINDS = ("text", "image", "similar")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.corpus, args.requests = 10_000, 15
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    model_dir = random_weights_model(args.model, work / "model")
    result = {"date": date.today().isoformat(), "machine": machine(), "model": args.model,
              "backend": args.backend, "corpus_sheets": args.corpus,
              "params": {k: v for k, v in vars(args).items() if k != "out"}, "kinds": []}
    with MilvusBackend(args.backend, work) as uri:
        patents = in_child(build_corpus, uri, model_dir, args.corpus)  # Lite: unlock the file
        with QueryService(uri, model_dir, work) as service:
            for kind in KINDS:
                result["kinds"].append(measure(service, kind, patents, args.requests))
    write_reports(result, out)
    for k in result["kinds"]:
        print(f"{k['kind']:>8}: {k['client_ms']:.1f} ms per query, service overhead "
              f"{k['overhead_share']:.1%}")
    print(f"wrote {out}/latency.json, latency.md, latency.png")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="reports/bench-latency")
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--backend", default="server", choices=["lite", "server"])
    p.add_argument("--corpus", type=int, default=100_000, help="drawing sheets")
    p.add_argument("--requests", type=int, default=40, help="timed queries per kind")
    p.add_argument("--quick", action="store_true", help="10k sheets, 15 queries per kind")
    return p


def build_corpus(uri: str, model_dir: Path, size: int) -> list[str]:
    """The model's collection with ``size`` drawing rows, flushed and indexed, as the live
    alias; returns the patent numbers."""
    from benchmarks.search import dataset
    from patentclip.model.encoder import Encoder
    from patentclip.store import PatentStore, SheetRow

    info = Encoder.load(f"local-dir:{model_dir}").info
    vectors, _ = dataset(size, 1)
    store = PatentStore(uri, prefix="lat", timeout=3600)
    collection = store.ensure_collection(info.model_version, info.dim, info.spec)
    patents = [f"D{900_000 + i // SHEETS_PER_PATENT:07d}" for i in range(size)]
    for start in tqdm(range(0, size, 5000), desc="corpus", leave=False):
        store.upsert(collection, [
            SheetRow(patent=patents[i], sheet=i % SHEETS_PER_PATENT + 1, modality="drawing",
                     vector=vectors[i, :info.dim], view="front", locarno="0901",
                     grant_date=20210105, title="synthetic design",
                     figures="FIG. 1 is a front view", caption="a drawing")
            for i in range(start, min(size, start + 5000))])
    store.flush(collection)
    store.wait_indexed(collection)
    store.set_alias(store.live_alias, collection)
    store.close()
    return sorted(set(patents))


class QueryService:
    """``python -m services.query`` on free ports; stopped with SIGTERM."""

    def __init__(self, uri: str, model_dir: Path, work: Path) -> None:
        # batching as the service's defaults: on
        self.process = query_service_for_load(uri, model_dir, "lat", work / "query.log")
        self.target, self.metrics_port = self.process.target, self.process.metrics_port

    def __enter__(self) -> QueryService:
        self.process.wait_serving(timeout=300)
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate(timeout=60)

    def stage_totals(self) -> dict[str, tuple[float, float]]:
        """(sum of seconds, count) per stage and per RPC method, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        totals: dict[str, list[float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name not in ("patentclip_query_stage_seconds",
                                   "patentclip_query_request_seconds"):
                continue
            for sample in family.samples:
                key = sample.labels.get("stage") or "rpc:" + sample.labels.get("method", "")
                slot = totals.setdefault(key, [0.0, 0.0])
                if sample.name.endswith("_sum"):
                    slot[0] = sample.value
                elif sample.name.endswith("_count"):
                    slot[1] = sample.value
        return {k: (v[0], v[1]) for k, v in totals.items()}


def query_image() -> bytes:
    """One synthetic G4 TIFF drawing sheet, as a user would upload."""
    from patentclip_cli.synthetic import BundleGenerator, render_sheets

    patent = BundleGenerator(seed=7).patents(date(2021, 1, 5), 1)[0]
    return next(iter(render_sheets(patent).values()))


def measure(service: QueryService, kind: str, patents: list[str], requests: int) -> dict:
    """``requests`` queries of one kind, one at a time; stage means from the service."""
    from patentclip_client import PatentSearchClient

    rng = np.random.default_rng(1)
    image = query_image()
    method = {"text": "SearchByText", "image": "SearchByImage",
              "similar": "SearchSimilar"}[kind]

    def one(client, n: int) -> None:
        if kind == "text":
            client.search_text(f"ornamental design number {n} for a lamp", k=10,
                               against="drawing")
        elif kind == "image":
            client.search_image(image, k=10)
        else:
            client.search_similar(patents[int(rng.integers(len(patents)))], k=10)

    with PatentSearchClient(service.target, timeout=60) as client:
        for n in range(5):  # warm-up: first calls load paths, caches, connections
            one(client, -n)
        before = service.stage_totals()
        client_s = []
        for n in tqdm(range(requests), desc=kind, leave=False):
            started = time.perf_counter()
            one(client, n)
            client_s.append(time.perf_counter() - started)
        after = service.stage_totals()
    per_stage = {s: 1000 * (after[s][0] - before[s][0]) / requests for s in STAGES}
    rpc = f"rpc:{method}"
    server_ms = 1000 * (after[rpc][0] - before[rpc][0]) / requests
    client_ms = 1000 * float(np.mean(client_s))
    core_ms = sum(per_stage[s] for s in CORE_STAGES)
    return {"kind": kind, "requests": requests, "client_ms": round(client_ms, 2),
            "client_p50_ms": round(1000 * float(np.median(client_s)), 2),
            "server_ms": round(server_ms, 2),
            "stages_ms": {s: round(v, 3) for s, v in per_stage.items()},
            "grpc_and_service_ms": round(client_ms - core_ms - per_stage["serialize"], 3),
            "overhead_ms": round(client_ms - core_ms, 3),
            "overhead_share": round((client_ms - core_ms) / client_ms, 4)}


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# End-to-end query latency ({result['date']})", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']} "
             f"({m['torch_threads']} threads), open_clip {m['open_clip']}, no GPU. Model "
             f"`{result['model']}` (random weights, eager fp32), Milvus {result['backend']} "
             f"with {result['corpus_sheets']:,} drawing sheets (HNSW), top 10 grouped by "
             "patent, one query at a time. Stage times are the service's own histograms; "
             "'gRPC + service' is the client's time minus every stage.", "",
             "| query | client ms (mean) | p50 | " + " | ".join(STAGES)
             + " | gRPC + service | overhead share |",
             "|---|---:|---:|" + "---:|" * len(STAGES) + "---:|---:|"]
    for k in result["kinds"]:
        lines.append(f"| {k['kind']} | {k['client_ms']} | {k['client_p50_ms']} | "
                     + " | ".join(f"{k['stages_ms'][s]:.2f}" for s in STAGES)
                     + f" | {k['grpc_and_service_ms']:.2f} | {k['overhead_share']:.1%} |")
    lines += ["", "Overhead = serialize + gRPC + service = client time minus decode, encode, "
              "lookup, search and group."]
    (out / "latency.md").write_text("\n".join(lines) + "\n")
    plot(result, out / "latency.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    kinds = [k["kind"] for k in result["kinds"]]
    left = np.zeros(len(kinds))
    parts = [*STAGES, "gRPC + service"]
    for part in parts:
        values = np.array([k["stages_ms"].get(part, k["grpc_and_service_ms"])
                           if part != "gRPC + service" else k["grpc_and_service_ms"]
                           for k in result["kinds"]])
        ax.barh(kinds, values, left=left, label=part)
        left += values
    ax.set_xlabel("ms per query (mean)")
    ax.set_title(f"{result['model']}, Milvus {result['backend']}, "
                 f"{result['corpus_sheets']:,} sheets")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
