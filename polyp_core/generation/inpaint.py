"""Class-conditional inpainting: a polyp of a chosen class filled into a real frame.

A background frame (a data set's frame, or an uploaded one) and a polyp mask (the frame's own,
one drawn in the browser, or one an image-and-mask model made) give the *hole*: the mask
dilated by ``dilate`` px on the frame. The frame and both masks are rasterised to the
generator's size (:mod:`polyp_core.generation.masks`); the generator fills the hole and every
pixel outside it is copied from the background, so the result equals the background there
exactly. Two methods, chosen by the generator's task:

- ``trained``: a DDPM trained for inpainting (``task="inpaint"``: hole, polyp mask and the
  blanked frame are extra input channels) samples with an ordinary scheduler;
- ``repaint``: RePaint resampling (Lugmayr et al. 2022) with a DDPM trained on whole images
  or on images with their mask (``image_mask``, where the polyp mask channel is known
  everywhere): diffusers' ``RePaintScheduler`` steps, and a time jump adds the noise of
  ``stride`` steps in one draw (the same distribution as ``undo_step``'s one draw per step).

Each result joins the pool with its polyp mask, and its provenance names the background frame
(data set, id, SHA-256, group, split) and the mask's source: the frame is training data of the
image, and retrain's leak checks treat it so (``experiment.leakage.background_leaks``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyp_core.data.images import load_mask, load_rgb, resize_rgb, sha256_file
from polyp_core.generation.masks import (HOLE_DILATE, dilate, hole_at, inpaint_condition,
                                         polyp_at)
from polyp_core.generation.request import SCHEDULERS
from polyp_core.generation.window import (WINDOWS, Window, lesion_window, paste, seam_width,
                                          touches_border)
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.validation import checked, rule

if TYPE_CHECKING:
    from diffusers import UNet2DModel

    from polyp_core.generation.ddpm import DDPMGenerator
    from polyp_core.workspace import Workspace
    from review_db.database import Database

MASK_SOURCES = ("own", "drawn", "generated")
METHODS = {"image": "repaint", "image_mask": "repaint", "inpaint": "trained"}


@checked
@dataclass(frozen=True)
class InpaintRequest:
    """What to inpaint.

    Attributes:
        generator, checkpoint: the DDPM (``inpaint`` task: trained method; ``image`` or
            ``image_mask``: RePaint) and its checkpoint (default: the last).
        class_label: the class of the polyp to make.
        dataset, image: the background frame (omit both for an uploaded frame).
        mask_source: ``own`` (the frame's polyp mask), ``drawn`` (a mask drawn on the frame) or
            ``generated`` (sampled by the image-and-mask model ``mask_generator``, ``mask_seed``).
        dilate: the hole is the polyp mask grown by this many pixels of the frame.
        whole_frame: the hole is the whole frame (a whole image; the mask still says where).
        seeds: one result per seed.
        steps, guidance, scheduler: the sampler (``scheduler``: the trained method only).
        jump_length, jump_n_sample: RePaint's resampling (jump back ``jump_length`` steps,
            ``jump_n_sample`` times in all at each jump point).
        window: ``lesion`` (a square window around the hole is filled at the model's size and
            pasted back into the frame at its own size; ``generation.window``) or ``none``
            (the whole frame at the model's size). A whole-frame hole has no window.
    """

    generator: str = rule(text=True)
    class_label: str = rule(text=True)
    dataset: str | None = rule(None, text=True)
    image: str | None = rule(None, text=True)
    mask_source: str = rule("own", choices=MASK_SOURCES)
    mask_generator: str | None = rule(None, text=True)
    mask_seed: int = 0
    dilate: int = rule(HOLE_DILATE, lo=0, hi=4096)
    whole_frame: bool = False
    seeds: tuple[int, ...] = (0,)
    steps: int = rule(50, lo=1, hi=1000)
    guidance: float = rule(2.0, lo=0.0, hi=50.0)
    scheduler: str = rule("ddim", choices=SCHEDULERS)
    jump_length: int = rule(10, lo=1, hi=1000)
    jump_n_sample: int = rule(2, lo=1, hi=100)
    checkpoint: str | None = rule(None, text=True)
    batch_size: int = rule(8, lo=1, hi=1024)
    window: str = rule("lesion", choices=WINDOWS)

    @property
    def windowed(self) -> bool:
        """Whether the hole is filled in a window at the frame's resolution."""
        return self.window == "lesion" and not self.whole_frame

    def validate(self) -> None:
        if not self.seeds or len(self.seeds) > 256:
            raise ValueError("`seeds`: give 1 to 256 seeds")
        if (self.dataset is None) != (self.image is None):
            raise ValueError("`image`: a background frame is a data set and an image id together")
        if self.mask_source == "generated" and not self.mask_generator:
            raise ValueError("`mask_generator`: mask source generated names an image-and-mask model")


def parse_seeds(text: str | None) -> tuple[int, ...]:
    """``0-7``, ``0,3,5`` or both (``0-3,9``) -> seeds.

    Raises:
        ValueError: anything else, naming the field.
    """
    seeds: list[int] = []
    for part in (text or "0").split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"`seeds`: {text!r} is not a range or a list (e.g. 0-7 or 0,3,5)")
        seeds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
    if len(seeds) > 256:
        raise ValueError(f"`seeds`: {text!r} gives {len(seeds)} seeds; at most 256")
    return tuple(seeds)


