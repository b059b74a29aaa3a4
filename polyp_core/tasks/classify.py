"""The classification task: an EfficientNet (or any registered backbone) classifier per fold,
arm and seed on the histology labels, and the linear probe beside it; per-class metrics of the
pooled test predictions, the cluster bootstrap over the tested groups with the seeds, and the
paired deltas with their regression warnings (``polyp_core.tasks``' protocol)."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polyp_core.classify.metrics import (CLASS_METRICS, SUMMARY_METRICS, classification_metrics,
                                         compare_arms, summarise_arm)
from polyp_core.classify.model import build_classifier, save_classifier
from polyp_core.classify.probe import probe_arm
from polyp_core.classify.train import frozen_features, predict_run, train_classifier
from polyp_core.data.cache import PixelCache
from polyp_core.data.tensors import ImageTensors, load_tensors
from polyp_core.data.labels import get_scheme
from polyp_core.html_table import table
from polyp_core.stats.uncertainty import (cluster_bootstrap, paired_cluster_bootstrap,
                                          regression_warnings)
from polyp_core.tasks import (AUGMENTED, BASELINE, EXPERT, GATED, PROBE, Plan, TaskJob,
                              real_counterpart, training_units)

if TYPE_CHECKING:
    from pathlib import Path

    import plotly.graph_objects as go

    from polyp_core.backbones import WeightsRegistry
    from polyp_core.data.manifest import Manifest
    from polyp_core.progress import CancelToken, Progress

ARMS = (BASELINE, AUGMENTED, GATED, EXPERT)
NEEDS_MASKS = False
RESTS_ON = "its recall and F1"
DETECTABLE_CHANGE = True
#: a pretrained classifier fine-tunes at ``TrainConfig``'s own small learning rate and batch
TRAIN_DEFAULTS: dict = {}
CONFUSION = True
#: the verdict's figure: its label and its path in a summary or a paired difference
HEADLINE = ("macro-F1", ("macro_f1",))
#: the per-class score the report charts, and the ones whose fall is a regression
CLASS_SCORE = ("F1", "f1")
REGRESSION_SCORES = ("recall", "f1")
LINEAR_PROBE = True
#: the report's sentence on what counts as a regression
REGRESSION_RULE = ("A class is reported as a regression only when its difference's interval "
                   "excludes zero.")


def check_request(config: Any, load_manifest: Callable[[str], Manifest]) -> None:
    """The learning curve and a second source are the segmentation task's; a classifier needs
    two classes (a data set of masks without histology has one, the ``lesion`` scheme)."""
    if config.real_fractions or config.against:
        raise ValueError("`real_fractions` and `against` are for the segmentation task "
                         "(diagnostics reads a second source for classification)")
    manifest = load_manifest(config.dataset)
    scheme = config.scheme or manifest.scheme
    if len(get_scheme(scheme).classes) < 2:
        raise ValueError(f"data set {config.dataset!r} is read in scheme {scheme!r}, which has "
                         f"one class ({', '.join(get_scheme(scheme).classes)}): there is nothing "
                         "to classify. Its masks serve the segmentation task (`task` "
                         "segmentation); a classifier needs histology labels (three_class or "
                         "ad_vs_rest)")


def run(job: TaskJob) -> dict:
    """Train and score every arm (and the linear probe when asked): the run's results. Each
    (fold, arm, seed) is one training on ``job.executor`` (:func:`train_unit`); what they
    predict is pooled here, in the units' order, whichever executor ran them."""
    config, plan = job.config, job.plan
    classes, folds = plan.classes, plan.folds
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    sets = _TrainingSets(plan, config.train.image_size, job.pixels)
    # frozen pretrained backbone: folds, seeds and the probe share embeddings, computed once
    # here for every image (so a training reads the same numbers on whichever worker it runs)
    features: dict = {} if job.feature_cache is None else job.feature_cache
    _embed_once(config, sets, features, job.device, job.registry)
    shared = Shared(config, plan, sets, features, job.registry)
    units, labels = training_units([fold.name for fold in folds], cv, config.arms,
                                   config.seeds)
    outcomes = job.executor.map(train_unit, shared, units, labels, job.progress, job.cancel,
                                job.device)
    predicted, fold_info = _pooled(config, plan, units, outcomes)
    if not cv:
        _save_best(job.folder, job.run_id, plan, config, units, outcomes)
    spec = outcomes[-1]["spec"]  # every arm's normalisation is the backbone's: the run's
    test_labels = sets.pool.subset([i for fold in folds for i in fold.test]).labels.numpy()
    per_seed: dict[str, list[dict]] = {arm: [] for arm in config.arms}
    for arm in config.arms:
        for seed in config.seeds:
            metrics = classification_metrics(test_labels, predicted[arm, seed], classes)
            info = fold_info[arm, seed]
            metrics.update(seed=seed, predicted=predicted[arm, seed].tolist())
            if cv:
                metrics["folds"] = info
            else:
                metrics.update({k: v for k, v in info[0].items() if k != "fold"})
            per_seed[arm].append(metrics)
    if config.linear_probe:
        per_seed |= _probe_arms(config, plan, sets, test_labels, job.progress, job.device,
                                job.registry, features)
    results = {"classes": list(classes), "scheme": plan.scheme, "evaluation": plan.evaluation,
               "arms": {arm: {"per_seed": rows, "summary": summarise_arm(rows)}
                        for arm, rows in per_seed.items()},
               "normalisation": {"mean": list(spec.mean), "std": list(spec.std),
                                 "arms": list(config.arms)}}
    return _with_uncertainty(results, config, plan, per_seed, test_labels)


