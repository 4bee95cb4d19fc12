"""Dynamic batching and a text-embedding cache for serving many small queries.

A query service receives one text or one drawing per request, but the model is much
faster per item on a batch. ``DynamicBatcher`` (like Triton's dynamic batcher) collects
concurrent requests for up to ``max_delay`` seconds or ``max_batch`` items, runs the model
once, and hands each caller its row. ``BatchedEncoder`` puts one batcher in front of the
text tower and one in front of the image tower, plus a bounded LRU cache of text vectors
(examiners repeat queries), and offers the encoder's interface to ``SearchEngine``.
``BatchedSearch`` does the same for vector searches: concurrent single-vector searches with
the same collection, k, filters and modality go to Milvus as one multi-vector request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from patentclip.errors import DeadlineExceededError
from patentclip.search.admission import UNBOUNDED, Admission

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    item: object
    future: Future
    deadline: float | None


class DynamicBatcher:
    """Run ``fn(items) -> rows`` on batches of concurrently submitted items.

    The worker takes every request already queued (up to ``max_batch``); when it found
    company it waits up to ``max_delay`` for more, and a lone request runs at once, so a
    single client pays no batching delay. Under load the queue fills while the previous
    batch runs, so batches grow with concurrency.

    ``max_batch <= 1`` turns batching off: ``submit`` calls ``fn`` directly in the caller's
    thread. After ``close`` the worker drains what was queued and further submissions run
    directly, so a batcher being retired (hot swap) never fails a request.
    """

    def __init__(self, fn: Callable[[list], Sequence], max_batch: int, max_delay: float,
                 name: str = "batcher",
                 on_batch: Callable[[int], None] | None = None,
                 what: str = "the encoder") -> None:
        self.fn, self.max_batch, self.max_delay, self.what = fn, max_batch, max_delay, what
        self.on_batch = on_batch or (lambda size: None)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = threading.Event()
        self._thread = None
        if max_batch > 1:
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self._thread.start()

    def submit(self, item, timeout: float | None = None):
        """The row for ``item``; waits at most ``timeout`` seconds (DeadlineExceededError)."""
        return self.submit_many([item], timeout)[0]

    def submit_many(self, items: Sequence, timeout: float | None = None) -> list:
        """The rows for ``items``, queued together so they share batches (a request with many
        texts is not encoded one batch per text)."""
        if self._thread is None or self._closed.is_set():
            self.on_batch(len(items))
            return list(self.fn(list(items)))
        deadline = None if timeout is None else time.monotonic() + timeout
        requests = [_Request(item, Future(), deadline) for item in items]
        for request in requests:
            self._queue.put(request)
        rows = []
        for request in requests:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                rows.append(request.future.result(timeout=remaining))
            except FutureTimeout as exc:
                for pending in requests:
                    pending.future.cancel()
                raise DeadlineExceededError(f"deadline passed after {timeout:.3f}s waiting "
                                            f"for {self.what}") from exc
        return rows

    def close(self) -> None:
        """Stop taking new work into the queue; the worker finishes what is queued."""
        if self._thread is not None and not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._drain_after_close()
                return
            batch, closing = self._collect(first)
            self._run(batch)
            if closing:
                self._drain_after_close()
                return

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """The batch that starts with ``first``, and whether close arrived meanwhile."""
        batch: list[_Request] = [first]
        deadline = None  # None: still taking what is already queued, without waiting
        while len(batch) < self.max_batch:
            try:
                if deadline is None:
                    request = self._queue.get_nowait()
                else:
                    request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if deadline is not None or len(batch) == 1:
                    break  # waited long enough, or a lone request: run it now
                deadline = time.monotonic() + self.max_delay
                continue
            if request is None:
                return batch, True
            batch.append(request)
        return batch, False

    def _drain_after_close(self) -> None:
        leftover = []
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                leftover.append(request)
        for start in range(0, len(leftover), self.max_batch):
            self._run(leftover[start:start + self.max_batch])

    def _run(self, batch: list[_Request]) -> None:
        now = time.monotonic()
        live = [r for r in batch if not r.future.cancelled()
                and (r.deadline is None or r.deadline > now)
                and r.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.on_batch(len(live))
        try:
            rows = self.fn([r.item for r in live])
        except Exception as exc:  # the callers get the error, the worker keeps going
            for r in live:
                r.future.set_exception(exc)
            return
        for r, row in zip(live, rows, strict=True):
            r.future.set_result(row)


class LruCache:
    """A bounded, thread-safe least-recently-used map."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class BatchedEncoder:
    """An Encoder's query-side interface with dynamic batching and a text-vector cache."""

    def __init__(self, encoder, max_batch: int, max_delay: float, text_cache_size: int,
                 on_batch: Callable[[str, int], None] | None = None,
                 on_cache: Callable[[bool], None] | None = None,
                 admission: Admission = UNBOUNDED) -> None:
        self.encoder, self.admission = encoder, admission
        self.info = encoder.info
        report = on_batch or (lambda kind, size: None)
        self.on_cache = on_cache or (lambda hit: None)
        self._texts = DynamicBatcher(lambda items: encoder.encode_texts(items), max_batch,
                                     max_delay, "text-batcher", lambda n: report("text", n))
        self._images = DynamicBatcher(lambda items: encoder.encode_pixels(items), max_batch,
                                      max_delay, "image-batcher", lambda n: report("image", n))
        self._cache = LruCache(text_cache_size)

    @property
    def model_version(self) -> str:
        return self.encoder.model_version

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def class_head(self):
        """The model's classification head (suggested classes), or None."""
        return getattr(self.encoder, "class_head", None)

    def encode_texts(self, texts: Sequence[str], timeout: float | None = None) -> np.ndarray:
        rows = [self._cache.get(text) for text in texts]
        for row in rows:
            self.on_cache(row is not None)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            computed = self._texts.submit_many([texts[i] for i in missing], timeout)
            for i, vector in zip(missing, computed, strict=True):
                self._cache.put(texts[i], vector)
                rows[i] = vector
        return _stack(rows, self.dim)

    def drawing_pixels(self, data: bytes, name: str = "image", crop=None, mode: str = "line"):
        """Decode in the caller's thread: requests decode in parallel (at most the
        admission's limit at once: decoding is a query's memory), encode batched."""
        with self.admission.slot("decoding a query drawing"):
            return self.encoder.drawing_pixels(data, name, crop, mode)

    def encode_pixels(self, pixels: Sequence, timeout: float | None = None) -> np.ndarray:
        return _stack([self._images.submit(p, timeout) for p in pixels], self.dim)

    def encode_drawings(self, blobs: Sequence[bytes], names: Sequence[str] | None = None,
                        timeout: float | None = None) -> np.ndarray:
        names = names or [f"image {i}" for i in range(len(blobs))]
        pixels = [self.drawing_pixels(b, n) for b, n in zip(blobs, names, strict=True)]
        return self.encode_pixels(pixels, timeout)

    def close(self) -> None:
        self._texts.close()
        self._images.close()


