"""Drawings for people: one stored sheet (bilevel CCITT G4 TIFF, as USPTO ships them) as a
PNG scaled to a long edge, which browsers and toolkits display and TIFF G4 is not.

``DrawingRenderer`` reads a sheet through the image store, renders it once per size and
keeps recent renders in a cache bounded by bytes (a results page asks for the same
thumbnails again on every page turn and "back"). It knows no transport: the gRPC
``GetDrawing`` and the web app both call it.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from patentclip.drawings.preprocess import DrawingPreprocessor
from patentclip.errors import InvalidQueryError

# Long edge in pixels per size; None = the sheet as scanned.
DRAWING_SIZES: dict[str, int | None] = {"thumbnail": 256, "medium": 1024, "full": None}
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_DECODER = DrawingPreprocessor(image_size=1)  # decode() only: the pixel limit, grayscale


@dataclass(frozen=True)
class RenderedDrawing:
    png: bytes
    width: int
    height: int


def long_edge(size: str) -> int | None:
    """A size name's long edge; InvalidQueryError naming the choices for any other name."""
    if size not in DRAWING_SIZES:
        raise InvalidQueryError(f"size {size!r}: choose from {', '.join(DRAWING_SIZES)}")
    return DRAWING_SIZES[size]


def render_png(data: bytes, edge: int | None, name: str = "drawing", photo: bool = False
               ) -> RenderedDrawing:
    """Decode a drawing (TIFF incl. CCITT G4, PNG, JPEG; the pixel limit applies) and
    encode it as PNG with its long edge at most ``edge`` (never enlarged). ``photo``: the
    line drawing photo mode searches with (``patentclip.drawings.photo``).

    Line art shrinks with a box filter first and one Lanczos step after, so thin lines
    stay visible as gray instead of breaking up; full-size bilevel sheets stay 1-bit PNG
    (a few tens of kB for a 300 dpi sheet).
    """
    image = _DECODER.decode(data, name)
    if photo:
        from patentclip.drawings.photo import photo_to_line_drawing  # OpenCV: on use

        image = photo_to_line_drawing(image)
    if edge is not None and max(image.size) > edge:
        factor = max(image.size) // (2 * edge)
        if factor >= 2:
            image = image.reduce(factor)
        scale = edge / max(image.size)
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    elif _is_bilevel(image):
        image = image.convert("1", dither=Image.Dither.NONE)  # 1-bit PNG
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return RenderedDrawing(buffer.getvalue(), image.width, image.height)


def _is_bilevel(image: Image.Image) -> bool:
    """Only black and white pixels (getcolors gives None past two colours)."""
    colors = image.getcolors(2)
    return bool(colors) and all(value in (0, 255) for _, value in colors)


class DrawingRenderer:
    """Renders stored drawings by URI and size, with recent renders cached (LRU, at most
    ``cache_bytes`` of PNG). ``read(uri)`` is the image store's ``get``; its NotFoundError
    and ImageStoreUnavailableError pass through. Thread-safe; a render runs outside the
    lock, so two requests for one new sheet may both render it (the result is the same)."""

    def __init__(self, read: Callable[[str], bytes], cache_bytes: int = DEFAULT_CACHE_BYTES,
                 on_cache: Callable[[bool], None] | None = None) -> None:
        self.read, self.cache_bytes = read, cache_bytes
        self.on_cache = on_cache or (lambda hit: None)
        self._cache: OrderedDict[tuple[str, str], RenderedDrawing] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def render(self, uri: str, size: str) -> RenderedDrawing:
        edge = long_edge(size)
        key = (uri, size)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        self.on_cache(cached is not None)
        if cached is not None:
            return cached
        rendered = render_png(self.read(uri), edge, uri)
        self._keep(key, rendered)
        return rendered

    def _keep(self, key: tuple[str, str], rendered: RenderedDrawing) -> None:
        if len(rendered.png) > self.cache_bytes:
            return
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = rendered
            self._bytes += len(rendered.png)
            while self._bytes > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._bytes -= len(dropped.png)
