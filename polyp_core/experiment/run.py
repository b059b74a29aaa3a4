"""Run an experiment: plan it (unless planned), gate its selection when asked, hand the arms to
the task (``polyp_core.tasks``) to train, predict and score, and store the run with its image
lists and ``report.html``."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from polyp_core.backbones import WeightsRegistry
from polyp_core.data.cache import PixelCache
from polyp_core.data.tensors import ImageRef
from polyp_core.experiment.config import ExperimentConfig, ExperimentResult
from polyp_core.experiment.gating import gate_selections
from polyp_core.experiment.leakage import generator_summary, made_of
from polyp_core.experiment.plan import ExperimentPlan, plan_experiment
from polyp_core.experiment.report import write_report
from polyp_core.executors import Executor, LocalExecutor
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.runs import load_run, new_run_dir, save_run
from polyp_core.tasks import BASELINE, GATED, SYNTHETIC, TaskJob, task
from polyp_core.workspace import Workspace
from review_db.database import Database


def run_experiment(db: Database, workspace: Workspace, config: ExperimentConfig,
                   progress: Progress = no_progress, cancel: CancelToken | None = None,
                   device: torch.device | None = None,
                   registry: WeightsRegistry | None = None,
                   feature_cache: dict | None = None,
                   plan: ExperimentPlan | None = None,
                   executor: Executor | None = None) -> ExperimentResult:
    """Train every arm over every fold and seed, evaluate on each fold's real test part
    (pooled out-of-fold with ``folds``) and store the run.

    ``feature_cache``: a dict the caller keeps to share frozen pretrained-backbone features
    (by content hash) with later runs; each run keeps its own otherwise. ``plan``: the plan
    :func:`plan_experiment` made for this config before the job was queued (made here when
    not given), so a run is planned once. ``executor``: where the trainings run
    (``polyp_core.executors``; one after another in this process when None); the plan, the
    leak checks and the storing stay here, so both store the same run.

    Raises:
        ValueError: see :func:`plan_experiment`.
        Cancelled: when ``cancel`` is set.
    """
    plan = plan or plan_experiment(db, workspace, config)
    if (config.policy.min_gate_iou is not None or GATED in config.arms) and any(plan.selections):
        plan = gate_selections(config, plan, PixelCache(workspace.pixel_cache_dir), progress,
                               cancel, device, registry, made_of(db, plan.synthetic_refs),
                               executor)
    progress(0, 1, f"loading {len(plan.real)} real images")
    run_id, folder = new_run_dir(workspace, "retrain")
    try:
        results = task(config.task).run(TaskJob(
            config, plan, PixelCache(workspace.pixel_cache_dir), folder, run_id, progress,
            cancel, device, registry, workspace.load_manifest, feature_cache,
            executor or LocalExecutor()))
    except BaseException:  # a failed, lost or cancelled training: no half-run is left
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _store_run(db, workspace, config, plan, run_id, folder, results, progress)


def _store_run(db: Database, workspace: Workspace, config: ExperimentConfig,
               plan: ExperimentPlan, run_id: str, folder: Path, results: dict,
               progress: Progress) -> ExperimentResult:
    """Add what the selection chose (and from which generators), write ``report.html`` and
    store the run with its image lists."""
    if any(plan.selections):
        counts = [sel.counts for sel in plan.selections]
        results["selection"] = {"counts": counts[0],
                                "ratings_hash": plan.selections[0].ratings_hash}
        if plan.evaluation["kind"] == "grouped cross-validation":
            results["selection"]["per_fold"] = counts
        results["selection"]["generators"] = generator_summary(db, workspace, plan.selections)
    if plan.gate is not None:
        results["gate"] = plan.gate
    write_report(folder, run_id, config.to_json(), results)  # report.html beside the run
    save_run(db, workspace, run_id, folder, "retrain", config.to_json(), results,
             _image_lists(plan, plan.synthetic_refs, config.arms))
    progress(1, 1, f"stored run {run_id}")
    return ExperimentResult(run_id, folder, results)


def trained_on(plan: ExperimentPlan, arms: tuple[str, ...]) -> dict:
    """Per arm and fold, the SHA-256 of the real and synthetic images its networks learned
    from (the fold's training part, early-stopping images apart, and the arm's selection) and
    of the fold's test images: what ``export --run`` hands on."""
    out: dict = {}
    for f, fold in enumerate(plan.folds):
        selection = plan.selections[f]
        for arm in arms:
            synthetic = [] if arm == BASELINE or selection is None else \
                [r.sha256 for r in plan.arm_selection(f, arm).images]
            out.setdefault(arm, {})[fold.name] = {
                "real": [] if arm == SYNTHETIC else [plan.real[i].sha256 for i in fold.train],
                "synthetic": synthetic, "test": [plan.real[i].sha256 for i in fold.test]}
    return out


def _image_lists(plan: ExperimentPlan, synthetic: list[ImageRef],
                 arms: tuple[str, ...] = ()) -> dict:
    """What ``images.json`` stores: the real images with their split (fixed) or the fold that
    tested them (CV), every synthetic image with the folds it trained, and what each arm
    learned from in each fold (``trained``)."""
    if len(plan.folds) == 1:
        fold = plan.folds[0]
        images = {part: [asdict(plan.real[i]) for i in getattr(fold, part)]
                  for part in ("train", "valid", "test")}
        images["synthetic"] = [asdict(r) for r in synthetic]
        return images | {"trained": trained_on(plan, arms)}
    tested_in = {i: fold.name for fold in plan.folds for i in fold.test}
    used_in: dict[str, list[str]] = {}
    for fold, sel in zip(plan.folds, plan.selections):
        for ref in sel.images if sel else []:
            used_in.setdefault(ref.sha256, []).append(fold.name)
    return {"real": [asdict(r) | {"group": g, "tested_in": tested_in.get(i, "train only")}
                     for i, (r, g) in enumerate(zip(plan.real, plan.group_of))],
            "synthetic": [asdict(r) | {"folds": used_in[r.sha256]} for r in synthetic],
            "trained": trained_on(plan, arms)}


def repeat_experiment(db: Database, workspace: Workspace, run_id: str,
                      **kwargs: object) -> ExperimentResult:
    """Run a stored experiment's config again (the selection reads today's ratings)."""
    config = ExperimentConfig.from_json(load_run(db, run_id)["config"])
    return run_experiment(db, workspace, config, **kwargs)
