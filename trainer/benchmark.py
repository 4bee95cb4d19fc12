"""``patentclip benchmark``: one model on one frozen evaluation set, every protocol.

* standard open_clip retrieval (N x N, pair i = sheet i and its caption): R@1/5/10 and
  mean/median rank, text -> image and image -> text;
* patent-aware retrieval: any sheet of the right patent counts;
* drawing -> drawing prior-art retrieval: mAP and P@1, the other sheets of the same patent
  being relevant;
* R@10 for the head, middle and tail thirds of the classes by training frequency, and
  per class; zero-shot Locarno classification accuracy from class-name prompts.

Writes ``benchmark.json``, ``benchmark.md`` and ``recall_by_class.png`` to the output folder.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patentclip.drawings import preprocess
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.grants.model import LOCARNO_MAIN_CLASSES
from trainer import served
from trainer.cited import Corpus, run_cited
from trainer.data import CAPTION_SOURCES, EvalItem, EvalSet
from trainer.gate import PRIMARY_METRIC  # noqa: F401 (the gate owns it; read from here too)
from trainer.retrieval import (
    KS,
    caption_queries,
    chance_recall,
    clip_retrieval_metrics,
    first_relevant_ranks,
    frequency_terciles,
    mean_intervals,
    prior_art_map,
    rank_summary,
    recall_by_frequency_tercile,
    shared_caption_share,
)
from trainer.served import PER_QUERY_CUTOFF
from trainer.sheets import drawing_inputs

if TYPE_CHECKING:  # the CLI reads this module's constants without loading torch
    from patentclip.model.encoder import Encoder

logger = logging.getLogger(__name__)

# The benchmark's protocol (queries, ranking, per_query) and the drawings' preprocessing, as
# one string stored with every result: results are stored and paired by set *and* protocol,
# so a change to either is benchmarked again, never paired with old results. Bump
# BENCHMARK_VERSION with any change to what a result means.
BENCHMARK_VERSION = 2  # 2: the served protocol (patents, fused text, distractors)
ZERO_SHOT_PROMPT = "a patent drawing of {}"
# PatentCLIP's published results (5k image-caption validation set, a different set from
# ours): shown beside ours for orientation, not as a comparable number.
PUBLISHED = {"PatentCLIP ViT-L-14 (published)": (0.18, 0.42, 0.53, 0.18, 0.39, 0.50),
             "PatentCLIP RN50 (published)": (0.09, 0.25, 0.34, None, None, None)}


@dataclass(frozen=True)
class Protocol:
    """How results are made, beyond the set: the encoder backend the query service runs
    (``PATENTCLIP_ENCODER_BACKEND``) and the fixed distractor sheets the served gallery
    adds to each set. Its ``name`` is stored with every result; the gate pairs only one."""

    backend: str = "eager"
    distractors: EvalSet | None = None
    reference: bool = False  # open_clip's reference preprocessing (Encoder.reference_pixels)

    @property
    def name(self) -> str:
        gallery = self.distractors.sha256[:12] if self.distractors else "none"
        reference = "-reference" if self.reference else ""
        return f"{protocol()}{reference}-{self.backend}-distractors-{gallery}"


@dataclass
class DistractorVectors:
    """The distractors' vectors, encoded once per model (every pooled week reuses them)."""

    items: tuple[EvalItem, ...] = ()
    drawings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    captions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def encode_distractors(encoder: Encoder, distractors: EvalSet | None,
                       images: LocalImageStore) -> DistractorVectors:
    if distractors is None or not distractors.items:
        return DistractorVectors()
    items = distractors.items
    return DistractorVectors(items, encoder.encode_pixels(drawing_inputs(encoder, items, images)),
                             encoder.encode_texts([i.caption for i in items]))


