"""Pure store logic: when Milvus Lite is the wrong backend for a collection's size, how a
Milvus error is read, and how the store behaves while Milvus does not answer."""

import time

import pytest
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from patentclip.errors import DeadlineExceededError, StoreError, StoreUnavailableError
from patentclip.store import (
    LITE_ADVISED_MAX_ROWS,
    classify_milvus_error,
    is_lite_uri,
    lite_size_advice,
)


def test_lite_uris_are_local_paths():
    assert is_lite_uri("data/patents.db") and is_lite_uri("/abs/x.db")
    assert not is_lite_uri("http://milvus:19530") and not is_lite_uri("https://z.cloud")
    assert not is_lite_uri("unix:/tmp/milvus.sock")


def test_advice_only_above_the_limit():
    assert lite_size_advice("data/patents.db", LITE_ADVISED_MAX_ROWS) is None
    advice = lite_size_advice("data/patents.db", LITE_ADVISED_MAX_ROWS + 1)
    assert advice and "data/patents.db" in advice and f"{LITE_ADVISED_MAX_ROWS + 1:,}" in advice
    assert "PATENTCLIP_MILVUS_URI=http://" in advice


# ------------------------------------------------------------------ Milvus errors, outages

@pytest.mark.parametrize(("error", "kind"), [
    (MilvusUnavailableException(message="server unavailable"), "unavailable"),
    (MilvusException(code=2, message="Fail connecting to server on 127.0.0.1:19530"),
     "unavailable"),
    (MilvusException(code=101, message="collection not loaded[collection=4470]"), "not_loaded"),
    (MilvusException(code=1, message="find no available rootcoord, check rootcoord state"),
     "unavailable"),
    (MilvusException(code=904, message="node not match[expectedNodeID=1][actualNodeID=2]"),
     "unavailable"),
    (MilvusException(code=1, message="session not found->rootcoord: node not match"),
     "unavailable"),
    (MilvusException(code=1, message="collection x is in state 'released'"), "not_loaded"),
    (MilvusException(code=1, message="wait for loading collection timeout"), "deadline"),
    (MilvusException(code=1100, message="invalid parameter: dim 3 != 4"), "error"),
    (MilvusException(code=100, message="collection not found[database=default]"), "error"),
])
def test_milvus_errors_are_classified_by_type_then_code_then_words(error, kind):
    assert classify_milvus_error(error) == kind


class _RpcError(Exception):
    """What grpc raises when pymilvus lets one through unwrapped."""

    def __init__(self, name: str) -> None:
        self.name = name

    def code(self):
        return type("Status", (), {"name": self.name})()

    def details(self):
        return "Deadline Exceeded"


def _store_without_milvus(monkeypatch):
    from patentclip.store import store as store_module

    def refuse(**kwargs):
        raise MilvusException(code=2, message="Fail connecting to server")

    monkeypatch.setattr(store_module, "MilvusClient", refuse)
    return store_module.PatentStore("http://127.0.0.1:1", timeout=1)


def test_a_store_made_while_milvus_is_down_fails_fast_and_probes_once_a_second(monkeypatch):
    from patentclip.store import store as store_module

    store = _store_without_milvus(monkeypatch)
    assert not store.available
    changes = []
    store.add_listener(lambda available, reason: changes.append(available))
    calls = []

    class Client:
        def __init__(self, **kwargs):
            calls.append("connect")

        def has_collection(self, name, timeout=None):
            calls.append("call")
            return False

    attempts = []
    monkeypatch.setattr(store_module, "MilvusClient",
                        lambda **kwargs: attempts.append(1) or (_ for _ in ()).throw(
                            MilvusException(code=2, message="Fail connecting to server")))
    with pytest.raises(StoreUnavailableError, match="cannot connect"):
        store.list_collections()  # the first use after a failed start tries again at once
    with pytest.raises(StoreUnavailableError, match="unavailable for 0s"):
        store.list_collections()  # within the probe interval: no attempt at all
    assert attempts == [1] and calls == []
    monkeypatch.setattr(store_module, "MilvusClient", Client)
    store._next_probe = 0.0  # the probe interval has passed
    assert store._call(store.client.has_collection, "c") is False
    assert calls == ["connect", "call"] and store.available and changes == [True]


def test_unwrapped_grpc_errors_are_read_like_milvus_errors(monkeypatch):
    store = _store_without_milvus(monkeypatch)
    store._down_since = None  # as if connected

    def deadline(*args, timeout=None):
        raise _RpcError("DEADLINE_EXCEEDED")

    def refused(*args, timeout=None):
        raise _RpcError("UNAVAILABLE")

    with pytest.raises(StoreUnavailableError, match="gRPC DEADLINE_EXCEEDED"):
        store._call(deadline, "c")
    store._down_since, store._next_probe = None, 0.0
    with pytest.raises(StoreUnavailableError, match="gRPC UNAVAILABLE"):
        store._call(refused, "c")
    store._down_since = None
    with pytest.raises(DeadlineExceededError):  # the caller's own deadline passed
        store._call(deadline, "c", _timeout=0.5)
    with pytest.raises(ValueError):
        store._call(lambda *a, timeout=None: (_ for _ in ()).throw(ValueError("bug")), "c")


