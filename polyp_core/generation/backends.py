"""Generator backends by name, loading a trained generator, and sampling into the pool."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.generation.request import CancelToken, GeneratedImage, SampleRequest
from polyp_core.pool import ProvenanceRecord, add_synthetic
from polyp_core.progress import Progress, no_progress
from polyp_core.workspace import Workspace, check_name
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    import torch

    from polyp_core.generation.ddpm import DDPMGenerator
    from polyp_core.generation.sd_lora import SDLoraGenerator


def _load_ddpm(folder: Path, checkpoint: str | None,
               device: torch.device | None = None) -> DDPMGenerator:
    from polyp_core.generation.ddpm import DDPMGenerator

    return DDPMGenerator(folder, checkpoint, device)


def _load_sd_lora(folder: Path, checkpoint: str | None,
                  device: torch.device | None = None) -> SDLoraGenerator:
    from polyp_core.generation.sd_lora import SDLoraGenerator

    return SDLoraGenerator.from_model_dir(folder, checkpoint, device)


BACKENDS: dict[str, Callable] = {"ddpm": _load_ddpm, "sd_lora": _load_sd_lora}


def list_models(workspace: Workspace) -> list[str]:
    """Ids of the generators in ``workspace/models``."""
    return sorted(p.parent.name for p in workspace.models_dir.glob("*/config.json"))


def _model_meta(workspace: Workspace, model_id: str) -> tuple[Path, dict]:
    folder = workspace.models_dir / check_name(model_id, "model")
    config = folder / "config.json"
    if not config.is_file():
        raise KeyError(f"no generator {model_id!r} in {workspace.models_dir} "
                       f"(models: {', '.join(list_models(workspace)) or 'none'})")
    meta = json.loads(config.read_text())
    if meta.get("backend") not in BACKENDS:
        raise ValueError(f"{config}: unknown backend {meta.get('backend')!r}; "
                         f"known: {', '.join(BACKENDS)}")
    return folder, meta


def describe_model(workspace: Workspace, model_id: str) -> dict:
    """Backend, classes, checkpoints and training data of a generator, without loading weights.

    Raises:
        KeyError: no such model (naming the models there are).
        ValueError: unknown backend.
    """
    from polyp_core.generation import ddpm, sd_lora

    folder, meta = _model_meta(workspace, model_id)
    module = {"ddpm": ddpm, "sd_lora": sd_lora}[meta["backend"]]
    return {"backend": meta["backend"], "classes": module.sampling_classes(meta),
            "checkpoints": module.model_checkpoints(folder, meta),
            "trained_on": meta.get("trained_on", {})}


def load_generator(workspace: Workspace, model_id: str, checkpoint: str | None = None,
                   device: torch.device | None = None) -> DDPMGenerator | SDLoraGenerator:
    """The generator in ``workspace/models/<model_id>`` at a checkpoint (default: the last).

    Raises:
        KeyError: no such model (naming the models there are).
        ValueError: unknown backend or checkpoint.
    """
    folder, meta = _model_meta(workspace, model_id)
    return BACKENDS[meta["backend"]](folder, checkpoint, device)


def provenance_of(generator: DDPMGenerator | SDLoraGenerator, model_id: str, image: GeneratedImage,
                  request: SampleRequest) -> ProvenanceRecord:
    return ProvenanceRecord(
        backend=generator.backend, generator=model_id, class_label=image.class_label,
        prompt=image.prompt, negative_prompt=request.negative_prompt, seed=image.seed,
        steps=request.steps, guidance=request.guidance, scheduler=request.scheduler,
        checkpoint=generator.checkpoint, checkpoint_hash=generator.weights_hash(),
        base_model=getattr(generator, "base_model", None),
        base_model_hash=getattr(generator, "base_model_hash", None),
        lora={"adapters": [{"path": l.path, "scale": l.scale} for l in request.loras]} if request.loras else None,
        lora_scale=request.loras[0].scale if len(request.loras) == 1 else None,
        width=image.rgb.shape[1], height=image.rgb.shape[0],
        extra={**({"mask_threshold": generator.mask_threshold} if image.mask is not None else {}),
               "batch_seeds": list(image.batch_seeds),
               "batch_classes": list(image.batch_classes) if image.batch_classes else None,
               "batch_prompts": None})


def sample_to_pool(db: Database, workspace: Workspace, model_id: str, request: SampleRequest,
                   checkpoint: str | None = None, progress: Progress = no_progress,
                   cancel: CancelToken | None = None) -> list[tuple[int, str]]:
    """Sample and store every image once (named by SHA-256) with its provenance.

    Under ``accelerate launch`` the images are split between the processes (each on its
    own device); image ``i`` still uses seed ``seed + i``, so the pool is the same as from
    one process and every image can be regenerated alone.

    Returns:
        ``(image id, sha256)`` of the images this process made, in request order.
    """
    from dataclasses import replace

    from accelerate import PartialState

    import torch

    state = PartialState(cpu=not torch.cuda.is_available())
    generator = load_generator(workspace, model_id, checkpoint, state.device)
    indices = list(range(request.n))
    with state.split_between_processes(indices) as mine:
        if not mine:
            return []
        part = replace(request, n=len(mine), seed=request.seed + mine[0])
        images = generator.sample(part, progress, cancel)
    return store_generated(db, workspace, generator, model_id, images, request)


def store_generated(db: Database, workspace: Workspace, generator: DDPMGenerator | SDLoraGenerator,
                    model_id: str,
                    images: list[GeneratedImage], request: SampleRequest) -> list[tuple[int, str]]:
    """Put sampled images into the pool, each once, with its provenance."""
    return [add_synthetic(db, workspace, image.rgb, provenance_of(generator, model_id, image, request),
                          mask=image.mask) for image in images]


def regenerate(db: Database, workspace: Workspace, sha256: str) -> np.ndarray:
    """Make a pooled synthetic image again from its provenance record alone.

    The batch it was computed in is replayed (batched arithmetic differs from single-image
    arithmetic in the last bits), so the pixels come out identical on the same hardware.

    Raises:
        KeyError: no such synthetic image.
        ValueError: the generator's weights changed since (hash mismatch).
    """
    from polyp_core.generation.request import LoraChoice

    with db.session() as session:
        image = queries.image_by_sha(session, sha256)
        if image is None or image.provenance is None:
            raise KeyError(f"no synthetic image with SHA-256 {sha256}")
        p = image.provenance
        record = dict(backend=p.backend, generator=p.generator, checkpoint=p.checkpoint,
                      checkpoint_hash=p.checkpoint_hash, class_label=p.class_label, prompt=p.prompt,
                      negative_prompt=p.negative_prompt, seed=p.seed, steps=p.steps,
                      guidance=p.guidance, scheduler=p.scheduler, lora=p.lora, extra=p.extra or {})
    if record["extra"].get("copy_paste"):
        frame = record["extra"].get("background") or {}
        raise ValueError(f"image {sha256[:12]} was made by copy-paste into frame "
                         f"{frame.get('dataset')}:{frame.get('id')}; make it again with "
                         f"copy-paste (the same data set, class and seed {record['seed']})")
    if record["extra"].get("inpaint"):
        frame = record["extra"].get("background") or {}
        raise ValueError(f"image {sha256[:12]} was inpainted into frame "
                         f"{frame.get('dataset', 'uploaded')}:{frame.get('id', frame.get('uploaded'))}; "
                         "make it again with inpaint (the same frame, mask source and seed)")
    generator = load_generator(workspace, record["generator"], record["checkpoint"])
    if record["checkpoint_hash"] and generator.weights_hash() != record["checkpoint_hash"]:
        raise ValueError(f"generator {record['generator']}@{record['checkpoint']} has changed since "
                         "the image was made (weights hash differs)")
    loras = tuple(LoraChoice(a["path"], a["scale"]) for a in (record["lora"] or {}).get("adapters", []))
    request = SampleRequest(class_label=record["class_label"] if record["prompt"] is None else None,
                            prompt=record["prompt"], negative_prompt=record["negative_prompt"],
                            n=1, seed=record["seed"], steps=record["steps"], guidance=record["guidance"],
                            scheduler=record["scheduler"], loras=loras)
    seeds = record["extra"].get("batch_seeds") or [record["seed"]]
    classes = record["extra"].get("batch_classes") or [record["class_label"]] * len(seeds)
    pixels = generator.sample_exact(seeds, classes, request)
    return pixels[seeds.index(record["seed"])]
