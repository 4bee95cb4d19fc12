"""Vector store over pymilvus ``MilvusClient``: one collection per model version.

The same code runs on Milvus Lite (``./data/patents.db``, embedded, the default) and on a
Milvus server (``http://host:19530``).

Layout of a collection ``patentclip_<model_version>``:

* one row per drawing sheet and modality, primary key ``<patent>-<sheet:03d>:<modality>``
  (``D0907292-001:drawing`` holds the sheet image's vector, ``D0907292-001:caption`` the
  vector of the caption the patent gives that sheet). One vector field per collection,
  because Milvus 2.3 servers allow only one;
* scalar fields for filtering and display (patent, sheet, view, Locarno, grant date...);
* HNSW index with COSINE metric; vectors are unit length, so score = cosine similarity;
* the collection's properties record ``patentclip.model_version`` and ``patentclip.dim``:
  a collection is never written or searched with vectors of another model.

Upserts are keyed, so re-indexing the same grants never duplicates rows. Grouping (one hit
per patent, best sheet first) is done here, over an over-fetched candidate list, because
Milvus 2.3 has no server-side grouping.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.client.types import LoadState
from pymilvus.exceptions import (
    ConnectError,
    ConnectionNotExistException,
    MilvusException,
    MilvusUnavailableException,
)

from patentclip.config import CoreSettings
from patentclip.errors import (
    DeadlineExceededError,
    InvalidQueryError,
    ModelVersionMismatchError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from patentclip.grants import PATENT_NUMBER, SHEET_VIEWS, is_calendar_date

logger = logging.getLogger(__name__)

StageTimer = Callable[[str, float], None]  # (stage name, seconds): request-stage timings


# While Milvus is unreachable, at most one call per this many seconds goes to it (a probe);
# the others fail at once with StoreUnavailableError, instead of waiting out their deadline.
PROBE_INTERVAL_S = 1.0

AvailabilityListener = Callable[[bool, str], None]  # (available, reason): state changes only


def _no_stage(stage: str, seconds: float) -> None:
    pass

MODALITIES = ("drawing", "caption")
VERSION_PROPERTY = "patentclip.model_version"
DIM_PROPERTY = "patentclip.dim"
SPEC_PROPERTY = "patentclip.model_spec"  # how to load the model: a query service follows it
PRETRAINED_PROPERTY = "patentclip.model_pretrained"
MAX_SEARCH_LIMIT = 16_384  # Milvus' topk ceiling
# HNSW defaults: chosen with `make bench-search`, set in CoreSettings (one source).
HNSW_M = CoreSettings.hnsw_m
HNSW_EF_CONSTRUCTION = CoreSettings.hnsw_ef_construction
SEARCH_EF = CoreSettings.search_ef
# Milvus Lite 3.x walks every row in Python on each search request (dedup and tombstone
# masks, about 1 us per row on one core), so its per-request floor grows with the collection.
# Past this many rows a search costs more than ~0.25 s: use a Milvus server.
LITE_ADVISED_MAX_ROWS = 200_000

_STRING_FIELDS = {  # name -> max length in bytes
    "id": 64, "patent": 16, "modality": 8, "view": 16, "locarno": 4, "locarno_class": 2,
    "title": 512, "figures": 256, "caption": 2048, "image_uri": 1024,
}


@dataclass(frozen=True)
class SheetRow:
    """One stored vector: a drawing sheet's image, or its caption."""

    patent: str
    sheet: int
    modality: str
    vector: Sequence[float]
    view: str = "unknown"
    locarno: str = ""
    grant_date: int = 0
    title: str = ""
    figures: str = ""
    caption: str = ""
    image_uri: str = ""

    @property
    def id(self) -> str:
        return row_id(self.patent, self.sheet, self.modality)


def row_id(patent: str, sheet: int, modality: str) -> str:
    """The primary key: ``D0907292-001:drawing``."""
    return f"{patent}-{sheet:03d}:{modality}"