def run_benchmark(encoder: Encoder, eval_set: EvalSet, images: LocalImageStore,
                  out_dir: str | Path | None = None, how: Protocol = Protocol(),
                  gallery: DistractorVectors | None = None, corpus: Corpus | None = None
                  ) -> dict:
    """Encode the set's drawings and captions with ``encoder``; return (and write) results.
    ``how`` names the backend the encoder was loaded with and the distractors; ``gallery``
    is their vectors under this encoder (encoded here when not given). ``corpus``: also the
    examiner-cited prior-art protocol (trainer/cited.py), the set's grants asking it."""
    items = eval_set.items
    image_vectors = encoder.encode_pixels(
        drawing_inputs(encoder, items, images, reference=how.reference))
    text_vectors = encoder.encode_texts([i.caption for i in items])
    results = benchmark_vectors(image_vectors, text_vectors, items, eval_set.class_counts,
                                zero_shot_vectors(encoder, eval_set))
    gallery = gallery if gallery is not None else \
        encode_distractors(encoder, how.distractors, images)
    queries, patents = served_text_queries(items)
    results.update(served_results(image_vectors, text_vectors, encoder.encode_texts(queries),
                                  queries, patents, items, eval_set.class_counts, gallery))
    if corpus is not None:
        results.update(run_cited(encoder, corpus, {i.patent for i in items}))
    results.update({"model_version": encoder.model_version, "model_spec": encoder.info.spec,
                    "eval_set": eval_set.name, "eval_set_sha256": eval_set.sha256,
                    "protocol": how.name, "backend": how.backend,
                    "distractor_set": how.distractors.name if how.distractors else None})
    if out_dir is not None:
        write_reports(results, Path(out_dir))
    return results


def protocol() -> str:
    """The benchmark's and the preprocessing's versions: ``bench<N>-pre<M>``
    (:class:`Protocol` adds the backend and the distractors)."""
    return f"bench{BENCHMARK_VERSION}-pre{preprocess.PREPROCESS_VERSION}"


def served_text_queries(items: Sequence[EvalItem]) -> tuple[list[str], list[str]]:
    """One text query per patent: its title, lower case, as an examiner types it; the
    patent's first caption where the set was frozen before titles were kept."""
    queries: dict[str, str] = {}
    for item in items:
        queries.setdefault(item.patent, (item.title or item.caption).lower())
    return list(queries.values()), list(queries)


def served_results(image_vectors: np.ndarray, caption_vectors: np.ndarray,
                   query_vectors: np.ndarray, query_texts: Sequence[str],
                   query_patents: Sequence[str], items: Sequence[EvalItem],
                   class_counts: dict[str, int], gallery: DistractorVectors) -> dict:
    """The served protocol (:mod:`trainer.served`): the set plus the distractors, patents
    ranked as the service ranks them; ``per_query`` (text, the gate's) and
    ``per_query_drawing`` (drawing -> patent, the non-inferiority guard's)."""
    every = [*items, *gallery.items]
    drawings = np.vstack([image_vectors, gallery.drawings]) if gallery.items else image_vectors
    captions = np.vstack([caption_vectors, gallery.captions]) if gallery.items \
        else caption_vectors
    whole = served.Gallery([i.patent for i in every], drawings, captions)
    text = served.text_ranks(whole, query_vectors, query_patents)
    sheets = [i for i, item in enumerate(every) if not item.front_page]
    inner = served.Gallery([every[i].patent for i in sheets], drawings[sheets],
                           captions[sheets])
    counts = Counter(inner.ids.tolist())
    queries = [j for j, i in enumerate(sheets) if i < len(items) and counts[inner.ids[j]] > 1]
    drawing = served.drawing_ranks(inner, queries)
    terciles = frequency_terciles({**{i.label: 0 for i in items}, **class_counts})
    label = {i.patent: i.label for i in items}
    titled = all(i.title for i in items)

    def record(query: str, patent: str, rank: int | None) -> dict:
        return {"query": query, "patent": patent, "locarno": label[patent],
                "tercile": terciles.get(label[patent], "tail"),
                "relevant_rank": served.capped(rank)}

    summary = {"gallery_sheets": len(every), "distractor_sheets": len(gallery.items),
               "patents": len(whole.names), "fused_depth": served.SERVED_DEPTH,
               "text_queries": len(text), "text_query_source": "titles" if titled else "captions",
               "text_mrr": served.reciprocal_rank(text), "drawing_queries": len(drawing),
               "drawing_mrr": served.reciprocal_rank(drawing)}
    for k in KS:
        summary[f"text_R@{k}"] = served.recall_at(text, k)
        summary[f"drawing_R@{k}"] = served.recall_at(drawing, k)
    drawn = [every[sheets[j]] for j in queries]
    return {"served": summary,
            "per_query": [record(q, p, r) for q, p, r in zip(query_texts, query_patents, text,
                                                            strict=True)],
            "per_query_drawing": [record(f"sheet {i.sheet}", i.patent, r)
                                  for i, r in zip(drawn, drawing, strict=True)]}


