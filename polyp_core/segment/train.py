"""Training a segmenter: images and masks in memory, Dice + BCE, the classifier's optimiser and
schedule, early stopping on validation Dice (fixed epochs without a validation set)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from polyp_core.data.tensors import ImageRef, normalise
from polyp_core.training import TrainConfig, autocast_dtype, warmup_cosine_adamw
from polyp_core.data.cache import PixelCache
from polyp_core.data.images import load_mask, resize_mask
from polyp_core.errors import ImageDecodeError
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.segment.metrics import SCORES, mask_scores
from polyp_core.segment.model import build_segmenter

if TYPE_CHECKING:
    from polyp_core.backbones import WeightsRegistry


@dataclass
class MaskTensors:  # pragma: no mutate block
    """Images and their masks in memory: ``pixels`` uint8 ``(N, 3, S, S)``, ``masks`` bool
    ``(N, S, S)``."""

    refs: list[ImageRef]
    pixels: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, indices: list[int] | tuple[int, ...]) -> MaskTensors:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return MaskTensors([self.refs[i] for i in indices], self.pixels[index], self.masks[index])

    @staticmethod
    def concat(parts: list[MaskTensors]) -> MaskTensors:
        return MaskTensors([r for p in parts for r in p.refs],
                           torch.cat([p.pixels for p in parts]), torch.cat([p.masks for p in parts]))


def load_masked(refs: list[ImageRef], size: int, pixels: PixelCache) -> MaskTensors:  # pragma: no mutate block
    """Decode every image (through the pixel cache) and its mask at ``size`` x ``size``.

    Raises:
        ValueError: an image without a mask, or a mask that cannot be read (naming the file).
    """
    images, masks = [], []
    for ref in refs:
        if not ref.mask:
            raise ValueError(f"{ref.path}: no mask; segmentation needs a mask for every image")
        try:
            mask = load_mask(ref.mask)
        except ImageDecodeError as error:
            raise ValueError(str(error)) from None
        images.append(pixels.rgb(ref.path, ref.sha256, size))
        masks.append(resize_mask(mask, size))
    if not refs:
        return MaskTensors([], torch.zeros((0, 3, size, size), dtype=torch.uint8),
                           torch.zeros((0, size, size), dtype=torch.bool))
    return MaskTensors(list(refs), torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                       torch.from_numpy(np.stack(masks)))


def augment_pair(pixels: torch.Tensor, masks: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no mutate block
    """The same random flips and quarter turns on images (uint8 ``(N, 3, S, S)``) and masks,
    and a brightness / contrast jitter on the images; floats in 0..1 and bool masks."""
    n = len(pixels)
    draws = torch.rand((n, 5), generator=generator).to(pixels.device)
    x, m = pixels.float() / 255.0, masks.unsqueeze(1)
    flip_h, flip_v = (draws[:, 0] < 0.5).view(n, 1, 1, 1), (draws[:, 1] < 0.5).view(n, 1, 1, 1)
    x, m = torch.where(flip_h, x.flip(3), x), torch.where(flip_h, m.flip(3), m)
    x, m = torch.where(flip_v, x.flip(2), x), torch.where(flip_v, m.flip(2), m)
    turns = (draws[:, 2] * 4).long().clamp(max=3).tolist()
    x = torch.stack([torch.rot90(img, k, dims=(1, 2)) for img, k in zip(x, turns)])
    m = torch.stack([torch.rot90(mask, k, dims=(1, 2)) for mask, k in zip(m, turns)])
    brightness = (draws[:, 3] - 0.5).view(n, 1, 1, 1) * 0.2
    contrast = 1 + (draws[:, 4] - 0.5).view(n, 1, 1, 1) * 0.2
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    return x, m.squeeze(1)


def dice_bce_loss(logits: torch.Tensor, masks: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss (per image, then averaged) on ``(N, 1, S, S)``
    logits and bool ``(N, S, S)`` masks."""
    target = masks.unsqueeze(1).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    dice = (2 * inter + eps) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + eps)
    return bce + (1 - dice).mean()


@dataclass
class TrainedSegmenter:
    model: torch.nn.Module
    best_epoch: int
    best_valid_dice: float
    history: list[dict] = field(default_factory=list)


def predict_logits(model: torch.nn.Module, data: MaskTensors, device: torch.device,
                   batch_size: int = 16) -> torch.Tensor:
    """The U-Net's polyp logits ``(N, S, S)`` (float32, on the CPU)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x = normalise(data.pixels[start:start + batch_size].to(device), model.mean, model.std)
            out.append(model(x)[:, 0].float().cpu())
    return torch.cat(out) if out else torch.zeros((0,) + tuple(data.masks.shape[1:]))


def predict_masks(model: torch.nn.Module, data: MaskTensors, device: torch.device,
                  batch_size: int = 16) -> np.ndarray:
    """Boolean masks ``(N, S, S)``: the U-Net's logit above 0."""
    return (predict_logits(model, data, device, batch_size) > 0).numpy()


