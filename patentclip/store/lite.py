"""Milvus Lite: which URIs open it, when it has grown past what it serves well, and the one
log line of its embedded gRPC server that is noise."""

from __future__ import annotations

import logging

# Milvus Lite 3.x walks every row in Python on each search request (dedup and tombstone
# masks, about 1 us per row on one core), so its per-request floor grows with the collection.
# Past this many rows a search costs more than ~0.25 s: use a Milvus server.
LITE_ADVISED_MAX_ROWS = 200_000


def is_lite_uri(uri: str) -> bool:
    """Whether ``uri`` opens embedded Milvus Lite (a local path) rather than a server."""
    return "://" not in uri and not uri.startswith("unix:")


def lite_size_advice(uri: str, rows: int) -> str | None:
    """A warning when a Milvus Lite store holds more rows than it searches quickly, or None.

    Milvus Lite's per-request cost grows linearly with the rows (see LITE_ADVISED_MAX_ROWS);
    the Milvus server's HNSW search does not, so beyond the limit the advice is the server.
    """
    if rows <= LITE_ADVISED_MAX_ROWS:
        return None
    return (f"Milvus Lite at {uri} holds {rows:,} rows, above the {LITE_ADVISED_MAX_ROWS:,} it "
            "searches in under ~0.25 s per request (its search walks every row in Python); "
            "use a Milvus server (PATENTCLIP_MILVUS_URI=http://host:19530) for this corpus. "
            "See docs/performance.md, 'Search'.")


class _LiteUnimplementedFilter(logging.Filter):
    """Milvus Lite's embedded gRPC server logs a traceback when pymilvus probes an RPC it
    does not implement (AllocTimestamp); pymilvus falls back by itself, so drop that one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NotImplementedError)
                    and "Method not implemented" in record.getMessage())


_QUIET = _LiteUnimplementedFilter()


def quiet_lite_server_log() -> None:
    """Drop that traceback from the ``grpc._server`` log; called when a Lite store opens
    (not at import: other programs' logging is theirs until they use Milvus Lite)."""
    logger = logging.getLogger("grpc._server")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
