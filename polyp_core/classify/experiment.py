"""Baseline against augmented: the same split, the same seeds, per-class truth.

:func:`run_experiment` trains a classifier on the real training images (``baseline``) and on
the real plus the selected synthetic images (``augmented``) for every seed, evaluates both on
the real test images, and stores a run: config, the exact image lists, the ratings hash,
metrics per seed, mean ± std and 95 % intervals, paired differences, regression warnings and
the best checkpoint of each arm.

Uncertainty is over the right unit: the test predictions of every seed are kept, and 95%
intervals come from a cluster bootstrap over the test split's groups (patients/lesions) with
the seeds (``uncertainty``); the paired difference of the arms likewise (``delta_cluster``),
and a class's regression warning fires only when that interval excludes 0. Before training,
the design table (groups and images per class and split) is checked: fewer than 3 test groups
of a class is refused unless allowed, fewer than 5 is a warning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from polyp_core.backbones import WeightsRegistry
from polyp_core.classify.data import ImageRef, ImageTensors, load_tensors
from polyp_core.classify.metrics import classification_metrics, compare_arms, summarise_arm
from polyp_core.classify.model import save_classifier
from polyp_core.classify.policy import SelectionPolicy, select_synthetic
from polyp_core.classify.probe import probe_arm
from polyp_core.classify.report import write_report
from polyp_core.classify.train import ClassifierTrainConfig, predict, train_classifier
from polyp_core.classify.uncertainty import (cluster_bootstrap, paired_cluster_bootstrap,
                                             regression_warnings)
from polyp_core.data.cache import PixelCache
from polyp_core.data.labels import get_scheme
from polyp_core.generation.lineage import generator_training_images
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.runs import load_run, new_run_dir, save_run
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace
from review_db.database import Database

ARMS = ("baseline", "augmented")
PROBE = "linear probe"


@checked
@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment.

    Attributes:
        dataset: the real data set (its split is used as it is).
        scheme: label scheme (default: the data set's active one).
        train: how each classifier is trained (identical in both arms).
        seeds: one classifier per seed and arm; the same seeds in both arms.
        policy: which synthetic images the augmented arm adds.
        arms: ``baseline`` and/or ``augmented``.
        name: a label for the run list.
        allow_small_test: run even when a class has fewer than 3 groups (patients/lesions) in
            the test split (the results will say how little they rest on).
        linear_probe: also fit the linear probe (``classify.probe``) on every arm's training
            images: the baseline any network must beat, shown beside the arms.
    """

    dataset: str
    scheme: str | None = None
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    policy: SelectionPolicy = field(default_factory=SelectionPolicy)
    arms: tuple[str, ...] = rule(ARMS, choices=ARMS)
    name: str | None = None
    allow_small_test: bool = False
    linear_probe: bool = False

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "scheme": self.scheme, "train": asdict(self.train),
                "seeds": list(self.seeds), "policy": self.policy.to_json(), "arms": list(self.arms),
                "name": self.name, "allow_small_test": self.allow_small_test,
                "linear_probe": self.linear_probe}

    @classmethod
    def from_json(cls, data: dict) -> ExperimentConfig:
        return cls(dataset=data["dataset"], scheme=data.get("scheme"),
                   train=ClassifierTrainConfig(**data["train"]), seeds=tuple(data["seeds"]),
                   policy=SelectionPolicy.from_json(data["policy"]), arms=tuple(data["arms"]),
                   name=data.get("name"), allow_small_test=bool(data.get("allow_small_test")),
                   linear_probe=bool(data.get("linear_probe")))


@dataclass
class ExperimentResult:
    run_id: str
    folder: Path
    results: dict


def check_leakage(db: Database, workspace: Workspace, synthetic: list[ImageRef],
                  held_out: set[str]) -> None:
    """Refuse synthetic images whose generator learned from validation or test images: a
    generator that saw them makes the comparison dishonest.

    Raises:
        ValueError: naming the generators and how many held-out images each saw.
    """
    from review_db import queries

    with db.session() as session:
        generators = sorted({queries.image_by_sha(session, ref.sha256).provenance.generator
                             for ref in synthetic})
    problems = []
    for generator in generators:
        try:
            seen = generator_training_images(workspace.models_dir, generator) & held_out
        except ValueError as error:
            problems.append(str(error))
            continue
        if seen:
            problems.append(f"{generator} learned from {len(seen)} validation/test images")
    if problems:
        raise ValueError("synthetic images from generators trained on held-out images would leak "
                         "into the comparison: " + "; ".join(problems) +
                         ". Train generators on the training split only, restore a missing model "
                         "folder, or exclude the generator (policy.generators).")


