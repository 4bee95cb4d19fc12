"""``make bench-train``: peak memory and speed of the trainer's data path against corpus size.

    python -m benchmarks.train_memory --sizes 2000 20000 100000 --out reports/bench-train

For each N, a fresh process generates nothing and measures one thing: N generated drawing
sheets (unique bilevel PNGs, ``--source-px`` square, in an image store made once for the
largest N) go through

* **cached** (today's trainer): ``fill_cache`` decodes each sheet once into the uint8 cache,
  then one epoch of ``EpochData`` batches is drawn through the DataLoader (2 workers), as
  ``FineTuner`` does; a second pass finds every sheet cached (the next weekly cycle);
* **in-memory** (the trainer before the cache): every sheet decoded into an fp32 tensor up
  front with 2 threads, then one epoch's batches stacked from that list (only for the
  smaller N: it needs N x 3 x px x px x 4 bytes).

Peak RSS is sampled every 20 ms over the process and its children (the DataLoader workers).
Samples/s of training itself (the tiny model, fp32, the same steps) are measured for both
paths at the smallest N. Writes ``memory.json`` (``[{"sheets", "image_size",
"peak_rss_bytes", ...}]``, the issue's format, one row per N and path), ``memory.md`` and
``memory.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from harness import REPO
from harness.machine import machine, machine_line
from harness.processes import rss_bytes

BATCH = 64


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    p.add_argument("--in-memory-sizes", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--image-size", type=int, default=64, help="the model's input size (px)")
    p.add_argument("--source-px", type=int, default=192, help="generated sheets' size (px)")
    p.add_argument("--train-steps", type=int, default=20, help="training steps per path")
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench-train")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench-train")
    args = p.parse_args(argv)
    images = generate(args.work / "images", max(args.sizes), args.source_px)
    rows = []
    for n in args.sizes:
        for path in ("cached", "in_memory"):
            if path == "in_memory" and n not in args.in_memory_sizes:
                continue
            train = args.train_steps if n == min(args.sizes) else 0
            row = measure_in_child(path, images, n, args.image_size, args.work, train)
            rows.append(row)
            print(json.dumps(row), flush=True)
    report(rows, args)
    return 0


def generate(root: Path, n: int, px: int) -> Path:
    """N unique bilevel line drawings as PNG files (made once, reused by every size)."""
    marker = root / f"generated-{n}-{px}"
    if marker.is_file():
        return root
    import numpy as np
    from PIL import Image, ImageDraw
    from tqdm import tqdm

    rng = np.random.default_rng(0)
    for i in tqdm(range(n), desc="generating sheets", unit="sheet"):
        image = Image.new("1", (px, px), 1)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            draw.line([tuple(rng.integers(8, px - 8, 2)) for _ in range(3)], fill=0, width=2)
        draw.text((4, px - 14), str(i), fill=0)  # every sheet's bytes differ
        folder = root / f"D{i // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        (folder / f"{i:07d}.png").write_bytes(buffer.getvalue())
    marker.write_text("ok")
    return root


def measure_in_child(path: str, images: Path, n: int, image_size: int, work: Path,
                     train_steps: int) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure, path, str(images), n, image_size, str(work),
                           train_steps).result()


class PeakRss:
    """Samples the RSS of this process and its children until stopped."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.peak, self.every_s, self._stop = 0, every_s, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(os.getpid()))
            time.sleep(self.every_s)


def _measure(path: str, images_root: str, n: int, image_size: int, work: str,
             train_steps: int) -> dict:
    import torch

    from patentclip.model.encoder import TINY_MODEL_CONFIG
    from trainer.data import TrainingExample
    from trainer.train import TrainConfig

    torch.set_num_threads(2)
    files = sorted(Path(images_root).glob("D*/*.png"))[:n]
    examples = [TrainingExample(f"D{i:07d}", 1, f.as_uri(), ("a drawing",), "09", 20210105)
                for i, f in enumerate(files)]
    cfg = TrainConfig(base_model="tiny", batch_size=BATCH, seed=0)
    config = {**TINY_MODEL_CONFIG, "vision_cfg": {**TINY_MODEL_CONFIG["vision_cfg"],
                                                  "image_size": image_size}}
    row = {"sheets": n, "image_size": image_size, "path": path}
    with PeakRss() as peak:
        started = time.perf_counter()
        data = _cached(examples, image_size, cfg, Path(work) / f"cache-{n}") \
            if path == "cached" else _in_memory(examples, image_size, cfg)
        _one_epoch(data)
        row["first_pass_samples_per_second"] = round(n / (time.perf_counter() - started), 1)
        if path == "cached":  # the next cycle: everything cached already
            started = time.perf_counter()
            data = _cached(examples, image_size, cfg, Path(work) / f"cache-{n}")
            _one_epoch(data)
            row["second_pass_samples_per_second"] = round(
                n / (time.perf_counter() - started), 1)
        if train_steps:
            row["train_samples_per_second"] = _train(data, config, cfg, train_steps)
    row["peak_rss_bytes"] = peak.peak
    return row


