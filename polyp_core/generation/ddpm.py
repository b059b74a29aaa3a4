"""Backend ``ddpm``: a class-conditional DDPM trained from scratch (diffusers ``UNet2DModel``).

One model for all classes, with classifier-free guidance learnt by dropping the class to a
null token during training; or, as the thesis did, one unconditional model per class. The
class table is ``[scheme classes..., "unknown", <null>]``: pretraining on unlabelled frames
uses ``unknown``, fine-tuning on the pathology set starts from that checkpoint.

A model folder (``workspace/models/<id>/``) holds ``config.json`` (model, training config,
classes, the split it learnt from, package versions), ``loss.csv`` and
``checkpoints/step-NNNNNN/`` with EMA and raw weights (safetensors), optimizer state and a
sample grid per class.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from polyp_core import __version__
from polyp_core.data.cache import PixelCache
from polyp_core.data.labels import get_scheme
from polyp_core.generation.request import (CancelToken, GeneratedImage,
                                           SampleRequest, make_scheduler)
from polyp_core.files import csv_row
from polyp_core.generation.masks import dilate_batch, inpaint_condition
from polyp_core.progress import Progress, no_progress
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace, check_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from diffusers import SchedulerMixin, UNet2DModel
    from diffusers.training_utils import EMAModel
    from torch.optim.lr_scheduler import LambdaLR

    from polyp_core.data.labels import LabelScheme

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


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def clipped_eps(scheduler: SchedulerMixin, x: torch.Tensor, eps: torch.Tensor,
                t: torch.Tensor | int, index: int) -> torch.Tensor:
    """The noise prediction made consistent with a clean image kept in [-1, 1].

    A pixel-space model's clean-image estimate ``x0`` is clipped to the pixel range and the
    noise recomputed from it, for every scheduler alike (diffusers' ``clip_sample`` does this
    for DDPM only; DDIM clips ``x0`` but steps with the raw noise, and DPM-Solver++ and Euler do
    not clip). Without it a young model's errors at high noise, amplified by 1/sqrt(alpha-bar),
    left DDIM noisy and made DPM-Solver++ and Euler diverge for some seeds.
    """
    if hasattr(scheduler, "sigmas") and type(scheduler).__name__.startswith("Euler"):
        sigma = scheduler.sigmas[index].to(x.device, x.dtype)  # x = x0 + sigma * eps
        x0 = (x - sigma * eps).clamp(-1, 1)
        return (x - x0) / sigma
    alpha_bar = scheduler.alphas_cumprod[int(t)].to(x.device, x.dtype)
    x0 = ((x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()).clamp(-1, 1)
    return (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def guided_eps(unet: UNet2DModel, model_in: torch.Tensor, t: torch.Tensor | int,
               labels: torch.Tensor | None, guided: bool, guidance: float,
               condition: torch.Tensor | None = None) -> torch.Tensor:
    """The noise prediction, with classifier-free guidance when ``guided`` (``labels`` then
    holds the class ids followed by as many null ids); ``condition`` channels are appended to
    the input (inpainting), the same for the guided and the unguided half."""
    if condition is not None:
        model_in = torch.cat([model_in, condition.to(model_in.dtype)], dim=1)
    if not guided:
        return unet(model_in, t, class_labels=labels).sample
    cond, uncond = unet(torch.cat([model_in, model_in]), t, class_labels=labels).sample.chunk(2)
    return uncond + guidance * (cond - uncond)


def guidance_labels(class_ids: Sequence[int] | None, null_id: int | None, guidance: float,
                    device: torch.device) -> tuple[torch.Tensor | None, bool]:
    """The class labels a guided or unguided batch is run with, and whether it is guided."""
    labels = torch.tensor(class_ids, device=device) if class_ids is not None else None
    guided = labels is not None and null_id is not None and guidance != 1.0
    if guided:
        labels = torch.cat([labels, torch.full_like(labels, null_id)])
    return labels, guided


@torch.inference_mode()
def denoise_batch(unet: UNet2DModel, schedule: dict, scheduler_name: str, steps: int,
                  class_ids: Sequence[int] | None,
                  null_id: int | None, seeds: Sequence[int], guidance: float, size: int,
                  device: torch.device, dtype: torch.dtype = torch.float32,
                  cancel: CancelToken | None = None, channels: int = 3,
                  condition: torch.Tensor | None = None) -> torch.Tensor:
    """Denoise one batch into ``(N, channels, size, size)`` in -1..1. Image ``i`` starts from
    noise drawn with its own seed, so it can be made again; the scheduler's own noise is drawn
    per image too."""
    from diffusers.utils.torch_utils import randn_tensor

    scheduler = make_scheduler(scheduler_name, schedule)
    scheduler.set_timesteps(steps)
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    x = randn_tensor((len(seeds), channels, size, size), generator=generators, device=device,
                     dtype=dtype)
    x = x * scheduler.init_noise_sigma
    labels, guided = guidance_labels(class_ids, null_id, guidance, device)
    if condition is not None:  # inpainting: the frame around the hole, as training showed it
        hole = (condition[:, :1] + 1) / 2
        known = condition[:, 2:2 + channels]
        held = randn_tensor(tuple(x.shape), generator=generators, device=device, dtype=dtype)
    for index, t in enumerate(scheduler.timesteps):
        if cancel is not None:
            cancel.check()
        if condition is not None:
            # outside the hole the model's output was never trained: hold it to the background
            # noised to this step's level, or it drifts and leaks into the hole (DDIM)
            level = scheduler.add_noise(known, held, t.reshape(1).expand(len(x)))
            x = hole * x + (1 - hole) * level
        model_in = scheduler.scale_model_input(x, t)
        eps = guided_eps(unet, model_in, t, labels, guided, guidance, condition)
        if schedule.get("clip_sample"):
            eps = clipped_eps(scheduler, x, eps, t, index)
        x = scheduler.step(eps, t, x, generator=generators).prev_sample
    return x.float().clamp(-1, 1)


def sample_batch(unet: UNet2DModel, schedule: dict, scheduler_name: str, steps: int,
                 class_ids: Sequence[int] | None,
                 null_id: int | None, seeds: Sequence[int], guidance: float, size: int,
                 device: torch.device, dtype: torch.dtype = torch.float32,
                 cancel: CancelToken | None = None) -> np.ndarray:
    """:func:`denoise_batch` of RGB images, as uint8 ``(N, size, size, 3)``."""
    return _to_uint8(denoise_batch(unet, schedule, scheduler_name, steps, class_ids, null_id,
                                   seeds, guidance, size, device, dtype, cancel))


def split_image_mask(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """An image-and-mask model's output -> (RGB uint8 ``(N, H, W, 3)``, bool masks ``(N, H, W)``),
    the mask channel thresholded at :data:`MASK_THRESHOLD`."""
    return _to_uint8(x[:, :3]), (x[:, 3] > MASK_THRESHOLD).cpu().numpy()


def grid(images: np.ndarray, columns: int) -> np.ndarray:
    rows = math.ceil(len(images) / columns)
    h, w = images.shape[1:3]
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return out


# ---------------------------------------------------------------------------------------------
# the model folder

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


def _resolve_init(workspace: Workspace, spec: str) -> tuple[Path, str]:
    model_id, _, checkpoint = spec.partition("@")
    folder = model_dir(workspace, model_id)
    return folder, pick_checkpoint(folder, list_checkpoints(folder), checkpoint or None)


@dataclass(frozen=True)
class TrainResult:
    model_id: str
    folder: Path
    steps_done: int
    checkpoints: tuple[str, ...]
    status: str  # done | cancelled
    final_loss: float
    seconds: float
    sub_models: tuple[str, ...] = field(default_factory=tuple)


def train_ddpm(workspace: Workspace, config: DDPMTrainConfig, progress: Progress = no_progress,
               cancel: CancelToken | None = None) -> TrainResult:
    """Train (or resume training) a DDPM on a data set's training split.

    Under ``accelerate launch`` the batch is split across processes (data parallel);
    only the main process writes checkpoints.

    Raises:
        ValueError: a bad config, an unknown data set, a class without images.
    """
    config.validate()
    if config.mode == "per_class":
        return _train_per_class(workspace, config, progress, cancel)
    return _train_one(workspace, config, model_dir(workspace, config.model_id), None, progress,
                      cancel)


def training_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                    balance: bool = False, masks: torch.Tensor | None = None
                    ) -> torch.utils.data.DataLoader:
    """Batches of (image, label[, mask]); with ``balance`` every class is drawn equally often."""
    dataset = torch.utils.data.TensorDataset(images, labels, *([] if masks is None else [masks]))
    order = torch.Generator().manual_seed(seed)
    drop_last = len(dataset) >= batch_size
    if not balance:
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                           drop_last=drop_last, generator=order)
    per_class = torch.bincount(labels).double()
    sampler = torch.utils.data.WeightedRandomSampler(1.0 / per_class[labels], num_samples=len(labels),
                                                     replacement=True, generator=order)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                       drop_last=drop_last)


def _train_per_class(workspace: Workspace, config: DDPMTrainConfig, progress: Progress,
                     cancel: CancelToken | None) -> TrainResult:
    manifest = workspace.load_manifest(config.dataset)
    classes = get_scheme(config.scheme or manifest.scheme).classes
    folder = model_dir(workspace, config.model_id)
    results = []
    for cls in classes:
        results.append(_train_one(workspace, config, folder / f"class-{cls}", cls, progress, cancel))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "backend": "ddpm", "mode": "per_class", "classes": list(classes),
        "sub_models": {c: f"class-{c}" for c in classes}, "train": asdict(config),
        "versions": versions()}, indent=1))
    return TrainResult(config.model_id, folder, sum(r.steps_done for r in results), (),
                       "cancelled" if any(r.status == "cancelled" for r in results) else "done",
                       results[-1].final_loss, sum(r.seconds for r in results),
                       tuple(f"class-{c}" for c in classes))


@dataclass
class _TrainingSet:
    """What one DDPM learns from: the frames, their class ids, and the class table."""

    items: list
    classes: list[str]
    conditional: bool
    images: torch.Tensor  # (N, H, W, 3) uint8
    labels: torch.Tensor  # (N,) class ids
    masks: torch.Tensor | None = None  # (N, H, W) bool polyp masks (mask-aware tasks)


def _training_set(workspace: Workspace, config: DDPMTrainConfig, scheme: LabelScheme,
                  only_class: str | None, size: int) -> _TrainingSet:
    """The training frames (pixels at the model's size) of ``config``'s splits, of one class
    or of all, with the class table (``[scheme classes..., unknown, <null>]`` when conditional).

    Raises:
        ValueError: no image in the splits, or a class without images.
    """
    manifest = workspace.load_manifest(config.dataset)
    items = [i for i in manifest.items if i.split in config.splits
             and (only_class is None or scheme.map(i.label) == only_class)]
    if not items:
        raise ValueError(f"data set {config.dataset!r} has no images in splits {config.splits}"
                         + (f" of class {only_class}" if only_class else ""))
    conditional = only_class is None
    classes = list(scheme.classes) + [UNKNOWN, NULL] if conditional else [only_class]
    if conditional and not config.unknown_class:
        counts = {c: sum(scheme.map(i.label) == c for i in items) for c in scheme.classes}
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise ValueError(f"no training images of class {', '.join(empty)} in {config.dataset}")
    masks = _training_masks(items, config, size) if config.task != "image" else None
    pixels = PixelCache(workspace.pixel_cache_dir)
    images = torch.from_numpy(np.stack([pixels.rgb(i.image, i.sha256, size) for i in items]))
    if conditional:
        label_ids = [classes.index(UNKNOWN) if config.unknown_class
                     else classes.index(scheme.map(i.label)) for i in items]
    else:
        label_ids = [0] * len(items)
    return _TrainingSet(items, classes, conditional, images, torch.tensor(label_ids), masks)


def _training_masks(items: list, config: DDPMTrainConfig, size: int) -> torch.Tensor:
    """Every training frame's polyp mask at the model's size (a mask-aware task needs one per
    frame: a frame without one would teach "no polyp here").

    Raises:
        ValueError: frames without a mask (naming the first few), or a mask that cannot be read.
    """
    from polyp_core.data.images import load_mask, resize_mask

    missing = [i.id for i in items if not i.mask]
    if missing:
        raise ValueError(f"task {config.task} needs a mask for every training frame; "
                         f"{len(missing)} of {len(items)} in {config.dataset} have none "
                         f"(e.g. {', '.join(missing[:3])})")
    masks = []
    for item in items:
        try:
            masks.append(resize_mask(load_mask(item.mask), size))
        except Exception as exc:  # a clear message naming the file; the cause is kept
            raise ValueError(f"{item.mask}: the mask of {item.id} cannot be read ({exc})") from exc
    return torch.from_numpy(np.stack(masks))


def _inpaint_holes(polyp: torch.Tensor, aug: torch.Generator, max_dilate: int,
                   full_frame: float) -> torch.Tensor:
    """Training holes: the batch's polyp masks dilated by one random 0..``max_dilate`` px, and
    with probability ``full_frame`` per image the whole frame (so the model also makes frames)."""
    radius = int(torch.randint(0, max_dilate + 1, (1,), generator=aug))
    hole = dilate_batch(polyp, radius)
    whole = (torch.rand(len(polyp), generator=aug) < full_frame).view(-1, 1, 1, 1).to(polyp.device)
    return torch.where(whole, torch.ones_like(hole), hole)


def _denoising_loss(unet: UNet2DModel, noise: SchedulerMixin, batch: torch.Tensor,
                    batch_labels: torch.Tensor, aug: torch.Generator, null_id: int | None,
                    class_dropout: float, timesteps: int, masks: torch.Tensor | None = None,
                    task: str = "image", max_dilate: int = 0,
                    full_frame: float = 0.0) -> torch.Tensor:
    """One batch's noise-prediction loss: random flips (of image and mask together), a random
    timestep per image, and the class dropped to the null token with probability
    ``class_dropout`` (classifier-free guidance) when ``null_id`` is given. ``image_mask``
    denoises the mask as a fourth channel; ``inpaint`` is scored inside the hole only."""
    x = batch.permute(0, 3, 1, 2).float().div(127.5).sub(1)
    if masks is not None:
        x = torch.cat([x, masks.unsqueeze(1).to(x.device, x.dtype) * 2 - 1], dim=1)
    flip_h = torch.rand(len(x), generator=aug) < 0.5
    flip_v = torch.rand(len(x), generator=aug) < 0.5
    x = torch.where(flip_h.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    x = torch.where(flip_v.view(-1, 1, 1, 1).to(x.device), x.flip(2), x)
    condition = hole = None
    if task == "inpaint":
        polyp = (x[:, 3:] + 1) / 2
        x = x[:, :3]
        hole = _inpaint_holes(polyp, aug, max_dilate, full_frame)
        condition = inpaint_condition(x, hole, polyp)
    eps = torch.randn_like(x)
    t = torch.randint(0, timesteps, (len(x),), device=x.device)
    noisy = noise.add_noise(x, eps, t)
    class_labels = None
    if null_id is not None:
        drop = torch.rand(len(x), device=x.device) < class_dropout
        class_labels = torch.where(drop, torch.full_like(batch_labels, null_id), batch_labels)
    model_in = noisy if condition is None else torch.cat([noisy, condition], dim=1)
    pred = unet(model_in, t, class_labels=class_labels).sample
    if hole is None:
        return torch.nn.functional.mse_loss(pred.float(), eps.float())
    error = (pred.float() - eps.float()).pow(2) * hole
    return error.sum() / (hole.sum() * x.shape[1]).clamp_min(1.0)


def _model_record(config: DDPMTrainConfig, model_cfg: DDPMConfig, data: _TrainingSet,
                  scheme: LabelScheme, processes: int, mixed: str,
                  init_note: str | None) -> dict:
    """The model folder's ``config.json``: architecture, classes, noise schedule, training
    request and what it learned from (every training image's SHA-256)."""
    return {"backend": "ddpm", "mode": "conditional" if data.conditional else "single_class",
            "task": config.task,
            "mask_threshold": MASK_THRESHOLD if config.task == "image_mask" else None,
            "model": asdict(model_cfg), "classes": data.classes,
            "null_class": NULL if data.conditional else None,
            "noise_schedule": noise_schedule(model_cfg), "train": asdict(config),
            "trained_on": {"dataset": config.dataset, "splits": list(config.splits),
                           "n_images": len(data.items), "scheme": scheme.name,
                           "image_sha256": sorted(i.sha256 for i in data.items)},
            "processes": processes, "mixed_precision": mixed, "init_from": init_note,
            "versions": versions()}


def _save_checkpoint(ckpt: Path, step: int, last_loss: float, raw: UNet2DModel, ema: EMAModel,
                     optimizer: torch.optim.Optimizer, lr_schedule: LambdaLR,
                     config: DDPMTrainConfig, model_cfg: DDPMConfig, scheme: LabelScheme,
                     only_class: str | None, null_id: int | None, device: torch.device,
                     data: _TrainingSet | None = None) -> None:
    """A checkpoint folder: the raw and the EMA weights, a sample grid of the EMA model, the
    optimiser, schedule, EMA and RNG state for resuming, and ``state.json``; the EMA weights
    are renamed into place last, which marks the checkpoint complete."""
    from safetensors.torch import save_file

    conditional = null_id is not None
    ckpt.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items()},
              str(ckpt / "unet.safetensors"))
    ema.store(raw.parameters())
    ema.copy_to(raw.parameters())
    save_file({k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items()},
              str(ckpt / ".unet_ema.tmp"))
    raw.eval()
    per = config.grid_per_class
    grid_classes = list(range(len(scheme.classes))) if conditional else [0]
    ids = [c for c in grid_classes for _ in range(per)]
    shots = _grid_shots(raw, config, model_cfg, ids if conditional else None, null_id,
                        2.0 if conditional else 1.0, device, data)
    raw.train()
    ema.restore(raw.parameters())
    Image.fromarray(grid(shots, per)).save(ckpt / "grid.png")
    torch.save({"optimizer": optimizer.state_dict(), "lr_schedule": lr_schedule.state_dict(),
                "ema": ema.state_dict(), "step": step, "torch_rng": torch.get_rng_state()},
               ckpt / "training_state.pt")
    (ckpt / "state.json").write_text(json.dumps({
        "step": step, "loss": last_loss, "grid_rows": [scheme.classes[c] for c in grid_classes]
        if conditional else [only_class], "versions": versions()}, indent=1))
    os.replace(ckpt / ".unet_ema.tmp", ckpt / "unet_ema.safetensors")  # marks it complete


