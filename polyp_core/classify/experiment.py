"""Baseline against augmented: the same folds, the same seeds, per-class truth.

:func:`run_experiment` trains a classifier on the real training images (``baseline``) and on
the real plus the selected synthetic images (``augmented``) for every seed, evaluates both on
real test images, and stores a run: config, the exact image lists, the ratings hash, metrics
per seed, mean ± std and 95 % intervals, paired differences, regression warnings and (fixed
split) the best checkpoint of each arm.

Two designs (``classify.folds``): the data set's fixed train/valid/test split, or grouped
K-fold cross-validation (``folds``) over all its images, stratified by class and grouped by
patient/lesion/video, with metrics from the pooled out-of-fold predictions; every arm uses the
same folds and seeds, and each fold gets its own synthetic selection, checked against the
generators' training records group by group. CV evaluates the procedure, so it stores no
checkpoint; train the model to keep on the fixed split.

Uncertainty is over the right unit: the test predictions of every seed are kept, and 95%
intervals come from a cluster bootstrap over the tested groups (patients/lesions) with the
seeds (``uncertainty``); the paired difference of the arms likewise (``delta_cluster``), and
a class's regression warning fires only when that interval excludes 0. Before training, the
design table (groups and images per class in every part of every fold) is checked: fewer than
3 test groups of a class in a test split or fold is refused unless allowed, fewer than 5 is a
warning.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from polyp_core.backbones import WeightsRegistry
from polyp_core.classify.data import ImageRef, ImageTensors, load_tensors
from polyp_core.classify.folds import (INNER_VALID, MAX_AUTO_FOLDS, Fold, choose_folds,
                                       fixed_folds, fold_leaks, grouped_folds, groups_seen,
                                       inner_folds)
from polyp_core.classify.metrics import classification_metrics, compare_arms, summarise_arm
from polyp_core.classify.model import save_classifier
from polyp_core.classify.policy import (Selection, SelectionPolicy, expert_selections,
                                       select_synthetic)
from polyp_core.classify.probe import probe_arm
from polyp_core.classify.report import write_report
from polyp_core.classify.train import (ClassifierTrainConfig, TrainedClassifier, predict_run,
                                      train_classifier)
from polyp_core.classify.uncertainty import (cluster_bootstrap, paired_cluster_bootstrap,
                                             regression_warnings)
from polyp_core.data.cache import PixelCache
from polyp_core.data.labels import get_scheme
from polyp_core.data.manifest import Manifest, ManifestItem
from polyp_core.generation.lineage import (UnknownTrainingData, declared_unknown,
                                           generator_training_images)
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.runs import load_run, new_run_dir, save_run
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace
from review_db.database import Database

ARMS = ("baseline", "augmented")
#: the segmentation gate's comparison: the same selection, only the images each fold's gate
#: kept (``SelectionPolicy.min_gate_iou``, the paper's 0.7 when unset), beside ``augmented``
GATED = "gated"
#: and the expert filter: the same selection, only images whose mask reviewers rated at least
#: ``SelectionPolicy.min_mask_quality`` (studies that showed masks)
EXPERT = "expert"
CLASSIFICATION_ARMS = ARMS + (GATED, EXPERT)
#: segmentation also trains on the selected synthetic images alone
SEGMENTATION_ARMS = CLASSIFICATION_ARMS + ("synthetic",)
TASKS = ("classification", "segmentation")
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
        folds: 0 uses the data set's fixed train/valid/test split; K >= 2 runs grouped K-fold
            cross-validation over all its images (``classify.folds``), metrics from the pooled
            out-of-fold predictions; ``None`` ("auto", the default here as in the CLI and UI) chooses
            the largest K up to 10 for which every class has at least 3 groups in every test
            fold (groups a supplying generator learned from then train in
            every fold), the fixed split only when no K >= 2 does, and the run says which and
            why.
        inner_valid: with folds, the share of each fold's training groups (at least 2 of each
            class) that networks stop early on; the rest trains them. 0: no inner validation,
            networks train ``train.epochs`` epochs and keep the last. The linear probe always
            learns from the whole training part (its C is chosen by inner CV).
        refit: with folds, choose the epoch count by inner grouped 3-fold CV within each
            fold's training part (the median of the best epochs) and then train on the whole
            training part for that many epochs (instead of an inner validation split).
        cv_seed: how the groups are dealt into folds (every arm and seed uses the same folds).
        seen_groups_train: with folds, keep the groups a supplying generator learned from in
            every fold's training part (only groups no generator saw are tested) instead of
            refusing the run.
        allow_unknown_training_data: use images of an imported generator whose training data
            are declared unknown (their leak cannot be checked; the report warns).
        task: ``classification`` (histology) or ``segmentation`` (a U-Net on the masks).
        real_fractions: segmentation: also train every arm on these shares of each fold's
            real training groups (a learning curve; the test parts stay whole).
        against: segmentation: also test every model on this second real data set (another
            source's frames, with masks), with its own intervals.
    """

    dataset: str
    scheme: str | None = None
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    seeds: tuple[int, ...] = (0, 1, 2)
    policy: SelectionPolicy = field(default_factory=SelectionPolicy)
    arms: tuple[str, ...] = rule(ARMS, choices=SEGMENTATION_ARMS)
    name: str | None = None
    allow_small_test: bool = False
    linear_probe: bool = False
    folds: int | None = rule(None, lo=0, hi=20, flag="--folds")
    cv_seed: int = 0
    seen_groups_train: bool = False
    inner_valid: float = rule(INNER_VALID, lo=0.0, hi=0.5, flag="--inner-valid")
    refit: bool = False
    allow_unknown_training_data: bool = False
    task: str = rule("classification", choices=TASKS)
    real_fractions: tuple[float, ...] = rule((), lo=0.05, below=1.0)
    against: str | None = None

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "scheme": self.scheme, "train": asdict(self.train),
                "seeds": list(self.seeds), "policy": self.policy.to_json(), "arms": list(self.arms),
                "name": self.name, "allow_small_test": self.allow_small_test,
                "linear_probe": self.linear_probe, "folds": self.folds, "cv_seed": self.cv_seed,
                "seen_groups_train": self.seen_groups_train, "inner_valid": self.inner_valid,
                "refit": self.refit,
                "allow_unknown_training_data": self.allow_unknown_training_data,
                "task": self.task, "real_fractions": list(self.real_fractions),
                "against": self.against}

    @classmethod
    def from_json(cls, data: dict) -> ExperimentConfig:
        return cls(dataset=data["dataset"], scheme=data.get("scheme"),
                   train=ClassifierTrainConfig(**data["train"]), seeds=tuple(data["seeds"]),
                   policy=SelectionPolicy.from_json(data["policy"]), arms=tuple(data["arms"]),
                   name=data.get("name"), allow_small_test=bool(data.get("allow_small_test")),
                   # runs stored before cross-validation existed ran the fixed split
                   linear_probe=bool(data.get("linear_probe")), folds=data.get("folds", 0),
                   cv_seed=int(data.get("cv_seed", 0)),
                   seen_groups_train=bool(data.get("seen_groups_train")),
                   # runs stored before inner validation kept a whole fold for it
                   inner_valid=float(data.get("inner_valid", INNER_VALID)),
                   refit=bool(data.get("refit")),
                   allow_unknown_training_data=bool(data.get("allow_unknown_training_data")),
                   task=data.get("task", "classification"),
                   real_fractions=tuple(data.get("real_fractions", ())),
                   against=data.get("against"))


