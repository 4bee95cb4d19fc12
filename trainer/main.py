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

from patentclip.encoder import Encoder
from patentclip.errors import PatentClipError
from patentclip.registry import ModelVersion
from patentclip.store import collection_name, open_store
from services.embedder.config import EmbedderSettings
from services.embedder.main import reindex_topic
from services.observability import ProbeServer, configure_logging, install_stop_signals
from trainer.config import TrainerSettings
from trainer.metrics import TrainerMetrics
from trainer.pipeline import CycleResult, TrainingCycle
from trainer.rollout import Reindex

logger = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n")[0])
    p.add_argument("--once", action="store_true", help="run one cycle now, then exit")
    p.add_argument("--now", action="store_true",
                   help="run one cycle at start, then follow the schedule (metrics stay up)")
    p.add_argument("--policy", choices=("auto", "approve"))
    p.add_argument("--base-model", help="fine-tune from this (default: the live model)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--loss", help="contrastive | plain | logit_adjusted | class_balanced")
    p.add_argument("--batch-size", type=int, help="training micro-batch")
    p.add_argument("--accum-freq", type=int, help="micro-batches per optimizer step")
    p.add_argument("--cls-weight", type=float, help="lambda of the classification term")
    p.add_argument("--sampling", help="uniform | class_aware")
    p.add_argument("--lock-image-unlocked", type=int,
                   help="lock the image tower except its last N groups (-1: train it all)")
    p.add_argument("--lock-text-unlocked", type=int,
                   help="lock the text tower except its last N layers (-1: train it all)")
    p.add_argument("--seed", type=int)
    p.add_argument("--captions", help="comma-separated CSVs with id,caption columns")
    p.add_argument("--eval-set", help="frozen evaluation set name (default: newest week)")
    p.add_argument("--eval-weeks", type=int, help="newest weeks a new evaluation set takes")
    p.add_argument("--runs-dir")
    p.add_argument("--metrics-port", type=int, help="/metrics /healthz /readyz; 0 = off")
    p.add_argument("--bootstrap-servers", help="Kafka, for the reindex of a rollout")
    p.add_argument("--topic")
    p.add_argument("--milvus-uri")
    p.add_argument("--images-dir")
    p.add_argument("--registry-dir")
    p.add_argument("--device")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def settings_from(args: argparse.Namespace, env=None) -> TrainerSettings:
    return TrainerSettings.from_env(env).override(
        core={"milvus_uri": args.milvus_uri, "images_dir": args.images_dir,
              "registry_dir": args.registry_dir, "device": args.device},
        kafka={"bootstrap_servers": args.bootstrap_servers, "topic": args.topic},
        job={"policy": args.policy, "base_model": args.base_model, "epochs": args.epochs,
             "lr": args.lr, "warmup_steps": args.warmup_steps, "loss": args.loss,
             "eval_set": args.eval_set,
             "runs_dir": args.runs_dir, "metrics_port": args.metrics_port,
             "batch_size": args.batch_size, "accum_freq": args.accum_freq,
             "cls_weight": args.cls_weight, "sampling": args.sampling, "seed": args.seed,
             "lock_image_unlocked": args.lock_image_unlocked,
             "lock_text_unlocked": args.lock_text_unlocked,
             "caption_files": args.captions, "eval_weeks": args.eval_weeks})


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose)
    stop = stop or threading.Event()
    try:
        settings = settings_from(args)
        settings.job.validate()
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
            cycle = TrainingCycle(settings.core, settings.job.plan(settings.core.device), store,
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
