"""A linear probe: logistic regression on frozen features, the simplest honest baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyp_core.data.cache import PixelCache
from polyp_core.data.manifest import Manifest
from polyp_core.diagnostics.features import extract_features
from polyp_core.progress import Progress, no_progress


@dataclass(frozen=True)
class ProbeResult:
    classes: tuple[str, ...]
    macro_f1: float
    balanced_accuracy: float
    per_class_f1: dict[str, float]
    n_train: int
    n_test: int
    backbone: str
    size: int


def linear_probe(manifest: Manifest, cache: PixelCache, backbone: str = "efficientnet_lite0",
                 size: int = 224, test_split: str = "test", scheme: str | None = None,
                 C: float = 0.1, progress: Progress = no_progress) -> ProbeResult:
    """Fit a class-balanced logistic regression on the train split's features, score a split.

    Raises:
        ValueError: when a split is empty.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = manifest.class_counts(scheme)["all"]
    data = {}
    for split in ("train", test_split):
        items = manifest.split_items(split)
        if not items:
            raise ValueError(f"data set {manifest.name!r} has no {split} images")
        pixels = [cache.rgb(i.image, i.sha256, size) for i in items]
        data[split] = (extract_features(pixels, backbone, progress=progress),
                       np.array([manifest.label_of(i, scheme) for i in items]))
    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=C, max_iter=5000, class_weight="balanced"))
    model.fit(*data["train"])
    features, truth = data[test_split]
    predicted = model.predict(features)
    labels = list(classes)
    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return ProbeResult(
        classes=tuple(labels),
        macro_f1=float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        balanced_accuracy=float(balanced_accuracy_score(truth, predicted)),
        per_class_f1={c: float(v) for c, v in zip(labels, per_class)},
        n_train=len(data["train"][1]), n_test=len(truth), backbone=backbone, size=size)
