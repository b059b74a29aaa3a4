"""The segmentation gate: does a synthetic image show its polyp where its mask says?

A U-Net (the segmentation engine's, :mod:`polyp_core.segment.train`) learns from the real
training frames of a data set and predicts the mask of every synthetic image stored with one;
the IoU of prediction and intended mask is stored per image and gate (``gate_score``). One of
the papers behind the studio kept a generated polyp only above IoU 0.7. A gate is only as good
as its model, so its reference sits beside it: the IoU distribution of the data set's held-out
real frames (validation and test splits) under the same model.

Retrain does not reuse a stored gate: with ``SelectionPolicy.min_gate_iou`` each fold trains its
own gate on that fold's training part only (:func:`fold_gate`), because a gate that learnt from
a test fold's frames would leak them into the choice of training images.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyp_core.data.tensors import ImageRef
from polyp_core.training import TrainConfig
from polyp_core.data.cache import PixelCache
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.segment.metrics import mask_scores
from polyp_core.segment.train import MaskTensors, load_masked, predict_masks, train_segmenter
from polyp_core.validation import checked, rule

if TYPE_CHECKING:
    from polyp_core.backbones import WeightsRegistry
    from polyp_core.workspace import Workspace
    from review_db.database import Database

#: the gate's U-Net: the decoder on cached Lite0 features (the fast arm), fixed epochs
GATE_TRAIN = TrainConfig(image_size=128, epochs=8, batch_size=16, lr=1e-3,
                                   freeze_backbone=True, augment=False)
#: the IoU above which the paper behind the gate kept an image
PAPER_THRESHOLD = 0.7


@checked
@dataclass(frozen=True)
class GateConfig:
    """A gate run.

    Attributes:
        dataset: the real data set whose training split the gate model learns from (its
            validation and test splits give the reference).
        generator: score this generator's images (default: every synthetic image with a mask).
        train: the U-Net's training (size, epochs, fast arm).
        threshold: the IoU the acceptance rates are counted at.
    """

    dataset: str = rule(text=True)
    generator: str | None = rule(None, text=True)
    train: TrainConfig = GATE_TRAIN
    threshold: float = rule(PAPER_THRESHOLD, lo=0.0, hi=1.0)
    seed: int = 0


def train_gate(real: MaskTensors, train: TrainConfig, seed: int,
               device: torch.device | None = None, registry: WeightsRegistry | None = None,
               progress: Progress = no_progress, cancel: CancelToken | None = None
               ) -> torch.nn.Module:  # pragma: no mutate block
    """A gate model: the U-Net trained ``train.epochs`` epochs on ``real`` (no early stop:
    every real frame it may see is training data)."""
    empty = real.subset([])
    return train_segmenter(real, empty, train, seed, device, registry, progress, cancel,
                           label="gate · ").model


def gate_ious(model: torch.nn.Module, data: MaskTensors, device: torch.device | None = None
              ) -> np.ndarray:
    """The IoU of the model's predicted mask with each image's own mask (NaN: an empty mask)."""
    device = device or next(model.parameters()).device
    return mask_scores(predict_masks(model, data, device), data.masks.numpy())["iou"]


def passes(iou: float, threshold: float) -> bool:
    """The gate's rule for one image: its IoU at or above ``threshold`` (a tie passes, as in
    the paper's "IoU > 0.7" read at the printed precision); NaN (an empty intended mask) never
    passes."""
    return not np.isnan(iou) and iou >= threshold


def kept_by_gate(items: list, ious: np.ndarray | list[float], threshold: float) -> list:
    """The ``items`` whose IoU (same order) passes the gate at ``threshold``."""
    if len(items) != len(ious):
        raise ValueError(f"{len(items)} images but {len(ious)} IoUs")
    return [item for item, iou in zip(items, ious) if passes(float(iou), threshold)]


def acceptance(keys: list[str], ious: np.ndarray | list[float], threshold: float
               ) -> dict[str, dict]:
    """Acceptance per key (``"generator / class"``): how many images of each key pass the gate
    at ``threshold``, of how many (an image with an empty mask counts and never passes), with
    the Wilson interval (:func:`rate`)."""
    if len(keys) != len(ious):
        raise ValueError(f"{len(keys)} keys but {len(ious)} IoUs")
    counts: dict[str, list[int]] = {}
    for key, iou in zip(keys, ious):
        tally = counts.setdefault(key, [0, 0])
        tally[0] += int(passes(float(iou), threshold))
        tally[1] += 1
    return {key: rate(*tally) for key, tally in counts.items()}


def rate(accepted: int, n: int) -> dict:
    """An acceptance rate with its Wilson 95% interval (over images)."""
    from scipy.stats import binomtest

    if n == 0:
        return {"accepted": 0, "n": 0, "rate": None, "ci": None}
    ci = binomtest(accepted, n).proportion_ci(method="wilson")
    return {"accepted": accepted, "n": n, "rate": accepted / n, "ci": [ci.low, ci.high]}


def distribution(ious: np.ndarray, threshold: float) -> dict:
    """Quartiles of an IoU distribution and the share at or above ``threshold``."""
    valid = ious[~np.isnan(ious)]
    if not len(valid):
        return {"n": 0}
    q1, median, q3 = np.percentile(valid, [25, 50, 75])
    return {"n": int(len(valid)), "mean": float(valid.mean()), "sd": float(valid.std(ddof=1))
            if len(valid) > 1 else 0.0, "q1": float(q1), "median": float(median), "q3": float(q3),
            "at_threshold": rate(sum(passes(float(v), threshold) for v in valid),
                                 int(len(valid)))}


@dataclass
class GateResult:
    gate: str
    folder: Path
    reference: dict
    rates: dict  # "generator / class" -> rate
    scores: dict[str, float | None] = field(default_factory=dict)

    def lines(self) -> list[str]:  # pragma: no mutate block
        def pct(r: dict) -> str:
            return (f"{r['rate']:.0%} [{r['ci'][0]:.0%}, {r['ci'][1]:.0%}] "
                    f"({r['accepted']}/{r['n']})") if r["n"] else "-"

        ref = self.reference
        out = [f"gate {self.gate}: reference, held-out real frames under the same model: "
               f"IoU median {ref['median']:.3f} (quartiles {ref['q1']:.3f}-{ref['q3']:.3f}, "
               f"n={ref['n']}), at or above the threshold {pct(ref['at_threshold'])}"
               if ref.get("n") else f"gate {self.gate}: no held-out real frame to compare with"]
        out += [f"  {name}: accepted {pct(r)}" for name, r in sorted(self.rates.items())]
        return out


def _masked_synthetic(db: Database, config: GateConfig) -> list[ImageRef]:  # pragma: no mutate block
    from polyp_core.pool import mask_path
    from review_db import queries

    refs = []
    with db.session() as session:
        for image in queries.synthetic_images(session, config.generator):
            extra = (image.provenance.extra if image.provenance else None) or {}
            if extra.get("mask_sha256"):
                mask = mask_path(Path(image.path).parent, extra["mask_sha256"])
                refs.append(ImageRef(image.sha256, image.path, image.label, "synthetic",
                                     str(mask)))
    return refs


def run_gate(db: Database, workspace: Workspace, config: GateConfig,
             progress: Progress = no_progress, cancel: CancelToken | None = None,
             registry: WeightsRegistry | None = None) -> GateResult:  # pragma: no mutate block
    """Train the gate model on the data set's training split, score every synthetic image with
    a mask, and store the scores and the gate's run (``kind="gate"``: config, the reference
    distribution, acceptance rates per generator and class, every image's IoU).

    Raises:
        KeyError: no such data set.
        ValueError: frames without masks, or no synthetic image with a mask to score.
    """
    from polyp_core.runs import save_run
    from review_db import queries

    manifest = workspace.load_manifest(config.dataset)
    train_items = manifest.split_items("train")
    held_items = manifest.split_items("valid") + manifest.split_items("test")
    unmasked = [i.id for i in train_items + held_items if not i.mask]
    if unmasked:
        raise ValueError(f"data set {config.dataset!r}: {len(unmasked)} frames have no mask "
                         f"(e.g. {', '.join(unmasked[:3])}); the gate learns from masks")
    synthetic = _masked_synthetic(db, config)
    if not synthetic:
        raise ValueError("no synthetic image with a mask to score"
                         + (f" from generator {config.generator!r}" if config.generator else ""))

    def refs(items: list) -> list[ImageRef]:
        return [ImageRef(i.sha256, i.image, manifest.label_of(i), mask=i.mask) for i in items]

    pixels, size = PixelCache(workspace.pixel_cache_dir), config.train.image_size
    model = train_gate(load_masked(refs(train_items), size, pixels), config.train, config.seed,
                       registry=registry, progress=progress, cancel=cancel)
    reference = gate_ious(model, load_masked(refs(held_items), size, pixels))
    ious = gate_ious(model, load_masked(synthetic, size, pixels))
    made_by = _generators(db, [r.sha256 for r in synthetic])
    keys = [f"{made_by[ref.sha256]} / {ref.label or '?'}" for ref in synthetic]
    gate_id = uuid.uuid4().hex[:12]
    scores = {r.sha256: None if np.isnan(i) else float(i) for r, i in zip(synthetic, ious)}
    results = {"reference": distribution(reference, config.threshold),
               "rates": acceptance(keys, ious, config.threshold),
               "threshold": config.threshold, "unit": "images (Wilson 95% intervals)",
               "trained_on": {"dataset": config.dataset, "splits": ["train"],
                              "images": len(train_items)},
               "scores": scores}
    folder = workspace.runs_dir / gate_id
    folder.mkdir(parents=True, exist_ok=True)
    save_run(db, workspace, gate_id, folder, "gate", {
        "dataset": config.dataset, "generator": config.generator, "threshold": config.threshold,
        "image_size": size, "epochs": config.train.epochs, "seed": config.seed}, results,
        {"train": [i.sha256 for i in train_items], "reference": [i.sha256 for i in held_items],
         "synthetic": [r.sha256 for r in synthetic]})
    with db.session() as session:
        queries.store_gate_scores(session, gate_id, scores)
    return GateResult(gate_id, folder, results["reference"], results["rates"], scores)


def _generators(db: Database, shas: list[str]) -> dict[str, str]:  # pragma: no mutate block
    from review_db import queries

    with db.session() as session:
        return {i.sha256: i.provenance.generator if i.provenance else "?"
                for i in queries.synthetic_page(session, shas=shas)[0]}


def fold_gate(real: MaskTensors, train_index: list[int], synthetic: MaskTensors,
              train: TrainConfig, seed: int, device: torch.device | None = None,
              registry: WeightsRegistry | None = None, cancel: CancelToken | None = None
              ) -> np.ndarray:  # pragma: no mutate block
    """One fold's gate: a model trained on the fold's training part only (``train_index``
    into ``real``), and its IoU of every candidate synthetic image."""
    model = train_gate(real.subset(train_index), train, seed, device, registry, cancel=cancel)
    return gate_ious(model, synthetic)