@dataclass(frozen=True)
class Hit:
    """One search result row; ``score`` is the cosine similarity."""

    patent: str
    sheet: int
    modality: str
    score: float
    view: str
    locarno: str
    grant_date: int
    title: str
    figures: str
    caption: str
    image_uri: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchFilters:
    """Filters an examiner narrows a search by. Validated: values go into a Milvus expression."""

    locarno: tuple[str, ...] = ()  # '02' (class) or '0204' (class + subclass)
    date_from: int | None = None  # YYYYMMDD, inclusive
    date_to: int | None = None
    views: tuple[str, ...] = ()
    exclude_patents: tuple[str, ...] = field(default=())

    def validate(self) -> None:
        for code in self.locarno:
            if not re.fullmatch(r"\d{2}|\d{4}", code):
                raise InvalidQueryError(f"locarno filter {code!r}: expected 2 digits (class, "
                                        "e.g. 02) or 4 digits (class+subclass, e.g. 0204)")
        for name, value in (("date_from", self.date_from), ("date_to", self.date_to)):
            if value is not None and not is_calendar_date(value):
                raise InvalidQueryError(f"{name} {value}: not a calendar date; expected "
                                        "YYYYMMDD, e.g. 20210105")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidQueryError(f"date range is empty: {self.date_from} > {self.date_to}")
        for view in self.views:
            if view not in SHEET_VIEWS:
                raise InvalidQueryError(f"view filter {view!r}: expected one of "
                                        f"{', '.join(SHEET_VIEWS)}")
        for patent in self.exclude_patents:
            _check_patent_number(patent)

    def expression(self, modality: str | None = None) -> str:
        """The Milvus boolean expression for these filters (validated first)."""
        self.validate()
        clauses = []
        if modality:
            clauses.append(f'modality == "{modality}"')
        classes = [c for c in self.locarno if len(c) == 2]
        subclasses = [c for c in self.locarno if len(c) == 4]
        ors = []
        if classes:
            ors.append(f"locarno_class in {_string_list(classes)}")
        if subclasses:
            ors.append(f"locarno in {_string_list(subclasses)}")
        if ors:
            clauses.append("(" + " or ".join(ors) + ")")
        if self.date_from is not None:
            clauses.append(f"grant_date >= {int(self.date_from)}")
        if self.date_to is not None:
            clauses.append(f"grant_date <= {int(self.date_to)}")
        if self.views:
            clauses.append(f"view in {_string_list(self.views)}")
        if self.exclude_patents:
            clauses.append(f"patent not in {_string_list(self.exclude_patents)}")
        return " and ".join(clauses)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model_version: str
    dim: int
    rows: int
    model_spec: str = ""
    pretrained: str = ""


def collection_name(prefix: str, model_version: str) -> str:
    """The collection a model version's vectors live in: ``<prefix>_<version>``."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', model_version)}"


def open_store(settings: CoreSettings) -> PatentStore:
    """The store the settings name; creates the parent folder of a Milvus Lite file."""
    uri = settings.milvus_uri
    if is_lite_uri(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    return PatentStore(uri, timeout=settings.milvus_timeout_s,
                       prefix=settings.collection_prefix, ef=settings.search_ef,
                       hnsw_m=settings.hnsw_m,
                       hnsw_ef_construction=settings.hnsw_ef_construction,
                       **settings.milvus_connection())


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


def group_by_patent(hits: Iterable[Hit], k: int) -> list[Hit]:
    """Keep each patent's best hit, in score order, up to ``k`` patents."""
    best: dict[str, Hit] = {}
    for hit in sorted(hits, key=lambda h: -h.score):
        best.setdefault(hit.patent, hit)
        if len(best) == k:
            break
    return list(best.values())


