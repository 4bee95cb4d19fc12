"""``make bench`` (last step): project the full 2007-2022 corpus from the measured rates.

Reads the benchmark results (``reports/bench-encoder/encoder.json``,
``reports/bench-ingest/ingest.json``, ``reports/bench-search/search.json``) and writes
``<out>/scale.json`` and ``scale.md``: Milvus memory and disk per index type, reindex time on
this CPU, and the embedder replicas and Kafka partitions for a reindex under a time target.

Measured inputs are named as such; everything else is a formula over them, stated in the
report. Nothing here was measured on a GPU unless ``--gpu-images-per-s`` is given.

    python -m benchmarks.scale_projection --reports reports --out reports/scale
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path

SHEETS = 3_600_000  # drawing images, 2007-2022 design patents (about 500k patents)
ROWS_PER_SHEET = 2  # the collection holds a drawing vector and a caption vector per sheet
# Scalar fields per row, bytes: id 20, patent 8, modality 7, view 8, locarno 6, sheet and
# grant_date 16, title 22 and caption 346 (means over the 5,101 IMPACT 2021 patents),
# figures 40, image_uri 60.
SCALAR_BYTES = 533


def index_bytes_per_vector(dim: int, m: int = 16) -> dict[str, float]:
    """In-memory bytes per vector of each Milvus index type (vectors + index structure).

    HNSW: full vectors plus about 2*M neighbour ids (4 B) on level 0 and ~1/(M-1) of that
    again on upper levels. *_SQ8: one byte per dimension. IVF_PQ: 64 sub-quantizers of 8 bits.
    IVF lists also keep an 8-byte id per vector. DISKANN keeps only PQ codes in memory.
    """
    graph = 2 * m * 4 * (1 + 1 / (m - 1))
    return {"FLAT": 4 * dim, "HNSW": 4 * dim + graph, "HNSW_SQ8": dim + graph,
            "IVF_FLAT": 4 * dim + 8, "IVF_SQ8": dim + 8, "IVF_PQ (m=64)": 64 + 8,
            "DISKANN (memory; full vectors on SSD)": 64 + 8}


def disk_bytes_per_vector(dim: int, m: int = 16) -> dict[str, float]:
    """Object-store bytes per vector: the raw binlog (4 B per dimension) plus the index."""
    mem = index_bytes_per_vector(dim, m)
    return {k: 4 * dim + (v if not k.startswith("DISKANN") else 4 * dim + 2 * m * 4)
            for k, v in mem.items()}


def measured(reports: Path) -> dict:
    """The rates this projection needs, from the benchmark JSON files."""
    enc = json.loads((reports / "bench-encoder" / "encoder.json").read_text())
    # ViT-B-32 from a full run; a quick run measured only the tiny model (smoke numbers)
    vit = next((m for m in enc["models"] if m["spec"].startswith("ViT-B-32")),
               enc["models"][-1])
    rates = {r["backend"]: max(r["images_per_s"].values()) for r in vit["rows"]}
    texts = {r["backend"]: max(r["texts_per_s"].values()) for r in vit["rows"]}
    ingest = json.loads((reports / "bench-ingest" / "ingest.json").read_text())
    pipeline = max(r["pipeline"]["sheets_per_s"] for r in ingest["rounds"])
    search = json.loads((reports / "bench-search" / "search.json").read_text())
    server = max((r for r in search["runs"] if r["backend"] == "server"),
                 key=lambda r: r["vectors"])
    build = server["build"]
    return {
        "machine": enc["machine"], "encoder_model": vit["spec"],
        "encoder_images_per_s": rates, "encoder_texts_per_s": texts,
        "embedder_sheets_per_s_eager": pipeline,
        "server_vectors": server["vectors"],
        "server_insert_vectors_per_s": round(server["vectors"] / build["insert_s"], 1),
        "server_index_vectors_per_s": round(server["vectors"] / max(build["index_s"]
                                                                    + build["flush_s"], 1e-9),
                                            1),
        "server_memory_bytes_per_vector": build["memory_bytes_per_vector"],
        "server_disk_bytes_per_vector": build["disk_bytes_per_vector"],
    }


def project(m: dict, hours: float, gpu_images_per_s: float | None) -> dict:
    rows = SHEETS * ROWS_PER_SHEET
    memory = {dim: {k: rows * (v + SCALAR_BYTES) for k, v in index_bytes_per_vector(dim).items()}
              for dim in (512, 768)}
    disk = {dim: {k: rows * (v + SCALAR_BYTES) for k, v in disk_bytes_per_vector(dim).items()}
            for dim in (512, 768)}
    eager = m["embedder_sheets_per_s_eager"]
    # int8 speeds up the encoder, which is ~95% of an embedder's time (bench-ingest stages)
    int8 = eager * m["encoder_images_per_s"]["int8"] / m["encoder_images_per_s"]["eager"]
    needed = SHEETS / (hours * 3600)
    replicas = {"cpu eager (2 cores each)": math.ceil(needed / eager),
                "cpu int8 (2 cores each)": math.ceil(needed / int8)}
    if gpu_images_per_s:
        replicas["gpu (measured rate)"] = math.ceil(needed / gpu_images_per_s)
    return {
        "sheets": SHEETS, "rows": rows, "scalar_bytes_per_row": SCALAR_BYTES,
        "memory_bytes": memory, "disk_bytes": disk,
        "reindex_hours_one_embedder": {"cpu eager": SHEETS / eager / 3600,
                                       "cpu int8": SHEETS / int8 / 3600,
                                       "gpu": (SHEETS / gpu_images_per_s / 3600
                                               if gpu_images_per_s else None)},
        "target_hours": hours, "needed_sheets_per_s": needed, "replicas": replicas,
        "partitions": {k: 2 ** math.ceil(math.log2(v)) for k, v in replicas.items()},
        "milvus_insert_hours_one_client": rows / m["server_insert_vectors_per_s"] / 3600,
        "milvus_index_hours_one_node": rows / m["server_index_vectors_per_s"] / 3600,
        "index_nodes_for_target": math.ceil(rows / m["server_index_vectors_per_s"]
                                            / (hours * 3600)),
    }


def markdown(m: dict, p: dict) -> str:
    gib = 2 ** 30
    mc = m["machine"]
    lines = [f"# Full-corpus projection ({date.today().isoformat()})", "",
             f"Measured on {mc['cores']} cores ({mc['cpu']}), torch {mc['torch']}; "
             f"{p['sheets']:,} drawing sheets = {p['rows']:,} rows (a drawing and a caption "
             f"vector per sheet), {p['scalar_bytes_per_row']} B of scalar fields per row.", "",
             "## Milvus memory and disk (formula per index type; HNSW checked against the "
             "measured server)", "",
             "| index type | memory GiB (512-d, ViT-B) | memory GiB (768-d, ViT-L) | "
             "disk GiB (512-d) | disk GiB (768-d) |", "|---|---:|---:|---:|---:|"]
    for k in p["memory_bytes"][512]:
        lines.append(f"| {k} | {p['memory_bytes'][512][k] / gib:.1f} | "
                     f"{p['memory_bytes'][768][k] / gib:.1f} | {p['disk_bytes'][512][k] / gib:.1f}"
                     f" | {p['disk_bytes'][768][k] / gib:.1f} |")
    hnsw = index_bytes_per_vector(512)["HNSW"]
    lines += ["", f"HNSW formula at 512-d: {hnsw:.0f} B/vector; the Milvus server measured "
              f"{m['server_memory_bytes_per_vector']} B/vector resident and "
              f"{m['server_disk_bytes_per_vector']} B/vector on disk at "
              f"{m['server_vectors']:,} vectors (no scalar payload; includes the server's "
              "own growth, segment copies and allocator slack).", "",
              "## Reindex time and replicas", "",
              "| measured rate | value |", "|---|---:|"]
    for k, v in m["encoder_images_per_s"].items():
        lines.append(f"| {m['encoder_model']} encoder, {k}, images/s (best batch) | {v:.1f} |")
    lines += [f"| embedder pipeline, eager, sheets/s (image + caption, decode, upsert) | "
              f"{m['embedder_sheets_per_s_eager']:.1f} |",
              f"| Milvus server insert, vectors/s (one client) | "
              f"{m['server_insert_vectors_per_s']:,.0f} |",
              f"| Milvus server flush + HNSW build, vectors/s | "
              f"{m['server_index_vectors_per_s']:,.0f} |", "",
              "| projection | value |", "|---|---:|"]
    r = p["reindex_hours_one_embedder"]
    gpu = f"{r['gpu']:.1f} h" if r["gpu"] else "not measured (no GPU was lent)"
    lines += [f"| reindex, one 2-core embedder, eager | {r['cpu eager']:,.0f} h |",
              f"| reindex, one 2-core embedder, int8 | {r['cpu int8']:,.0f} h |",
              f"| reindex on one GPU | {gpu} |",
              f"| sheets/s for {p['target_hours']:g} h | {p['needed_sheets_per_s']:.0f} |"]
    for k, v in p["replicas"].items():
        lines.append(f"| embedder replicas, {k} | {v} (Kafka partitions >= "
                     f"{p['partitions'][k]}) |")
    lines += [f"| Milvus insert of all rows, one client | "
              f"{p['milvus_insert_hours_one_client']:.2f} h |",
              f"| HNSW build of all rows, one 2-core index node | "
              f"{p['milvus_index_hours_one_node']:.1f} h |",
              f"| index nodes for {p['target_hours']:g} h | {p['index_nodes_for_target']} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", default="reports")
    ap.add_argument("--out", default="reports/scale")
    ap.add_argument("--hours", type=float, default=2.0, help="reindex time target")
    ap.add_argument("--gpu-images-per-s", type=float, default=None,
                    help="a GPU embedder's measured sheets/s, if one was measured")
    args = ap.parse_args(argv)
    m = measured(Path(args.reports))
    p = project(m, args.hours, args.gpu_images_per_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({"measured": m, "projection": p}, indent=2)
                                    + "\n")
    (out / "scale.md").write_text(markdown(m, p))
    print(f"wrote {out}/scale.json, scale.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
