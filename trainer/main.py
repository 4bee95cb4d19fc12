"""``python -m trainer``: the trainer service.

Runs one cycle (data -> fine-tune from live -> benchmark -> register -> rollout or wait for
approval) every week at ``schedule_weekday``/``schedule_hour_utc`` (default Wednesday 06:00
UTC, after Tuesday's grants are ingested), or once now with ``--once``. SIGTERM/SIGINT stop
it between steps; a fine-tune stops at the next step and resumes from its last epoch
checkpoint on the next cycle. /metrics, /healthz and /readyz on ``metrics_port``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from datetime import UTC, datetime, timedelta

from patentclip.config import service_parser
from patentclip.errors import PatentClipError
from patentclip.model.encoder import Encoder
from patentclip.model.registry import ModelVersion
from patentclip.store import collection_name, open_store
from services.common.observability import ProbeServer, configure_logging, install_stop_signals
from services.embedder.config import EmbedderSettings
from services.embedder.main import reindex_topic
from trainer.config import TrainerSettings
from trainer.metrics import TrainerMetrics
from trainer.pipeline import CycleResult, TrainingCycle
from trainer.rollout import Reindex

logger = logging.getLogger(__name__)


# Flags, from the settings' own declarations (help and env names come with them).
FLAGS = {"train": ("base_model", "epochs", "lr", "warmup_steps", "regularize", "anchor_model",
                   "weight_decay", "loss", "batch_size",
                   "accum_freq", "cls_weight", "sampling", "lock_image_unlocked",
                   "lock_text_unlocked", "seed"),
         "job": ("policy", "eval_set", "eval_weeks", "runs_dir", "metrics_port", "caption_files"),
         "core": ("milvus_uri", "images_dir", "registry_dir", "device"),
         "kafka": ("bootstrap_servers", "topic")}


def parser() -> argparse.ArgumentParser:
    p = service_parser("python -m trainer", __doc__.split("\n")[0], TrainerSettings, FLAGS)
    p.add_argument("--once", action="store_true", help="run one cycle now, then exit")
    p.add_argument("--now", action="store_true",
                   help="run one cycle at start, then follow the schedule (metrics stay up)")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    return p


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose)
    stop = stop or threading.Event()
    try:
        settings = TrainerSettings.from_env(args=args)
        settings.validate()
    except PatentClipError as exc:
        logger.error("trainer cannot run: %s", exc)
        return 1
    install_stop_signals(stop, "stopping after the current step")
    metrics = TrainerMetrics()
    probes = None
    if settings.job.metrics_port:
        probes = ProbeServer(metrics.registry, settings.job.metrics_host,
                             settings.job.metrics_port, live=lambda: (True, "alive"),
                             ready=lambda: (True, "ready")).start()
    try:
        if args.once:
            result = run_cycle(settings, metrics, stop, args.progress)
            return 0 if result.status == "succeeded" else 1
        if args.now:
            run_cycle(settings, metrics, stop, args.progress)
        while not stop.is_set():
            when = next_run(datetime.now(UTC), settings.job.schedule_weekday,
                            settings.job.schedule_hour_utc)
            logger.info("next trainer cycle at %s", when.isoformat(timespec="minutes"))
            if stop.wait((when - datetime.now(UTC)).total_seconds()):
                break
            run_cycle(settings, metrics, stop, args.progress)
        return 0
    finally:
        if probes:
            probes.stop()


def run_cycle(settings: TrainerSettings, metrics: TrainerMetrics, stop: threading.Event,
              progress: bool = False) -> CycleResult:
    """One cycle; any failure is logged, counted and returned, never raised."""
    try:
        with open_store(settings.core) as store:
            cycle = TrainingCycle(settings.core, settings.plan(), store,
                                  topic_reindexer(settings, stop), stop, progress,
                                  on_step=metrics.set_step)
            result = cycle.run()
    except PatentClipError as exc:
        logger.error("trainer cycle failed: %s", exc)
        result = CycleResult(status="failed", reasons=[str(exc)])
    except Exception:  # a bug: keep the service alive for next week, with the traceback
        logger.exception("trainer cycle failed unexpectedly")
        result = CycleResult(status="failed", reasons=["unexpected error (see log)"])
    for reason in result.reasons:
        logger.info("  %s", reason)
    metrics.record(result)
    return result


def topic_reindexer(settings: TrainerSettings, stop: threading.Event | None = None
                    ) -> Reindex:
    """Rollout's reindex: replay the grants topic into the candidate's collection."""
    def reindex(version: ModelVersion) -> str:
        core = settings.core
        encoder = Encoder.load(version.spec, **core.encoder_options())
        embedder = EmbedderSettings(core, settings.kafka, settings.consumer)
        if reindex_topic(embedder, encoder, progress=False, stop=stop) != 0:
            raise PatentClipError(f"reindex of {version.version} stopped before catching up "
                                  "with the grants topic")
        name = collection_name(core.collection_prefix, encoder.model_version)
        with open_store(core) as store:  # the alias moves only to a sealed, indexed collection
            store.flush(name)
            store.wait_indexed(name)
        return name

    return reindex


def next_run(now: datetime, weekday: int, hour: int) -> datetime:
    """The next ``weekday`` at ``hour``:00 UTC strictly after ``now``."""
    candidate = now.replace(hour=hour, minute=0, second=0, microsecond=0) + \
        timedelta(days=(weekday - now.weekday()) % 7)
    return candidate if candidate > now else candidate + timedelta(days=7)


if __name__ == "__main__":
    sys.exit(main())
