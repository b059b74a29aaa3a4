"""Sampling a DDPM: guided noise prediction, the denoising loop (plain, masked or conditioned),
grids, and the generator that loads a checkpoint and makes images by class."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyp_core.generation.ddpm.model import (MASK_THRESHOLD, NULL, DDPMConfig, build_unet,
                                              list_checkpoints, pick_checkpoint, sampling_classes,
                                              task_channels)
from polyp_core.generation.request import CancelToken, GeneratedImage, SampleRequest, make_scheduler
from polyp_core.progress import Progress, no_progress

if TYPE_CHECKING:
    from collections.abc import Callable

    from diffusers import SchedulerMixin, UNet2DModel


def to_uint8(x: torch.Tensor) -> np.ndarray:
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
    return to_uint8(denoise_batch(unet, schedule, scheduler_name, steps, class_ids, null_id,
                                   seeds, guidance, size, device, dtype, cancel))


def split_image_mask(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """An image-and-mask model's output -> (RGB uint8 ``(N, H, W, 3)``, bool masks ``(N, H, W)``),
    the mask channel thresholded at :data:`MASK_THRESHOLD`."""
    return to_uint8(x[:, :3]), (x[:, 3] > MASK_THRESHOLD).cpu().numpy()


def grid(images: np.ndarray, columns: int) -> np.ndarray:
    rows = math.ceil(len(images) / columns)
    h, w = images.shape[1:3]
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = image
    return out


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
        return to_uint8(self._denoise(seeds, classes, request, cancel)[:, :3])

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
