"""``make bench-query-modes``: what the lexical (BM25) leg and photo mode do, measured.

    python -m benchmarks.query_modes --out reports/bench-query-modes

1. **Noun share.** On two corpora indexed with the random-weight tiny model (the demo's:
   generated grants; and the 50 real shared 2021 grants), each distinct head noun of the
   titles ("Dispenser bottle" -> "bottle") is a text query. Reported per leg set: the share
   of queries whose top 10 patents hold one whose title contains the noun, dense only
   (drawings and captions fused, the search before this leg), hybrid (dense and words
   fused) and words alone, with 95% bootstrap intervals over the queries.
2. **Caption -> patent on IMPACT's 2021 test set.** The 5,101 real patents of
   ``../shared/impact-metadata/test2021.csv`` indexed by their titles alone (the set has no
   claims or figure descriptions), each patent's LLaVA caption a query, Milvus Lite's BM25
   ranking the 5,101 titles: R@1/5/10 and MRR of the patent itself, with intervals, beside
   chance. No model is involved: the lexical leg alone.
3. **Photo mode.** Each real shared grant's first drawing sheet made into a generated photo
   (``harness/photos.py``): how much of the line drawing photo mode extracts lies on the
   drawing's lines (precision) and covers them (recall), within 4 of 768 pixels; and the
   photo searched among the 50 grants' drawings with the tiny model, in line mode and in
   photo mode: R@10 of its own patent, with intervals.

Writes ``modes.json``, ``modes.md`` and ``modes.png``; the machine is named in each.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness import REPO
from harness.bench import write_report
from harness.machine import machine, machine_line
from harness.services import index_samples, make_bundle
from patentclip.model.encoder import Encoder, create_tiny_model
from patentclip.search.engine import SearchEngine, SearchRequest
from patentclip.search.query import Query
from patentclip.store import PatentStore, SheetRow
from trainer.retrieval import mean_intervals

SHARED = REPO.parent / "shared"
LEG_SETS = {"dense": "both", "hybrid": "all", "words": "words"}
_CUT = re.compile(r"\b(with|for|including|having|or|and|of)\b|[,;(]")


def head_noun(title: str) -> str:
    """The last word before the first qualifier: "Dispenser bottle" -> "bottle", "Display
    screen or portion thereof with ..." -> "screen", "Women's garment top" -> "top"."""
    words = re.findall(r"[a-z]+", _CUT.split(title.lower())[0])
    return words[-1] if words else ""


def noun_share(engine: SearchEngine, titles: dict[str, str]) -> dict:
    """Per leg set: per-query hits (1 when the top 10 holds a patent whose title has the
    noun), their mean and interval."""
    nouns = sorted({n for n in map(head_noun, titles.values()) if len(n) > 2})
    hits = {name: [] for name in LEG_SETS}
    for noun in tqdm(nouns, desc="noun queries", unit="query", leave=False):
        for name, against in LEG_SETS.items():
            top = engine.search(Query(text=noun), SearchRequest(top_k=10, against=against))
            hits[name].append(float(any(re.search(rf"\b{noun}\b", h.title.lower())
                                        for h in top.hits)))
    arrays = {name: np.asarray(v) for name, v in hits.items()}
    intervals = mean_intervals(arrays)
    return {"queries": len(nouns), "patents": len(titles),
            **{name: {"share": float(a.mean()), "interval": intervals[name]}
               for name, a in arrays.items()}}


def corpus_engine(encoder: Encoder, root: Path, name: str, *sources: Path):
    (root / name).mkdir(parents=True, exist_ok=True)
    store, _, documents, collection = index_samples(encoder, root / name, name, *sources)
    titles = {p: d.grant.title for p, d in documents.items()}
    return SearchEngine(encoder, store, collection), titles, store


def impact_lexical(csv_path: Path, root: Path, limit: int | None) -> dict:
    """Caption -> patent by BM25 over the titles of IMPACT's test set."""
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["title"].strip() and r["caption"].strip()]
    rows = rows[:limit] if limit else rows
    store = PatentStore(str(root / "impact.db"), prefix="impact")
    collection = store.ensure_collection("bm25-only", 2)
    unit = [1.0, 0.0]
    for start in range(0, len(rows), 1000):
        store.upsert(collection, [SheetRow(patent=r["id"], sheet=0, modality="caption",
                                           vector=unit, title=r["title"], text=r["title"])
                                  for r in rows[start:start + 1000]])
    store.flush(collection)
    ranks = []
    batch = 50
    for start in tqdm(range(0, len(rows), batch), desc="caption queries", unit="batch",
                      leave=False):
        part = rows[start:start + batch]
        found = store.search_words(collection, [r["caption"] for r in part], 100)
        for row, hits in zip(part, found, strict=True):
            order = [h.patent for h in hits]
            ranks.append(order.index(row["id"]) + 1 if row["id"] in order else 0)
    store.close()
    ranks = np.asarray(ranks)
    per = {"R@1": (ranks == 1).astype(float), "R@5": ((ranks >= 1) & (ranks <= 5)).astype(float),
           "R@10": ((ranks >= 1) & (ranks <= 10)).astype(float),
           "MRR@100": np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)}
    intervals = mean_intervals(per)
    return {"patents": len(rows), "queries": len(rows),
            "chance_R@10": 10 / len(rows),
            **{k: {"value": float(v.mean()), "interval": intervals[k]} for k, v in per.items()}}


