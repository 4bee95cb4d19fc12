"""``make bench-parts``: part matching against whole-sheet matching, on the real drawings.

    python -m benchmarks.parts --out reports/bench-parts

The 50 real 2021 grants with drawings in ``../shared`` are read once (figure labels read
by Tesseract, as ``PATENTCLIP_FIGURE_LABELS=true`` does) and indexed into Milvus Lite once
per configuration, through the ingest path (``SheetEmbedder``) and the served search
(``SearchEngine``):

* **sheets**: sheet and figure rows only (``PATENTCLIP_PART_TILES=``): a cropped query is
  matched against whole sheets (and the figures of sheets of several);
* **parts 0.5**: also tiles of half a figure's sides (9 per figure, the default);
* **parts 0.5+0.3**: also tiles of 0.3 (25 more).

Queries are generated parts: a seeded random sheet of each grant, a window of 25-50% of
the width and height of its ink (kept where it holds ink), at a random place: the
examiner's crop of a handle or a lid. The answer is its patent; the query is the sheet's
own TIFF with the crop, so every configuration holds the exact sheet the part came from.
The model is the tiny random-weight test model: what it shows is whether the stored
parts put a crop's own patent in the top 10 more often than whole sheets do, a matter of
geometry (the same pixels, cut the same way), not what a trained PatentCLIP makes of a
photo of a part. Reported: recall@1/@10 and MRR with 95% Wilson intervals, the paired
wins and losses against "sheets" (two-sided sign test), rows, vector bytes, the Lite
database's size on disk, indexing and query time. Writes ``parts.json``, ``parts.md``,
``parts.png`` (the machine named).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from harness import REPO
from harness.bench import write_report
from harness.gate_simulation import wilson
from harness.machine import machine, machine_line
from patentclip.drawings.parts import Tiling, ink_mask, ink_region, ink_share
from patentclip.drawings.preprocess import CropBox, DrawingPreprocessor
from patentclip.grants.model import Region
from patentclip.grants.reader import GrantReader
from patentclip.ingest.figures import FigureLabeller
from patentclip.ingest.sheets import SheetEmbedder, SheetJob
from patentclip.model.encoder import Encoder, create_tiny_model
from patentclip.search.engine import SearchEngine, SearchRequest
from patentclip.search.query import Query
from patentclip.store import PatentStore

SHARED = REPO.parent / "shared"
CONFIGS = {"sheets": None, "parts 0.5": Tiling((0.5,)), "parts 0.5+0.3": Tiling((0.5, 0.3))}
QUERIES_PER_GRANT = 4


def generated_parts(documents, seed: int) -> list[dict]:
    """Seeded crops of the grants' sheets, each with ink in it: the queries."""
    rng, decoder, queries = random.Random(seed), DrawingPreprocessor(224), []
    for document in documents:
        sheets = [s for s in document.grant.sheets
                  if not s.front_page and s.file_name in document.images]
        for _ in range(QUERIES_PER_GRANT if sheets else 0):
            sheet = rng.choice(sheets)
            data = document.images[sheet.file_name]
            ink = ink_mask(decoder.decode(data))
            area = ink_region(ink)
            for _ in range(50):
                width = rng.uniform(0.25, 0.5) * (area.right - area.left)
                height = rng.uniform(0.25, 0.5) * (area.bottom - area.top)
                left = area.left + rng.uniform(0, area.right - area.left - width)
                top = area.top + rng.uniform(0, area.bottom - area.top - height)
                region = Region(left, top, left + width, top + height)
                if ink_share(ink, region) >= 0.01:
                    break
            queries.append({"patent": document.grant.patent_number, "sheet": sheet.number,
                            "data": data, "crop": region.as_tuple()})
    return queries


def index(documents, encoder: Encoder, store: PatentStore, tiling: Tiling | None) -> dict:
    """Index every sheet of ``documents`` with ``tiling``; the rows and the time taken."""
    info = encoder.info
    collection = store.ensure_collection(info.model_version, info.dim, info.spec)
    embedder = SheetEmbedder(encoder, tiling=tiling)
    jobs = [SheetJob(d.grant, s, "", d.images[s.file_name]) for d in documents
            for s in d.grant.sheets if s.file_name in d.images]
    started = time.perf_counter()
    for i in tqdm(range(0, len(jobs), 64), desc="index", unit="batch", leave=False):
        store.upsert(collection, embedder.embed(embedder.prepare(jobs[i:i + 64])).rows)
    store.flush(collection)
    store.wait_indexed(collection)
    seconds = time.perf_counter() - started
    embedder.close()
    rows = {m: store.count(collection, m) for m in ("drawing", "caption", "figure", "part")}
    return {"collection": collection, "rows": rows, "sheets": len(jobs),
            "index_seconds": seconds, "vector_bytes": sum(rows.values()) * info.dim * 4}