class _TrainingSets:
    """The real images (loaded once) and the synthetic images any fold adds, and each fold's
    training set per arm."""

    def __init__(self, plan: Plan, size: int, pixels: PixelCache) -> None:
        self.plan = plan
        self.pool = load_tensors(plan.real, plan.classes, size, pixels)
        self.synthetic_refs = plan.synthetic_refs
        self.synthetic = load_tensors(self.synthetic_refs, plan.classes, size, pixels) \
            if self.synthetic_refs else None
        self.position = {r.sha256: i for i, r in enumerate(self.synthetic_refs)}

    def train_set(self, f: int, arm: str, real: Sequence[int] | None = None) -> ImageTensors:
        """Fold ``f``'s training part (or the given real images), plus the fold's selected
        synthetic images in the augmented arm."""
        real_part = self.pool.subset(self.plan.folds[f].train if real is None else real)
        if arm == "baseline" or self.synthetic is None:
            return real_part
        return ImageTensors.concat([real_part, self.synthetic.subset(
            [self.position[r.sha256] for r in self.plan.arm_selection(f, arm).images])])


@dataclass
class Shared:
    """What every training of a run reads (sent once to an executor's workers): the request,
    the plan, the images, the frozen backbone's features and the weights registry."""

    config: Any
    plan: Plan
    sets: _TrainingSets
    features: dict
    registry: WeightsRegistry | None


def _embed_once(config: Any, sets: _TrainingSets, features: dict,
                device: torch.device | None, registry: WeightsRegistry | None) -> None:
    """Every image's frozen pretrained-backbone features into ``features`` (when the networks
    or the probe read them), in the plan's order, before any training."""
    train = config.train
    if not train.pretrained or not (train.freeze_backbone or config.linear_probe):
        return
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, spec = build_classifier(train.backbone, sets.plan.classes, train.image_size,
                                   train.hidden, train.dropout, train.pretrained, registry)
    model = model.to(device).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for data in (sets.pool, sets.synthetic):
            if data is not None and len(data):
                frozen_features(features, train, model, spec, data, device)
    model.to("cpu")


