"""LiveSearch: the model + collection being served, swapped atomically when the alias moves.

The service serves the live alias (``<prefix>_live``). A watcher checks the alias every
``alias_poll_s``; when it points at another collection, the matching encoder is loaded (the
configured model if its version matches, else the model spec the collection recorded), a
new snapshot (encoder + batcher + engine) is built off to the side and swapped in with one
reference assignment. Requests hold the snapshot they started with, so none is dropped;
the old batcher is retired after it drains.

Health is SERVING only while a snapshot whose collection and encoder versions agree is
loaded; a collection recorded for another model that cannot be loaded is refused, with the
reason in the log and in ``reason``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from patentclip.batching import BatchedEncoder, BatchedSearch
from patentclip.encoder import Encoder
from patentclip.errors import ModelVersionMismatchError, PatentClipError, UnavailableError
from patentclip.search import SearchEngine
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
        self.reason = "starting: loading the model and the collection"
        self._snapshot: Snapshot | None = None
        self._encoders: dict[str, Encoder] = {}  # loaded models by version
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        server = settings.server
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
        return self._snapshot is not None

    # -- lifecycle

    def start(self, configured: Encoder | None = None) -> LiveSearch:
        """Load what the alias points at (blocking), then follow it in the background."""
        if configured is not None:
            self._encoders[configured.model_version] = configured
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
        while not self._stop.wait(self.settings.server.alias_poll_s):
            try:
                self.refresh()
            except Exception:  # never let the watcher die; the reason is logged
                logger.exception("checking alias %s failed", self.alias)

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
            on_cache=lambda hit: self.metrics.cache.labels("hit" if hit else "miss").inc())
        engine = SearchEngine(batched, self.searches, info.name,
                              on_stage=lambda s, t: self.metrics.stage.labels(s).observe(t))
        self.store.load(info.name)
        return Snapshot(engine=engine, encoder=batched, collection=info.name, rows=info.rows)

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
        self.reason = ""
        self.metrics.model.info({"model_version": new.model_version,
                                 "collection": new.collection})
        self.metrics.corpus.set(new.rows)
        self.metrics.serving.set(1)
        self.metrics.model_mismatch.set(0)
        if old is not None:
            self.metrics.swaps.inc()
            logger.info("swapped %s: %s (model %s) -> %s (model %s)", self.alias,
                        old.collection, old.model_version, new.collection, new.model_version)
        else:
            logger.info("serving %s -> %s (model %s, %d rows)", self.alias, new.collection,
                        new.model_version, new.rows)
        self.on_serving(True)

    def _refuse(self, reason: str) -> None:
        """Keep serving a consistent snapshot if there is one; otherwise report why not."""
        if self._snapshot is None:
            self.reason = reason
            self.metrics.serving.set(0)
            self.on_serving(False)
        logger.error("%s", reason)
