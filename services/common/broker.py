"""The Kafka edge, shared by the publisher, the embedder and reindex (kafka-python).

Every client gets explicit timeouts; the producer is idempotent with ``acks=all``; topics
are created with the configured partition count and unlimited retention, because the
grants topic is the system of record that a reindex replays from offset 0.

Works against Apache Kafka and any Kafka-protocol broker (Tansu in dev and tests).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import ClassVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, RetriableError, TopicAlreadyExistsError

from patentclip.config import Section, redacted_repr, setting
from patentclip.errors import InvalidInputError, UnavailableError

logger = logging.getLogger(__name__)

DEFAULT_TOPIC = "uspto.design-grants"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class KafkaSettings(Section):
    """Where the grants topic is (env PATENTCLIP_KAFKA_*)."""

    ENV_PREFIX: ClassVar[str] = "PATENTCLIP_KAFKA_"

    bootstrap_servers: str = setting("127.0.0.1:9092", "comma-separated host:port list")
    topic: str = setting(DEFAULT_TOPIC)
    dlq_topic: str = setting(DEFAULT_TOPIC + ".dlq")
    partitions: int = setting(6, "for topics this code creates; scale-out is capped by this")
    retention_ms: int = setting(-1, "-1 = keep forever: reindex replays the topic from the start")
    request_timeout_ms: int = setting(30_000)
    connect_attempts: int = setting(5, "bounded retries while the broker is starting")
    max_event_bytes: int = setting(4 * 1024 * 1024, "larger events are refused (producer) or DLQ'd")
    security_protocol: str = setting("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    sasl_mechanism: str = setting("", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (with SASL_*)")
    sasl_username: str = setting("")
    sasl_password: str = setting("", "a secret: never logged", secret=True)
    ssl_cafile: str = setting("", "PEM CA of the brokers (SSL, SASL_SSL)")
    ssl_certfile: str = setting("", "client certificate (mutual TLS)")
    ssl_keyfile: str = setting("", "client key (mutual TLS)")

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def client_options(self) -> dict:
        """kafka-python keyword arguments every client here gets: servers, security."""
        protocol = self.security_protocol.upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise InvalidInputError(f"PATENTCLIP_KAFKA_SECURITY_PROTOCOL={protocol!r}: choose "
                                    f"from {', '.join(SECURITY_PROTOCOLS)}")
        options: dict = {"bootstrap_servers": self.servers, "security_protocol": protocol}
        if protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise InvalidInputError(f"PATENTCLIP_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                        "PATENTCLIP_KAFKA_SASL_MECHANISM, _SASL_USERNAME and "
                                        "_SASL_PASSWORD")
            options.update(sasl_mechanism=self.sasl_mechanism.upper(),
                           sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password)
        if protocol.endswith("SSL"):
            options.update({k: v for k, v in (("ssl_cafile", self.ssl_cafile),
                                              ("ssl_certfile", self.ssl_certfile),
                                              ("ssl_keyfile", self.ssl_keyfile)) if v})
        return options

    def __repr__(self) -> str:
        return redacted_repr(self)


def connect(factory, settings: KafkaSettings, what: str):
    """Create a client, retrying while no broker answers, with back-off (bounded attempts)."""
    delay = 0.5
    for attempt in range(1, settings.connect_attempts + 1):
        try:
            return factory()
        except RetriableError as exc:  # kafka-python 3: KafkaTimeoutError, no broker
            if attempt == settings.connect_attempts:
                raise UnavailableError(f"{what}: no Kafka broker at {settings.bootstrap_servers} "
                                       f"after {attempt} attempts") from exc
            logger.warning("%s: broker %s not reachable (attempt %d), retrying in %.1fs", what,
                           settings.bootstrap_servers, attempt, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def client_id(role: str) -> str:
    return f"patentclip-{role}-{os.getpid()}"


def ensure_topics(settings: KafkaSettings, *topics: str) -> None:
    """Create missing topics with ``settings.partitions`` partitions and the retention.

    An existing topic is left as is (a warning if it has fewer partitions than asked).
    """
    admin = connect(lambda: KafkaAdminClient(
        **settings.client_options(), client_id=client_id("admin"),
        request_timeout_ms=settings.request_timeout_ms), settings, "admin")
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(name, num_partitions=settings.partitions, replication_factor=1,
                           topic_configs={"retention.ms": str(settings.retention_ms)})
                  for name in topics if name not in existing]
        if wanted:
            try:
                admin.create_topics(wanted, timeout_ms=settings.request_timeout_ms)
                logger.info("created topics %s with %d partitions",
                            [t.name for t in wanted], settings.partitions)
            except TopicAlreadyExistsError:
                pass  # another process won the race
        for name in topics:
            if name in existing:
                _warn_if_fewer_partitions(admin, name, settings.partitions)
    except KafkaError as exc:
        raise UnavailableError(f"cannot create topics {topics} at "
                               f"{settings.bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()


def _warn_if_fewer_partitions(admin: KafkaAdminClient, topic: str, wanted: int) -> None:
    described = admin.describe_topics([topic])
    count = len(described[0].get("partitions", [])) if described else 0
    if count and count < wanted:
        logger.warning("topic %s has %d partitions (< %d configured): at most %d consumers "
                       "of one group get work", topic, count, wanted, count)


def make_producer(settings: KafkaSettings, role: str) -> KafkaProducer:
    """An idempotent producer: acks from all replicas, bounded delivery time."""
    return connect(lambda: KafkaProducer(
        **settings.client_options(), client_id=client_id(role), acks="all",
        max_request_size=settings.max_event_bytes + 64 * 1024,
        enable_idempotence=True, linger_ms=5, request_timeout_ms=settings.request_timeout_ms,
        delivery_timeout_ms=max(settings.request_timeout_ms * 2, 120_000),
        max_block_ms=settings.request_timeout_ms), settings, role)


def make_consumer(settings: KafkaSettings, group_id: str, role: str,
                  session_timeout_ms: int, max_poll_interval_ms: int,
                  max_poll_records: int) -> KafkaConsumer:
    """A group member with manual commits that starts from the earliest offset when the
    group has none (a new group, e.g. a reindex, replays the whole topic)."""
    return connect(lambda: KafkaConsumer(
        **settings.client_options(), client_id=client_id(role), group_id=group_id,
        enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(session_timeout_ms // 3, 100),
        max_poll_interval_ms=max_poll_interval_ms, max_poll_records=max_poll_records,
        request_timeout_ms=max(settings.request_timeout_ms, session_timeout_ms + 1000),
    ), settings, role)


def partition_lag(consumer: KafkaConsumer) -> dict[int, int]:
    """Messages not yet consumed per assigned partition (topic high-water - position).

    Uses the high-water mark from fetch responses (exact on Kafka and on Tansu, whose
    ListOffsets answer is the last batch's offset + 1); partitions not yet fetched are left
    out.
    """
    lag = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        lag[tp.partition] = max(0, high - consumer.position(tp))
    return lag


__all__ = ["KafkaSettings", "TopicPartition", "ensure_topics", "make_consumer",
           "make_producer", "partition_lag"]
