"""Train a generator (a class-conditional DDPM, or an SD v1.x LoRA) on a data set's training
images: admins in the browser, the terminal's operator on the command line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
from polyp_core.generation.sd_lora import LoraTrainConfig, train_lora
from polyp_core.progress import CancelToken, Cancelled, Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

if TYPE_CHECKING:
    from polyp_core.generation.ddpm import TrainResult

TrainConfig = DDPMTrainConfig | LoraTrainConfig


def _trainer(config: TrainConfig) -> Callable[..., TrainResult]:
    config.validate()
    return train_ddpm if isinstance(config, DDPMTrainConfig) else train_lora


def run(db: Database | None, workspace: Workspace, person: Person, config: TrainConfig,
        progress: Progress = no_progress, cancel: CancelToken | None = None) -> TrainResult:
    """Train in this thread; the training result (status, steps, loss, checkpoints)."""
    authorise(db, person)
    return _trainer(config)(workspace, config, progress, cancel)


def start(db: Database, workspace: Workspace, person: Person, config: TrainConfig,
          submit: Callable[..., str]) -> str:
    """Check the request, then hand the training to a job (``submit(kind, config_json, work,
    owner_id)`` returns its id); a cancelled job keeps the checkpoint it wrote."""
    authorise(db, person)
    train = _trainer(config)
    backend = "ddpm" if isinstance(config, DDPMTrainConfig) else "lora"

    def work(progress: Progress, cancel: CancelToken) -> str:
        result = train(workspace, config, progress, cancel)
        if result.status == "cancelled":  # a checkpoint was written; the job says cancelled
            raise Cancelled(f"cancelled at step {result.steps_done}")
        return f"{result.model_id}: {result.steps_done} steps, loss {result.final_loss:.4f}"

    return submit(f"train-{backend}", asdict(config), work, person.id or None)
