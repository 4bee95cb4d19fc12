"""``torch.compile`` vs eager for the ViT-B-32 image tower on this machine (one run).

Eager is timed before and after the compiled model, because these VMs drift; the result
and the machine go to ``<out>/compile.json``. Random weights (speed does not depend on
them). Takes about 3 minutes on 2 cores, 50 s of which is compiling.

    python -m benchmarks.compile --out reports/bench-encoder
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.machine import machine


def rate(fn, x, seconds: float) -> float:
    """Images per second of ``fn`` on batch ``x`` over ``seconds`` (after one warm-up)."""
    import torch

    with torch.inference_mode():
        fn(x)
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn(x)
            n += len(x)
        return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="reports/bench-encoder")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    import open_clip
    import torch

    torch.manual_seed(0)
    visual = open_clip.create_model("ViT-B-32").eval().visual
    batches = {"8": torch.randn(8, 3, 224, 224), "32": torch.randn(32, 3, 224, 224)}
    started = time.perf_counter()
    compiled = torch.compile(visual)
    with torch.inference_mode():
        reference, got = visual(batches["8"]), compiled(batches["8"])
    result = {"machine": machine(), "model": "ViT-B-32 image tower (random weights)",
              "compile_s": round(time.perf_counter() - started, 1),
              "min_cosine": float(torch.nn.functional.cosine_similarity(reference, got).min()),
              "images_per_s": {}}
    for size, x in batches.items():
        result["images_per_s"][size] = {
            "eager_before": round(rate(visual, x, args.seconds), 2),
            "compiled": round(rate(compiled, x, args.seconds), 2),
            "eager_after": round(rate(visual, x, args.seconds), 2)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["images_per_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
