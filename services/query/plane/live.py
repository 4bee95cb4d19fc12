"""LiveSearch: the model + collection being served, swapped atomically when the alias moves.

The service serves the live alias (``<prefix>_live``). A watcher checks the alias every
``alias_poll_s``; when it points at another collection, the matching encoder is loaded (the
configured model if its version matches, else the model spec the collection recorded), a
new snapshot (encoder + batcher + engine) is built off to the side and swapped in with one
reference assignment. Requests hold the snapshot they started with, so none is dropped;
the old batcher is retired after it drains.

Health is SERVING only while a snapshot whose collection and encoder versions agree is
loaded and Milvus answers; a collection recorded for another model that cannot be loaded
is refused, with the reason in the log and in ``reason``. When Milvus stops answering (or
comes back from a restart with the collection released), health goes NOT_SERVING after
``unavailable_grace_s`` and SERVING again once the collection is loaded: a load balancer
stops sending traffic the service cannot answer. The process stays alive throughout, and
the log has one line per change of state.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from patentclip.errors import ModelVersionMismatchError, PatentClipError, UnavailableError
from patentclip.model.encoder import Encoder
from patentclip.search.admission import Admission
from patentclip.search.batching import BatchedEncoder, BatchedSearch
from patentclip.search.engine import SearchEngine
from patentclip.store import CollectionInfo, PatentStore
from services.query.config import QuerySettings
from services.query.metrics import QueryMetrics

logger = logging.getLogger(__name__)

EncoderLoader = Callable[[str, str | None], Encoder]


@dataclass(frozen=True)
class Snapshot:
    """Everything one request needs, consistent with itself."""

    engine: SearchEngine
    encoder: BatchedEncoder
    collection: str
    rows: int
    sheets: int  # drawing sheets (rows also holds captions, figures and parts)

    @property
    def model_version(self) -> str:
        return self.encoder.model_version


class LiveSearch:
    """Holds the current snapshot; follows the alias in a background thread."""

    def __init__(self, settings: QuerySettings, store: PatentStore, metrics: QueryMetrics,
                 loader: EncoderLoader | None = None,
                 on_serving: Callable[[bool], None] | None = None) -> None:
        self.settings, self.store, self.metrics = settings, store, metrics
        core = settings.core
        self.loader = loader or (lambda spec, pretrained: Encoder.load(
            spec, pretrained=pretrained or None, **core.encoder_options()))
        self.on_serving = on_serving or (lambda serving: None)
        self.alias = settings.server.alias or store.live_alias
        self._reason = "starting: loading the model and the collection"
        self._logged_refusal = ""
        self._trouble_since: float | None = None  # Milvus unavailable (or loading) since
        self._trouble = ""
        self._published: bool | None = None  # the serving state last reported
        self._snapshot: Snapshot | None = None
        self._encoders: dict[str, Encoder] = {}  # loaded models by version
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        server = settings.server
        # The process's bound on decodes in flight, for every snapshot and both transports.
        self.admission = Admission(server.max_decodes, server.decode_wait_s,
                                   on_refused=lambda what: metrics.overloaded.inc())
        self.searches = BatchedSearch(  # concurrent searches share Milvus requests
            store, max_batch=server.search_max_batch, max_delay=server.max_delay_ms / 1000,
            on_batch=metrics.search_batch_size.observe)

    # -- serving

    def current(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise UnavailableError(f"not serving yet: {self.reason}")
        return snapshot

    @property
    def serving(self) -> bool:
        """A consistent snapshot is loaded and Milvus has not failed for longer than the
        grace (short outages do not flap the load balancer)."""
        if self._snapshot is None:
            return False
        since = self._trouble_since
        return since is None or time.monotonic() - since < self.settings.server.unavailable_grace_s

    @property
    def reason(self) -> str:
        """Why the service is not serving ("" while it is)."""
        if self._snapshot is None:
            return self._reason
        if not self.serving:
            return (f"Milvus unavailable for {time.monotonic() - self._trouble_since:.0f}s: "
                    f"{self._trouble}")
        return ""

    # -- lifecycle

    def start(self, configured: Encoder | None = None) -> LiveSearch:
        """Load what the alias points at (blocking), then follow it in the background."""
        if configured is not None:
            self._encoders[configured.model_version] = configured
        self.store.add_listener(self._on_store)
        self.refresh()
        self._watcher = threading.Thread(target=self._watch, name="alias-watcher", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(timeout=10)
        snapshot, self._snapshot = self._snapshot, None
        if snapshot:
            snapshot.encoder.close()
        self.searches.close()

    def _watch(self) -> None:
        """Every second: the store's health; every alias_poll_s (every second while
        nothing is served yet): the alias."""
        poll = self.settings.server.alias_poll_s
        tick = min(1.0, poll)
        next_refresh = time.monotonic() + poll
        while not self._stop.wait(tick):
            try:
                if self._snapshot is None or time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + poll
                    self.refresh()
                self._check_store()
            except Exception:  # never let the watcher die; the reason is logged
                logger.exception("checking alias %s failed", self.alias)

    # -- the store's health

    def _on_store(self, available: bool, reason: str) -> None:
        """The store noticed Milvus stop answering (from any call): start the grace clock.
        Coming back is confirmed by _check_store, which also needs the collection loaded."""
        if not available:
            self._store_trouble(reason)

    def _check_store(self) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            return
        try:
            self.store.ensure_loaded(snapshot.collection)
        except UnavailableError as exc:
            self._store_trouble(str(exc))
        except PatentClipError as exc:  # Milvus answered with a refusal: it is reachable
            logger.debug("load state of %s: %s", snapshot.collection, exc)
            self._store_trouble("")
        else:
            self._store_trouble("")

    def _store_trouble(self, reason: str) -> None:
        if reason and self._trouble_since is None:
            self._trouble_since = time.monotonic()
        if reason:
            self._trouble = reason
        else:
            self._trouble_since = None
        self._publish_health()

    def _publish_health(self) -> None:
        """Report the serving state to health, readiness and metrics when it changed."""
        serving = self.serving
        if serving == self._published:
            return
        self._published = serving
        self.metrics.serving.set(int(serving))
        self.on_serving(serving)
        if serving:
            logger.info("SERVING %s (collection %s)", self.alias, self._snapshot.collection)
        else:
            logger.warning("NOT_SERVING: %s", self.reason)

    # -- swapping

    def refresh(self) -> bool:
        """Swap to what the alias points at now, if it changed. True when swapped."""
        with self._lock:
            try:
                info = self.store.describe(self.alias)
            except PatentClipError as exc:
                self._refuse(f"cannot read {self.alias} at {self.store.uri}: {exc}")
                return False
            current = self._snapshot
            if current and current.collection == info.name \
                    and current.model_version == info.model_version:
                return False
            try:
                snapshot = self._build(info)
            except PatentClipError as exc:
                self.metrics.model_mismatch.set(isinstance(exc, ModelVersionMismatchError))
                self._refuse(str(exc))
                return False
            self._snapshot = snapshot  # the swap: one reference assignment
            self._announce(current, snapshot)
            if current is not None:
                threading.Thread(target=current.encoder.close, daemon=True).start()
            return True

    def _build(self, info: CollectionInfo) -> Snapshot:
        encoder = self._encoder_for(info)
        server = self.settings.server
        batched = BatchedEncoder(
            encoder, max_batch=server.max_batch, max_delay=server.max_delay_ms / 1000,
            text_cache_size=server.text_cache_size,
            on_batch=lambda kind, n: self.metrics.batch_size.labels(kind).observe(n),
            on_cache=lambda hit: self.metrics.cache.labels("hit" if hit else "miss").inc(),
            admission=self.admission)
        engine = SearchEngine(batched, self.searches, info.name,
                              on_stage=lambda s, t: self.metrics.stage.labels(s).observe(t))
        self.store.load(info.name)
        return Snapshot(engine=engine, encoder=batched, collection=info.name, rows=info.rows,
                        sheets=self.store.count(info.name, "drawing"))

    def _encoder_for(self, info: CollectionInfo) -> Encoder:
        if info.model_version in self._encoders:
            return self._encoders[info.model_version]
        if not info.model_spec:
            raise ModelVersionMismatchError(
                f"{self.alias} -> {info.name} was built by model {info.model_version}, which "
                f"is not loaded (loaded: {sorted(self._encoders) or 'none'}), and the "
                "collection records no model spec to load it from; start the service with "
                "that model (PATENTCLIP_MODEL)")
        logger.info("loading model %s for %s from %s", info.model_version, info.name,
                    info.model_spec)
        encoder = self.loader(info.model_spec, info.pretrained or None)
        if encoder.model_version != info.model_version:
            raise ModelVersionMismatchError(
                f"{info.model_spec} loads as model {encoder.model_version}, but {info.name} "
                f"was built by {info.model_version}; refusing to serve it")
        self._encoders = {info.model_version: encoder}  # keep one: the new live model
        return encoder

    def _announce(self, old: Snapshot | None, new: Snapshot) -> None:
        self._reason = ""
        self._logged_refusal = ""
        self.metrics.model.info({"model_version": new.model_version,
                                 "collection": new.collection})
        self.metrics.corpus.set(new.rows)
        self.metrics.lexical.set(0 if new.engine.lexical_off else 1)
        self.metrics.model_mismatch.set(0)
        if old is not None:
            self.metrics.swaps.inc()
            logger.info("swapped %s: %s (model %s) -> %s (model %s)", self.alias,
                        old.collection, old.model_version, new.collection, new.model_version)
        else:
            logger.info("serving %s -> %s (model %s, %d rows)", self.alias, new.collection,
                        new.model_version, new.rows)
        self._publish_health()

    def _refuse(self, reason: str) -> None:
        """Keep serving a consistent snapshot if there is one; otherwise report why not.
        Logged once per reason (a reason that only differs in its numbers is the same)."""
        if self._snapshot is None:
            self._reason = reason
        self._publish_health()
        key = re.sub(r"\d+", "N", reason)
        if key != self._logged_refusal:
            self._logged_refusal = key
            logger.error("%s", reason)