def design_groups(manifest, scheme: str, classes) -> dict:  # noqa: ANN001
    """The independent units of each split: groups (patient/lesion/video) and images per class,
    and each test image's group (its own id when the data set knows no groups: then every
    frame counts as independent, which the report says)."""
    grouped = any(i.group for i in manifest.items)
    table = {}
    for split in ("train", "valid", "test"):
        items = manifest.split_items(split)
        table[split] = {c: {"images": sum(manifest.label_of(i, scheme) == c for i in items),
                            "groups": len({i.group or i.id for i in items
                                           if manifest.label_of(i, scheme) == c})}
                        for c in classes}
    return {"unit": "group (patient/lesion/video)" if grouped else
            "image (the data set names no groups: frames are treated as independent)",
            "grouped": grouped, "table": table,
            "of_image": [i.group or i.id for i in manifest.split_items("test")]}


MIN_TEST_GROUPS = 3  # fewer: refused unless allowed
FEW_TEST_GROUPS = 5  # fewer: a warning beside the numbers


def check_design(design: dict, allow_small: bool = False) -> list[str]:
    """Refuse a test split with fewer than 3 groups of a class (unless ``allow_small``); warn
    under 5; and estimate the smallest macro-F1 change the test split can show.

    Raises:
        ValueError: naming the classes, their groups and how to override.
    """
    test = design["table"]["test"]
    unit = "groups" if design["grouped"] else "images"
    small = {c: v["groups"] for c, v in test.items() if v["groups"] < MIN_TEST_GROUPS}
    if small and not allow_small:
        raise ValueError("the test split holds too few independent " + unit + " to measure a "
                         "class: " + ", ".join(f"{c} {n}" for c, n in small.items()) +
                         f" (at least {MIN_TEST_GROUPS}); resplit with more groups in test, or "
                         "run anyway with --allow-small-test (the report says so)")
    warnings = [f"{c}: only {v['groups']} test {unit}; its recall and F1 rest on them"
                for c, v in test.items() if v["groups"] < FEW_TEST_GROUPS]
    if small:
        warnings.insert(0, "ran with --allow-small-test: " + ", ".join(
            f"{c} has {n} test {unit}" for c, n in small.items()))
    warnings.append(f"smallest macro-F1 change this test split can show (rough, 80% power, "
                    f"unpaired worst case): {minimal_detectable_change(test):.2f}")
    return warnings


def minimal_detectable_change(test: dict) -> float:
    """A rough guide: with ``g_c`` independent units of class ``c``, a class's recall has a
    standard error of at most ``sqrt(0.25 / g_c)``; macro-F1 averages K classes; detecting a
    change between two arms at 5% with 80% power needs about 2.8 x sqrt(2) standard errors."""
    k = max(1, len(test))
    se = math.sqrt(sum(0.25 / max(v["groups"], 1) for v in test.values())) / k
    return 2.8 * math.sqrt(2) * se


def _real_refs(manifest, scheme: str, split: str) -> list[ImageRef]:  # noqa: ANN001
    return [ImageRef(i.sha256, i.image, manifest.label_of(i, scheme)) for i in manifest.split_items(split)]