@dataclass
class ExperimentResult:
    run_id: str
    folder: Path
    results: dict


def check_leakage(db: Database, workspace: Workspace, synthetic: list[ImageRef],
                  held_out: dict[str, str], allow_unknown: bool = False) -> None:
    """Refuse synthetic images whose generator learned from validation or test images: a
    generator that saw them makes the comparison dishonest. ``held_out``: SHA-256 -> how to
    name the image (``"dataset:id (split)"``).

    Raises:
        ValueError: naming the generators and the held-out images each saw (the first five).
    """
    problems = []
    for generator in sorted(_generators_of(db, synthetic)):
        try:
            seen = generator_training_images(workspace.models_dir, generator) & held_out.keys()
        except UnknownTrainingData as error:
            if not allow_unknown:
                problems.append(f"{error} (use it anyway with `allow_unknown_training_data`; "
                                "the report then warns)")
            continue
        except ValueError as error:
            problems.append(str(error))
            continue
        if seen:
            named = sorted(held_out[sha] for sha in seen)
            problems.append(f"{generator} learned from {len(seen)} validation/test images ("
                            + ", ".join(named[:5]) + (", ..." if len(named) > 5 else "") + ")")
    if problems:
        raise ValueError("synthetic images from generators trained on held-out images would leak "
                         "into the comparison: " + "; ".join(problems) +
                         ". Train generators on the training split only, restore a missing model "
                         "folder, or exclude the generator (policy.generators).")


def generator_summary(db: Database, workspace: Workspace,
                      selections: list[Selection | None]) -> list[dict]:
    """Where the synthetic images of a run came from: each generator, how many of its images
    joined any fold, and for an imported one what its registration says (version, source,
    licence, declared training data)."""
    from polyp_core.external import read_record

    made_by = Counter(generator for generator, _ in _provenance(
        db, (ref.sha256 for sel in selections if sel for ref in sel.images)).values())
    rows = []
    for generator, n in sorted(made_by.items()):
        record = read_record(workspace, generator)
        row = {"generator": generator, "images": n,
               "made": "imported" if record else "trained in this workspace"}
        if record:
            trained = record.get("trained_on") or {}
            row |= {"version": record.get("version"), "source": record.get("source"),
                    "licence": record.get("licence"),
                    "trained_on": "unknown" if trained.get("unknown") else trained.get("declared")}
        rows.append(row)
    return rows


def background_leaks(db: Database, folds: list[Fold], selections: list[Selection | None],
                     real: list[ImageRef], group_of: list[str]) -> list[str]:
    """Inpainted images whose background frame belongs to a group of the fold's validation or
    test part (the frame is training data of the image), naming image, frame and group."""
    problems = []
    group_of_sha = {r.sha256: g for r, g in zip(real, group_of)}
    extra_of = _provenance(db, (ref.sha256 for sel in selections if sel for ref in sel.images))
    for fold, selection in zip(folds, selections):
        if selection is None:
            continue
        held = {group_of[i] for i in fold.valid + fold.test}
        for ref in selection.images:
            frame = extra_of[ref.sha256][1].get("background") or {}
            group = group_of_sha.get(frame.get("sha256", ""))
            if group is not None and group in held:
                problems.append(f"{fold.name}: image {ref.sha256[:12]} was made on frame "
                                f"{frame.get('dataset')}:{frame.get('id')} of group {group} "
                                "(validation/test part)")
    return problems


