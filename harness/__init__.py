"""The one test and benchmark harness: real services on free ports, processes of our own
services, the machine description, and where the repository and ``../shared`` are.

``processes``: free ports, Tansu, Milvus Lite's server, the Milvus 2.3.5 server.
``services``: bundles, publishing, embedder and query service processes, metrics, load.
``machine``: the machine a benchmark ran on.
Tests (``tests/conftest.py`` fixtures) and ``benchmarks/`` import from here; nothing in the
product does. Not installed: it is run from the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PATENTCLIP_SHARED", REPO.parent / "shared"))
SAMPLE = SHARED / "uspto-sample"


def import_file(path: Path):
    """The module in ``path``, for tools that are scripts rather than packages
    (``deploy/grafana/dashboards.py``): imported by file, with no change to sys.path."""
    import importlib.util
    import sys

    name = f"harness_file_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    return sys.modules[name]
