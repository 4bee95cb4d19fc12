"""QuerySettings: the query service's one typed config (env, then flags)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from patentclip.config import (
    CoreSettings,
    Section,
    ServiceSettings,
    require_positive,
    setting,
)
from patentclip.errors import InvalidInputError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings(Section):
    """How the query service serves (env PATENTCLIP_QUERY_*)."""

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_QUERY_"

    host: str = setting("127.0.0.1", "gRPC bind address (0.0.0.0: every interface; then "
                        "tokens are required unless allow_unauthenticated)")
    port: int = setting(50051, "gRPC; 0 = any free port (tests)")
    max_workers: int = setting(32, "gRPC handler threads = concurrent requests in flight")
    max_batch: int = setting(32, "dynamic batching: most queries per encoder call; 1 = off")
    max_delay_ms: float = setting(5.0, "... and the longest a query waits for company")
    search_max_batch: int = setting(16, "concurrent vector searches per Milvus request; 1 = off")
    text_cache_size: int = setting(4096, "text embeddings kept (LRU); 0 = off")
    max_image_bytes: int = setting(20 * 1024 * 1024, "larger query images are refused")
    alias_poll_s: float = setting(5.0, "how often the live alias is checked for a new model")
    unavailable_grace_s: float = setting(3.0, "Milvus down this long: health goes NOT_SERVING")
    grace_s: float = setting(10.0, "SIGTERM: in-flight requests get this long to finish")
    metrics_host: str = setting("0.0.0.0")
    metrics_port: int = setting(9102, "Prometheus /metrics and /healthz, /readyz; 0 = off")
    alias: str = setting("", "collection or alias to serve; default <prefix>_live")
    tls_cert: str = setting("", "PEM certificate chain: set with tls_key to serve TLS")
    tls_key: str = setting("", "PEM private key (a secret: never logged)")
    tls_client_ca: str = setting("", "PEM CA bundle: set to require client certificates (mTLS)")
    auth_tokens_file: str = setting(
        "", "token digests file (services/common/auth.py); empty = no auth")
    allow_unauthenticated: bool = setting(
        False, "serve without tokens on a non-loopback address (the page says so)")
    auth_open: str = setting("health,reflection", "services callable without a token (\"\" = none)")
    http_port: int = setting(
        0, "HTTP: the examiner web app and the embedding provider for Milvus; 0 = off, -1 = any")
    http_host: str = setting("", "its bind address; empty = host")
    http_timeout_s: float = setting(30.0, "time budget of one HTTP request (a browser sends none)")
    http_allowed_hosts: str = setting(
        "", "Host headers HTTP answers (comma list, host[:port]); empty = loopback names when "
        "bound to loopback, any otherwise")
    http_max_connections: int = setting(256, "HTTP connections and requests at once; more: 503")
    max_decodes: int = setting(4, "query drawings decoded at once in this process (gRPC and "
                               "HTTP); more wait")
    decode_wait_s: float = setting(2.0, "... this long, then RESOURCE_EXHAUSTED / 503")
    max_concurrent_rpcs: int = setting(128, "gRPC calls in flight; more: RESOURCE_EXHAUSTED")
    drawing_cache_mb: int = setting(64, "rendered drawings (GetDrawing, web app) kept, in MB")

    def validate(self) -> None:
        require_positive(self, ("max_workers", "max_batch", "search_max_batch",
                                "max_image_bytes", "http_timeout_s", "max_decodes",
                                "max_concurrent_rpcs", "http_max_connections"), "query")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidInputError("query settings: tls_cert and tls_key go together "
                                    "(PATENTCLIP_QUERY_TLS_CERT, PATENTCLIP_QUERY_TLS_KEY)")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidInputError("query settings: tls_client_ca (mutual TLS) needs "
                                    "tls_cert and tls_key")
        if (self.max_delay_ms < 0 or self.alias_poll_s <= 0 or self.grace_s < 0
                or self.unavailable_grace_s < 0):
            raise InvalidInputError("query settings: max_delay_ms >= 0, alias_poll_s > 0, "
                                    "grace_s >= 0 and unavailable_grace_s >= 0 are required")

    def check_exposure(self, tokens: bool) -> None:
        """Safe by default: InvalidInputError when gRPC or HTTP would listen beyond loopback
        with no tokens, unless ``allow_unauthenticated`` says so explicitly."""
        if tokens or self.allow_unauthenticated:
            return
        exposed = [f"{what} on {host}" for what, host, on in (
            ("gRPC", self.host, True), ("HTTP", self.http_host or self.host, bool(self.http_port)))
            if on and not is_loopback(host)]
        if exposed:
            raise InvalidInputError(
                f"query settings: {' and '.join(exposed)} would serve anyone who reaches it "
                "without a token; set PATENTCLIP_QUERY_AUTH_TOKENS_FILE (patentclip token new), "
                "bind to 127.0.0.1, or set PATENTCLIP_QUERY_ALLOW_UNAUTHENTICATED=true to "
                "serve unauthenticated on purpose")

    def allowed_hosts(self) -> tuple[str, ...]:
        """Host header values HTTP answers (lower case, without port); () = any."""
        named = tuple(h.strip().lower() for h in self.http_allowed_hosts.split(",") if h.strip())
        if named:
            return named
        return LOOPBACK_NAMES if is_loopback(self.http_host or self.host) else ()

    @property
    def max_receive_bytes(self) -> int:
        """gRPC's receive limit: room for an image of twice ``max_image_bytes``, so an
        oversized image is read and refused by name (INVALID_ARGUMENT, the field and the
        limit); only a request past this is cut off by gRPC (RESOURCE_EXHAUSTED)."""
        return 2 * self.max_image_bytes + 1024 * 1024

    def open_services(self) -> tuple[str, ...]:
        """Services that need no token: 'health', 'reflection' (PATENTCLIP_QUERY_AUTH_OPEN)."""
        return tuple(s.strip() for s in self.auth_open.split(",") if s.strip())


@dataclass(frozen=True)
class QuerySettings(ServiceSettings):
    core: CoreSettings = field(default_factory=CoreSettings)
    server: ServerSettings = field(default_factory=ServerSettings)


