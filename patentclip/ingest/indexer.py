"""The offline index job: grants -> sheet images + captions -> vectors -> Milvus.

Decoding runs in a thread pool one chunk ahead of the encoder (patentclip.ingest.sheets), so
the encoder does not wait on TIFF decoding. Every problem (unreadable document, missing
or corrupt drawing) is reported with its file name and the rest of the source is indexed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from patentclip.drawings.imagestore import LocalImageStore, store_grant
from patentclip.drawings.parts import Tiling
from patentclip.grants.reader import GrantDocument, GrantReader
from patentclip.ingest.figures import FigureLabeller
from patentclip.ingest.sheets import PreparedBatch, SheetEmbedder, SheetJob
from patentclip.model.encoder import Encoder
from patentclip.store import PatentStore

logger = logging.getLogger(__name__)


@dataclass
class IndexSummary:
    """What an index run did; printed by the CLI and returned to tests."""

    collection: str = ""
    model_version: str = ""
    grants: int = 0
    sheets: int = 0
    rows: int = 0
    seconds: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # Grants whose counts disagree, read for figure labels: "mapped" or "disagreed".
    figure_labels: dict[str, int] = field(default_factory=dict)

    @property
    def sheets_per_second(self) -> float:
        return self.sheets / self.seconds if self.seconds else 0.0


class Indexer:
    """Index grant sources into the encoder's collection."""

    def __init__(self, encoder: Encoder, store: PatentStore,
                 image_store: LocalImageStore | None = None, batch_size: int = 64,
                 decode_workers: int = 2, progress: bool = True,
                 labeller: FigureLabeller | None = None, tiling: Tiling | None = None
                 ) -> None:
        """``labeller``: reads the figure labels of sheets the XML leaves unmapped
        (``PATENTCLIP_FIGURE_LABELS``); None: they stay "unknown". ``tiling``: the part
        tiles stored for part matching (``PATENTCLIP_PART_TILES``); None: none."""
        self.encoder, self.store, self.image_store = encoder, store, image_store
        self.batch_size, self.progress, self.labeller = batch_size, progress, labeller
        self.embedder = SheetEmbedder(encoder, decode_workers=decode_workers, tiling=tiling)

    def index(self, sources: Iterable[str | Path]) -> IndexSummary:
        """Read, encode and upsert every design grant in ``sources``; then flush."""
        started = time.perf_counter()
        summary = IndexSummary(model_version=self.encoder.model_version)
        info = self.encoder.info
        summary.collection = self.store.ensure_collection(info.model_version, info.dim,
                                                          info.spec, info.pretrained)
        reader = GrantReader()
        with tqdm(desc="indexing", unit="sheet", disable=not self.progress) as bar:
            pending: PreparedBatch | None = None  # decoding while the previous one encodes
            for source in sources:
                jobs = self._sheet_jobs(reader.read(source), summary)
                for chunk in _chunks(jobs, self.batch_size):
                    prepared = self.embedder.prepare(chunk)
                    if pending is not None:
                        bar.update(self._write(pending, summary))
                    pending = prepared
            if pending is not None:
                bar.update(self._write(pending, summary))
        self.store.flush(summary.collection)
        self.store.wait_indexed(summary.collection)  # searches are brute force until then
        summary.skipped = dict(reader.report.skipped)
        summary.errors = list(reader.report.errors) + summary.errors
        summary.seconds = time.perf_counter() - started
        return summary

    def _sheet_jobs(self, documents: Iterator[GrantDocument], summary: IndexSummary
                    ) -> Iterator[SheetJob]:
        for document in documents:
            summary.grants += 1
            if self.labeller is not None:
                document = self.labeller.counted(document, summary.figure_labels)
            grant = (store_grant(self.image_store, document) if self.image_store
                     else document.grant)
            for sheet in grant.sheets:
                data = document.images.get(sheet.file_name)
                if data is None:
                    continue  # reported by the reader as a missing drawing file
                yield SheetJob(grant, sheet, sheet.image_uri, data)

    def _write(self, batch: PreparedBatch, summary: IndexSummary) -> int:
        embedded = self.embedder.embed(batch)
        for failure in embedded.failures:
            logger.warning("skipping drawing: %s", failure.detail)
            summary.errors.append(failure.detail)
        summary.rows += self.store.upsert(summary.collection, embedded.rows)
        summary.sheets += len(embedded.embedded)
        return len(batch.jobs)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
