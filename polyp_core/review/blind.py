"""What a reviewer's browser receives of an image: pixels, identically packaged.

Real and synthetic images differ in size, aspect, format, metadata and file name. Each is
served the same way: centre-cropped to a square, resized to one size, encoded as baseline
JPEG with fixed settings and no metadata, and reached only through an opaque token. The
only thing left that differs is the pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from polyp_core.data.images import load_rgb

BLIND_SIZE = 512
BLIND_MEDIA_TYPE = "image/jpeg"
_JPEG = dict(format="JPEG", quality=90, subsampling=2, optimize=False, progressive=False)
ENCODER = "baseline JPEG, quality 90, 4:2:0, no metadata"


@dataclass(frozen=True)
class ServingChain:
    """How every image of a study becomes what a reviewer's browser receives.

    Attributes:
        serve_size: side of the served square, in pixels.
        working: side every image is brought down to first (the lowest native resolution
            among the study's sources, by default), so a low-resolution source cannot be told
            by its lack of fine detail or its smaller JPEG; ``None`` serves each image from
            its own resolution (the chain before resolution matching).
        fixed_length: every served file has the same byte length (``padded_length``): the
            JPEG is padded after its end marker, which decoders ignore, and re-encoded at a
            lower quality in the rare case it is longer. The byte count (Content-Length) then
            says nothing. ``False`` is the chain before this audit existed.
    """

    serve_size: int = BLIND_SIZE
    working: int | None = None
    fixed_length: bool = True

    def __post_init__(self) -> None:
        if not 64 <= self.serve_size <= 2048:
            raise ValueError(f"serve_size must be between 64 and 2048 pixels, not {self.serve_size}")
        if self.working is not None and not 8 <= self.working <= 4096:
            raise ValueError(f"working resolution must be between 8 and 4096 pixels, not "
                             f"{self.working}")

    @property
    def padded_length(self) -> int:
        return self.serve_size * self.serve_size // 2  # 128 KiB at 512 px

    def describe(self) -> dict:
        return {"crop": "centre square", "working": self.working, "serve_size": self.serve_size,
                "resample": "area down to working, bicubic to serve size",
                "encoder": ENCODER,
                "fixed_length": self.padded_length if self.fixed_length else None}

    def text(self) -> str:
        parts = ["centre square crop",
                 f"down to {self.working} px" if self.working else "native resolution",
                 f"{self.serve_size} px", ENCODER]
        if self.fixed_length:
            parts.append(f"padded to {self.padded_length} bytes")
        return " → ".join(parts)

    def serve(self, path: Path | str) -> bytes:
        return blind_image(path, self.serve_size, self.working,
                           self.padded_length if self.fixed_length else None)

    @classmethod
    def from_settings(cls, settings: dict) -> ServingChain:
        """The chain a study was created with (studies made before matching: native, unpadded)."""
        chain = settings.get("serving")
        if chain is None:
            return cls(int(settings.get("serve_size", BLIND_SIZE)), None, False)
        return cls(int(chain["serve_size"]), chain.get("working"),
                   chain.get("fixed_length") is not None)


def native_side(path: Path | str) -> int:
    """The side of an image's centre square before any resizing (its native resolution)."""
    with Image.open(path) as image:
        return min(image.size)


def blind_image(path: Path | str, size: int = BLIND_SIZE, working: int | None = None,
                padded_length: int | None = None) -> bytes:
    """The served bytes of an image: square centre crop, down to ``working`` px when given
    (never up), then ``size`` px, plain JPEG, no metadata; padded to ``padded_length`` bytes
    when given."""
    rgb = load_rgb(path)
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = Image.fromarray(rgb[top:top + side, left:left + side])
    if working is not None and working < side:
        image = image.resize((working, working), Image.Resampling.BOX)
    image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    for quality in (90, 80, 70, 60, 50, 40, 30):
        buffer = io.BytesIO()
        # no exif=, icc_profile= or comment: nothing but pixels
        image.save(buffer, **{**_JPEG, "quality": quality})
        data = buffer.getvalue()
        if padded_length is None:
            return data
        if len(data) <= padded_length:
            return data + bytes(padded_length - len(data))
    raise ValueError(f"{path}: no JPEG quality fits {padded_length} bytes at {size} px")