def benchmark_vectors(image_vectors: np.ndarray, text_vectors: np.ndarray,
                      items: Sequence[EvalItem], class_counts: dict[str, int],
                      class_prompts: tuple[list[str], np.ndarray] | None = None) -> dict:
    """Every protocol on unit vectors (pure: no model, no I/O).

    The patent-aware text -> image protocol (the gate's) asks each distinct caption of a
    patent once (:func:`caption_queries`) and keeps every query's outcome in ``per_query``,
    so two models can be compared query by query. Drawing -> drawing leaves the front page out: it
    repeats one of the patent's figures at another scale and would be found trivially.
    """
    patents = [i.patent for i in items]
    labels = [i.label for i in items]
    image_text = image_vectors @ text_vectors.T
    standard_ranks = first_relevant_ranks(image_text.T, np.eye(len(items), dtype=bool))
    captions = [i.caption for i in items]
    first = caption_queries(captions, patents)
    same = np.asarray(patents)[:, None] == np.asarray(patents)[None, :]
    relevant = same[first]
    aware_ranks = first_relevant_ranks(text_vectors[first] @ image_vectors.T, relevant)
    query_labels = [labels[i] for i in first]
    counts = {**{c: 0 for c in set(labels)}, **class_counts}
    results = {
        "items": len(items), "patents": len(set(patents)), "classes": len(set(labels)),
        "gallery": len(items), "queries": len(first),
        "standard": clip_retrieval_metrics(image_text),
        "standard_intervals": recall_intervals(
            {"text_to_image": standard_ranks,
             "image_to_text": first_relevant_ranks(image_text, np.eye(len(items), dtype=bool))}),
        "patent_aware": {**rank_summary(first_relevant_ranks(image_text, same), "image_to_text"),
                         **rank_summary(aware_ranks, "text_to_image")},
        "chance": {"standard": {f"R@{k}": min(k / len(items), 1.0) for k in KS},
                   "patent_aware": {f"R@{k}": chance_recall(relevant.sum(axis=1),
                                                            len(items), k) for k in KS}},
        "terciles_R@10": {
            "standard": recall_by_frequency_tercile(standard_ranks, labels, counts),
            "patent_aware": recall_by_frequency_tercile(aware_ranks, query_labels, counts)},
        "tercile_queries": _tercile_queries(query_labels, counts),
        "per_class": _per_class(aware_ranks, query_labels, counts),
        "caption_cases": {**caption_cases(items, len(first)),
                          "shared_with_another_patent": shared_caption_share(captions, patents)},
        "per_query_cutoff": PER_QUERY_CUTOFF,
        "per_query_sheets": _per_query(items, first, aware_ranks, counts),
    }
    drawings = [i for i, item in enumerate(items) if not item.front_page]
    try:
        results["prior_art"] = prior_art_map(
            image_vectors[drawings] @ image_vectors[drawings].T, [patents[i] for i in drawings])
    except ValueError:  # every patent has a single sheet: no drawing -> drawing queries
        results["prior_art"] = {"map": None, "p_at_1": None, "queries": 0}
    results["prior_art"]["front_pages_left_out"] = len(items) - len(drawings)
    if class_prompts is not None:
        classes, prompt_vectors = class_prompts
        predicted = np.asarray(classes)[np.argmax(image_vectors @ prompt_vectors.T, axis=1)]
        results["zero_shot_accuracy"] = float(np.mean(predicted == np.asarray(labels)))
    return results


def recall_intervals(ranks: dict[str, np.ndarray], resamples: int = 1000, seed: int = 0
                     ) -> dict[str, list[float]]:
    """95% percentile bootstrap intervals of R@1/5/10 over the pairs (0-based ranks): what a
    published figure on another sample of the same size could have been."""
    return mean_intervals({f"{direction}_R@{k}": values < k
                           for direction, values in ranks.items() for k in KS}, resamples, seed)


def caption_cases(items: Sequence[EvalItem], queries: int) -> dict[str, float | None]:
    """The share of sheets per caption source (None where the set did not record it) and the
    share of sheets whose caption another sheet of the same patent already asked (those
    queries are deduplicated)."""
    recorded = [i.caption_source for i in items if i.caption_source]
    shares: dict[str, float | None] = {
        source: (recorded.count(source) / len(recorded) if recorded else None)
        for source in CAPTION_SOURCES}
    shares["duplicate_captions"] = 1 - queries / len(items) if items else 0.0
    return shares


