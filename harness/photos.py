"""Generated product photos of real patent drawings: the test input of photo mode.

A drawing's enclosed regions are filled with a shaded colour, its background with a
gradient, its lines kept only as a darker tone of the fill (a photo has no outlines), then
blurred, given sensor noise and saved as JPEG. What photo mode must recover is the object's
outline and main edges: the drawing's own lines (``drawing_lines`` gives them at the same
size).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from patentclip.drawings.preprocess import DrawingPreprocessor, trim_margins

SIDE = 768


def drawing_lines(drawing: bytes) -> np.ndarray:
    """The drawing's ink as a boolean mask, trimmed and scaled as ``photo_of`` scales it."""
    image = trim_margins(DrawingPreprocessor(224).decode(drawing))
    scale = SIDE / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BOX)
    return np.asarray(image) < 160


def photo_of(drawing: bytes, seed: int = 0) -> bytes:
    """A JPEG 'photo' of the design a drawing shows."""
    rng = np.random.default_rng(seed)
    ink = drawing_lines(drawing)
    height, width = ink.shape
    paper = np.where(ink, 0, 255).astype(np.uint8)
    mask = np.zeros((height + 2, width + 2), np.uint8)
    cv2.floodFill(paper, mask, (0, 0), 128)  # the background: reached from a corner
    background = paper == 128
    inside = ~background & ~ink
    ys, xs = np.mgrid[0:height, 0:width]
    light = 0.65 + 0.35 * (xs / max(width - 1, 1))  # lit from the right
    colour = rng.uniform(60, 220, size=3)
    photo = np.empty((height, width, 3), np.float32)
    photo[:] = (np.stack([200 + 40 * ys / max(height - 1, 1)] * 3, axis=-1)
                * np.array([0.95, 0.97, 1.0]))  # a studio backdrop
    photo[inside] = colour * light[inside, None]
    photo[ink] = colour * 0.55 * light[ink, None]  # an edge is a darker tone, not a line
    photo = cv2.GaussianBlur(photo, (5, 5), 1.2)
    photo += rng.normal(0, 6, photo.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG",
                                                                          quality=85)
    return buffer.getvalue()


def share_near(mask: np.ndarray, target: np.ndarray, tolerance: float = 4) -> float:
    """The share of ``mask``'s pixels within ``tolerance`` pixels of ``target``'s: edge
    precision (extracted edges against a drawing's lines) and recall (the other way)."""
    distance = cv2.distanceTransform((~target).astype(np.uint8), cv2.DIST_L2, 3)
    return float((distance[mask] <= tolerance).mean()) if mask.any() else 0.0
