"""The segmentation quality gate inside an experiment: fold by fold, a U-Net that learned from
the fold's real training part only keeps the selected synthetic images whose mask it finds."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from polyp_core.backbones import WeightsRegistry
from polyp_core.data.cache import PixelCache
from polyp_core.experiment.config import ExperimentConfig
from polyp_core.executors import Executor, LocalExecutor
from polyp_core.experiment.plan import ExperimentPlan
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.segment import gate as quality_gate
from polyp_core.data.tensors import ImageRef
from polyp_core.segment.train import MaskTensors, load_masked
from polyp_core.tasks import GATED
from polyp_core.training import TrainConfig


@dataclass
class GateShared:
    """What every gate of a run reads (sent once to an executor's workers): the real images
    and masks, every fold's candidates, how a gate trains, its seed, the weights registry."""

    real: MaskTensors
    candidates: MaskTensors
    train: TrainConfig
    seed: int
    registry: WeightsRegistry | None


def gate_unit(shared: GateShared, unit: tuple, progress: Progress, cancel: CancelToken | None,
              device: torch.device | None) -> np.ndarray:
    """One gate: a U-Net that learned from the real images ``learn`` only, and its IoU of the
    candidates ``score`` (a fold's whole training part goes through ``fold_gate``)."""
    learn, score, whole_fold, _ = unit
    if whole_fold:
        return quality_gate.fold_gate(shared.real, learn, shared.candidates.subset(score),
                                      shared.train, shared.seed, device, shared.registry,
                                      cancel)
    model = quality_gate.train_gate(shared.real.subset(learn), shared.train, shared.seed,
                                    device, shared.registry, cancel=cancel)
    return quality_gate.gate_ious(model, shared.candidates.subset(score))


def gate_selections(config: ExperimentConfig, plan: ExperimentPlan, pixels: PixelCache,
                    progress: Progress = no_progress, cancel: CancelToken | None = None,
                    device: torch.device | None = None,
                    registry: WeightsRegistry | None = None,
                    frames_of: dict[str, list[str]] | None = None,
                    executor: Executor | None = None) -> ExperimentPlan:
    """The segmentation gate, fold by fold: a U-Net learns from the fold's real training part
    only (never its validation or test part), scores the fold's selected images, and those
    under ``min_gate_iou`` (the paper's 0.7 when unset) leave the selection; with
    ``gate_folds`` the gate is cross-fitted (:func:`cross_fit_gates`; ``frames_of``: each
    synthetic image's SHA-256 -> the real frames it was made of). Every gate of every fold is
    one training on ``executor`` (here, one after another, when None). Returns the plan
    with, per fold, what its gate learnt from and kept (``plan.gate``) and the gated
    selections: in ``plan.gated`` for a ``gated`` arm beside the ungated ``augmented`` one,
    else in place of the selections.

    Raises:
        ValueError: a fold's gate kept no image (the augmented arm would equal the baseline).
    """
    threshold = config.policy.min_gate_iou
    threshold = quality_gate.PAPER_THRESHOLD if threshold is None else threshold
    gate_train = quality_gate.GATE_TRAIN
    real = load_masked(plan.real, gate_train.image_size, pixels)
    union = list({r.sha256: r for sel in plan.selections if sel for r in sel.images}.values())
    position = {r.sha256: n for n, r in enumerate(union)}
    candidates = load_masked(union, gate_train.image_size, pixels)
    units, owners, parts_of = [], [], {}
    for f, (fold, selection) in enumerate(zip(plan.folds, plan.selections)):
        if selection is None:
            continue
        scored = [position[r.sha256] for r in selection.images]
        if config.policy.gate_folds >= 2:
            gates, parts_of[f] = cross_fit_gates(plan, list(fold.train), selection.images,
                                                 config.policy.gate_folds, frames_of or {},
                                                 config.seeds[0])
            for name, learn, mine in gates:
                units.append((learn, [scored[n] for n in mine], False,
                              f"{fold.name} · gate blind to part {name}"))
                owners.append((f, mine))
        else:
            units.append((list(fold.train), scored, True, f"{fold.name} · its gate"))
            owners.append((f, None))
    labels = [f"{u[3]} ({n + 1}/{len(units)}) · " for n, u in enumerate(units)]
    progress(0, max(len(units), 1), f"training {len(units)} segmentation gates")
    found = (executor or LocalExecutor()).map(
        gate_unit, GateShared(real, candidates, gate_train, config.seeds[0], registry), units,
        labels, progress, cancel, device)
    ious_of = {f: np.full(len(sel.images), np.nan) for f, sel in enumerate(plan.selections)
               if sel is not None}
    for (f, mine), ious in zip(owners, found):
        if mine is None:
            ious_of[f] = np.asarray(ious, dtype=float)
        else:
            ious_of[f][mine] = ious
    selections, info = [], []
    for f, (fold, selection) in enumerate(zip(plan.folds, plan.selections)):
        if selection is None:
            selections.append(None)
            continue
        ious, parts = ious_of[f], parts_of.get(f)
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


def cross_fit_gates(plan: ExperimentPlan, train: list[int], images: list[ImageRef], k: int,
                    frames_of: dict[str, list[str]], seed: int
                    ) -> tuple[list[tuple[str, list[int], list[int]]], dict]:
    """The gates of a cross-fit over the fold's training part: its groups are dealt into ``k``
    parts (seeded); gate ``p`` learns from the other parts only and scores the images made on
    a frame of part ``p``. An image made of frames of several parts (a copy-paste polyp and
    its background) is scored by a gate that learned from none of them (trained for it); an
    image made of no training frame by a gate on the whole training part. Returns each gate
    to train, ``(name, the real images it learns from, the images it scores)``, and, per
    gate, what it leaves out and scores (an image made of frames of every part is scored by
    none)."""
    groups = sorted({plan.group_of[i] for i in train})
    order = np.random.default_rng(seed).permutation(len(groups))
    part_of_group = {groups[j]: n % k for n, j in enumerate(order)}
    index_of = {plan.real[i].sha256: i for i in train}
    # each image: the parts of the training frames it was made of
    needs = []
    for ref in images:
        used = [index_of[s] for s in frames_of.get(ref.sha256, []) if s in index_of]
        needs.append(frozenset(part_of_group[plan.group_of[i]] for i in used))
    gates, parts = [], {}
    for left_out in sorted(set(needs), key=lambda s: (len(s), sorted(s))):
        mine = [n for n, need in enumerate(needs) if need == left_out]
        learn = [i for i in train if part_of_group[plan.group_of[i]] not in left_out]
        name = "+".join(str(p + 1) for p in sorted(left_out)) or "none"
        if not learn:  # made of frames of every part: no gate is blind to all of them
            parts[name] = {"left_out_parts": sorted(p + 1 for p in left_out),
                           "learned_from": 0, "scored": 0, "not_scored": len(mine)}
            continue
        gates.append((name, learn, mine))
        parts[name] = {"left_out_parts": sorted(p + 1 for p in left_out),
                       "learned_from": len(learn), "scored": len(mine)}
    return gates, parts


def cross_fitted_ious(real: MaskTensors, plan: ExperimentPlan, train: list[int],
                      images: list[ImageRef], candidates: MaskTensors, k: int,
                      frames_of: dict[str, list[str]], seed: int,
                      device: torch.device | None = None,
                      registry: WeightsRegistry | None = None,
                      cancel: CancelToken | None = None) -> tuple[np.ndarray, dict]:
    """The cross-fitted gate's IoUs of ``images`` (``candidates``: their images and masks),
    its gates (:func:`cross_fit_gates`) trained here one after another; and, per gate, what
    it left out and scored."""
    gates, parts = cross_fit_gates(plan, train, images, k, frames_of, seed)
    found = LocalExecutor().map(
        gate_unit, GateShared(real, candidates, quality_gate.GATE_TRAIN, seed, registry),
        [(learn, mine, False, name) for name, learn, mine in gates],
        [f"gate {name} · " for name, _, _ in gates], no_progress, cancel, device)
    ious = np.full(len(images), np.nan)
    for (_, _, mine), scores in zip(gates, found):
        ious[mine] = scores
    return ious, parts
