"""``make bench``: every performance benchmark in sequence, then the full-corpus projection.

    python -m benchmarks.all            # full: about 2.5 hours on 2 cores (1M in Milvus)
    python -m benchmarks.all --quick    # reduced sizes: 5 min 20 s on 2 cores

Full results go to ``reports/`` (committed; docs/performance.md summarizes them); quick
results go to ``reports/quick/`` (not committed: a smoke run of the same code paths).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from harness import REPO

# name -> (module, full arguments, quick arguments or None: not in quick runs)
BENCHES = {
    "encoder": ("benchmarks.encoder", [], ["--quick"]),
    "compile": ("benchmarks.compile", [], None),  # full runs only: 50 s of compiling
    "ingest": ("benchmarks.ingest", [], ["--patents", "8", "--rounds", "1"]),
    "query": ("benchmarks.query", [], ["--corpus", "10000", "--backends", "server",
                                       "--concurrency", "1", "8", "--duration", "3"]),
    "search": ("benchmarks.search", [], ["--quick"]),
    "latency": ("benchmarks.latency", [], ["--quick"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    args = ap.parse_args(argv)
    reports = REPO / ("reports/quick" if args.quick else "reports")
    took = {}
    for name in args.only:
        module, full, quick = BENCHES[name]
        if args.quick and quick is None:
            continue
        started = time.monotonic()
        folder = "bench-encoder" if name == "compile" else f"bench-{name}"
        cmd = [sys.executable, "-m", module, "--out", str(reports / folder),
               *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[2:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
        took[name] = time.monotonic() - started
    if {"encoder", "ingest", "search"} <= set(args.only):
        subprocess.run([sys.executable, "-m", "benchmarks.scale_projection",
                        "--reports", str(reports), "--out", str(reports / "scale")],
                       cwd=REPO, check=True)
    for name, seconds in took.items():
        print(f"{name:>8}: {seconds / 60:.1f} min")
    print(f"total {sum(took.values()) / 60:.1f} min; results under {reports}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