def train_unit(shared: Shared, unit: tuple, progress: Progress, cancel: CancelToken | None,
               device: torch.device | None) -> dict:
    """One (fold, arm, seed): train (after the inner CV that picks its epochs, with
    ``refit``), predict the fold's test part. Returns the predicted classes, the fold's
    training record, the validation macro-F1, the normalisation and, on a fixed split, the
    weights (the caller keeps each arm's best)."""
    f, arm, seed, label = unit
    config, plan, sets, features = shared.config, shared.plan, shared.sets, shared.features
    classes, fold, pool = plan.classes, plan.folds[f], sets.pool
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    train, train_config, inner_epochs = sets.train_set(f, arm), config.train, None
    if cv and config.refit:  # the epoch count from inner CV, then the whole training part
        inner_epochs = [train_classifier(
            sets.train_set(f, arm, inner_train), pool.subset(inner_valid), classes,
            config.train, seed, device, shared.registry, progress, cancel,
            label=f"{label}inner {j + 1} · ", feature_cache=features).best_epoch
            for j, (inner_train, inner_valid) in enumerate(plan.inner_folds(
                f, 3, config.cv_seed + f))]
        train_config = replace(config.train, epochs=max(1, round(np.median(inner_epochs))))
    trained = train_classifier(train, pool.subset(fold.valid), classes, train_config, seed,
                               device, shared.registry, progress, cancel, label=label,
                               feature_cache=features)
    device_used = next(trained.model.parameters()).device
    predicted = predict_run(trained, config.train, pool.subset(fold.test), device_used,
                            features).argmax(1)
    info = {"fold": fold.name, "best_epoch": trained.best_epoch,
            "valid_macro_f1": trained.best_valid_macro_f1 if fold.valid else None,
            "history": trained.history, "n_train": len(train),
            **({"inner_best_epochs": inner_epochs} if inner_epochs else {})}
    weights = None if cv else {k: v.detach().to("cpu", copy=True)
                               for k, v in trained.model.state_dict().items()}
    return {"predicted": predicted, "info": info, "spec": trained.spec,
            "valid_macro_f1": trained.best_valid_macro_f1, "best_epoch": trained.best_epoch,
            "weights": weights}


def _pooled(config: Any, plan: Plan, units: list[tuple], outcomes: list[dict]
            ) -> tuple[dict, dict]:
    """Each (arm, seed)'s predictions over the pooled test parts, and its per-fold records."""
    offsets = np.cumsum([0] + [len(fold.test) for fold in plan.folds])
    predicted = {(arm, seed): np.zeros(offsets[-1], dtype=int) for arm in config.arms
                 for seed in config.seeds}
    fold_info: dict = {(arm, seed): [] for arm in config.arms for seed in config.seeds}
    for (f, arm, seed, _), outcome in zip(units, outcomes):
        predicted[arm, seed][offsets[f]:offsets[f + 1]] = outcome["predicted"]
        fold_info[arm, seed].append(outcome["info"])
    return predicted, fold_info


def _save_best(folder: Path, run_id: str, plan: Plan, config: Any, units: list[tuple],
               outcomes: list[dict]) -> None:
    """On a fixed split, each arm's network with the best validation macro-F1 (the first
    seed of a tie) under ``checkpoints/<arm>``."""
    best: dict[str, dict] = {}
    for (_, arm, seed, _), outcome in zip(units, outcomes):
        if arm not in best or outcome["valid_macro_f1"] > best[arm]["valid_macro_f1"]:
            best[arm] = outcome | {"seed": seed}
    for arm, outcome in best.items():
        save_classifier(folder / "checkpoints" / arm, outcome["weights"], outcome["spec"],
                        {"run": run_id, "arm": arm, "seed": outcome["seed"],
                         "best_epoch": outcome["best_epoch"],
                         "valid_macro_f1": outcome["valid_macro_f1"]})