def run(queries: list[dict], engine: SearchEngine) -> list[dict]:
    """Each query's rank of its own patent (None: not in the top 10) and time."""
    answers = []
    for q in tqdm(queries, desc="queries", unit="query", leave=False):
        started = time.perf_counter()
        result = engine.search(Query(image=q["data"], image_name="part.tif",
                                     crop=CropBox(*q["crop"])), SearchRequest(top_k=10))
        seconds = time.perf_counter() - started
        ranks = [i for i, h in enumerate(result.hits, 1) if h.patent == q["patent"]]
        answers.append({"rank": ranks[0] if ranks else None, "seconds": seconds,
                        "matched": result.hits[0].modality if result.hits else ""})
    return answers


def summary(answers: list[dict], baseline: list[dict] | None) -> dict:
    n = len(answers)
    found = {k: sum(1 for a in answers if a["rank"] and a["rank"] <= k) for k in (1, 10)}
    times = sorted(a["seconds"] for a in answers)
    result = {"queries": n, "mrr@10": sum(1 / a["rank"] for a in answers if a["rank"]) / n,
              "query_ms_median": 1000 * statistics.median(times),
              "query_ms_p90": 1000 * times[int(0.9 * (n - 1))]}
    for k, hits in found.items():
        result[f"recall@{k}"], result[f"recall@{k}_interval"] = hits / n, wilson(hits, n)
    if baseline is not None:
        wins = sum(1 for a, b in zip(answers, baseline, strict=True) if a["rank"] and not b["rank"])
        losses = sum(1 for a, b in zip(answers, baseline, strict=True)
                     if b["rank"] and not a["rank"])
        result.update(wins=wins, losses=losses, sign_test_p=sign_test(wins, losses))
    return result


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test of wins against losses (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-parts")
    p.add_argument("--sources", type=Path, nargs="+",
                   default=[SHARED / "uspto-sample", SHARED / "uspto-sample-extra"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    labeller = FigureLabeller()
    documents = [labeller.label(d)[0] for source in args.sources
                 for d in tqdm(list(GrantReader().read(source)), desc="labels", unit="grant")]
    queries = generated_parts(documents, args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-parts-"))
    encoder = Encoder.load(f"local-dir:{create_tiny_model(work / 'model', seed=0)}",
                           batch_size=64)
    configs, baseline = {}, None
    for name, tiling in CONFIGS.items():
        db = work / f"{name.replace(' ', '-')}.db"
        with PatentStore(str(db)) as store:
            built = index(documents, encoder, store, tiling)
            answers = run(queries, SearchEngine(encoder, store, built["collection"]))
        built["disk_bytes"] = sum(f.stat().st_size for f in db.rglob("*") if f.is_file())
        configs[name] = {**built, **summary(answers, baseline)}
        baseline = baseline or answers
    result = {"machine": machine(), "grants": len(documents), "queries": len(queries),
              "seed": args.seed, "configs": configs}
    write_report(args.out, "parts", result, table, plot)
    return 0


def table(result: dict) -> str:
    lines = [f"Measured on {machine_line()}; tiny random-weight model, Milvus Lite; "
             f"{result['queries']} generated parts of {result['grants']} real grants.", "",
             "| configuration | recall@1 [95% CI] | recall@10 [95% CI] | MRR@10 | "
             "wins / losses vs sheets (p) | rows | vectors MiB | on disk MiB | "
             "index s | query ms (median, p90) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in result["configs"].items():
        r1, r10 = c["recall@1_interval"], c["recall@10_interval"]
        paired = (f"{c['wins']} / {c['losses']} ({c['sign_test_p']:.2g})" if "wins" in c
                  else "-")
        lines.append(
            f"| {name} | {c['recall@1']:.3f} [{r1[0]:.3f}, {r1[1]:.3f}] | "
            f"{c['recall@10']:.3f} [{r10[0]:.3f}, {r10[1]:.3f}] | {c['mrr@10']:.3f} | "
            f"{paired} | {sum(c['rows'].values())} | {c['vector_bytes'] / 2**20:.2f} | "
            f"{c['disk_bytes'] / 2**20:.1f} | {c['index_seconds']:.1f} | "
            f"{c['query_ms_median']:.0f}, {c['query_ms_p90']:.0f} |")
    lines += ["", "Rows by kind: " + "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in c["rows"].items())
        for name, c in result["configs"].items())]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["configs"])
    configs = [result["configs"][n] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    values = [c["recall@10"] for c in configs]
    errors = [[v - c["recall@10_interval"][0] for v, c in zip(values, configs, strict=True)],
              [c["recall@10_interval"][1] - v for v, c in zip(values, configs, strict=True)]]
    left.bar(names, values, yerr=errors, capsize=4)
    left.set_ylim(0, 1)
    left.set_ylabel(f"recall@10 of a crop's patent ({result['queries']} crops)")
    right.bar(names, [sum(c["rows"].values()) for c in configs], color="gray")
    right.set_ylabel("rows in the collection")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
