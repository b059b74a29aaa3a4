"""Image embeddings from a named backbone, in batches, on the GPU when there is one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from polyp_core.backbones import WeightsRegistry, create_backbone, get_backbone_spec
from polyp_core.progress import Progress, no_progress


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_batch(images: Sequence[np.ndarray], mean, std, device: torch.device) -> torch.Tensor:
    """uint8 HWC arrays (one size) -> normalised float NCHW tensor, channels_last."""
    array = np.stack(images).astype(np.float32) / 255.0
    batch = torch.from_numpy(array).permute(0, 3, 1, 2).to(device)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def extract_features(images: Sequence[np.ndarray], backbone: str = "efficientnet_lite0",
                     batch_size: int = 64, device: torch.device | None = None,
                     registry: WeightsRegistry | None = None,
                     progress: Progress = no_progress) -> np.ndarray:
    """Pooled features of ``images`` (uint8 ``(H, W, 3)``, all the same size).

    Returns:
        ``(len(images), d)`` float32 array; ``d`` is 1280 for the EfficientNets.
    """
    spec = get_backbone_spec(backbone)
    device = device or default_device()
    model = create_backbone(backbone, pretrained=True, num_classes=0, registry=registry)
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    out = []
    for start in range(0, len(images), batch_size):
        batch = to_batch(images[start:start + batch_size], spec.mean, spec.std, device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out.append(model(batch).float().cpu().numpy())
        done = min(start + batch_size, len(images))
        progress(done, len(images), f"embedded {done}/{len(images)} images")
    return np.concatenate(out) if out else np.zeros((0, model.num_features), np.float32)