def design_table(folds: list[Fold], labels: list[str], group_of: list[str], classes: Sequence[str],
                 grouped: bool) -> dict:
    """The independent units of every part of every fold: groups (patient/lesion/video) and
    images per class, and each tested image's group in the order of the pooled predictions
    (its own id when the data set knows no groups: then every frame counts as independent,
    which the report says)."""
    def count(indices: Sequence[int]) -> dict:
        return {c: {"images": sum(labels[i] == c for i in indices),
                    "groups": len({group_of[i] for i in indices if labels[i] == c})}
                for c in classes}

    single = len(folds) == 1
    table, test_rows = {}, []
    for fold in folds:
        for part in ("train", "valid", "test"):
            if not single and part == "valid" and not fold.valid:
                continue  # no inner validation (fixed epochs or --refit)
            row = part if single else f"{fold.name} {'inner valid' if part == 'valid' else part}"
            table[row] = count(getattr(fold, part))
        test_rows.append("test" if single else f"{fold.name} test")
    tested = [i for fold in folds for i in fold.test]
    if not single:
        table["tested (pooled)"] = count(tested)
    return {"unit": "group (patient/lesion/video)" if grouped else
            "image (the data set names no groups: frames are treated as independent)",
            "grouped": grouped, "table": table, "test_rows": test_rows,
            "pooled": "test" if single else "tested (pooled)",
            "of_image": [group_of[i] for i in tested]}


MIN_TEST_GROUPS = 3  # fewer: refused unless allowed; auto folds keep this many in every test fold
FEW_TEST_GROUPS = 5  # fewer: a warning beside the numbers


def check_design(design: dict, allow_small: bool = False,
                 task: str = "classification") -> list[str]:
    """Refuse a test split with fewer than 3 groups of a class (unless ``allow_small``); warn
    under 5; and estimate the smallest macro-F1 change the test split can show.

    Raises:
        ValueError: naming the classes, their groups and how to override.
    """
    unit = "groups" if design["grouped"] else "images"
    rows = design.get("test_rows", ["test"])
    small, few = {}, {}
    for row in rows:
        prefix = "" if row == "test" else row.removesuffix(" test") + ": "
        for c, v in design["table"][row].items():
            if v["groups"] < MIN_TEST_GROUPS:
                small[f"{prefix}{c}"] = v["groups"]
            if v["groups"] < FEW_TEST_GROUPS:
                few[f"{prefix}{c}"] = v["groups"]
    where = "the test split holds" if rows == ["test"] else "a test fold holds"
    if small and not allow_small:
        raise ValueError(f"{where} too few independent " + unit + " to measure a "
                         "class: " + ", ".join(f"{c} {n}" for c, n in small.items()) +
                         f" (at least {MIN_TEST_GROUPS}); resplit with more groups in test, use "
                         "fewer folds, or run anyway with `allow_small_test` (the report says so)")
    rests = "its Dice" if task == "segmentation" else "its recall and F1"
    warnings = [f"{c}: only {n} test {unit}; {rests} rest on them" for c, n in few.items()]
    if small:
        warnings.insert(0, "ran with `allow_small_test`: " + ", ".join(
            f"{c} has {n} test {unit}" for c, n in small.items()))
    pooled = design["table"][design.get("pooled", "test")]
    what = "this test split" if rows == ["test"] else "the pooled out-of-fold predictions"
    if task == "segmentation":
        return warnings
    warnings.append(f"smallest macro-F1 change {what} can show (rough, 80% power, unpaired "
                    f"worst case): {minimal_detectable_change(pooled):.2f}")
    return warnings


def minimal_detectable_change(test: dict) -> float:
    """A rough guide: with ``g_c`` independent units of class ``c``, a class's recall has a
    standard error of at most ``sqrt(0.25 / g_c)``; macro-F1 averages K classes; detecting a
    change between two arms at 5% with 80% power needs about 2.8 x sqrt(2) standard errors."""
    k = max(1, len(test))
    se = math.sqrt(sum(0.25 / max(v["groups"], 1) for v in test.values())) / k
    return 2.8 * math.sqrt(2) * se


@dataclass
class ExperimentPlan:
    """Everything decided before anything trains: the real images, the folds, each fold's
    synthetic images and the design table (checked)."""

    scheme: str
    classes: tuple[str, ...]
    real: list[ImageRef]
    group_of: list[str]
    folds: list[Fold]
    selections: list[Selection | None]
    design: dict
    evaluation: dict
    gate: list[dict] | None = None  # per fold, once the run has gated its selection
    gated: list[Selection | None] | None = None  # each fold's gated selection (the gated arm)
    expert: list[Selection | None] | None = None  # each fold's selection, masks rated well

    def arm_selection(self, f: int, arm: str) -> Selection:
        """The synthetic images fold ``f`` adds in ``arm`` (the gated arm: those its gate kept)."""
        if arm == GATED:
            return self.gated[f]
        if arm == EXPERT:
            return self.expert[f]
        return self.selections[f]

    @property
    def synthetic_refs(self) -> list[ImageRef]:
        """Every synthetic image any fold adds, once each, by content hash."""
        return sorted({r for sel in self.selections if sel for r in sel.images},
                      key=lambda r: r.sha256)


