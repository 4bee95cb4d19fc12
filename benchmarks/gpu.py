"""``make bench-gpu``: every GPU path of PatentCLIP Search measured in one prepared run.

One run on one GPU (under 8 minutes on an H200; a time budget skips what would not fit and
says so) with random weights in the real architectures, nothing installed at run time:

* **matmul**: a large bf16 matmul, the GPU's achievable bf16 rate in this run;
* **encoder**: the service's own encoder (``patentclip.model.encoder.Encoder`` with the
  ``eager``, ``bf16`` and ``fp16`` backends: pinned memory, non-blocking copies) on
  ViT-B-32 and ViT-L-14, images and texts at batch 64, 256 and 1024: items/s, the share of
  the matmul rate, and the minimum cosine to fp32 on the real sample drawings;
  ONNX Runtime's CUDA provider is used if the pinned onnxruntime has it;
* **ingest**: ``SheetEmbedder`` (decode workers feeding the GPU encoder, as the embedder
  runs it) on a generated bundle: sheets/s, its share of the bare encoder, and which stage
  limits (CPU decode or GPU encode);
* **query**: one text and one drawing query at batch 1, on the GPU and on this machine's
  CPU in the same run (p50/p95);
* **train**: the trainer's own step (``trainer.train.accumulated_backward``, bf16 autocast)
  plus AdamW: ViT-B-32 at batch 256, ViT-L-14 at the largest batch that fits; samples/s and
  peak GPU memory.

Writes ``<out>/bench-gpu.json``, ``bench-gpu.md`` (tables) and ``bench-gpu.png`` after each
section, so a run cut short still leaves what it measured. ``--dry-run`` runs every path at
toy sizes on the CPU with the tiny test model (``make test`` does, so the script cannot rot).

    python -m benchmarks.gpu --out reports/bench-gpu
    python -m benchmarks.gpu --dry-run --out /tmp/bench-gpu-dry
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from harness import REPO, SAMPLE
from harness.machine import machine


@dataclass(frozen=True)
class Plan:
    """What one run measures; the dry run is the same paths at toy sizes."""

    models: tuple[str, ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    repeats: int
    matmul_n: int
    ingest_patents: int
    ingest_model: str
    query_repeats: int
    query_cpu_repeats: int
    train: tuple[tuple[str, tuple[int, ...]], ...]  # model, batches to try (largest first)
    train_steps: int


FULL = Plan(models=("ViT-B-32", "ViT-L-14"), batches=(64, 256, 1024),
            precisions=("fp32", "bf16", "fp16"), repeats=5, matmul_n=8192,
            ingest_patents=160, ingest_model="ViT-L-14", query_repeats=30,
            query_cpu_repeats=5, train=(("ViT-B-32", (256,)),
                                        ("ViT-L-14", (512, 384, 256, 192, 128, 64, 32))),
            train_steps=5)
DRY = Plan(models=("tiny",), batches=(2, 8), precisions=("fp32", "bf16"), repeats=2,
           matmul_n=256, ingest_patents=4, ingest_model="tiny", query_repeats=3,
           query_cpu_repeats=2, train=(("tiny", (16, 8)),), train_steps=2)


class Budget:
    """Seconds left of the run; sections skip what would start after it ran out."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def left(self) -> float:
        return self.until - time.monotonic()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    plan = DRY if args.dry_run else FULL
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or use --dry-run", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    budget = Budget(args.budget_s)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        result = {"machine": machine(device), "dry_run": args.dry_run, "plan": plan.__dict__,
                  "date": date.today().isoformat(), "skipped": []}
        sections = (("matmul", lambda: bf16_matmul(device, plan)),
                    ("encoder", lambda: encoder_rates(device, plan, work, budget, result)),
                    ("ingest", lambda: ingest_rate(device, plan, work, args.decode_workers)),
                    ("query", lambda: query_latency(device, plan, work)),
                    ("train", lambda: train_rates(device, plan, work, budget, result)))
        for name, run in sections:
            if budget.left() <= 0:
                result["skipped"].append(f"{name}: time budget spent")
                continue
            started = time.perf_counter()
            print(f"== {name}", flush=True)
            result[name] = run()
            result.setdefault("section_seconds", {})[name] = round(time.perf_counter()
                                                                   - started, 1)
            write_reports(result, args.out)
    print(f"wrote {args.out}/bench-gpu.json, .md, .png")
    return 0


# ----------------------------------------------------------------------------- machine


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- matmul


