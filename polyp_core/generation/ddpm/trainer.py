"""Training a DDPM: the training set (images, masks, holes), the loop with EMA, mixed
precision, checkpoints, sample grids, loss log and resume."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from polyp_core.data.cache import PixelCache
from polyp_core.data.labels import get_scheme
from polyp_core.files import csv_row
from polyp_core.generation.ddpm.model import (MASK_THRESHOLD, NULL, UNKNOWN, DDPMConfig,
                                              DDPMTrainConfig, build_unet, get_preset,
                                              list_checkpoints, mixed_precision, model_dir,
                                              noise_schedule, pick_checkpoint, versions)
from polyp_core.generation.ddpm.sampler import (denoise_batch, grid, sample_batch,
                                                split_image_mask, to_uint8)
from polyp_core.generation.masks import HOLE_DILATE, dilate_batch, inpaint_condition
from polyp_core.generation.request import CancelToken
from polyp_core.progress import Progress, no_progress
from polyp_core.workspace import Workspace

if TYPE_CHECKING:

    from diffusers import SchedulerMixin, UNet2DModel
    from diffusers.training_utils import EMAModel
    from torch.optim.lr_scheduler import LambdaLR

    from polyp_core.data.labels import LabelScheme


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
    if conditional:
        label_ids = [classes.index(UNKNOWN) if config.unknown_class
                     else classes.index(scheme.map(i.label)) for i in items]
    else:
        label_ids = [0] * len(items)
    if config.task != "image" and config.window == "lesion":
        images, masks, label_ids = _training_windows(items, config, size, label_ids)
        return _TrainingSet(items, classes, conditional, images, torch.tensor(label_ids), masks)
    masks = _training_masks(items, config, size) if config.task != "image" else None
    pixels = PixelCache(workspace.pixel_cache_dir)
    images = torch.from_numpy(np.stack([pixels.rgb(i.image, i.sha256, size) for i in items]))
    return _TrainingSet(items, classes, conditional, images, torch.tensor(label_ids), masks)


def _training_windows(items: list, config: DDPMTrainConfig, size: int, label_ids: list[int]
                      ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Every training frame's windows at the model's size (``window.training_windows``: its
    polyp window, a jittered one and a random one), their polyp masks and their classes.

    Raises:
        ValueError: as :func:`_training_masks`, naming the frame.
    """
    from polyp_core.data.images import load_mask, load_rgb
    from polyp_core.generation.window import training_windows

    _training_masks_present(items, config)
    rng = np.random.default_rng(config.seed)
    images, masks, labels = [], [], []
    for item, label in zip(items, label_ids):
        try:
            rgb, mask = load_rgb(item.image), load_mask(item.mask)
        except Exception as exc:  # a clear message naming the file; the cause is kept
            raise ValueError(f"{item.image}: frame {item.id} or its mask cannot be read "
                             f"({exc})") from exc
        for crop, polyp in training_windows(rgb, mask, size, rng, HOLE_DILATE):
            images.append(crop)
            masks.append(polyp)
            labels.append(label)
    return (torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), labels)


def _training_masks_present(items: list, config: DDPMTrainConfig) -> None:
    missing = [i.id for i in items if not i.mask]
    if missing:
        raise ValueError(f"task {config.task} needs a mask for every training frame; "
                         f"{len(missing)} of {len(items)} in {config.dataset} have none "
                         f"(e.g. {', '.join(missing[:3])})")


def _training_masks(items: list, config: DDPMTrainConfig, size: int) -> torch.Tensor:
    """Every training frame's polyp mask at the model's size (a mask-aware task needs one per
    frame: a frame without one would teach "no polyp here").

    Raises:
        ValueError: frames without a mask (naming the first few), or a mask that cannot be read.
    """
    from polyp_core.data.images import load_mask, resize_mask

    _training_masks_present(items, config)
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
    with probability ``full_frame`` per image the whole frame (so the model also makes frames);
    an image without a polyp (a random window of mucosa) is always a whole-frame hole."""
    radius = int(torch.randint(0, max_dilate + 1, (1,), generator=aug))
    hole = dilate_batch(polyp, radius)
    whole = (torch.rand(len(polyp), generator=aug) < full_frame).view(-1, 1, 1, 1).to(polyp.device)
    whole = whole | (polyp.flatten(1).sum(1) == 0).view(-1, 1, 1, 1)
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
        rgb, masks = to_uint8(x), data.masks[pick].numpy()
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