class FullSizeTruth:  # pragma: no mutate block
    """Each image's mask at its own size, decoded once and kept bit-packed."""

    def __init__(self) -> None:
        self._packed: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}

    def __call__(self, ref: ImageRef) -> np.ndarray:
        key = str(ref.mask)
        if key not in self._packed:
            mask = load_mask(ref.mask)
            self._packed[key] = (np.packbits(mask), mask.shape)
        packed, shape = self._packed[key]
        return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def full_size_scores(logits: torch.Tensor, refs: list[ImageRef],
                     truth: FullSizeTruth) -> dict[str, np.ndarray]:
    """Scores at each image's own size, as papers report them: the working-size logits
    upsampled (bilinear) to the mask's size, then thresholded at 0 and compared with the mask
    as drawn (:func:`~polyp_core.segment.metrics.mask_scores` per image)."""
    per_image = []
    for logit, ref in zip(logits, refs):
        mask = truth(ref)
        big = F.interpolate(logit[None, None].float(), size=mask.shape, mode="bilinear",
                            align_corners=False)[0, 0]
        per_image.append(mask_scores((big > 0).numpy()[None], mask[None]))
    keys = (*SCORES, "empty", "false_positive")
    if not per_image:
        return {k: np.zeros(0, dtype=bool if k in ("empty", "false_positive") else float)
                for k in keys}
    return {k: np.concatenate([s[k] for s in per_image]) for k in keys}


def encoder_features(model: torch.nn.Module, data: MaskTensors, device: torch.device,
                     batch_size: int = 32) -> list[torch.Tensor]:  # pragma: no mutate block
    """The frozen encoder's feature maps of every image (each level stacked over images, kept
    on the CPU in float16): computed once, so a decoder-only arm trains without re-running
    the encoder every epoch."""
    model.encoder.eval()
    levels: list[list[torch.Tensor]] = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x = normalise(data.pixels[start:start + batch_size].to(device), model.mean, model.std)
            for k, f in enumerate(model.encoder(x)):
                if k == len(levels):
                    levels.append([])
                levels[k].append(f.to("cpu", torch.float16))
    return [torch.cat(parts) for parts in levels]


def _decode(model: torch.nn.Module, features: list[torch.Tensor], index: torch.Tensor,
            device: torch.device) -> torch.Tensor:  # pragma: no mutate block
    """The U-Net's logits from cached encoder features of the images ``index``."""
    return model.segmentation_head(model.decoder([f[index].to(device).float() for f in features]))


def _valid_dice(model: torch.nn.Module, valid: MaskTensors, device: torch.device,
                features: list[torch.Tensor] | None = None) -> float:  # pragma: no mutate block
    if features is None:
        predicted = predict_masks(model, valid, device)
    else:
        model.eval()
        with torch.inference_mode():
            predicted = np.concatenate([
                (_decode(model, features, torch.arange(i, min(i + 32, len(valid))), device)[:, 0]
                 > 0).cpu().numpy() for i in range(0, len(valid), 32)])
    scores = mask_scores(predicted, valid.masks.numpy())
    return float(np.nanmean(scores["dice"])) if (~scores["empty"]).any() else 0.0


def train_segmenter(train: MaskTensors, valid: MaskTensors, config: TrainConfig,
                    seed: int, device: torch.device | None = None,
                    registry: WeightsRegistry | None = None, progress: Progress = no_progress,
                    cancel: CancelToken | None = None, label: str = "") -> TrainedSegmenter:  # pragma: no mutate block
    """Train a U-Net on ``train`` (flips, turns and a light jitter when ``augment``); keep the
    epoch with the best validation Dice and stop after ``patience`` epochs without one, or,
    with an empty ``valid``, train ``epochs`` epochs and keep the last. ``freeze_backbone`` is
    the fast arm: the decoder trains on encoder features computed once (no augmentation), the
    way the frozen classifier trains its head. Seeded: the same seed gives the same model on
    the CPU.

    Raises:
        ValueError: an empty training set.
        Cancelled: when ``cancel`` is set (checked every step).
    """
    if len(train) == 0:
        raise ValueError("training needs images in the training set (it has none)")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_segmenter(config.backbone, config.pretrained, registry).to(device)
    cached = valid_cached = None
    if config.freeze_backbone:
        model.encoder.requires_grad_(False)
        cached = encoder_features(model, train, device)
        valid_cached = encoder_features(model, valid, device) if len(valid) else None
    steps_per_epoch = -(-len(train) // config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer, schedule = warmup_cosine_adamw(model, config, steps_per_epoch)
    amp = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    best = (-1.0, 0, None)  # dice, epoch, state
    history, waited, step = [], 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        if config.freeze_backbone:
            model.encoder.eval()
        order = torch.randperm(len(train), generator=generator)
        running = 0.0
        for start in range(0, len(order), config.batch_size):
            if cancel is not None:
                cancel.check()
            index = order[start:start + config.batch_size]
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                if cached is not None:
                    logits, m = _decode(model, cached, index, device), train.masks[index].to(device)
                else:
                    pixels, masks = train.pixels[index].to(device), train.masks[index].to(device)
                    x, m = augment_pair(pixels, masks, generator) if config.augment else \
                        (pixels.float() / 255.0, masks)
                    logits = model(normalise(x, model.mean, model.std))
                loss = dice_bce_loss(logits.float(), m)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            step += 1
            running += loss.item()
            progress(step, total, f"{label}epoch {epoch}/{config.epochs} · step {step}/{total} · "
                                  f"loss {loss.item():.4f}")
        row = {"epoch": epoch, "train_loss": running / steps_per_epoch}
        if len(valid) == 0:
            history.append(row)
            best = (float("nan"), epoch, None)
            continue
        dice = _valid_dice(model, valid, device, valid_cached)
        history.append(row | {"valid_dice": dice})
        if dice > best[0]:
            best, waited = (dice, epoch, {k: v.detach().to("cpu", copy=True)
                                          for k, v in model.state_dict().items()}), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return TrainedSegmenter(model, best[1], best[0], history)
