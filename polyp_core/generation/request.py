"""A sampling request and the schedulers it may name."""

from __future__ import annotations

from dataclasses import dataclass, field

from polyp_core.progress import CancelToken, Cancelled  # noqa: F401  (re-exported)

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++", "euler", "euler_a")


def make_scheduler(name: str, config: dict):
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


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA adapter (safetensors file or model folder) and its weight at sampling time."""

    path: str
    scale: float = 1.0


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
    prompt: str | None = None
    negative_prompt: str | None = None
    n: int = 1
    seed: int = 0
    steps: int = 50
    guidance: float = 1.0
    scheduler: str = "ddim"
    size: int | None = None
    loras: tuple[LoraChoice, ...] = ()
    batch_size: int = 16

    def validate(self) -> None:
        if (self.class_label is None) == (self.prompt is None):
            raise ValueError("a request names a class or a prompt, not both and not neither")
        if self.n < 1:
            raise ValueError(f"n must be at least 1; got {self.n}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000; got {self.steps}")
        if self.guidance < 0:
            raise ValueError(f"guidance must not be negative; got {self.guidance}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose one of: "
                             f"{', '.join(SCHEDULERS)}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.size is not None and (self.size < 8 or self.size % 8):
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
