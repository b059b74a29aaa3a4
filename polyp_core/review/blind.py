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

import numpy as np
from PIL import Image
from scipy import ndimage

from polyp_core.data.images import load_mask, load_rgb

BLIND_SIZE = 512
BLIND_MEDIA_TYPE = "image/jpeg"
#: how a study shows each image's polyp mask: drawn on the image, or beside it
MASK_VIEWS = ("outline", "side-by-side")
MASK_COLOUR = (0, 255, 0)
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
        show_mask: ``outline`` or ``side-by-side``: each image's polyp mask is cropped like the
            image, rasterised at the working resolution (so an annotator's and a generator's
            masks show no detail the other lacks) and drawn in one style, inside the same
            fixed-length file; ``None``: no mask.
    """

    serve_size: int = BLIND_SIZE
    working: int | None = None
    fixed_length: bool = True
    show_mask: str | None = None

    def __post_init__(self) -> None:
        if not 64 <= self.serve_size <= 2048:
            raise ValueError(f"serve_size must be between 64 and 2048 pixels, not {self.serve_size}")
        if self.working is not None and not 8 <= self.working <= 4096:
            raise ValueError(f"working resolution must be between 8 and 4096 pixels, not "
                             f"{self.working}")
        if self.show_mask not in (None, *MASK_VIEWS):
            raise ValueError(f"show_mask must be one of {', '.join(MASK_VIEWS)}, not "
                             f"{self.show_mask!r}")

    @property
    def padded_length(self) -> int:
        wide = 2 if self.show_mask == "side-by-side" else 1
        return wide * self.serve_size * self.serve_size // 2  # 128 KiB at 512 px

    def describe(self) -> dict:
        return {"crop": "centre square", "working": self.working, "serve_size": self.serve_size,
                "resample": "area down to working, bicubic to serve size",
                "encoder": ENCODER,
                "fixed_length": self.padded_length if self.fixed_length else None,
                **({"mask": self.show_mask} if self.show_mask else {})}

    def text(self) -> str:
        parts = ["centre square crop",
                 f"down to {self.working} px" if self.working else "native resolution",
                 f"{self.serve_size} px", ENCODER]
        if self.show_mask:
            parts.insert(3, f"mask {self.show_mask} (rasterised at the working resolution)")
        if self.fixed_length:
            parts.append(f"padded to {self.padded_length} bytes")
        return " → ".join(parts)

    def serve(self, path: Path | str, mask: Path | str | None = None) -> bytes:
        """The served bytes of an image (and, in a mask study, its mask ``mask``)."""
        if self.show_mask and mask is None:
            raise ValueError(f"{path}: this study shows masks and the image has none")
        return blind_image(path, self.serve_size, self.working,
                           self.padded_length if self.fixed_length else None,
                           mask if self.show_mask else None, self.show_mask)

    def mask_raster(self, image: Path | str, mask: Path | str) -> np.ndarray:
        """The mask as the study draws it: cropped like its image, at the working resolution."""
        return _mask_square(mask, _side(image), self.working)

    @classmethod
    def from_settings(cls, settings: dict) -> ServingChain:
        """The chain a study was created with (studies made before matching: native, unpadded)."""
        chain = settings.get("serving")
        if chain is None:
            return cls(int(settings.get("serve_size", BLIND_SIZE)), None, False)
        return cls(int(chain["serve_size"]), chain.get("working"),
                   chain.get("fixed_length") is not None, chain.get("mask"))


def native_side(path: Path | str) -> int:
    """The side of an image's centre square before any resizing (its native resolution)."""
    with Image.open(path) as image:
        return min(image.size)


def _side(path: Path | str) -> int:
    with Image.open(path) as image:
        return min(image.size)


def _centre(array: np.ndarray) -> np.ndarray:
    height, width = array.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return array[top:top + side, left:left + side]


def _mask_square(mask_path: Path | str, image_side: int, working: int | None) -> np.ndarray:
    """The mask's centre square at the working resolution (its image's side when none): a
    pixel is polyp when at least half the frame pixels under it are."""
    mask = _centre(load_mask(mask_path))
    side = min(working or image_side, mask.shape[0])
    grey = Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.Resampling.BOX)
    return np.asarray(grey) >= 128


def _draw_mask(image: Image.Image, mask: np.ndarray, view: str) -> Image.Image:
    """The mask at the served size (nearest neighbour) drawn in the one style every image gets:
    an outline ``size // 128`` px wide on the image, or white on black beside it."""
    size = image.size[0]
    big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (size, size), Image.Resampling.NEAREST)) >= 128
    if view == "side-by-side":
        out = Image.new("RGB", (2 * size, size))
        out.paste(image, (0, 0))
        out.paste(Image.fromarray(np.repeat(big[..., None].astype(np.uint8) * 255, 3, 2)),
                  (size, 0))
        return out
    edge = big & ~ndimage.binary_erosion(big, iterations=max(2, size // 128))
    rgb = np.asarray(image).copy()
    rgb[edge] = MASK_COLOUR
    return Image.fromarray(rgb)


def blind_image(path: Path | str, size: int = BLIND_SIZE, working: int | None = None,
                padded_length: int | None = None, mask: Path | str | None = None,
                show_mask: str | None = None) -> bytes:
    """The served bytes of an image: square centre crop, down to ``working`` px when given
    (never up), then ``size`` px, its mask drawn when given (``show_mask``), plain JPEG, no
    metadata; padded to ``padded_length`` bytes when given."""
    rgb = load_rgb(path)
    square = _centre(rgb)
    side = square.shape[0]
    image = Image.fromarray(square)
    if working is not None and working < side:
        image = image.resize((working, working), Image.Resampling.BOX)
    image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if mask is not None:
        image = _draw_mask(image, _mask_square(mask, side, working), show_mask or "outline")
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
