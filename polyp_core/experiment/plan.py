"""Everything an experiment decides before anything trains: the real images under the scheme,
the folds (the fixed split, or grouped K-fold CV chosen automatically), each fold's synthetic
selection (and the expert arm's), the leak checks and the design table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from polyp_core.data.labels import get_scheme
from polyp_core.data.manifest import Manifest, ManifestItem, source_group
from polyp_core.data.tensors import ImageRef
from polyp_core.experiment.config import ExperimentConfig
from polyp_core.experiment.design import (MIN_TEST_GROUPS, check_design, design_table,
                                          validation_words)
from polyp_core.experiment.folds import (MAX_AUTO_FOLDS, Fold, choose_folds, fixed_folds,
                                         fold_leaks, grouped_folds, inner_folds)
from polyp_core.experiment.leakage import (background_leaks, check_leakage, generators_of,
                                           seen_groups)
from polyp_core.experiment.policy import Selection, expert_selections, select_synthetic
from polyp_core.generation.lineage import declared_unknown
from polyp_core.tasks import EXPERT, GATED, selected_arms, task
from polyp_core.workspace import Workspace
from review_db.database import Database


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

    def inner_folds(self, f: int, k: int, seed: int) -> list[tuple[list[int], list[int]]]:
        """``k`` grouped, stratified inner folds of fold ``f``'s training part (``refit``)."""
        return inner_folds(self.folds[f].train, [self.classes.index(r.label) for r in self.real],
                           self.group_of, k, seed)

    @property
    def synthetic_refs(self) -> list[ImageRef]:
        """Every synthetic image any fold adds, once each, by content hash."""
        return sorted({r for sel in self.selections if sel for r in sel.images},
                      key=lambda r: r.sha256)


def _select(db: Database, config: ExperimentConfig, scheme: str, counts: dict) -> Selection:
    # with an expert arm the mask filter makes that arm; the others see the unfiltered choice
    policy = replace(config.policy, min_mask_quality=None) if EXPERT in config.arms \
        else config.policy
    selection = select_synthetic(db, policy, scheme, counts,
                                 with_masks=task(config.task).NEEDS_MASKS
                                 or config.policy.min_gate_iou is not None
                                 or bool({GATED, EXPERT} & set(config.arms)))
    if not selection.images:
        raise ValueError(f"the selection policy chose no synthetic image "
                         f"(counts: {selection.counts}); the augmented arm would equal the "
                         "baseline. Run the baseline alone with `baseline_only` (arms: "
                         "baseline), or loosen the policy")
    return selection


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
    chosen = task(config.task)
    if not config.arms or any(a not in chosen.ARMS for a in config.arms):
        raise ValueError(f"arms must be some of {chosen.ARMS}; got {config.arms}")
    chosen.check_request(config, workspace.load_manifest)
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
    if chosen.NEEDS_MASKS:
        unmasked = [i.id for i in items if not i.mask]
        if unmasked:
            raise ValueError(f"data set {config.dataset!r}: {len(unmasked)} of {len(items)} images "
                             f"have no mask (e.g. {', '.join(unmasked[:3])}); the {config.task} "
                             "task needs a mask for every image (`task`)")
    if config.folds == 0:
        for split in ("train", "valid", "test"):
            if not manifest.split_items(split):
                raise ValueError(f"data set {config.dataset!r} has no {split} images; an "
                                 "experiment needs train, valid and test splits (or `folds` K)")
    return _RealSide(manifest, scheme, tuple(get_scheme(scheme).classes), items,
                     [ImageRef(i.sha256, i.image, manifest.label_of(i, scheme), mask=i.mask)
                      for i in items],
                     [i.group or i.id for i in items], any(source_group(i) for i in items))


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
                  "validation": validation_words(inner, config.refit,
                                                task(config.task).LINEAR_PROBE)}
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
    generators = [generators_of(db, sel.images) for sel in selections]
    names = [f"{config.dataset}:{item.id}" for item in side.items]
    if cv:
        seen = seen_groups(workspace, set().union(*generators), real, group_of, unknown_ok)
        leaks = fold_leaks(folds, generators, seen, group_of, names)
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
                      _held_out_names(config.dataset, side, fold), unknown_ok)
        # a split that is not grouped by lesion can hold other frames of a lesion the
        # generator learned from in validation or test: refused by group as well
        leaks = fold_leaks(folds, generators,
                           seen_groups(workspace, generators[0], real, group_of, unknown_ok),
                           group_of, names)
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


def _held_out_names(dataset: str, side: _RealSide, fold: Fold) -> dict[str, str]:
    """SHA-256 of every validation/test image -> how a leak refusal names it
    (``dataset:id (split)``), with every other image of the same file beside it (a byte copy
    in the training split is how a generator trained on ``train`` comes to have seen it)."""
    names: dict[str, list[str]] = {}
    for part in ("train", "valid", "test"):
        for i in getattr(fold, part):
            names.setdefault(side.real[i].sha256, []).append(
                f"{dataset}:{side.items[i].id} ({part})")
    return {side.real[i].sha256: " = ".join(names[side.real[i].sha256])
            for part in ("valid", "test") for i in getattr(fold, part)}


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
    augmented = selected_arms(config.arms)
    k, seen_train, chosen = config.folds, config.seen_groups_train, None
    train_only: list[int] = []
    if k != 0 and augmented and (seen_train or k is None):
        probe = _select(db, config, side.scheme, Counter(labels))
        seen = seen_groups(workspace, generators_of(db, probe.images), side.real, group_of,
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
    chosen_task = task(config.task)
    design["warnings"] = check_design(design, config.allow_small_test, chosen_task.RESTS_ON,
                                      chosen_task.DETECTABLE_CHANGE)
    if augmented:
        unknown = sorted(g for g in used if declared_unknown(workspace.models_dir, g))
        if unknown:
            design["warnings"].insert(0, "ran with `allow_unknown_training_data`: "
                                         f"{', '.join(unknown)} declared no training data; its "
                                         "images may come from frames this run tests")
    expert = _expert_selections(db, config, selections) if EXPERT in config.arms else None
    return ExperimentPlan(side.scheme, side.classes, side.real, group_of, folds, selections,
                          design, evaluation, expert=expert)
