"""Inpainting at the frame's own resolution: a square window around the hole.

A generator works at a small size (64 px). Shrinking a whole 384 x 288 frame to it leaves the
polyp a few pixels, and the stored image is then a 64 px frame. Tools that inpaint for a
living fill "only the masked area": cut a window around the hole, scale it to the model's
size, fill it, scale the result back and paste only the hole into the full-size frame. The
polyp then gets all of the model's pixels, and every pixel outside the hole is the frame's,
at the frame's size.

The window (:func:`lesion_window`) is the hole's bounding box grown by half its size (a
quarter on each side), at least the model's size in frame pixels, square, clipped to the
frame. The paste (:func:`paste`) blends inside the hole only, with a seam feathered over about
one model pixel: the hole's border pixels take a little of the frame, its inside all of the
generated window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

#: how ``inpaint`` places the generator: ``lesion`` (a window around the hole, the default) or
#: ``none`` (the whole frame shrunk to the model's size, as before windows)
WINDOWS = ("lesion", "none")
#: the window's margin: the hole's box grown by this share of its size
MARGIN = 0.5


@dataclass(frozen=True)
class Window:
    """A square of the frame: its top-left corner and side, in frame pixels."""

    x: int
    y: int
    side: int

    def crop(self, array: np.ndarray) -> np.ndarray:
        return array[self.y:self.y + self.side, self.x:self.x + self.side]

    def to_json(self) -> dict:
        return {"x": self.x, "y": self.y, "side": self.side}


def box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` (end exclusive) of a non-empty boolean mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def touches_border(mask: np.ndarray) -> bool:
    """Whether a boolean mask reaches the frame's edge (the polyp is cut by it)."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def lesion_window(hole: np.ndarray, model_size: int, margin: float = MARGIN) -> Window:
    """The square window around ``hole`` (bool ``(H, W)``).

    Raises:
        ValueError: an empty hole, or a hole whose box does not fit in a square of the frame
            (its window limit: the frame's shorter side).
    """
    if not hole.any():
        raise ValueError("`window`: the hole is empty")
    height, width = hole.shape
    y0, y1, x0, x1 = box(hole)
    extent = max(y1 - y0, x1 - x0)
    limit = min(height, width)
    if extent > limit:
        raise ValueError(f"`window`: the hole spans {x1 - x0}x{y1 - y0} px, more than the "
                         f"frame's window limit of {limit} px (its shorter side); inpaint it "
                         "with window none (the whole frame at the model's size)")
    side = min(limit, max(math.ceil(extent * (1 + margin)), model_size))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    x = int(np.clip(round(cx - side / 2), 0, width - side))
    y = int(np.clip(round(cy - side / 2), 0, height - side))
    # rounding may leave a pixel of the box outside: the box always fits (side >= extent)
    x, y = max(min(x, x0), x1 - side), max(min(y, y0), y1 - side)
    return Window(x, y, side)


def feather_alpha(hole: np.ndarray, width: float) -> np.ndarray:
    """Blend weights inside ``hole``: 0 outside it (the frame, exactly), rising from
    ``1 / width`` on its border pixels to 1 at ``width`` px inside."""
    if width <= 1:
        return hole.astype(np.float32)
    # padded: a hole that reaches the array's edge has its border there too
    inside = ndimage.distance_transform_edt(np.pad(hole, 1))[1:-1, 1:-1]
    return np.clip(inside / width, 0.0, 1.0).astype(np.float32)


def paste(frame: np.ndarray, generated: np.ndarray, window: Window, hole: np.ndarray,
          feather: float) -> np.ndarray:
    """``frame`` (uint8 ``(H, W, 3)``) with the hole filled from ``generated`` (the window at
    the model's size, scaled back to the window's side, bicubic): only pixels inside the hole
    change, blended over ``feather`` px at its border."""
    big = np.asarray(Image.fromarray(generated).resize((window.side, window.side),
                                                       Image.Resampling.BICUBIC))
    alpha = feather_alpha(window.crop(hole), feather)[..., None]
    out = frame.copy()
    region = window.crop(out)
    mixed = alpha * big.astype(np.float32) + (1 - alpha) * region.astype(np.float32)
    region[...] = np.where(alpha > 0, np.clip(np.rint(mixed), 0, 255), region).astype(np.uint8)
    return out


def seam_width(window: Window, model_size: int) -> float:
    """The feathered seam: about one model pixel, in frame pixels (at least 1)."""
    return max(1.0, window.side / model_size)


def _resized(rgb: np.ndarray, mask: np.ndarray, window: Window,
             size: int) -> tuple[np.ndarray, np.ndarray]:
    from polyp_core.data.images import resize_rgb
    from polyp_core.generation.masks import polyp_at

    return (resize_rgb(np.ascontiguousarray(window.crop(rgb)), size),
            polyp_at(window.crop(mask), size))


def training_windows(rgb: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator,
                     dilate_px: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """What an inpainter learns from one frame (uint8 ``(H, W, 3)``, bool mask), each crop at
    the model's ``size``: the frame's own polyp window (as :func:`lesion_window` places it
    around the mask dilated by ``dilate_px``, inpainting's default hole), the same window
    jittered (side x 0.8-1.25, centre moved by up to a fifth of the side), and a random square
    (the mucosa, usually without a polyp). A frame whose hole exceeds its window limit gives
    only the random window."""
    from polyp_core.generation.masks import dilate

    height, width = mask.shape
    limit = min(height, width)
    smallest = min(size, limit)
    out = []
    hole = dilate(mask, dilate_px) if mask.any() else None
    if hole is not None:
        y0, y1, x0, x1 = box(hole)
        if max(y1 - y0, x1 - x0) <= limit:
            own = lesion_window(hole, size)
            out.append(_resized(rgb, mask, own, size))
            side = int(np.clip(round(own.side * rng.uniform(0.8, 1.25)), smallest, limit))
            cx, cy = own.x + own.side / 2, own.y + own.side / 2
            cx, cy = cx + rng.uniform(-0.2, 0.2) * own.side, cy + rng.uniform(-0.2, 0.2) * own.side
            jittered = Window(int(np.clip(round(cx - side / 2), 0, width - side)),
                              int(np.clip(round(cy - side / 2), 0, height - side)), side)
            out.append(_resized(rgb, mask, jittered, size))
    side = int(rng.integers(smallest, limit + 1))
    anywhere = Window(int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)),
                      side)
    out.append(_resized(rgb, mask, anywhere, size))
    return out