def _provenance(db: Database, shas: Iterable[str]) -> dict[str, tuple[str, dict]]:
    """SHA-256 -> (generator, provenance ``extra``) of synthetic images, in one query."""
    from review_db import queries

    with db.session() as session:
        images, _ = queries.synthetic_page(session, shas=sorted(set(shas)))
        return {i.sha256: (i.provenance.generator, dict(i.provenance.extra or {}))
                for i in images}


def _generators_of(db: Database, images: list[ImageRef]) -> set[str]:
    return {generator for generator, _ in _provenance(db, [r.sha256 for r in images]).values()}


def _select(db: Database, config: ExperimentConfig, scheme: str, counts: dict) -> Selection:
    # with an expert arm the mask filter makes that arm; the others see the unfiltered choice
    policy = replace(config.policy, min_mask_quality=None) if EXPERT in config.arms \
        else config.policy
    selection = select_synthetic(db, policy, scheme, counts,
                                 with_masks=config.task == "segmentation"
                                 or config.policy.min_gate_iou is not None
                                 or bool({GATED, EXPERT} & set(config.arms)))
    if not selection.images:
        raise ValueError(f"the selection policy chose no synthetic image "
                         f"(counts: {selection.counts}); the augmented arm would equal the "
                         "baseline. Run the baseline alone with `baseline_only` (arms: "
                         "baseline), or loosen the policy")
    return selection


@dataclass(frozen=True)
class _RealSide:
    """The experiment's real images in fold order, with their labels and groups."""

    manifest: Manifest
    scheme: str
    classes: tuple[str, ...]
    items: list[ManifestItem]
    real: list[ImageRef]
    group_of: list[str]
    grouped: bool

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.real]


def _real_side(workspace: Workspace, config: ExperimentConfig) -> _RealSide:
    """Check the request's own fields, then read its data set's images under its scheme."""
    allowed = SEGMENTATION_ARMS if config.task == "segmentation" else CLASSIFICATION_ARMS
    if not config.arms or any(a not in allowed for a in config.arms):
        raise ValueError(f"arms must be some of {allowed}; got {config.arms}")
    if config.task != "segmentation" and (config.real_fractions or config.against):
        raise ValueError("`real_fractions` and `against` are for the segmentation task "
                         "(diagnostics reads a second source for classification)")
    if not config.seeds:
        raise ValueError("give at least one seed")
    if config.folds == 1:
        raise ValueError("folds: 1 fold cannot test every image on a model that did not learn "
                         "from it; use 2 or more (or 0 for the fixed split)")
    config.train.validate()
    manifest = workspace.load_manifest(config.dataset)
    scheme = config.scheme or manifest.scheme
    manifest = manifest.with_scheme(scheme)
    items = [i for split in ("train", "valid", "test") for i in manifest.split_items(split)]
    if config.task == "segmentation":
        if config.refit or config.linear_probe:
            raise ValueError("`refit` and `linear_probe` are for classification; segmentation "
                             "stops early on an inner validation split (`inner_valid`) or "
                             "trains fixed epochs (`inner_valid` 0)")
        if config.against:
            other = workspace.load_manifest(config.against).items
            missing = [i.id for i in other if not i.mask]
            if missing:
                raise ValueError(f"`against`: data set {config.against!r} has {len(missing)} "
                                 f"images without a mask (e.g. {', '.join(missing[:3])})")
        unmasked = [i.id for i in items if not i.mask]
        if unmasked:
            raise ValueError(f"data set {config.dataset!r}: {len(unmasked)} of {len(items)} images "
                             f"have no mask (e.g. {', '.join(unmasked[:3])}); the segmentation "
                             "task needs a mask for every image (`task`)")
    if config.folds == 0:
        for split in ("train", "valid", "test"):
            if not manifest.split_items(split):
                raise ValueError(f"data set {config.dataset!r} has no {split} images; an "
                                 "experiment needs train, valid and test splits (or `folds` K)")
    return _RealSide(manifest, scheme, tuple(get_scheme(scheme).classes), items,
                     [ImageRef(i.sha256, i.image, manifest.label_of(i, scheme), mask=i.mask)
                      for i in items],
                     [i.group or i.id for i in items], any(i.group for i in items))