def run_experiment(db: Database, workspace: Workspace, config: ExperimentConfig,
                   progress: Progress = no_progress, cancel: CancelToken | None = None,
                   device: torch.device | None = None,
                   registry: WeightsRegistry | None = None) -> ExperimentResult:
    """Train every arm over every seed, evaluate on the real test split and store the run.

    Raises:
        ValueError: unknown arm, an empty split, no synthetic image for the augmented arm,
            or synthetic images whose generator saw held-out images.
        Cancelled: when ``cancel`` is set.
    """
    if not config.arms or any(a not in ARMS for a in config.arms):
        raise ValueError(f"arms must be some of {ARMS}; got {config.arms}")
    if not config.seeds:
        raise ValueError("give at least one seed")
    config.train.validate()
    manifest = workspace.load_manifest(config.dataset)
    scheme_name = config.scheme or manifest.scheme
    manifest = manifest.with_scheme(scheme_name)
    classes = get_scheme(scheme_name).classes
    splits = {s: _real_refs(manifest, scheme_name, s) for s in ("train", "valid", "test")}
    for split, refs in splits.items():
        if not refs:
            raise ValueError(f"data set {config.dataset!r} has no {split} images; an experiment "
                             "needs train, valid and test splits")
    real_counts = {c: sum(r.label == c for r in splits["train"]) for c in classes}
    selection = None
    if "augmented" in config.arms:
        selection = select_synthetic(db, config.policy, scheme_name, real_counts)
        if not selection.images:
            raise ValueError(f"the selection policy chose no synthetic image "
                             f"(counts: {selection.counts}); the augmented arm would equal the "
                             "baseline. Run the baseline alone with --baseline-only (arms: "
                             "baseline), or loosen the policy")
        held_out = {r.sha256 for r in splits["valid"] + splits["test"]}
        check_leakage(db, workspace, selection.images, held_out)

    test_groups = design_groups(manifest, scheme_name, classes)
    test_groups["warnings"] = check_design(test_groups, config.allow_small_test)
    pixels = PixelCache(workspace.pixel_cache_dir)
    size = config.train.image_size
    progress(0, 1, "loading images")
    data = {s: load_tensors(refs, classes, size, pixels) for s, refs in splits.items()}
    synthetic = load_tensors(selection.images, classes, size, pixels) if selection else None
    train_sets = {"baseline": data["train"],
                  "augmented": ImageTensors.concat([data["train"], synthetic]) if synthetic else None}

    run_id, folder = new_run_dir(workspace, "retrain")
    units = [(arm, seed) for seed in config.seeds for arm in config.arms]
    per_seed: dict[str, list[dict]] = {arm: [] for arm in config.arms}
    features: dict = {}  # frozen pretrained backbone: seeds and the probe share embeddings
    best: dict[str, tuple[float, object]] = {}
    for u, (arm, seed) in enumerate(units):
        def unit_progress(done: int, total: int, message: str, u: int = u) -> None:
            progress(u * 1000 + int(1000 * done / max(total, 1)), len(units) * 1000,
                     f"{message}")

        trained = train_classifier(train_sets[arm], data["valid"], classes, config.train, seed,
                                   device, registry, unit_progress, cancel,
                                   label=f"{arm} seed {seed} ({u + 1}/{len(units)}) · ",
                                   feature_cache=features)
        device_used = next(trained.model.parameters()).device
        predicted = predict(trained.model, trained.spec, data["test"], device_used).argmax(1)
        metrics = classification_metrics(data["test"].labels.numpy(), predicted, classes)
        metrics.update(seed=seed, predicted=predicted.tolist(), best_epoch=trained.best_epoch,
                       valid_macro_f1=trained.best_valid_macro_f1, history=trained.history,
                       n_train=len(train_sets[arm]))
        per_seed[arm].append(metrics)
        if arm not in best or trained.best_valid_macro_f1 > best[arm][0]:
            best[arm] = (trained.best_valid_macro_f1, trained)
            save_classifier(folder / "checkpoints" / arm, trained.model, trained.spec,
                            {"run": run_id, "arm": arm, "seed": seed, "best_epoch": trained.best_epoch,
                             "valid_macro_f1": trained.best_valid_macro_f1})
        trained.model.to("cpu")

    probe_names = {"baseline": PROBE, "augmented": f"{PROBE} + synthetic"}
    if config.linear_probe:
        train_groups = {"baseline": [i.group or i.id for i in manifest.split_items("train")]}
        if selection is not None:  # each synthetic image is its own unit
            train_groups["augmented"] = train_groups["baseline"] + [r.sha256 for r in selection.images]
        for arm in config.arms:
            progress(len(units) * 1000, len(units) * 1000, f"linear probe: {arm}")
            per_seed[probe_names[arm]] = [probe_arm(
                train_sets[arm], data["test"], train_groups[arm], classes, config.train,
                device or torch.device("cuda" if torch.cuda.is_available() else "cpu"),
                registry, seed=config.seeds[0],
                unit="patient/lesion" if test_groups["grouped"] else "image (no groups known)",
                feature_cache=features)]
    results = {"classes": list(classes), "scheme": scheme_name,
               "arms": {arm: {"per_seed": rows, "summary": summarise_arm(rows)}
                        for arm, rows in per_seed.items()},
               "normalisation": {"mean": list(trained.spec.mean), "std": list(trained.spec.std),
                                 "arms": list(config.arms)}}
    if selection is not None:
        results["selection"] = {"counts": selection.counts, "ratings_hash": selection.ratings_hash}
    # uncertainty over cases: a cluster bootstrap over the test groups, with the seeds
    test_labels = data["test"].labels.numpy()
    results["test_groups"] = test_groups
    results["uncertainty"] = {arm: cluster_bootstrap(
        test_labels, [m["predicted"] for m in rows], test_groups["of_image"], classes)
        for arm, rows in per_seed.items()}
    if set(ARMS) <= set(config.arms):
        deltas, _ = compare_arms(per_seed["augmented"], per_seed["baseline"])
        results["delta"] = deltas
        results["delta_cluster"] = paired_cluster_bootstrap(
            test_labels, [m["predicted"] for m in per_seed["augmented"]],
            [m["predicted"] for m in per_seed["baseline"]], test_groups["of_image"], classes)
        results["warnings"] = regression_warnings(results["delta_cluster"], classes)
    images = {s: [asdict(r) for r in refs] for s, refs in splits.items()}
    images["synthetic"] = [asdict(r) for r in selection.images] if selection else []
    write_report(folder, run_id, config.to_json(), results)  # report.html beside the run
    save_run(db, workspace, run_id, folder, "retrain", config.to_json(), results, images)
    progress(1, 1, f"stored run {run_id}")
    return ExperimentResult(run_id, folder, results)