def _per_query(items: Sequence[EvalItem], queries, ranks: np.ndarray,
               counts: dict[str, int]) -> list[dict]:
    """One record per patent-aware text -> sheet query (the sheet-level protocol; the gate
    pairs the served protocol's ``per_query``)."""
    terciles = frequency_terciles(counts)
    records = []
    for index, rank in zip(queries, ranks, strict=True):
        item = items[index]
        records.append({"query": item.caption, "patent": item.patent, "locarno": item.label,
                        "tercile": terciles.get(item.label, "tail"),
                        "relevant_rank": int(rank) + 1 if rank < PER_QUERY_CUTOFF else None})
    return records


def zero_shot_vectors(encoder: Encoder, eval_set: EvalSet) -> tuple[list[str], np.ndarray]:
    """One prompt per class known to the set ("a patent drawing of household goods")."""
    classes = sorted(set(eval_set.class_counts) | {i.label for i in eval_set.items})
    prompts = [ZERO_SHOT_PROMPT.format(LOCARNO_MAIN_CLASSES.get(c, f"class {c}").lower())
               for c in classes]
    return classes, encoder.encode_texts(prompts)


def metric(results: dict, name: str) -> float | None:
    """A dotted metric name ('patent_aware.text_to_image_R@10') out of a results dict."""
    value = results
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) else None


# ----------------------------------------------------------------------------- reports


def markdown_table(rows: dict[str, dict]) -> str:
    """The PatentCLIP paper's layout: T->I and I->T R@1/5/10 per model, plus ranks, with the
    gallery each was measured on and what a random ranking scores there: a recall is only
    comparable with another on a gallery of the same size."""
    header = ("| model | protocol | gallery | T→I R@1 | R@5 | R@10 | I→T R@1 | R@5 | R@10 | "
              "T→I mean/median rank |")
    lines = [header, "|" + "---|" * 10]
    for name, results in rows.items():
        gallery = results.get("gallery", results.get("items", 0))
        for protocol in ("standard", "patent_aware"):
            r = results[protocol]
            cells = [r[f"text_to_image_R@{k}"] for k in (1, 5, 10)] + \
                    [r[f"image_to_text_R@{k}"] for k in (1, 5, 10)]
            lines.append(f"| {name} | {protocol.replace('_', '-')} | {gallery} sheets | " +
                         " | ".join(f"{c:.3f}" for c in cells) +
                         f" | {r['text_to_image_mean_rank']:.1f} / "
                         f"{r['text_to_image_median_rank']:.0f} |")
    last = next(reversed(rows.values()), {})
    for protocol, chance in last.get("chance", {}).items():
        shown = " | ".join(f"{chance[f'R@{k}']:.3f}" for k in KS)
        lines.append(f"| chance (random ranking) | {protocol.replace('_', '-')} | "
                     f"{last.get('gallery', '?')} sheets | {shown} | — | — | — | — |")
    for name, cells in PUBLISHED.items():
        shown = " | ".join("—" if c is None else f"{c:.2f}" for c in cells)
        lines.append(f"| {name} | standard | 5,000 pairs (another set) | {shown} | — |")
    for name, results in rows.items():
        spans = results.get("standard_intervals")
        if spans:
            shown = ", ".join(f"{_short(key)} [{low:.3f}, {high:.3f}]"
                              for key, (low, high) in spans.items())
            lines.append(f"\n{name}, standard protocol, 95% bootstrap intervals over the "
                         f"pairs: {shown}")
    return "\n".join(lines)


def _short(key: str) -> str:
    """'text_to_image_R@1' -> 'T→I R@1'."""
    return key.replace("text_to_image_", "T→I ").replace("image_to_text_", "I→T ")