@dataclass(frozen=True)
class Background:
    """A frame to inpaint into, at its own resolution, with its polyp mask when it has one."""

    rgb: np.ndarray
    mask: np.ndarray | None
    record: dict  # what the provenance says: dataset, id, sha256, group, split (or uploaded)

    @property
    def name(self) -> str:
        return (f"{self.record['dataset']}:{self.record['id']}" if "dataset" in self.record
                else f"uploaded {self.record.get('uploaded')}")


def frame_background(workspace: Workspace, dataset: str, image_id: str) -> Background:
    """A data set's frame and its mask.

    Raises:
        KeyError: no such data set.
        ValueError: no such image id in it, or a frame that changed since import.
    """
    manifest = workspace.load_manifest(dataset)
    item = next((i for i in manifest.items if i.id == image_id), None)
    if item is None:
        raise ValueError(f"`image`: data set {dataset!r} has no image {image_id!r}")
    if sha256_file(item.image) != item.sha256:
        raise ValueError(f"{item.image}: the file changed since {dataset} was imported")
    mask = load_mask(item.mask) if item.mask else None
    return Background(load_rgb(item.image), mask, {
        "dataset": dataset, "id": item.id, "sha256": item.sha256, "group": item.group,
        "split": item.split})


def uploaded_background(rgb: np.ndarray, name: str, sha256: str) -> Background:
    """A frame the user uploaded (its file's SHA-256: a data set's frame is still recognised)."""
    return Background(np.asarray(rgb, np.uint8), None, {"uploaded": name, "sha256": sha256})


def _generated_mask(workspace: Workspace, request: InpaintRequest, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, dict]:
    from polyp_core.generation.backends import load_generator
    from polyp_core.generation.request import SampleRequest

    maker = load_generator(workspace, request.mask_generator)
    if getattr(maker, "task", None) != "image_mask":
        raise ValueError(f"`mask_generator`: {request.mask_generator} does not make masks "
                         "(train one with train-ddpm --with-mask)")
    made = maker.sample(SampleRequest(class_label=request.class_label, seed=request.mask_seed,
                                      steps=request.steps, guidance=request.guidance,
                                      scheduler=request.scheduler))[0]
    native = _resize_nearest(made.mask, shape)
    return native, {"kind": "generated", "generator": request.mask_generator,
                    "checkpoint": maker.checkpoint, "seed": request.mask_seed,
                    "threshold": maker.mask_threshold}


def _resize_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.NEAREST)) >= 128


