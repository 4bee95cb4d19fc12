"""Shared fixtures: paths to ../shared, the tiny local model, and Milvus backends.

Milvus backends: Milvus Lite (embedded file) and a real Milvus 2.3.5 standalone server from
the ``milvus`` wheel, started once per session on free ports and stopped at the end.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PATENTCLIP_SHARED", REPO.parent / "shared"))
SAMPLE = SHARED / "uspto-sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        print(f"SKIP REASON: {SAMPLE} is absent (../shared not beside the checkout)")
        pytest.skip(f"{SAMPLE} is absent: the real USPTO sample lives in ../shared")
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from patentclip.encoder import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("models") / "patentclip-tiny", seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_model_dir):
    from patentclip.encoder import Encoder

    return Encoder.load(f"local-dir:{tiny_model_dir}", batch_size=16)


@pytest.fixture(scope="session")
def milvus_server_uri():
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(tempfile.mkdtemp(prefix="milvus-server-"))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


@pytest.fixture(params=["lite", "server"])
def store(request, tmp_path):
    """A PatentStore on each backend; a unique collection prefix isolates tests."""
    from patentclip.store import PatentStore

    if request.param == "lite":
        uri = str(tmp_path / "patents.db")
    else:
        uri = request.getfixturevalue("milvus_server_uri")
    store = PatentStore(uri, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield store
    store.drop_alias(store.live_alias)
    for name in store.list_collections():
        store.drop(name)
    store.close()
