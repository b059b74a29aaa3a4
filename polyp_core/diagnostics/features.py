"""Image embeddings from a named backbone: batched, on the GPU when there is one, cached.

Features are cached by (image SHA-256, extractor id, image size), so an unchanged image is
never embedded twice. The extractor id names the weights too (``efficientnet_lite0@bundled``,
``efficientnet_b0@sha256:1a2b...``): KID on one extractor's features is not KID on another's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from polyp_core.backbones import WeightsRegistry, create_backbone, get_backbone_spec
from polyp_core.data.cache import PixelCache
from polyp_core.files import atomic_write
from polyp_core.progress import Progress, no_progress


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_batch(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float],
             device: torch.device) -> torch.Tensor:
    """uint8 HWC arrays (one size) -> normalised float NCHW tensor, channels_last."""
    array = np.stack(images).astype(np.float32) / 255.0
    batch = torch.from_numpy(array).permute(0, 3, 1, 2).to(device)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


class FeatureExtractor:
    """A backbone's pooled features, with an id that names backbone and weights."""

    def __init__(self, backbone: str = "efficientnet_lite0",
                 registry: WeightsRegistry | None = None,
                 device: torch.device | None = None, batch_size: int = 64) -> None:
        self.spec = get_backbone_spec(backbone)
        self.device = device or default_device()
        self.batch_size = batch_size
        model = create_backbone(backbone, pretrained=True, num_classes=0, registry=registry)
        origin = getattr(model, "pretrained_from", "")
        if origin.startswith("registered file") and registry is not None:
            tag = "sha256:" + registry.entries()[backbone]["sha256"][:16]
        elif origin.startswith("Hugging Face"):
            tag = "hf:" + (self.spec.hf_hub_id or "")
        else:
            tag = "bundled"
        self.id = f"{backbone}@{tag}"
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.dim = int(self.model.num_features)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray],
                 progress: Progress = no_progress) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = to_batch(images[start:start + self.batch_size], self.spec.mean, self.spec.std,
                             self.device)
            with torch.autocast(self.device.type, dtype=torch.float16,
                                enabled=self.device.type == "cuda"):
                out.append(self.model(batch).float().cpu().numpy())
            done = min(start + self.batch_size, len(images))
            progress(done, len(images), f"embedded {done}/{len(images)} images")
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def extract_features(images: Sequence[np.ndarray], backbone: str = "efficientnet_lite0",
                     batch_size: int = 64, device: torch.device | None = None,
                     registry: WeightsRegistry | None = None,
                     progress: Progress = no_progress) -> np.ndarray:
    """Features of in-memory images (uint8 ``(H, W, 3)``, one size), without caching."""
    return FeatureExtractor(backbone, registry, device, batch_size)(images, progress)


class FeatureCache:
    """``features/<extractor id>/<size>/<sha[:2]>/<sha>.npy`` in the workspace."""

    def __init__(self, root: Path, pixels: PixelCache) -> None:
        self.root = Path(root)
        self.pixels = pixels

    def _path(self, extractor_id: str, size: int, sha256: str) -> Path:
        safe = extractor_id.replace("/", "_").replace(":", "-")
        return self.root / safe / str(size) / sha256[:2] / f"{sha256}.npy"

    def features(self, extractor: FeatureExtractor, images: Sequence[tuple[str, str]],
                 size: int = 224, progress: Progress = no_progress) -> np.ndarray:
        """Features of ``(sha256, path)`` images; only the ones not cached are computed."""
        paths = [self._path(extractor.id, size, sha) for sha, _ in images]
        result: list[np.ndarray | None] = []
        for path in paths:
            try:
                result.append(np.load(path))
            except (OSError, ValueError):
                result.append(None)
        missing = [i for i, value in enumerate(result) if value is None]
        for start in range(0, len(missing), 256):
            chunk = missing[start:start + 256]
            pixels = [self.pixels.rgb(images[i][1], images[i][0], size) for i in chunk]
            computed = extractor(pixels)
            for i, vector in zip(chunk, computed):
                result[i] = vector
                atomic_write(paths[i], lambda handle, v=vector: np.save(handle, v))
            done = min(start + 256, len(missing))
            progress(done, len(missing), f"embedded {done}/{len(missing)} new images")
        if not images:
            return np.zeros((0, extractor.dim), np.float32)
        return np.stack(result).astype(np.float32)
