"""The DDPM backend's model side: what a model is (its config, presets and task channels, the
training request), how its U-Net and noise schedule are built, and where its folder and
checkpoints are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from polyp_core import __version__
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace, check_name

if TYPE_CHECKING:

    from diffusers import UNet2DModel


UNKNOWN = "unknown"


MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


NULL = "<null>"


#: what a model learns: whole images; images with their polyp mask as a fourth channel in and
#: out; or filling a hole in a frame (hole, polyp mask and the blanked frame as extra inputs)
TASKS = ("image", "image_mask", "inpaint")


#: an image-and-mask model's mask channel is polyp where it is above this (channel range -1..1)
MASK_THRESHOLD = 0.0


def task_channels(task: str) -> tuple[int, int]:
    """(channels denoised, extra condition channels) of a task's network."""
    return {"image": (3, 0), "image_mask": (4, 0), "inpaint": (3, 5)}[task]


@dataclass(frozen=True)
class DDPMConfig:
    """The network and its noise schedule."""

    size: int = 64
    block_out_channels: tuple[int, ...] = (64, 128, 256, 256)
    attention: tuple[bool, ...] = (False, False, True, False)  # per resolution level
    layers_per_block: int = 2
    norm_num_groups: int = 32
    num_train_timesteps: int = 1000
    # linear (DDPM's 1e-4..0.02), the schedule every diffusers sampler is tuned on. The
    # divergence first blamed on squaredcos_cap_v2 came from unclipped clean-image estimates
    # (see clipped_eps); both schedules behaved alike without that fix.
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"

    def __post_init__(self) -> None:
        if len(self.attention) != len(self.block_out_channels):
            raise ValueError("attention needs one flag per level of block_out_channels")
        if self.size % (2 ** (len(self.block_out_channels) - 1)):
            raise ValueError(f"size {self.size} is not divisible by 2^{len(self.block_out_channels) - 1}")


PRESETS: dict[str, DDPMConfig] = {
    # a few minutes of CPU training shows class colours; for tests and the demo
    "tiny": DDPMConfig(size=32, block_out_channels=(32, 64, 64), attention=(False, True, False),
                       layers_per_block=1, norm_num_groups=8),
    "demo64": DDPMConfig(size=64, block_out_channels=(32, 64, 128, 128),
                         attention=(False, False, True, False), layers_per_block=1,
                         norm_num_groups=16),
    "64": DDPMConfig(size=64),
    "128": DDPMConfig(size=128, block_out_channels=(64, 128, 128, 256, 256),
                      attention=(False, False, False, True, False)),
    "224": DDPMConfig(size=224, block_out_channels=(64, 128, 128, 256, 256, 512),
                      attention=(False, False, False, False, True, False)),
}


