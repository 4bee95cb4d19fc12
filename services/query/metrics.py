"""The query service's Prometheus metrics (one registry per server instance).

Labels are bounded: method (the RPC names), code (gRPC status names), stage (STAGES),
kind (text, image), route (the HTTP app's route templates, "static" for its assets,
"other" for unknown paths), status (HTTP status codes). Never a query string or a patent
number.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)
# Request stages, in order; they do not overlap. decode: image bytes -> pixels; encode: the
# model (with dynamic batching's wait); lookup: a similar-patent query's own vectors;
# search: the Milvus call; group: rows -> hits, grouping by patent and rank fusion;
# serialize: hits -> protobuf. The rest of a request's time is gRPC and the service itself.
# Why the HTTP edge refused a request before a route ran (services/query/http/edge.py).
HTTP_REFUSALS = ("host", "auth", "permission", "too_large", "malformed")
STAGES = ("decode", "encode", "lookup", "search", "group", "serialize")


class QueryMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("patentclip_query_requests_total",
                                "RPCs by method and gRPC status code", ["method", "code"],
                                registry=r)
        self.latency = Histogram("patentclip_query_request_seconds",
                                 "RPC latency by method", ["method"], buckets=_LATENCY,
                                 registry=r)
        self.stage = Histogram("patentclip_query_stage_seconds",
                               "Time per request stage (" + ", ".join(STAGES) + ")", ["stage"],
                               buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("patentclip_query_encoder_batch_size",
                                    "Queries per encoder call (dynamic batching)", ["kind"],
                                    buckets=_BATCH, registry=r)
        self.search_batch_size = Histogram(
            "patentclip_query_search_batch_size",
            "Concurrent searches sent to Milvus in one request (search batching)",
            buckets=_BATCH, registry=r)
        self.cache = Counter("patentclip_query_text_cache_total",
                             "Text-embedding cache lookups by result", ["result"], registry=r)
        self.model = Info("patentclip_query_model", "Model version and collection served",
                          registry=r)
        self.swaps = Counter("patentclip_query_model_swaps_total",
                             "Hot swaps to a new live collection/model", registry=r)
        self.serving = Gauge("patentclip_query_serving",
                             "1 when serving (model and collection loaded and consistent)",
                             registry=r)
        self.model_mismatch = Gauge(
            "patentclip_query_model_mismatch",
            "1 while the live alias points at a collection built by a model this service "
            "cannot load as that version (it keeps serving the previous snapshot)", registry=r)
        self.lexical = Gauge(
            "patentclip_query_lexical_enabled",
            "1 when the served collection has the lexical (BM25) leg; 0: text search uses the "
            "dense legs only (a backend without full-text search, or a collection made "
            "before it: /api/info and ServerInfo say which)", registry=r)
        self.corpus = Gauge("patentclip_query_corpus_rows",
                            "Rows in the served collection (at load time)", registry=r)
        self.auth_failures = Counter(
            "patentclip_query_auth_failures_total",
            "Calls refused by token authentication: reason token (missing or unknown "
            "token, UNAUTHENTICATED) or permission (role too low, PERMISSION_DENIED)",
            ["reason"], registry=r)
        self.drawing_cache = Counter(
            "patentclip_query_drawing_cache_total",
            "Rendered-drawing cache lookups (GetDrawing, web app) by result", ["result"],
            registry=r)
        self.http_requests = Counter(
            "patentclip_query_http_requests_total",
            "HTTP requests (web app, embedding provider) by route template and status",
            ["route", "status"], registry=r)
        self.http_latency = Histogram("patentclip_query_http_request_seconds",
                                      "HTTP request latency by route template", ["route"],
                                      buckets=_LATENCY, registry=r)
        self.overloaded = Counter(
            "patentclip_query_overloaded_total",
            "Requests refused because the process was at its bound of decodes in flight "
            "(PATENTCLIP_QUERY_MAX_DECODES) for PATENTCLIP_QUERY_DECODE_WAIT_S", registry=r)
        self.http_refused = Counter(
            "patentclip_query_http_refused_total",
            "HTTP requests refused at the edge before any route ran, by reason (host, auth, "
            "permission, too_large, malformed)", ["reason"], registry=r)
        for reason in HTTP_REFUSALS:
            self.http_refused.labels(reason)
        for stage in STAGES:
            self.stage.labels(stage)
        for reason in ("token", "permission"):
            self.auth_failures.labels(reason)
        for result in ("hit", "miss"):
            self.cache.labels(result)
            self.drawing_cache.labels(result)
