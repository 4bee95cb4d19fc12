"""The gRPC query service as its integration tests run it (tests/integration/query_service/):
its settings on free ports, and the status of a failed call."""

from __future__ import annotations

import grpc
import pytest

from patentclip.config import CoreSettings
from patentclip.store import PatentStore
from services.query.config import QuerySettings, ServerSettings

MAX_IMAGE_BYTES = 2_000_000


def query_settings(store: PatentStore, images, **server) -> QuerySettings:
    """A query service over ``store`` and its image store, on free ports, quick to poll and
    to stop; ``server`` overrides any ServerSettings field."""
    core = CoreSettings(milvus_uri=store.uri, images_dir=str(images),
                        collection_prefix=store.prefix)
    return QuerySettings(core, ServerSettings(**{
        "host": "127.0.0.1", "port": 0, "metrics_port": 0, "max_image_bytes": MAX_IMAGE_BYTES,
        "alias_poll_s": 0.2, "grace_s": 2.0, **server}))


def rpc_code(call) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()
