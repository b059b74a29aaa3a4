"""The segmentation quality gate inside an experiment: fold by fold, a U-Net that learned from
the fold's real training part only keeps the selected synthetic images whose mask it finds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from polyp_core.backbones import WeightsRegistry
from polyp_core.data.cache import PixelCache
from polyp_core.experiment.config import ExperimentConfig
from polyp_core.experiment.plan import ExperimentPlan
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.segment import gate as quality_gate
from polyp_core.segment.train import load_masked
from polyp_core.tasks import GATED


def gate_selections(config: ExperimentConfig, plan: ExperimentPlan, pixels: PixelCache,
                    progress: Progress = no_progress, cancel: CancelToken | None = None,
                    device: torch.device | None = None,
                    registry: WeightsRegistry | None = None) -> ExperimentPlan:
    """The segmentation gate, fold by fold: a U-Net learns from the fold's real training part
    only (never its validation or test part), scores the fold's selected images, and those
    under ``min_gate_iou`` (the paper's 0.7 when unset) leave the selection. Returns the plan
    with, per fold, what its gate learnt from and kept (``plan.gate``) and the gated
    selections: in ``plan.gated`` for a ``gated`` arm beside the ungated ``augmented`` one,
    else in place of the selections.

    Raises:
        ValueError: a fold's gate kept no image (the augmented arm would equal the baseline).
    """
    threshold = config.policy.min_gate_iou
    threshold = quality_gate.PAPER_THRESHOLD if threshold is None else threshold
    real = load_masked(plan.real, quality_gate.GATE_TRAIN.image_size, pixels)
    selections, info = [], []
    for f, (fold, selection) in enumerate(zip(plan.folds, plan.selections)):
        if selection is None:
            selections.append(None)
            continue
        progress(f, len(plan.folds), f"{fold.name}: training its segmentation gate")
        candidates = load_masked(selection.images, quality_gate.GATE_TRAIN.image_size, pixels)
        ious = quality_gate.fold_gate(real, list(fold.train), candidates,
                                      quality_gate.GATE_TRAIN, config.seeds[0], device,
                                      registry, cancel)
        kept = quality_gate.kept_by_gate(selection.images, ious, threshold)
        if not kept:
            raise ValueError(f"{fold.name}: the segmentation gate (IoU >= {threshold}) kept none of "
                             f"{len(ious)} images; lower `min_gate_iou` or improve the generator")
        counts = {**selection.counts, "gate": {"threshold": threshold, "scored": len(ious),
                                               "kept": len(kept)}}
        selections.append(replace(selection, images=kept, counts=counts))
        info.append({"fold": fold.name, "threshold": threshold,
                     "trained_on": [plan.real[i].sha256 for i in fold.train],
                     "scored": len(ious), "kept": len(kept),
                     "iou": {r.sha256: None if np.isnan(v) else float(v)
                             for r, v in zip(selection.images, ious)}})
    if GATED in config.arms:
        return replace(plan, gated=selections, gate=info)
    return replace(plan, selections=selections, gate=info)