def _probe_arms(config: Any, plan: Plan, sets: _TrainingSets,
                test_labels: np.ndarray, progress: Progress, device: torch.device | None,
                registry: WeightsRegistry | None, features: dict) -> dict[str, list[dict]]:
    """The linear probe beside each arm: logistic regression on the frozen backbone's features,
    over the same folds (in CV it learns from each fold's whole training part)."""
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    names = {BASELINE: PROBE, "augmented": f"{PROBE} + synthetic",
             GATED: f"{PROBE} + gated synthetic", EXPERT: f"{PROBE} + expert-filtered synthetic"}
    unit = "patient/lesion" if plan.design["grouped"] else "image (no groups known)"
    out = {}
    for arm in config.arms:
        progress(1, 1, f"linear probe: {arm}")
        parts = []
        for f, fold in enumerate(plan.folds):
            real = fold.train + fold.valid if cv else fold.train
            train = sets.train_set(f, arm, real)
            groups = [plan.group_of[i] for i in real] + \
                [r.sha256 for r in train.refs[len(real):]]
            parts.append(probe_arm(
                train, sets.pool.subset(fold.test), groups, plan.classes, config.train,
                device or torch.device("cuda" if torch.cuda.is_available() else "cpu"),
                registry, seed=config.seeds[0], unit=unit, feature_cache=features))
        out[names[arm]] = [_pool_probe(parts, plan.folds, test_labels, plan.classes, cv)]
    return out


def _with_uncertainty(results: dict, config: Any, plan: Plan,
                      per_seed: dict[str, list[dict]], test_labels: np.ndarray) -> dict:
    """A cluster bootstrap over the tested groups (with the seeds) for every arm, and the
    paired augmented-minus-baseline deltas with their regression warnings."""
    classes, of_image = plan.classes, plan.design["of_image"]
    results["test_groups"] = plan.design
    results["uncertainty"] = {arm: cluster_bootstrap(
        test_labels, [m["predicted"] for m in rows], of_image, classes)
        for arm, rows in per_seed.items()}
    if {BASELINE, AUGMENTED} <= set(config.arms):
        deltas, _ = compare_arms(per_seed["augmented"], per_seed["baseline"])
        results["delta"] = deltas
        results["delta_cluster"] = paired_cluster_bootstrap(
            test_labels, [m["predicted"] for m in per_seed["augmented"]],
            [m["predicted"] for m in per_seed["baseline"]], of_image, classes)
        results["warnings"] = regression_warnings(results["delta_cluster"], classes)
    for arm, key in ((GATED, "delta_gate"), (EXPERT, "delta_expert")):
        if {arm, "augmented"} <= set(config.arms):  # the gate paper's comparisons
            results[key], _ = compare_arms(per_seed[arm], per_seed["augmented"])
            results[f"{key}_cluster"] = paired_cluster_bootstrap(
                test_labels, [m["predicted"] for m in per_seed[arm]],
                [m["predicted"] for m in per_seed["augmented"]], of_image, classes)
    results["versus_real"] = {}
    for arm in per_seed:  # every arm against its real-data arm: the report's forest plot
        other = real_counterpart(arm, list(per_seed))
        if other is None:
            continue
        results["versus_real"][arm] = {"against": other} | (
            results["delta_cluster"] if (arm, other) == (AUGMENTED, BASELINE) else
            paired_cluster_bootstrap(test_labels, [m["predicted"] for m in per_seed[arm]],
                                     [m["predicted"] for m in per_seed[other]], of_image,
                                     classes))
    return results


def _pool_probe(parts: list[dict], folds: list, test_labels: np.ndarray,
                classes: Sequence[str],
                cv: bool) -> dict:
    """One probe entry from its per-fold fits: metrics of the pooled predictions."""
    if not cv:
        return parts[0]
    predicted = np.concatenate([p["predicted"] for p in parts]).astype(int)
    metrics = classification_metrics(test_labels, predicted, classes)
    chosen = ", ".join(f"{p['probe']['C']:g}" for p in parts)
    metrics.update(seed=parts[0]["seed"], predicted=predicted.tolist(),
                   folds=[{"fold": fold.name, "n_train": p["n_train"], "probe": p["probe"]}
                          for fold, p in zip(folds, parts)],
                   probe={"how": f"C per fold ({chosen}) by inner CV grouped within each fold's "
                                 "training part (macro-F1)", "C": [p["probe"]["C"] for p in parts]})
    return metrics


