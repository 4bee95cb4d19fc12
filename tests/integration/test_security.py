"""Transport security and authentication of the query service, over real sockets:
TLS, mutual TLS, bearer tokens with roles, the CLI's flags, and no secret in any log."""

from __future__ import annotations

import uuid
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness.processes import free_port
from harness.query_service import rpc_code
from harness.services import (
    EmbedderProcess,
    QueryProcess,
    http_get,
    make_bundle,
    publish,
    settings,
    wait_until,
)
from patentclip.config import CoreSettings
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.ingest.indexer import Indexer
from patentclip.store import PatentStore
from patentclip_client import PatentSearchClient, tls_credentials
from services.common.auth import Role, new_token, token_line
from services.query.config import QuerySettings, ServerSettings
from services.query.main import QueryServer


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> dict:
    search, admin = new_token(), new_token()
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"{token_line(search, Role.SEARCH, 'examiner')}\n"
                    f"{token_line(admin, Role.ADMIN, 'ops')}\n")
    return {"file": path, "search": search, "admin": admin}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, encoder):
    root = tmp_path_factory.mktemp("secure")
    bundle = make_bundle(root / "bundles", patents=6, seed=21)
    store = PatentStore(str(root / "patents.db"), prefix="sec")
    summary = Indexer(encoder, store, LocalImageStore(root / "images"),
                      progress=False).index([bundle])
    store.set_alias(store.live_alias, summary.collection)
    yield store, root / "images"
    store.close()


def _server(corpus, encoder, **server) -> QueryServer:
    """A server with its own store client (stop() closes it), on the shared corpus."""
    shared, images = corpus
    store = PatentStore(shared.uri, prefix=shared.prefix)
    core = CoreSettings(milvus_uri=store.uri, images_dir=str(images),
                        collection_prefix=store.prefix)
    settings = QuerySettings(core, ServerSettings(host="127.0.0.1", port=0, metrics_port=0,
                                                  alias_poll_s=60, grace_s=1, **server))
    settings.server.validate()
    return QueryServer(settings, encoder=encoder, store=store).start()


@pytest.fixture(scope="module")
def mtls_server(corpus, encoder, pki, tokens):
    server = _server(corpus, encoder, tls_cert=str(pki / "server.pem"),
                     tls_key=str(pki / "server.key"), tls_client_ca=str(pki / "ca.pem"),
                     auth_tokens_file=str(tokens["file"]))
    yield server
    server.stop(grace=0)


def _client(server, pki, token="", cert="client") -> PatentSearchClient:
    return PatentSearchClient(f"127.0.0.1:{server.port}", timeout=10, token=token,
                              ca_cert=str(pki / "ca.pem"),
                              client_cert=str(pki / f"{cert}.pem") if cert else "",
                              client_key=str(pki / f"{cert}.key") if cert else "")


def test_search_token_over_mutual_tls_searches(mtls_server, pki, tokens):
    with _client(mtls_server, pki, tokens["search"]) as client:
        assert client.search_text("chair", k=3).hits
        assert client.server_info().model_version


