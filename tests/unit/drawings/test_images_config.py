import io

import pytest
from PIL import Image

from patentclip.config import CoreSettings
from patentclip.drawings.preprocess import DrawingPreprocessor
from patentclip.errors import ImageDecodeError


def tiff_g4(width, height, box):
    image = Image.new("L", (width, height), 255)
    image.paste(0, box)
    buffer = io.BytesIO()
    image.convert("1").save(buffer, format="TIFF", compression="group4")
    return buffer.getvalue()


def test_tall_drawing_is_padded_not_cropped_or_stretched():
    # a 600x900 sheet whose ink is a 300x900 tall bar: trimmed to the bar (+2% margin), then
    # padded to a square, never stretched
    data = tiff_g4(600, 900, (150, 0, 450, 900))
    out = DrawingPreprocessor(image_size=90)(data, "tall.tif")
    assert out.size == (90, 90) and out.mode == "RGB"
    gray = out.convert("L")
    assert gray.getpixel((45, 45)) < 60  # inside the bar
    assert gray.getpixel((5, 45)) > 200  # left padding is white
    dark = [x for x in range(90) if gray.getpixel((x, 45)) < 128]
    assert 28 <= min(dark) <= 31 and 58 <= max(dark) <= 61  # aspect kept: 30 px wide


def test_white_margins_are_trimmed_so_a_small_drawing_fills_the_input():
    # a 100x100 drawing in the middle of a 1000x1400 sheet
    data = tiff_g4(1000, 1400, (450, 650, 550, 750))
    gray = DrawingPreprocessor(image_size=64)(data, "small.tif").convert("L")
    dark = sum(1 for x in range(64) for y in range(64) if gray.getpixel((x, y)) < 128)
    assert dark > 0.8 * 64 * 64  # the box fills the input, not 0.5% of it
    blank = DrawingPreprocessor(image_size=64)(tiff_g4(200, 200, (0, 0, 0, 0)), "blank.tif")
    assert blank.size == (64, 64)  # a blank sheet is kept as is


def test_pixel_limit_refuses_before_decoding():
    data = tiff_g4(2000, 2000, (0, 0, 10, 10))
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        DrawingPreprocessor(image_size=64, max_pixels=1_000_000)(data, "big.tif")


@pytest.mark.parametrize("data", [b"not an image", tiff_g4(200, 200, (0, 0, 50, 50))[:120]])
def test_corrupt_images_give_a_clear_error(data):
    with pytest.raises(ImageDecodeError, match="bad.TIF"):
        DrawingPreprocessor(image_size=64)(data, "bad.TIF")


def test_png_with_alpha_is_flattened_on_white():
    image = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    out = DrawingPreprocessor(image_size=32)(buffer.getvalue(), "x.png").convert("L")
    assert out.getpixel((16, 16)) == 255


def test_settings_from_env_then_flags_and_secret_hidden():
    env = {"PATENTCLIP_MILVUS_URI": "http://m:19530", "PATENTCLIP_BATCH_SIZE": "8",
           "PATENTCLIP_MILVUS_TOKEN": "root:s3cret"}
    settings = CoreSettings.from_env(env).override(batch_size=None, model="local-dir:/m")
    assert settings.milvus_uri == "http://m:19530" and settings.batch_size == 8
    assert settings.model == "local-dir:/m"
    assert "s3cret" not in repr(settings)
