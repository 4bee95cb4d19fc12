"""Pure logic of the streaming path: events, settings, back-off, failpoints, dead letters."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest

from harness import REPO
from patentclip.codec.events import decode_event, encode_event, event_key
from patentclip.config import CoreSettings, settings_from_env
from patentclip.errors import EventDecodeError, InvalidInputError, UnavailableError
from patentclip.grants.model import (
    DrawingSheet,
    Figure,
    Grant,
    LocarnoClass,
    SheetFigureMapping,
    UspcClass,
    View,
)
from patentclip.ingest.sheets import SheetFailure, SheetJob
from patentclip.v1 import grant_pb2
from services.common.failpoints import Failpoints
from services.common.retry import Backoff, Stopping
from services.embedder.config import ConsumerSettings, EmbedderSettings
from services.embedder.consumer import DeadLetter, _dead_letters_for, _dlq_headers


def _grant(**changes) -> Grant:
    grant = Grant(
        patent_number="D0907292", kind="S1", title="Shaving blade cartridge",
        grant_date=20210105, locarno=LocarnoClass("2803", "13"),
        uspc=(UspcClass("D28 47"), UspcClass("D28 48", main=False)), claim="The design.",
        figures=(Figure("1", View.PERSPECTIVE, "front perspective view",
                        "FIG. 1 is a front perspective view of a cartridge;"),
                 Figure("2", View.BOTTOM, "bottom view", "FIG. 2 is a bottom view thereof.")),
        sheets=(DrawingSheet(0, "a-D00000.TIF", ("1",), SheetFigureMapping.FRONT_PAGE,
                             "file:///img/a-D00000.TIF"),
                DrawingSheet(1, "a-D00001.TIF", ("1",), SheetFigureMapping.ONE_PER_SHEET,
                             "file:///img/a-D00001.TIF"),
                DrawingSheet(2, "a-D00002.TIF", ("2",), SheetFigureMapping.ONE_PER_SHEET,
                             "file:///img/a-D00002.TIF")),
        drawing_notes=("The broken lines form no part of the claimed design.",),
        dtd_version="v4.5", source="I20210105.tar/DESIGN/USD0907292-20210105.ZIP")
    return replace(grant, **changes)


def test_event_round_trip_keeps_every_field():
    grant = _grant()
    published = decode_event(encode_event(grant, bundle="I20210105.tar", published_unix_ms=7))
    assert published.grant == grant
    assert (published.bundle, published.published_unix_ms, published.schema_version) == \
        ("I20210105.tar", 7, 1)
    assert event_key(grant) == b"D0907292"


def test_event_encoding_is_deterministic():
    """Re-publishing a week sends byte-identical events."""
    assert encode_event(_grant(), "b", 1) == encode_event(_grant(), "b", 1)


def test_every_view_survives_the_protobuf_enum():
    for view in View:
        figure = Figure("1", view, view.value, "FIG. 1 is a view.")
        assert decode_event(encode_event(_grant(figures=(figure,)))).grant.figures[0].view \
            is view


def test_grant_without_locarno_round_trips_as_none():
    assert decode_event(encode_event(_grant(locarno=None))).grant.locarno is None


@pytest.mark.parametrize(("data", "reason", "words"), [
    (b"", "undecodable_event", "empty"),
    (b"\xff\xfe\x00garbage", "undecodable_event", "not a GrantEvent"),
    (grant_pb2.GrantEvent(schema_version=2).SerializeToString(),
     "unsupported_schema_version", "schema_version 2"),
    (grant_pb2.GrantEvent(bundle="b").SerializeToString(), "unsupported_schema_version",
     "schema_version 0"),
])
def test_unusable_events_say_why(data, reason, words):
    with pytest.raises(EventDecodeError) as info:
        decode_event(data)
    assert info.value.reason == reason and words in str(info.value)


@pytest.mark.parametrize(("grant", "words"), [
    (_grant(patent_number="../etc"), "patent_number '../etc'"),
    (_grant(grant_date=2021), "grant_date 2021"),
    (_grant(sheets=(DrawingSheet(3, "x.TIF"),)), "sheet 3 has no image_uri"),
])
def test_invalid_grant_fields_are_named(grant, words):
    with pytest.raises(EventDecodeError) as info:
        decode_event(encode_event(grant))
    assert info.value.reason == "invalid_grant" and words in str(info.value)


def test_settings_from_env_converts_types_and_names_bad_values():
    env = {"PATENTCLIP_EMBEDDER_BATCH_GRANTS": "32", "PATENTCLIP_EMBEDDER_RETRY_MAX_S": "2.5",
           "PATENTCLIP_EMBEDDER_SET_LIVE_IF_MISSING": "false",
           "PATENTCLIP_KAFKA_TOPIC": "t", "PATENTCLIP_MODEL": "local-dir:m"}
    settings = EmbedderSettings.from_env(env)
    assert settings.consumer.batch_grants == 32 and settings.consumer.retry_max_s == 2.5
    assert settings.consumer.set_live_if_missing is False
    assert settings.kafka.topic == "t" and settings.kafka.dlq_topic == "uspto.design-grants.dlq"
    assert settings.core.model == "local-dir:m"
    with pytest.raises(InvalidInputError, match="PATENTCLIP_EMBEDDER_BATCH_GRANTS='many'"):
        settings_from_env(ConsumerSettings, "PATENTCLIP_EMBEDDER_",
                          {"PATENTCLIP_EMBEDDER_BATCH_GRANTS": "many"})


def test_flags_override_env_only_when_given():
    settings = EmbedderSettings(CoreSettings(device="cuda"))
    changed = settings.override(core={"device": None, "model": "x"}, kafka={"topic": "t2"})
    assert changed.core.device == "cuda" and changed.core.model == "x"
    assert changed.kafka.topic == "t2"


@pytest.mark.parametrize("changes", [{"batch_grants": 0}, {"decode_workers": 0},
                                     {"retry_initial_s": 5.0, "retry_max_s": 1.0}])
def test_consumer_settings_validation(changes):
    with pytest.raises(InvalidInputError):
        replace(ConsumerSettings(), **changes).validate()


def test_backoff_retries_retriable_errors_with_capped_delays():
    calls, waits = [], []
    backoff = Backoff(0.001, 0.002, threading.Event(),
                      on_retry=lambda dep, exc: waits.append(dep))

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise UnavailableError("down")
        return "ok"

    assert backoff.call(flaky, (UnavailableError,), "milvus") == "ok"
    assert len(calls) == 4 and waits == ["milvus"] * 3


def test_backoff_does_not_retry_other_errors():
    backoff = Backoff(0.001, 0.001, threading.Event())
    with pytest.raises(ValueError):
        backoff.call(lambda: (_ for _ in ()).throw(ValueError("bad")), (UnavailableError,), "x")


def test_backoff_gives_up_when_stopping_and_keeps_the_consumer_alive():
    stop, kept_alive = threading.Event(), []

    def keepalive():
        kept_alive.append(1)
        if len(kept_alive) == 2:
            stop.set()

    backoff = Backoff(0.6, 1.0, stop, keepalive=keepalive)
    with pytest.raises(Stopping):
        backoff.call(lambda: (_ for _ in ()).throw(UnavailableError("down")),
                     (UnavailableError,), "milvus")
    assert len(kept_alive) == 2


def test_a_slow_write_runs_alongside_keepalives_and_never_beside_its_retry():
    """A Milvus write that outlasts its timeout (pymilvus retries inside one call) must not
    cost the embedder its group (keepalives go on meanwhile), and is never abandoned: two
    writes of the same rows at once raced on Milvus Lite and lost rows."""
    import time

    kept_alive, recovered, running, overlaps = [], [], [], []

    def write():
        overlaps.append(len(running))
        running.append(1)
        time.sleep(0.7)  # past a keepalive period
        running.pop()
        if len(overlaps) == 1:
            raise UnavailableError("timed out, while pymilvus still retried")
        return "written"

    backoff = Backoff(0.001, 0.001, threading.Event(), keepalive=lambda: kept_alive.append(1),
                      on_recovered=recovered.append)
    assert backoff.call(write, (UnavailableError,), "milvus", alongside=True) == "written"
    assert overlaps == [0, 0]  # the retry began after the first attempt ended
    assert len(kept_alive) >= 2 and recovered == ["milvus"]  # then the partitions resume


def test_failpoint_spec_parsing_and_counting(monkeypatch):
    blocked, here, wait = [], threading.current_thread(), threading.Event.wait

    def record(self, timeout=None):  # this thread's waits only: other tests' threads may
        if threading.current_thread() is not here:  # still be waiting in this process
            return wait(self, timeout)
        blocked.append(1)
    monkeypatch.setattr(threading.Event, "wait", record)
    points = Failpoints("after_upsert@2")
    points.hit("before_upsert")
    points.hit("after_upsert")
    assert blocked == []
    points.hit("after_upsert")
    assert blocked == [1]
    Failpoints("").hit("after_upsert")
    with pytest.raises(InvalidInputError, match="NAME@N"):
        Failpoints("after upsert")


def test_one_dead_letter_per_event_names_failed_sheets_and_main_reason():
    record_a, record_b = SimpleNamespace(name="a"), SimpleNamespace(name="b")
    grant = _grant()
    failures = [SheetFailure(SheetJob(grant, grant.sheets[0], tag=record_a), "missing_image",
                             "x: no such image"),
                SheetFailure(SheetJob(grant, grant.sheets[1], tag=record_a), "corrupt_image",
                             "y: not a readable image"),
                SheetFailure(SheetJob(grant, grant.sheets[2], tag=record_a), "corrupt_image",
                             "z: not a readable image"),
                SheetFailure(SheetJob(grant, grant.sheets[0], tag=record_b), "missing_image",
                             "w")]
    letters = _dead_letters_for(SimpleNamespace(failures=failures))
    assert [(d.record, d.reason, d.failed_sheets) for d in letters] == [
        (record_a, "corrupt_image", ("a-D00000.TIF", "a-D00001.TIF", "a-D00002.TIF")),
        (record_b, "missing_image", ("a-D00000.TIF",))]


def test_dead_letter_headers_carry_reason_and_source_position():
    record = SimpleNamespace(topic="grants", partition=3, offset=41, value=b"x" * 77)
    headers = dict(_dlq_headers(DeadLetter(record, "corrupt_image", "d" * 5000, ("s.TIF",))))
    assert headers["patentclip.value-bytes"] == b"77"
    assert headers["patentclip.reason"] == b"corrupt_image"
    assert headers["patentclip.source.topic"] == b"grants"
    assert headers["patentclip.source.partition"] == b"3"
    assert headers["patentclip.source.offset"] == b"41"
    assert headers["patentclip.failed-sheets"] == b"s.TIF"
    assert len(headers["patentclip.detail"]) == 1000


def test_env_example_is_the_declared_settings_with_their_defaults():
    """.env.example is checked against the one declaration of each setting: every declared
    setting is there, nothing else is, and each value set there is the default."""

    from patentclip.config import declared, env_name
    from services.common.broker import KafkaSettings
    from services.query.config import ServerSettings
    from trainer.config import JobSettings
    from trainer.train import TrainConfig

    text = (REPO / ".env.example").read_text()
    written = {}  # NAME -> value, for lines that set one (commented lines are alternatives)
    mentioned = set()
    for line in text.splitlines():
        name, _, value = line.lstrip("# ").partition("=")
        if name.startswith("PATENTCLIP_") and " " not in name:
            mentioned.add(name)
            if not line.startswith("#"):
                written[name] = value.split("  #")[0].strip()
    defaults = {env_name(cls, f.name): f.default
                for cls in (CoreSettings, KafkaSettings, ConsumerSettings, ServerSettings,
                            JobSettings, TrainConfig) for f in declared(cls)}
    assert not set(defaults) - mentioned, f".env.example lacks {sorted(set(defaults) - mentioned)}"
    assert not mentioned - set(defaults), f"not settings: {sorted(mentioned - set(defaults))}"
    def parsed(value: str, default):  # as settings_from_env reads it
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes", "on")
        return type(default)(value)

    wrong = {name: (value, defaults[name]) for name, value in written.items()
             if value != "" and parsed(value, defaults[name]) != defaults[name]}
    assert not wrong, f"values that are not the defaults: {wrong}"
