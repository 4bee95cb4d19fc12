"""Shared fixtures: paths to ../shared, the tiny local model, the broker and Milvus backends.

The services themselves (Tansu, Milvus Lite's server, the real Milvus 2.3.5 server) and the
process helpers are in the ``harness`` package, which the benchmarks use too; here they are
started once per session on free ports and stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from harness import REPO, SAMPLE
from harness.processes import LiteServer, MilvusServerProcess, TansuBroker

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


# The longest groups of tests (measured, `--durations`), started first so that no worker is
# left with a long one at the end; the rest follow in file order, unit tests last.
LONGEST_FIRST = ("tests/integration/test_demo.py", "tests/integration/test_faults.py",
                 "tests/integration/test_streaming.py", "tests/integration/test_trainer.py",
                 "tests/integration/query_service/", "tests/integration/test_soak.py")
# Folders whose files share package fixtures (one service built per worker): each runs
# on one worker as one group.
PACKAGES = ("tests/integration/query_service/",)


def _start_order(nodeid: str) -> int:
    if on_milvus_server(nodeid):
        return 0
    path = _group(nodeid)
    if path in LONGEST_FIRST:
        return 1 + LONGEST_FIRST.index(path)
    return len(LONGEST_FIRST) + (2 if path.startswith("tests/unit/") else 1)


def _group(nodeid: str) -> str:
    """The test's file, or its package when the package shares fixtures (PACKAGES)."""
    path = nodeid.split("::", 1)[0]
    return next((package for package in PACKAGES if path.startswith(package)), path)


def pytest_collection_modifyitems(items) -> None:
    """Every test that uses the real Milvus server must be known to ``on_milvus_server``,
    which the scheduler below reads; the longest groups go first (a stable sort: the
    order within a file is kept)."""
    unknown = [item.nodeid for item in items if "milvus_server" in item.fixturenames
               and not on_milvus_server(item.nodeid)]
    if unknown:
        raise pytest.UsageError(f"tests on the Milvus server missing from "
                                f"conftest.MILVUS_SERVER_TESTS: {unknown}")
    items.sort(key=lambda item: _start_order(item.nodeid))


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs pytest-xdist workers. A test file (or a package of PACKAGES)
    stays on one worker (its module or package fixtures, like an indexed corpus, are built
    once), and every test on the real
    Milvus server runs on one worker: one such server can run per machine (its embedded
    etcd's peer port 2380 is fixed), and the outage tests kill and restart it. (xdist's own
    ``--dist loadgroup`` groups nothing with pytest 9: it rewrites a node id attribute
    pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the order above: the longest first

    class FilesAndMilvusServer(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "milvus-server" if on_milvus_server(nodeid) else _group(nodeid)

    return FilesAndMilvusServer(config, log)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        print(f"SKIP REASON: {SAMPLE} is absent (../shared not beside the checkout)")
        pytest.skip(f"{SAMPLE} is absent: the real USPTO sample lives in ../shared")
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from patentclip.model.encoder import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("models") / "patentclip-tiny", seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_model_dir):
    from patentclip.model.encoder import Encoder

    return Encoder.load(f"local-dir:{tiny_model_dir}", batch_size=16)


@pytest.fixture(scope="module")
def sample_corpus(request, tmp_path_factory, encoder, sample_dir):
    """The 40 real sample grants indexed with the tiny model into a Milvus Lite file of the
    test module's own: (store, images dir, {patent: GrantDocument}, collection)."""
    from harness.services import index_samples

    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:10]
    corpus = index_samples(encoder, tmp_path_factory.mktemp(prefix), prefix, sample_dir)
    yield corpus
    corpus[0].close()


@pytest.fixture(scope="session")
def milvus_server():
    """The session's one real Milvus 2.3.5 server (one per machine: its embedded etcd's
    peer port 2380 is fixed). Outage tests kill and restart it on the same data and ports."""
    base = Path(tempfile.mkdtemp(prefix="milvus-server-"))
    server = MilvusServerProcess(base).start()
    _SESSION_SERVERS["milvus"] = server
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)  # its binaries and data: 0.5 GB a session


_SESSION_SERVERS: dict[str, MilvusServerProcess] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Every test on the Milvus server runs in one block (the scheduler and the start order
    above): after the last, once its own fixtures are torn down, the server stops instead
    of idling (about a tenth of a core) through the rest of the run. A test that needs it
    later starts it again (``milvus_server_uri`` calls ``ensure_running``)."""
    yield
    server = _SESSION_SERVERS.get("milvus")
    if server and on_milvus_server(item.nodeid) and (
            nextitem is None or not on_milvus_server(nextitem.nodeid)):
        server.kill()


@pytest.fixture
def milvus_server_uri(milvus_server):
    """The server's URI, started again first if a test left it stopped."""
    return milvus_server.ensure_running().uri


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
    from services.common.broker import KafkaSettings

    topic = f"grants-{uuid.uuid4().hex[:8]}"
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, topic=topic,
                         dlq_topic=topic + ".dlq", partitions=4, request_timeout_ms=10_000)


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


# --- TLS (test_security, test_hostile_edges) -------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(pki: Path, name: str, ca: str, san: str = "") -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}", cwd=pki)
    ext = pki / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name,
             cwd=pki)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """TLS files for a test module (openssl): a CA, a server certificate for
    localhost/127.0.0.1, a client certificate from the CA and one from a stranger's CA."""
    pki = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                 "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN={ca}", cwd=pki)
    _issue(pki, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    _issue(pki, "client", "ca")
    _issue(pki, "rogue", "rogue-ca")
    return pki