def _grid_shots(unet: UNet2DModel, config: DDPMTrainConfig, model_cfg: DDPMConfig,
                ids: list[int] | None, null_id: int | None, guidance: float,
                device: torch.device, data: _TrainingSet | None) -> np.ndarray:
    """A checkpoint's sample grid: images; images with their mask outlined; or, for an
    inpainting model, polyps filled into the first training frames' dilated masks."""
    from polyp_core.data.browse import overlay_mask

    n = len(ids) if ids is not None else config.grid_per_class
    seeds, schedule = list(range(n)), noise_schedule(model_cfg)
    if config.task == "image":
        return sample_batch(unet, schedule, "ddim", config.grid_steps, ids, null_id, seeds,
                            guidance, model_cfg.size, device)
    if config.task == "image_mask":
        x = denoise_batch(unet, schedule, "ddim", config.grid_steps, ids, null_id, seeds,
                          guidance, model_cfg.size, device, channels=4)
        rgb, masks = split_image_mask(x)
    else:
        pick = [i % len(data.images) for i in range(n)]
        background = data.images[pick].permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
        polyp = data.masks[pick].unsqueeze(1).float().to(device)
        hole = dilate_batch(polyp, config.max_dilate)
        x = denoise_batch(unet, schedule, "ddim", config.grid_steps, ids, null_id, seeds,
                          guidance, model_cfg.size, device,
                          condition=inpaint_condition(background, hole, polyp))
        x = torch.where(hole.bool(), x, background)
        rgb, masks = _to_uint8(x), data.masks[pick].numpy()
    return np.stack([overlay_mask(image, mask) for image, mask in zip(rgb, masks)])


