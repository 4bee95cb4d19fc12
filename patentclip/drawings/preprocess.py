"""Patent-drawing preprocessing: bilevel TIFF -> grayscale -> white-padded square.

Drawings are tall or wide line art on mostly empty paper; a model wants a square. The
white margins are trimmed to the ink's bounding box, then padding (not cropping into the
drawing, not stretching) keeps the whole drawing undistorted. Large sheets are shrunk with
PIL's integer ``reduce`` first (a cheap box filter), finished with one resample, and
contrast-stretched so thin lines survive the shrink.
Images whose header declares more than ``max_pixels`` are refused before decoding.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from patentclip.errors import ImageDecodeError, InvalidQueryError
from patentclip.grants.model import Region

# The version of what decode + square make of a drawing. Bump it with any change to their
# output (trim, resize, padding, thresholds): caches and stored benchmark results carry
# it, so pixels or results of another preprocessing are never reused as if current.
PREPROCESS_VERSION = 1
INK_BELOW = 160  # grey levels darker than this are ink (the margins' trim, parts' ink)
DEFAULT_MAX_PIXELS = 60_000_000  # a 300 dpi US-letter sheet is ~8.4M pixels
# The only formats decoded: what USPTO ships and what examiners upload. Pillow would open
# every format it knows otherwise (EPS reaches Ghostscript, PSD, ICNS, ...).
FORMATS = ("TIFF", "PNG", "JPEG")


@dataclass(frozen=True)
class CropBox:
    """A region of a drawing as fractions of its width and height: a query for a part of a
    design (examiners search for a handle, a hinge, a pattern). Validated when built."""

    left: float
    top: float
    right: float
    bottom: float

    def __post_init__(self) -> None:
        fractions = (self.left, self.top, self.right, self.bottom)
        if not all(0.0 <= f <= 1.0 for f in fractions):
            raise InvalidQueryError(f"crop {fractions}: left, top, right and bottom are "
                                    "fractions of the drawing, between 0 and 1")
        if self.left >= self.right or self.top >= self.bottom:
            raise InvalidQueryError(f"crop {fractions}: left < right and top < bottom are "
                                    "required (an empty region)")

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a width x height image, at least one pixel each way (cut
        as a stored part is: ``Region.pixels``)."""
        return Region(self.left, self.top, self.right, self.bottom).pixels(width, height)


@dataclass(frozen=True)
class DrawingPreprocessor:
    """Decode drawing bytes (TIFF incl. CCITT G4, PNG, JPEG) into a square grayscale image."""

    image_size: int
    max_pixels: int = DEFAULT_MAX_PIXELS

    def decode(self, data: bytes, name: str = "image") -> Image.Image:
        """Decode and check size; returns an 'L' (grayscale) image at full resolution."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data), formats=FORMATS)
                width, height = image.size
                if width * height > self.max_pixels:
                    raise ImageDecodeError(
                        f"{name}: {width}x{height} pixels exceeds the limit of {self.max_pixels}")
                image.load()
        except ImageDecodeError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(f"{name}: refused as a decompression bomb, its declared "
                                   f"size exceeds the pixel limit ({exc})") from exc
        except UnidentifiedImageError as exc:  # its text names a BytesIO, not the input
            raise ImageDecodeError(f"{name}: not a readable image (expected TIFF, PNG or "
                                   "JPEG bytes)") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc
        return _to_grayscale(image)

    def square(self, image: Image.Image) -> Image.Image:
        """Trim white margins, pad to a white square (drawing centred) and shrink to
        ``image_size``."""
        image = trim_margins(image)
        width, height = image.size
        side = max(width, height)
        canvas = Image.new("L", (side, side), 255)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        factor = side // (2 * self.image_size)
        if factor >= 2:
            canvas = canvas.reduce(factor)
        if canvas.size != (self.image_size, self.image_size):
            canvas = canvas.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        # Shrinking thin black lines on white averages them to pale gray; stretch the
        # contrast back so the darkest ink is black again.
        return ImageOps.autocontrast(canvas)

    def query(self, data: bytes, name: str = "image", crop: CropBox | None = None,
              mode: str = "line") -> Image.Image:
        """A query drawing, decoded, cut to ``crop`` if given, turned into a line drawing
        when it is a photo (``mode`` "photo"; "line" and "sketch" are drawn lines already),
        and squared."""
        image = self.decode(data, name)
        if crop is not None:
            image = image.crop(crop.pixels(*image.size))
        if mode == "photo":
            from patentclip.drawings.photo import photo_to_line_drawing  # OpenCV: on use

            image = photo_to_line_drawing(image)
        return self.square(image)

    def __call__(self, data: bytes, name: str = "image") -> Image.Image:
        """bytes -> square RGB image of ``image_size`` (three equal channels for the model)."""
        return self.query(data, name).convert("RGB")


def trim_margins(image: Image.Image, ink_below: int = INK_BELOW, margin: float = 0.02
                 ) -> Image.Image:
    """Crop a grayscale sheet to the box around its ink, plus a small white margin.

    Sheets are mostly empty paper; without the crop a drawing fills a small part of the
    model's input and its lines shrink to a few pixels. A blank sheet is returned as is.
    """
    box = image.point(lambda p: 255 if p < ink_below else 0).getbbox()
    if box is None:
        return image
    left, top, right, bottom = box
    pad = int(margin * max(right - left, bottom - top))
    return image.crop((max(left - pad, 0), max(top - pad, 0), min(right + pad, image.width),
                       min(bottom + pad, image.height)))


def _to_grayscale(image: Image.Image) -> Image.Image:
    """Grayscale on white paper, in 1-byte bands: transparent parts become white. Works on
    the alpha band alone (no full-colour copies over a white RGBA canvas: those took 688
    MiB for a 60-Mpx PNG; this takes the decoded image plus three 1-byte bands)."""
    if image.mode == "P":
        if "transparency" not in image.info:
            return image.convert("L")
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA", "La", "RGBa"):
        return image.convert("L")
    transparency = ImageOps.invert(image.getchannel("A"))  # 255 where fully transparent
    gray = image.convert("L")
    gray.paste(255, (0, 0, *gray.size), transparency)  # white behind what is transparent
    return gray
