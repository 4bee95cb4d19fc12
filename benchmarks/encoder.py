"""``make bench-encoder``: the encoder backends side by side, in one run on one machine.

For each model (the tiny test config and ViT-B-32, random weights: speed does not depend on
them) and each backend (patentclip/model/backends.py): images/s and texts/s at batch 1, 8, 32 and
64, and parity with fp32 eager (mean and minimum cosine of the embeddings of generated
drawings and captions). Also measured in the same run: the machine's fp32 matmul peak
(GFLOP/s), the model's FLOPs per image (torch's FLOP counter), hence each backend's
efficiency, and the preprocessing rate (TIFF decode + trim + pad + resize) per core.

Writes ``<out>/encoder.json``, ``encoder.md`` (tables) and ``encoder.png`` (plot).

    python -m benchmarks.encoder --out reports/bench-encoder [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from harness.bench import random_weights_model
from harness.machine import machine

BATCHES = (1, 8, 32, 64)
CPU_BACKENDS = ("eager", "torch", "onnx", "int8")


def rate(fn, items: int, min_seconds: float) -> float:
    """Items per second of ``fn`` (one warm-up call, then repeated for ``min_seconds``)."""
    fn()
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return calls * items / elapsed


def matmul_peak_gflops(seconds: float) -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    per_call = 2 * 2048 ** 3
    return rate(lambda: torch.mm(a, b), 1, seconds) * per_call / 1e9


def image_flops(encoder) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = encoder.info.image_size
    # Grad mode on: without it nn.MultiheadAttention runs fused and its projections go
    # uncounted (a third of ViT-B-32's FLOPs).
    with FlopCounterMode(display=False) as counter, torch.enable_grad():
        encoder.model.encode_image(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def sample_inputs(tmp: Path, count: int = 64):
    from patentclip.grants.reader import GrantReader
    from patentclip_cli.synthetic import BundleGenerator

    bundle = BundleGenerator(seed=5).write_bundle(tmp, date(2021, 1, 5), 16)
    docs = list(GrantReader().read(bundle))
    blobs = [(n, d) for doc in docs for n, d in doc.images.items()]
    blobs = (blobs * (count // len(blobs) + 1))[:count]
    texts = [doc.grant.sheet_caption(s) for doc in docs for s in doc.grant.sheets]
    texts = (texts * (count // len(texts) + 1))[:count]
    return blobs, texts


def bench_model(spec: str, backends, blobs, texts, seconds: float, cache: Path) -> dict:
    from patentclip.model.encoder import Encoder

    reference = Encoder.load(spec, backend="eager")
    pixels = [reference.drawing_pixels(d, n) for n, d in blobs]
    ref_images, ref_texts = reference.encode_pixels(pixels), reference.encode_texts(texts)
    flops = image_flops(reference)
    rows = []
    for backend in backends:
        encoder = Encoder.load(spec, backend=backend, onnx_cache_dir=cache)
        images, text_vectors = encoder.encode_pixels(pixels), encoder.encode_texts(texts)
        cos_i = (images * ref_images).sum(1)
        cos_t = (text_vectors * ref_texts).sum(1)
        row = {"backend": backend, "cos_image_mean": float(cos_i.mean()),
               "cos_image_min": float(cos_i.min()), "cos_text_mean": float(cos_t.mean()),
               "cos_text_min": float(cos_t.min())}
        row["images_per_s"], row["texts_per_s"] = speeds(encoder, pixels, texts, seconds)
        rows.append(row)
        print(f"{spec} {backend}: images/s {row['images_per_s']}, "
              f"min cos {row['cos_image_min']:.5f}", flush=True)
    return {"spec": spec, "image_size": reference.info.image_size,
            "flops_per_image": flops, "rows": rows}


def speeds(encoder, pixels, texts, seconds: float) -> tuple[dict, dict]:
    """Images/s and texts/s per batch size (the encoder's batch set to each)."""
    images, text_rates = {}, {}
    for batch in BATCHES:
        encoder.batch_size = batch
        images[batch] = rate(lambda b=batch: encoder.encode_pixels(pixels[:b]), batch, seconds)
        text_rates[batch] = rate(lambda b=batch: encoder.encode_texts(texts[:b]), batch,
                                 seconds)
    return images, text_rates


def preprocessing_rate(blobs, spec: str, seconds: float) -> float:
    """Drawings per second on one thread: decode + trim + pad + resize + normalize."""
    import torch

    from patentclip.model.encoder import Encoder

    torch.set_num_threads(1)
    encoder = Encoder.load(spec)
    try:
        return rate(lambda: [encoder.drawing_pixels(d, n) for n, d in blobs], len(blobs),
                    seconds)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder.json").write_text(json.dumps(result, indent=2))
    (out / "encoder.md").write_text(markdown(result))
    plot(result, out / "encoder.png")


def markdown(result: dict) -> str:
    m = result["machine"]
    peak = result["matmul_peak_gflops"]
    lines = ["# Encoder backends", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']} "
             f"({m['torch_threads']} threads), open_clip {m['open_clip']}, Python "
             f"{m['python']}. fp32 matmul peak measured in the same run: {peak:.1f} GFLOP/s. "
             f"Preprocessing (decode + trim + pad + resize, one thread): "
             f"{result['preprocess_per_core']:.1f} drawings/s per core.", ""]
    for model in result["models"]:
        gflop = model["flops_per_image"] / 1e9
        eager = {r["backend"]: r for r in model["rows"]}["eager"]["images_per_s"]
        lines += [f"## {model['spec']} ({model['image_size']} px, {gflop:.3f} GFLOP per image)",
                  "", "| backend | " + " | ".join(f"img/s b{b}" for b in BATCHES)
                  + " | best vs eager | efficiency | " + " | ".join(f"txt/s b{b}" for b in BATCHES)
                  + " | cos img mean/min | cos txt min |",
                  "|---|" + "---:|" * (2 * len(BATCHES) + 4)]
        for row in model["rows"]:
            best = max(row["images_per_s"].values())
            ratio = best / max(eager.values())
            efficiency = best * model["flops_per_image"] / 1e9 / peak
            lines.append(
                f"| {row['backend']} | "
                + " | ".join(f"{row['images_per_s'][b]:.1f}" for b in BATCHES)
                + f" | {ratio:.2f}x | {efficiency:.0%} | "
                + " | ".join(f"{row['texts_per_s'][b]:.0f}" for b in BATCHES)
                + f" | {row['cos_image_mean']:.5f}/{row['cos_image_min']:.5f}"
                + f" | {row['cos_text_min']:.5f} |")
        lines.append("")
    lines += ["Efficiency: best images/s x FLOPs per image / the measured matmul peak.",
              "Batch sizes are keys as strings in the JSON."]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for row in model["rows"]:
            ax.plot(BATCHES, [row["images_per_s"][b] for b in BATCHES], marker="o",
                    label=row["backend"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch")
        ax.set_ylabel("images/s")
        ax.set_title(model["spec"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reports/bench-encoder")
    parser.add_argument("--quick", action="store_true", help="tiny model only, short runs")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else args.seconds
    from patentclip.model.encoder import create_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = f"local-dir:{create_tiny_model(tmp / 'tiny')}"
        blobs, texts = sample_inputs(tmp / "bundle")
        specs = [tiny] if args.quick else [
            tiny, f"local-dir:{random_weights_model('ViT-B-32', tmp / 'vit-b-32')}"]
        result = {"machine": machine(), "matmul_peak_gflops": matmul_peak_gflops(seconds),
                  "preprocess_per_core": preprocessing_rate(blobs[:32], tiny, seconds),
                  "models": [bench_model(s, CPU_BACKENDS, blobs, texts, seconds, tmp / "onnx")
                             for s in specs]}
    for model in result["models"]:
        if model["spec"] == tiny:
            model["spec"] = "tiny test config (local-dir)"
        elif model["spec"].endswith("vit-b-32"):
            model["spec"] = "ViT-B-32 (random weights, seed 0)"
    write_reports(result, Path(args.out))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
