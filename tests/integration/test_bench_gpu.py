"""`make bench-gpu` cannot rot: its dry run takes every path (matmul, encoder backends and
parity, ingest pipeline, batch-1 queries, the trainer's step) at toy sizes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import REPO


def test_the_gpu_benchmark_dry_run_measures_every_path(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu",
                             "--dry-run", "--out", str(tmp_path), "--decode-workers", "2"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "bench-gpu.json").read_text())
    assert report["dry_run"] and report["machine"]["device"] == "cpu" and not report["skipped"]
    assert report["matmul"]["tflops"] > 0
    rows = report["encoder"]["rows"]
    assert {(r["precision"], r["tower"], r["batch"]) for r in rows} == {
        (p, t, b) for p in ("fp32", "bf16") for t in ("image", "text") for b in (2, 8)}
    assert all(r["items_per_s"] > 0 and r["gflops_per_item"] > 0 for r in rows)
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    assert all(r["min_cosine_to_fp32"] > 0.9999 for r in fp32)  # fp32 against itself
    assert all(0.9 < r["min_cosine_to_fp32"] <= 1.0001 for r in rows)
    assert "onnx" in report["encoder"]["onnx_cuda"].lower()
    ingest = report["ingest"]
    assert ingest["pipeline_sheets_per_s"] > 0 and ingest["limiting_stage"] in (
        "CPU decode", "GPU encode") and ingest["sheets"] > 10
    assert {(r["query"], r["device"]) for r in report["query"]["rows"]} == {
        ("text", "cpu"), ("drawing", "cpu")}
    train = report["train"]["rows"]
    assert train and train[0]["outcome"] == "ok" and train[0]["samples_per_s"] > 0
    markdown = (tmp_path / "bench-gpu.md").read_text()
    assert "DRY RUN" in markdown and "## Training step" in markdown
    assert (tmp_path / "bench-gpu.png").stat().st_size > 1000
