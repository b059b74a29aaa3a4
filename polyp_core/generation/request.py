"""A sampling request and the schedulers it may name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyp_core.progress import CancelToken, Cancelled  # noqa: F401  (re-exported)
from polyp_core.validation import checked, rule

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++", "euler", "euler_a")


def make_scheduler(name: str, config: dict) -> SchedulerMixin:
    """A fresh diffusers scheduler ``name`` built on a training noise schedule ``config``.

    Raises:
        ValueError: naming the schedulers there are.
    """
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                           EulerAncestralDiscreteScheduler, EulerDiscreteScheduler)

    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    raise ValueError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")


@checked
@dataclass(frozen=True)
class LoraChoice:
    """A LoRA adapter (safetensors file or model folder) and its weight at sampling time."""

    path: str = rule(text=True)
    scale: float = rule(1.0, lo=-4.0, hi=4.0)


@checked
@dataclass(frozen=True)
class SampleRequest:
    """What to sample. Image ``i`` of a request uses seed ``seed + i``.

    Attributes:
        class_label: a class of the generator (``AD``); or None with ``prompt``.
        prompt, negative_prompt: free text (Stable Diffusion backends).
        n: number of images.
        seed: seed of the first image.
        steps, guidance, scheduler: the sampler.
        size: output size in pixels (square); ``None``: the model's own.
        loras: adapters and scales (``sd_lora``).
        batch_size: images per forward pass.
    """

    class_label: str | None = None
    prompt: str | None = rule(None, text=True)
    negative_prompt: str | None = rule(None, text=True)
    n: int = rule(1, lo=1, hi=10_000)
    seed: int = 0
    steps: int = rule(50, lo=1, hi=1000)
    guidance: float = rule(1.0, lo=0.0, hi=50.0)
    scheduler: str = rule("ddim", choices=SCHEDULERS)
    size: int | None = rule(None, lo=8, hi=4096)
    loras: tuple[LoraChoice, ...] = ()
    batch_size: int = rule(16, lo=1, hi=1024)

    def validate(self) -> None:
        if (self.class_label is None) == (self.prompt is None):
            raise ValueError("a request names a class or a prompt, not both and not neither")
        if self.size is not None and self.size % 8:
            raise ValueError(f"size must be a multiple of 8 of at least 8; got {self.size}")


@dataclass(frozen=True)
class GeneratedImage:
    """One sampled image and what is needed to make it again."""

    rgb: object  # numpy uint8 (H, W, 3)
    seed: int
    class_label: str | None
    prompt: str | None
    batch_seeds: tuple[int, ...]  # the batch it was computed in (exact regeneration)
    batch_classes: tuple[str | None, ...] = ()
    mask: object = None  # numpy bool (H, W): the polyp mask an image-and-mask model made
