"""A linear probe: logistic regression on frozen features, the simplest honest baseline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.data.cache import PixelCache
from polyp_core.data.manifest import Manifest
from polyp_core.diagnostics.features import extract_features
from polyp_core.progress import Progress, no_progress

if TYPE_CHECKING:
    from collections.abc import Callable

    from sklearn.pipeline import Pipeline

    from polyp_core.data.manifest import ManifestItem
    from polyp_core.progress import CancelToken
    from polyp_core.workspace import Workspace


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


def _fit_probe(manifest: Manifest, pixels_of: Callable[[ManifestItem], np.ndarray],
               backbone: str, test_split: str, scheme: str | None, C: float,
               progress: Progress) -> tuple[Pipeline, np.ndarray, np.ndarray, int]:
    """A class-balanced logistic regression on the train split's features (``pixels_of`` turns
    a manifest item into the pixels the backbone sees).

    Returns:
        the fitted model, the test split's features and labels, and the number of train images.

    Raises:
        ValueError: when a split is empty.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = {}
    for split in ("train", test_split):
        items = manifest.split_items(split)
        if not items:
            raise ValueError(f"data set {manifest.name!r} has no {split} images")
        data[split] = (extract_features([pixels_of(i) for i in items], backbone, progress=progress),
                       np.array([manifest.label_of(i, scheme) for i in items]))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, class_weight="balanced"))
    model.fit(*data["train"])
    return model, *data[test_split], len(data["train"][1])


def linear_probe(manifest: Manifest, cache: PixelCache, backbone: str = "efficientnet_lite0",
                 size: int = 224, test_split: str = "test", scheme: str | None = None,
                 C: float = 0.1, progress: Progress = no_progress) -> ProbeResult:
    """Fit a class-balanced logistic regression on the train split's features, score a split.

    Raises:
        ValueError: when a split is empty.
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score

    classes = manifest.class_counts(scheme)["all"]
    model, features, truth, n_train = _fit_probe(
        manifest, lambda i: cache.rgb(i.image, i.sha256, size), backbone, test_split, scheme, C, progress)
    predicted = model.predict(features)
    labels = list(classes)
    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return ProbeResult(
        classes=tuple(labels),
        macro_f1=float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        balanced_accuracy=float(balanced_accuracy_score(truth, predicted)),
        per_class_f1={c: float(v) for c, v in zip(labels, per_class)},
        n_train=n_train, n_test=len(truth), backbone=backbone, size=size)


@dataclass(frozen=True)
class ClassFidelity:
    """How a probe trained on real frames reads a generator's samples, class by class.

    ``real_*`` is the ceiling: the same probe on real test frames at the generator's
    resolution. Confusion rows are the asked-for (or true) class, columns the probe's reading.
    """

    classes: tuple[str, ...]
    size: int
    n_per_class: int
    real_balanced_accuracy: float
    real_confusion: list[list[int]]
    generated_balanced_accuracy: float
    generated_confusion: list[list[int]]

    def recall(self, which: str = "generated") -> dict[str, float]:
        matrix = np.array(self.generated_confusion if which == "generated" else self.real_confusion)
        return {c: float(row[i] / max(row.sum(), 1)) for i, (c, row) in enumerate(zip(self.classes, matrix))}

    def lines(self) -> list[str]:
        out = [f"probe on real frames at {self.size} px: balanced accuracy "
               f"{self.real_balanced_accuracy:.3f} on real test frames, "
               f"{self.generated_balanced_accuracy:.3f} on {self.n_per_class} samples per class "
               f"(chance {1 / len(self.classes):.3f})"]
        for which, matrix in (("real", self.real_confusion), ("generated", self.generated_confusion)):
            out.append(f"  {which:9s} read as " + " ".join(f"{c:>5s}" for c in self.classes))
            out += [f"  {c:>9s}         " + " ".join(f"{v:5d}" for v in row)
                    for c, row in zip(self.classes, matrix)]
        return out


def class_fidelity(manifest: Manifest, cache: PixelCache,
                   generated: dict[str, Sequence[np.ndarray]],
                   size: int, backbone: str = "efficientnet_lite0", feature_size: int = 128,
                   test_split: str = "test", scheme: str | None = None, C: float = 0.1,
                   progress: Progress = no_progress) -> ClassFidelity:
    """Do a generator's samples carry their class? A linear probe learns the classes from the
    real train split, seen at the generator's resolution ``size`` (and resized to
    ``feature_size`` for the backbone, as the samples are), then reads the samples.

    Raises:
        ValueError: when a split is empty or ``generated`` names a class the data set lacks.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    from polyp_core.data.images import resize_rgb

    labels = list(manifest.class_counts(scheme)["all"])
    unknown = sorted(set(generated) - set(labels))
    if unknown:
        raise ValueError(f"data set {manifest.name!r} has no class {', '.join(unknown)}")
    def view(rgb: np.ndarray) -> np.ndarray:
        return resize_rgb(resize_rgb(rgb, size), feature_size)
    model, real_features, real_truth, _ = _fit_probe(
        manifest, lambda i: view(cache.rgb(i.image, i.sha256, size)), backbone, test_split, scheme, C,
        progress)
    real_pred = model.predict(real_features)
    asked = [c for c in labels if len(generated.get(c, ()))]
    if not asked:
        raise ValueError("no generated images to read")
    gen_truth = np.array([c for c in asked for _ in generated[c]])
    gen_pred = model.predict(extract_features([view(im) for c in asked for im in generated[c]], backbone))
    return ClassFidelity(
        classes=tuple(labels), size=size, n_per_class=min(len(generated[c]) for c in asked),
        real_balanced_accuracy=float(balanced_accuracy_score(real_truth, real_pred)),
        real_confusion=confusion_matrix(real_truth, real_pred, labels=labels).tolist(),
        generated_balanced_accuracy=float(balanced_accuracy_score(gen_truth, gen_pred)),
        generated_confusion=confusion_matrix(gen_truth, gen_pred, labels=labels).tolist())


def check_generator_classes(workspace: Workspace, model_id: str, dataset: str, n: int = 30,
                            checkpoint: str | None = None, classes: Sequence[str] | None = None,
                            seed: int = 0, steps: int = 200, guidance: float = 4.0,
                            scheduler: str = "ddpm", progress: Progress = no_progress,
                            cancel: CancelToken | None = None) -> ClassFidelity:
    """Sample ``n`` images per class from a workspace generator and read them with
    :func:`class_fidelity` (the same seeds for every class, so only the class differs).

    Raises:
        KeyError: no such generator or data set; ValueError: a class the generator or the
        data set does not know.
    """
    from polyp_core.generation.backends import load_generator
    from polyp_core.generation.request import SampleRequest

    manifest = workspace.load_manifest(dataset)
    generator = load_generator(workspace, model_id, checkpoint)
    classes = list(classes or manifest.class_counts()["all"])
    generated = {}
    for i, cls in enumerate(classes):
        request = SampleRequest(class_label=cls, n=n, seed=seed, steps=steps, guidance=guidance,
                                scheduler=scheduler)
        generated[cls] = [im.rgb for im in generator.sample(
            request, lambda d, t, m, i=i, cls=cls: progress(i * t + d, len(classes) * t, f"{cls}: {m}"),
            cancel)]
    return class_fidelity(manifest, PixelCache(workspace.pixel_cache_dir), generated, generator.size)
