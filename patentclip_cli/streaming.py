"""The streaming commands of ``patentclip``: publish, withdraw, reindex, serve.

    patentclip publish data/bundles/I20210105.tar --bootstrap-servers 127.0.0.1:9092
    patentclip publish /backfill/bundles/     (every weekly bundle in date order, resumable)
    patentclip withdraw D0907292              (a tombstone: the patent leaves the index)
    patentclip reindex --model local-dir:data/models/new
    patentclip serve embedder|query [flags]   (same as: python -m services.embedder|query)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from patentclip.config import CoreSettings, flag_parser, given_flags
from patentclip.errors import InvalidInputError
from patentclip.grants.model import normalize_patent_number
from patentclip_cli.common import (
    EXIT_FAILED,
    core_flags,
    figure_labeller,
    kafka_flags,
    kafka_settings,
    load_encoder,
)


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    from services.embedder.config import ConsumerSettings

    kafka = kafka_flags()
    publish = sub.add_parser("publish", parents=[common, kafka, core_flags("images_dir")],
                             help="publish grants to the grants topic (images to the store); "
                             "a folder of weekly bundles is a resumable backfill")
    publish.add_argument("sources", nargs="+", help="I20YYMMDD.tar, ipgYYMMDD.zip, a folder "
                         "of them (published in date order) or a folder of grants")
    publish.add_argument("--state", type=Path, help="backfill state file: bundles already "
                         "published are not read again (default <images-dir>/.publish/"
                         "state.json)")
    publish.add_argument("--restart", action="store_true",
                         help="ignore the state file and publish every source again")
    publish.add_argument("--report", type=Path, help="write the per-bundle report as JSON "
                         "here (default <images-dir>/.publish/report.json)")
    publish.add_argument("--no-progress", action="store_true")
    publish.set_defaults(run=_run_publish)

    withdraw = sub.add_parser("withdraw", parents=[common, kafka],
                              help="publish tombstones: withdrawn patents leave the index")
    withdraw.add_argument("patents", nargs="+", help="patent numbers (D0907292, D907,292...)")
    withdraw.set_defaults(run=_run_withdraw)

    group = flag_parser(ConsumerSettings, ("group_id",), "consumer")
    reindex = sub.add_parser("reindex", parents=[common, kafka, group,
                                                 core_flags("images_dir", "batch_size")],
                             help="re-embed the whole grants topic into a model's collection")
    reindex.set_defaults(run=_run_reindex)

    serve = sub.add_parser("serve", help="run a microservice: serve embedder|query [flags]")
    serve.add_argument("service", choices=("embedder", "query"))
    serve.add_argument("service_args", nargs=argparse.REMAINDER)
    serve.set_defaults(run=run_serve)


def _run_publish(args, settings: CoreSettings) -> int:
    from patentclip.drawings.imagestore import LocalImageStore
    from services.common.broker import ensure_topics, make_producer
    from services.publisher import GrantPublisher, PublishState

    for source in args.sources:
        if not Path(source).exists():
            raise InvalidInputError(f"{source}: no such file or folder")
    kafka = kafka_settings(args)
    ensure_topics(kafka, kafka.topic, kafka.dlq_topic)
    producer = make_producer(kafka, "publisher")
    run_dir = Path(settings.images_dir) / ".publish"
    state = PublishState(args.state or run_dir / "state.json",
                         destination=f"{kafka.bootstrap_servers}/{kafka.topic}")
    if args.restart:
        state.done.clear()  # what this run publishes is recorded again
    try:
        publisher = GrantPublisher(producer, LocalImageStore(settings.images_dir), kafka.topic,
                                   send_timeout_s=kafka.request_timeout_ms / 1000,
                                   progress=not args.no_progress, state=state,
                                   labeller=figure_labeller(settings))
        summary = publisher.publish(args.sources)
    finally:
        producer.close(timeout=10)
    report = args.report or run_dir / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(dataclasses.asdict(summary), indent=2))
    print(f"topic {kafka.topic} at {kafka.bootstrap_servers}:")
    print(summary.table())
    print("\n".join(summary.lines()))
    print(f"report: {report}")
    return EXIT_FAILED if summary.failed and not summary.published else 0


def _run_withdraw(args, settings: CoreSettings) -> int:
    from services.common.broker import make_producer
    from services.publisher import withdraw

    patents = [normalize_patent_number(p, "patent") for p in args.patents]
    kafka = kafka_settings(args)
    producer = make_producer(kafka, "publisher")
    try:
        done = withdraw(producer, kafka.topic, patents, kafka.request_timeout_ms / 1000)
    finally:
        producer.close(timeout=10)
    print(f"tombstones on {kafka.topic}: {', '.join(done)} (the embedder deletes their rows)")
    return 0


def _run_reindex(args, settings: CoreSettings) -> int:
    from services.embedder.config import ConsumerSettings, EmbedderSettings
    from services.embedder.main import reindex_topic

    encoder = load_encoder(settings)
    embedder = EmbedderSettings(settings, kafka_settings(args), ConsumerSettings.from_env())
    # only --group, never PATENTCLIP_EMBEDDER_GROUP_ID: that is the live embedder's group
    group = given_flags(args, "consumer").get("group_id", "")
    return reindex_topic(embedder, encoder, group)


def run_serve(args, settings: CoreSettings) -> int:
    if args.service == "query":
        from services.query.main import main as query_main

        return query_main(args.service_args)
    from services.embedder.main import main as embedder_main

    return embedder_main(args.service_args)

