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
from polyp_core.data.tensors import ImageRef
from polyp_core.segment.train import MaskTensors, load_masked
from polyp_core.tasks import GATED


def gate_selections(config: ExperimentConfig, plan: ExperimentPlan, pixels: PixelCache,
                    progress: Progress = no_progress, cancel: CancelToken | None = None,
                    device: torch.device | None = None,
                    registry: WeightsRegistry | None = None,
                    frames_of: dict[str, list[str]] | None = None) -> ExperimentPlan:
    """The segmentation gate, fold by fold: a U-Net learns from the fold's real training part
    only (never its validation or test part), scores the fold's selected images, and those
    under ``min_gate_iou`` (the paper's 0.7 when unset) leave the selection; with
    ``gate_folds`` the gate is cross-fitted (:func:`cross_fitted_ious`; ``frames_of``: each
    synthetic image's SHA-256 -> the real frames it was made of). Returns the plan
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
        if config.policy.gate_folds >= 2:
            ious, parts = cross_fitted_ious(real, plan, list(fold.train), selection.images,
                                            candidates, config.policy.gate_folds,
                                            frames_of or {}, config.seeds[0], device, registry,
                                            cancel)
        else:
            ious = quality_gate.fold_gate(real, list(fold.train), candidates,
                                          quality_gate.GATE_TRAIN, config.seeds[0], device,
                                          registry, cancel)
            parts = None
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
                             for r, v in zip(selection.images, ious)}}
                    | ({"cross_fitted": parts} if parts else {}))
    if GATED in config.arms:
        return replace(plan, gated=selections, gate=info)
    return replace(plan, selections=selections, gate=info)


def cross_fitted_ious(real: MaskTensors, plan: ExperimentPlan, train: list[int],
                      images: list[ImageRef], candidates: MaskTensors, k: int,
                      frames_of: dict[str, list[str]], seed: int,
                      device: torch.device | None = None,
                      registry: WeightsRegistry | None = None,
                      cancel: CancelToken | None = None) -> tuple[np.ndarray, dict]:
    """The gate cross-fitted over the fold's training part: its groups are dealt into ``k``
    parts (seeded); gate ``p`` learns from the other parts only and scores the images made on
    a frame of part ``p``. An image made of frames of several parts (a copy-paste polyp and
    its background) is scored by a gate that learned from none of them (trained for it); an
    image made of no training frame by a gate on the whole training part. Returns the IoUs
    (the images' order) and, per gate, what it left out and scored."""
    groups = sorted({plan.group_of[i] for i in train})
    order = np.random.default_rng(seed).permutation(len(groups))
    part_of_group = {groups[j]: n % k for n, j in enumerate(order)}
    index_of = {plan.real[i].sha256: i for i in train}
    # each image: the parts of the training frames it was made of
    needs = []
    for ref in images:
        used = [index_of[s] for s in frames_of.get(ref.sha256, []) if s in index_of]
        needs.append(frozenset(part_of_group[plan.group_of[i]] for i in used))
    ious = np.full(len(images), np.nan)
    parts = {}
    for left_out in sorted(set(needs), key=lambda s: (len(s), sorted(s))):
        mine = [n for n, need in enumerate(needs) if need == left_out]
        learn = [i for i in train if part_of_group[plan.group_of[i]] not in left_out]
        name = "+".join(str(p + 1) for p in sorted(left_out)) or "none"
        if not learn:  # made of frames of every part: no gate is blind to all of them
            parts[name] = {"left_out_parts": sorted(p + 1 for p in left_out),
                           "learned_from": 0, "scored": 0, "not_scored": len(mine)}
            continue
        model = quality_gate.train_gate(real.subset(learn), quality_gate.GATE_TRAIN, seed,
                                        device, registry, cancel=cancel)
        ious[mine] = quality_gate.gate_ious(model, candidates.subset(mine))
        parts[name] = {"left_out_parts": sorted(p + 1 for p in left_out),
                       "learned_from": len(learn), "scored": len(mine)}
    return ious, parts
