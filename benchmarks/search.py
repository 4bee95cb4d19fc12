"""``make bench-search``: exact numpy vs Milvus Lite vs the Milvus server, on clustered vectors.

Vectors are seeded and clustered: a Gaussian mixture around 4096 centres in a 32-d latent
space, mapped to 512-d by a fixed random linear map, plus a little 512-d noise, normalized.
Uniform random 512-d vectors (or isotropic noise around centres) are nearly equidistant,
which makes ANN recall meaningless; CLIP embeddings have a low intrinsic dimension, which
this mimics. For each size and backend it measures:

* build: insert (through ``PatentStore.upsert``, the product path), flush, HNSW build
  (``PatentStore.wait_indexed``), load; memory per vector (resident memory of the backend's
  processes, after minus before) and disk per vector;
* an ef sweep at concurrency 1: recall@10 against exact top-10, p50/p99 and QPS;
* at the chosen ef (the smallest with recall@10 >= 0.95): concurrency 16, and 16 query
  vectors per request (what ``PatentStore.search`` sends for a similar-patent query);
* Milvus Lite only: search latency in each state (growing segments, just flushed while its
  index builds, indexed, and a fresh process that loaded the data), and a py-spy profile of
  its server process during searches (top frames in the report);
* Milvus server only, at ``--tune-size``: HNSW M in ``--m-sweep`` with the ef sweep each.

Writes ``<out>/search.json`` (results so far, rewritten after every step), ``search.md``
and ``search.png``.

    python -m benchmarks.search --out reports/bench-search            # 10k, 100k, 1M
    python -m benchmarks.search --out /tmp/bench-search --quick       # 10k, minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.machine import machine
from harness.processes import LiteServer, MilvusServerProcess

K = 10
DIM = 512
CENTRES = 4096
LATENT = 32  # intrinsic dimension of the mixture
SPREAD = 1.0  # within-cluster standard deviation in the latent space (centres: 2.0)
NOISE = 0.05  # isotropic 512-d noise, so the vectors are full rank
TARGET_RECALL = 0.95


# -- data and the exact reference


def dataset(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` corpus and ``queries`` query unit vectors from the same seeded mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, LATENT), dtype=np.float32) * 2.0
    lift = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)

    def sample(count: int) -> np.ndarray:
        out = np.empty((count, DIM), dtype=np.float32)
        for start in range(0, count, 100_000):
            m = min(100_000, count - start)
            z = centres[rng.integers(0, CENTRES, m)]
            z = z + rng.standard_normal(z.shape, dtype=np.float32) * SPREAD
            x = z @ lift + rng.standard_normal((m, DIM), dtype=np.float32) * NOISE
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return sample(n), sample(queries)


def exact_topk(corpus: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k ids by inner product (= cosine on unit vectors), best first."""
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(corpus), 200_000):
        scores = queries @ corpus[start:start + 200_000].T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_ids = np.hstack([best_ids, top + start])
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, top, 1)])
        keep = np.argsort(-best_scores, axis=1)[:, :k]
        best_ids = np.take_along_axis(best_ids, keep, 1)
        best_scores = np.take_along_axis(best_scores, keep, 1)
    return best_ids


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int = K) -> float:
    """Mean share of the exact top-k that the search returned in its top-k."""
    return float(np.mean([len(set(f[:k]) & set(t[:k].tolist())) / k
                          for f, t in zip(found, truth, strict=False)]))


# -- timing


def timed_queries(search_fn, queries: np.ndarray, concurrency: int, budget_s: float,
                  min_queries: int, batch: int = 1) -> tuple[list, list[float], float]:
    """Run ``search_fn(vectors) -> [ids per vector]`` over the queries in order, ``batch``
    vectors per request, from ``concurrency`` threads, until the queries run out or the time
    budget is spent (after at least ``min_queries``). Returns (ids per query, latency per
    request in s, wall time)."""
    requests = [list(range(i, min(i + batch, len(queries))))
                for i in range(0, len(queries), batch)]
    found: dict[int, list[int]] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    started = time.perf_counter()

    def worker() -> None:
        for r in cursor:
            done = len(found)
            if done >= min_queries and time.perf_counter() - started > budget_s:
                return
            t = time.perf_counter()
            ids = search_fn(queries[requests[r]])
            elapsed = time.perf_counter() - t
            with lock:
                latencies.append(elapsed)
                found.update(zip(requests[r], ids, strict=True))

    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - started
    order = sorted(found)
    return [found[i] for i in order], latencies, wall


