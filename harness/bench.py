"""What several benchmarks share: models with seeded random weights, a Milvus to run on,
the query service set up for load (text cache off, batching on or off), and the report
every benchmark leaves (JSON, a table, a plot)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from harness.processes import MilvusServerProcess
from harness.services import QueryProcess


def random_weights_model(name: str, out: Path, seed: int = 0) -> Path:
    """open_clip architecture ``name`` with seeded random weights, saved as a local-dir
    model: every process and backend loads the same weights (speed does not depend on
    them; parity needs them equal)."""
    import open_clip
    import torch

    from patentclip.model.encoder import save_local_model

    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    save_local_model(model, open_clip.get_model_config(name), out)
    return out


class MilvusBackend:
    """Context manager yielding a Milvus URI: a Milvus Lite file ("lite") or a Milvus 2.3.5
    server ("server") in ``work``."""

    def __init__(self, backend: str, work: Path) -> None:
        self.backend, self.work, self.server = backend, work, None

    def __enter__(self) -> str:
        if self.backend == "lite":
            return str(self.work / "lite.db")
        self.server = MilvusServerProcess(self.work / "milvus-server").start()
        return self.server.uri

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.stop()


def in_child(fn, *args):
    """``fn(*args)`` in a fresh process: a Milvus Lite file stays locked by the process that
    opened it, and the query service process must be the one to open it next."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def query_service_for_load(uri: str, model_dir: Path, prefix: str, log: Path,
                           batching: bool = True) -> QueryProcess:
    """The query service as the load benchmarks run it: the text cache off (every query
    encodes), dynamic batching on or off, 64 handler threads. Started; wait_serving next."""
    return QueryProcess(model_dir, uri, prefix, log, env={
        "PATENTCLIP_IMAGES_DIR": "", "PATENTCLIP_QUERY_MAX_BATCH": "32" if batching else "1",
        "PATENTCLIP_QUERY_MAX_DELAY_MS": "5", "PATENTCLIP_QUERY_TEXT_CACHE_SIZE": "0",
        "PATENTCLIP_QUERY_SEARCH_MAX_BATCH": "16" if batching else "1",
        "PATENTCLIP_QUERY_MAX_WORKERS": "64", "PATENTCLIP_QUERY_ALIAS_POLL_S": "5"})


def write_report(out: Path, name: str, result: dict, table: Callable[[dict], str],
                 plot: Callable[[dict, Path], None]) -> None:
    """``<name>.json``, ``<name>.md`` (the table, also printed) and ``<name>.png`` in
    ``out``: what people look at, beside the numbers."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(table(result))
    plot(result, out / f"{name}.png")
    print(table(result))