def _resume(folder: Path, config: DDPMTrainConfig, unet: UNet2DModel,
            optimizer: torch.optim.Optimizer, lr_schedule: LambdaLR) -> tuple[int, EMAModel]:
    """The step to start from and the EMA of the weights: with ``resume``, the newest
    checkpoint's weights, optimiser, schedule, RNG and EMA state are loaded first."""
    from diffusers.training_utils import EMAModel
    from safetensors.torch import load_file

    step, state, done = 0, None, list_checkpoints(folder)
    if config.resume and done:
        last = folder / "checkpoints" / done[-1]
        unet.load_state_dict(load_file(str(last / "unet.safetensors")))
        state = torch.load(last / "training_state.pt", map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
    # foreach: one multi-tensor update, the same bits as the per-parameter loop (331 tensors
    # of the 64 px UNet: 22 against 27 ms a step on 2 CPU cores)
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True,
                   model_cls=type(unet), model_config=unet.config, foreach=True)
    if state is not None:
        ema.load_state_dict(state["ema"])
    return step, ema


class _LossLog:
    """``loss.csv``: the mean loss over every 10 steps (and the last step), written by the main
    process only; ``last`` is the newest mean written (NaN until the first)."""

    def __init__(self, path: Path, write: bool, fresh: bool) -> None:
        self.handle = open(path, "a", newline="") if write else None
        self.writer = csv.writer(self.handle) if self.handle else None
        if self.writer and fresh:
            self.writer.writerow(csv_row(["step", "loss", "lr"]))
        self.running: list[float] = []
        self.last = math.nan

    def add(self, step: int, loss: float, lr: float, final: bool) -> None:
        self.running.append(loss)
        if self.writer and (step % 10 == 0 or final):
            self.last = float(np.mean(self.running))
            self.writer.writerow(csv_row([step, f"{self.last:.6f}", f"{lr:.3e}"]))
            self.handle.flush()
            self.running = []

    @property
    def shown(self) -> float:
        """What the progress line shows: the mean since the last row, else that row's."""
        return float(np.mean(self.running or [self.last]))

    def close(self) -> None:
        if self.handle:
            self.handle.close()


