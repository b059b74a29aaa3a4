"""Masks for image-and-mask generation and inpainting: disk dilation (the same rule on a frame's
own mask, on a drawn one and on a training batch) and rasterising a mask to a model's size.

Two masks travel together: the *polyp* mask (where the polyp is, the label that goes into the
pool with the image) and the *hole* (the region the generator may change: the polyp mask
dilated by N px). Every pixel outside the hole stays the background's.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

#: the hole inpainting makes by default: the polyp mask grown by this many pixels of the frame
#: (``InpaintRequest.dilate``), and the hole an inpainter's training windows are placed around
HOLE_DILATE = 20


def disk(radius: int) -> np.ndarray:
    """A boolean disk of ``radius`` px, ``(2r+1, 2r+1)``."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return xx * xx + yy * yy <= r * r


def dilate(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` (bool ``(H, W)``) grown by ``px`` pixels in every direction (a disk)."""
    mask = np.asarray(mask, bool)
    if px <= 0 or not mask.any():
        return mask.copy()
    # a pixel within px (Euclidean) of the mask: the disk dilation, in one distance transform
    # (a 41 px disk on a 384 x 290 frame: 2 ms, against 97 ms for its binary dilation)
    return ndimage.distance_transform_edt(~mask) <= px


def dilate_batch(masks: torch.Tensor, px: int) -> torch.Tensor:
    """The same disk dilation on a float batch ``(N, 1, H, W)`` of 0/1 masks (training)."""
    if px <= 0:
        return masks
    kernel = torch.from_numpy(disk(px).astype(np.float32)).to(masks.device, masks.dtype)
    grown = torch.nn.functional.conv2d(masks, kernel[None, None], padding=px)
    return (grown > 0.5).to(masks.dtype)


def hole_at(mask: np.ndarray, size: int) -> np.ndarray:
    """A hole drawn on a frame, rasterised to ``size`` x ``size``: a model pixel belongs to the
    hole when any frame pixel under it does, so a pixel kept from the background is wholly
    outside the hole the user drew."""
    image = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX)) > 0


def polyp_at(mask: np.ndarray, size: int) -> np.ndarray:
    """A polyp mask at ``size`` (nearest neighbour, the segmentation rule)."""
    image = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST)) >= 128


def inpaint_condition(image: torch.Tensor, hole: torch.Tensor, polyp: torch.Tensor) -> torch.Tensor:
    """The extra input channels of a model trained for inpainting: hole and polyp mask (in
    -1..1) and the background with the hole blanked (``(N, 5, H, W)``)."""
    return torch.cat([hole * 2 - 1, polyp * 2 - 1, image * (1 - hole)], dim=1)
