"""The one description of the machine a benchmark ran on: every report names it."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo), or what platform knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    """Cores, CPU, library versions and, on CUDA, the GPU: what a benchmark result needs
    beside it to mean anything."""
    info: dict = {"device": device, "cores": os.cpu_count(), "cpu": cpu_model(),
                  "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    try:
        import open_clip
        import torch
    except ImportError:  # the backfill benchmark needs neither
        return info
    info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                torch_cuda=torch.version.cuda, open_clip=open_clip.__version__)
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version(), driver=nvidia_smi("driver_version"))
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def machine_line(device: str = "cpu") -> str:
    """The same as one line: '2 CPU cores (AMD EPYC ...), no GPU, Python 3.11.7'."""
    info = machine(device)
    gpu = info.get("gpu", "no GPU")
    return f"{info['cores']} CPU cores ({info['cpu']}), {gpu}, Python {info['python']}"


def nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None