def photo_mode(engine: SearchEngine, sources) -> dict:
    """Edge precision and recall of photo mode on generated photos, and R@10 of the photo's
    patent in line and in photo mode."""
    from harness.photos import drawing_lines, photo_of, share_near
    from patentclip.drawings.photo import photo_to_line_drawing
    from patentclip.drawings.preprocess import DrawingPreprocessor

    decoder = DrawingPreprocessor(224)
    sheets = sorted(p for source in sources for p in Path(source).rglob("*D00001.TIF"))
    per: dict[str, list[float]] = {"precision": [], "recall": [], "line R@10": [],
                                   "photo R@10": []}
    for seed, path in enumerate(tqdm(sheets, desc="generated photos", unit="photo",
                                     leave=False)):
        drawing = path.read_bytes()
        photo = photo_of(drawing, seed)
        lines = drawing_lines(drawing)
        extracted = np.asarray(photo_to_line_drawing(decoder.decode(photo))) < 128
        per["precision"].append(share_near(extracted, lines))
        per["recall"].append(share_near(lines, extracted))
        patent = "D" + path.name[3:10]
        for mode in ("line", "photo"):
            top = engine.search(Query(image=photo, mode=mode), SearchRequest(top_k=10))
            per[f"{mode} R@10"].append(float(patent in [h.patent for h in top.hits]))
    arrays = {k: np.asarray(v) for k, v in per.items()}
    intervals = mean_intervals(arrays)
    return {"photos": len(sheets), **{k: {"value": float(a.mean()), "interval": intervals[k]}
                                      for k, a in arrays.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-query-modes")
    p.add_argument("--impact", type=Path, default=SHARED / "impact-metadata" / "test2021.csv")
    p.add_argument("--limit", type=int, default=None, help="IMPACT rows (default: all)")
    p.add_argument("--demo-patents", type=int, default=100)
    args = p.parse_args(argv)
    results: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench-query-modes-") as tmp:
        root = Path(tmp)
        encoder = Encoder.load(f"local-dir:{create_tiny_model(root / 'tiny', seed=0)}")
        bundle = make_bundle(root / "demo-bundle", args.demo_patents, seed=0)
        for name, sources in (("demo", (bundle,)),
                              ("shared", (SHARED / "uspto-sample", SHARED / "uspto-sample-extra"))):
            engine, titles, store = corpus_engine(encoder, root, name, *sources)
            results[name] = noun_share(engine, titles)
            if name == "shared":
                results["photo"] = photo_mode(engine, sources)
            store.close()
        results["impact"] = impact_lexical(args.impact, root, args.limit)
    write_report(args.out, "modes", results, table, plot)
    return 0


def _cell(entry: dict, key: str) -> str:
    low, high = entry["interval"]
    return f"{entry[key]:.3f} [{low:.3f}, {high:.3f}]"


def table(results: dict) -> str:
    lines = [f"Measured on {machine_line()}.", "",
             "| corpus | noun queries | patents | dense only | hybrid (dense + words) | "
             "words alone |", "|---|---|---|---|---|---|"]
    for name, label in (("demo", "demo (generated grants)"), ("shared", "50 real 2021 grants")):
        r = results[name]
        lines.append(f"| {label} | {r['queries']} | {r['patents']} | "
                     + " | ".join(_cell(r[leg], "share") for leg in LEG_SETS) + " |")
    impact = results["impact"]
    lines += ["", f"IMPACT test2021, caption -> patent, BM25 over {impact['patents']:,} titles "
              f"(chance R@10 {impact['chance_R@10']:.4f}):", "",
              "| R@1 | R@5 | R@10 | MRR@100 |", "|---|---|---|---|",
              "| " + " | ".join(_cell(impact[k], "value") for k in ("R@1", "R@5", "R@10",
                                                                    "MRR@100")) + " |", ""]
    photo = results["photo"]
    lines += [f"Photo mode, {photo['photos']} generated photos of the real grants' first "
              "sheets (the tiny random-weight model for the search):", "",
              "| edge precision | edge recall | line mode R@10 | photo mode R@10 |",
              "|---|---|---|---|",
              "| " + " | ".join(_cell(photo[k], "value") for k in (
                  "precision", "recall", "line R@10", "photo R@10")) + " |", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for offset, name in enumerate(("demo", "shared")):
        r = results[name]
        values = [r[leg]["share"] for leg in LEG_SETS]
        errors = np.abs(np.asarray([r[leg]["interval"] for leg in LEG_SETS]).T - values)
        axes[0].bar(np.arange(3) + offset * 0.4, values, 0.4, yerr=errors, capsize=3,
                    label=name)
    axes[0].set_xticks(np.arange(3) + 0.2, list(LEG_SETS))
    axes[0].set_ylabel("share of noun queries with a title match in the top 10")
    axes[0].legend()
    impact, photo = results["impact"], results["photo"]
    _bars(axes[1], impact, ["R@1", "R@5", "R@10", "MRR@100"],
          f"IMPACT 2021: caption -> patent, BM25 ({impact['patents']:,} titles)")
    _bars(axes[2], photo, ["precision", "recall", "line R@10", "photo R@10"],
          f"photo mode, {photo['photos']} generated photos")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _bars(axis, entries: dict, keys: list[str], title: str) -> None:
    """One bar per key, its 95% interval as the error bar."""
    values = [entries[k]["value"] for k in keys]
    errors = np.abs(np.asarray([entries[k]["interval"] for k in keys]).T - values)
    axis.bar(keys, values, yerr=errors, capsize=3)
    axis.set_title(title)


if __name__ == "__main__":
    sys.exit(main())