def metric_rows(results: dict) -> list[tuple[str, tuple]]:
    """The metric table's rows: (label, path into a summary)."""
    return [("macro-F1", ("macro_f1",)), ("balanced accuracy", ("balanced_accuracy",)),
            ("accuracy", ("accuracy",))] + [
        (f"{c} {m}", ("per_class", c, m)) for c in results["classes"]
        for m in ("precision", "recall", "f1")]


def differences(a: dict, b: dict) -> dict:
    """Mean of ``b`` minus mean of ``a``: the summary metrics and every class's precision,
    recall and F1 (classes of both)."""
    row = {m: b[m]["mean"] - a[m]["mean"] for m in SUMMARY_METRICS}
    row["per_class"] = {c: {m: b["per_class"][c][m]["mean"] - a["per_class"][c][m]["mean"]
                            for m in CLASS_METRICS}
                        for c in a["per_class"] if c in b["per_class"]}
    return row


def methods(config: dict, results: dict, cv: bool) -> str:
    train, seeds = config["train"], ", ".join(str(s) for s in config["seeds"])
    return (
        f"Classifiers ({train['backbone']}, ImageNet weights, {train['image_size']} px, "
        f"{'backbone frozen, head trained' if train['freeze_backbone'] else 'fine-tuned'}; "
        f"AdamW, learning rate {train['lr']:g}, at most {train['epochs']} epochs with early "
        f"stopping on validation macro-F1 after {train['patience']} epochs without improvement; "
        f"class imbalance: {train['imbalance']}; augmentation "
        f"{'on' if train['augment'] else 'off'}) were trained on the training "
        f"{'part of every fold' if cv else 'split'} of data set "
        f"{config['dataset']} (label scheme {results['scheme']}) with seeds {seeds}; every arm "
        f"used the same {'folds' if cv else 'split'}, seeds and input normalisation.")


def report_parts(results: dict) -> list[str]:
    """Each arm's confusion matrix, summed over seeds."""
    parts = ["<h2>Confusion matrices (rows: truth; summed over seeds)</h2>"]
    for arm, data in results["arms"].items():
        matrix = data["summary"]["confusion_sum"]
        parts += [f"<h3>{html.escape(arm)}</h3>",
                  table(["truth \\ predicted", *results["classes"]],
                        [[c, *row] for c, row in zip(results["classes"], matrix)])]
    return parts


def delta_figure(results: dict) -> go.Figure:
    """Per-class change in recall and F1 (augmented − baseline) with 95% intervals; a bar is
    red when the class got worse."""
    import plotly.graph_objects as go

    figure = go.Figure()
    classes = results["classes"]
    cluster = "delta_cluster" in results  # CIs over patients/lesions and seeds, when stored
    for metric, pattern in (("recall", ""), ("f1", "/")):
        if cluster:
            d = [results["delta_cluster"]["per_class"][c][metric] for c in classes]
            means, lows, highs = ([x["estimate"] for x in d], [x["low"] for x in d],
                                  [x["high"] for x in d])
        else:
            d = [results["delta"]["per_class"][c][metric] for c in classes]
            means, lows, highs = ([x["mean"] for x in d], [x["ci"][0] for x in d],
                                  [x["ci"][1] for x in d])
        figure.add_trace(go.Bar(
            x=classes, y=means, name=metric, marker_pattern_shape=pattern,
            marker_color=["#d62728" if m < 0 else "#2ca02c" for m in means],
            error_y=dict(type="data", symmetric=False,
                         array=[h - m for h, m in zip(highs, means)],
                         arrayminus=[m - lo for m, lo in zip(means, lows)])))
    unit = "95% CI over patients/lesions and seeds" if cluster else "95% CI over seeds"
    figure.update_layout(barmode="group", title=f"Per-class change, augmented − baseline ({unit})",
                         yaxis_title="Δ", height=360, margin=dict(l=40, r=20, t=50, b=40))
    return figure
