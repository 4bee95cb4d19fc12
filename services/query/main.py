"""``python -m services.query`` / ``patentclip serve query``: the gRPC query service.

Serves ``patentclip.v1.PatentSearch`` plus the standard ``grpc.health.v1.Health`` (NOT_SERVING
until a consistent model + collection is loaded) and server reflection. SIGTERM/SIGINT:
health goes NOT_SERVING, new requests are refused, in-flight ones get ``grace_s`` to finish.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from patentclip.config import service_parser
from patentclip.drawings.render import DrawingRenderer
from patentclip.errors import InvalidInputError, PatentClipError
from patentclip.v1 import search_pb2, search_pb2_grpc
from services.common.auth import TokenAuthenticator
from services.common.observability import ProbeServer, configure_logging, install_stop_signals
from services.query.config import QuerySettings
from services.query.metrics import QueryMetrics
from services.query.plane.drawings import StoredDrawings
from services.query.plane.live import LiveSearch
from services.query.rpc.interceptor import AuthInterceptor, ErrorInterceptor
from services.query.rpc.reflection import enable_reflection
from services.query.rpc.servicer import PatentSearchServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["PatentSearch"].full_name


class QueryServer:
    """The gRPC server and what it serves; start() binds, stop() drains."""

    def __init__(self, settings: QuerySettings, encoder=None, store=None) -> None:
        from patentclip.drawings.imagestore import LocalImageStore
        from patentclip.model.encoder import Encoder
        from patentclip.store import open_store

        self.settings = settings
        server = settings.server
        server.check_exposure(tokens=bool(server.auth_tokens_file))  # before opening anything
        self.metrics = QueryMetrics()
        self.health = HealthService()
        self._set_health(False)
        self._owns_store = store is None  # a store handed in is its owner's to close
        self.store = store or open_store(settings.core)
        core = settings.core
        self.encoder = encoder or Encoder.from_settings(core)
        self.live = LiveSearch(settings, self.store, self.metrics, on_serving=self._set_health)
        images = LocalImageStore(core.images_dir) if core.images_dir else None
        self.stored = StoredDrawings(images, DrawingRenderer(
            images.get, server.drawing_cache_mb * 1024 * 1024,
            on_cache=lambda hit: self.metrics.drawing_cache.labels(
                "hit" if hit else "miss").inc()) if images else None)
        self.authenticator = (TokenAuthenticator(server.auth_tokens_file)
                              if server.auth_tokens_file else None)
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=server.max_workers,
                                       thread_name_prefix="rpc"),
            interceptors=self._interceptors(server),
            options=[("grpc.max_receive_message_length", server.max_receive_bytes)],
            maximum_concurrent_rpcs=server.max_concurrent_rpcs)
        search_pb2_grpc.add_PatentSearchServicer_to_server(
            PatentSearchServicer(self.live, self.stored, server.max_image_bytes), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        enable_reflection((SERVICE_NAME, health.SERVICE_NAME), self.grpc)
        self.port = _bind(self.grpc, f"{server.host}:{server.port}", server)
        self.http = _http_server(server, self.live, self.authenticator, self.metrics,
                                 self.stored)
        self.probes: ProbeServer | None = None

    def _interceptors(self, server) -> list[grpc.ServerInterceptor]:
        """Errors and metrics outermost (they see auth refusals too), then tokens."""
        interceptors: list[grpc.ServerInterceptor] = [ErrorInterceptor(self.metrics)]
        if self.authenticator is not None:
            interceptors.append(AuthInterceptor(self.authenticator, self.metrics,
                                                server.open_services()))
        else:
            logger.warning("token authentication is off (PATENTCLIP_QUERY_AUTH_TOKENS_FILE "
                           "is empty): any caller that reaches the port may search")
        return interceptors

    def start(self) -> QueryServer:
        server = self.settings.server
        if server.metrics_port:
            self.probes = ProbeServer(self.metrics.registry, server.metrics_host,
                                      server.metrics_port, live=lambda: (True, "alive"),
                                      ready=lambda: (self.live.serving,
                                                     self.live.reason or "serving")).start()
        self.grpc.start()
        if self.http:
            self.http.start()
        logger.info("gRPC on port %d; loading what %s points at", self.port,
                    self.live.alias)
        self.live.start(self.encoder)
        return self

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (balancers stop sending), then drain in-flight requests."""
        self._set_health(False)
        grace = self.settings.server.grace_s if grace is None else grace
        self.grpc.stop(grace).wait(grace + 5)
        if self.http:
            self.http.stop()
        self.live.stop()
        if self.probes:
            self.probes.stop()
        if self._owns_store:
            self.store.close()

    def wait(self) -> None:
        self.grpc.wait_for_termination()

    def _set_health(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)


