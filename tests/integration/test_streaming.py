"""Streaming ingestion against a real broker (Tansu) and real Milvus (Lite and 2.3.5 server).

publish -> grants topic -> embedder -> Milvus: exactly one row per sheet and modality,
through crashes (SIGKILL at failpoints), poison messages, Milvus outages, two group
members and re-publishing.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace

import pytest

from harness.services import (
    EmbedderProcess,
    committed_offsets,
    http_get,
    make_bundle,
    metric_value,
    produce_foreign,
    produce_raw,
    publish,
    read_topic,
    settings,
    sheet_ids,
    stored_ids,
    wait_until,
)
from patentclip.codec.events import encode_event
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.grants.reader import GrantReader
from patentclip.store import PatentStore
from patentclip.v1 import grant_pb2
from services.embedder.consumer import GrantConsumer
from services.embedder.metrics import EmbedderMetrics


def _consume(embedder_settings, encoder, store, images_dir):
    consumer = GrantConsumer(embedder_settings, encoder, store, LocalImageStore(images_dir))
    return consumer.run(until_caught_up=True)


def test_publish_and_ingest_real_and_generated_grants_exactly_once(
        store, encoder, tiny_model_dir, kafka_settings, sample_dir, tmp_path):
    bundle = make_bundle(tmp_path / "bundles", patents=10, seed=3)
    images = tmp_path / "images"
    published = publish(kafka_settings, images, sample_dir, bundle)
    assert published.published == 50 and not published.failed
    assert published.skipped == {"not a design grant (utility)": 1}

    embedder = settings(kafka_settings, store.uri, tiny_model_dir, images, store.prefix)
    summary = _consume(embedder, encoder, store, images)
    assert summary.caught_up and summary.events == 50 and not summary.dead_lettered
    expected = sheet_ids(sample_dir, bundle)
    ids = stored_ids(store, summary.collection)
    assert len(ids) == len(expected) and set(ids) == expected

    # Metadata of a real grant made it through the event intact.
    doc = next(d for d in GrantReader().read(sample_dir) if len(d.grant.sheets) > 2)
    rows = store.patent_rows(summary.collection, doc.grant.patent_number)
    drawing = [r for r in rows if r["modality"] == "drawing"]
    assert [r["sheet"] for r in drawing] == [s.number for s in doc.grant.sheets]
    for row, sheet in zip(drawing, doc.grant.sheets, strict=True):
        assert row["title"] == doc.grant.title and row["grant_date"] == doc.grant.grant_date
        assert row["locarno"] == doc.grant.locarno.code
        assert row["view"] == doc.grant.sheet_view(sheet)
        assert row["image_uri"].startswith("file://") and row["image_uri"].endswith(
            sheet.file_name)

    # Publishing the same week again changes nothing downstream; once the topic is quiet
    # the embedder seals what it wrote (one flush), so Milvus Lite searches indexed rows.
    # This embedder also stores part tiles (PATENTCLIP_PART_TILES=0.5), beside the rows.
    again = publish(kafka_settings, images, bundle)
    assert again.published == 10
    metrics = EmbedderMetrics()
    # A batch now encodes about five times the images: the poll interval must cover it
    # (300 s by default; the tests' fast consumer has 6 s).
    tiled = replace(embedder, core=replace(embedder.core, part_tiles="0.5"),
                    consumer=replace(embedder.consumer, max_poll_interval_ms=60_000))
    consumer = GrantConsumer(tiled, encoder, store, LocalImageStore(images), metrics)
    summary = consumer.run(until_caught_up=True)
    assert summary.events == 10
    assert sorted(stored_ids(store, summary.collection)) == sorted(ids)
    flushes = metrics.registry.get_sample_value("patentclip_embedder_stage_seconds_count",
                                                {"stage": "flush"})
    assert flushes == 1
    # The week's sheets by how their figures are known (none read from labels: off by
    # default, so sheets of grants whose counts disagree stay unknown), and their parts.
    sample = {m: metrics.registry.get_sample_value(
        "patentclip_embedder_sheets_by_figures_total", {"mapping": m})
        for m in ("one-per-sheet", "unknown", "labels", "front-page")}
    documents = list(GrantReader().read(bundle))
    assert sample == {m: float(sum(s.mapping.value == m for d in documents
                                   for s in d.grant.sheets if s.file_name in d.images))
                      for m in sample}
    week = {d.grant.patent_number for d in documents}
    parts = sum(i.split("-")[0] in week for i in stored_ids(store, summary.collection,
                                                             ("part",)))
    assert parts > 0 and metrics.registry.get_sample_value(
        "patentclip_embedder_part_rows_total", {"kind": "part"}) == parts


def test_poison_messages_are_dead_lettered_and_the_rest_ingested(
        tmp_path, encoder, tiny_model_dir, kafka_settings):
    bundle = make_bundle(tmp_path / "bundles", patents=6, seed=4)
    images = tmp_path / "images"
    published = publish(kafka_settings, images, bundle)
    documents = list(GrantReader().read(bundle))
    good = documents[0].grant
    missing = replace(good, patent_number="D0999001", sheets=tuple(
        replace(s, image_uri=(images / "D0999001" / s.file_name).as_uri())
        for s in good.sheets))
    corrupt_uri = LocalImageStore(images).put("D0999002", "D0999002-20210105-D00001.TIF",
                                              b"II*\x00 this is not a TIFF")
    corrupt = replace(good, patent_number="D0999002",
                      sheets=(replace(good.sheets[0], image_uri=corrupt_uri),))

    future = grant_pb2.GrantEvent(schema_version=99).SerializeToString()
    limit = 64 * 1024  # events are a few KB; this one carries 200 KB of padding
    oversized = encode_event(replace(good, patent_number="D0999004",
                                     claim="ornamental " * 20_000))
    produce_raw(kafka_settings, [
        (b"D0999000", b"\x08\x96\x01\xff\xfe random bytes, not a protobuf"),
        (b"D0999001", encode_event(missing)),
        (b"D0999002", encode_event(corrupt)),
        (b"D0999003", future),
        (b"D0999004", oversized),
        # producers that are not ours: a key that is not the event's patent, no key at all,
        # and a tombstone whose key is no patent number
        (b"D0999005", encode_event(replace(missing, patent_number="D0999998"))),
        (None, encode_event(replace(missing, patent_number="D0999997"))),
        (b"junk", None),
    ])
    store = PatentStore(str(tmp_path / "patents.db"), prefix="poison")
    embedder = settings(kafka_settings, store.uri, tiny_model_dir, images, "poison")
    embedder = replace(embedder, kafka=replace(embedder.kafka, max_event_bytes=limit))
    summary = _consume(embedder, encoder, store, images)
    assert summary.caught_up and summary.events == published.published + 8
    assert summary.dead_lettered == {"undecodable_event": 1, "missing_image": 1,
                                     "corrupt_image": 1, "unsupported_schema_version": 1,
                                     "oversized_event": 1, "key_mismatch": 3}
    assert set(stored_ids(store, summary.collection)) == sheet_ids(bundle)

    letters = read_topic(kafka_settings, kafka_settings.dlq_topic, expected=8)
    by_key = {m.key: dict(m.headers) for m in letters}
    values = {m.key: m.value for m in letters}
    assert set(by_key) == {b"D0999000", b"D0999001", b"D0999002", b"D0999003", b"D0999004",
                           b"D0999005", None, b"junk"}
    for key in (b"D0999005", None, b"junk"):
        assert by_key[key]["patentclip.reason"] == b"key_mismatch"
    assert b"key 'D0999005' but the event is grant D0999998" in \
        by_key[b"D0999005"]["patentclip.detail"]
    assert b"no key but the event is grant D0999997" in by_key[None]["patentclip.detail"]
    assert "dead-lettered-unix-ms" in {k.removeprefix("patentclip.") for k in by_key[None]}
    assert by_key[b"D0999004"]["patentclip.reason"] == b"oversized_event"
    assert int(by_key[b"D0999004"]["patentclip.value-bytes"]) == len(oversized) > limit
    assert values[b"D0999004"] == oversized[:limit]  # the whole event stays in the topic
    assert values[b"D0999003"] == future
    assert by_key[b"D0999000"]["patentclip.reason"] == b"undecodable_event"
    assert by_key[b"D0999001"]["patentclip.reason"] == b"missing_image"
    assert b"no such image" in by_key[b"D0999001"]["patentclip.detail"]
    assert by_key[b"D0999002"]["patentclip.reason"] == b"corrupt_image"
    assert by_key[b"D0999002"]["patentclip.failed-sheets"] == good.sheets[0].file_name.encode()
    assert by_key[b"D0999003"]["patentclip.reason"] == b"unsupported_schema_version"
    for headers in by_key.values():
        assert headers["patentclip.source.topic"] == kafka_settings.topic.encode()
        assert int(headers["patentclip.source.offset"]) >= 0
    store.close()


def test_tombstones_withdraw_patents_live_and_in_a_reindex(
        tmp_path, encoder, tiny_model_dir, kafka_settings, capsys):
    """A null value keyed by patent means "this patent is gone": its rows leave the live
    collection, and a reindex replaying the topic from offset 0 leaves them out too. The
    last event of a patent wins: a grant published again after its tombstone is back."""
    from patentclip.codec.events import event_key
    from patentclip.model.encoder import create_tiny_model
    from patentclip_cli.main import main
    from services.embedder.main import reindex_topic

    bundle = make_bundle(tmp_path / "bundles", patents=5, seed=11)
    images = tmp_path / "images"
    publish(kafka_settings, images, bundle)
    grants = [d.grant for d in GrantReader().read(bundle)]
    gone, back = grants[0], grants[1]
    digits = gone.patent_number[1:].lstrip("0")
    assert main(["withdraw", f"D{digits[:-3]},{digits[-3:]}", "--bootstrap-servers",
                 kafka_settings.bootstrap_servers, "--topic", kafka_settings.topic]) == 0
    assert gone.patent_number in capsys.readouterr().out
    republished = LocalImageStore(images)  # a producer that is not ours: tombstone, re-grant
    from patentclip.drawings.imagestore import store_grant

    document = next(d for d in GrantReader().read(bundle)
                    if d.grant.patent_number == back.patent_number)
    produce_raw(kafka_settings, [(event_key(back), None),
                                 (event_key(back), encode_event(store_grant(republished,
                                                                            document)))])
    expected = {i for i in sheet_ids(bundle) if not i.startswith(gone.patent_number)}
    db = str(tmp_path / "patents.db")
    embedder = settings(kafka_settings, db, tiny_model_dir, images, "withdraw")
    with PatentStore(db, prefix="withdraw") as store:
        summary = _consume(embedder, encoder, store, images)
        assert summary.withdrawn == 2 and not summary.dead_lettered
        assert set(stored_ids(store, summary.collection)) == expected
        live = summary.collection
    new_model = create_tiny_model(tmp_path / "tiny-v2", seed=1)
    reindexed = replace(embedder, core=replace(embedder.core, model=f"local-dir:{new_model}"))
    from patentclip.model.encoder import Encoder

    assert reindex_topic(reindexed, Encoder.load(f"local-dir:{new_model}"), progress=False) == 0
    with PatentStore(db, prefix="withdraw") as store:
        new = next(c for c in store.list_collections() if c != live)
        assert set(stored_ids(store, new)) == expected


# Each crash point once, on each backend once (a process per case costs ~20 s).
@pytest.mark.parametrize(("shared_milvus_uri", "failpoint"), [
    ("lite", "before_upsert@2"), ("server", "after_upsert@2")], indirect=["shared_milvus_uri"])
def test_sigkill_mid_batch_loses_and_duplicates_nothing(
        failpoint, shared_milvus_uri, encoder, tiny_model_dir, kafka_settings, tmp_path):
    bundle = make_bundle(tmp_path / "bundles", patents=24, seed=5)
    images = tmp_path / "images"
    publish(kafka_settings, images, bundle)
    prefix = f"k{uuid.uuid4().hex[:6]}"
    embedder = settings(kafka_settings, shared_milvus_uri, tiny_model_dir, images, prefix,
                        group_id=f"g-{prefix}", batch_grants=4)
    process = EmbedderProcess(embedder, tmp_path / "embedder.log", failpoint=failpoint)
    process.wait_for(f"FAILPOINT {failpoint} reached", timeout=90)
    committed_before_kill = sum(committed_offsets(kafka_settings, embedder.consumer.group_id)
                                .values())
    process.kill()  # SIGKILL in the middle of the second batch
    assert committed_before_kill == 4  # only the first batch was committed

    with PatentStore(shared_milvus_uri, prefix=prefix) as store:
        summary = _consume(embedder, encoder, store, images)
        assert summary.caught_up
        assert summary.events == 20  # the uncommitted batch came back, nothing else
        ids = stored_ids(store, summary.collection)
        assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(bundle)
        store.drop(summary.collection)


def test_milvus_outage_pauses_ingestion_and_loses_nothing(
        lite_server, tiny_model_dir, kafka_settings, tmp_path, monkeypatch):
    from services.embedder.main import main

    bundle = make_bundle(tmp_path / "bundles", patents=12, seed=6)
    images = tmp_path / "images"
    group = f"g-{uuid.uuid4().hex[:6]}"
    port = _free_port()
    _service_env(monkeypatch, kafka_settings, lite_server.uri, tiny_model_dir, images,
                 group, port)
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main([], stop=stop)))
    thread.start()
    try:
        wait_until(lambda: http_get(port, "/readyz")[0] == 200, 60, "embedder ready")
        assert http_get(port, "/healthz") == (200, "alive")
        lite_server.stop()
        publish(kafka_settings, images, bundle)
        wait_until(lambda: http_get(port, "/readyz")[0] == 503, 60, "readiness to drop")
        status, reason = http_get(port, "/readyz")
        assert "waiting for milvus" in reason
        assert http_get(port, "/healthz")[0] == 200  # alive: k8s must not restart it
        assert sum(committed_offsets(kafka_settings, group).values()) == 0

        lite_server.start()
        wait_until(lambda: metric_value(port, "patentclip_embedder_grants_ingested_total") == 12,
                   90, "all grants ingested after Milvus came back")
        assert http_get(port, "/readyz")[0] == 200
        assert metric_value(port, 'patentclip_embedder_retries_total{dependency="milvus"}') >= 1
        wait_until(lambda: sum(committed_offsets(kafka_settings, group).values()) == 12, 30,
                   "offsets committed")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert result == [0]
    with PatentStore(lite_server.uri, prefix="outage") as store:
        name = store.list_collections()[0]
        ids = stored_ids(store, name)
        assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(bundle)


def test_two_processes_in_one_group_split_partitions_and_ingest_once(
        milvus_server_uri, encoder, tiny_model_dir, kafka_settings, tmp_path):
    bundle = make_bundle(tmp_path / "bundles", patents=32, seed=8)
    images = tmp_path / "images"
    prefix = f"s{uuid.uuid4().hex[:6]}"
    embedder = settings(kafka_settings, milvus_server_uri, tiny_model_dir, images, prefix,
                        group_id=f"g-{prefix}", batch_grants=4)
    publish(kafka_settings, images)  # creates the topic (4 partitions) before anyone joins
    ports = [_free_port(), _free_port()]
    members = [EmbedderProcess(embedder, tmp_path / f"embedder{i}.log", metrics_port=port)
               for i, port in enumerate(ports)]
    try:
        for member in members:
            member.wait_for("partitions assigned", timeout=90)
        wait_until(lambda: _split(_assignments(members)), 60, "both members to hold partitions")
        split = _assignments(members)  # before anything is published
        publish(kafka_settings, images, bundle)
        wait_until(lambda: sum(metric_value(p, "patentclip_embedder_grants_ingested_total")
                               for p in ports) >= 32, 120, "32 grants ingested")
        consumed = [metric_value(p, "patentclip_embedder_messages_consumed_total") for p in ports]
        assert sum(consumed) == 32 and all(consumed), consumed
        codes = [member.terminate() for member in members]  # SIGTERM: graceful
        assert codes == [0, 0]
        assert all("leaving the group" in m.text() for m in members)
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.kill()
    assert _split(split)  # (after SIGTERM the last member briefly holds all four)
    with PatentStore(milvus_server_uri, prefix=prefix) as store:
        name = store.list_collections()[0]
        ids = stored_ids(store, name)
        assert len(ids) == len(set(ids)) and set(ids) == sheet_ids(bundle)
        store.drop_alias(store.live_alias)
        store.drop(name)


def test_reindex_replays_the_topic_into_a_new_model_without_touching_live(
        tmp_path, encoder, tiny_model_dir, kafka_settings, monkeypatch, capsys):
    from patentclip.model.encoder import create_tiny_model
    from patentclip_cli.main import main

    bundle = make_bundle(tmp_path / "bundles", patents=8, seed=9)
    images = tmp_path / "images"
    broker = ["--bootstrap-servers", kafka_settings.bootstrap_servers, "--topic",
              kafka_settings.topic]
    assert main(["publish", str(bundle), "--images-dir", str(images), "--no-progress",
                 *broker]) == 0
    out = capsys.readouterr().out
    assert "published 8 grants" in out and "skipped 1: not a design grant (utility)" in out
    assert main(["publish", str(tmp_path / "nope.tar"), *broker]) == 2
    assert "nope.tar: no such file" in capsys.readouterr().err
    db = str(tmp_path / "patents.db")
    embedder = settings(kafka_settings, db, tiny_model_dir, images, "patentclip")
    with PatentStore(db) as store:
        live = _consume(embedder, encoder, store, images).collection
    new_model = create_tiny_model(tmp_path / "tiny-v2", seed=1)
    for name, value in {"SESSION_TIMEOUT_MS": "3000", "MAX_POLL_INTERVAL_MS": "6000",
                        "BATCH_MAX_WAIT_MS": "200"}.items():
        monkeypatch.setenv(f"PATENTCLIP_EMBEDDER_{name}", value)
    code = main(["reindex", "--model", f"local-dir:{new_model}", "--milvus-uri", db,
                 "--images-dir", str(images), *broker])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reindexed 8 events" in out and "caught up" in out
    with PatentStore(db) as store:
        collections = store.list_collections()
        assert len(collections) == 2
        new = next(c for c in collections if c != live)
        assert store.resolve(store.live_alias) == live
        assert set(stored_ids(store, new)) == set(stored_ids(store, live)) == sheet_ids(bundle)


# ----------------------------------------------------------------------------- helpers


def _free_port() -> int:
    from harness.processes import free_port

    return free_port()


def _service_env(monkeypatch, kafka, milvus_uri, model_dir, images, group, port) -> None:
    values = {
        "PATENTCLIP_MODEL": f"local-dir:{model_dir}", "PATENTCLIP_MILVUS_URI": milvus_uri,
        "PATENTCLIP_IMAGES_DIR": str(images), "PATENTCLIP_COLLECTION_PREFIX": "outage",
        "PATENTCLIP_MILVUS_TIMEOUT_S": "3",
        "PATENTCLIP_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "PATENTCLIP_KAFKA_TOPIC": kafka.topic, "PATENTCLIP_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "PATENTCLIP_KAFKA_PARTITIONS": "4", "PATENTCLIP_EMBEDDER_GROUP_ID": group,
        "PATENTCLIP_EMBEDDER_SESSION_TIMEOUT_MS": "3000",
        "PATENTCLIP_EMBEDDER_MAX_POLL_INTERVAL_MS": "6000",
        "PATENTCLIP_EMBEDDER_BATCH_MAX_WAIT_MS": "200",
        "PATENTCLIP_EMBEDDER_RETRY_INITIAL_S": "0.2", "PATENTCLIP_EMBEDDER_RETRY_MAX_S": "1",
        "PATENTCLIP_EMBEDDER_METRICS_HOST": "127.0.0.1",
        "PATENTCLIP_EMBEDDER_METRICS_PORT": str(port),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _split(assignments) -> bool:
    """Two members with disjoint, non-empty partition sets covering all four."""
    if not assignments:
        return False
    a, b = assignments
    return bool(a and b and not a & b and a | b == {0, 1, 2, 3})


def _assignments(members) -> list[set[int]] | None:
    """Each member's latest 'partitions assigned: [...]' from its log."""
    latest = []
    for member in members:
        lines = [line for line in member.text().splitlines() if "partitions assigned:" in line]
        if not lines:
            return None
        latest.append(set(json.loads(lines[-1].split("partitions assigned:")[1].strip())))
    return latest if all(latest) else None


