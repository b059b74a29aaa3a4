"""How a network of an experiment trains: the settings every task shares, the optimiser and
its schedule, and mixed precision. The classifier (``classify.train``) and the segmenter
(``segment.train``) both train by these."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from polyp_core.validation import checked, rule

IMBALANCE = ("none", "sampler", "loss")


@checked
@dataclass(frozen=True)
class TrainConfig:
    """How one network of an experiment is trained (the same in every arm): a classifier, or
    (the same fields) a segmentation U-Net or the segmentation gate.

    Attributes:
        backbone: registry name (``efficientnet_lite0`` offline, ``efficientnet_b0``).
        image_size: input size (128 or 224).
        imbalance: ``none``, ``sampler`` (weighted sampling) or ``loss`` (weighted loss).
        epochs, batch_size, lr, weight_decay, warmup_epochs: the optimisation.
        patience: epochs without a better validation macro-F1 before stopping.
        hidden, dropout: the head.
        augment: flips, turns, zoomed crops and colour jitter on training images.
        freeze_backbone: train the head only on features embedded once (with ``augment``: the
            original and ``AUGMENTED_VIEWS`` augmented views per image, embedded once).
        mixed_precision: ``auto`` (bf16/fp16 on a GPU, none on the CPU), ``no``, ``fp16``, ``bf16``.
        pretrained: ImageNet weights (False only for tests of the loop itself).
    """

    backbone: str = "efficientnet_lite0"
    image_size: int = rule(224, lo=32, hi=1024)
    imbalance: str = rule("sampler", choices=IMBALANCE)
    epochs: int = rule(15, lo=1, hi=10_000)
    batch_size: int = rule(32, lo=1, hi=4096)
    lr: float = rule(3e-4, above=0.0, hi=1.0)
    weight_decay: float = rule(1e-4, lo=0.0, hi=1.0)
    warmup_epochs: float = rule(1.0, lo=0.0, hi=10_000.0)
    patience: int = rule(5, lo=1, hi=10_000)
    hidden: int = rule(256, lo=0, hi=65_536)
    dropout: float = rule(0.3, lo=0.0, below=1.0)
    augment: bool = True
    freeze_backbone: bool = False
    mixed_precision: str = rule("auto", choices=("auto", "no", "fp16", "bf16"))
    pretrained: bool = True

    def validate(self) -> None:
        """Every field is checked when the config is made (``polyp_core.validation``)."""


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.mixed_precision == "no":
        return None
    if config.mixed_precision == "fp16":
        return torch.float16
    if config.mixed_precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def warmup_cosine_adamw(model: torch.nn.Module, config: TrainConfig,
               steps_per_epoch: int) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW over the trainable parameters, with linear warm-up then cosine decay per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return optimizer, LambdaLR(optimizer, lr_factor)