def _auto_folds(side: _RealSide, config: ExperimentConfig,
                train_only: list[int]) -> tuple[int, str]:
    """``folds`` auto: the largest K whose every test fold holds 3 groups of each class (the
    fixed split when none does), and the sentence that says so."""
    labels, group_of = side.labels, side.group_of
    k = choose_folds([side.classes.index(c) for c in labels], group_of, config.cv_seed,
                     train_only, MIN_TEST_GROUPS)
    unit = "groups" if side.grouped else "images"
    if k is not None:
        return k, (f"{k}-fold CV: the most folds (up to {MAX_AUTO_FOLDS}) for which every test "
                   f"fold holds at least {MIN_TEST_GROUPS} {unit} of each class")
    trained = {group_of[i] for i in train_only}
    testable = {c: len({g for g, label in zip(group_of, labels) if label == c and g not in trained})
                for c in side.classes}
    chosen = (f"fixed split: no K >= 2 gives every test fold {MIN_TEST_GROUPS} {unit} of each "
              "class (" + ", ".join(f"{c}: {n}" for c, n in testable.items()) + " to test)")
    if not all(side.manifest.split_items(split) for split in ("train", "valid", "test")):
        raise ValueError(f"data set {config.dataset!r}: {chosen}; and it has no fixed "
                         "valid/test split either")
    return 0, chosen


def _cv_folds(side: _RealSide, config: ExperimentConfig, k: int,
              train_only: list[int]) -> tuple[list[Fold], dict]:
    """K grouped folds and how they were made, for the report."""
    group_of = side.group_of
    inner = 0.0 if config.refit else config.inner_valid
    evaluation = {"kind": "grouped cross-validation", "folds": k, "seed": config.cv_seed,
                  "stratified": True, "grouped": side.grouped, "inner_valid": inner,
                  "refit": config.refit,
                  "validation": _validation_words(inner, config.refit, config.task)}
    if train_only:
        evaluation["train_only_groups"] = len({group_of[i] for i in train_only})
        evaluation["train_only_images"] = len(train_only)
    folds = grouped_folds([side.classes.index(c) for c in side.labels], group_of, k,
                          config.cv_seed, train_only, side.classes, inner)
    evaluation["groups_learned"] = [len({group_of[i] for i in fold.train}) for fold in folds]
    evaluation["groups_learned_probe"] = [len({group_of[i] for i in fold.train + fold.valid})
                                          for fold in folds]
    return folds, evaluation


def _check_synthetic(db: Database, workspace: Workspace, config: ExperimentConfig,
                     side: _RealSide, folds: list[Fold], selections: list[Selection],
                     cv: bool) -> set[str]:
    """Refuse synthetic images that would leak a fold's validation or test part: from a
    generator that learned from its images or groups, or inpainted into one of its frames.
    Returns the generators that supply any fold."""
    real, group_of, unknown_ok = side.real, side.group_of, config.allow_unknown_training_data
    generators = [_generators_of(db, sel.images) for sel in selections]
    if cv:
        seen = _seen_groups(workspace, set().union(*generators), real, group_of, unknown_ok)
        leaks = fold_leaks(folds, generators, seen, group_of)
        if leaks:
            raise ValueError(
                "synthetic images from generators that learned from a fold's validation/test "
                "groups would leak into that fold: " + "; ".join(leaks) + ". Run with "
                "`seen_groups_train` (the groups a generator saw then train in every fold and "
                "only groups no generator saw are tested), use the fixed split, or exclude "
                "the generator (`generators`)")
    else:
        fold = folds[0]
        check_leakage(db, workspace, selections[0].images,
                      {real[i].sha256: f"{config.dataset}:{side.items[i].id} ({part})"
                       for part in ("valid", "test") for i in getattr(fold, part)}, unknown_ok)
        # a split that is not grouped by lesion can hold other frames of a lesion the
        # generator learned from in validation or test: refused by group as well
        leaks = fold_leaks(folds, generators,
                           _seen_groups(workspace, generators[0], real, group_of, unknown_ok),
                           group_of)
        if leaks:
            raise ValueError(
                "synthetic images from generators that learned from frames of a validation/"
                "test patient or lesion would leak into the comparison: " + "; ".join(leaks) +
                ". Resplit the data set grouped by patient/lesion, use `folds` (with "
                "`seen_groups_train`), or exclude the generator (`generators`)")
    inpainted = background_leaks(db, folds, selections, real, group_of)
    if inpainted:
        raise ValueError("synthetic images inpainted into frames of a fold's validation/test "
                         "groups would leak into that fold: " + "; ".join(inpainted[:10]) +
                         (f" and {len(inpainted) - 10} more" if len(inpainted) > 10 else "") +
                         ". Exclude these images or their generator (`generators`)")
    return set().union(*generators)


