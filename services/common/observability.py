"""An HTTP endpoint per service: Prometheus ``/metrics`` and Kubernetes probes.

``/healthz`` (liveness) answers 200 while the process loop is alive; ``/readyz``
(readiness) answers 200 only when the service says it is ready (e.g. the embedder is
consuming, not waiting on Milvus), 503 otherwise with the reason in the body.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)

# A probe returns (ok, reason).
Probe = Callable[[], tuple[bool, str]]


class ProbeServer:
    """Serves /metrics, /healthz and /readyz on a background thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 live: Probe, ready: Probe) -> None:
        handler = _handler(registry, live, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="probes",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> ProbeServer:
        self._thread.start()
        logger.info("metrics and probes on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(registry: CollectorRegistry, live: Probe, ready: Probe):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, reason = (live if path == "/healthz" else ready)()
                self._send(200 if ok else 503, (reason or "ok").encode() + b"\n",
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics, /healthz, /readyz\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:  # quiet: scraped every few seconds
            logger.debug("probe %s", fmt % args)

    return Handler


def install_stop_signals(stop: threading.Event, then: str = "stopping") -> None:
    """SIGTERM/SIGINT set ``stop`` (graceful shutdown); logged with what happens next.

    Only from the main thread: in-process tests run services in other threads and stop
    them through the event.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum, frame) -> None:
        logger.info("received %s: %s", signal.Signals(signum).name, then)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def configure_logging(verbose: bool = False) -> None:
    """One log format for every service: time, level, logger, message."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pymilvus logs every failed RPC with its traceback (thousands in one Milvus outage);
    # the store classifies those errors and logs one line per change of Milvus' state.
    logging.getLogger("pymilvus").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