def _stack(rows: list, dim: int) -> np.ndarray:
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)


@dataclass(frozen=True)
class _SearchItem:
    collection: str
    vector: np.ndarray
    k: int
    filters: object  # SearchFilters (frozen, hashable) or None
    modality: str | None
    group: bool
    deadline: float | None  # monotonic time: what is left of it when the group runs

    @property
    def key(self) -> tuple:
        return (self.collection, self.k, self.filters, self.modality, self.group)


class BatchedSearch:
    """A PatentStore whose single-vector searches are batched across concurrent requests.

    Milvus Lite walks every row in Python once per search request, whatever the number of
    query vectors in it, so 16 queries in one request cost about as much as one
    (docs/performance.md, "Search"); the Milvus server gains too (fewer round trips). Items
    are grouped by (collection, k, filters, modality, group): one Milvus request per group.
    A failing group fails only its own callers. It is a VectorSearch
    (patentclip/search/engine.py): describe and patent_rows go straight to the store.

    The queue has one worker, so it serves a store that answers at its usual pace. While the
    store is not ``steady`` (Milvus down or warming up again: each call may be a probe or be
    cut short at a couple of seconds), searches go direct, in the callers' threads: queued,
    each would wait out the others' slow calls, and its own deadline with them.
    """

    def __init__(self, store, max_batch: int, max_delay: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.store = store
        self._batcher = DynamicBatcher(self._run, max_batch, max_delay, "search-batcher",
                                       on_batch, what="the vector search")

    def describe(self, name_or_alias: str):
        """``PatentStore.describe`` (not batched)."""
        return self.store.describe(name_or_alias)

    def patent_rows(self, collection: str, patent: str, with_vectors: bool = False,
                    strong: bool = True, timeout: float | None = None) -> list[dict]:
        """``PatentStore.patent_rows`` (not batched)."""
        return self.store.patent_rows(collection, patent, with_vectors, strong, timeout)

    def has_region_rows(self, collection: str, timeout: float | None = None) -> bool:
        """``PatentStore.has_region_rows`` (not batched)."""
        return self.store.has_region_rows(collection, timeout)

    def region_rows(self, collection: str, sheets, timeout: float | None = None) -> list:
        """``PatentStore.region_rows`` (not batched)."""
        return self.store.region_rows(collection, sheets, timeout)

    def lexical_off(self, collection: str) -> str:
        """``PatentStore.lexical_off``."""
        return self.store.lexical_off(collection)

    def search_words(self, collection: str, texts, k: int, filters=None, group: bool = True,
                     timeout: float | None = None, on_stage=None) -> list:
        """``PatentStore.search_words`` (not batched: one BM25 request per text query)."""
        return self.store.search_words(collection, texts, k, filters, group, timeout,
                                       on_stage)

    def search(self, collection: str, vectors: np.ndarray, k: int, filters=None,
               modality: str | tuple[str, ...] | None = None, group: bool = True,
               timeout: float | None = None, on_stage=None) -> list:
        """``PatentStore.search``; one vector goes through the batcher, several go direct."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(vectors) != 1 or not getattr(self.store, "steady", True):
            return self.store.search(collection, vectors, k, filters, modality, group,
                                     timeout, on_stage)
        started = time.perf_counter()
        deadline = None if timeout is None else time.monotonic() + timeout
        hits, stages = self._batcher.submit(
            _SearchItem(collection, vectors[0], k, filters, modality, group, deadline), timeout)
        if isinstance(hits, Exception):
            raise hits
        report = on_stage or (lambda stage, seconds: None)
        for stage, seconds in stages:
            report(stage, seconds)
        # time spent queued behind another batch is search time too
        report("search", max(0.0, time.perf_counter() - started - sum(t for _, t in stages)))
        return [hits]

    def close(self) -> None:
        self._batcher.close()

    def _run(self, items: list[_SearchItem]) -> list[tuple]:
        by_key: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            by_key.setdefault(item.key, []).append(i)
        rows: list[tuple] = [((), [])] * len(items)
        for indices in by_key.values():
            first = items[indices[0]]
            deadlines = [items[i].deadline for i in indices if items[i].deadline is not None]
            stages: list[tuple[str, float]] = []
            try:  # the time the group has left, not what its callers had when they queued
                found = self.store.search(
                    first.collection, np.stack([items[i].vector for i in indices]), first.k,
                    first.filters, first.modality, first.group,
                    min(deadlines) - time.monotonic() if deadlines else None,
                    lambda stage, seconds, into=stages: into.append((stage, seconds)))
            except Exception as exc:  # the group's callers get it; other groups go on
                found = [exc] * len(indices)
            for i, hits in zip(indices, found, strict=True):
                rows[i] = (hits, stages)
        return rows