def plan_experiment(db: Database, workspace: Workspace, config: ExperimentConfig) -> ExperimentPlan:
    """Check the request, build the folds (the fixed split, or grouped K-fold CV), choose each
    fold's synthetic images, check generators for leaks and the design for enough groups.

    Raises:
        ValueError: unknown arm, an empty split, too few groups, no synthetic image for the
            augmented arm, or a generator that learned from a held-out image or group.
    """
    side = _real_side(workspace, config)
    labels, group_of = side.labels, side.group_of
    if config.policy.min_gate_iou is not None or GATED in config.arms:
        unmasked = [i.id for i in side.items if not i.mask]
        if unmasked:
            raise ValueError(f"`min_gate_iou`: the segmentation gate learns from real masks; "
                             f"{len(unmasked)} images of {config.dataset!r} have none "
                             f"(e.g. {', '.join(unmasked[:3])})")
    augmented = bool({"augmented", "synthetic", GATED, EXPERT} & set(config.arms))
    k, seen_train, chosen = config.folds, config.seen_groups_train, None
    train_only: list[int] = []
    if k != 0 and augmented and (seen_train or k is None):
        probe = _select(db, config, side.scheme, Counter(labels))
        seen = _seen_groups(workspace, _generators_of(db, probe.images), side.real, group_of,
                            config.allow_unknown_training_data)
        held = set().union(*seen.values()) if seen else set()
        train_only = [i for i, g in enumerate(group_of) if g in held]
    if k is None:
        k, chosen = _auto_folds(side, config, train_only)
        seen_train = seen_train or bool(k and train_only)
    if k:
        folds, evaluation = _cv_folds(side, config, k, train_only if seen_train else [])
    else:
        folds, evaluation = fixed_folds([i.split for i in side.items]), {"kind": "fixed split"}
    if chosen:
        evaluation["chosen"] = "auto: " + chosen
    selections: list[Selection | None] = [None] * len(folds)
    if augmented:
        selections = [_select(db, config, side.scheme, Counter(labels[i] for i in fold.train))
                      for fold in folds]
        used = _check_synthetic(db, workspace, config, side, folds, selections, cv=bool(k))
    design = design_table(folds, labels, group_of, side.classes, side.grouped)
    design["warnings"] = check_design(design, config.allow_small_test, config.task)
    if augmented:
        unknown = sorted(g for g in used if declared_unknown(workspace.models_dir, g))
        if unknown:
            design["warnings"].insert(0, "ran with `allow_unknown_training_data`: "
                                         f"{', '.join(unknown)} declared no training data; its "
                                         "images may come from frames this run tests")
    expert = _expert_selections(db, config, selections) if EXPERT in config.arms else None
    return ExperimentPlan(side.scheme, side.classes, side.real, group_of, folds, selections,
                          design, evaluation, expert=expert)


def _expert_selections(db: Database, config: ExperimentConfig,
                       selections: list[Selection | None]) -> list[Selection | None]:
    """Each fold's selection less the images whose mask the reviewers did not rate at least
    ``min_mask_quality`` (the expert arm).

    Raises:
        ValueError: no ``min_mask_quality``, or a fold left with no image.
    """
    from review_db import queries

    policy = config.policy
    if policy.min_mask_quality is None:
        raise ValueError("the expert arm keeps images whose mask reviewers rated well: give "
                         "`min_mask_quality` (moderate or good)")
    with db.session() as session:
        rows = queries.synthetic_mask_ratings(session, policy.studies)
    return expert_selections(rows, policy, selections)



def _validation_words(inner: float, refit: bool, task: str = "classification") -> str:
    """How the networks (and, for classification, the linear probe) use a fold's training
    part."""
    if refit:
        networks = ("networks: epoch count chosen by inner grouped 3-fold CV within each fold's "
                    "training part, then trained on the whole training part")
        probe = "the whole training part"
    elif inner > 0:
        networks = (f"networks: early stopping on an inner validation split ({inner:.0%} of each "
                    "fold's training groups, at least 2 of each class, grouped and stratified), "
                    "trained on the rest")
        probe = "the whole training part"
    else:
        networks = "networks: fixed epochs on the whole training part (no validation)"
        probe = "the same"
    return networks if task == "segmentation" else f"{networks}; linear probe: {probe}"


def _seen_groups(workspace: Workspace, generators: set[str], real: list[ImageRef],
                 group_of: list[str], allow_unknown: bool = False) -> dict[str, set[str]]:
    """The groups of the experiment's images each generator (or a model it was fine-tuned
    from) learned from; a generator without a training record is refused, and so is an
    imported one declared as trained on unknown data unless ``allow_unknown``."""
    trained_on, problems = {}, []
    for generator in sorted(generators):
        try:
            trained_on[generator] = generator_training_images(workspace.models_dir, generator)
        except UnknownTrainingData as error:
            if allow_unknown:
                trained_on[generator] = set()
            else:
                problems.append(f"{error}; use it anyway with `allow_unknown_training_data` "
                                "(the report then warns)")
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("cannot tell what these generators learned from: " + "; ".join(problems) +
                         ". Restore the model folder or exclude the generator (`generators`)")
    return groups_seen(trained_on, {r.sha256: g for r, g in zip(real, group_of)})


class _TrainingSets:
    """The real images (loaded once) and the synthetic images any fold adds, and each fold's
    training set per arm."""

    def __init__(self, plan: ExperimentPlan, size: int, pixels: PixelCache) -> None:
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


