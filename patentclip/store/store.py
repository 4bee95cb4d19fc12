"""Vector store over pymilvus ``MilvusClient``: one collection per model version.

The same code runs on Milvus Lite (``./data/patents.db``, embedded, the default) and on a
Milvus server (``http://host:19530``). What a collection holds is in ``schema``, the filter
language in ``filters``, how Milvus errors are read in ``milvus_errors``, the live alias in
``aliases``; grouping and fusion of hits in ``patentclip.search.ranking``.

Upserts are keyed, so re-indexing the same grants never duplicates rows. Grouping (one hit
per patent, best sheet first) is done over an over-fetched candidate list, because Milvus
2.3 has no server-side grouping.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient
from pymilvus.client.types import LoadState
from pymilvus.exceptions import MilvusException

from patentclip.config import CoreSettings
from patentclip.errors import (
    DeadlineExceededError,
    InvalidQueryError,
    ModelVersionMismatchError,
    StoreError,
    StoreUnavailableError,
)
from patentclip.grants.model import check_patent_number
from patentclip.store.aliases import AliasOperations
from patentclip.store.filters import SearchFilters
from patentclip.store.lite import is_lite_uri, lite_size_advice, quiet_lite_server_log
from patentclip.store.milvus_errors import classify_milvus_error, milvus_errors_only
from patentclip.store.schema import (
    DIM_PROPERTY,
    LEXICAL_FIELD,
    MAX_SEARCH_LIMIT,
    MODALITIES,
    OUTPUT_FIELDS,
    PARTITIONS,
    PRETRAINED_PROPERTY,
    SPEC_PROPERTY,
    TEXT_FIELD,
    VERSION_PROPERTY,
    CollectionInfo,
    Hit,
    SheetRow,
    collection_name,
    group_by_patent,
    group_by_sheet,
    has_full_text,
    hit_from_milvus,
    milvus_schema,
    partition_of,
    row_dict,
    vector_dim,
)
from patentclip.store.wall_clock import WallClockBound, WallClockExceeded

logger = logging.getLogger(__name__)

StageTimer = Callable[[str, float], None]  # (stage name, seconds): request-stage timings

# While Milvus is unreachable, at most one call per this many seconds goes to it (a probe);
# the others fail at once with StoreUnavailableError, instead of waiting out their deadline.
PROBE_INTERVAL_S = 1.0
# A call made for a caller's deadline (a search, a lookup) that probes a Milvus marked down,
# or comes in the first WARMUP_S after it answers again, waits at most PROBE_TIMEOUT_S: a
# server that accepts connections while its collections load again (a restart, a reload)
# would otherwise hold each request for the whole store timeout, several times over for a
# multi-leg search, and the client's deadline runs out. Cut short there, the call is
# UNAVAILABLE: retriable, at once.
PROBE_TIMEOUT_S = 2.0
WARMUP_S = 30.0
# Such a call (a read) is also bounded by the wall clock, at its timeout plus this grace for
# pymilvus to report first: pymilvus overshoots its own timeout while it retries in a call.
WALL_CLOCK_GRACE_S = 0.25

AvailabilityListener = Callable[[bool, str], None]  # (available, reason): state changes only

# HNSW defaults: chosen with `make bench-search`, set in CoreSettings (one source).
HNSW_M = CoreSettings.hnsw_m
HNSW_EF_CONSTRUCTION = CoreSettings.hnsw_ef_construction
SEARCH_EF = CoreSettings.search_ef


def _no_stage(stage: str, seconds: float) -> None:
    pass


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


class PatentStore(AliasOperations):
    """Collections of sheet vectors, one per model version, in Milvus."""

    def __init__(self, uri: str, token: str = "", timeout: float = 30.0,
                 prefix: str = "patentclip", ef: int = SEARCH_EF, hnsw_m: int = HNSW_M,
                 hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION, **connection) -> None:
        """``token`` is "user:password" or an API token; ``connection`` holds MilvusClient's
        TLS options (secure, server_pem_path, ca_pem_path, client_pem_path, ...)."""
        self.uri, self.timeout, self.prefix, self.ef = uri, timeout, prefix, ef
        self.hnsw_params = {"M": hnsw_m, "efConstruction": hnsw_ef_construction}
        self._loaded: set[str] = set()
        self._partitions: dict[str, tuple[str, ...]] = {}  # collection -> its PARTITIONS
        self._lexical: dict[str, str] = {}  # collection -> why it has no lexical leg ("": has)
        self._backend_lexical: str | None = None
        self._loading: set[str] = set()  # background loads in progress
        self._advised: set[str] = set()
        self._is_lite: bool | None = None
        self._listeners: list[AvailabilityListener] = []
        self._down_since: float | None = None  # monotonic time of the first failure
        self._up_since = 0.0  # monotonic time it answered again after being down
        self._down_reason = ""
        self._next_probe = 0.0
        self._state_lock = threading.Lock()
        self._bounded = WallClockBound()
        self._connection = {"uri": uri, "token": token, **connection}
        if is_lite_uri(uri):
            quiet_lite_server_log()
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

    @property
    def steady(self) -> bool:
        """Available and past the warm-up: calls are neither probes nor cut short, so a
        caller may queue them (BatchedSearch) without one slow call holding up others."""
        return self._down_since is None and not self._warming()

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
            self._ensure_partition(name, "part")  # made before part rows: add theirs
            return name
        full_text = not self.full_text_off()
        self._call(self.client.create_collection, name, schema=milvus_schema(dim, full_text),
                   index_params=self._index_params(full_text),
                   properties={VERSION_PROPERTY: model_version, DIM_PROPERTY: str(dim),
                               SPEC_PROPERTY: model_spec, PRETRAINED_PROPERTY: pretrained})
        for partition in PARTITIONS:  # see _partitioned
            self._call(self.client.create_partition, name, partition)
        self._partitions[name] = PARTITIONS
        logger.info("created collection %s (model %s, dim %d, lexical leg %s)", name,
                    model_version, dim, "on" if full_text else "off")
        return name

    def full_text_off(self) -> str:
        """Why this backend cannot hold a lexical leg ("" when it can): full-text search
        (BM25 functions) is in Milvus Lite 3.x and Milvus servers from 2.5."""
        if self._backend_lexical is None:
            version = "" if is_lite_uri(self.uri) else str(
                self._call(self.client.get_server_version))
            self._backend_lexical = _full_text_off(version)
        return self._backend_lexical

    def lexical_off(self, collection: str) -> str:
        """Why ``collection`` has no lexical (BM25) leg, "" when it has one. Logged once per
        collection when off: text search then uses the dense legs only."""
        if collection not in self._lexical:
            reason = self.full_text_off()
            if not reason and not has_full_text(self._call(self.client.describe_collection,
                                                           collection)):
                reason = (f"collection {collection} was made without full-text fields "
                          "(before the lexical leg, or on a backend without it): reindex it "
                          "(`patentclip reindex`) to add them")
            self._lexical[collection] = reason
            if reason:
                logger.warning("lexical (BM25) leg off for %s: %s; text search uses the "
                               "dense legs only", collection, reason)
        return self._lexical[collection]

    def describe(self, name_or_alias: str) -> CollectionInfo:
        """Model version, dim and row count of a collection (or of an alias' target)."""
        name = self.resolve(name_or_alias)
        description = self._call(self.client.describe_collection, name)
        properties = description.get("properties") or {}
        dim = int(properties.get(DIM_PROPERTY, 0)) or vector_dim(description)
        return CollectionInfo(name=name, model_version=properties.get(VERSION_PROPERTY, ""),
                              dim=dim, rows=self.count(name),
                              model_spec=properties.get(SPEC_PROPERTY, ""),
                              pretrained=properties.get(PRETRAINED_PROPERTY, ""))

    def list_collections(self) -> list[str]:
        return sorted(n for n in self._call(self.client.list_collections)
                      if n.startswith(self.prefix + "_"))

    def drop(self, name: str) -> None:
        self._call(self.client.drop_collection, name)
        self._loaded.discard(name)
        self._partitions.pop(name, None)
        self._lexical.pop(name, None)

    def _partitioned(self, collection: str) -> bool:
        """Whether drawing and caption rows live in partitions of their own (part rows too,
        where the collection has a ``part`` partition: ``_partition_names``).

        A filtered HNSW search walks one graph and skips what the filter refuses; with both
        modalities in one graph, a text vector lands among the captions (CLIP's modality
        gap) and the walk may never reach the drawings. Measured on Milvus Lite with the
        40 sample grants: ``modality == "drawing"`` returned 0 of 372 drawing rows for one
        text query and 199 for another, a drawing partition all 372. Collections made
        before partitions keep the filter (with a warning: reindex them).
        """
        return bool(self._partition_names(collection))

    def _partition_names(self, collection: str) -> tuple[str, ...]:
        """The PARTITIONS ``collection`` has; () for one made before partitions."""
        if collection not in self._partitions:
            have = tuple(p for p in PARTITIONS
                         if self._call(self.client.has_partition, collection, p))
            if not {"drawing", "caption"} <= set(have):
                logger.warning("collection %s has no modality partitions (made before they "
                               "were introduced): searches filter by modality and may miss "
                               "rows; reindex it (`patentclip reindex`)", collection)
                have = ()
            self._partitions[collection] = have
        return self._partitions[collection]

    def _ensure_partition(self, collection: str, partition: str) -> None:
        """Add ``partition`` to a partitioned collection made before it existed (writers)."""
        have = self._partition_names(collection)
        if have and partition not in have:
            self._call(self.client.create_partition, collection, partition)
            self._partitions[collection] = (*have, partition)
            self._loaded.discard(collection)  # load again: the new partition with the rest

    # -- rows

    def upsert(self, collection: str, rows: Sequence[SheetRow]) -> int:
        """Insert or replace rows by key; returns the number written. A sheet written again
        with figure or part rows loses those it had first: their keys follow its figures
        and tiling, which may have changed."""
        if not rows:
            return 0
        # After an outage, write only into a collection Milvus has loaded again (a cheap
        # guard: once in CI, rows Milvus Lite had accepted just after a restart were
        # missing afterwards; not reproduced, so not known to be the cause).
        self.load(collection)
        words = not self.lexical_off(collection)
        self._drop_parts_of(collection, rows)

        def stored(row: SheetRow) -> dict:
            values = row_dict(row)
            if not words:
                del values[TEXT_FIELD]
            return values

        if not self._partitioned(collection):
            return int(self._call(self.client.upsert, collection,
                                  [stored(r) for r in rows]).get("upsert_count", len(rows)))
        # One partition per call; the calls share one store timeout, so a write takes no
        # longer than the single call it used to be (the embedder must poll Kafka again
        # within max_poll_interval, even while Milvus half answers after a restart).
        until = time.monotonic() + self.timeout
        written = 0
        for partition in PARTITIONS:  # a row's id includes its modality: one partition each
            part = [stored(r) for r in rows if partition_of(r.modality) == partition]
            if part:
                self._ensure_partition(collection, partition)
                written += int(self._call(self.client.upsert, collection, part,
                                          partition_name=partition, _until=until
                                          ).get("upsert_count", len(part)))
        return written

    def _drop_parts_of(self, collection: str, rows: Sequence[SheetRow]) -> None:
        """Delete the figure and part rows of the sheets ``rows`` write again, when the
        write holds such rows itself (writes without them, the default, cost no delete;
        tiles left by an earlier tiling then stay until a reindex)."""
        if not any(row.modality in ("figure", "part") for row in rows):
            return
        sheets = [(row.patent, row.sheet) for row in rows if row.modality == "drawing"]
        if sheets:
            self._call(self.client.delete, collection,
                       filter=f'modality in ["figure", "part"] and {_of_sheets(sheets)}')

    def delete_patent(self, collection: str, patent: str) -> int:
        """Remove every row of ``patent``: a withdrawn patent (a tombstone on the grants
        topic). Returns the rows deleted; deleting an absent patent is a no-op."""
        check_patent_number(patent)
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
        deadline, seen = time.monotonic() + timeout, "no index reported yet"
        while True:
            # None: the index just created is not visible yet (pymilvus answers None for an
            # index it cannot find); it is waited for like one still building.
            state = self._call(self.client.describe_index, collection, "vector")
            if state is not None:
                indexed = int(state.get("indexed_rows", 0))
                total = int(state.get("total_rows", 0))
                # not pending_index_rows: the server counts segments being re-indexed after
                # a compaction there, while their old indexed copies still serve searches
                if indexed >= total and state.get("state") != "InProgress":
                    return indexed
                seen = f"{indexed} of {total} rows"
            if time.monotonic() > deadline:
                raise StoreError(f"index of {collection} not built within {timeout:.0f}s: "
                                 f"{seen}")
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
                    strong: bool = True, timeout: float | None = None) -> list[dict]:
        """All rows of one patent, sheet order; ``timeout``: the caller's deadline, if any
        (then the lookup fails fast while Milvus is in doubt, as searches do).

        ``strong`` reads this process' own latest writes; on a Milvus server that waits for
        the next time tick (about 0.2-0.4 s measured, `make bench-latency`). Query-time
        lookups pass False (Bounded, like searches): a grant indexed seconds ago may be
        missing for those seconds.
        """
        check_patent_number(patent)
        self.load(collection)
        fields = ["id", *OUTPUT_FIELDS] + (["vector"] if with_vectors else [])
        rows = self._call(self.client.query, collection, filter=f'patent == "{patent}"',
                          output_fields=fields, limit=MAX_SEARCH_LIMIT,
                          consistency_level="Strong" if strong else "Bounded", _timeout=timeout)
        return sorted(rows, key=lambda r: (r["sheet"], r["modality"]))

    def has_region_rows(self, collection: str, timeout: float | None = None) -> bool:
        """Whether ``collection`` holds any figure or part row (one row looked up)."""
        self.load(collection)
        rows = self._call(self.client.query, collection,
                          filter='modality in ["figure", "part"]', output_fields=["id"],
                          limit=1, consistency_level="Bounded", _timeout=timeout)
        return bool(rows)

    def region_rows(self, collection: str, sheets: Sequence[tuple[str, int]],
                    timeout: float | None = None) -> list[dict]:
        """The figure and part rows of ``sheets`` ((patent, sheet) pairs) with their keys
        and vectors: what shows which part of a hit's sheet matched a query best. Bounded
        consistency, like searches; ``timeout``: the caller's deadline."""
        if not sheets:
            return []
        expression = _of_sheets(sheets)
        self.load(collection)
        have = self._partition_names(collection)
        if not have:
            expression += ' and modality in ["figure", "part"]'
        rows = self._call(self.client.query, collection, filter=expression,
                          output_fields=["id", "patent", "sheet", "modality", "vector"],
                          partition_names=[p for p in ("drawing", "part") if p in have] or None,
                          limit=MAX_SEARCH_LIMIT, consistency_level="Bounded",
                          _timeout=timeout)
        return [r for r in rows if r["modality"] in ("figure", "part")]

    def search(self, collection: str, vectors: np.ndarray, k: int,
               filters: SearchFilters | None = None,
               modality: str | tuple[str, ...] | None = None, group: bool = True,
               timeout: float | None = None, on_stage: StageTimer | None = None
               ) -> list[list[Hit]]:
        """Top-k hits for each query vector; with ``group`` one hit per patent, else one
        per sheet (its best row). ``modality``: the rows searched, one kind or several
        (``IMAGE_ROWS``; with "part" for a cropped query); None: all.

        ``timeout`` (seconds) caps each Milvus call below the store's own timeout: a
        caller's deadline propagates to the search. ``on_stage(name, seconds)`` receives the
        time in Milvus (``search``) and in turning its rows into grouped hits (``group``).
        """
        if not 1 <= k <= MAX_SEARCH_LIMIT:
            raise InvalidQueryError(f"k={k}: must be between 1 and {MAX_SEARCH_LIMIT}")
        kinds = (modality,) if isinstance(modality, str) else tuple(modality or ())
        if any(m not in MODALITIES for m in kinds):
            raise InvalidQueryError(f"modality {modality!r}: expected of {MODALITIES}")
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        partitions, expression = self._scope(collection, kinds, filters)
        return self._search_batch(collection, [v.tolist() for v in vectors], k, expression,
                                  group, timeout, on_stage or _no_stage, partitions)

    def search_words(self, collection: str, texts: Sequence[str], k: int,
                     filters: SearchFilters | None = None, group: bool = True,
                     timeout: float | None = None, on_stage: StageTimer | None = None
                     ) -> list[list[Hit]]:
        """The lexical leg: top-k caption rows by Milvus' BM25 over their words, for each
        text; hits say ``modality`` "words" and score the BM25 score. InvalidQueryError
        when the collection has no lexical leg (``lexical_off`` says why)."""
        if not 1 <= k <= MAX_SEARCH_LIMIT:
            raise InvalidQueryError(f"k={k}: must be between 1 and {MAX_SEARCH_LIMIT}")
        reason = self.lexical_off(collection)
        if reason:
            raise InvalidQueryError(f"lexical search is off: {reason}")
        partitions, expression = self._scope(collection, ("caption",), filters)
        return self._search_batch(collection, list(texts), k, expression, group, timeout,
                                  on_stage or _no_stage, partitions, field=LEXICAL_FIELD)

    def _scope(self, collection: str, modalities: tuple[str, ...],
               filters: SearchFilters | None) -> tuple[list[str] | None, str]:
        """Load ``collection`` and say where a search of ``modalities`` looks: their
        partitions (each holds whole kinds of rows: drawing and figure rows, captions,
        parts; a collection without a part partition has no part rows), or, for
        collections made before partitions, every row with the kinds in the filter; and
        the filter expression."""
        self.load(collection)
        have = self._partition_names(collection)
        if not modalities or not have:
            return None, (filters or SearchFilters()).expression(modalities)
        wanted = dict.fromkeys(partition_of(m) for m in modalities)
        return [p for p in wanted if p in have], (filters or SearchFilters()).expression()

    def _search_batch(self, collection: str, data: list, k: int, expression: str,
                      group: bool, timeout: float | None, on_stage: StageTimer,
                      partitions: list[str] | None = None, field: str = "vector"
                      ) -> list[list[Hit]]:
        """All query vectors in one Milvus request: Milvus Lite pays a per-request cost that
        grows with the collection, so n vectors in one call cost about as much as one.

        Grouped searches over-fetch sheets; a query whose candidates held fewer than ``k``
        patents (or, ungrouped, fewer than ``k`` rows) is asked again, deeper, until it has
        ``k``, runs out, or hits Milvus' cap.
        "Runs out" is a deeper search that found no more rows: a filtered HNSW search can
        return fewer rows than its limit while more match (seen on Milvus Lite: 65 of a
        limit of 400, with 438 drawing rows in the collection), so a short answer alone
        does not mean the collection has no more.
        """
        results: list[list[Hit]] = [[] for _ in data]
        found_rows = [0] * len(data)
        pending = list(range(len(data)))
        limit = min(k * 8 if group else k, MAX_SEARCH_LIMIT)
        while pending:
            started = time.perf_counter()
            params = ({"metric_type": "BM25"} if field == LEXICAL_FIELD else
                      {"metric_type": "COSINE", "params": {"ef": max(self.ef, limit)}})
            raw = self._call(self.client.search, collection,
                             data=[data[i] for i in pending], limit=limit, anns_field=field,
                             filter=expression, output_fields=OUTPUT_FIELDS,
                             partition_names=partitions, search_params=params,
                             _timeout=timeout)
            searched = time.perf_counter()
            on_stage("search", searched - started)
            deeper = []
            for i, found in zip(pending, raw, strict=True):
                hits = [hit_from_milvus(r) for r in found]
                if field == LEXICAL_FIELD:  # Lite gives BM25 negated (a distance), a server not
                    hits = [replace(h, modality="words", score=abs(h.score)) for h in hits]
                results[i] = group_by_patent(hits, k) if group else group_by_sheet(hits, k)
                grew, found_rows[i] = len(hits) > found_rows[i], len(hits)
                if len(results[i]) < k and grew and limit < MAX_SEARCH_LIMIT:
                    deeper.append(i)
            on_stage("group", time.perf_counter() - searched)
            pending, limit = deeper, min(limit * 4, MAX_SEARCH_LIMIT)
        return results

    # -- helpers

    def _index_params(self, full_text: bool = False):
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type="HNSW", metric_type="COSINE",
                         params=self.hnsw_params)
        if full_text:
            params.add_index(field_name=LEXICAL_FIELD, index_type="SPARSE_INVERTED_INDEX",
                             metric_type="BM25")
        return params

    def _call(self, method, *args, _timeout: float | None = None, _probe: bool = False,
              _until: float | None = None, **kwargs):
        """Call pymilvus with the store's timeout (or a shorter caller deadline).

        Errors are classified once (``classify_milvus_error``): unreachable, warming up or
        restarting is StoreUnavailableError, a caller's passed deadline DeadlineExceeded,
        the rest StoreError. While Milvus is unavailable, calls fail at once except one
        probe per PROBE_INTERVAL_S. A collection found released (Milvus restarted) is loaded
        again in the background, and the call is UNAVAILABLE until it is. ``_until``
        (monotonic time) is the store's own budget for several calls of one operation:
        what it cuts short is UNAVAILABLE, as a store timeout is, not a caller's deadline.
        """
        timeout = self.timeout if _timeout is None else min(self.timeout, _timeout)
        if timeout <= 0:
            raise DeadlineExceededError("deadline passed before the vector search")
        if _until is not None:
            timeout = min(timeout, _until - time.monotonic())
            if timeout <= 0:  # retriable, as a timed-out call is
                raise StoreUnavailableError(f"Milvus at {self.uri} did not finish within the "
                                            f"store timeout ({self.timeout:.1f}s)")
        unsteady = self._fail_fast_while_down(_probe) or self._warming()
        # Only calls made for a caller with a deadline (searches, lookups) are cut short:
        # the embedder's writes, flushes and loads legitimately take longer while Milvus warms.
        capped = (_timeout is not None and not _probe and unsteady
                  and timeout > PROBE_TIMEOUT_S)
        if capped:
            timeout = PROBE_TIMEOUT_S
        try:
            result = self._invoke(method, args, kwargs, timeout,
                                  bounded=unsteady and _timeout is not None)
        except WallClockExceeded as exc:
            self._mark_down(str(exc))
            raise StoreUnavailableError(f"Milvus at {self.uri} unavailable: {exc}") from exc
        except MilvusException as exc:
            kind = classify_milvus_error(exc)
            collection = args[0] if args and isinstance(args[0], str) else None
            if kind == "not_loaded" and collection:
                self._load_in_background(collection)
                raise StoreUnavailableError(f"collection {collection} is not loaded in Milvus "
                                            f"at {self.uri} (loading it again): "
                                            f"{exc.message}") from exc
            if kind == "deadline" and _timeout is not None and _timeout <= self.timeout \
                    and not capped:
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

    def _invoke(self, method, args: tuple, kwargs: dict, timeout: float, bounded: bool):
        """``method(*args, timeout=..., **kwargs)``. A call made for a caller's deadline (a
        search, a lookup: reads) while Milvus is in doubt (a probe, the warm-up) is also
        bounded by the wall clock (``wall_clock``): pymilvus' own retries can outlast its
        timeout, and the caller's deadline with it. Writes are never abandoned: one still
        running beside its retry raced it on Milvus Lite and lost rows (seen once)."""
        if not bounded:
            return milvus_errors_only(method, *args, timeout=timeout, **kwargs)
        return self._bounded.call(
            lambda: milvus_errors_only(method, *args, timeout=timeout, **kwargs),
            timeout + WALL_CLOCK_GRACE_S)

    def _fail_fast_while_down(self, probe: bool) -> bool:
        """UNAVAILABLE at once while Milvus is marked down, except one call per
        PROBE_INTERVAL_S: True when this call is that probe."""
        with self._state_lock:
            if self._down_since is None or probe:
                return False
            now = time.monotonic()
            if now >= self._next_probe:
                self._next_probe = now + PROBE_INTERVAL_S  # this call is the probe
                return True
            down_for = now - self._down_since
        raise StoreUnavailableError(f"Milvus at {self.uri} unavailable for {down_for:.0f}s: "
                                    f"{self._down_reason}")

    def _warming(self) -> bool:
        """Within WARMUP_S of Milvus answering again after it was down."""
        return self._up_since > 0 and time.monotonic() - self._up_since < WARMUP_S

    def _mark_down(self, reason: str) -> None:
        with self._state_lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
                self._next_probe = self._down_since + PROBE_INTERVAL_S
                self._loaded.clear()  # a Milvus that restarts comes back with them released
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
            self._up_since = time.monotonic()
        if down is not None:
            logger.info("Milvus at %s answers again, after %.1fs", self.uri,
                        time.monotonic() - down)
            for listener in self._listeners:
                listener(True, "")


def _of_sheets(sheets: Iterable[tuple[str, int]]) -> str:
    """The Milvus expression of the rows of these (patent, sheet) pairs, one clause a
    patent: '(patent == "D0919445" and sheet in [1, 2])'. Patent numbers are checked."""
    numbers: dict[str, set[int]] = {}
    for patent, sheet in sheets:
        check_patent_number(patent)
        numbers.setdefault(patent, set()).add(int(sheet))
    return "(" + " or ".join(f'(patent == "{patent}" and sheet in {sorted(found)})'
                             for patent, found in numbers.items()) + ")"


def _full_text_off(server_version: str) -> str:
    """Why a backend of this version has no full-text search ("" for Milvus Lite 3.x, whose
    version reads "milvus_lite-3...", "" for Lite by path, and for servers from 2.5)."""
    if not server_version or server_version.startswith("milvus_lite"):
        return ""
    numbers = re.match(r"v?(\d+)\.(\d+)", server_version)
    if numbers and (int(numbers[1]), int(numbers[2])) >= (2, 5):
        return ""
    return (f"Milvus server {server_version} has no full-text search (BM25 functions came "
            "in Milvus 2.5)")
