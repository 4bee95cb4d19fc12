"""The gRPC query service over sockets: every RPC, filters, paging, errors, deadlines, health,
reflection, hot swap and concurrency, over a collection filled from the real sample grants."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from patentclip.config import CoreSettings
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.ingest.indexer import Indexer
from patentclip.store import PatentStore
from patentclip.v1 import grant_pb2, search_pb2
from patentclip_client import PatentSearchClient
from services.query.config import QuerySettings, ServerSettings
from services.query.main import SERVICE_NAME, QueryServer

MAX_IMAGE_BYTES = 2_000_000


def _settings(store: PatentStore, images, **server) -> QuerySettings:
    core = CoreSettings(milvus_uri=store.uri, images_dir=str(images),
                        collection_prefix=store.prefix)
    return QuerySettings(core, ServerSettings(**{
        "host": "127.0.0.1", "port": 0, "metrics_port": 0, "max_image_bytes": MAX_IMAGE_BYTES,
        "alias_poll_s": 0.2, "grace_s": 2.0, **server}))


@pytest.fixture(scope="module")
def corpus(sample_corpus):
    """The 40 real sample grants indexed with the tiny model into Milvus Lite."""
    return sample_corpus


@pytest.fixture(scope="module")
def server(corpus, encoder):
    store, images, _, _ = corpus
    query_server = QueryServer(_settings(store, images), encoder=encoder, store=store).start()
    yield query_server
    query_server.stop(grace=1)


@pytest.fixture(scope="module")
def client(server):
    with PatentSearchClient(f"127.0.0.1:{server.port}", timeout=20) as c:
        yield c


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_text_search_names_the_model_and_fills_every_hit_field(client, encoder, corpus):
    page = client.search_text("front perspective view of a shaving cartridge", k=5)
    assert page.model_version == encoder.model_version and page.collection == corpus[3]
    assert len(page.hits) == 5 and len({h.patent_number for h in page.hits}) == 5
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True)
    for h in page.hits:
        assert h.patent_number in corpus[2] and h.title and h.grant_date >= 20210101
        assert h.locarno and h.image_uri.startswith("file://") and h.matched in (
            "drawing", "caption") and h.view_name


def test_filters_narrow_results(client, corpus):
    documents = corpus[2]
    locarno = next(iter(documents.values())).grant.locarno.code[:2]
    page = client.search_text("a design", k=50, locarno=[locarno])
    assert page.hits and all(h.locarno.startswith(locarno) for h in page.hits)
    dates = sorted({d.grant.grant_date for d in documents.values()})
    from datetime import date as d

    cut = d(dates[-1] // 10000, dates[-1] // 100 % 100, dates[-1] % 100)
    page = client.search_text("a design", k=50, date_from=cut)
    assert page.hits and all(h.grant_date >= dates[-1] for h in page.hits)
    page = client.search_text("a design", k=50, views=["front"], group=False)
    assert page.hits and all(h.view_name == "front" for h in page.hits)


def test_grouping_off_returns_sheets(client):
    grouped = client.search_text("bottle", k=30)
    sheets = client.search_text("bottle", k=30, group=False)
    assert len({h.patent_number for h in grouped.hits}) == len(grouped.hits)
    assert len({(h.patent_number, h.sheet) for h in sheets.hits}) == len(sheets.hits)
    assert len({h.patent_number for h in sheets.hits}) < len(sheets.hits)


@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "JPEG"])
def test_image_search_finds_the_drawing_it_was_given(client, corpus, fmt):
    document = next(d for d in corpus[2].values() if len(d.images) > 1)
    name, data = sorted(document.images.items())[1]
    if fmt != "TIFF":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("L").save(buffer, fmt)
        data = buffer.getvalue()
    page = client.search_image(data, k=3)
    assert page.hits[0].patent_number == document.grant.patent_number


def test_similar_excludes_the_patent_itself(client, corpus):
    patent = next(iter(corpus[2]))
    page = client.search_similar(patent, k=10)
    assert len(page.hits) == 10 and patent not in {h.patent_number for h in page.hits}
    assert _code(lambda: client.search_similar("D0000001"))[0] == grpc.StatusCode.NOT_FOUND
    code, details = _code(lambda: client.search_similar("not a patent"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "patent number" in details


def test_get_patent_returns_metadata_sheets_and_figure_descriptions(client, corpus):
    patent, document = next((p, d) for p, d in corpus[2].items() if d.grant.figures)
    grant = client.get_patent(patent).grant
    assert grant.patent_number == patent and grant.title == document.grant.title
    assert grant.locarno.code == document.grant.locarno.code
    assert [f.description for f in grant.figures] == [f.description
                                                      for f in document.grant.figures]
    assert len(grant.sheets) == len(document.images)
    assert all(s.image_uri.startswith("file://") for s in grant.sheets)
    assert _code(lambda: client.get_patent("D0000001"))[0] == grpc.StatusCode.NOT_FOUND


def test_encode_rpcs_match_the_local_encoder(client, encoder, corpus):
    response = client.encode_texts(["lamp shade", "bottle"])
    vectors = np.array([v.values for v in response.vectors], dtype=np.float32)
    assert response.dim == encoder.dim and response.model_version == encoder.model_version
    np.testing.assert_allclose(vectors, encoder.encode_texts(["lamp shade", "bottle"]),
                               atol=1e-5)
    data = next(iter(next(iter(corpus[2].values())).images.values()))
    response = client.encode_images([data])
    np.testing.assert_allclose(response.vectors[0].values, encoder.encode_drawings([data])[0],
                               atol=1e-5)


def test_server_info(client, encoder, corpus):
    info = client.server_info()
    assert info.model_version == encoder.model_version and info.collection == corpus[3]
    assert info.alias == f"{corpus[0].prefix}_live" and info.dim == encoder.dim
    assert info.corpus_sheets == sum(len(d.images) for d in corpus[2].values())


def test_pages_continue_where_the_last_ended(client):
    whole = client.search_text("container", k=12)
    first = client.search_text("container", k=6)
    second = client.search_text("container", k=6, page_token=first.next_page_token)
    assert [h.patent_number for h in first.hits + second.hits] == \
        [h.patent_number for h in whole.hits]


@pytest.mark.parametrize(("call", "words"), [
    (lambda c: c.search_text("   "), "text query is empty"),
    (lambda c: c.search_text("x", k=201), "top_k=201"),
    (lambda c: c.search_text("x", locarno=["2"]), "locarno filter '2'"),
    (lambda c: c.search_text("x", page_token="garbage"), "page_token"),
    (lambda c: c.search_image(b""), "image: empty"),
    (lambda c: c.search_image(b"\x89PNG not really"), "not a readable image"),
    (lambda c: c.search_image(b"\0" * (MAX_IMAGE_BYTES + 1)), "limit 2000000"),
    (lambda c: c.encode_texts([]), "at least one"),
    (lambda c: c.search_text("chair " * 400), "2399 characters, limit 2000"),
    (lambda c: c.search_text("x", k=-1), "top_k=-1"),
    (lambda c: c.search_text("x", date_from=date(2022, 1, 1), date_to=date(2021, 1, 1)),
     "date"),
    (lambda c: c.search_text("x", page_token="eyJvZmZzZXQiOiAtNX0="), "page_token"),
    (lambda c: c.search_similar(""), "patent"),
    (lambda c: c.encode_texts(["lamp", " "]), "texts[1] is empty"),
    (lambda c: c.encode_texts(["x" * 2001]), "texts[0] has 2001 characters"),
    (lambda c: c.encode_texts(["x"] * 65), "65 given, limit 64"),
])
def test_bad_requests_are_invalid_argument_with_a_reason(client, call, words):
    code, details = _code(lambda: call(client))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details
    assert "Traceback" not in details


def test_a_message_over_the_receive_limit_is_resource_exhausted(client):
    over = 2 * MAX_IMAGE_BYTES + 1024 * 1024 + 100_000  # ServerSettings.max_receive_bytes
    code, details = _code(lambda: client.search_image(b"\0" * over))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details


def test_a_spent_deadline_is_deadline_exceeded(server):
    with PatentSearchClient(f"127.0.0.1:{server.port}", timeout=0.0005) as hurried:
        assert _code(lambda: hurried.search_text("a lamp"))[0] == \
            grpc.StatusCode.DEADLINE_EXCEEDED


def test_deadline_propagates_to_the_vector_search(corpus, encoder):
    from patentclip.errors import DeadlineExceededError
    from patentclip.search.engine import SearchEngine, SearchRequest
    from patentclip.search.query import Query

    engine = SearchEngine(encoder, corpus[0], corpus[3])
    patent = next(iter(corpus[2]))
    assert engine.search(Query(patent=patent), SearchRequest(timeout=30.0)).hits
    with pytest.raises(DeadlineExceededError):  # the lookup is done; the search is not
        engine.search(Query(patent=patent), SearchRequest(timeout=0.0))


def test_health_and_reflection(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert SERVICE_NAME in services and "grpc.health.v1.Health" in services


def test_health_is_not_serving_until_a_collection_is_live(tmp_path, encoder):
    with PatentStore(str(tmp_path / "empty.db"), prefix="e") as store:
        query_server = QueryServer(_settings(store, tmp_path / "images"), encoder=encoder,
                                   store=store).start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{query_server.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)

                def status():
                    return health.Check(health_pb2.HealthCheckRequest(), timeout=5).status

                assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
                with PatentSearchClient(f"127.0.0.1:{query_server.port}") as c:
                    code, details = _code(lambda: c.search_text("lamp"))
                assert code == grpc.StatusCode.UNAVAILABLE and "e_live" in details
                name = store.ensure_collection(encoder.model_version, encoder.dim)
                store.set_alias(store.live_alias, name)
                deadline = time.monotonic() + 10
                while status() != health_pb2.HealthCheckResponse.SERVING:
                    assert time.monotonic() < deadline, "never became SERVING"
                    time.sleep(0.1)
        finally:
            query_server.stop(grace=0)


def test_refuses_a_collection_built_by_another_model(tmp_path, encoder):
    with PatentStore(str(tmp_path / "other.db"), prefix="m") as store:
        name = store.ensure_collection("someone_else_123", encoder.dim)  # no model spec
        store.set_alias(store.live_alias, name)
        query_server = QueryServer(_settings(store, tmp_path), encoder=encoder,
                                   store=store).start()
        try:
            assert not query_server.live.serving
            assert "someone_else_123" in query_server.live.reason
        finally:
            query_server.stop(grace=0)


def test_thirty_two_concurrent_clients_get_the_single_client_results(client, server):
    queries = ["lamp", "bottle", "chair", "shoe", "container with lid", "vehicle", "toy",
               "handle"]
    expected = {q: [h.patent_number for h in client.search_text(q, k=10).hits]
                for q in queries}
    target = f"127.0.0.1:{server.port}"

    def run(i):
        with PatentSearchClient(target, timeout=60) as own:
            rotated = queries[i % 8:] + queries[:i % 8]
            return [(q, [h.patent_number for h in own.search_text(q, k=10).hits])
                    for q in rotated[:3]]

    with ThreadPoolExecutor(32) as pool:
        for answers in pool.map(run, range(32)):
            for q, patents in answers:
                assert patents == expected[q]


def test_metrics_count_requests_batches_and_cache(server, client):
    client.search_text("metrics probe", k=3)
    client.search_text("metrics probe", k=3)
    metrics = server.metrics
    assert metrics.requests.labels("SearchByText", "OK")._value.get() >= 2
    assert metrics.cache.labels("hit")._value.get() >= 1
    assert metrics.requests.labels("SearchByText", "INVALID_ARGUMENT")._value.get() >= 0
    assert metrics.stage.labels("search")._sum.get() > 0
    assert metrics.batch_size.labels("text")._sum.get() >= 1


def test_hot_swap_to_a_new_model_drops_no_request(tmp_path, encoder, sample_dir):
    from patentclip.model.encoder import Encoder, create_tiny_model

    store = PatentStore(str(tmp_path / "swap.db"), prefix="h")
    images = LocalImageStore(tmp_path / "images")
    old = Indexer(encoder, store, images, progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, old)
    new_encoder = Encoder.load(f"local-dir:{create_tiny_model(tmp_path / 'v2', seed=1)}")
    new = Indexer(new_encoder, store, images, progress=False).index([sample_dir]).collection
    query_server = QueryServer(_settings(store, tmp_path / "images"), encoder=encoder,
                               store=store).start()
    seen, failures, stop = [], [], threading.Event()

    def loop():
        mine = []
        seen.append(mine)  # each client's own sequence: calls in flight on the old snapshot
        with PatentSearchClient(f"127.0.0.1:{query_server.port}", timeout=30) as c:
            while not stop.is_set():  # may finish after another client's first new answer
                try:
                    mine.append(c.search_text("lamp", k=3).model_version)
                except grpc.RpcError as exc:
                    failures.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        store.set_alias(store.live_alias, new)
        deadline = time.monotonic() + 30
        while not all(mine and mine[-1] == new_encoder.model_version for mine in seen):
            assert time.monotonic() < deadline, "the service never swapped"
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        query_server.stop(grace=1)
        store.close()
    assert failures == [] and len(seen) == 4
    both = [encoder.model_version, new_encoder.model_version]
    changes = [[v for i, v in enumerate(mine) if i == 0 or v != mine[i - 1]] for mine in seen]
    assert all(c in (both, both[1:]) for c in changes), changes  # never back to the old
    assert both in changes


def test_milvus_unreachable_is_unavailable(lite_server, encoder, sample_dir, tmp_path):
    store = PatentStore(lite_server.uri, prefix="u", timeout=3)
    images = LocalImageStore(tmp_path / "images")
    collection = Indexer(encoder, store, images, progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, collection)
    settings = _settings(store, tmp_path / "images")
    query_server = QueryServer(replace(settings, server=replace(settings.server,
                                                                alias_poll_s=60)),
                               encoder=encoder, store=store).start()
    try:
        with PatentSearchClient(f"127.0.0.1:{query_server.port}", timeout=30) as c:
            assert c.search_text("lamp", k=3).hits
            lite_server.stop()
            code, details = _code(lambda: c.search_text("lamp", k=3))
            assert code == grpc.StatusCode.UNAVAILABLE and "Milvus" in details
    finally:
        query_server.stop(grace=0)


def test_cli_talks_to_the_server(server, corpus, capsys, tmp_path):
    import json

    from PIL import Image

    from patentclip_cli.main import main

    target = f"127.0.0.1:{server.port}"
    assert main(["search", "--server", target, "--text", "bottle", "--k", "4"]) == 0
    out = capsys.readouterr().out
    assert "patent" in out and "4 hits from" in out and "more: --page-token" in out
    patent = next(iter(corpus[2]))
    assert main(["search", "--server", target, "--similar", patent, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and patent not in {h["patent"] for h in hits}
    assert main(["search", "--server", target, "--similar", "D0000001"]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err
    drawing = tmp_path / "sketch.png"
    Image.new("L", (120, 90), 255).save(drawing)
    for flags in (["--text", "bottle", "--image", str(drawing), "--crop", "0.1,0.1,0.9,0.9"],
                  ["--similar", patent, "--sheet", "1"]):  # every mode, remotely too
        assert main(["search", "--server", target, *flags, "--json"]) == 0, flags
        assert json.loads(capsys.readouterr().out)["hits"], flags


def test_the_search_rpc_answers_every_kind_as_the_rpc_of_that_kind(server, client, corpus):
    """One Search over the API's Query message, and the four RPCs of one kind each (kept
    for existing clients): the same query gives the same page either way."""
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 1)
    drawing = sorted(document.images.values())[1]
    crop = (0.1, 0.1, 0.9, 0.9)
    pairs = [(client.search_text("bottle", k=5), {"text": "bottle"}),
             (client.search_image(drawing, k=5, crop=crop), {"image": drawing, "crop": crop}),
             (client.search_text_and_image("bottle", drawing, k=5),
              {"text": "bottle", "image": drawing}),
             (client.search_similar(patent, k=5, sheet=1), {"patent": patent, "sheet": 1})]
    for legacy, fields in pairs:
        page = client.search(5, **fields)
        assert [(h.patent_number, h.sheet) for h in page.hits] == [
            (h.patent_number, h.sheet) for h in legacy.hits], fields
        assert page.hits and page.next_page_token == legacy.next_page_token
    code, details = _code(lambda: client.search(5, text="lid", patent=patent))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "takes no text or image" in details
    code, details = _code(lambda: client.search(5, image=b"\0" * (MAX_IMAGE_BYTES + 1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == f"query.image: {MAX_IMAGE_BYTES + 1} bytes, limit {MAX_IMAGE_BYTES}"


def test_views_enum_round_trips_through_the_client():
    from patentclip_client import search_options

    options = search_options(5, views=["front", "in-use"])
    assert list(options.filters.views) == [grant_pb2.VIEW_FRONT, grant_pb2.VIEW_IN_USE]
    assert isinstance(options, search_pb2.SearchOptions)


def test_runs_as_a_process_with_metrics_and_stops_gracefully_on_sigterm(
        lite_server, encoder, tiny_model_dir, sample_dir, tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request

    from harness import REPO
    from harness.processes import free_port

    store = PatentStore(lite_server.uri, prefix="p")
    collection = Indexer(encoder, store, LocalImageStore(tmp_path / "images"),
                         progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, collection)
    store.close()
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "PATENTCLIP_MODEL": f"local-dir:{tiny_model_dir}",
           "PATENTCLIP_MILVUS_URI": lite_server.uri, "PATENTCLIP_COLLECTION_PREFIX": "p",
           "PATENTCLIP_IMAGES_DIR": str(tmp_path / "images"),
           "PATENTCLIP_QUERY_HOST": "127.0.0.1", "PATENTCLIP_QUERY_PORT": str(port),
           "PATENTCLIP_QUERY_METRICS_HOST": "127.0.0.1",
           "PATENTCLIP_QUERY_METRICS_PORT": str(metrics_port)}
    log = tmp_path / "query.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.query"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        with PatentSearchClient(f"127.0.0.1:{port}") as c:
            assert c.search_text("lamp", k=3).model_version == encoder.model_version
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            text = r.read().decode()
        assert 'patentclip_query_requests_total{code="OK",method="SearchByText"} 1.0' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz") as r:
            assert r.status == 200
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert "draining in-flight requests" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_unexpected_errors_are_internal_with_an_id_and_no_details(server, client, monkeypatch,
                                                                  caplog):
    def broken():
        raise RuntimeError("secret connection string user:pw@db")

    monkeypatch.setattr(server.live, "current", broken)
    code, details = _code(lambda: client.server_info())
    assert code == grpc.StatusCode.INTERNAL and "internal error (id " in details
    assert "secret" not in details and "Traceback" not in details
    assert any("secret connection string" in r.getMessage() or (
        r.exc_info and "secret" in str(r.exc_info[1])) for r in caplog.records)


# ----------------------------------------------------------------------------- edges:
# clients that are not ours (no deadline, reflection v1, Node), input of other tools


def _raise_unexpected(*args, **kwargs):
    raise RuntimeError("an unexpected error, not a domain error")


def _no_deadline_calls(corpus):
    """Every RPC, as a plain stub sends it without timeout= (grpcurl's, Node's default)."""
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 1)
    drawing = sorted(document.images.values())[1]
    return {
        "Search": search_pb2.SearchRequest(query=search_pb2.Query(text="a lid", image=drawing)),
        "SearchByText": search_pb2.SearchByTextRequest(text="a bottle"),
        "SearchByImage": search_pb2.SearchByImageRequest(image=drawing),
        "SearchSimilar": search_pb2.SearchSimilarRequest(patent_number=patent),
        "SearchByTextAndImage": search_pb2.SearchByTextAndImageRequest(text="a lid",
                                                                       image=drawing),
        "GetPatent": search_pb2.GetPatentRequest(patent_number=patent),
        "GetDrawing": search_pb2.GetDrawingRequest(
            drawing=search_pb2.SheetRef(patent_number=patent, sheet=1)),
        "EncodeText": search_pb2.EncodeTextRequest(texts=["a lamp", "a chair"]),
        "EncodeImage": search_pb2.EncodeImageRequest(images=[drawing]),
        "ServerInfo": search_pb2.ServerInfoRequest(),
        "Reload": search_pb2.ReloadRequest(),
    }


def test_every_rpc_succeeds_without_a_deadline(server, corpus):
    from patentclip.v1 import search_pb2_grpc

    calls = _no_deadline_calls(corpus)
    assert set(calls) == set(search_pb2.DESCRIPTOR.services_by_name["PatentSearch"]
                             .methods_by_name)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = search_pb2_grpc.PatentSearchStub(channel)
        for method, request in calls.items():
            reply = getattr(stub, method)(request)  # no timeout: no deadline on the wire
            assert reply.ByteSize() > 0, method


def test_every_status_a_call_ends_with_is_the_one_counted_and_the_error_rule_sees_it(
        server, client, monkeypatch, tmp_path):
    """INTERNAL (an unexpected error), INVALID_ARGUMENT, NOT_FOUND and OK as counted by the
    service, then those very counts through deploy/prometheus/rules.yml with promtool."""
    import subprocess

    import patentclip.search.engine
    from patentclip.v1 import search_pb2_grpc

    def count(code: str) -> float:
        return server.metrics.registry.get_sample_value(
            "patentclip_query_requests_total", {"method": "SearchByText", "code": code}) or 0

    before = {code: count(code) for code in ("OK", "INTERNAL", "INVALID_ARGUMENT")}
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = search_pb2_grpc.PatentSearchStub(channel)
        stub.SearchByText(search_pb2.SearchByTextRequest(text="lamp"))
        assert _code(lambda: stub.SearchByText(search_pb2.SearchByTextRequest(text=" ")))[0] \
            == grpc.StatusCode.INVALID_ARGUMENT
        monkeypatch.setattr(patentclip.search.engine.SearchEngine, "_text",
                            _raise_unexpected)
        code, details = _code(lambda: stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp")))
        assert code == grpc.StatusCode.INTERNAL and "internal error (id " in details
    delta = {code: count(code) - before[code] for code in before}
    assert delta == {"OK": 1, "INTERNAL": 1, "INVALID_ARGUMENT": 1}

    # The same counts, growing at this rate every minute, through the recording rule.
    series = "\n".join(
        f"      - series: 'patentclip_query_requests_total{{method=\"SearchByText\", "
        f"code=\"{code}\"}}'\n        values: '0+{int(n)}x20'" for code, n in delta.items())
    rules = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
    test_file = tmp_path / "counted_test.yml"
    test_file.write_text(f"""rule_files: ['{rules}']
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}
    promql_expr_test:
      - expr: patentclip:query_errors:ratio_rate5m
        eval_time: 10m
        exp_samples:
          - labels: 'patentclip:query_errors:ratio_rate5m'
            value: {1 / 3}
