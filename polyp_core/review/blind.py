"""What a reviewer's browser receives of an image: pixels, identically packaged.

Real and synthetic images differ in size, aspect, format, metadata and file name. Each is
served the same way: centre-cropped to a square, resized to one size, encoded as baseline
JPEG with fixed settings and no metadata, and reached only through an opaque token. The
only thing left that differs is the pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from polyp_core.data.images import load_rgb

BLIND_SIZE = 512
BLIND_MEDIA_TYPE = "image/jpeg"
_JPEG = dict(format="JPEG", quality=90, subsampling=2, optimize=False, progressive=False)


def blind_image(path: Path | str, size: int = BLIND_SIZE) -> bytes:
    """The served bytes of an image: square centre crop, ``size`` px, plain JPEG, no metadata."""
    rgb = load_rgb(path)
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = Image.fromarray(rgb[top:top + side, left:left + side])
    image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, **_JPEG)  # no exif=, icc_profile= or comment: nothing but pixels
    return buffer.getvalue()