def repeat_experiment(db: Database, workspace: Workspace, run_id: str, **kwargs) -> ExperimentResult:
    """Run a stored experiment's config again (the selection reads today's ratings)."""
    config = ExperimentConfig.from_json(load_run(db, run_id)["config"])
    return run_experiment(db, workspace, config, **kwargs)


def compare_runs(db: Database, run_a: str, run_b: str) -> dict:
    """What differs between two retrain runs: config, images, ratings, and every metric.

    Returns:
        ``config`` (changed settings, ``a`` -> ``b``), ``images`` (synthetic images only in
        one run, by SHA-256), ``ratings_changed``, and ``metrics`` per arm: mean of ``b`` minus
        mean of ``a`` for the summary metrics and every class's precision, recall and F1.
    """
    a, b = load_run(db, run_a), load_run(db, run_b)

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(a["config"]), flat(b["config"])
    changed = {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb))
               if fa.get(k) != fb.get(k) and k != "studio_version"}
    syn_a = {i["sha256"] for i in a["images"].get("synthetic", [])}
    syn_b = {i["sha256"] for i in b["images"].get("synthetic", [])}
    hash_a = a["results"].get("selection", {}).get("ratings_hash")
    hash_b = b["results"].get("selection", {}).get("ratings_hash")
    metrics = {}
    for arm in sorted(set(a["results"]["arms"]) & set(b["results"]["arms"])):
        sa, sb = a["results"]["arms"][arm]["summary"], b["results"]["arms"][arm]["summary"]
        row = {m: sb[m]["mean"] - sa[m]["mean"] for m in ("macro_f1", "balanced_accuracy", "accuracy")}
        row["per_class"] = {c: {m: sb["per_class"][c][m]["mean"] - sa["per_class"][c][m]["mean"]
                                for m in ("precision", "recall", "f1")}
                            for c in sa["per_class"] if c in sb["per_class"]}
        metrics[arm] = row
    return {"runs": [run_a, run_b], "config": changed,
            "images": {"only_in_a": sorted(syn_a - syn_b), "only_in_b": sorted(syn_b - syn_a),
                       "shared": len(syn_a & syn_b)},
            "ratings_changed": hash_a != hash_b, "metrics": metrics}
