"""The offline index job: grants -> sheet images + captions -> vectors -> Milvus.

Decoding runs in a thread pool one chunk ahead of the encoder, so the encoder does not
wait on TIFF decoding. Every problem (unreadable document, missing or corrupt drawing)
is reported with its file name and the rest of the source is still indexed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from patentclip.encoder import Encoder
from patentclip.errors import ImageDecodeError
from patentclip.grants import DrawingSheet, Grant
from patentclip.imagestore import LocalImageStore
from patentclip.reader import GrantDocument, GrantReader
from patentclip.store import PatentStore, SheetRow

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

    @property
    def sheets_per_second(self) -> float:
        return self.sheets / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _SheetJob:
    grant: Grant
    sheet: DrawingSheet
    data: bytes
    image_uri: str


class Indexer:
    """Index grant sources into the encoder's collection."""

    def __init__(self, encoder: Encoder, store: PatentStore,
                 image_store: LocalImageStore | None = None, batch_size: int = 64,
                 decode_workers: int = 2, progress: bool = True) -> None:
        self.encoder, self.store, self.image_store = encoder, store, image_store
        self.batch_size, self.progress = batch_size, progress
        self._pool = ThreadPoolExecutor(max_workers=decode_workers,
                                        thread_name_prefix="decode")

    def index(self, sources: Iterable[str | Path]) -> IndexSummary:
        """Read, encode and upsert every design grant in ``sources``; then flush."""
        started = time.perf_counter()
        summary = IndexSummary(model_version=self.encoder.model_version)
        summary.collection = self.store.ensure_collection(self.encoder.model_version,
                                                          self.encoder.dim)
        reader = GrantReader()
        with tqdm(desc="indexing", unit="sheet", disable=not self.progress) as bar:
            for source in sources:
                jobs = self._sheet_jobs(reader.read(source), summary)
                for chunk in _chunks(jobs, self.batch_size):
                    self._index_chunk(chunk, summary)
                    bar.update(len(chunk))
                    rate = bar.n / max(bar.format_dict["elapsed"], 1e-9)
                    bar.set_postfix(images_per_s=f"{rate:.1f}")
        self.store.flush(summary.collection)
        summary.skipped = dict(reader.report.skipped)
        summary.errors = list(reader.report.errors) + summary.errors
        summary.seconds = time.perf_counter() - started
        return summary

    def _sheet_jobs(self, documents: Iterator[GrantDocument], summary: IndexSummary
                    ) -> Iterator[_SheetJob]:
        for document in documents:
            summary.grants += 1
            grant = document.grant
            for sheet in grant.sheets:
                data = document.images.get(sheet.file_name)
                if data is None:
                    continue  # reported by the reader as a missing drawing file
                uri = (self.image_store.put(grant.patent_number, sheet.file_name, data)
                       if self.image_store else "")
                yield _SheetJob(grant, sheet, data, uri)

    def _index_chunk(self, chunk: list[_SheetJob], summary: IndexSummary) -> None:
        decoded = list(self._pool.map(self._decode, chunk))
        ok = [(job, image) for job, image in zip(chunk, decoded, strict=True)
              if not isinstance(image, ImageDecodeError)]
        summary.errors.extend(str(e) for e in decoded if isinstance(e, ImageDecodeError))
        if not ok:
            return
        image_vectors = self.encoder.encode_images([image for _, image in ok])
        captions = [job.grant.sheet_caption(job.sheet) for job, _ in ok]
        caption_vectors = self.encoder.encode_texts(captions)
        rows = []
        for (job, _), caption, image_vec, caption_vec in zip(ok, captions, image_vectors,
                                                              caption_vectors, strict=True):
            rows.append(_row(job, "drawing", caption, image_vec))
            rows.append(_row(job, "caption", caption, caption_vec))
        summary.rows += self.store.upsert(summary.collection, rows)
        summary.sheets += len(ok)

    def _decode(self, job: _SheetJob) -> Image.Image | ImageDecodeError:
        try:
            return self.encoder.preprocessor(job.data, f"{job.grant.source}: {job.sheet.file_name}")
        except ImageDecodeError as exc:
            logger.warning("skipping drawing: %s", exc)
            return exc


def _row(job: _SheetJob, modality: str, caption: str, vector) -> SheetRow:
    grant, sheet = job.grant, job.sheet
    return SheetRow(
        patent=grant.patent_number, sheet=sheet.number, modality=modality, vector=vector,
        view=grant.sheet_view(sheet), locarno=grant.locarno.code if grant.locarno else "",
        grant_date=grant.grant_date, title=grant.title, figures=",".join(sheet.figure_numbers),
        caption=caption, image_uri=job.image_uri,
    )


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