def mixed_precision(setting: str) -> str:
    """``auto``: bf16 on a GPU that has it, else fp16 on a GPU, ``no`` on the CPU."""
    if setting != "auto":
        return setting
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _train_one(workspace: Workspace, config: DDPMTrainConfig, folder: Path, only_class: str | None,
               progress: Progress, cancel: CancelToken | None) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from safetensors.torch import load_file

    start_time = time.perf_counter()
    model_cfg = get_preset(config.preset)
    scheme = get_scheme(config.scheme or workspace.load_manifest(config.dataset).scheme)
    data = _training_set(workspace, config, scheme, only_class, model_cfg.size)
    conditional, classes = data.conditional, data.classes
    mixed = mixed_precision(config.mixed_precision)
    # cpu=True without CUDA: otherwise accelerate treats each of several CPU processes
    # (accelerate launch --multi_gpu on a node without GPUs) as alone, and all write checkpoints
    accelerator = Accelerator(mixed_precision=mixed, gradient_accumulation_steps=config.grad_accum,
                              cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    main = accelerator.is_main_process
    loader = training_loader(data.images, data.labels, config.batch_size, config.seed,
                             balance=config.class_balance and conditional, masks=data.masks)

    unet = build_unet(model_cfg, len(classes) if conditional else None, config.task)
    init_note = None
    if config.init_from:
        init_folder, init_ckpt = _resolve_init(workspace, config.init_from)
        unet.load_state_dict(load_file(str(init_folder / "checkpoints" / init_ckpt / "unet_ema.safetensors")))
        init_note = f"{config.init_from.partition('@')[0]}@{init_ckpt}"
        if config.freeze_down_blocks:
            for parameter in unet.down_blocks.parameters():
                parameter.requires_grad_(False)
    trainable = [p for p in unet.parameters() if p.requires_grad]
    # fused: one kernel for the whole update (CPU and CUDA), 15 against 40-50 ms a step for the
    # 64 px UNet on 2 CPU cores; rounding differs from the per-tensor loop in the last bits
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=1e-2, fused=True)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup, config.steps)
    noise = DDPMScheduler(**noise_schedule(model_cfg))
    folder.mkdir(parents=True, exist_ok=True)
    step, ema = _resume(folder, config, unet, optimizer, lr_schedule)
    if main:
        (folder / "config.json").write_text(json.dumps(_model_record(
            config, model_cfg, data, scheme, accelerator.num_processes, mixed, init_note),
            indent=1))

    unet, optimizer, loader, lr_schedule = accelerator.prepare(unet, optimizer, loader, lr_schedule)
    ema.to(accelerator.device)
    null_id = classes.index(NULL) if conditional else None
    aug = torch.Generator().manual_seed(config.seed + step)
    log = _LossLog(folder / "loss.csv", main, fresh=step == 0)
    status = "done"

    def save_checkpoint() -> None:
        _save_checkpoint(folder / "checkpoints" / f"step-{step:06d}", step, log.last,
                         accelerator.unwrap_model(unet), ema, optimizer, lr_schedule, config,
                         model_cfg, scheme, only_class, null_id, accelerator.device, data)

    unet.train()
    while step < config.steps and status == "done":
        for batch, batch_labels, *batch_masks in loader:
            if step >= config.steps:
                break
            if cancel is not None and cancel.cancelled:
                status = "cancelled"
                break
            with accelerator.accumulate(unet):
                loss = _denoising_loss(unet, noise, batch, batch_labels, aug, null_id,
                                       config.class_dropout, model_cfg.num_train_timesteps,
                                       batch_masks[0] if batch_masks else None, config.task,
                                       config.max_dilate, config.full_frame)
                accelerator.backward(loss)
                optimizer.step()
                lr_schedule.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            log.add(step, accelerator.gather(loss.detach()).mean().item(),
                    lr_schedule.get_last_lr()[0], step == config.steps)
            progress(step, config.steps, f"step {step}/{config.steps} loss {log.shown:.4f}")
            if main and (step % config.checkpoint_every == 0 or step == config.steps):
                save_checkpoint()
            accelerator.wait_for_everyone()
    if status == "cancelled" and main and step > 0 and f"step-{step:06d}" not in list_checkpoints(folder):
        save_checkpoint()  # keep what was learnt; resume continues from here
    log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(config.model_id, folder, step, tuple(list_checkpoints(folder)), status,
                       log.last, time.perf_counter() - start_time)