@pytest.mark.parametrize(("token", "code", "words"), [
    ("", grpc.StatusCode.UNAUTHENTICATED, "missing bearer token"),
    ("pcs_not-a-token", grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token"),
])
def test_missing_or_unknown_token_is_unauthenticated(mtls_server, pki, tokens, token, code,
                                                      words):
    with _client(mtls_server, pki, token) as client:
        got, details = rpc_code(lambda: client.search_text("chair", k=3))
        assert got == code and words in details
        assert rpc_code(client.server_info)[0] == code
        assert rpc_code(lambda: client.get_drawing("D0907292", 1))[0] == code


def test_admin_rpcs_need_the_admin_role(mtls_server, pki, tokens):
    with _client(mtls_server, pki, tokens["search"]) as client:
        code, details = rpc_code(client.reload)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "needs role admin" in details
    with _client(mtls_server, pki, tokens["admin"]) as client:
        reply = client.reload()
        assert not reply.swapped and reply.collection.startswith("sec_")
        assert client.search_text("chair", k=3).hits  # admin may search too


def test_health_and_reflection_stay_open(mtls_server, pki):
    credentials = tls_credentials(str(pki / "ca.pem"), str(pki / "client.pem"),
                                  str(pki / "client.key"))
    with grpc.secure_channel(f"127.0.0.1:{mtls_server.port}", credentials) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {s.name for s in answers[0].list_services_response.service}
        assert "patentclip.v1.PatentSearch" in names


@pytest.mark.parametrize("cert", ["", "rogue"])
def test_without_a_client_certificate_from_our_ca_no_call_gets_through(mtls_server, pki,
                                                                       tokens, cert):
    with _client(mtls_server, pki, tokens["admin"], cert=cert) as client:
        assert rpc_code(lambda: client.search_text("chair", k=1))[0] == \
            grpc.StatusCode.UNAVAILABLE


def test_plaintext_to_a_tls_port_fails(mtls_server, tokens):
    with PatentSearchClient(f"127.0.0.1:{mtls_server.port}", timeout=5,
                            token=tokens["admin"]) as client:
        assert rpc_code(lambda: client.search_text("chair", k=1))[0] == \
            grpc.StatusCode.UNAVAILABLE


def test_refusals_are_counted(mtls_server, pki, tokens):
    before = mtls_server.metrics.auth_failures.labels("token")._value.get()
    with _client(mtls_server, pki, "") as client:
        rpc_code(lambda: client.search_text("chair", k=1))
    assert mtls_server.metrics.auth_failures.labels("token")._value.get() == before + 1
    count = mtls_server.metrics.requests.labels("SearchByText", "UNAUTHENTICATED")
    assert count._value.get() >= 1


def test_closing_health_makes_it_need_a_token_too(corpus, encoder, tokens):
    server = _server(corpus, encoder, auth_tokens_file=str(tokens["file"]), auth_open="")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            code, _ = rpc_code(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5,
                                 metadata=(("authorization", f"Bearer {tokens['search']}"),))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(grace=0)


def test_cli_sends_the_token_and_certificates(mtls_server, pki, tokens, tmp_path, capsys):
    from patentclip_cli.main import main

    token_file = tmp_path / "token"
    token_file.write_text(tokens["search"] + "\n")
    base = ["search", "--server", f"127.0.0.1:{mtls_server.port}", "--text", "chair",
            "--ca-cert", str(pki / "ca.pem"), "--client-cert", str(pki / "client.pem"),
            "--client-key", str(pki / "client.key")]
    assert main([*base, "--token-file", str(token_file)]) == 0
    assert "sec_" in capsys.readouterr().out
    assert main(base) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    reload = ["reload", "--server", f"127.0.0.1:{mtls_server.port}", "--ca-cert",
              str(pki / "ca.pem"), "--client-cert", str(pki / "client.pem"), "--client-key",
              str(pki / "client.key"), "--token-file", str(token_file)]
    assert main(reload) == 2
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    token_file.write_text(tokens["admin"])
    assert main(reload) == 0
    assert "already serving" in capsys.readouterr().out


def test_no_secret_reaches_a_log_or_a_metric(lite_server, tiny_model_dir, kafka_settings, pki,
                                             tokens, tmp_path):
    """A full run (publish, embedder, query service over mTLS, good and bad calls) with
    every secret configured, logs at DEBUG: none of the secrets appears anywhere."""
    secrets = {"milvus token": "root:MilvusSecret-7f3a", "kafka password": "kafka-pw-91c2e",
               "search token": tokens["search"], "admin token": tokens["admin"],
               "wrong token": "pcs_wrong-but-secret-5d1e",
               "tls key": (pki / "server.key").read_text().splitlines()[1]}
    shared = {"PATENTCLIP_MILVUS_TOKEN": secrets["milvus token"],
              "PATENTCLIP_KAFKA_SASL_PASSWORD": secrets["kafka password"],
              "PATENTCLIP_KAFKA_SASL_USERNAME": "embedder"}
    prefix = f"s{uuid.uuid4().hex[:6]}"
    images = tmp_path / "images"
    bundle = make_bundle(tmp_path / "bundles", patents=4, seed=22)
    publish(kafka_settings, images, bundle)
    embedder_settings = settings(kafka_settings, lite_server.uri, tiny_model_dir, images,
                                 prefix, group_id=f"g-{prefix}")
    embedder_settings = replace(embedder_settings, core=replace(
        embedder_settings.core, milvus_token=secrets["milvus token"]))
    embedder = EmbedderProcess(embedder_settings, tmp_path / "embedder.log", extra_env=shared,
                               args=("-v",), metrics_port=free_port())
    query = QueryProcess(tiny_model_dir, lite_server.uri, prefix, tmp_path / "query.log",
                         args=("-v",), env={
                             **shared, "PATENTCLIP_IMAGES_DIR": str(images),
                             "PATENTCLIP_QUERY_TLS_CERT": str(pki / "server.pem"),
                             "PATENTCLIP_QUERY_TLS_KEY": str(pki / "server.key"),
                             "PATENTCLIP_QUERY_TLS_CLIENT_CA": str(pki / "ca.pem"),
                             "PATENTCLIP_QUERY_AUTH_TOKENS_FILE": str(tokens["file"])})
    credentials = tls_credentials(str(pki / "ca.pem"), str(pki / "client.pem"),
                                  str(pki / "client.key"))
    try:
        query.wait_serving(credentials=credentials)
        with _client(query, pki, tokens["search"]) as client:
            wait_until(lambda: len(client.search_text("chair", k=10).hits) == 4, 60,
                       "the published grants to be searchable")
        for token in (secrets["wrong token"], tokens["search"]):
            with _client(query, pki, token) as client:
                rpc_code(client.reload)
        exposed = {"query /metrics": query.metrics(),
                   "embedder /metrics": http_get(embedder.metrics_port, "/metrics")[1]}
    finally:
        query.terminate()
        embedder.terminate()
    exposed |= {"query log": query.text(), "embedder log": embedder.text()}
    assert "DEBUG" in exposed["query log"] and "DEBUG" in exposed["embedder log"]
    for where, text in exposed.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in the {where}"



