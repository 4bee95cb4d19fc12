"""The client library examiner tooling installs: ``pip install 'patentclip-search[client]'``.

Needs only grpcio and protobuf (no torch): the typed gRPC client of the query service and
the code generated from ``protos/``. ``patentclip_client.milvus`` adds the pymilvus-style
embedding function (remote through the query service; in-process needs the services extra).
"""

from patentclip_client.client import (
    PatentSearchClient,
    SearchPage,
    search_options,
    tls_credentials,
)

__all__ = ["PatentSearchClient", "SearchPage", "search_options", "tls_credentials"]