def test_a_probe_and_calls_while_milvus_warms_up_wait_at_most_the_probe_timeout(monkeypatch):
    """A Milvus that accepts calls while it loads again (after a restart) must not hold a
    request for the whole store timeout: the probe, and every call in the first WARMUP_S
    after it answers again, is cut at PROBE_TIMEOUT_S and is UNAVAILABLE, not the caller's
    DEADLINE_EXCEEDED."""
    from patentclip.store import store as store_module

    store = _store_without_milvus(monkeypatch)
    store.timeout = 30.0
    given = []

    def slow(*args, timeout=None):  # a warming server: the call runs into its timeout
        given.append(timeout)
        raise _RpcError("DEADLINE_EXCEEDED")

    def answers(*args, timeout=None):
        given.append(timeout)
        return "ok"

    store._next_probe = 0.0  # down; this call is the probe
    with pytest.raises(StoreUnavailableError):
        store._call(slow, "c", _timeout=10.0)  # a client's 10 s deadline
    assert given == [store_module.PROBE_TIMEOUT_S]
    store._next_probe = 0.0
    assert store._call(answers, "c", _timeout=10.0) == "ok"  # back: warming up from now
    with pytest.raises(StoreUnavailableError):  # not DeadlineExceededError
        store._call(slow, "c", _timeout=10.0)
    assert given[1:] == [store_module.PROBE_TIMEOUT_S] * 2
    store._down_since, store._up_since = None, 1.0  # long after the warm-up
    assert store._call(answers, "c", _timeout=10.0) == "ok"
    assert given[-1] == 10.0  # the caller's deadline again
    store._call(answers, "c", _probe=True)  # background loads are never cut short
    assert given[-1] == 30.0
    store._up_since = time.monotonic()  # warming again: writes and flushes are not cut short
    store._call(answers, "c")
    assert given[-1] == 30.0


def test_a_call_cut_short_is_also_bounded_by_the_wall_clock(monkeypatch):
    """pymilvus retries inside one call and overshoots its timeout (seen: 5.2 s for 2 s):
    a probe or warm-up call answers UNAVAILABLE at the bound, whatever pymilvus does, and
    ``steady`` says when calls are neither probes nor cut short."""
    import threading

    from patentclip.store import store as store_module

    monkeypatch.setattr(store_module, "PROBE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(store_module, "WALL_CLOCK_GRACE_S", 0.05)
    store = _store_without_milvus(monkeypatch)
    store.timeout = 30.0
    release, finished = threading.Event(), threading.Event()

    def overshoots(*args, timeout=None):  # ignores its timeout, as pymilvus' retries do
        release.wait(10)
        finished.set()
        return "late"

    assert not store.steady  # down
    store._next_probe = 0.0  # this call is the probe
    with pytest.raises(StoreUnavailableError, match="no answer from Milvus within 0.2s"):
        store._call(overshoots, "c", _timeout=10.0)
    assert not finished.is_set()  # answered while pymilvus' call still ran
    assert not store.available
    store._next_probe = 0.0
    assert store._call(lambda *a, timeout=None: "ok", "c", _timeout=10.0) == "ok"
    assert store.available and not store.steady  # answering, warming up
    threads = []

    def where(*args, timeout=None):
        threads.append(threading.current_thread().name)
        return "ok"

    store._call(where, "c", _timeout=10.0)  # a read in the warm-up: bounded
    store._call(where, "c")  # a write: never abandoned (its retry would run beside it)
    assert threads == ["milvus-bounded-call", threading.current_thread().name]
    store._up_since = 1.0  # long after the warm-up
    assert store.steady
    release.set()


def test_the_wall_clock_bound_refuses_at_once_when_its_abandoned_calls_are_full():
    import threading

    from patentclip.store.wall_clock import WallClockBound, WallClockExceeded

    bound, release = WallClockBound(limit=2), threading.Event()
    for _ in range(2):
        with pytest.raises(WallClockExceeded, match="within"):
            bound.call(lambda: release.wait(10), 0.05)
    with pytest.raises(WallClockExceeded, match="2 earlier calls"):
        bound.call(lambda: "never run", 10)
    release.set()
    for _ in range(100):  # the abandoned calls return their slots when they finish
        try:
            assert bound.call(lambda: "ok", 1) == "ok"
            break
        except WallClockExceeded:
            time.sleep(0.01)
    else:
        raise AssertionError("slots never returned")
    with pytest.raises(ZeroDivisionError):  # the call's own error reaches the caller
        bound.call(lambda: 1 / 0, 1)


def test_waiting_for_an_index_waits_while_milvus_does_not_report_it_yet(monkeypatch):
    """pymilvus answers describe_index with None for an index it cannot find yet (seen
    right after a reindex's flush): that is waited for, not an AttributeError."""
    from patentclip.store import store as store_module

    answers = [None, {"indexed_rows": 3, "total_rows": 5, "state": "InProgress"},
               {"indexed_rows": 5, "total_rows": 5, "state": "Finished"}]

    class Client:
        def __init__(self, **kwargs):
            pass

        def describe_index(self, collection, field, timeout=None):
            return answers.pop(0)

    monkeypatch.setattr(store_module, "MilvusClient", Client)
    store = store_module.PatentStore("http://127.0.0.1:1", timeout=1)
    assert store.wait_indexed("c", poll=0) == 5 and answers == []
    answers.extend([None] * 1000)
    with pytest.raises(StoreError, match="not built within 0s: no index reported yet"):
        store.wait_indexed("c", timeout=0, poll=0)
