"""Decode image files into 8-bit RGB pixels, whatever mode they were saved in.

Hospital exports arrive as 16-bit TIFF, greyscale, palette, RGBA or CMYK files as well as
plain JPEG. Everything here returns ``uint8`` arrays of shape ``(H, W, 3)`` (or ``(H, W)``
for masks) and raises :class:`ImageDecodeError` naming the file when it cannot.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from polyp_core.errors import ImageDecodeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: Frames larger than this are refused before decoding (a decompression bomb: a small file
#: that expands to gigabytes). 50 megapixels is far above any endoscope's sensor.
MAX_PIXELS = 50_000_000


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pixel_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of decoded pixels (shape and ``uint8`` values): two files that decode to the same
    picture (a JPEG re-saved as PNG, a frame exported twice) share it, whatever their bytes."""
    array = np.ascontiguousarray(rgb, dtype=np.uint8)
    digest = hashlib.sha256(("x".join(map(str, array.shape)) + ";").encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixels of any depth to 0..255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        # 16-bit data is scaled by its type's range, not by its own maximum, so that a dark
        # frame stays dark; 32-bit integer images from Pillow ("I") hold 16-bit values.
        top = 65535 if info.max > 65535 else info.max
        return np.clip(array.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
    arr = array.astype(np.float64)
    hi = 1.0 if np.nanmax(arr) <= 1.0 else 255.0
    return np.clip(np.nan_to_num(arr) * (255.0 / hi), 0, 255).round().astype(np.uint8)


def _rgb_from_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 2:  # grey + alpha
        array = np.repeat(array[:, :, :1], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] >= 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(to_uint8(array))


def _rgb_from_pil(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB",):
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Alpha is composited onto black: an endoscope frame's surround is black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB")).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _rgb_from_array(np.asarray(image))
    # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's own conversion is right for these
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _open_checked(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(str(path), f"refused as a decompression bomb ({exc})") from None
    except FileNotFoundError:
        raise ImageDecodeError(str(path), "file not found") from None
    except Exception as exc:  # Pillow raises several types for unreadable files
        if path.is_file() and path.stat().st_size == 0:
            raise ImageDecodeError(str(path), "the file is empty (0 bytes)") from None
        raise ImageDecodeError(str(path), f"not a readable image ({exc})") from None
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "TIFF":  # multi-page TIFFs: the first page (below)
        image.close()
        raise ImageDecodeError(str(path), f"holds {frames} frames (an animation); export one "
                                          "frame per file")
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise ImageDecodeError(
            str(path),
            f"refused as a decompression bomb: {width}x{height} pixels is more than "
            f"the limit of {MAX_PIXELS:,}",
        )
    return image


def _read_tiff_fallback(path: Path, reason: Exception) -> np.ndarray:
    """Pillow cannot decode some multi-channel 16-bit TIFFs; tifffile can."""
    try:
        import tifffile

        return tifffile.imread(str(path))
    except Exception as exc:
        raise ImageDecodeError(
            str(path), f"unreadable or truncated image ({reason}; tifffile: {exc})"
        ) from None


def load_rgb(path: Path | str) -> np.ndarray:
    """Decode an image file into an ``(H, W, 3)`` ``uint8`` RGB array.

    EXIF orientation is applied, alpha is composited onto black and deeper bit depths are
    scaled to 8 bits.

    Raises:
        ImageDecodeError: missing, unreadable, truncated or oversized file, naming it.
    """
    path = Path(path)
    image = _open_checked(path)
    try:
        with image:
            image.load()  # full decode: a truncated file fails here, not later in training
            image = ImageOps.exif_transpose(image)
            rgb = _rgb_from_pil(image)
    except ImageDecodeError:
        raise
    except Exception as exc:
        if path.suffix.lower() in (".tif", ".tiff"):
            array = _read_tiff_fallback(path, exc)
            if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[2] not in (3, 4):
                array = np.moveaxis(array, 0, -1)  # planar TIFF
            rgb = _rgb_from_array(array)
        else:
            raise ImageDecodeError(str(path), f"unreadable or truncated image ({exc})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageDecodeError(str(path), f"decoded to an unexpected shape {rgb.shape}")
    return rgb


def load_mask(path: Path | str) -> np.ndarray:
    """Decode a mask file into an ``(H, W)`` boolean array (polyp = True).

    Any mode is accepted; a pixel is polyp when its grey level is at least half the
    maximum, which tolerates JPEG-compressed masks; a mask whose values are only 0 and 1
    (some exports) has its 1s as polyp (:func:`load_mask_levels` tells them apart).

    Raises:
        ImageDecodeError: as :func:`load_rgb`.
    """
    return load_mask_levels(path)[0]


def load_mask_levels(path: Path | str) -> tuple[np.ndarray, str]:
    """The mask (as :func:`load_mask`) and what its file holds, from one decode: ``binary``
    (only 0 and 255, or all one of them), ``0/1`` (only 0 and 1: the 1s are polyp) or ``grey``
    (other values: binarised at 128).

    Raises:
        ImageDecodeError: as :func:`load_rgb`.
    """
    grey = load_rgb(path).max(axis=2)
    values = set(np.unique(grey).tolist())
    levels = "binary" if values <= {0, 255} else "0/1" if values == {0, 1} else "grey"
    return (grey >= 1 if levels == "0/1" else grey >= 128), levels


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels."""
    image = _open_checked(Path(path))
    with image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (bicubic, antialiased); the studio's one resize policy."""
    image = Image.fromarray(rgb)
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST)) >= 128