def _train_arms(config: ExperimentConfig, plan: ExperimentPlan, sets: _TrainingSets,
                folder: Path, run_id: str, progress: Progress, cancel: CancelToken | None,
                device: torch.device | None, registry: WeightsRegistry | None,
                features: dict) -> tuple[dict, dict, TrainedClassifier]:
    """Train every (fold, arm, seed) and predict its fold's test part. Returns the pooled
    predictions and the per-fold training records of each (arm, seed), and the last model
    (its normalisation is the run's)."""
    folds, classes, pool = plan.folds, plan.classes, sets.pool
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    offsets = np.cumsum([0] + [len(fold.test) for fold in folds])
    units = [(f, arm, seed) for f in range(len(folds)) for seed in config.seeds
             for arm in config.arms]
    predicted = {(arm, seed): np.zeros(offsets[-1], dtype=int) for arm in config.arms
                 for seed in config.seeds}
    fold_info: dict = {(arm, seed): [] for arm in config.arms for seed in config.seeds}
    best: dict[str, float] = {}
    for u, (f, arm, seed) in enumerate(units):
        def unit_progress(done: int, total: int, message: str, u: int = u) -> None:
            progress(u * 1000 + int(1000 * done / max(total, 1)), len(units) * 1000, message)

        fold, where = folds[f], (f"{folds[f].name} · " if cv else "")
        label = f"{where}{arm} seed {seed} ({u + 1}/{len(units)}) · "
        train, train_config, inner_epochs = sets.train_set(f, arm), config.train, None
        if cv and config.refit:  # the epoch count from inner CV, then the whole training part
            inner_epochs = [train_classifier(
                sets.train_set(f, arm, inner_train), pool.subset(inner_valid), classes,
                config.train, seed, device, registry, unit_progress, cancel,
                label=f"{label}inner {j + 1} · ", feature_cache=features).best_epoch
                for j, (inner_train, inner_valid) in enumerate(inner_folds(
                    fold.train, [classes.index(r.label) for r in plan.real], plan.group_of, 3,
                    config.cv_seed + f))]
            train_config = replace(config.train, epochs=max(1, round(np.median(inner_epochs))))
        trained = train_classifier(train, pool.subset(fold.valid), classes, train_config, seed,
                                   device, registry, unit_progress, cancel, label=label,
                                   feature_cache=features)
        device_used = next(trained.model.parameters()).device
        predicted[arm, seed][offsets[f]:offsets[f + 1]] = predict_run(
            trained, config.train, pool.subset(fold.test), device_used, features).argmax(1)
        fold_info[arm, seed].append({"fold": fold.name, "best_epoch": trained.best_epoch,
                                     "valid_macro_f1": trained.best_valid_macro_f1
                                     if fold.valid else None,
                                     "history": trained.history, "n_train": len(train),
                                     **({"inner_best_epochs": inner_epochs}
                                        if inner_epochs else {})})
        if not cv and (arm not in best or trained.best_valid_macro_f1 > best[arm]):
            best[arm] = trained.best_valid_macro_f1
            save_classifier(folder / "checkpoints" / arm, trained.model, trained.spec,
                            {"run": run_id, "arm": arm, "seed": seed,
                             "best_epoch": trained.best_epoch,
                             "valid_macro_f1": trained.best_valid_macro_f1})
        trained.model.to("cpu")
    return predicted, fold_info, trained


def _probe_arms(config: ExperimentConfig, plan: ExperimentPlan, sets: _TrainingSets,
                test_labels: np.ndarray, progress: Progress, device: torch.device | None,
                registry: WeightsRegistry | None, features: dict) -> dict[str, list[dict]]:
    """The linear probe beside each arm: logistic regression on the frozen backbone's features,
    over the same folds (in CV it learns from each fold's whole training part)."""
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    names = {"baseline": PROBE, "augmented": f"{PROBE} + synthetic",
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


def _with_uncertainty(results: dict, config: ExperimentConfig, plan: ExperimentPlan,
                      per_seed: dict[str, list[dict]], test_labels: np.ndarray) -> dict:
    """A cluster bootstrap over the tested groups (with the seeds) for every arm, and the
    paired augmented-minus-baseline deltas with their regression warnings."""
    classes, of_image = plan.classes, plan.design["of_image"]
    results["test_groups"] = plan.design
    results["uncertainty"] = {arm: cluster_bootstrap(
        test_labels, [m["predicted"] for m in rows], of_image, classes)
        for arm, rows in per_seed.items()}
    if set(ARMS) <= set(config.arms):
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
    return results


def run_experiment(db: Database, workspace: Workspace, config: ExperimentConfig,
                   progress: Progress = no_progress, cancel: CancelToken | None = None,
                   device: torch.device | None = None,
                   registry: WeightsRegistry | None = None,
                   feature_cache: dict | None = None,
                   plan: ExperimentPlan | None = None) -> ExperimentResult:
    """Train every arm over every fold and seed, evaluate on each fold's real test part
    (pooled out-of-fold with ``folds``) and store the run.

    ``feature_cache``: a dict the caller keeps to share frozen pretrained-backbone features
    (by content hash) with later runs; each run keeps its own otherwise. ``plan``: the plan
    :func:`plan_experiment` made for this config before the job was queued (made here when
    not given), so a run is planned once.

    Raises:
        ValueError: see :func:`plan_experiment`.
        Cancelled: when ``cancel`` is set.
    """
    plan = plan or plan_experiment(db, workspace, config)
    if (config.policy.min_gate_iou is not None or GATED in config.arms) and any(plan.selections):
        plan = gate_selections(config, plan, PixelCache(workspace.pixel_cache_dir), progress,
                               cancel, device, registry)
    classes, folds = plan.classes, plan.folds
    cv = plan.evaluation["kind"] == "grouped cross-validation"
    progress(0, 1, f"loading {len(plan.real)} real images")
    if config.task == "segmentation":
        from polyp_core.segment.experiment import run_segmentation

        run_id, folder = new_run_dir(workspace, "retrain")
        results = run_segmentation(config, plan, PixelCache(workspace.pixel_cache_dir), folder,
                                   progress, cancel, device, registry, workspace.load_manifest)
        return _store_run(db, workspace, config, plan, run_id, folder, results, progress)
    sets = _TrainingSets(plan, config.train.image_size, PixelCache(workspace.pixel_cache_dir))
    run_id, folder = new_run_dir(workspace, "retrain")
    # frozen pretrained backbone: folds, seeds and the probe share embeddings
    features: dict = {} if feature_cache is None else feature_cache
    predicted, fold_info, trained = _train_arms(config, plan, sets, folder, run_id, progress,
                                                cancel, device, registry, features)
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
        per_seed |= _probe_arms(config, plan, sets, test_labels, progress, device, registry,
                                features)
    results = {"classes": list(classes), "scheme": plan.scheme, "evaluation": plan.evaluation,
               "arms": {arm: {"per_seed": rows, "summary": summarise_arm(rows)}
                        for arm, rows in per_seed.items()},
               "normalisation": {"mean": list(trained.spec.mean), "std": list(trained.spec.std),
                                 "arms": list(config.arms)}}
    _with_uncertainty(results, config, plan, per_seed, test_labels)
    return _store_run(db, workspace, config, plan, run_id, folder, results, progress)


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
    from polyp_core.segment.gate import GATE_TRAIN, PAPER_THRESHOLD, fold_gate, kept_by_gate
    from polyp_core.segment.train import load_masked

    threshold = config.policy.min_gate_iou
    threshold = PAPER_THRESHOLD if threshold is None else threshold
    real = load_masked(plan.real, GATE_TRAIN.image_size, pixels)
    selections, info = [], []
    for f, (fold, selection) in enumerate(zip(plan.folds, plan.selections)):
        if selection is None:
            selections.append(None)
            continue
        progress(f, len(plan.folds), f"{fold.name}: training its segmentation gate")
        candidates = load_masked(selection.images, GATE_TRAIN.image_size, pixels)
        ious = fold_gate(real, list(fold.train), candidates, GATE_TRAIN, config.seeds[0], device,
                         registry, cancel)
        kept = kept_by_gate(selection.images, ious, threshold)
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
             _image_lists(plan, plan.synthetic_refs))
    progress(1, 1, f"stored run {run_id}")
    return ExperimentResult(run_id, folder, results)