class HealthService(health.HealthServicer):
    """grpc.health.v1.Health with List answered (the pinned servicer raises in it: a
    traceback in the log per call)."""

    def List(self, request, context):  # noqa: N802 (gRPC names)
        with self._lock:
            statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in statuses.items()})


def _http_server(settings, live: LiveSearch, authenticator, metrics: QueryMetrics,
                 stored: StoredDrawings):
    """The HTTP side, when a port is set: the examiner web app (services/query/http/) and the
    embedding provider for Milvus's TEXTEMBEDDING functions (services/query/http/provider.py),
    one ASGI app on uvicorn: the live snapshot, the same batcher, the same tokens."""
    if not settings.http_port:
        return None
    from services.query.http.app import WebBackend, create_app
    from services.query.http.server import WebServer

    backend = WebBackend(live=live, authenticator=authenticator, stored=stored,
                         max_image_bytes=settings.max_image_bytes,
                         timeout_s=settings.http_timeout_s,
                         allowed_hosts=settings.allowed_hosts())
    port = 0 if settings.http_port < 0 else settings.http_port
    return WebServer(create_app(backend, metrics), settings.http_host or settings.host, port,
                     grace_s=settings.grace_s, tls=_http_tls(settings),
                     max_connections=settings.http_max_connections)


def _http_tls(settings) -> dict:
    """uvicorn's TLS options from the gRPC side's certificate settings: the same
    certificate, and client certificates required when a client CA is set (mTLS). The files
    were read by the gRPC side's bind first, which names a missing one by its setting."""
    if not settings.tls_cert:
        return {}
    options = {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}
    if settings.tls_client_ca:
        options.update(ssl_ca_certs=settings.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def _bind(server: grpc.Server, address: str, settings) -> int:
    """Plain, TLS or mutual-TLS port, as configured; the port number bound."""
    if not settings.tls_cert:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials(
        [(_read(settings.tls_key, "tls_key"), _read(settings.tls_cert, "tls_cert"))],
        root_certificates=(_read(settings.tls_client_ca, "tls_client_ca")
                           if settings.tls_client_ca else None),
        require_client_auth=bool(settings.tls_client_ca))
    logger.info("serving TLS%s", " and requiring client certificates (mTLS)"
                if settings.tls_client_ca else "")
    return server.add_secure_port(address, credentials)


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"PATENTCLIP_QUERY_{setting.upper()}={path}: "
                                f"{exc.strerror}") from exc


# The settings offered as flags (help, type and env name come from their declarations).
FLAGS = {"core": ("model", "pretrained", "device", "milvus_uri", "images_dir"),
         "server": ("host", "port", "metrics_port", "max_batch", "max_delay_ms",
                    "search_max_batch", "alias", "tls_cert", "tls_key", "tls_client_ca",
                    "auth_tokens_file", "allow_unauthenticated", "http_port", "http_host",
                    "http_allowed_hosts")}


def parser() -> argparse.ArgumentParser:
    return service_parser("python -m services.query", "gRPC query microservice (PatentSearch)",
                          QuerySettings, FLAGS)


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = QuerySettings.from_env(args=args)
        settings.server.validate()
        server = QueryServer(settings).start()
    except PatentClipError as exc:
        logger.error("query service cannot start: %s", exc)
        return 1
    stop = stop or threading.Event()
    install_stop_signals(stop, "draining in-flight requests, then stopping")
    stop.wait()
    logger.info("stopping: draining in-flight requests for up to %.0fs",
                settings.server.grace_s)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
