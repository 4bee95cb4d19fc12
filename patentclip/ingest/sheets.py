"""Sheets -> vectors: the embedding step shared by the offline indexer and the embedder.

Two phases, so callers can overlap I/O with the model:

* :meth:`SheetEmbedder.prepare` starts fetching (image store) and decoding (TIFF -> padded,
  normalized tensor) of a batch in worker threads and returns at once;
* :meth:`SheetEmbedder.embed` waits for them, encodes drawings and captions, and builds the
  rows to upsert.

A caller prepares batch N+1 before embedding batch N, so the encoder never waits on
decoding. Sheets that cannot be used (missing image, corrupt TIFF) are returned as
failures with a reason; a dependency that is down (image store timeout) raises
:class:`~patentclip.errors.UnavailableError` so the caller retries instead of dropping work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from patentclip.codec.events import REASON_CORRUPT_IMAGE, REASON_MISSING_IMAGE
from patentclip.drawings.parts import (
    SheetPart,
    Tiling,
    part_pixels,
    sheet_parts,
    working_copy,
)
from patentclip.errors import (
    ImageDecodeError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from patentclip.grants.model import DrawingSheet, Grant
from patentclip.model.encoder import Encoder
from patentclip.store import SheetRow

logger = logging.getLogger(__name__)


class ImageSource(Protocol):
    """Where drawing bytes come from (``LocalImageStore`` or an S3-compatible bucket)."""

    def get(self, uri: str) -> bytes: ...


@dataclass(frozen=True)
class SheetJob:
    """One drawing sheet to embed. ``data`` None means: fetch ``image_uri`` first."""

    grant: Grant
    sheet: DrawingSheet
    image_uri: str = ""
    data: bytes | None = None
    tag: object = None  # caller's bookkeeping (e.g. the Kafka message it came from)


@dataclass(frozen=True)
class SheetFailure:
    """A sheet that cannot be embedded; ``reason`` is a fixed code, ``detail`` the why."""

    job: SheetJob
    reason: str
    detail: str


@dataclass
class PreparedBatch:
    jobs: list[SheetJob]
    futures: list[Future]


@dataclass
class EmbeddedBatch:
    """Rows to upsert (two per sheet, drawing and caption, then its figures and parts),
    failures, stage timings."""

    rows: list[SheetRow]
    embedded: list[SheetJob]
    failures: list[SheetFailure]
    decode_wait_seconds: float
    encode_seconds: float


@dataclass(frozen=True)
class SheetPixels:
    """A decoded sheet's model input, and its parts' (figures, tiles: ``sheet_parts``)."""

    sheet: torch.Tensor
    parts: tuple[tuple[SheetPart, torch.Tensor], ...] = ()


class SheetEmbedder:
    """Decode in a thread pool, encode drawings and captions with one encoder. Each sheet
    also gets a row per figure where its figures' places are known, and, with a
    ``tiling``, rows for its parts (``patentclip.drawings.parts``)."""

    def __init__(self, encoder: Encoder, images: ImageSource | None = None,
                 decode_workers: int = 2, tiling: Tiling | None = None) -> None:
        self.encoder, self.images, self.tiling = encoder, images, tiling
        self._pool = ThreadPoolExecutor(max_workers=max(1, decode_workers),
                                        thread_name_prefix="decode")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def prepare(self, jobs: Sequence[SheetJob]) -> PreparedBatch:
        """Start fetching and decoding ``jobs`` in the background; returns immediately."""
        return PreparedBatch(list(jobs), [self._pool.submit(self._pixels, job) for job in jobs])

    def embed(self, batch: PreparedBatch) -> EmbeddedBatch:
        """Wait for decoding, then encode. Raises UnavailableError if a fetch must be retried."""
        waited = time.perf_counter()
        ok: list[tuple[SheetJob, SheetPixels]] = []
        failures: list[SheetFailure] = []
        for job, future in zip(batch.jobs, batch.futures, strict=True):
            result = future.result()  # UnavailableError propagates: the batch is retried
            if isinstance(result, SheetFailure):
                failures.append(result)
            else:
                ok.append((job, result))
        decode_wait = time.perf_counter() - waited
        started = time.perf_counter()
        rows: list[SheetRow] = []
        if ok:
            captions = [job.grant.sheet_caption(job.sheet) for job, _ in ok]
            image_vectors = self.encoder.encode_pixels([pixels.sheet for _, pixels in ok])
            caption_vectors = self.encoder.encode_texts(captions)
            for (job, _), caption, image_vec, caption_vec in zip(
                    ok, captions, image_vectors, caption_vectors, strict=True):
                rows.append(sheet_row(job, "drawing", caption, image_vec))
                rows.append(sheet_row(job, "caption", caption, caption_vec))
            parts = [(job, part, tensor) for job, pixels in ok for part, tensor in pixels.parts]
            part_vectors = self.encoder.encode_pixels([tensor for _, _, tensor in parts])
            rows += [part_row(job, part, vector)
                     for (job, part, _), vector in zip(parts, part_vectors, strict=True)]
        return EmbeddedBatch(rows=rows, embedded=[job for job, _ in ok], failures=failures,
                             decode_wait_seconds=decode_wait,
                             encode_seconds=time.perf_counter() - started)

    def _pixels(self, job: SheetJob) -> SheetPixels | SheetFailure:
        name = f"{job.grant.patent_number} {job.sheet.file_name}"
        try:
            data = job.data if job.data is not None else self._fetch(job.image_uri)
            if self.tiling is None and not job.sheet.regions:
                return SheetPixels(self.encoder.drawing_pixels(data, name))
            return self._with_parts(data, name, job.sheet)
        except NotFoundError as exc:
            return SheetFailure(job, REASON_MISSING_IMAGE, str(exc))
        except ImageDecodeError as exc:
            return SheetFailure(job, REASON_CORRUPT_IMAGE, str(exc))
        except InvalidInputError as exc:  # e.g. a URI outside the image store
            return SheetFailure(job, REASON_MISSING_IMAGE, str(exc))
        except UnavailableError:
            raise  # the store's own outage: the batch is retried
        except Exception as exc:  # noqa: BLE001 - a sheet's bytes must not stop the caller
            logger.exception("%s: unexpected failure decoding the drawing", name)
            return SheetFailure(job, REASON_CORRUPT_IMAGE,
                                f"{name}: unreadable drawing ({type(exc).__name__}: {exc})")

    def _with_parts(self, data: bytes, name: str, sheet: DrawingSheet) -> SheetPixels:
        """Decoded once: the sheet squared, and each of its parts cut out and squared as a
        cropped query is."""
        preprocessor = self.encoder.preprocessor
        image = preprocessor.decode(data, name)
        square = self.encoder.square_pixels
        work = working_copy(image, self.tiling, preprocessor.image_size)
        return SheetPixels(square(preprocessor.square(image)), tuple(
            (part, square(preprocessor.square(part_pixels(work, part.region))))
            for part in sheet_parts(work, sheet.regions, self.tiling)))

    def _fetch(self, uri: str) -> bytes:
        if self.images is None:
            raise NotFoundError(f"{uri}: no image store configured to fetch it from")
        return self.images.get(uri)


def sheet_row(job: SheetJob, modality: str, caption: str, vector) -> SheetRow:
    """The stored row of one sheet and modality, with the grant's filterable metadata."""
    grant, sheet = job.grant, job.sheet
    return SheetRow(
        patent=grant.patent_number, sheet=sheet.number, modality=modality, vector=vector,
        view=grant.sheet_view(sheet), locarno=grant.locarno.code if grant.locarno else "",
        grant_date=grant.grant_date, title=grant.title, figures=",".join(sheet.figure_numbers),
        caption=caption, image_uri=job.image_uri or sheet.image_uri,
        text=sheet_words(job, caption) if modality == "caption" else "",
    )


def part_row(job: SheetJob, part: SheetPart, vector) -> SheetRow:
    """The row of a figure of a sheet, or of a part (tile): the figure's view, number and
    caption where the part is in a known figure, else the sheet's."""
    grant, sheet = job.grant, job.sheet
    row = sheet_row(job, part.modality, grant.sheet_caption(sheet), vector)
    figure = grant.figure(part.figure) if part.figure else None
    if figure is None:
        return replace(row, region=part.region)
    return replace(row, region=part.region, view=figure.view.value, figures=figure.number,
                   caption=grant.figure_caption(figure))


def sheet_words(job: SheetJob, caption: str) -> str:
    """What the lexical leg matches for a sheet (on its caption row): the patent's title and
    claim, the sheet's figure descriptions (every figure's, where the XML does not say which
    figures the sheet holds) and its caption."""
    grant = job.grant
    figures = grant.sheet_figures(job.sheet) or grant.figures
    return "\n".join([grant.title, grant.claim, *(f.description for f in figures), caption])