def summary_markdown(results: dict) -> str:
    t = results["terciles_R@10"]
    prior = results["prior_art"]
    cells = lambda d: " | ".join("—" if d[k] is None else f"{d[k]:.3f}"  # noqa: E731
                                 for k in ("head", "middle", "tail"))
    lines = [f"# Benchmark: {results.get('model_version', '?')} on {results.get('eval_set', '?')}",
             "", f"{results['items']} drawing sheets of {results['patents']} patents in "
             f"{results['classes']} Locarno classes (set sha256 "
             f"{str(results.get('eval_set_sha256', ''))[:12]}).", "",
             caption_cases_line(results), "",
             markdown_table({results.get("model_version", "model"): results}), "",
             "| text → image R@10 by class-frequency tercile | head | middle | tail |",
             "|---|---|---|---|",
             f"| standard | {cells(t['standard'])} |",
             f"| patent-aware | {cells(t['patent_aware'])} |", "",
             "| drawing → drawing prior art (front pages left out) | mAP | P@1 | queries |",
             "|---|---|---|---|",
             f"| other sheets of the same patent | {_fmt(prior['map'])} | "
             f"{_fmt(prior['p_at_1'])} | {prior['queries']} |", "",
             f"Zero-shot Locarno classification accuracy: "
             f"{_fmt(results.get('zero_shot_accuracy'))}"]
    if results.get("cited"):
        lines += ["", cited_markdown(results["cited"])]
    return "\n".join(lines) + "\n"


def cited_markdown(cited: dict) -> str:
    """The examiner-cited prior-art table: each way of asking, with 95% intervals."""
    lines = [f"Examiner-cited prior art: {cited['query_grants']} of {cited['grants']} grants "
             f"ask; their examiners cited {cited['examiner_cited_design_patents']} design "
             f"patents, {cited['held_by_the_corpus']} of them in the corpus "
             f"({cited['held_share']:.0%}).", "",
             "| asked by | R@1 | R@10 | R@100 | MRR |", "|---|---|---|---|---|"]
    for mode, figures in cited.get("modes", {}).items():
        cells = [f"{figures[k]['value']:.3f} [{figures[k]['interval'][0]:.3f}, "
                 f"{figures[k]['interval'][1]:.3f}]" for k in ("R@1", "R@10", "R@100", "mrr")]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption_cases_line(results: dict) -> str:
    """Where the evaluation captions come from, printed with every benchmark."""
    cases = results.get("caption_cases", {})
    shares = ", ".join(f"{name.replace('_', ' ')} {cases[name]:.0%}"
                       for name in CAPTION_SOURCES if cases.get(name) is not None)
    duplicate = cases.get("duplicate_captions")
    parts = [f"captions from: {shares}" if shares else "caption sources not recorded"]
    if duplicate is not None:
        parts.append(f"{duplicate:.0%} of the sheets repeat a caption of their patent, so the "
                     f"patent-aware text → image protocol asks {results.get('queries', '?')} "
                     "distinct queries")
    shared = cases.get("shared_with_another_patent")
    if shared is not None:
        parts.append(f"{shared:.0%} of those share their caption with another patent")
    return "; ".join(parts) + "."


def write_reports(results: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    (out_dir / "benchmark.md").write_text(summary_markdown(results))
    plot_recall_by_class({results.get("model_version", "model"): results},
                         out_dir / "recall_by_class.png")
    return out_dir


def plot_recall_by_class(runs: dict[str, dict], path: Path) -> Path:
    """Patent-aware text -> image R@10 per class against the class's training frequency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7 if len(runs) == 1 else 10, 4.5))
    markers = "os^Dvp*Xh<>"
    for i, (name, results) in enumerate(runs.items()):
        per_class = results["per_class"]
        xs = [max(v["train_sheets"], 1) for v in per_class.values()]
        ys = [v["R@10"] for v in per_class.values()]
        ax.scatter(xs, ys, label=name, alpha=0.75, marker=markers[i % len(markers)])
    ax.set_xscale("log")
    ax.set_xlabel("training sheets of the class (log scale)")
    ax.set_ylabel("patent-aware text → image R@10")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Recall by Locarno class frequency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- helpers


def _per_class(ranks: np.ndarray, labels: Sequence[str], counts: dict[str, int]) -> dict:
    terciles = frequency_terciles(counts)
    labels_arr = np.asarray(labels)
    return {c: {"train_sheets": int(counts.get(c, 0)), "tercile": terciles.get(c, "tail"),
                "queries": int((labels_arr == c).sum()),
                "R@10": float((ranks[labels_arr == c] < 10).mean())}
            for c in sorted(set(labels))}


def _tercile_queries(labels: Sequence[str], counts: dict[str, int]) -> dict[str, int]:
    terciles = frequency_terciles(counts)
    groups = [terciles.get(c, "tail") for c in labels]
    return {t: groups.count(t) for t in ("head", "middle", "tail")}


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"