def _cached(examples, image_size: int, cfg, cache_dir: Path):
    """Fill the cache (as FineTuner does); the epoch's batches come through 2 workers."""
    from trainer.cache import SheetCache, fill_cache
    from trainer.train import EpochData

    cache = SheetCache(cache_dir, image_size)
    _, keys, _ = fill_cache(cache, examples, _read, workers=2, progress=False)

    def pixels(i: int):
        return _normalize(cache.load(keys[i]).convert("RGB"))

    return EpochData(examples, pixels, _labels(examples), _tokenize, cfg, 2)


def _in_memory(examples, image_size: int, cfg):
    """The pre-cache path: every sheet an fp32 tensor in a list, batches stacked from it."""
    from concurrent.futures import ThreadPoolExecutor

    from patentclip.drawings.preprocess import DrawingPreprocessor
    from trainer.train import EpochData

    preprocessor = DrawingPreprocessor(image_size)
    with ThreadPoolExecutor(2) as pool:
        decoded = list(pool.map(lambda e: _normalize(preprocessor(_read(e.image_uri))),
                                examples))
    return EpochData(examples, decoded.__getitem__, _labels(examples), _tokenize, cfg, 0)


def _one_epoch(data) -> int:
    """Draw every batch of one epoch (the data path alone, no model)."""
    return sum(1 for _ in data.batches(0))


def _train(data, model_config: dict, cfg, steps: int) -> float:
    """Samples/s of the tiny model trained on batches from this path (data time included)."""
    import open_clip
    import torch

    from trainer.losses import PatentClipLoss
    from trainer.train import _optimizer, accumulated_backward

    torch.manual_seed(0)
    model = open_clip.CLIP(**model_config).train()
    loss_fn = PatentClipLoss(model_config["embed_dim"], [1], lam=0.0, mode="plain")
    optimizer = _optimizer(model, loss_fn, cfg)
    done, started = 0, time.perf_counter()
    while done < steps:
        for micro in data.batches(1):
            optimizer.zero_grad(set_to_none=True)
            accumulated_backward(model, loss_fn, micro)
            optimizer.step()
            done += 1
            if done >= steps:
                break
    return round(steps * BATCH / (time.perf_counter() - started), 1)


def _read(uri: str) -> bytes:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path)).read_bytes()


def _normalize(image):
    """What the encoder's transform does to a square image already at the model's size."""
    import open_clip
    import torchvision.transforms.functional as F  # noqa: N812

    return F.normalize(F.to_tensor(image), open_clip.OPENAI_DATASET_MEAN,
                       open_clip.OPENAI_DATASET_STD)


def _labels(examples):
    import torch

    return torch.zeros(len(examples), dtype=torch.long)


def _tokenize(texts):
    import torch

    return torch.ones(len(texts), 77, dtype=torch.long)


def report(rows: list[dict], args) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    cached = [r for r in rows if r["path"] == "cached"]
    smallest, largest = cached[0], cached[-1]
    ratio = largest["peak_rss_bytes"] / smallest["peak_rss_bytes"]
    body = [{k: r[k] for k in ("sheets", "image_size", "peak_rss_bytes")} | r for r in rows]
    (args.out / "memory.json").write_text(json.dumps(body, indent=2))
    (args.out / "machine.json").write_text(json.dumps(machine(), indent=2))
    mib = 1 << 20
    lines = [f"# Trainer data path: peak memory against corpus size ({machine_line()})", "",
             "| path | sheets | image px | peak RSS (MiB) | first pass sheets/s | "
             "cached pass sheets/s | training samples/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['path'].replace('_', '-')} | {r['sheets']:,} | {r['image_size']} | "
                     f"{r['peak_rss_bytes'] / mib:,.0f} | {r['first_pass_samples_per_second']} | "
                     f"{r.get('second_pass_samples_per_second', '—')} | "
                     f"{r.get('train_samples_per_second', '—')} |")
    lines += ["", f"Cached path: the peak at {largest['sheets']:,} sheets is {ratio:.2f}x the "
              f"peak at {smallest['sheets']:,} (the issue allows 1.5x)."]
    (args.out / "memory.md").write_text("\n".join(lines) + "\n")
    _plot(rows, args.out / "memory.png")
    print("\n".join(lines))


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in ("cached", "in_memory"):
        part = [r for r in rows if r["path"] == name]
        if part:
            ax.plot([r["sheets"] for r in part], [r["peak_rss_bytes"] / (1 << 20) for r in part],
                    marker="o", label=name.replace("_", "-"))
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("training sheets")
    ax.set_ylabel("peak RSS, process + workers (MiB)")
    ax.set_title("Trainer data path: peak memory")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
