"""Images for the classifier: decoded once, held as uint8 tensors, augmented in batches.

Every arm of an experiment and every split goes through the same :func:`normalise` with the
backbone's mean and std (the seed code normalised baseline and augmented runs differently,
which made its comparison meaningless). Augmentation touches training batches only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from polyp_core.data.cache import PixelCache


@dataclass(frozen=True)
class ImageRef:
    """One image an experiment uses: content hash, file, scheme class, real or synthetic."""

    sha256: str
    path: str
    label: str
    kind: str = "real"
    mask: str | None = None  # its mask's file, for segmentation


@dataclass
class ImageTensors:
    """A split in memory: ``pixels`` uint8 ``(N, 3, S, S)`` and class indices ``labels``."""

    refs: list[ImageRef]
    pixels: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, indices: Sequence[int]) -> ImageTensors:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return ImageTensors([self.refs[i] for i in indices], self.pixels[index], self.labels[index])

    @staticmethod
    def concat(parts: Sequence[ImageTensors]) -> ImageTensors:
        return ImageTensors([r for p in parts for r in p.refs], torch.cat([p.pixels for p in parts]),
                            torch.cat([p.labels for p in parts]))


def load_tensors(refs: Sequence[ImageRef], classes: Sequence[str], size: int,
                 pixels: PixelCache) -> ImageTensors:
    """Decode (once, through the pixel cache) and stack ``refs`` at ``size`` x ``size``.

    Raises:
        ValueError: an image's class is not one of ``classes`` (naming the file).
    """
    index = {c: i for i, c in enumerate(classes)}
    labels = []
    for ref in refs:
        if ref.label not in index:
            raise ValueError(f"{ref.path}: class {ref.label!r} is not one of {list(classes)}")
        labels.append(index[ref.label])
    if not refs:
        return ImageTensors([], torch.zeros((0, 3, size, size), dtype=torch.uint8),
                            torch.zeros(0, dtype=torch.long))
    array = np.stack([pixels.rgb(ref.path, ref.sha256, size) for ref in refs])
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(list(refs), tensor, torch.tensor(labels, dtype=torch.long))


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 or 0..1 float ``(N, 3, H, W)`` -> the backbone's input, channels_last.

    The one normalisation of the classifier: training, validation and test images of every
    arm pass through here with the backbone's own mean and std.
    """
    x = batch.float()
    if batch.dtype == torch.uint8:
        x = x / 255.0
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)


def augment(batch: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.8, 1.0),
            jitter: float = 0.1) -> torch.Tensor:
    """Random flips, 90-degree turns, a zoomed crop with a small rotation, and brightness /
    contrast jitter, per image, on uint8 ``(N, 3, S, S)``; returns floats in 0..1.

    Random numbers come from ``generator`` (on the CPU), so a seed gives the same batches on
    any device.
    """
    n = batch.shape[0]
    device = batch.device
    x = batch.float() / 255.0
    draws = torch.rand((n, 7), generator=generator).to(device)
    x = torch.where((draws[:, 0] < 0.5).view(n, 1, 1, 1), x.flip(3), x)
    x = torch.where((draws[:, 1] < 0.5).view(n, 1, 1, 1), x.flip(2), x)
    quarter = (draws[:, 2] * 4).long().clamp(max=3)
    x = torch.stack([torch.rot90(img, int(k), dims=(1, 2)) for img, k in zip(x, quarter.tolist())])
    zoom = scale[0] + (scale[1] - scale[0]) * draws[:, 3]
    angle = (draws[:, 4] - 0.5) * (math.pi / 6)  # +-15 degrees
    room = 1 - zoom
    shift_x = (draws[:, 5] * 2 - 1) * room
    shift_y = (draws[:, 6] * 2 - 1) * room
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    light = torch.rand((n, 2), generator=generator).to(device)
    brightness = 1 + (light[:, 0] * 2 - 1) * jitter
    contrast = 1 + (light[:, 1] * 2 - 1) * jitter
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(n, 1, 1, 1) + mean
    return (x * brightness.view(n, 1, 1, 1)).clamp(0, 1)
