"""QuerySettings: the query service's one typed config (env, then flags)."""

from __future__ import annotations

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


@dataclass(frozen=True)
class ServerSettings(Section):
    """How the query service serves (env PATENTCLIP_QUERY_*)."""

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_QUERY_"

    host: str = setting("0.0.0.0")
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
    auth_open: str = setting("health,reflection", "services callable without a token (\"\" = none)")
    http_port: int = setting(
        0, "HTTP: the examiner web app and the embedding provider for Milvus; 0 = off, -1 = any")
    http_host: str = setting("", "its bind address; empty = host")
    http_timeout_s: float = setting(30.0, "time budget of one HTTP request (a browser sends none)")
    drawing_cache_mb: int = setting(64, "rendered drawings (GetDrawing, web app) kept, in MB")

    def validate(self) -> None:
        require_positive(self, ("max_workers", "max_batch", "search_max_batch",
                                "max_image_bytes", "http_timeout_s"), "query")
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


