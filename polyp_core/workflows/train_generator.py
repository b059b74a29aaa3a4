"""Train a generator (a class-conditional DDPM, or an SD v1.x LoRA) on a data set's training
images: admins in the browser, the terminal's operator on the command line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
from polyp_core.generation.sd_lora import LoraTrainConfig, train_lora
from polyp_core.progress import CancelToken, Cancelled, Progress
from polyp_core.forms import Form, of
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database
from polyp_core.data.labels import SCHEMES

if TYPE_CHECKING:
    from polyp_core.generation.ddpm import TrainResult

GeneratorConfig = DDPMTrainConfig | LoraTrainConfig


def _splits(splits: tuple[str, ...]) -> str:
    return ",".join(splits)


#: The train-ddpm action, declared once: the CLI's options and the Train tab's DDPM widgets
#: start from it; every default, bound and choice is ``DDPMTrainConfig``'s (the model's task
#: is the CLI's --with-mask / --inpaint and the tab's radio).
TRAIN_DDPM = Form("train-ddpm", "train a class-conditional DDPM on a data set", (
    of(DDPMTrainConfig, "dataset", kind="text", required=True, help="the data set"),
    of(DDPMTrainConfig, "model_id", kind="text", option="--model", required=True,
       help="model id (folder under workspace/models)"),
    of(DDPMTrainConfig, "preset", help="the U-Net's size"),
    of(DDPMTrainConfig, "scheme", choices=tuple(SCHEMES),
       help="label scheme (default: the data set's)"),
    of(DDPMTrainConfig, "mode", help="one conditional model, or one model per class"),
    of(DDPMTrainConfig, "splits", kind="names", show=_splits,
       help="comma-separated splits to learn from"),
    of(DDPMTrainConfig, "unknown_class", help="pretrain: all images 'unknown'"),
    of(DDPMTrainConfig, "init_from", help="MODEL[@CHECKPOINT] to fine-tune from"),
    of(DDPMTrainConfig, "freeze_down_blocks", help="fine-tuning: keep the encoder half fixed"),
    of(DDPMTrainConfig, "steps", help="optimiser steps"),
    of(DDPMTrainConfig, "batch_size", help="images per step"),
    of(DDPMTrainConfig, "grad_accum", help="steps whose gradients add up to one update"),
    of(DDPMTrainConfig, "lr", help="AdamW learning rate"),
    of(DDPMTrainConfig, "warmup", help="learning-rate warm-up steps"),
    of(DDPMTrainConfig, "ema_decay", help="the EMA weights' decay"),
    of(DDPMTrainConfig, "mixed_precision", help="auto: bf16/fp16 on a GPU, none on the CPU"),
    of(DDPMTrainConfig, "checkpoint_every", help="a checkpoint (with sample grid) every N steps"),
    of(DDPMTrainConfig, "class_dropout", help="share of steps the class is dropped (guidance)"),
    of(DDPMTrainConfig, "class_balance",
       help="draw every class equally often (minority classes learnt as well as AD)"),
    of(DDPMTrainConfig, "seed", help="the training seed"),
    of(DDPMTrainConfig, "resume", option="--no-resume", help="start again instead of resuming"),
    of(DDPMTrainConfig, "max_dilate",
       help="--inpaint: holes are masks grown by 0..N px of the model's size"),
    of(DDPMTrainConfig, "full_frame", help="--inpaint: share of holes that are the whole frame"),
    of(DDPMTrainConfig, "window", help="--inpaint/--with-mask: lesion learns from windows cut at "
                                       "the frame's resolution (each frame's polyp window, a "
                                       "jittered and a random one), as inpaint fills them; "
                                       "frame from whole frames shrunk to the model's size"),
))


def train_ddpm_request(fields: Mapping[str, object], task: str = "image") -> DDPMTrainConfig:
    """The DDPM training request from plain values (form text and numbers, an argparse
    namespace's dict); missing or empty fields take :data:`TRAIN_DDPM`'s defaults.

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = TRAIN_DDPM.parse(fields)
    f["splits"] = tuple(s.strip() for s in str(f["splits"]).split(",") if s.strip())
    f["dataset"], f["model_id"] = f["dataset"] or "", f["model_id"] or ""
    return DDPMTrainConfig(**f, task=task)

def _trainer(config: GeneratorConfig) -> Callable[..., TrainResult]:
    config.validate()
    return train_ddpm if isinstance(config, DDPMTrainConfig) else train_lora


def start(db: Database | None, workspace: Workspace, person: Person, config: GeneratorConfig,
          submit: Callable[..., str], holder: dict | None = None) -> str:
    """Check the request, then hand the training to ``submit(kind, config_json, work,
    owner_id)``, which returns its job id: the page's job runner, or the terminal's runner in
    this thread. The work leaves the training result in ``holder["result"]``; a cancelled job
    keeps the checkpoint it wrote."""
    authorise(db, person)
    train = _trainer(config)
    backend = "ddpm" if isinstance(config, DDPMTrainConfig) else "lora"
    out = {} if holder is None else holder

    def work(progress: Progress, cancel: CancelToken) -> str:
        result = train(workspace, config, progress, cancel)
        out["result"] = result
        if result.status == "cancelled":  # a checkpoint was written; the job says cancelled
            raise Cancelled(f"cancelled at step {result.steps_done}")
        return f"{result.model_id}: {result.steps_done} steps, loss {result.final_loss:.4f}"

    return submit(f"train-{backend}", asdict(config), work, person.id or None)
