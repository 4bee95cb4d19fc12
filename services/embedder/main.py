"""``python -m services.embedder`` / ``patentclip serve embedder``: run one group member.

Settings: PATENTCLIP_* environment variables (see .env.example), then flags. SIGTERM or
SIGINT stops it gracefully: the batch being written is finished and committed, the next
one is abandoned uncommitted, and the consumer leaves its group.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from patentclip.config import service_parser
from patentclip.errors import PatentClipError
from services.common.broker import ensure_topics
from services.common.observability import ProbeServer, configure_logging, install_stop_signals
from services.embedder.config import EmbedderSettings, embedder_group
from services.embedder.consumer import GrantConsumer
from services.embedder.metrics import EmbedderMetrics

logger = logging.getLogger(__name__)


# The settings offered as flags (help, type and env name come from their declarations).
FLAGS = {"core": ("model", "pretrained", "device", "batch_size", "milvus_uri", "images_dir"),
         "kafka": ("bootstrap_servers", "topic", "dlq_topic", "partitions"),
         "consumer": ("group_id", "batch_grants", "batch_max_wait_ms", "metrics_port")}


def parser() -> argparse.ArgumentParser:
    return service_parser("python -m services.embedder",
                          "Embedding microservice: grants topic -> Milvus", EmbedderSettings, FLAGS)


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set, for in-process tests)."""
    args = parser().parse_args(argv)
    configure_logging(args.verbose)
    stop = stop or threading.Event()
    try:
        settings = EmbedderSettings.from_env(args=args)
        settings.consumer.validate()
        return run(settings, stop)
    except PatentClipError as exc:
        logger.error("embedder cannot run: %s", exc)
        return 1


def run(settings: EmbedderSettings, stop: threading.Event, until_caught_up: bool = False,
        progress: bool = False, encoder=None) -> int:
    """Consume with ``settings`` until stopped (or caught up); returns the exit code."""
    from patentclip.drawings.imagestore import LocalImageStore
    from patentclip.model.encoder import Encoder
    from patentclip.store import open_store

    install_stop_signals(stop, "finishing the current batch, then leaving the group")
    metrics = EmbedderMetrics()
    consumer: GrantConsumer | None = None

    def ready() -> tuple[bool, str]:
        reason = consumer.ready_reason if consumer else "loading the model"
        return not reason, reason

    probes = None
    if settings.consumer.metrics_port:
        probes = ProbeServer(metrics.registry, settings.consumer.metrics_host,
                             settings.consumer.metrics_port,
                             live=lambda: (True, "alive"), ready=ready).start()
    try:
        core = settings.core
        encoder = encoder or Encoder.from_settings(core)
        ensure_topics(settings.kafka, settings.kafka.topic, settings.kafka.dlq_topic)
        with open_store(core) as store:
            consumer = GrantConsumer(settings, encoder, store, LocalImageStore(core.images_dir),
                                     metrics, stop, progress=progress)
            summary = consumer.run(until_caught_up=until_caught_up)
        logger.info("embedder stopped: %d events, %d sheets, %d rows, dead-lettered %s",
                    summary.events, summary.sheets, summary.rows, summary.dead_lettered or 0)
        if until_caught_up:
            print(f"reindexed {summary.events} events, {summary.sheets} sheets "
                  f"({summary.rows} rows) into {summary.collection} in {summary.seconds:.1f}s; "
                  f"dead-lettered {summary.dead_lettered or 0}; "
                  f"{'caught up' if summary.caught_up else 'stopped before catching up'}")
            return 0 if summary.caught_up else 1
        return 0
    finally:
        if probes:
            probes.stop()


def reindex_topic(settings: EmbedderSettings, encoder, group: str = "",
                  progress: bool = True, stop: threading.Event | None = None) -> int:
    """Replay the whole grants topic into ``encoder``'s collection; the live alias is not
    touched. The default group is the version's embedder group (``embedder_group``): a new
    version has no offsets there, so it starts at offset 0, and the embedder started for
    that version later continues where this stopped. Returns 0 once caught up."""
    group = group or embedder_group(encoder.model_version)
    settings = settings.override(consumer={"group_id": group, "set_live_if_missing": False,
                                           "metrics_port": 0})
    print(f"reindexing topic {settings.kafka.topic} from the start with group {group} "
          f"into model {encoder.model_version}'s collection (the live alias is not touched)",
          flush=True)
    return run(settings, stop or threading.Event(), until_caught_up=True, progress=progress,
               encoder=encoder)


if __name__ == "__main__":
    sys.exit(main())