def bf16_matmul(device: str, plan: Plan) -> dict:
    """TFLOP/s of an n x n x n bf16 matmul: what this GPU reaches on dense bf16 work."""
    import torch

    n = plan.matmul_n
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    repeats = 20 if device == "cuda" else 3
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - started) / repeats
    return {"n": n, "seconds": seconds, "tflops": 2 * n ** 3 / seconds / 1e12}


# ----------------------------------------------------------------------------- encoder


def load_encoder(name: str, device: str, work: Path, batch_size: int, backend: str = "eager"):
    """The service's Encoder on the real architecture with random weights (``tiny``: the
    test model through local-dir:, as the dry run and the tests load it)."""
    from patentclip.model.encoder import Encoder, create_tiny_model

    if name == "tiny":
        model_dir = work / "tiny"
        if not model_dir.is_dir():
            create_tiny_model(model_dir, seed=0)
        name = f"local-dir:{model_dir}"
    return Encoder.load(name, device=device, batch_size=batch_size, backend=backend)


def use_precision(encoder, precision: str) -> str:
    """Switch the encoder's tower backend in place; returns the backend's label."""
    from patentclip.model.backends import EagerBackend, make_backend

    if precision == "fp32":
        encoder.backend = EagerBackend(encoder.model, encoder.device)
        return "eager fp32"
    if encoder.device == "cpu":  # dry run: the same measuring code, CPU autocast
        encoder.backend = _CpuAutocast(encoder.model)
        return f"{precision} (CPU autocast, dry run)"
    encoder.backend = make_backend(precision, encoder.model, encoder.device,
                                   encoder.model_version, None, None)
    return f"{precision} autocast (backend {precision})"


class _CpuAutocast:
    name = "bf16-cpu"

    def __init__(self, model) -> None:
        self.model = model

    def encode_image(self, pixels):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model.encode_image(pixels).float()

    def encode_text(self, tokens):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model.encode_text(tokens).float()


def encoder_rates(device: str, plan: Plan, work: Path, budget: Budget, result: dict) -> dict:
    import torch

    drawings, drawings_from = sample_drawings(work)
    captions = [f"front perspective view of a {w} with a hinged lid" for w in
                ("cosmetic case", "lamp", "bottle", "chair", "shaving cartridge")]
    peak = result["matmul"]["tflops"] if "matmul" in result else None
    out = {"drawings_for_parity": drawings_from, "rows": [], "onnx_cuda": onnx_cuda_note()}
    for name in plan.models:
        encoder = load_encoder(name, device, work, batch_size=max(plan.batches))
        flops = _flops_per_item(encoder, device)
        pixels = [encoder.drawing_pixels(d, f"drawing {i}") for i, d in enumerate(drawings)]
        use_precision(encoder, "fp32")
        reference = {"image": encoder.encode_pixels(pixels),
                     "text": encoder.encode_texts(captions)}
        for precision in plan.precisions:
            label = use_precision(encoder, precision)
            parity = {"image": _min_cosine(encoder.encode_pixels(pixels), reference["image"]),
                      "text": _min_cosine(encoder.encode_texts(captions), reference["text"])}
            for batch in plan.batches:
                if budget.left() <= 0:
                    result["skipped"].append(f"encoder {name} {precision} batch {batch}: "
                                             "time budget spent")
                    continue
                encoder.batch_size = batch
                for tower in ("image", "text"):
                    rate = _items_per_s(encoder, tower, batch, plan.repeats, device)
                    achieved = rate * flops[tower] / 1e12
                    out["rows"].append({
                        "model": name, "precision": precision, "backend": label,
                        "tower": tower, "batch": batch, "items_per_s": rate,
                        "gflops_per_item": flops[tower] / 1e9, "achieved_tflops": achieved,
                        "share_of_matmul_peak": achieved / peak if peak else None,
                        "min_cosine_to_fp32": parity[tower]})
                    print(f"  {name} {precision} {tower} b{batch}: {rate:,.0f}/s", flush=True)
        del encoder
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def onnx_cuda_note() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime not installed"
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ("CUDAExecutionProvider is available, but the service has no CUDA ONNX backend "
                "(patentclip.model.backends.OnnxBackend runs on the CPU): not measured")
    return (f"the pinned onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider "
            f"(providers: {', '.join(onnxruntime.get_available_providers())}): not measured")


