"""One query service for the package's tests, built once per worker (the scheduler keeps the
package on one): the 40 real sample grants indexed with the tiny model into Milvus Lite,
served over gRPC on a free port, and a Python client."""

from __future__ import annotations

import pytest

from harness.query_service import query_settings
from harness.services import index_samples
from patentclip_client import PatentSearchClient
from services.query.main import QueryServer


@pytest.fixture(scope="package")
def corpus(tmp_path_factory, encoder, sample_dir):
    """(store, images dir, {patent: GrantDocument}, collection): with part tiles, and the
    figure labels of USD0919445 read (6 figures on 3 sheets: figure rows)."""
    corpus = index_samples(encoder, tmp_path_factory.mktemp("query"), "query", sample_dir,
                           parts=True, labelled=("D0919445",))
    yield corpus
    corpus[0].close()


@pytest.fixture(scope="package")
def server(corpus, encoder):
    store, images, _, _ = corpus
    query_server = QueryServer(query_settings(store, images), encoder=encoder,
                               store=store).start()
    yield query_server
    query_server.stop(grace=1)


@pytest.fixture(scope="package")
def client(server):
    with PatentSearchClient(f"127.0.0.1:{server.port}", timeout=20) as c:
        yield c
