"""The HTTP server of the embedding provider (stdlib ``ThreadingHTTPServer``).

Routes: ``POST /v1/embeddings`` (OpenAI), ``POST /embed`` (TEI), ``GET /v1/models``,
``GET /health`` (TEI's; 200 while a model is served). Bodies over ``max_body_bytes`` are
refused with 413 before they are read. Started by the query service with
``--http-embeddings-port`` (``PATENTCLIP_QUERY_HTTP_EMBEDDINGS_PORT``).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.query.embeddings import EmbeddingProvider, Reply

logger = logging.getLogger(__name__)


class EmbeddingHTTPServer:
    """Serves an EmbeddingProvider on host:port in a background thread."""

    def __init__(self, provider: EmbeddingProvider, host: str, port: int,
                 max_body_bytes: int = 8 * 1024 * 1024) -> None:
        handler = _handler(provider, max_body_bytes)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="http-embeddings", daemon=True)

    def start(self) -> EmbeddingHTTPServer:
        self._thread.start()
        logger.info("embedding provider for Milvus on port %d: POST /v1/embeddings (OpenAI), "
                    "POST /embed (TEI)", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(provider: EmbeddingProvider, max_body_bytes: int):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's names)
            routes = {"/v1/embeddings": provider.openai, "/embed": provider.tei}
            route = routes.get(self.path.split("?", 1)[0].rstrip("/"))
            if route is None:
                return self._send(Reply(404, {"error": f"no route POST {self.path}"}))
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_body_bytes:
                self.close_connection = True
                return self._send(Reply(413, {"error": f"body of {length} bytes, limit "
                                              f"{max_body_bytes}"}))
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError as exc:
                return self._send(Reply(400, {"error": {
                    "message": f"the body is not JSON: {exc}", "type": "invalid_request_error",
                    "param": None, "code": None}}))
            self._send(route(body, self.headers.get("Authorization")))

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/v1/models":
                return self._send(provider.models(self.headers.get("Authorization")))
            if path == "/health":
                try:
                    provider.current()
                except Exception:
                    return self._send(Reply(503, {"error": "not serving",
                                                  "error_type": "Unhealthy"}))
                return self._send(Reply(200, {}))
            self._send(Reply(404, {"error": f"no route GET {self.path}"}))

        def _send(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler
