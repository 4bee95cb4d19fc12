"""The embedding provider's request handling, with a stand-in encoder (pure logic)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pytest

from patentclip.errors import UnavailableError
from patentclip.search.batching import DynamicBatcher
from services.common.auth import Role, TokenAuthenticator, new_token, token_line
from services.query.http.provider import MODEL_HEADER, EmbeddingProvider


class _Encoder:
    dim = 4

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_texts(self, texts, timeout=None):
        self.calls.append(list(texts))
        return np.array([[len(t), 0, 0, 1] for t in texts], dtype=np.float32)


@pytest.fixture
def provider():
    snap = SimpleNamespace(encoder=_Encoder(), model_version="patentclip_tiny_0123456789ab")
    return EmbeddingProvider(lambda: snap, None, timeout_s=30.0), snap


def test_openai_reply_shape_and_base64(provider):
    embed, snap = provider
    reply = embed.openai({"model": "patentclip", "input": ["ab", "abc"],
                          "encoding_format": "base64"}, None)
    assert reply.status == 200 and reply.headers[MODEL_HEADER] == snap.model_version
    first = np.frombuffer(base64.b64decode(reply.body["data"][1]["embedding"]), "<f4")
    assert first.tolist() == [3, 0, 0, 1]
    assert reply.body["usage"]["total_tokens"] == 2  # no tokenizer: words
    assert snap.encoder.calls == [["ab", "abc"]]  # one call for the whole request


def test_tei_maps_validation_to_422(provider):
    embed, _ = provider
    assert embed.tei({"inputs": ["a", 3]}, None).status == 422
    assert embed.tei(["a"], None).status == 422
    assert embed.tei({"inputs": "abc"}, None).body == [[3, 0, 0, 1]]


def test_not_serving_is_503_in_both_protocols():
    def nothing():
        raise UnavailableError("not serving yet")

    embed = EmbeddingProvider(nothing, None, timeout_s=30.0)
    assert embed.openai({"model": "patentclip", "input": "a"}, None).status == 503
    reply = embed.tei({"inputs": "a"}, None)
    assert reply.status == 503 and reply.body["error_type"] == "Unhealthy"


def test_tokens_are_checked_with_the_search_role(provider, tmp_path):
    _, snap = provider
    token = new_token()
    path = tmp_path / "tokens"
    path.write_text(token_line(token, Role.SEARCH, "milvus") + "\n")
    embed = EmbeddingProvider(lambda: snap, TokenAuthenticator(path), timeout_s=30.0)
    assert embed.openai({"model": "patentclip", "input": "a"}, None).status == 401
    assert embed.openai({"model": "patentclip", "input": "a"}, "Bearer nope").status == 401
    assert embed.openai({"model": "patentclip", "input": "a"}, f"Bearer {token}").status == 200


def test_submit_many_queues_a_request_s_items_into_shared_batches():
    sizes = []
    batcher = DynamicBatcher(lambda items: [i * 2 for i in items], max_batch=8,
                             max_delay=0.05, on_batch=sizes.append)
    try:
        assert batcher.submit_many(list(range(20))) == [i * 2 for i in range(20)]
    finally:
        batcher.close()
    assert sum(sizes) == 20 and max(sizes) == 8 and len(sizes) <= 4