""")
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_reflection_answers_under_v1_and_v1alpha(server):
    from grpc_reflection.v1alpha import reflection_pb2

    from services.query.main import SERVICE_NAME

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for package in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
            info = channel.stream_stream(
                f"/{package}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
            requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol=SERVICE_NAME)]
            listed, described = list(info(iter(requests), timeout=10))
            names = {s.name for s in listed.list_services_response.service}
            assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection"} <= names, package
            assert described.file_descriptor_response.file_descriptor_proto, package


def test_requests_other_tools_send_are_refused_by_field_or_normalised(client, corpus):
    patent = next(iter(corpus[2]))  # e.g. D0907292
    digits = patent[1:].lstrip("0")
    typed = [f"D{digits[:-3]},{digits[-3:]}", f"D{digits}", f"US{patent}S1",
             f"Des. {digits[:-3]},{digits[-3:]}", patent.lower()]
    for form in typed:
        assert client.get_patent(form).grant.patent_number == patent, form
        hits = client.search_similar(form, k=3).hits
        assert hits and patent not in {h.patent_number for h in hits}, form
    bad = [
        (lambda: client.stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp", options=search_pb2.SearchOptions(
                filters=search_pb2.Filters(date_from=20211399)))), "date_from 20211399: not a "
         "calendar date"),
        (lambda: client.stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp", options=search_pb2.SearchOptions(against=9))),
         "options.against: 9 is not an Against value"),
        (lambda: client.stub.SearchByText(search_pb2.SearchByTextRequest(
            text="lamp", options=search_pb2.SearchOptions(filters=search_pb2.Filters(
                views=[grant_pb2.VIEW_UNSPECIFIED])))), "filters.views[0]: VIEW_UNSPECIFIED"),
        (lambda: client.search_image(b"GIF89a not an image at all"),
         "image: not a readable image (expected TIFF, PNG or JPEG bytes)"),
        (lambda: client.encode_images([b"\x89PNG", b"x"]), "images[0]: not a readable image"),
        (lambda: client.get_patent("Des. nine"), "patent_number 'Des. nine': not a patent"),
    ]
    for call, words in bad:
        code, details = _code(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, details
        assert "BytesIO" not in details and "0x" not in details


def test_mixed_and_unknown_views_filter_over_grpc_and_the_cli(server, client, capsys):
    from patentclip_cli.main import main

    for view in ("mixed", "unknown"):
        page = client.search_text("a design", k=20, views=[view], group=False)
        assert page.hits or view == "mixed"  # one-per-sheet mapping never mixes views
        assert all(h.view_name == view for h in page.hits)
        expected = grant_pb2.VIEW_MIXED if view == "mixed" else grant_pb2.VIEW_UNKNOWN
        assert all(h.view == expected for h in page.hits)
    target = f"127.0.0.1:{server.port}"
    assert main(["search", "--server", target, "--text", "bottle", "--view", "mixed",
                 "--no-group", "--json"]) == 0
    assert all(h["view"] == "mixed" for h in json.loads(capsys.readouterr().out)["hits"])
    with pytest.raises(SystemExit):
        main(["search", "--server", target, "--text", "bottle", "--view", "sideways"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_an_oversized_image_is_invalid_argument_naming_field_and_limit(client):
    code, details = _code(lambda: client.search_image(b"\0" * (MAX_IMAGE_BYTES * 5 // 4)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"image: {MAX_IMAGE_BYTES * 5 // 4} bytes, limit {MAX_IMAGE_BYTES}" in details


def test_a_node_grpc_js_client_searches_pages_fetches_a_thumbnail_and_gets_clear_errors(
        server, corpus):
    """Examiner tooling in JavaScript: @grpc/grpc-js + proto-loader from `make tools`,
    loading protos/ directly, never setting a deadline."""
    import json
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    modules = repo / ".tools" / "node" / "node_modules"
    assert (modules / "@grpc" / "grpc-js").is_dir(), "run `make tools` (npm @grpc/grpc-js)"
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 1)
    drawing = Path(str(server.settings.core.images_dir)) / "node-query.tif"
    drawing.write_bytes(sorted(document.images.values())[1])
    digits = patent[1:].lstrip("0")
    result = subprocess.run(
        [shutil.which("node"), str(Path(__file__).parent / "node" / "client.js"),
         f"127.0.0.1:{server.port}", str(repo / "protos"), str(drawing),
         f"D{digits[:-3]},{digits[-3:]}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(modules)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["text"]["code"] == "OK" and len(out["text"]["hits"]) == 3
    assert out["image"]["code"] == "OK" and out["image"]["hits"][0]["patent"] == patent
    assert all(h["view"].startswith("VIEW_") for h in out["image"]["hits"])
    paged = [h["patent"] for page in out["pages"] for h in page["hits"]]
    assert paged == [h["patent"] for h in out["whole"]["hits"]]
    assert out["search_image"]["hits"] == out["image"]["hits"]  # Search = SearchByImage
    similar = out["search_similar"]
    assert similar["code"] == "OK" and patent not in [h["patent"] for h in similar["hits"]]
    assert out["search_both"]["code"] == "OK" and len(out["search_both"]["hits"]) == 3
    assert out["search_nothing"] == {"code": "INVALID_ARGUMENT", "details":
                                     "give a description, a drawing or a patent number"}
    assert out["typed_patent"] == {"code": "OK", "number": patent}
    assert out["health"] == {"code": "OK", "status": "SERVING"}
    assert out["empty_text"] == {"code": "INVALID_ARGUMENT", "details": "text query is empty"}
    assert out["bad_date"]["code"] == "INVALID_ARGUMENT"
    assert "date_from 20211399: not a calendar date" in out["bad_date"]["details"]
    assert out["bad_view"]["code"] == "INVALID_ARGUMENT"
    assert "VIEW_UNSPECIFIED is no view" in out["bad_view"]["details"]
    thumbnail = out["thumbnail"]  # a drawing, fetched by the hit's sheet reference
    assert thumbnail["code"] == "OK" and thumbnail["png_signature"] == "89504e470d0a1a0a"
    assert thumbnail["ref"] == thumbnail["drawing"] and thumbnail["ref"]["patent_number"] == patent
    assert max(thumbnail["width"], thumbnail["height"]) == 256 and thumbnail["bytes"] > 100
    assert out["unknown_sheet"]["code"] == "NOT_FOUND"
    assert "no drawing sheet 999" in out["unknown_sheet"]["details"]


CLIENT_ONLY = """
import json, sys
from patentclip_client import PatentSearchClient
try:
    import torch  # noqa: F401
    sys.exit("torch is installed: not a client-only install")
except ModuleNotFoundError:
    pass
with PatentSearchClient(sys.argv[1], timeout=30) as client:
    page = client.search_text("ornamental design for a bottle", k=3, locarno=["09"])
    patent = client.get_patent(page.hits[0].patent_number)
    print(json.dumps({"hits": [h.patent_number for h in page.hits],
                      "model": page.model_version, "title": patent.grant.title,
                      "modules": sorted(m for m in ("numpy", "pymilvus", "kafka", "PIL")
                                        if m in sys.modules)}))
"""


def test_a_client_only_install_has_no_torch_and_searches_the_service(server, client,
                                                                      tmp_path):
    """``pip install patentclip-search`` (no extra) in a fresh venv: grpcio, protobuf, the
    generated code and the typed client, and nothing of the services."""
    import shutil
    import subprocess
    import sys

    from harness import REPO

    source = tmp_path / "source"  # a copy: building in the checkout would leave build/
    for part in ("patentclip", "patentclip_client", "patentclip_cli", "services", "trainer"):
        shutil.copytree(REPO / part, source / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert {"grpcio", "protobuf", "patentclip-search"} <= installed
    assert not installed & {"torch", "numpy", "pymilvus", "kafka-python", "open-clip-torch"}
    run = subprocess.run([str(python), "-c", CLIENT_ONLY, f"127.0.0.1:{server.port}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout)
    expected = client.search_text("ornamental design for a bottle", k=3, locarno=["09"])
    assert answer["hits"] == [h.patent_number for h in expected.hits] and answer["hits"]
    assert answer["model"] == expected.model_version and answer["title"]
    assert answer["modules"] == []  # the client reached none of the services' libraries


# -- drawings, sheet references, combined queries and Locarno counts (the examiner web app's
#    needs, over gRPC for every client)

def test_hits_carry_sheet_refs_and_get_drawing_renders_each_size(client, corpus):
    hit = client.search_text("front perspective view of a bottle", k=3).hits[0]
    assert (hit.drawing.patent_number, hit.drawing.sheet) == (hit.patent_number, hit.sheet)
    source = Image.open(io.BytesIO(LocalImageStore(corpus[1]).get(hit.image_uri)))
    sizes = {}
    for size in ("thumbnail", "medium", "full"):
        reply = client.get_drawing(hit.drawing.patent_number, hit.drawing.sheet, size)
        png = Image.open(io.BytesIO(reply.png))
        assert png.format == "PNG" and png.size == (reply.width, reply.height)
        assert reply.drawing == hit.drawing
        assert list(reply.figure_numbers) == list(hit.figure_numbers)
        sizes[size] = png.size
    assert sizes["full"] == source.size
    for size, edge in (("thumbnail", 256), ("medium", 1024)):
        assert max(sizes[size]) == min(edge, max(source.size))
        ratio = sizes[size][0] / sizes[size][1]
        assert abs(ratio - source.size[0] / source.size[1]) < 0.02  # not distorted


def test_get_drawing_refuses_unknown_sheets_and_bad_references(client, corpus):
    patent = next(iter(corpus[2]))
    assert _code(lambda: client.get_drawing("D0000001", 1))[0] == grpc.StatusCode.NOT_FOUND
    code, details = _code(lambda: client.get_drawing(patent, 999))
    assert code == grpc.StatusCode.NOT_FOUND and f"{patent} has no drawing sheet 999" in details
    code, details = _code(lambda: client.get_drawing("a lamp", 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "drawing.patent_number" in details
    code, details = _code(lambda: client.stub.GetDrawing(search_pb2.GetDrawingRequest(),
                                                         timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "drawing: required" in details


def test_get_patent_lists_the_sheet_references_of_its_drawings(client, corpus):
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 2)
    reply = client.get_patent(patent)
    assert [d.patent_number for d in reply.drawings] == [patent] * len(document.images)
    assert [d.sheet for d in reply.drawings] == sorted(s.number for s in reply.grant.sheets)
    last = reply.drawings[-1]
    assert client.get_drawing(last.patent_number, last.sheet).png.startswith(b"\x89PNG")


def test_text_and_drawing_together_fuse_two_rankings(client, corpus):
    document = next(d for d in corpus[2].values() if len(d.images) > 1)
    patent = document.grant.patent_number
    _, data = sorted(document.images.items())[1]
    page = client.search_text_and_image(document.grant.title, data, k=10)
    assert patent in [h.patent_number for h in page.hits[:3]]
    assert all(0 < h.score <= 2 / 61 + 1e-6 for h in page.hits)  # reciprocal-rank scores
    locarno = document.grant.locarno.code[:2]
    filtered = client.search_text_and_image("a design", data, k=20, locarno=[locarno])
    assert filtered.hits and all(h.locarno.startswith(locarno) for h in filtered.hits)
    code, details = _code(lambda: client.search_text_and_image("  ", data))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "text query is empty" in details
    code, details = _code(lambda: client.search_text_and_image("lid", b""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image: empty" in details


def test_a_cropped_drawing_searches_for_that_part(client, corpus):
    document = next(d for d in corpus[2].values() if len(d.images) > 1)
    _, data = sorted(document.images.items())[1]
    whole = client.search_image(data, k=10, group=False)
    part = client.search_image(data, k=10, group=False, crop=(0.0, 0.0, 0.5, 0.5))
    assert [h.score for h in part.hits] != [h.score for h in whole.hits]
    code, details = _code(lambda: client.search_image(data, crop=(0.6, 0.0, 0.4, 1.0)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "left < right" in details


def test_locarno_counts_cover_the_stated_window(client, corpus):
    from collections import Counter

    expected = Counter(d.grant.locarno.code[:2] for d in corpus[2].values())
    page = client.search_text("a design", k=5, locarno_counts_depth=1000)
    assert len(page.hits) == 5 and page.counted_results == len(corpus[2])
    assert page.locarno_counts == dict(expected)
    first_ten = client.search_text("a design", k=10)
    shallow = client.search_text("a design", k=5, locarno_counts_depth=10)
    assert shallow.counted_results == 10
    assert shallow.locarno_counts == dict(Counter(h.locarno[:2] for h in first_ten.hits))
    top = max(expected, key=expected.get)
    narrowed = client.search_text("a design", k=5, locarno=[top], locarno_counts_depth=200)
    assert narrowed.locarno_counts == {top: expected[top]}
    assert client.search_text("a design", k=5).locarno_counts == {}  # only when asked
    code, details = _code(lambda: client.search_text("a", locarno_counts_depth=1001))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "locarno_counts_depth" in details


def test_more_like_one_sheet_uses_only_that_sheets_drawing(client, corpus):
    patent, document = next((p, d) for p, d in corpus[2].items() if len(d.images) > 2)
    one = client.search_similar(patent, k=10, sheet=1)
    every = client.search_similar(patent, k=10)
    assert patent not in {h.patent_number for h in one.hits}
    assert [h.score for h in one.hits] != [h.score for h in every.hits]
    code, details = _code(lambda: client.search_similar(patent, sheet=999))
    assert code == grpc.StatusCode.NOT_FOUND and "no drawing sheet 999" in details


def test_a_text_search_against_drawings_reaches_every_patent(client, corpus):
    """Every sample patent is reachable from every title, against drawings and against
    captions. Before drawings and captions were partitions of their own, Milvus Lite's
    filtered HNSW walk returned 0 of 372 drawing rows for "Shaving blade cartridge" (its
    text vector lands among the captions, across CLIP's modality gap)."""
    patents = len(corpus[2])
    for document in corpus[2].values():
        for against in ("drawing", "caption"):
            page = client.search_text(document.grant.title, k=patents, against=against)
            assert len(page.hits) == patents, (document.grant.title, against)