def get_preset(name: str | int) -> DDPMConfig:
    try:
        return PRESETS[str(name)]
    except KeyError:
        raise ValueError(f"unknown DDPM preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


@checked
@dataclass(frozen=True)
class DDPMTrainConfig:
    """One training job; saved in the model folder beside every checkpoint.

    Attributes:
        dataset: data set to learn from; only ``splits`` (default: train) are used.
        model_id: folder name under ``workspace/models``.
        preset: network preset (``tiny``, ``demo64``, ``64``, ``128``, ``224``).
        scheme: label scheme (default: the data set's active one).
        mode: ``conditional`` (one model, classifier-free guidance) or ``per_class``.
        unknown_class: train every image as ``unknown`` (pretraining on unlabelled frames).
        init_from: ``<model id>[@<checkpoint>]`` to fine-tune from (two-step training).
        freeze_down_blocks: when fine-tuning, keep the UNet's down blocks fixed.
        steps, batch_size, grad_accum, lr, warmup, ema_decay: the optimisation.
        mixed_precision: ``auto`` (bf16/fp16 on a GPU, none on the CPU), ``no``, ``fp16``, ``bf16``.
        checkpoint_every: steps between checkpoints (each with a sample grid per class).
        class_dropout: probability of the null class (classifier-free guidance).
        class_balance: draw every class equally often (a weighted sampler), so that a
            minority class (~120 SSA against ~540 AD) is learnt as well as the majority.
        task: ``image``; ``image_mask`` (the polyp mask as a fourth channel, in and out);
            ``inpaint`` (fill a hole: the polyp mask dilated by 0..``max_dilate`` px, or with
            probability ``full_frame`` the whole frame, given the rest of the frame).
        window: for ``image_mask`` and ``inpaint``: ``lesion`` learns from windows cut at the
            frame's resolution (each frame's polyp window, a jittered one and a random one, as
            ``inpaint``'s default window places them: ``generation.window.training_windows``),
            so at 64 px a polyp spans most of the sample; ``frame`` from whole frames shrunk
            to the model's size (models trained before windows).
    """

    dataset: str
    model_id: str
    preset: str = rule("64", choices=tuple(PRESETS))
    scheme: str | None = None
    mode: str = rule("conditional", choices=("conditional", "per_class"))
    splits: tuple[str, ...] = ("train",)
    unknown_class: bool = False
    init_from: str | None = None
    freeze_down_blocks: bool = False
    steps: int = rule(10_000, lo=1, hi=10_000_000)
    batch_size: int = rule(32, lo=1, hi=4096)
    grad_accum: int = rule(1, lo=1, hi=1024)
    lr: float = rule(2e-4, above=0.0, hi=1.0)
    warmup: int = rule(200, lo=0, hi=10_000_000)
    ema_decay: float = rule(0.999, lo=0.0, below=1.0)
    mixed_precision: str = rule("auto", choices=MIXED_PRECISION)
    checkpoint_every: int = rule(1000, lo=1, hi=10_000_000)
    class_dropout: float = rule(0.1, lo=0.0, below=1.0)
    class_balance: bool = False
    grid_per_class: int = rule(4, lo=1, hi=64)
    grid_steps: int = rule(25, lo=1, hi=1000)
    seed: int = 0
    resume: bool = True
    task: str = rule("image", choices=TASKS)
    max_dilate: int = rule(6, lo=0, hi=256)
    full_frame: float = rule(0.1, lo=0.0, hi=1.0)
    window: str = rule("lesion", choices=("lesion", "frame"))

    def validate(self) -> None:
        check_name(self.model_id, "model")
        if self.mode == "per_class" and (self.unknown_class or self.init_from):
            raise ValueError("per_class mode trains separate models from scratch")
        if self.task != "image" and self.mode == "per_class":
            raise ValueError(f"task {self.task} trains one conditional model (mode conditional)")
        if self.class_balance and (self.mode == "per_class" or self.unknown_class):
            raise ValueError("class_balance needs a conditional model with labelled classes")


def build_unet(config: DDPMConfig, num_class_embeds: int | None, task: str = "image") -> UNet2DModel:
    from diffusers import UNet2DModel

    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention))
    channels, condition = task_channels(task)
    return UNet2DModel(sample_size=config.size, in_channels=channels + condition,
                       out_channels=channels,
                       block_out_channels=config.block_out_channels,
                       layers_per_block=config.layers_per_block, down_block_types=down,
                       up_block_types=up, norm_num_groups=config.norm_num_groups,
                       num_class_embeds=num_class_embeds, attention_head_dim=8)


def noise_schedule(config: DDPMConfig) -> dict:
    return {"num_train_timesteps": config.num_train_timesteps,
            "beta_schedule": config.beta_schedule, "prediction_type": config.prediction_type,
            "clip_sample": True}


def versions() -> dict:
    import diffusers

    return {"polyp_studio": __version__, "torch": torch.__version__,
            "diffusers": diffusers.__version__}


def mixed_precision(setting: str) -> str:
    """``auto``: bf16 on a GPU that has it, else fp16 on a GPU, ``no`` on the CPU."""
    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def model_dir(workspace: Workspace, model_id: str) -> Path:
    return workspace.models_dir / check_name(model_id, "model")


def list_checkpoints(folder: Path) -> list[str]:
    root = folder / "checkpoints"
    return sorted(p.name for p in root.glob("step-*") if (p / "unet_ema.safetensors").is_file())


def pick_checkpoint(folder: Path, available: Sequence[str], checkpoint: str | None) -> str:
    """``checkpoint`` if it is available, the last one when ``None``; else a clear error."""
    if not available:
        raise ValueError(f"model at {folder} has no complete checkpoint yet")
    checkpoint = checkpoint or available[-1]
    if checkpoint not in available:
        raise ValueError(f"no checkpoint {checkpoint!r} in {folder}; there are: {', '.join(available)}")
    return checkpoint


def sampling_classes(meta: dict) -> list[str]:
    """The classes a DDPM model folder's ``config.json`` can be asked for."""
    return [c for c in meta["classes"] if c not in (UNKNOWN, NULL)]


def model_checkpoints(folder: Path, meta: dict) -> list[str]:
    """Checkpoints of a DDPM model folder (per-class models: those of its first class)."""
    if meta.get("mode") == "per_class":
        folder = folder / next(iter(meta["sub_models"].values()))
    return list_checkpoints(folder)