def summary(latencies: list[float], wall: float, queries: int) -> dict:
    ms = np.array(latencies) * 1000
    return {"queries": queries, "requests": len(latencies),
            "qps": round(queries / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


# -- backends


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _backend(name: str, work: Path):
    """Milvus Lite's server (32 workers) or the Milvus 2.3.5 server, in ``work``."""
    if name == "lite":
        return LiteServer(work / "lite", max_workers=32)
    return MilvusServerProcess(work / "milvus-server")


# -- one backend at one size


class StoreBench:
    """Build a collection of the corpus through PatentStore and measure searches on it."""

    def __init__(self, args, backend, corpus: np.ndarray, queries: np.ndarray,
                 truth: np.ndarray) -> None:
        self.args, self.backend = args, backend
        self.corpus, self.queries, self.truth = corpus, queries, truth

    def store(self, uri: str, prefix: str, m: int = 16):
        from patentclip.store import PatentStore

        return PatentStore(uri, prefix=prefix, timeout=3600, hnsw_m=m,
                           hnsw_ef_construction=self.args.ef_construction)

    def build(self, uri: str, prefix: str, m: int = 16, probe_states: bool = False) -> dict:
        """Insert, flush, index, load; Lite also times searches in the intermediate states."""
        from patentclip.store import SheetRow

        store = self.store(uri, prefix, m)
        for name in store.list_collections():
            store.drop(name)
        rss0, disk0 = self.backend.rss(), disk_bytes(self.backend.data_dir)
        collection = store.ensure_collection("bench", DIM)
        n, states = len(self.corpus), {}
        probes = 3 if n <= 100_000 else 1  # a growing 1M-row Lite search takes ~1 minute
        t0 = time.perf_counter()
        for start in tqdm(range(0, n, 5000), desc=f"{self.backend.name} insert {n}",
                          leave=False):
            store.upsert(collection, [SheetRow(f"D{i:07d}", 1, "drawing", self.corpus[i])
                                      for i in range(start, min(n, start + 5000))])
        t_insert = time.perf_counter() - t0
        if probe_states:
            states["growing"] = self.latency(store, collection, probes)
        t1 = time.perf_counter()
        store.flush(collection)
        t_flush = time.perf_counter() - t1
        if probe_states:
            states["flushed, index building"] = self.latency(store, collection, probes)
        t2 = time.perf_counter()
        store.wait_indexed(collection)
        store.load(collection)
        t_index = time.perf_counter() - t2
        if probe_states:
            states["indexed, same process"] = self.latency(store, collection, 3 * probes + 1)
        build = {"insert_s": round(t_insert, 1), "flush_s": round(t_flush, 1),
                 "index_s": round(t_index, 1),
                 "build_s": round(t_insert + t_flush + t_index, 1),
                 "memory_bytes_per_vector": round((self.backend.rss() - rss0) / n),
                 "disk_bytes_per_vector": round((disk_bytes(self.backend.data_dir) - disk0)
                                                / n)}
        store.close()
        return {"build": build, "collection": collection, "states": states}

    def search_fn(self, store, collection: str):
        def run(vectors: np.ndarray) -> list[list[int]]:
            return [[int(h.patent[1:]) for h in hits]
                    for hits in store.search(collection, vectors, K, group=False)]
        return run

    def latency(self, store, collection: str, count: int) -> dict:
        _, lat, wall = timed_queries(self.search_fn(store, collection), self.queries[:count],
                                     1, 1e9, count)
        return summary(lat, wall, count)

    def measure(self, uri: str, prefix: str, collection: str, m: int = 16,
                full: bool = True) -> dict:
        """ef sweep at concurrency 1, then concurrency 16 and batches of 16 at the chosen ef."""
        stores = [self.store(uri, prefix, m) for _ in range(16)]
        for s in stores:
            s.load(collection)
        sweep = []
        for ef in self.args.efs:
            stores[0].ef = ef
            found, lat, wall = timed_queries(self.search_fn(stores[0], collection),
                                             self.queries, 1, self.args.budget, 20)
            sweep.append({"ef": ef, "recall_at_10": round(recall_at_k(found, self.truth), 4),
                          **summary(lat, wall, len(found))})
        chosen = next((r for r in sweep if r["recall_at_10"] >= TARGET_RECALL), sweep[-1])
        result = {"sweep": sweep, "chosen": chosen}
        if full:
            for s in stores:
                s.ef = chosen["ef"]
            pool = iter(stores)
            local = threading.local()

            def per_thread(vectors):
                if not hasattr(local, "fn"):
                    local.fn = self.search_fn(next(pool), collection)
                return local.fn(vectors)

            found, lat, wall = timed_queries(per_thread, self.queries, 16, self.args.budget,
                                             64)
            result["c16"] = {"recall_at_10": round(recall_at_k(found, self.truth), 4),
                             **summary(lat, wall, len(found))}
            found, lat, wall = timed_queries(self.search_fn(stores[0], collection),
                                             self.queries, 1, self.args.budget, 32, batch=16)
            result["batch16"] = {"recall_at_10": round(recall_at_k(found, self.truth), 4),
                                 **summary(lat, wall, len(found))}
            result["c16_batched"] = self.batched_c16(stores[0], collection)
        for s in stores:
            s.close()
        return result

    def batched_c16(self, store, collection: str) -> dict:
        """16 concurrent single-vector clients through the query service's BatchedSearch."""
        from patentclip.search.batching import BatchedSearch

        searches = BatchedSearch(store, max_batch=16, max_delay=0.002)
        try:
            found, lat, wall = timed_queries(self.search_fn(searches, collection),
                                             self.queries, 16, self.args.budget, 64)
        finally:
            searches.close()
        return {"recall_at_10": round(recall_at_k(found, self.truth), 4),
                **summary(lat, wall, len(found))}



def profile_lite(bench: StoreBench, uri: str, prefix: str, collection: str, seconds: float,
                 out: Path) -> dict:
    """py-spy samples of the Lite server process while it answers searches: top frames."""
    exe = Path(sys.executable).with_name("py-spy")
    raw = out / f"lite-profile-{len(bench.corpus)}.txt"
    if not exe.exists():
        return {"skipped": "py-spy not installed"}
    spy = subprocess.Popen([str(exe), "record", "-p", str(bench.backend.pid), "-d",
                            str(int(seconds)), "-r", "50", "-f", "raw", "-o", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = bench.store(uri, prefix)
    store.load(collection)
    stop_at = time.monotonic() + seconds + 1
    fn = bench.search_fn(store, collection)
    i = 0
    while time.monotonic() < stop_at:
        fn(bench.queries[i % len(bench.queries)][None, :])
        i += 1
    spy.wait(timeout=60)
    store.close()
    return top_frames(raw) if raw.exists() else {"skipped": "py-spy wrote nothing"}


def top_frames(raw: Path, count: int = 8) -> dict:
    """Share of the search thread's samples by leaf function (``file:function``)."""
    own: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not any("Collection.search" in f for f in frames):
            continue  # idle gRPC threads and the background index builder
        leaf = frames[-1].split(" (")[0]
        where = frames[-1].split("/")[-1].split(":")[0] if "/" in frames[-1] else ""
        own[f"{leaf} ({where})"] += int(n)
        total += int(n)
    return {"samples": total, "top": [{"frame": f, "share": round(c / total, 3)}
                                      for f, c in own.most_common(count)]}


# -- exact numpy


def numpy_bench(args, corpus: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    def search(vectors: np.ndarray) -> list[list[int]]:
        scores = vectors @ corpus.T
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        return np.take_along_axis(top, order, 1).tolist()

    from threadpoolctl import threadpool_limits

    c1 = timed_queries(search, queries, 1, args.budget, 20)
    with threadpool_limits(1, "blas"):  # 16 callers x 2 BLAS threads each thrash (7x slower)
        c16 = timed_queries(search, queries, 16, args.budget, 64)
    b16 = timed_queries(search, queries, 1, args.budget, 32, batch=16)
    return {"build": {"build_s": 0.0, "memory_bytes_per_vector": corpus.nbytes // len(corpus),
                      "disk_bytes_per_vector": 0},
            "chosen": {"ef": None, "recall_at_10": round(recall_at_k(c1[0], truth), 4),
                       **summary(c1[1], c1[2], len(c1[0]))},
            "c16": {"recall_at_10": 1.0, **summary(c16[1], c16[2], len(c16[0]))},
            "batch16": {"recall_at_10": 1.0, **summary(b16[1], b16[2], len(b16[0]))}}


# -- driver


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.report_only:  # rewrite search.md and search.png from search.json
        write_reports(json.loads((Path(args.out) / "search.json").read_text()), Path(args.out))
        return 0
    if args.quick:
        args.sizes, args.queries, args.budget, args.m_sweep = [10_000], 200, 4.0, []
        args.efs = [16, 64, 128]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    result = {"date": date.today().isoformat(), "machine": machine(),
              "params": {k: v for k, v in vars(args).items() if k != "out"},
              "data": {"dim": DIM, "centres": CENTRES, "latent": LATENT, "spread": SPREAD,
                       "noise": NOISE, "k": K},
              "runs": [], "m_sweep": []}
    if args.append and (out / "search.json").exists():  # add sizes to an earlier run
        earlier = json.loads((out / "search.json").read_text())
        result["runs"], result["m_sweep"] = earlier["runs"], earlier["m_sweep"]
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        for n in args.sizes:
            run_size(args, n, work, result, out)
        if args.m_sweep and "server" in args.backends:
            run_m_sweep(args, work, result, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_reports(result, out)
    print(f"wrote {out}/search.json, search.md, search.png")
    return 0


def run_size(args, n: int, work: Path, result: dict, out: Path) -> None:
    t = time.perf_counter()
    corpus, queries = dataset(n, args.queries)
    truth = exact_topk(corpus, queries)
    print(f"{n} vectors: data and exact top-{K} in {time.perf_counter() - t:.0f}s", flush=True)
    if "numpy" in args.backends:
        add_run(result, out, {"backend": "numpy", "vectors": n,
                              **numpy_bench(args, corpus, queries, truth)})
    for name in [b for b in args.backends if b != "numpy"]:
        backend = _backend(name, work / f"{name}-{n}")
        uri = backend.start().uri
        try:
            bench = StoreBench(args, backend, corpus, queries, truth)
            built = bench.build(uri, f"b{n}", probe_states=name == "lite")
            states = built["states"]
            if name == "lite":  # a fresh process loads the flushed, indexed data
                backend.stop()
                uri = backend.start().uri
                t = time.perf_counter()
                bench.store(uri, f"b{n}").load(built["collection"])
                built["build"]["fresh_load_s"] = round(time.perf_counter() - t, 1)
                states["fresh process"] = bench.latency(bench.store(uri, f"b{n}"),
                                                        built["collection"], 10)
            run = {"backend": name, "vectors": n, "build": built["build"], "states": states,
                   **bench.measure(uri, f"b{n}", built["collection"])}
            if name == "lite" and args.profile:
                run["profile"] = profile_lite(bench, uri, f"b{n}", built["collection"],
                                              args.profile, out)
            add_run(result, out, run)
        finally:
            backend.stop()
            shutil.rmtree(backend.data_dir, ignore_errors=True)


def run_m_sweep(args, work: Path, result: dict, out: Path) -> None:
    n = args.tune_size
    corpus, queries = dataset(n, args.queries)
    truth = exact_topk(corpus, queries)
    backend = _backend("server", work / "m-sweep")
    uri = backend.start().uri
    try:
        for m in args.m_sweep:
            bench = StoreBench(args, backend, corpus, queries, truth)
            built = bench.build(uri, f"m{m}", m=m)
            measured = bench.measure(uri, f"m{m}", built["collection"], m=m, full=False)
            result["m_sweep"].append({"backend": "server", "vectors": n, "M": m,
                                      "efConstruction": args.ef_construction,
                                      "build": built["build"], **measured})
            print(f"M={m}: build {built['build']['build_s']}s, chosen ef "
                  f"{measured['chosen']['ef']} recall {measured['chosen']['recall_at_10']}",
                  flush=True)
            write_json(result, out)
    finally:
        backend.stop()


def add_run(result: dict, out: Path, run: dict) -> None:
    result["runs"].append(run)
    c = run["chosen"]
    print(f"{run['backend']:>6} {run['vectors']:>8}: build {run['build']['build_s']}s, "
          f"{run['build']['memory_bytes_per_vector']} B/vector, ef {c['ef']} recall "
          f"{c['recall_at_10']}, c1 p50 {c['p50_ms']} ms {c['qps']} QPS, c16 "
          f"{run['c16']['qps']} QPS, batch16 {run['batch16']['qps']} QPS", flush=True)
    write_json(result, out)


def write_json(result: dict, out: Path) -> None:
    (out / "search.json").write_text(json.dumps(result, indent=2) + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="reports/bench-search")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--backends", nargs="+", default=["numpy", "lite", "server"],
                   choices=["numpy", "lite", "server"])
    p.add_argument("--queries", type=int, default=500, help="query vectors (same mixture)")
    p.add_argument("--budget", type=float, default=15.0,
                   help="seconds per measurement (at least 20 queries are always run)")
    p.add_argument("--efs", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--m-sweep", type=int, nargs="*", default=[8, 16, 32])
    p.add_argument("--tune-size", type=int, default=100_000)
    p.add_argument("--profile", type=float, default=10.0,
                   help="seconds of py-spy sampling of the Lite server (0: off)")
    p.add_argument("--append", action="store_true",
                   help="keep the runs already in <out>/search.json and add these")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite the table and plot from <out>/search.json")
    p.add_argument("--quick", action="store_true",
                   help="10k vectors, 200 queries, 3 ef values, no M sweep: a few minutes")
    return p


# -- reports


def write_reports(result: dict, out: Path) -> None:
    write_json(result, out)
    (out / "search.md").write_text(markdown(result))
    plot(result, out / "search.png")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Search benchmark ({result['date']})", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, no GPU. "
             f"Vectors: {result['data']['dim']}-d unit, a Gaussian mixture around "
             f"{result['data']['centres']} centres in a {result['data']['latent']}-d latent "
             f"space; top-{K}; recall@10 against exact numpy. The rows of one size were "
             "measured one after the other in one run. Memory per vector is the backend "
             "processes' resident memory after minus before, so at 10k it is mostly fixed "
             "overhead.", "",
             "## At the chosen ef (smallest with recall@10 >= 0.95)", "",
             "| backend | vectors | build s | memory B/vector | disk B/vector | ef | recall@10 "
             "| c1 p50 ms | c1 p99 ms | c1 QPS | c16 QPS | c16 p99 ms | c16 via BatchedSearch QPS "
             "| 16 per request QPS | c1 QPS vs exact |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, run in enumerate(result["runs"]):
        # the exact reference measured in the same run: the last one listed before this row
        exact = next((r for r in reversed(result["runs"][:i + 1]) if r["backend"] == "numpy"
                      and r["vectors"] == run["vectors"]), None)
        c, b = run["chosen"], run["build"]
        ratio = f"{c['qps'] / exact['chosen']['qps']:.2f}x" if exact else "-"
        lines.append(f"| {run['backend']} | {run['vectors']:,} | {b['build_s']} | "
                     f"{b['memory_bytes_per_vector']} | {b['disk_bytes_per_vector']} | "
                     f"{c['ef'] or 'exact'} | {c['recall_at_10']} | {c['p50_ms']} | "
                     f"{c['p99_ms']} | {c['qps']} | {run['c16']['qps']} | "
                     f"{run['c16']['p99_ms']} | {run.get('c16_batched', {}).get('qps', '-')} | "
                     f"{run['batch16']['qps']} | {ratio} |")
    lines += ["", "## ef sweep (concurrency 1)", "",
              "| backend | vectors | ef | recall@10 | p50 ms | p99 ms | QPS |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        for r in run.get("sweep", []):
            lines.append(f"| {run['backend']} | {run['vectors']:,} | {r['ef']} | "
                         f"{r['recall_at_10']} | {r['p50_ms']} | {r['p99_ms']} | {r['qps']} |")
    lines += ["", "## Milvus Lite by state (p50 ms per single-vector search)", "",
              "| vectors | insert s | flush s | index s | fresh-process load s | "
              + " | ".join(STATES) + " |", "|---:|---:|---:|---:|---:|"
              + "---:|" * len(STATES)]
    for run in [r for r in result["runs"] if r["backend"] == "lite"]:
        b, s = run["build"], run["states"]
        lines.append(f"| {run['vectors']:,} | {b['insert_s']} | {b['flush_s']} | "
                     f"{b['index_s']} | {b.get('fresh_load_s', '-')} | "
                     + " | ".join(str(s.get(k, {}).get("p50_ms", "-")) for k in STATES) + " |")
    for run in [r for r in result["runs"] if r.get("profile", {}).get("top")]:
        lines += ["", f"### Where Milvus Lite spends a search ({run['vectors']:,} vectors, "
                  f"py-spy, {run['profile']['samples']} samples of the search thread)", "",
                  "| share | function |", "|---:|---|"]
        lines += [f"| {t['share']:.0%} | `{t['frame']}` |" for t in run["profile"]["top"]]
    if result["m_sweep"]:
        lines += ["", "## HNSW M (Milvus server)", "",
                  "| vectors | M | efConstruction | build s | memory B/vector | ef for 0.95 | "
                  "recall@10 | p50 ms | QPS |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["m_sweep"]:
            c = r["chosen"]
            lines.append(f"| {r['vectors']:,} | {r['M']} | {r['efConstruction']} | "
                         f"{r['build']['build_s']} | {r['build']['memory_bytes_per_vector']} | "
                         f"{c['ef']} | {c['recall_at_10']} | {c['p50_ms']} | {c['qps']} |")
    return "\n".join(lines) + "\n"


STATES = ["growing", "flushed, index building", "indexed, same process", "fresh process"]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["vectors"] for r in result["runs"]})
    fig, axes = plt.subplots(1, len(sizes) + 1, figsize=(4.2 * (len(sizes) + 1), 3.6),
                             squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=False):
        for run in {r["backend"]: r for r in result["runs"] if r["vectors"] == n}.values():
            if run.get("sweep"):
                ax.plot([r["recall_at_10"] for r in run["sweep"]],
                        [r["qps"] for r in run["sweep"]], marker="o", label=run["backend"])
            else:
                ax.scatter([1.0], [run["chosen"]["qps"]], marker="*", s=120,
                           label=f"{run['backend']} (exact)")
        ax.set_yscale("log")
        ax.set_title(f"{n:,} vectors: ef sweep, 1 client")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("QPS")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    for backend in ["numpy", "lite", "server"]:
        last = {r["vectors"]: r for r in result["runs"] if r["backend"] == backend}
        runs = [last[n] for n in sorted(last)]
        if runs:
            ax.plot([r["vectors"] for r in runs], [r["chosen"]["p50_ms"] for r in runs],
                    marker="o", label=backend)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("p50 per query at the chosen ef")
    ax.set_xlabel("vectors")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