def _pool_probe(parts: list[dict], folds: list[Fold], test_labels: np.ndarray,
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


def _image_lists(plan: ExperimentPlan, synthetic: list[ImageRef]) -> dict:
    """What ``images.json`` stores: the real images with their split (fixed) or the fold that
    tested them (CV), and every synthetic image with the folds it trained."""
    if len(plan.folds) == 1:
        fold = plan.folds[0]
        images = {part: [asdict(plan.real[i]) for i in getattr(fold, part)]
                  for part in ("train", "valid", "test")}
        images["synthetic"] = [asdict(r) for r in synthetic]
        return images
    tested_in = {i: fold.name for fold in plan.folds for i in fold.test}
    used_in: dict[str, list[str]] = {}
    for fold, sel in zip(plan.folds, plan.selections):
        for ref in sel.images if sel else []:
            used_in.setdefault(ref.sha256, []).append(fold.name)
    return {"real": [asdict(r) | {"group": g, "tested_in": tested_in.get(i, "train only")}
                     for i, (r, g) in enumerate(zip(plan.real, plan.group_of))],
            "synthetic": [asdict(r) | {"folds": used_in[r.sha256]} for r in synthetic]}


def repeat_experiment(db: Database, workspace: Workspace, run_id: str,
                      **kwargs: object) -> ExperimentResult:
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
    tasks = {r["results"].get("task", "classification") for r in (a, b)}
    if len(tasks) > 1:
        raise ValueError(f"{run_a} and {run_b} answer different tasks ({', '.join(sorted(tasks))}); "
                         "compare runs of one task")
    metrics = {}
    for arm in sorted(set(a["results"]["arms"]) & set(b["results"]["arms"])):
        sa, sb = a["results"]["arms"][arm]["summary"], b["results"]["arms"][arm]["summary"]
        if tasks == {"segmentation"}:
            metrics[arm] = {m: sb[m]["mean"] - sa[m]["mean"] for m in ("dice", "iou", "precision",
                                                                       "recall")}
            continue
        row = {m: sb[m]["mean"] - sa[m]["mean"] for m in ("macro_f1", "balanced_accuracy", "accuracy")}
        row["per_class"] = {c: {m: sb["per_class"][c][m]["mean"] - sa["per_class"][c][m]["mean"]
                                for m in ("precision", "recall", "f1")}
                            for c in sa["per_class"] if c in sb["per_class"]}
        metrics[arm] = row
    return {"runs": [run_a, run_b], "config": changed,
            "images": {"only_in_a": sorted(syn_a - syn_b), "only_in_b": sorted(syn_b - syn_a),
                       "shared": len(syn_a & syn_b)},
            "ratings_changed": hash_a != hash_b, "metrics": metrics}
