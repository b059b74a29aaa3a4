"""The linear probe: a baseline that deserves the name.

Logistic regression (scikit-learn) on the frozen backbone's pooled features of the training
images, standardised, classes weighted by their frequency; its regularisation ``C`` is chosen
by an inner cross-validation that keeps each patient/lesion in one fold (stratified by class)
and scores macro-F1. A fine-tuned network that does not beat this on the same features and the
same test images is not yet evidence of anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyp_core.backbones import WeightsRegistry
from polyp_core.data.tensors import ImageTensors
from polyp_core.classify.metrics import classification_metrics
from polyp_core.classify.model import build_classifier
from polyp_core.classify.train import frozen_features
from polyp_core.training import TrainConfig

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))


def embed(train_config: TrainConfig, classes: Sequence[str], sets: Sequence[ImageTensors],
          device: torch.device, registry: WeightsRegistry | None = None,
          feature_cache: dict | None = None) -> list[np.ndarray]:
    """Pooled features of each image set through the (pretrained, frozen) backbone; from
    ``feature_cache`` when the run's frozen-backbone arms embedded the same images."""
    model, spec = build_classifier(train_config.backbone, tuple(classes), train_config.image_size,
                                   train_config.hidden, train_config.dropout,
                                   train_config.pretrained, registry)
    model = model.to(device)
    return [frozen_features(feature_cache, train_config, model, spec, s, device).cpu().numpy()
            for s in sets]


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, groups: Sequence[str], seed: int = 0,
              grid: Sequence[float] = C_GRID, unit: str = "patient/lesion") -> tuple[Pipeline,
              dict]:
    """The probe with ``C`` chosen by inner grouped, stratified CV on macro-F1.

    Returns:
        the fitted pipeline, and what the choice rested on (``C``, folds, scores).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model(c: float) -> Pipeline:
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=c, class_weight="balanced", max_iter=5000))

    groups = np.asarray([str(g) for g in groups])
    per_class = [len(set(groups[train_y == k])) for k in np.unique(train_y)]
    folds = min(5, min(per_class))
    if folds < 2:  # one group of a class: no grouped CV is possible
        chosen, scores, how = 1.0, {}, "C = 1 (a class has one training group: no inner CV)"
    else:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        # the inner folds in parallel processes (each one BLAS thread): 3.4x faster than one
        # process on this 2-core machine, measured on NeoPolyp features
        jobs = max(1, min(folds, os.cpu_count() or 1))
        scores = {c: float(np.mean(cross_val_score(model(c), train_x, train_y, groups=groups,
                                                   cv=splitter, scoring="f1_macro",
                                                   n_jobs=jobs)))
                  for c in grid}
        chosen = max(scores, key=scores.get)
        how = f"C = {chosen:g} by {folds}-fold inner CV grouped by {unit} (macro-F1)"
    fitted = model(chosen).fit(train_x, train_y)
    return fitted, {"C": chosen, "folds": folds, "cv_macro_f1": {f"{c:g}": s for c, s in
                                                                 scores.items()}, "how": how}


def probe_arm(train: ImageTensors, test: ImageTensors, groups: Sequence[str],
              classes: Sequence[str], train_config: TrainConfig, device: torch.device,
              registry: WeightsRegistry | None = None, seed: int = 0,
              unit: str = "patient/lesion", feature_cache: dict | None = None) -> dict:
    """Train the probe on ``train`` and evaluate it on ``test``: metrics as a per-seed entry
    (one: the probe is deterministic) with its predictions and how ``C`` was chosen."""
    train_x, test_x = embed(train_config, classes, [train, test], device, registry,
                            feature_cache)
    fitted, choice = fit_probe(train_x, train.labels.numpy(), groups, seed, unit=unit)
    predicted = fitted.predict(test_x)
    metrics = classification_metrics(test.labels.numpy(), predicted, classes)
    metrics.update(seed=seed, predicted=predicted.tolist(), n_train=len(train), probe=choice)
    return metrics