def sample_drawings(work: Path, limit: int = 64) -> tuple[list[bytes], str]:
    """The real sample TIFFs when ../shared is beside the checkout, else generated ones."""
    real = sorted(SAMPLE.glob("*/*.TIF"))[:limit] if SAMPLE.is_dir() else []
    if real:
        return [p.read_bytes() for p in real], f"{len(real)} real sheets of {SAMPLE}"
    from patentclip_cli.synthetic import BundleGenerator, render_sheets

    sheets: list[bytes] = []
    for patent in BundleGenerator(seed=5).patents(date(2021, 1, 5), 16):
        sheets.extend(render_sheets(patent).values())
    return sheets[:limit], (f"{len(sheets[:limit])} generated sheets ({SAMPLE} absent here; "
                            "the real samples were not on this machine)")


def _flops_per_item(encoder, device: str) -> dict[str, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = encoder.info.image_size
    pixels = torch.zeros(1, 3, size, size, device=device)
    tokens = encoder.tokenizer(["a drawing"]).to(device)
    counts = {}
    for tower, run in (("image", lambda: encoder.model.encode_image(pixels)),
                       ("text", lambda: encoder.model.encode_text(tokens))):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            run()
        counts[tower] = float(counter.get_total_flops())
    return counts


def _items_per_s(encoder, tower: str, batch: int, repeats: int, device: str) -> float:
    """Items/s through the Encoder's public path (stack, copy, tower, normalize, to numpy)."""
    import torch

    size = encoder.info.image_size
    if tower == "image":
        items = list(torch.randn(batch, 3, size, size))
        run = lambda: encoder.encode_pixels(items)  # noqa: E731
    else:
        items = [f"perspective view of design number {i} with a curved handle"
                 for i in range(batch)]
        run = lambda: encoder.encode_texts(items)  # noqa: E731
    run()
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    _sync(device)
    return batch * repeats / (time.perf_counter() - started)


def _min_cosine(a, b) -> float:
    import numpy as np

    return float(np.min(np.sum(a * b, axis=1)))


# ----------------------------------------------------------------------------- ingest


def ingest_rate(device: str, plan: Plan, work: Path, decode_workers: int) -> dict:
    """SheetEmbedder over a generated bundle, micro-batches overlapped as the embedder
    runs them, against the bare encoder on the same sheets (decoded beforehand)."""
    from patentclip.drawings.imagestore import LocalImageStore, store_grant
    from patentclip.grants.reader import GrantReader
    from patentclip.ingest.sheets import SheetEmbedder, SheetJob
    from patentclip_cli.synthetic import BundleGenerator

    precision = "fp32" if device == "cpu" else "bf16"
    encoder = load_encoder(plan.ingest_model, device, work, batch_size=64)
    label = use_precision(encoder, precision)
    bundle = BundleGenerator(seed=7).write_bundle(work / "ingest", date(2021, 1, 5),
                                                  plan.ingest_patents)
    images = LocalImageStore(work / "images")
    jobs = [SheetJob(grant, sheet, sheet.image_uri)
            for document in GrantReader().read(bundle)
            for grant in (store_grant(images, document),) for sheet in grant.sheets]
    embedder = SheetEmbedder(encoder, images, decode_workers)
    try:
        embedder.embed(embedder.prepare(jobs[:64]))  # warm-up: kernels, pools
        started = time.perf_counter()  # decode alone, all workers
        pixels = [f.result().sheet for f in embedder.prepare(jobs).futures]
        decode_rate = len(jobs) / (time.perf_counter() - started)
        captions = [job.grant.sheet_caption(job.sheet) for job in jobs]
        _sync(device)
        started = time.perf_counter()  # the bare encoder: drawings + captions
        encoder.encode_pixels(pixels)
        encoder.encode_texts(captions)
        _sync(device)
        bare_rate = len(jobs) / (time.perf_counter() - started)
        batch, done = 64, 0
        started = time.perf_counter()  # the pipeline: prepare the next batch while encoding
        pending = embedder.prepare(jobs[:batch])
        for i in range(batch, len(jobs) + batch, batch):
            following = embedder.prepare(jobs[i:i + batch]) if i < len(jobs) else None
            decoded = embedder.embed(pending)
            done += len(decoded.embedded)
            pending = following
        _sync(device)
        pipeline_rate = done / (time.perf_counter() - started)
    finally:
        embedder.close()
    limit = "CPU decode" if decode_rate < bare_rate else "GPU encode"
    return {"model": plan.ingest_model, "backend": label, "sheets": len(jobs),
            "decode_workers": decode_workers, "decode_sheets_per_s": decode_rate,
            "bare_encoder_sheets_per_s": bare_rate, "pipeline_sheets_per_s": pipeline_rate,
            "pipeline_share_of_bare": pipeline_rate / bare_rate, "limiting_stage": limit}


# ----------------------------------------------------------------------------- query


def query_latency(device: str, plan: Plan, work: Path) -> dict:
    """One text and one drawing query at batch 1 (decode included for the drawing): on the
    GPU with the serving backend, and on this machine's CPU with eager fp32."""
    drawings, _ = sample_drawings(work, limit=1)
    rows = []
    targets = [("cpu", "fp32", plan.query_cpu_repeats)]
    if device == "cuda":
        targets.insert(0, ("cuda", "bf16", plan.query_repeats))
    for name in plan.models:
        for target, precision, repeats in targets:
            encoder = load_encoder(name, target, work, batch_size=1)
            label = use_precision(encoder, precision)
            for kind, run in (("text", lambda e=encoder: e.encode_texts(["a hinged lid"])),
                              ("drawing", lambda e=encoder: e.encode_pixels(
                                  [e.drawing_pixels(drawings[0], "query")]))):
                seconds = _latencies(run, repeats, target)
                rows.append({"model": name, "device": target, "backend": label, "query": kind,
                             "p50_ms": _quantile(seconds, 0.5) * 1000,
                             "p95_ms": _quantile(seconds, 0.95) * 1000, "n": repeats})
            del encoder
    return {"rows": rows}


def _latencies(run, repeats: int, device: str) -> list[float]:
    run()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        _sync(device)
        out.append(time.perf_counter() - started)
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ----------------------------------------------------------------------------- train


def train_rates(device: str, plan: Plan, work: Path, budget: Budget, result: dict) -> dict:
    rows = []
    for name, batches in plan.train:
        encoder = load_encoder(name, "cpu", work, batch_size=1)  # the model, loaded once
        for batch in batches:
            if budget.left() <= 0:
                result["skipped"].append(f"train {name} batch {batch}: time budget spent")
                break
            row = _train(encoder, name, batch, device, plan.train_steps)
            rows.append(row)
            print(f"  train {name} b{batch}: {row.get('samples_per_s') or row['outcome']}",
                  flush=True)
            if row["outcome"] == "ok":
                break  # the largest batch that fits (batches are tried largest first)
        del encoder
    return {"rows": rows}


def _train(encoder, name: str, batch: int, device: str, steps: int) -> dict:
    """The trainer's step (bf16 autocast on CUDA, fp32 on the CPU) plus AdamW."""
    import torch

    from trainer.losses import PatentClipLoss
    from trainer.train import accumulated_backward

    model = encoder.model.train().to(device)
    loss_fn = PatentClipLoss(encoder.dim, class_counts=[50, 30, 15, 5]).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()),
                                  lr=1e-5)
    size = encoder.info.image_size
    tokens = encoder.tokenizer([f"view {i} of a design" for i in range(batch)])
    micro = [(torch.randn(batch, 3, size, size), tokens, torch.randint(0, 4, (batch,)))]
    row = {"model": name, "batch": batch, "device": device,
           "precision": "bf16 autocast" if device == "cuda" else "fp32"}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        times = []
        for _ in range(steps + 1):  # the first step is warm-up
            started = time.perf_counter()
            accumulated_backward(model, loss_fn, micro, device)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            times.append(time.perf_counter() - started)
        step_s = sorted(times[1:])[len(times[1:]) // 2]
        row.update(outcome="ok", step_seconds=step_s, samples_per_s=batch / step_s)
        if device == "cuda":
            row["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    except torch.cuda.OutOfMemoryError:
        row.update(outcome="out of memory")
    finally:
        del optimizer, micro
        model.zero_grad(set_to_none=True)
        model.to("cpu")  # the next batch size starts from the same weights, memory freed
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


# ----------------------------------------------------------------------------- reports


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-gpu.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "bench-gpu.md").write_text(markdown(result))
    plot(result, out / "bench-gpu.png")


def markdown(result: dict) -> str:
    m = result["machine"]
    where = (f"{m.get('gpu')} ({m.get('gpu_memory_gib')} GiB, driver {m.get('driver')}, CUDA "
             f"{m['torch_cuda']}), torch {m['torch']}" if m["device"] == "cuda" else
             f"CPU only ({m['cores']} cores, {m['cpu']}): DRY RUN, toy sizes, not GPU figures")
    lines = [f"# GPU benchmark ({result['date']})", "", f"Machine: {where}.", ""]
    if "matmul" in result:
        mm = result["matmul"]
        lines += [f"bf16 matmul {mm['n']}^3: **{mm['tflops']:.3g} TFLOP/s** (the peak the "
                  "shares below are taken of" + ("; on a CPU bf16 is emulated, so the dry "
                  "run's shares mean nothing" if result["dry_run"] else "") + ").", ""]
    if "encoder" in result:
        enc = result["encoder"]
        lines += ["## Encoder", "", f"Parity drawings: {enc['drawings_for_parity']}. ONNX "
                  f"Runtime CUDA: {enc['onnx_cuda']}.", "",
                  "| model | precision | tower | batch | items/s | TFLOP/s | share of matmul "
                  "| min cos to fp32 |", "|---|---|---|---|---|---|---|---|"]
        for r in enc["rows"]:
            share = f"{r['share_of_matmul_peak']:.1%}" if r["share_of_matmul_peak"] else "-"
            lines.append(f"| {r['model']} | {r['precision']} | {r['tower']} | {r['batch']} | "
                         f"{r['items_per_s']:,.0f} | {r['achieved_tflops']:.2f} | {share} | "
                         f"{r['min_cosine_to_fp32']:.5f} |")
        lines.append("")
    if "ingest" in result:
        i = result["ingest"]
        lines += ["## Ingest pipeline", "", "| model | backend | sheets | decode workers | "
                  "decode sheets/s | bare encoder sheets/s | pipeline sheets/s | share | "
                  "limit |", "|---|---|---|---|---|---|---|---|---|",
                  f"| {i['model']} | {i['backend']} | {i['sheets']} | {i['decode_workers']} | "
                  f"{i['decode_sheets_per_s']:,.1f} | {i['bare_encoder_sheets_per_s']:,.1f} | "
                  f"{i['pipeline_sheets_per_s']:,.1f} | {i['pipeline_share_of_bare']:.2f} | "
                  f"{i['limiting_stage']} |", ""]
    if "query" in result:
        lines += ["## One query at batch 1", "", "| model | device | backend | query | p50 ms "
                  "| p95 ms | n |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['device']} | {r['backend']} | {r['query']} | "
                  f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['n']} |"
                  for r in result["query"]["rows"]]
        lines.append("")
    if "train" in result:
        lines += ["## Training step (trainer.train.accumulated_backward + AdamW)", "",
                  "| model | batch | precision | outcome | samples/s | peak GPU GiB |",
                  "|---|---|---|---|---|---|"]
        for r in result["train"]["rows"]:
            rate = f"{r['samples_per_s']:,.1f}" if r.get("samples_per_s") else "-"
            memory = f"{r['peak_gpu_memory_gib']:.1f}" if r.get("peak_gpu_memory_gib") else "-"
            lines.append(f"| {r['model']} | {r['batch']} | {r['precision']} | {r['outcome']} "
                         f"| {rate} | {memory} |")
        lines.append("")
    if result["skipped"]:
        lines += ["Skipped: " + "; ".join(result["skipped"]), ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = result.get("encoder", {}).get("rows", [])
    biggest = max((r["batch"] for r in rows), default=0)
    picked = [r for r in rows if r["batch"] == biggest]
    axes[0].bar([f"{r['model']}\n{r['precision']} {r['tower']}" for r in picked],
                [r["items_per_s"] for r in picked], color="#4477aa")
    axes[0].set_ylabel(f"items/s at batch {biggest}")
    axes[0].set_title("encoder")
    axes[0].tick_params(axis="x", labelsize=7)
    ingest = result.get("ingest")
    if ingest:
        labels = ["decode (CPU)", "bare encoder", "pipeline"]
        values = [ingest["decode_sheets_per_s"], ingest["bare_encoder_sheets_per_s"],
                  ingest["pipeline_sheets_per_s"]]
        axes[1].bar(labels, values, color=["#ccbb44", "#4477aa", "#228833"])
        axes[1].set_ylabel("sheets/s")
        axes[1].set_title(f"ingest, {ingest['model']} {ingest['backend']}")
    title = result["machine"].get("gpu") or "DRY RUN on the CPU (toy sizes)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench-gpu")
    parser.add_argument("--dry-run", action="store_true",
                        help="every path at toy sizes on the CPU (the tiny test model)")
    parser.add_argument("--budget-s", type=float, default=440.0,
                        help="stop starting new measurements after this many seconds")
    parser.add_argument("--decode-workers", type=int, default=os.cpu_count() or 2)
    return parser


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
