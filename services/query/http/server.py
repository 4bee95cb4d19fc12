"""uvicorn in a background thread of the query process, on a socket bound up front (so
port 0 reports the port it got before the first request)."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from patentclip.errors import UnavailableError

logger = logging.getLogger(__name__)


class WebServer:
    """Serves an ASGI app on host:port; start() returns once it accepts, stop() drains."""

    def __init__(self, app, host: str, port: int, grace_s: float, tls: dict,
                 max_connections: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=256)
        self.port = self._socket.getsockname()[1]
        self.scheme, self._grace_s = "https" if tls else "http", grace_s
        # limit_concurrency: past it uvicorn answers 503 at once instead of queueing without
        # bound; h11's header limits and the edge's body limits bound each request.
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=grace_s, server_header=False,
                                limit_concurrency=max_connections, **(tls or {}))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]}, name="http",
                                        daemon=True)

    def start(self, timeout: float = 10.0) -> WebServer:
        self._thread.start()
        until = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > until:
                raise UnavailableError(f"the HTTP server on port {self.port} did not start")
            time.sleep(0.01)
        logger.info("%s on port %d: the examiner web app at /, the embedding provider for "
                    "Milvus at POST /v1/embeddings (OpenAI) and POST /embed (TEI)",
                    self.scheme.upper(), self.port)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=self._grace_s + 5)
        self._socket.close()
