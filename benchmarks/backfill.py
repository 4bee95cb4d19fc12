"""``make bench-backfill``: the reader's peak memory does not grow with a bundle's size.

A real weekly with-images bundle (``I20YYMMDD.tar``) is several GB, mostly utility-patent
zips that a design-grant reader must skip. This generates one bundle of design grants and
pads copies of it with utility members (incompressible bytes) to each target size, then
reads each in a fresh process with ``GrantReader`` exactly as ``patentclip publish`` does
(every design grant, with its TIFFs) and records the process's peak RSS (VmHWM) before and
after the read. Writes ``<out>/backfill.json``, ``backfill.md`` (table) and ``backfill.png``.

    python -m benchmarks.backfill --sizes-mb 50 2048 --out reports/bench-backfill
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from datetime import date
from pathlib import Path

from harness import REPO
from harness.machine import machine

UTILITY_MEMBER_BYTES = 32 * 1024 * 1024  # a utility zip of drawings, as big as real ones get

_READ = """
import json, sys, time
from patentclip.grants.reader import GrantReader

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024

before = hwm()
started = time.perf_counter()
reader = GrantReader()
grants = sheets = 0
for document in reader.read(sys.argv[1]):
    grants += 1
    sheets += len(document.images)
print(json.dumps({"peak_rss_before_read": before, "peak_rss": hwm(), "grants": grants,
                  "sheets": sheets, "skipped": reader.report.skipped,
                  "errors": len(reader.report.errors),
                  "read_seconds": time.perf_counter() - started}))
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        base = _design_bundle(Path(tmp), args.patents)
        runs = []
        for size_mb in sorted(args.sizes_mb):
            bundle = _padded(base, Path(tmp) / f"{size_mb}MB" / base.name, size_mb << 20)
            runs.append({"target_mb": size_mb, "bundle_bytes": bundle.stat().st_size,
                         **_read_in_fresh_process(bundle)})
            bundle.unlink()
            print(f"{size_mb} MB bundle: peak RSS {runs[-1]['peak_rss'] / 2**20:.0f} MB")
    smallest, largest = runs[0], runs[-1]
    result = {"machine": machine(), "design_patents": args.patents, "runs": runs,
              "peak_ratio_largest_to_smallest": largest["peak_rss"] / smallest["peak_rss"],
              "size_ratio_largest_to_smallest":
                  largest["bundle_bytes"] / smallest["bundle_bytes"]}
    _write(result, args.out)
    print(f"peak RSS ratio {result['peak_ratio_largest_to_smallest']:.3f} for a "
          f"{result['size_ratio_largest_to_smallest']:.0f}x larger bundle; {args.out}")
    return 0


def _design_bundle(tmp: Path, patents: int) -> Path:
    from patentclip_cli.synthetic import BundleGenerator

    return BundleGenerator(seed=0).write_bundle(tmp / "base", date(2021, 1, 5), patents)


def _padded(base: Path, out: Path, target_bytes: int) -> Path:
    """``base`` plus utility zips (stored, incompressible) until the tar reaches the size."""
    out.parent.mkdir(parents=True)
    filler = os.urandom(UTILITY_MEMBER_BYTES)
    with tarfile.open(base) as source, tarfile.open(out, "w") as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member))
        number = 10_881_000
        while out.stat().st_size < target_bytes:
            stem = f"US{number}-20210105"
            left = target_bytes - out.stat().st_size
            data = _stored_zip(f"{stem}/{stem}-D00001.TIF", filler[:max(1024, min(len(filler),
                                                                                  left))])
            info = tarfile.TarInfo(f"I20210105/UTIL{number // 10000:04d}/{stem}.ZIP")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            tar.fileobj.flush()
            number += 1
    return out


def _stored_zip(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _read_in_fresh_process(bundle: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", _READ, str(bundle)], capture_output=True,
                            text=True, check=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(result.stdout.strip().splitlines()[-1])


def _write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "backfill.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    lines = [f"# Backfill reader memory ({m['cores']} cores, {m['cpu']}, {m['date']})", "",
             f"{result['design_patents']} generated design grants per bundle, padded with "
             f"utility members of {UTILITY_MEMBER_BYTES >> 20} MB.", "",
             "| bundle | grants read | sheets | utility skipped | peak RSS before read | "
             "peak RSS after read | read s |", "|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        skipped = sum(run["skipped"].values())
        lines.append(f"| {run['bundle_bytes'] / 2**20:,.0f} MB | {run['grants']} | "
                     f"{run['sheets']} | {skipped} | {run['peak_rss_before_read'] / 2**20:.0f}"
                     f" MB | {run['peak_rss'] / 2**20:.0f} MB | {run['read_seconds']:.1f} |")
    lines += ["", f"Peak RSS ratio, largest to smallest bundle: "
              f"**{result['peak_ratio_largest_to_smallest']:.3f}** for a "
              f"{result['size_ratio_largest_to_smallest']:.0f}x larger bundle."]
    (out / "backfill.md").write_text("\n".join(lines) + "\n")
    _plot(result, out / "backfill.png")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    labels = [f"{r['bundle_bytes'] / 2**20:,.0f} MB" for r in runs]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, [r["peak_rss"] / 2**20 for r in runs], color="#4477aa")
    ax.set_xlabel("bundle size (design grants + utility padding)")
    ax.set_ylabel("reader peak RSS (MB)")
    ax.set_title("GrantReader peak memory vs bundle size")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[50, 2048])
    parser.add_argument("--patents", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench-backfill")
    return parser


if __name__ == "__main__":
    sys.exit(main())
