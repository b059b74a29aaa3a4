"""Every image mode a hospital export may hold decodes to the right 8-bit RGB pixels."""

import io

import numpy as np
import pytest
from PIL import Image

from polyp_core.data import images
from polyp_core.data.images import load_mask, load_rgb
from polyp_core.errors import ImageDecodeError

GRADIENT = np.tile(np.linspace(0, 255, 32).round().astype(np.uint8), (16, 1))


def test_rgb_jpeg_and_png(tmp_path):
    rgb = np.dstack([GRADIENT, GRADIENT[::-1], np.full_like(GRADIENT, 7)])
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(load_rgb(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    out = load_rgb(tmp_path / "a.jpg")
    assert out.shape == (16, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 4


def test_sixteen_bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    deep = (GRADIENT.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_rgb(tmp_path / "deep.png")
    assert out.shape == (16, 32, 3)
    assert np.array_equal(out[:, :, 0], GRADIENT)
    assert np.array_equal(out[:, :, 0], out[:, :, 2])


def test_sixteen_bit_rgb_tiff(tmp_path):
    import tifffile  # pinned in requirements.txt: no skip
    rgb = np.dstack([GRADIENT, GRADIENT[::-1], np.full_like(GRADIENT, 200)]).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "deep.tif", rgb, photometric="rgb")
    out = load_rgb(tmp_path / "deep.tif")
    assert np.array_equal(out, (rgb // 257).astype(np.uint8))


def test_greyscale_palette_rgba_cmyk(tmp_path):
    Image.fromarray(GRADIENT, "L").save(tmp_path / "grey.png")
    assert np.array_equal(load_rgb(tmp_path / "grey.png")[:, :, 1], GRADIENT)

    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, 16:] = (200, 30, 40)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    out = load_rgb(tmp_path / "p.png")
    assert tuple(out[0, 20]) == (200, 30, 40) and tuple(out[0, 0]) == (0, 0, 0)

    rgba = np.zeros((16, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :16, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 20]) == (0, 0, 0)

    Image.fromarray(np.full((16, 32, 3), (255, 0, 0), np.uint8)).convert("CMYK").save(
        tmp_path / "c.jpg", quality=100)
    out = load_rgb(tmp_path / "c.jpg")
    assert out[..., 0].mean() > 230 and out[..., 1].mean() < 30


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90°
    image.save(tmp_path / "o.jpg", exif=exif)
    assert load_rgb(tmp_path / "o.jpg").shape == (30, 10, 3)
    assert images.image_size(tmp_path / "o.jpg") == (10, 30)


def test_truncated_file_names_the_file(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(tmp_path / "cut.jpg")
    assert "cut.jpg" in str(info.value) and "truncated" in str(info.value)


def test_not_an_image_and_missing(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(ImageDecodeError, match="x.png"):
        load_rgb(tmp_path / "x.png")
    with pytest.raises(ImageDecodeError, match="not found"):
        load_rgb(tmp_path / "nope.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    # A 1-bit PNG of 12,000 x 12,000 pixels is a few kB on disk and 432 MB as RGB.
    Image.new("1", (12_000, 12_000)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_rgb(tmp_path / "bomb.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_rgb(tmp_path / "small.png")


def test_mask_thresholds_any_mode(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(np.dstack([mask] * 3)).save(tmp_path / "m.jpg", quality=90)
    for name in ("m.png", "m.jpg"):
        out = load_mask(tmp_path / name)
        assert out.dtype == bool and out.sum() == 9