def plan_masks(workspace: Workspace, request: InpaintRequest, background: Background,
               drawn: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The polyp mask and the hole on the frame, and what the mask came from.

    Raises:
        ValueError: no mask from the chosen source, a drawn mask of another size, an empty mask.
    """
    shape = background.rgb.shape[:2]
    if request.mask_source == "own":
        if background.mask is None:
            raise ValueError(f"`mask_source`: frame {background.name} has no polyp mask; draw "
                             "one, or let an image-and-mask model make one")
        polyp, source = background.mask, {"kind": "own"}
    elif request.mask_source == "drawn":
        if drawn is None:
            raise ValueError("`mask_source`: drawn, but no mask was drawn")
        polyp, source = np.asarray(drawn, bool), {"kind": "drawn"}
        if polyp.shape != shape:
            raise ValueError(f"`mask_source`: the drawn mask is {polyp.shape[1]}x{polyp.shape[0]}, "
                             f"the frame {shape[1]}x{shape[0]}")
    else:
        polyp, source = _generated_mask(workspace, request, shape)
    if not polyp.any():
        raise ValueError(f"`mask_source`: the {source['kind']} mask of {background.name} is empty")
    if request.windowed and touches_border(polyp):
        raise ValueError(f"`window`: the {source['kind']} polyp mask of {background.name} "
                         "touches the frame's border: the polyp is cut by the frame, and a "
                         "window cannot hold it with the mucosa around it; choose another "
                         "frame or mask, or inpaint with window none")
    hole = np.ones(shape, bool) if request.whole_frame else dilate(polyp, request.dilate)
    if request.windowed:
        lesion_window(hole, 1)  # a hole larger than the frame's window limit is refused now
    return polyp, hole, source


@dataclass(frozen=True)
class Inpainted:
    """One result: the image, its polyp mask and the hole it filled, at the frame's size with a
    window, at the generator's size without one."""

    rgb: np.ndarray
    mask: np.ndarray
    hole: np.ndarray
    seed: int
    batch_seeds: tuple[int, ...]


@dataclass
class InpaintResult:
    background: Background
    background_rgb: np.ndarray  # what the generator saw: the window (or frame) at its size
    method: str
    checkpoint: str
    checkpoint_hash: str
    mask_source: dict
    images: list[Inpainted] = field(default_factory=list)
    window: Window | None = None  # in frame pixels; None: the whole frame at the model's size
    seam: float = 0.0  # the paste's feathered seam, frame pixels


def _jump_forward(scheduler: object, x: torch.Tensor, t: int, stride: int,
                  generators: list[torch.Generator]) -> torch.Tensor:
    """RePaint's time jump from ``t`` to ``t + stride`` in one draw: the product of the
    ``stride`` one-step forward kernels is one Gaussian kernel."""
    from diffusers.utils.torch_utils import randn_tensor

    keep = torch.prod(1 - scheduler.betas[int(t):int(t) + stride])
    noise = randn_tensor(x.shape, generator=generators, device=x.device, dtype=x.dtype)
    return keep.sqrt().to(x.dtype) * x + (1 - keep).sqrt().to(x.dtype) * noise


@torch.inference_mode()
def repaint_batch(unet: UNet2DModel, schedule: dict, steps: int, jump_length: int,
                  jump_n_sample: int, class_ids: Sequence[int] | None, null_id: int | None,
                  seeds: Sequence[int], guidance: float, known: torch.Tensor,
                  keep: torch.Tensor, cancel: CancelToken | None = None) -> torch.Tensor:
    """RePaint: denoise ``(N, C, H, W)`` where ``keep`` is 0, holding the rest to ``known``
    noised to each step's level, with resampling jumps. Per-image seeds as ``denoise_batch``."""
    from diffusers import RePaintScheduler
    from diffusers.utils.torch_utils import randn_tensor

    from polyp_core.generation.ddpm import guidance_labels, guided_eps

    scheduler = RePaintScheduler(num_train_timesteps=schedule["num_train_timesteps"],
                                 beta_schedule=schedule["beta_schedule"],
                                 clip_sample=schedule.get("clip_sample", True))
    scheduler.set_timesteps(steps, jump_length, jump_n_sample, known.device)
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    x = randn_tensor(tuple(known.shape), generator=generators, device=known.device, dtype=known.dtype)
    labels, guided = guidance_labels(class_ids, null_id, guidance, known.device)
    last = int(scheduler.timesteps[0]) + 1
    for t in scheduler.timesteps.tolist():
        if cancel is not None:
            cancel.check()
        if t < last:
            eps = guided_eps(unet, x, t, labels, guided, guidance)
            x = scheduler.step(eps, t, x, known, keep, generators).prev_sample
        else:
            x = _jump_forward(scheduler, x, last, stride, generators)
        last = t
    return x.float().clamp(-1, 1)


def _to_unit(pixels: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device, dtype).div(127.5).sub(1)


def fill(generator: DDPMGenerator, request: InpaintRequest, seeds: Sequence[int],
         background: np.ndarray, hole: np.ndarray, polyp: np.ndarray,
         cancel: CancelToken | None = None) -> np.ndarray:
    """One batch of results (uint8 ``(N, S, S, 3)``) for ``seeds``: the generator fills the
    holes (bool ``(N, S, S)``) of the backgrounds (uint8 ``(N, S, S, 3)``), each with its polyp
    mask; outside its hole every pixel is the background's, copied."""
    from polyp_core.generation.ddpm.sampler import denoise_batch, to_uint8

    n, device, dtype = len(seeds), generator.device, generator.dtype
    unet, meta, ids, null_id = generator.class_ids([request.class_label] * n)
    bg = _to_unit(background, device, dtype)
    hole_t = torch.from_numpy(hole)[:, None].to(device, dtype)
    polyp_t = torch.from_numpy(polyp)[:, None].to(device, dtype)
    if generator.task == "inpaint":
        x = denoise_batch(unet, meta["noise_schedule"], request.scheduler, request.steps, ids,
                          null_id, seeds, request.guidance, generator.size, device, dtype, cancel,
                          condition=inpaint_condition(bg, hole_t, polyp_t))
    else:
        known, keep = bg, (1 - hole_t).expand(n, 3, -1, -1)
        if generator.task == "image_mask":
            known = torch.cat([bg, polyp_t * 2 - 1], dim=1)
            keep = torch.cat([keep, torch.ones_like(hole_t)], dim=1)
        x = repaint_batch(unet, meta["noise_schedule"], request.steps, request.jump_length,
                          request.jump_n_sample, ids, null_id, seeds, request.guidance,
                          known, keep.contiguous(), cancel)
    made = to_uint8(x[:, :3])
    return np.where(hole[..., None], made, background)


def inpaint(workspace: Workspace, request: InpaintRequest, background: Background,
            drawn: np.ndarray | None = None, progress: Progress = no_progress,
            cancel: CancelToken | None = None,
            planned: tuple[np.ndarray, np.ndarray, dict] | None = None) -> InpaintResult:
    """Fill one hole of ``background`` with a polyp of ``request.class_label`` per seed.
    ``planned``: what :func:`plan_masks` gave for this request and frame (made here if not).

    Raises:
        KeyError: no such generator.
        ValueError: a generator that cannot inpaint or does not know the class; mask problems.
    """
    from polyp_core.generation.backends import load_generator

    request.validate()
    generator = load_generator(workspace, request.generator, request.checkpoint)
    if getattr(generator, "backend", None) != "ddpm" or "*" not in generator.units:
        raise ValueError(f"`generator`: {request.generator} cannot inpaint; inpainting needs a "
                         "class-conditional DDPM (train-ddpm --inpaint, --with-mask, or plain)")
    if request.class_label not in generator.classes:
        raise ValueError(f"`class_label`: {request.class_label!r} is not one of "
                         f"{request.generator}'s classes: {', '.join(generator.classes)}")
    polyp_native, hole_native, source = planned or plan_masks(workspace, request, background,
                                                              drawn)
    size = generator.size
    window = lesion_window(hole_native, size) if request.windowed else None
    if window is None:
        bg = resize_rgb(background.rgb, size)
        hole, polyp = hole_at(hole_native, size), polyp_at(polyp_native, size)
    else:
        bg = resize_rgb(np.ascontiguousarray(window.crop(background.rgb)), size)
        hole = hole_at(window.crop(hole_native), size)
        polyp = polyp_at(window.crop(polyp_native), size)
    polyp = polyp & hole
    result = InpaintResult(background, bg, METHODS[generator.task], generator.checkpoint,
                           generator.weights_hash(), source, window=window,
                           seam=seam_width(window, size) if window else 0.0)
    label = polyp_native & hole_native  # the polyp in the full-size result
    seeds = list(request.seeds)
    for start in range(0, len(seeds), request.batch_size):
        batch = seeds[start:start + request.batch_size]
        k = len(batch)
        pixels = fill(generator, request, batch, np.repeat(bg[None], k, 0),
                      np.repeat(hole[None], k, 0), np.repeat(polyp[None], k, 0), cancel)
        if window is None:
            result.images += [Inpainted(p, polyp, hole, s, tuple(batch))
                              for p, s in zip(pixels, batch)]
        else:
            result.images += [Inpainted(paste(background.rgb, p, window, hole_native,
                                              result.seam), label, hole_native, s, tuple(batch))
                              for p, s in zip(pixels, batch)]
        progress(len(result.images), len(seeds), f"inpainted {len(result.images)}/{len(seeds)}")
    return result


def store_inpainted(db: Database, workspace: Workspace, request: InpaintRequest,
                    result: InpaintResult) -> list[tuple[int, str]]:
    """Put every result into the pool as an image-and-mask pair; its provenance names the
    background frame, the mask's source and the hole (stored beside the masks)."""
    from polyp_core.files import atomic_write
    from polyp_core.pool import ProvenanceRecord, add_synthetic, mask_path, mask_png

    stored = []
    for image in result.images:
        hole_png = mask_png(image.hole)
        hole_sha = hashlib.sha256(hole_png).hexdigest()
        if not mask_path(workspace.synthetic_dir, hole_sha).exists():
            atomic_write(mask_path(workspace.synthetic_dir, hole_sha), hole_png)
        provenance = ProvenanceRecord(
            backend="ddpm", generator=request.generator, class_label=request.class_label,
            seed=image.seed, steps=request.steps, guidance=request.guidance,
            scheduler=request.scheduler if result.method == "trained" else "repaint",
            checkpoint=result.checkpoint, checkpoint_hash=result.checkpoint_hash,
            width=int(image.rgb.shape[1]), height=int(image.rgb.shape[0]),
            extra={"inpaint": {"method": result.method, "dilate": request.dilate,
                               "whole_frame": request.whole_frame, "hole_sha256": hole_sha,
                               "window": (result.window.to_json() | {"seam": result.seam}
                                          if result.window else None),
                               **({"jump_length": request.jump_length,
                                   "jump_n_sample": request.jump_n_sample}
                                  if result.method == "repaint" else {})},
                   "background": result.background.record, "mask_source": result.mask_source,
                   "batch_seeds": list(image.batch_seeds)})
        stored.append(add_synthetic(db, workspace, image.rgb, provenance, mask=image.mask))
    return stored
