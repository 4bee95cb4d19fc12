"""The decoded-sheet cache and the lazy training data path.

Decoding a bilevel TIFF sheet (CCITT G4, thousands of pixels a side), trimming its margins
and shrinking it to the model's size is most of the data path's cost, and the result does
not change from one weekly cycle to the next. :class:`SheetCache` keeps that result on disk
as uint8 grayscale (``image_size`` squared bytes a sheet: 49 KiB at 224 px, against 588 KiB
as an fp32 tensor), keyed by the sha256 of the image bytes and the image size. A cycle
decodes only what it has not seen: in the weekly loop, the new week.

Training reads it through a ``torch.utils.data.DataLoader`` (:class:`StepBatches`): a
worker builds one optimizer step (its micro-batches: pixels normalized as the encoder
does, tokens, labels) when the loop asks for it, so the process holds a few steps of
pixels at a time whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from patentclip.drawings import preprocess
from patentclip.drawings.preprocess import DrawingPreprocessor
from patentclip.errors import ImageDecodeError, NotFoundError

logger = logging.getLogger(__name__)


class SheetCache:
    """uint8 grayscale sheets after margin trim and resize, under
    ``root/v<PREPROCESS_VERSION>-<size>px/``: another preprocessing version is another
    folder, never a silent reuse of pixels made the old way."""

    def __init__(self, root: str | Path, image_size: int) -> None:
        self.root = Path(root) / f"v{preprocess.PREPROCESS_VERSION}-{image_size}px"
        self.image_size = image_size
        self.preprocessor = DrawingPreprocessor(image_size=image_size)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def add(self, data: bytes, name: str = "image") -> tuple[str, bool]:
        """Cache one drawing; returns (key, whether it had to be decoded)."""
        key = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        if path.is_file():
            return key, False
        pixels = np.asarray(self.preprocessor.square(self.preprocessor.decode(data, name)),
                            dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per process and thread: two sheets with the same bytes may race here.
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.part")
        with tmp.open("wb") as handle:
            np.save(handle, pixels)
        tmp.replace(path)  # atomic: a reader never sees half a sheet
        return key, True

    def load(self, key: str) -> Image.Image:
        """The cached sheet as the 'L' image ``DrawingPreprocessor.square`` made."""
        return Image.fromarray(np.load(self.path(key)), mode="L")


def fill_cache(cache: SheetCache, items: Sequence, read: Callable[[str], bytes],
               workers: int = 4, progress: bool = True
               ) -> tuple[list[int], list[str], list[str]]:
    """Cache every item's drawing (``item.image_uri`` read with ``read``), in threads.

    Returns the indices of the items kept, their cache keys, and one line per item left
    out (unreadable or undecodable drawings: reported, never fatal). Holds no pixels.
    """
    def one(index: int) -> tuple[int, str | None, str, bool]:
        item = items[index]
        try:
            key, decoded = cache.add(read(item.image_uri), item.image_uri)
            return index, key, "", decoded
        except (ImageDecodeError, NotFoundError) as exc:
            return index, None, f"{getattr(item, 'key', item.image_uri)}: {exc}", False

    kept, keys, skipped, decoded = [], [], [], 0
    with ThreadPoolExecutor(workers) as pool:
        for index, key, problem, fresh in tqdm(pool.map(one, range(len(items))),
                                               total=len(items), desc="caching drawings",
                                               unit="sheet", disable=not progress):
            if key is None:
                skipped.append(problem)
                continue
            kept.append(index)
            keys.append(key)
            decoded += fresh
    logger.info("sheet cache %s: %d sheets, %d decoded now, %d from the cache, %d left out",
                cache.root, len(items), decoded, len(keys) - decoded, len(skipped))
    return kept, keys, skipped


MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # pixels, tokens, labels


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is optimizer step ``s`` of an epoch: its micro-batches, built on demand.

    ``steps`` holds each step's sample indices and ``captions`` each sample's caption for
    this epoch (both chosen up front from the seed and epoch, so the order does not depend
    on the workers); ``pixels(i)`` returns sample i's model input.
    """

    def __init__(self, steps: Sequence[Sequence[int]], captions: Sequence[str],
                 labels: torch.Tensor, pixels: Callable[[int], torch.Tensor], tokenizer,
                 micro_batch: int) -> None:
        self.steps, self.captions, self.labels = steps, captions, labels
        self.pixels, self.tokenizer, self.micro_batch = pixels, tokenizer, micro_batch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, step: int) -> list[MicroBatch]:
        indices = list(self.steps[step])
        return [self._micro(indices[i:i + self.micro_batch])
                for i in range(0, len(indices), self.micro_batch)]

    def _micro(self, indices: list[int]) -> MicroBatch:
        return (torch.stack([self.pixels(i) for i in indices]),
                self.tokenizer([self.captions[i] for i in indices]), self.labels[indices])


def step_loader(dataset: StepBatches, workers: int, device: str) -> Iterable[list[MicroBatch]]:
    """The DataLoader over an epoch's steps: ``workers`` processes, in order, pinned memory
    on CUDA, two steps prefetched per worker. Workers are forked (where the OS can), so
    they share the read-only model of the data and need nothing pickled; a trainer started
    with 'spawn' would otherwise fail to send them the pixel function."""
    forked = workers and "fork" in multiprocessing.get_all_start_methods()
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                       num_workers=workers,
                                       pin_memory=device.startswith("cuda"),
                                       prefetch_factor=2 if workers else None,
                                       multiprocessing_context="fork" if forked else None)