# ---------------------------------------------------------------------------------------------
# sampling

def sampling_classes(meta: dict) -> list[str]:
    """The classes a DDPM model folder's ``config.json`` can be asked for."""
    return [c for c in meta["classes"] if c not in (UNKNOWN, NULL)]


def model_checkpoints(folder: Path, meta: dict) -> list[str]:
    """Checkpoints of a DDPM model folder (per-class models: those of its first class)."""
    if meta.get("mode") == "per_class":
        folder = folder / next(iter(meta["sub_models"].values()))
    return list_checkpoints(folder)


class DDPMGenerator:
    """A trained DDPM (one checkpoint, EMA weights) that answers sampling requests."""

    backend = "ddpm"

    def __init__(self, folder: Path, checkpoint: str | None = None,
                 device: torch.device | None = None) -> None:
        from safetensors.torch import load_file

        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "config.json").read_text())
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.units: dict[str, tuple] = {}  # class or "*" -> (unet, folder, checkpoint, schedule)
        if self.meta["mode"] == "per_class":
            for cls, sub in self.meta["sub_models"].items():
                self.units[cls] = self._load(self.folder / sub, checkpoint, load_file)
        else:
            self.units["*"] = self._load(self.folder, checkpoint, load_file)
        self.classes = sampling_classes(self.meta)
        self.checkpoint = next(iter(self.units.values()))[2]

    def _load(self, folder: Path, checkpoint: str | None,
              load_file: Callable[[str], dict]) -> tuple[UNet2DModel, Path, str, dict]:
        meta = json.loads((folder / "config.json").read_text())
        checkpoint = pick_checkpoint(folder, list_checkpoints(folder), checkpoint)
        config = DDPMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["model"].items()})
        conditional = meta["mode"] == "conditional"
        unet = build_unet(config, len(meta["classes"]) if conditional else None,
                          meta.get("task", "image"))
        unet.load_state_dict(load_file(str(folder / "checkpoints" / checkpoint / "unet_ema.safetensors")))
        unet = unet.eval().to(self.device)
        if self.dtype != torch.float32:  # (diffusers warns on any dtype cast, even a no-op)
            unet = unet.to(dtype=self.dtype)
        return unet, folder, checkpoint, meta

    @property
    def size(self) -> int:
        return next(iter(self.units.values()))[3]["model"]["size"]

    @property
    def task(self) -> str:
        """``image``, ``image_mask`` or ``inpaint`` (models from before tasks: ``image``)."""
        return self.meta.get("task", "image")

    @property
    def mask_threshold(self) -> float | None:
        return self.meta.get("mask_threshold")

    def weights_hash(self) -> str:
        from polyp_core.data.images import sha256_file

        _, folder, checkpoint, _ = next(iter(self.units.values()))
        return sha256_file(folder / "checkpoints" / checkpoint / "unet_ema.safetensors")

    def sample(self, request: SampleRequest, progress: Progress = no_progress,
               cancel: CancelToken | None = None) -> list[GeneratedImage]:
        """Images for a class (``prompt`` is not understood by a DDPM)."""
        request.validate()
        if request.prompt is not None:
            raise ValueError("the ddpm backend samples by class, not by prompt")
        if self.task == "inpaint":
            raise ValueError(f"generator {self.folder.name} was trained to inpaint: it fills a "
                             "hole in a frame (python -m polyp_core inpaint, or the Generate "
                             "tab's Inpaint panel)")
        if request.class_label not in self.classes:
            raise ValueError(f"class {request.class_label!r} is not one of this generator's: "
                             f"{', '.join(self.classes)}")
        if request.size not in (None, self.size):
            raise ValueError(f"this DDPM makes {self.size} px images; size {request.size} was asked")
        seeds = [request.seed + i for i in range(request.n)]
        out: list[GeneratedImage] = []
        for start in range(0, len(seeds), request.batch_size):
            batch = seeds[start:start + request.batch_size]
            classes = [request.class_label] * len(batch)
            masks: list = [None] * len(batch)
            if self.task == "image_mask":
                pixels, masks = split_image_mask(self._denoise(batch, classes, request, cancel))
            else:
                pixels = self.sample_exact(batch, classes, request, cancel)
            out += [GeneratedImage(p, s, request.class_label, None, tuple(batch), tuple(classes), m)
                    for p, s, m in zip(pixels, batch, masks)]
            progress(len(out), len(seeds), f"sampled {len(out)}/{len(seeds)} {request.class_label}")
        return out

    def sample_exact(self, seeds: Sequence[int], classes: Sequence[str], request: SampleRequest,
                     cancel: CancelToken | None = None) -> np.ndarray:
        """One batch exactly as given (RGB): the path regeneration takes."""
        return _to_uint8(self._denoise(seeds, classes, request, cancel)[:, :3])

    def class_ids(self, classes: Sequence[str]) -> tuple[UNet2DModel, dict, list[int] | None,
                                                           int | None]:
        """The network for ``classes`` (all one class for per-class models), its record, the
        class ids and the null id (``None`` for a per-class model)."""
        per_class = "*" not in self.units
        unet, _, _, meta = self.units[classes[0] if per_class else "*"]
        ids = None if per_class else [meta["classes"].index(c) for c in classes]
        null_id = None if per_class else meta["classes"].index(NULL)
        return unet, meta, ids, null_id

    def _denoise(self, seeds: Sequence[int], classes: Sequence[str], request: SampleRequest,
                 cancel: CancelToken | None = None) -> torch.Tensor:
        unet, meta, ids, null_id = self.class_ids(classes)
        return denoise_batch(unet, meta["noise_schedule"], request.scheduler, request.steps, ids,
                             null_id, seeds, request.guidance, self.size, self.device, self.dtype,
                             cancel, channels=task_channels(self.task)[0])
