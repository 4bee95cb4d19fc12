"""EmbedderSettings: the embedding service's one typed config (env, then flags)."""

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
from services.common.broker import KafkaSettings


@dataclass(frozen=True)
class ConsumerSettings(Section):
    """How the embedder consumes (env PATENTCLIP_EMBEDDER_*)."""

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_EMBEDDER_"

    group_id: str = setting(
        "", "consumer group; empty: patentclip-embedder-<model version> (one per version)",
        flag="--group")
    batch_grants: int = setting(16, "messages (grants) per micro-batch")
    batch_max_wait_ms: int = setting(500, "a partial batch is processed after this long")
    session_timeout_ms: int = setting(10_000)
    max_poll_interval_ms: int = setting(300_000, "must exceed one batch's encode time (Milvus "
                                        "writes run beside polls that keep the group)")
    decode_workers: int = setting(2, "threads that fetch and decode drawings ahead of the encoder")
    retry_initial_s: float = setting(0.5, "back-off for retriable failures (Milvus, image store)")
    retry_max_s: float = setting(10.0, "... capped here; retried until it succeeds or shutdown")
    metrics_host: str = setting("0.0.0.0")
    metrics_port: int = setting(9101, "/metrics, /healthz, /readyz; 0 = off")
    flush_when_idle: bool = setting(
        True, "seal written rows when the topic goes quiet (Lite: fast)")
    set_live_if_missing: bool = setting(
        True, "point the live alias at our collection if none exists")
    failpoint: str = setting(
        "", "tests only: \"before_upsert@N\" / \"after_upsert@N\" blocks there")

    def validate(self) -> None:
        require_positive(self, ("batch_grants", "decode_workers", "batch_max_wait_ms",
                                "session_timeout_ms", "max_poll_interval_ms"), "embedder")
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise InvalidInputError("embedder retry back-off: need 0 < retry_initial_s <= "
                                    "retry_max_s")


def embedder_group(model_version: str) -> str:
    """The default consumer group of a model version's embedder.

    One group per version: a new version's reindex starts with no offsets (so it replays
    the whole topic), and the embedder started for that version after its rollout continues
    exactly where the reindex stopped. The previous version's embedder keeps its own
    offsets and its collection complete until it is retired (the rollback target).
    """
    return f"patentclip-embedder-{model_version}"


@dataclass(frozen=True)
class EmbedderSettings(ServiceSettings):
    """Everything the embedder needs: model/store (core), broker, consumer behaviour."""

    core: CoreSettings = field(default_factory=CoreSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)