def test_hostile_events_from_a_foreign_producer_are_dead_lettered_and_nothing_stalls(
        tmp_path, encoder, tiny_model_dir, kafka_settings):
    """Events a librdkafka producer writes that our publisher never would: each is
    dead-lettered with the field named (or the URI's fault), none crashes, crash-loops or
    stalls the embedder, and every good grant is ingested."""
    bundle = make_bundle(tmp_path / "bundles", patents=4, seed=9)
    images = tmp_path / "images"
    published = publish(kafka_settings, images, bundle)
    good = grant_pb2.Grant()
    good.ParseFromString(LocalImageStore(images).get(LocalImageStore(images).uri_for(
        next(iter(GrantReader().read(bundle))).grant.patent_number, "grant.pb")))
    inside = good.sheets[0].image_uri.rsplit("/", 1)[0]

    def event(number: str, change) -> tuple[bytes, bytes]:
        grant = grant_pb2.Grant()
        grant.CopyFrom(good)
        grant.patent_number = number
        change(grant)
        return number.encode("utf-8"), grant_pb2.GrantEvent(
            schema_version=1, grant=grant).SerializeToString()

    def set_uri(uri):
        return lambda g: setattr(g.sheets[0], "image_uri", uri)

    def set_locarno(g):
        g.locarno.code = "<!--"

    def markup_figure(g):
        g.sheets[0].figure_numbers[:] = ['1<meta http-equiv="refresh" content="0;url=//x">']

    hostile = [
        event("D0999101", set_uri(inside + "/a\x00b.TIF")),  # a NUL: was a crash loop
        event("D0999102", set_uri(inside + "/" + "a" * 400 + ".TIF")),  # ENAMETOOLONG: stalled
        event("D0999103", set_uri(good.sheets[1].image_uri + "/x.TIF")),  # through a file
        event("D0999104", set_locarno),
        event("D0999105", markup_figure),
        event(arabic := "D٠٩٩٩١٠٧", lambda g: None),  # non-ASCII digits: passed, then raised
    ]
    produce_foreign(kafka_settings, hostile)
    store = PatentStore(str(tmp_path / "patents.db"), prefix="hostile")
    summary = _consume(settings(kafka_settings, store.uri, tiny_model_dir, images, "hostile"),
                       encoder, store, images)
    assert summary.caught_up and summary.events == published.published + len(hostile)
    assert summary.dead_lettered == {"invalid_grant": 4, "missing_image": 2}
    stored = set(stored_ids(store, summary.collection))
    assert sheet_ids(bundle) <= stored  # every good grant
    refused = {"D0999101", "D0999104", "D0999105"}  # invalid: none of their sheets
    assert not {i for i in stored if i.split("-")[0] in refused}
    # a URI's fault costs that sheet only (dead-lettered by name), as a corrupt TIFF does
    first = f"-{good.sheets[0].number:03d}:"
    assert not {i for i in stored if i.startswith(("D0999102" + first, "D0999103" + first))}
    letters = read_topic(kafka_settings, kafka_settings.dlq_topic, expected=len(hostile))
    detail = {m.key: dict(m.headers)["patentclip.detail"].decode() for m in letters}
    assert "sheets[0].image_uri" in detail[b"D0999101"]
    assert "File name too long" in detail[b"D0999102"]
    assert "Not a directory" in detail[b"D0999103"]
    assert "locarno.code" in detail[b"D0999104"]
    assert "figure_numbers[0]" in detail[b"D0999105"]
    assert "patent_number" in detail[arabic.encode()]
    store.close()
