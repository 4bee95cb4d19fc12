"""PatentCLIP inside Milvus: the HTTP embedding provider (OpenAI and TEI protocols) called
by Milvus Lite's TEXTEMBEDDING function, and the pymilvus-style embedding function, local
and remote. Real parts: the query service over sockets, Milvus Lite, the sample grants."""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from pymilvus import MilvusClient

from patentclip.config import CoreSettings
from patentclip.drawings.imagestore import LocalImageStore
from patentclip.grants.reader import GrantReader
from patentclip.ingest.indexer import Indexer
from patentclip.search.captions import CaptionCollection, caption_rows
from patentclip.search.query import MAX_TEXT_CHARS
from patentclip.store import PatentStore
from patentclip_client.milvus import PatentCLIPEmbeddingFunction
from services.common.auth import Role, new_token, token_line
from services.query.config import QuerySettings, ServerSettings
from services.query.http.provider import MODEL_HEADER
from services.query.main import QueryServer

QUERIES = ["hinged cosmetic case with mirror", "chair with armrests", "lamp shade",
           "bottle with a cap"]


@pytest.fixture(scope="module")
def grants(sample_dir):
    return [d for d in GrantReader().read(sample_dir)]


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    value = new_token()
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(token_line(value, Role.SEARCH, "milvus") + "\n")
    return value, path


@pytest.fixture(scope="module")
def server(tmp_path_factory, encoder, grants, sample_dir, token):
    """The query service with its HTTP embedding provider, tokens on."""
    root = tmp_path_factory.mktemp("plugin")
    store = PatentStore(str(root / "patents.db"), prefix="pl")
    collection = Indexer(encoder, store, LocalImageStore(root / "images"),
                         progress=False).index([sample_dir]).collection
    store.set_alias(store.live_alias, collection)
    settings = QuerySettings(
        CoreSettings(milvus_uri=store.uri, collection_prefix="pl", images_dir=""),
        ServerSettings(host="127.0.0.1", port=0, metrics_port=0, alias_poll_s=60,
                       http_port=-1, auth_tokens_file=str(token[1])))
    query = QueryServer(settings, encoder=encoder, store=store).start()
    yield query
    query.stop(grace=0)


def _headers(message) -> dict[str, str]:
    """Response headers by lower-case name (HTTP names are case-insensitive; uvicorn sends
    them in lower case)."""
    return {name.lower(): value for name, value in message.items()}


def _post(server, path: str, body, token: str | None) -> tuple[int, object, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http.port}{path}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read()), _headers(reply.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), _headers(exc.headers)


# ----------------------------------------------------------------------------- in Milvus


def test_milvus_embeds_captions_through_the_plugin_and_raw_text_search_equals_client_side(
        server, encoder, grants, token, tmp_path):
    """Milvus Lite 3.2.2 knows only the openai provider ("Unknown embedding provider: 'tei'.
    Supported: 'openai'"); the TEI endpoint, for the Milvus 2.6 server, is tested below by
    its protocol."""
    client = MilvusClient(str(tmp_path / "captions.db"))
    captions = CaptionCollection.create(
        client, "sheet_captions", encoder.dim, f"http://127.0.0.1:{server.http.port}",
        api_key=token[0])
    inserted = captions.insert_grants(d.grant for d in grants)
    rows = caption_rows(d.grant for d in grants)
    assert inserted == len(rows) > 100

    by_milvus = captions.search_text(QUERIES, k=10)  # raw text: Milvus calls the plugin
    ours = captions.search_vectors(encoder.encode_texts(QUERIES), k=10)
    for raw, local in zip(by_milvus, ours, strict=True):
        assert [h.id for h in raw] == [h.id for h in local]
        assert np.allclose([h.score for h in raw], [h.score for h in local], atol=1e-5)

    # The right patents: a sheet's own caption finds that sheet first.
    probe = rows[17]
    top = captions.search_text([probe["caption"]], k=3)[0][0]
    assert (top.patent, top.sheet) == (probe["patent"], probe["sheet"])
    assert top.score == pytest.approx(1.0, abs=1e-4)

    # Image -> caption inside Milvus: a drawing's vector against the caption vectors ranks
    # them as exact cosine over our own caption vectors does.
    drawing = next(iter(grants[3].images.values()))
    image_vector = encoder.encode_drawings([drawing])[0]
    found = captions.search_vectors(image_vector, k=5)[0]
    matrix = encoder.encode_texts([r["caption"] for r in rows])
    exact = np.argsort(-(matrix @ image_vector))[:5]
    assert [h.id for h in found] == [rows[i]["id"] for i in exact]
    client.close()


# ----------------------------------------------------------------------------- protocol


def test_openai_single_and_batch_inputs_match_the_encoder(server, encoder, token):
    status, body, headers = _post(server, "/v1/embeddings",
                                  {"model": "patentclip", "input": "a chair"}, token[0])
    assert status == 200 and body["object"] == "list" and body["model"] == \
        encoder.model_version
    assert headers[MODEL_HEADER.lower()] == encoder.model_version
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert np.allclose(item["embedding"], encoder.encode_texts(["a chair"])[0], atol=1e-6)

    status, body, _ = _post(server, "/v1/embeddings", {
        "model": encoder.model_version, "input": QUERIES, "dimensions": encoder.dim,
        "encoding_format": "base64"}, token[0])
    assert status == 200 and [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                        for d in body["data"]])
    assert np.allclose(decoded, encoder.encode_texts(QUERIES), atol=1e-6)


def test_tei_single_and_batch_inputs_match_the_encoder(server, encoder, token):
    status, body, headers = _post(server, "/embed", {"inputs": "a chair"}, token[0])
    assert status == 200 and headers[MODEL_HEADER.lower()] == encoder.model_version
    assert np.allclose(body, encoder.encode_texts(["a chair"]), atol=1e-6)
    status, body, _ = _post(server, "/embed", {"inputs": QUERIES}, token[0])
    assert status == 200 and np.allclose(body, encoder.encode_texts(QUERIES), atol=1e-6)
    long = "chair " * 500  # over the limit: refused, unless the caller asks to truncate
    status, body, _ = _post(server, "/embed", {"inputs": [long], "truncate": True}, token[0])
    assert status == 200 and np.allclose(
        body, encoder.encode_texts([long[:MAX_TEXT_CHARS]]), atol=1e-6)


@pytest.mark.parametrize(("body", "status", "param", "code"), [
    ({"model": "patentclip", "input": []}, 400, "input", None),
    ({"model": "patentclip", "input": ["ok", "  "]}, 400, "input", None),
    ({"model": "patentclip", "input": "x" * (MAX_TEXT_CHARS + 1)}, 413, "input",
     "context_length_exceeded"),
    ({"model": "text-embedding-3-small", "input": "a"}, 404, "model", "model_not_found"),
    ({"model": "patentclip", "input": "a", "dimensions": 256}, 400, "dimensions",
     "invalid_dimensions"),
    ({"model": "patentclip", "input": [[1, 2, 3]]}, 400, "input", None),
    ({"model": "patentclip", "input": "a", "encoding_format": "int8"}, 400,
     "encoding_format", None),
])
def test_openai_refusals_are_4xx_with_an_openai_error_body(server, token, body, status,
                                                           param, code):
    got, reply, _ = _post(server, "/v1/embeddings", body, token[0])
    assert got == status
    error = reply["error"]
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/embeddings", {"model": "patentclip", "input": "a"}), ("/embed", {"inputs": "a"})])
@pytest.mark.parametrize("credential", [None, "pcs_wrong"])
def test_missing_or_wrong_token_is_401(server, path, body, credential):
    status, reply, _ = _post(server, path, body, credential)
    assert status == 401
    message = reply["error"]["message"] if path.startswith("/v1") else reply["error"]
    assert "bearer token" in message


@pytest.mark.parametrize(("body", "status"), [
    ({"inputs": []}, 422), ({"inputs": "x" * (MAX_TEXT_CHARS + 1)}, 413),
    ({"texts": ["a"]}, 422), ({"inputs": "a", "dimensions": 3}, 422)])
def test_tei_refusals(server, token, body, status):
    got, reply, _ = _post(server, "/embed", body, token[0])
    assert got == status and reply["error"] and reply["error_type"] == "Validation"


def test_models_and_health(server, encoder, token):
    request = urllib.request.Request(f"http://127.0.0.1:{server.http.port}/v1/models",
                                     headers={"Authorization": f"Bearer {token[0]}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        ids = [m["id"] for m in json.loads(reply.read())["data"]]
    assert ids == [encoder.model_version, "patentclip"]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http.port}/health") as reply:
        assert reply.status == 200


# ----------------------------------------------------------------------------- pymilvus


def test_embedding_function_local_and_remote_agree_with_the_encoder(server, encoder,
                                                                    tiny_model_dir, grants,
                                                                    token):
    local = PatentCLIPEmbeddingFunction(f"local-dir:{tiny_model_dir}")
    remote = PatentCLIPEmbeddingFunction(server=f"127.0.0.1:{server.port}", token=token[0])
    assert local.dim == remote.dim == encoder.dim
    assert local.model_version == remote.model_version == encoder.model_version
    reference = encoder.encode_texts(QUERIES)
    for vectors in (local.encode_queries(QUERIES), local.encode_documents(QUERIES),
                    local(QUERIES), remote.encode_queries(QUERIES)):
        assert len(vectors) == len(QUERIES) and vectors[0].dtype == np.float32
        assert np.allclose(np.stack(vectors), reference, atol=1e-5)

    blobs = [next(iter(d.images.values())) for d in grants[:3]]
    reference = encoder.encode_drawings(blobs)
    pil = Image.open(io.BytesIO(blobs[0]))
    for vectors in (local.encode_images(blobs), remote.encode_images(blobs)):
        assert np.allclose(np.stack(vectors), reference, atol=1e-5)
    assert np.allclose(local.encode_images([pil])[0], reference[0], atol=1e-2)  # via PNG
    remote.close()


def test_pymilvus_users_build_their_own_collection_in_patentclip_space(tiny_model_dir,
                                                                      grants, tmp_path):
    ef = PatentCLIPEmbeddingFunction(f"local-dir:{tiny_model_dir}")
    rows = caption_rows(d.grant for d in grants[:10])
    client = MilvusClient(str(tmp_path / "mine.db"))
    client.create_collection("my_designs", dimension=ef.dim, metric_type="COSINE")
    client.insert("my_designs", [{"id": i, "vector": v.tolist()} for i, v in
                                 enumerate(ef.encode_documents([r["caption"] for r in rows]))])
    [hits] = client.search("my_designs", data=[ef.encode_queries([rows[4]["caption"]])[0]],
                           limit=1)
    assert hits[0]["id"] == 4
    client.close()