class _LiteUnimplementedFilter(logging.Filter):
    """Milvus Lite's embedded gRPC server logs a traceback when pymilvus probes an RPC it
    does not implement (AllocTimestamp); pymilvus falls back by itself, so drop that one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NotImplementedError)
                    and "Method not implemented" in record.getMessage())


logging.getLogger("grpc._server").addFilter(_LiteUnimplementedFilter())


class PatentStore:
    """Collections of sheet vectors, one per model version, in Milvus."""

    def __init__(self, uri: str, token: str = "", timeout: float = 30.0,
                 prefix: str = "patentclip", ef: int = SEARCH_EF, hnsw_m: int = HNSW_M,
                 hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION, **connection) -> None:
        """``token`` is "user:password" or an API token; ``connection`` holds MilvusClient's
        TLS options (secure, server_pem_path, ca_pem_path, client_pem_path, ...)."""
        self.uri, self.timeout, self.prefix, self.ef = uri, timeout, prefix, ef
        self.hnsw_params = {"M": hnsw_m, "efConstruction": hnsw_ef_construction}
        self._loaded: set[str] = set()
        self._loading: set[str] = set()  # background loads in progress
        self._advised: set[str] = set()
        self._is_lite: bool | None = None
        self._listeners: list[AvailabilityListener] = []
        self._down_since: float | None = None  # monotonic time of the first failure
        self._down_reason = ""
        self._next_probe = 0.0
        self._state_lock = threading.Lock()
        self._connection = {"uri": uri, "token": token, **connection}
        self._client: MilvusClient | None = None
        try:  # a Milvus that is down now is connected to later, on first use
            self._connect()
        except StoreUnavailableError as exc:
            logger.warning("%s; will connect when it answers", exc)
            self._next_probe = 0.0  # the first use tries again at once

    def _connect(self) -> MilvusClient:
        try:
            self._client = MilvusClient(timeout=self.timeout, **self._connection)
        except MilvusException as exc:
            self._mark_down(f"cannot connect: {exc.message}")
            raise StoreUnavailableError(f"cannot connect to Milvus at {self.uri}: "
                                        f"{exc.message}") from exc
        self._mark_up()  # it answered the connection
        return self._client

    @property
    def client(self) -> MilvusClient:
        """The pymilvus client; connects first if Milvus was down when the store was made."""
        if self._client is None:
            self._fail_fast_while_down(probe=False)  # one connection attempt per probe
            return self._connect()
        return self._client

    @property
    def available(self) -> bool:
        """False from the first failure that says Milvus is unreachable until a call works."""
        return self._down_since is None

    def add_listener(self, listener: AvailabilityListener) -> None:
        """``listener(available, reason)`` on every change between reachable and not."""
        self._listeners.append(listener)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> PatentStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_lite(self) -> bool:
        """Whether this is Milvus Lite 3.x (pure Python): a local file, or a ``milvus-lite
        server`` by URI, which reports its version as ``milvus_lite-3.x``. (The ``milvus``
        2.3.5 wheel reports ``v2.3.5-lite`` but runs Milvus' C++ engine: not Lite here.)"""
        if self._is_lite is None:
            self._is_lite = is_lite_uri(self.uri) or str(
                self._call(self.client.get_server_version)).startswith("milvus_lite")
        return self._is_lite

    def collection_name(self, model_version: str) -> str:
        return collection_name(self.prefix, model_version)

    @property
    def live_alias(self) -> str:
        return f"{self.prefix}_live"

    # -- collections

    def ensure_collection(self, model_version: str, dim: int, model_spec: str = "",
                          pretrained: str = "") -> str:
        """Create the version's collection if missing; refuse one recorded for another model.

        ``model_spec``/``pretrained`` record how to load the model that writes it, so a query
        service that follows the live alias can load the matching encoder.
        """
        name = self.collection_name(model_version)
        if self._call(self.client.has_collection, name):
            info = self.describe(name)
            if info.model_version != model_version or info.dim != dim:
                raise ModelVersionMismatchError(
                    f"collection {name} holds {info.model_version} (dim {info.dim}), "
                    f"not {model_version} (dim {dim})")
            return name
        self._call(self.client.create_collection, name, schema=_schema(dim),
                   index_params=self._index_params(),
                   properties={VERSION_PROPERTY: model_version, DIM_PROPERTY: str(dim),
                               SPEC_PROPERTY: model_spec, PRETRAINED_PROPERTY: pretrained})
        logger.info("created collection %s (model %s, dim %d)", name, model_version, dim)
        return name

    def describe(self, name_or_alias: str) -> CollectionInfo:
        """Model version, dim and row count of a collection (or of an alias' target)."""
        name = self.resolve(name_or_alias)
        description = self._call(self.client.describe_collection, name)
        properties = description.get("properties") or {}
        dim = int(properties.get(DIM_PROPERTY, 0)) or _vector_dim(description)
        return CollectionInfo(name=name, model_version=properties.get(VERSION_PROPERTY, ""),
                              dim=dim, rows=self.count(name),
                              model_spec=properties.get(SPEC_PROPERTY, ""),
                              pretrained=properties.get(PRETRAINED_PROPERTY, ""))

    def resolve(self, name_or_alias: str) -> str:
        """The collection a name or alias points to; NotFoundError if neither exists."""
        if name_or_alias in self._call(self.client.list_aliases).get("aliases", []):
            return self._call(self.client.describe_alias, name_or_alias)["collection_name"]
        if self._call(self.client.has_collection, name_or_alias):
            return name_or_alias
        raise NotFoundError(f"no collection or alias named {name_or_alias!r} at {self.uri}")

    def list_collections(self) -> list[str]:
        return sorted(n for n in self._call(self.client.list_collections)
                      if n.startswith(self.prefix + "_"))

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` (atomic switch if it already exists)."""
        if alias in self._call(self.client.list_aliases).get("aliases", []):
            self._call(self.client.alter_alias, collection, alias)
        else:
            self._call(self.client.create_alias, collection, alias)

    def drop_alias(self, alias: str) -> None:
        if alias in self._call(self.client.list_aliases).get("aliases", []):
            self._call(self.client.drop_alias, alias)

    def drop(self, name: str) -> None:
        self._call(self.client.drop_collection, name)
        self._loaded.discard(name)

    # -- rows

    def upsert(self, collection: str, rows: Sequence[SheetRow]) -> int:
        """Insert or replace rows by key; returns the number written."""
        if not rows:
            return 0
        return int(self._call(self.client.upsert, collection,
                              [_row_dict(r) for r in rows]).get("upsert_count", len(rows)))

    def delete_patent(self, collection: str, patent: str) -> int:
        """Remove every row of ``patent``: a withdrawn patent (a tombstone on the grants
        topic). Returns the rows deleted; deleting an absent patent is a no-op."""
        _check_patent_number(patent)
        result = self._call(self.client.delete, collection, filter=f'patent == "{patent}"')
        return int(result.get("delete_count", 0)) if hasattr(result, "get") else 0

    def flush(self, collection: str) -> None:
        """Seal growing segments: searches on Milvus Lite are several times faster after.
        Also where a writer learns that Milvus Lite has grown past what it serves well."""
        self._call(self.client.flush, collection)
        self.advise_size(collection)

    def wait_indexed(self, collection: str, timeout: float = 3600.0, poll: float = 0.5) -> int:
        """Block until the vector index covers every sealed row; returns the indexed rows.

        The Milvus server builds HNSW asynchronously after a flush and searches unindexed
        segments by brute force until then; bulk loads (reindex, offline index) wait here
        before a collection takes traffic. Milvus Lite reports its index finished while its
        background build still runs (docs/performance.md), so on Lite this returns at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self._call(self.client.describe_index, collection, "vector")
            indexed, total = int(state.get("indexed_rows", 0)), int(state.get("total_rows", 0))
            # not pending_index_rows: the server counts segments being re-indexed after a
            # compaction there, while their old indexed copies still serve searches
            if indexed >= total and state.get("state") != "InProgress":
                return indexed
            if time.monotonic() > deadline:
                raise StoreError(f"index of {collection} not built within {timeout:.0f}s: "
                                 f"{indexed} of {total} rows")
            time.sleep(poll)

    def load(self, collection: str) -> None:
        """Load a collection for search/query once per process (a new process finds it
        released)."""
        if collection not in self._loaded:
            self._call(self.client.load_collection, collection)
            self._loaded.add(collection)
            self.advise_size(collection)

    def ensure_loaded(self, collection: str) -> None:
        """Check that Milvus has ``collection`` loaded now (after a restart it comes back
        released); if not, load it in the background and raise StoreUnavailableError
        saying so, so that callers answer at once instead of waiting for the load."""
        if self._call(self.client.get_load_state, collection).get("state") == LoadState.Loaded:
            self._loaded.add(collection)
            return
        self._load_in_background(collection)
        raise StoreUnavailableError(f"collection {collection} is loading in Milvus at "
                                    f"{self.uri} (released, e.g. after a restart)")

    def _load_in_background(self, collection: str) -> None:
        """One thread per collection loads it, retrying while Milvus is unavailable."""
        with self._state_lock:
            if collection in self._loading:
                return
            self._loading.add(collection)
            self._loaded.discard(collection)

        def load() -> None:
            try:
                for _ in range(600):
                    try:
                        self._call(self.client.load_collection, collection, _probe=True)
                        self._loaded.add(collection)
                        logger.info("collection %s is loaded again", collection)
                        return
                    except StoreUnavailableError:
                        time.sleep(PROBE_INTERVAL_S)
            finally:
                with self._state_lock:
                    self._loading.discard(collection)

        threading.Thread(target=load, name=f"load-{collection}", daemon=True).start()

    def advise_size(self, collection: str) -> str | None:
        """Log (once per collection) when Milvus Lite holds more rows than it serves well."""
        if collection in self._advised or not self.is_lite:
            return None
        advice = lite_size_advice(self.uri, self._row_count(collection))
        if advice:
            self._advised.add(collection)
            logger.warning(advice)
        return advice

    def count(self, collection: str, modality: str | None = None) -> int:
        """Rows in a collection; reads its own writes (Strong consistency) on a server."""
        self.load(collection)
        return self._row_count(collection, modality)

    def _row_count(self, collection: str, modality: str | None = None) -> int:
        expr = f'modality == "{modality}"' if modality else ""
        result = self._call(self.client.query, collection, filter=expr,
                            output_fields=["count(*)"], consistency_level="Strong")
        return int(result[0]["count(*)"]) if result else 0

    def patent_rows(self, collection: str, patent: str, with_vectors: bool = False,
                    strong: bool = True) -> list[dict]:
        """All rows of one patent, sheet order.

        ``strong`` reads this process' own latest writes; on a Milvus server that waits for
        the next time tick (about 0.2-0.4 s measured, `make bench-latency`). Query-time
        lookups pass False (Bounded, like searches): a grant indexed seconds ago may be
        missing for those seconds.
        """
        _check_patent_number(patent)
        self.load(collection)
        fields = _OUTPUT_FIELDS + (["vector"] if with_vectors else [])
        rows = self._call(self.client.query, collection, filter=f'patent == "{patent}"',
                          output_fields=fields, limit=MAX_SEARCH_LIMIT,
                          consistency_level="Strong" if strong else "Bounded")
        return sorted(rows, key=lambda r: (r["sheet"], r["modality"]))

    def search(self, collection: str, vectors: np.ndarray, k: int,
               filters: SearchFilters | None = None, modality: str | None = None,
               group: bool = True, timeout: float | None = None,
               on_stage: StageTimer | None = None) -> list[list[Hit]]:
        """Top-k hits for each query vector; with ``group`` one hit per patent.

        ``timeout`` (seconds) caps each Milvus call below the store's own timeout: a
        caller's deadline propagates to the search. ``on_stage(name, seconds)`` receives the
        time in Milvus (``search``) and in turning its rows into grouped hits (``group``).
        """
        if not 1 <= k <= MAX_SEARCH_LIMIT:
            raise InvalidQueryError(f"k={k}: must be between 1 and {MAX_SEARCH_LIMIT}")
        if modality is not None and modality not in MODALITIES:
            raise InvalidQueryError(f"modality {modality!r}: expected one of {MODALITIES}")
        expression = (filters or SearchFilters()).expression(modality)
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        self.load(collection)
        return self._search_batch(collection, vectors, k, expression, group, timeout,
                                  on_stage or _no_stage)

    def _search_batch(self, collection: str, vectors: np.ndarray, k: int, expression: str,
                      group: bool, timeout: float | None, on_stage: StageTimer
                      ) -> list[list[Hit]]:
        """All query vectors in one Milvus request: Milvus Lite pays a per-request cost that
        grows with the collection, so n vectors in one call cost about as much as one.

        Grouped searches over-fetch sheets; a query whose candidates held fewer than ``k``
        patents is asked again, deeper, until it has ``k``, runs out, or hits Milvus' cap.
        """
        results: list[list[Hit]] = [[] for _ in vectors]
        pending = list(range(len(vectors)))
        limit = min(k * 8 if group else k, MAX_SEARCH_LIMIT)
        while pending:
            started = time.perf_counter()
            raw = self._call(self.client.search, collection,
                             data=[vectors[i].tolist() for i in pending], limit=limit,
                             filter=expression, output_fields=_OUTPUT_FIELDS,
                             search_params={"metric_type": "COSINE",
                                            "params": {"ef": max(self.ef, limit)}},
                             _timeout=timeout)
            searched = time.perf_counter()
            on_stage("search", searched - started)
            deeper = []
            for i, found in zip(pending, raw, strict=True):
                hits = [_hit(r) for r in found]
                results[i] = group_by_patent(hits, k) if group else hits[:k]
                if group and len(results[i]) < k and len(hits) >= limit \
                        and limit < MAX_SEARCH_LIMIT:
                    deeper.append(i)
            on_stage("group", time.perf_counter() - searched)
            pending, limit = deeper, min(limit * 4, MAX_SEARCH_LIMIT)
        return results

    # -- helpers

    def _index_params(self):
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type="HNSW", metric_type="COSINE",
                         params=self.hnsw_params)
        return params

    def _call(self, method, *args, _timeout: float | None = None, _probe: bool = False,
              **kwargs):
        """Call pymilvus with the store's timeout (or a shorter caller deadline).

        Errors are classified once (``classify_milvus_error``): unreachable, warming up or
        restarting is StoreUnavailableError, a caller's passed deadline DeadlineExceeded,
        the rest StoreError. While Milvus is unavailable, calls fail at once except one
        probe per PROBE_INTERVAL_S. A collection found released (Milvus restarted) is loaded
        again in the background, and the call is UNAVAILABLE until it is.
        """
        timeout = self.timeout if _timeout is None else min(self.timeout, _timeout)
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the vector search")
        self._fail_fast_while_down(_probe)
        try:
            result = _milvus_errors_only(method, *args, timeout=timeout, **kwargs)
        except MilvusException as exc:
            kind = classify_milvus_error(exc)
            collection = args[0] if args and isinstance(args[0], str) else None
            if kind == "not_loaded" and collection:
                self._load_in_background(collection)
                raise StoreUnavailableError(f"collection {collection} is not loaded in Milvus "
                                            f"at {self.uri} (loading it again): "
                                            f"{exc.message}") from exc
            if kind == "deadline" and _timeout is not None and _timeout <= self.timeout:
                raise DeadlineExceededError(f"vector search did not finish within the "
                                            f"caller's deadline ({timeout:.3f}s)") from exc
            if kind in ("unavailable", "deadline"):
                self._mark_down(exc.message)
                raise StoreUnavailableError(f"Milvus at {self.uri} unavailable: "
                                            f"{exc.message}") from exc
            self._mark_up()  # it answered, with a refusal
            raise StoreError(f"Milvus at {self.uri}: {exc.message}") from exc
        self._mark_up()
        return result

    def _fail_fast_while_down(self, probe: bool) -> None:
        with self._state_lock:
            if self._down_since is None or probe:
                return
            now = time.monotonic()
            if now >= self._next_probe:
                self._next_probe = now + PROBE_INTERVAL_S  # this call is the probe
                return
            down_for = now - self._down_since
        raise StoreUnavailableError(f"Milvus at {self.uri} unavailable for {down_for:.0f}s: "
                                    f"{self._down_reason}")

    def _mark_down(self, reason: str) -> None:
        with self._state_lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
                self._next_probe = self._down_since + PROBE_INTERVAL_S
            self._down_reason = " ".join(str(reason).split())[:300]
        if first:
            logger.warning("Milvus at %s is unavailable: %s (failing fast; probing every "
                           "%.0fs)", self.uri, self._down_reason, PROBE_INTERVAL_S)
            for listener in self._listeners:
                listener(False, self._down_reason)

    def _mark_up(self) -> None:
        if self._down_since is None:
            return
        with self._state_lock:
            down, self._down_since = self._down_since, None
        if down is not None:
            logger.info("Milvus at %s answers again, after %.1fs", self.uri,
                        time.monotonic() - down)
            for listener in self._listeners:
                listener(True, "")


_OUTPUT_FIELDS = ["patent", "sheet", "modality", "view", "locarno", "grant_date", "title",
                  "figures", "caption", "image_uri"]


def _schema(dim: int):
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description="PatentCLIP drawing-sheet vectors")
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=_STRING_FIELDS["id"])
    for name in ("patent", "modality", "view", "locarno", "locarno_class"):
        schema.add_field(name, DataType.VARCHAR, max_length=_STRING_FIELDS[name])
    schema.add_field("sheet", DataType.INT64)
    schema.add_field("grant_date", DataType.INT64)
    for name in ("title", "figures", "caption", "image_uri"):
        schema.add_field(name, DataType.VARCHAR, max_length=_STRING_FIELDS[name])
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def _row_dict(row: SheetRow) -> dict:
    if row.modality not in MODALITIES:
        raise ValueError(f"modality {row.modality!r} not in {MODALITIES}")
    values = {
        "id": row.id, "patent": row.patent, "sheet": int(row.sheet), "modality": row.modality,
        "view": row.view, "locarno": row.locarno, "locarno_class": row.locarno[:2],
        "grant_date": int(row.grant_date), "title": row.title, "figures": row.figures,
        "caption": row.caption, "image_uri": row.image_uri,
        "vector": np.asarray(row.vector, dtype=np.float32).tolist(),
    }
    for name, limit in _STRING_FIELDS.items():
        values[name] = _truncate_utf8(values[name], limit)
    return values


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


def _hit(raw: dict) -> Hit:
    entity = raw["entity"]
    return Hit(score=float(raw["distance"]), **{k: entity[k] for k in _OUTPUT_FIELDS})


def _vector_dim(description: dict) -> int:
    for f in description.get("fields", []):
        if f.get("name") == "vector":
            return int(f.get("params", {}).get("dim", 0))
    return 0


def _string_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _check_patent_number(patent: str) -> None:
    if not PATENT_NUMBER.fullmatch(patent):
        raise InvalidQueryError(f"patent number {patent!r}: expected e.g. D0907292")


# How a Milvus error is read, in this order: pymilvus' exception type, then Milvus' error
# code (pkg/util/merr), then words of the message (older servers, Milvus Lite and errors
# raised inside pymilvus carry no useful code; code 1 is also pymilvus' "unexpected").
_UNAVAILABLE_TYPES = (MilvusUnavailableException, ConnectError, ConnectionNotExistException)
_CODES = {
    101: "not_loaded", 103: "not_loaded", 106: "not_loaded",  # not loaded, partly, recovering
    2: "unavailable", 4: "unavailable", 8: "unavailable", 11: "unavailable",  # service
    503: "unavailable", 601: "unavailable", 602: "unavailable", 801: "unavailable",
    901: "unavailable", 902: "unavailable", 903: "unavailable", 904: "unavailable",
    905: "unavailable", 906: "unavailable",  # nodes: not found, offline, lack, not match...
}
MILVUS_ERROR_WORDS: tuple[tuple[str, str], ...] = (
    ("not loaded", "not_loaded"), ("state 'released'", "not_loaded"),
    ("deadline", "deadline"), ("timeout", "deadline"), ("timed out", "deadline"),
    ("unavailable", "unavailable"), ("connect", "unavailable"), ("closed", "unavailable"),
    ("cancelled", "unavailable"),
    ("no available", "unavailable"),  # "find no available rootcoord" (a stop, a warm-up)
    ("not ready", "unavailable"), ("session not found", "unavailable"),
    ("node not match", "unavailable"), ("stopping", "unavailable"),
    ("shutting down", "unavailable"), ("recovering", "not_loaded"),
)


def _milvus_errors_only(method, *args, **kwargs):
    """``method(...)``; a gRPC error that pymilvus let through unwrapped (seen: a
    DEADLINE_EXCEEDED from create_collection while Milvus starts) becomes a
    MilvusException carrying the gRPC status name, so one classification reads both."""
    try:
        return method(*args, **kwargs)
    except MilvusException:
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        status = getattr(code(), "name", None) if callable(code) else None
        if not isinstance(status, str):
            raise
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        number = 2 if status in ("UNAVAILABLE", "CANCELLED") else 1
        raise MilvusException(code=number, message=f"gRPC {status}: {details}") from exc


def classify_milvus_error(exc: MilvusException) -> str:
    """One of "not_loaded", "unavailable", "deadline" (all retriable) or "error"."""
    if isinstance(exc, _UNAVAILABLE_TYPES):
        return "unavailable"
    if exc.code in _CODES:
        return _CODES[exc.code]
    text = str(exc.message).lower()
    return next((kind for words, kind in MILVUS_ERROR_WORDS if words in text), "error")
