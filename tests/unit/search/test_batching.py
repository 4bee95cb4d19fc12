"""search/batching.py: dynamic batching, the text-vector LRU cache, the search batcher (and
the deadline it counts down)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from patentclip.errors import DeadlineExceededError
from patentclip.search.batching import BatchedEncoder, DynamicBatcher, LruCache
from patentclip.search.engine import Deadline


def _concurrently(fn, items):
    results = [None] * len(items)
    barrier = threading.Barrier(len(items))

    def run(i):
        barrier.wait()
        results[i] = fn(items[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_dynamic_batcher_groups_concurrent_requests_and_returns_each_its_row():
    calls = []

    def double(items):
        calls.append(len(items))
        time.sleep(0.01)
        return [x * 2 for x in items]

    batcher = DynamicBatcher(double, max_batch=8, max_delay=0.05)
    assert _concurrently(batcher.submit, list(range(16))) == [x * 2 for x in range(16)]
    assert sum(calls) == 16 and max(calls) <= 8 and len(calls) < 16
    batcher.close()


def test_batching_off_calls_directly_one_by_one():
    calls = []
    batcher = DynamicBatcher(lambda items: calls.append(len(items)) or items, max_batch=1,
                             max_delay=0.005)
    assert _concurrently(batcher.submit, [1, 2, 3]) == [1, 2, 3]
    assert calls == [1, 1, 1]


def test_batcher_errors_reach_every_caller_and_the_worker_survives():
    def fail_on_negative(items):
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return items

    batcher = DynamicBatcher(fail_on_negative, max_batch=4, max_delay=0.001)
    with pytest.raises(ValueError):
        batcher.submit(-1)
    assert batcher.submit(5) == 5
    batcher.close()


def test_batcher_deadline_and_close_drains():
    release = threading.Event()
    batcher = DynamicBatcher(lambda items: release.wait() and items, max_batch=2,
                             max_delay=0.001)
    threading.Thread(target=batcher.submit, args=(1,), daemon=True).start()
    time.sleep(0.05)  # the worker is now blocked on item 1
    with pytest.raises(DeadlineExceededError, match="deadline"):
        batcher.submit(2, timeout=0.05)
    release.set()
    batcher.close()
    assert batcher.submit(3) == 3  # after close: runs directly, never fails


def test_lru_cache_evicts_least_recently_used():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)


class _CountingEncoder:
    class info:  # noqa: N801 (mimics Encoder.info)
        model_version, dim = "v", 3

    model_version, dim = "v", 3

    def __init__(self):
        self.texts = []

    def encode_texts(self, texts, timeout=None):
        self.texts.extend(texts)
        return np.ones((len(texts), 3), np.float32)


def test_batched_encoder_caches_repeated_texts():
    inner, seen = _CountingEncoder(), []
    encoder = BatchedEncoder(inner, max_batch=4, max_delay=0.001, text_cache_size=10,
                             on_cache=seen.append)
    encoder.encode_texts(["lamp"])
    encoder.encode_texts(["lamp", "vase"])
    assert inner.texts == ["lamp", "vase"] and seen == [False, True, False]
    encoder.close()


def test_deadline_counts_down_and_expires():
    assert Deadline().remaining() is None and Deadline.after(None) == Deadline()
    assert 0 < Deadline.after(5).remaining() <= 5
    deadline = Deadline.after(0.001)
    time.sleep(0.005)
    with pytest.raises(DeadlineExceededError):
        deadline.remaining()


class _RecordingStore:
    """Answers each query vector with its own first component; records every request."""

    def __init__(self, fail_k: int | None = None, delay: float = 0.05) -> None:
        self.requests, self.fail_k, self.delay = [], fail_k, delay

    def search(self, collection, vectors, k, filters=None, modality=None, group=True,
               timeout=None, on_stage=None):
        import time

        self.requests.append((collection, len(vectors), k, filters, modality))
        time.sleep(self.delay)  # the next callers queue up meanwhile
        if k == self.fail_k:
            raise ValueError(f"k={k} refused")
        if on_stage:
            on_stage("search", 0.001)
        return [[float(v[0])] for v in vectors]


def test_search_batching_shares_milvus_requests_between_concurrent_callers():
    import threading

    import numpy as np

    from patentclip.search.batching import BatchedSearch

    store = _RecordingStore()
    searches = BatchedSearch(store, max_batch=16, max_delay=0.02)
    results, stages = {}, []

    def call(i: int, k: int) -> None:
        try:
            results[i] = searches.search("c", np.array([float(i), 0.0]), k,
                                         on_stage=lambda s, t: stages.append(s))
        except ValueError as exc:
            results[i] = exc

    store.fail_k = 7
    threads = [threading.Thread(target=call, args=(i, 7 if i == 5 else 10)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    searches.close()
    assert all(results[i] == [[float(i)]] for i in range(12) if i != 5)  # own rows back
    assert isinstance(results[5], ValueError)  # only the failing group's caller fails
    assert len(store.requests) < 12  # concurrent callers shared requests
    assert max(n for _, n, k, _, _ in store.requests if k == 10) > 1
    assert all(k in (7, 10) for _, _, k, _, _ in store.requests)
    assert stages.count("search") >= 11 * 2  # Milvus time and queue wait, per caller


def test_search_batching_passes_multi_vector_searches_and_other_calls_through():
    import numpy as np

    from patentclip.search.batching import BatchedSearch

    store = _RecordingStore(delay=0)
    store.describe = lambda name: f"described {name}"
    searches = BatchedSearch(store, max_batch=16, max_delay=0.002)
    assert searches.search("c", np.ones((3, 2)), 5) == [[1.0]] * 3
    assert store.requests == [("c", 3, 5, None, None)]
    assert searches.describe("x") == "described x"
    searches.close()


def test_search_batching_goes_direct_while_the_store_warms_and_queued_time_counts():
    """While the store is not steady (down or warming up: calls may take their capped
    couple of seconds), searches run in the callers' threads, in parallel, not one after
    another behind the batcher's single worker; a queued search asks the store only for
    what is left of its deadline."""
    from patentclip.search.batching import BatchedSearch

    class WarmingStore(_RecordingStore):
        steady = False

        def search(self, *args, **kwargs):
            self.threads.add(threading.current_thread().name)
            self.timeouts.append(kwargs.get("timeout", args[6] if len(args) > 6 else None))
            return super().search(*args, **kwargs)

    store = WarmingStore(delay=0.3)
    store.threads, store.timeouts = set(), []
    searches = BatchedSearch(store, max_batch=16, max_delay=0.02)
    callers = [threading.Thread(target=searches.search, args=("c", np.ones(2), 5),
                                kwargs={"timeout": 5.0}, name=f"caller-{i}")
               for i in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert store.threads == {f"caller-{i}" for i in range(4)}  # each in its own thread
    assert len(store.requests) == 4
    store.steady, store.threads, store.timeouts = True, set(), []
    blocker = threading.Thread(target=searches.search, args=("c", np.ones(2), 7))
    blocker.start()  # holds the worker 0.3 s
    while not store.requests[4:]:
        time.sleep(0.01)
    searches.search("c", np.ones(2), 5, timeout=5.0)
    blocker.join()
    searches.close()
    assert store.threads == {"search-batcher"}
    assert store.timeouts[-1] < 5.0  # less what it waited in the queue behind the first
