"""Grouped cross-validation: the folds, per-fold generator checks, and the demo's whole CV loop
(baseline, augmented with the demo generator's images, paired deltas)."""

from __future__ import annotations

import json
from dataclasses import replace
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from polyp_core.experiment import ExperimentConfig, run_experiment
from polyp_core.training import TrainConfig
from polyp_core.experiment import plan_experiment
from polyp_core.experiment.folds import fold_leaks, grouped_folds, groups_seen

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from polyp_core.experiment.folds import Fold

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
TINY = TrainConfig(image_size=32, epochs=2, batch_size=32, patience=2, hidden=32)


def _lesions(seed=0):
    """40 lesions (24 AD, 8 SSA, 8 HP) of 1-4 frames each: labels and groups per frame."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for lesion in range(40):
        cls = 0 if lesion < 24 else (1 if lesion < 32 else 2)
        for _ in range(rng.integers(1, 5)):
            labels.append(cls)
            groups.append(f"L{lesion:02d}")
    return labels, groups


def test_grouped_folds_are_stratified_grouped_and_test_every_group_once():
    labels, groups = _lesions()
    fixed = [i for i, g in enumerate(groups) if g in ("L00", "L01", "L24")]
    folds = grouped_folds(labels, groups, 4, seed=0, train_only=fixed, classes=("AD", "SSA", "HP"))
    assert [f.name for f in folds] == ["fold 1", "fold 2", "fold 3", "fold 4"]
    tested = [i for f in folds for i in f.test]
    assert sorted(tested) == sorted(set(range(len(labels))) - set(fixed))  # each once
    for k, fold in enumerate(folds):
        parts = [set(fold.train), set(fold.valid), set(fold.test)]
        assert set().union(*parts) == set(range(len(labels)))
        assert sum(map(len, parts)) == len(labels)  # disjoint
        owners = [{groups[i] for i in part} for part in parts]
        assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
        assert set(fixed) <= parts[0]  # the seen groups only ever train
        assert {labels[i] for i in fold.test} == {0, 1, 2}  # stratified: every class tested
        # the inner validation split comes out of the training part, never out of a test
        # part: at least 2 groups of each class, about 15 % of the training groups, and none
        # of the seen (train-only) groups
        assert not set(fixed) & parts[1]
        for c in (0, 1, 2):
            valid_groups = {groups[i] for i in fold.valid if labels[i] == c}
            train_groups = {groups[i] for i in fold.train if labels[i] == c}
            assert len(valid_groups) >= 2 and len(train_groups) > len(valid_groups)
        share = len(owners[1]) / len(owners[0] | owners[1])
        assert 0.1 <= share <= 0.3, share
    assert grouped_folds(labels, groups, 4, seed=0) == grouped_folds(labels, groups, 4, seed=0)
    assert grouped_folds(labels, groups, 4, seed=1) != grouped_folds(labels, groups, 4, seed=0)
    # no inner validation: every fold trains on everything but its test part
    for fold in grouped_folds(labels, groups, 4, seed=0, inner_valid=0.0):
        assert fold.valid == () and len(fold.train) + len(fold.test) == len(labels)
    assert len(grouped_folds(labels, groups, 2)) == 2  # two folds now leave a training part
    with pytest.raises(ValueError, match="2 or more"):
        grouped_folds(labels, groups, 1)
    with pytest.raises(ValueError, match="SSA: 8, HP: 8"):
        grouped_folds(labels, groups, 9, classes=("AD", "SSA", "HP"))


def test_fold_leaks_name_the_generator_the_fold_and_the_groups():
    labels, groups = _lesions()
    folds = grouped_folds(labels, groups, 3, seed=0)
    sha = [f"sha{i}" for i in range(len(labels))]
    tested_first = folds[0].test[0]
    seen = groups_seen({"gen-a": {sha[tested_first], "elsewhere"}, "gen-b": set()},
                       dict(zip(sha, groups)))
    assert seen == {"gen-a": {groups[tested_first]}, "gen-b": set()}
    leaks = fold_leaks(folds, [{"gen-a", "gen-b"}, {"gen-b"}, {"gen-a"}], seen, groups)
    # fold 1 tests the group; any other fold fed by gen-a leaks only where the group sits in
    # its inner validation split
    held = [groups[tested_first] in {groups[i] for i in f.valid + f.test} for f in folds]
    assert held[0]
    expected = [f"fold {k + 1}: gen-a learned from 1 group(s) of its validation/test part "
                f"({groups[tested_first]})" for k in (0, 2) if held[k]]
    assert leaks == expected
    # with the images' names: each group's held-out images, with their part
    names = [f"ds:img{i}" for i in range(len(labels))]
    named = fold_leaks(folds, [{"gen-a"}, set(), set()], seen, groups, names)
    members = [(i, part) for part in ("valid", "test") for i in getattr(folds[0], part)
               if groups[i] == groups[tested_first]]
    listed = ", ".join(f"ds:img{i} ({part})" for i, part in members[:3])
    assert named == [f"fold 1: gen-a learned from 1 group(s) of its validation/test part "
                     f"({groups[tested_first]}: {listed}{', ...' if len(members) > 3 else ''})"]
    assert f"ds:img{tested_first} (test)" in named[0]


@SQLITE_ONLY
def test_cv_refuses_generators_that_saw_a_folds_groups_or_keeps_them_in_training(review_env):
    env = review_env
    manifest = env.workspace.load_manifest("phantom")
    seen_lesions = sorted({i.group for i in manifest.split_items("train") if i.label == "AD"})[:3]
    seen_shas = [i.sha256 for i in manifest.items if i.group in seen_lesions]
    for generator in ("gen-a", "gen-b"):  # both learned from three AD lesions only
        (env.workspace.models_dir / generator / "config.json").write_text(
            json.dumps({"trained_on": {"image_sha256": seen_shas}}))
    config = ExperimentConfig(dataset="phantom", train=TINY, seeds=(0,), folds=3,
                              allow_small_test=True)
    with pytest.raises(ValueError) as refused:
        plan_experiment(env.db, env.workspace, config)
    text = str(refused.value)
    assert "gen-a learned from" in text and "gen-b learned from" in text
    assert any(lesion in text for lesion in seen_lesions) and "`seen_groups_train`" in text
    assert "fold " in text
    from dataclasses import replace
    plan = plan_experiment(env.db, env.workspace, replace(config, seen_groups_train=True))
    group_of = plan.group_of
    for fold in plan.folds:
        assert not {group_of[i] for i in fold.valid + fold.test} & set(seen_lesions)
        assert {i for i, g in enumerate(group_of) if g in seen_lesions} <= set(fold.train)
    assert plan.evaluation["train_only_groups"] == 3
    assert plan.evaluation["train_only_images"] == len(seen_shas)
    # auto on this small set: HP has 5 lesions to test, too few for 2 folds of 3, so the fixed
    # split, saying why
    auto = plan_experiment(env.db, env.workspace, replace(config, folds=None, arms=("baseline",)))
    assert auto.evaluation["kind"] == "fixed split" and len(auto.folds) == 1
    assert auto.evaluation["chosen"] == ("auto: fixed split: no K >= 2 gives every test fold 3 "
                                         "groups of each class (AD: 20, SSA: 6, HP: 5 to test)")
    with pytest.raises(ValueError, match="2 or more"):
        plan_experiment(env.db, env.workspace, replace(config, folds=1))


@pytest.fixture(scope="module")
def demo_cv(tmp_path_factory):
    """The demo data set (300 frames at 64 px) with the shipped demo generator and 12 of its
    images in the pool (20 DDIM steps: the loop needs images of the generator, not good ones).
    The demo generator learned from the full-size demo set, whose files this one does not share,
    so no group of it is held back."""
    from tests.conftest import demo_pool

    workspace, db = demo_pool(tmp_path_factory.mktemp("cv"), n_frames=300, steps=20)
    return workspace, db


def test_demo_cv_loop_baseline_augmented_and_paired_deltas(demo_cv):
    workspace, db = demo_cv
    # auto: the most folds (up to 10) whose every test fold holds 3 lesions of each class; 9
    # would leave a fold with 2 lesions of a class
    auto = plan_experiment(db, workspace, ExperimentConfig(dataset="phantom", folds=None))
    assert auto.evaluation["kind"] == "grouped cross-validation" and len(auto.folds) == 8
    assert auto.evaluation["chosen"].startswith("auto: 8-fold CV: the most folds (up to 10)")
    for row in auto.design["test_rows"]:
        assert min(v["groups"] for v in auto.design["table"][row].values()) >= 3
    with pytest.raises(ValueError, match="fold 1: SSA 2, fold 1: HP 1, .*at least 3"):
        plan_experiment(db, workspace, ExperimentConfig(dataset="phantom", folds=20))
    # 3 folds: every model learns from at least 1.5 times as many lesions of each class as its
    # fold tests (a whole fold kept for early stopping gave as many)
    table = plan_experiment(db, workspace, ExperimentConfig(dataset="phantom", folds=3)).design
    for f in (1, 2, 3):
        for c in ("AD", "SSA", "HP"):
            trained = table["table"][f"fold {f} train"][c]["groups"]
            tested = table["table"][f"fold {f} test"][c]["groups"]
            assert trained >= 1.5 * tested, (f, c, trained, tested)
            assert table["table"][f"fold {f} inner valid"][c]["groups"] >= 2

    started = time.monotonic()
    result = run_experiment(db, workspace, ExperimentConfig(
        dataset="phantom", train=TINY, seeds=(0, 1), folds=3, name="demo-cv"),
        device=torch.device("cpu"))
    print(f"demo CV loop (3 folds x 2 seeds x 2 arms): {time.monotonic() - started:.0f} s")
    res, manifest = result.results, workspace.load_manifest("phantom")
    n = len(manifest.items)
    assert res["evaluation"]["kind"] == "grouped cross-validation" and res["evaluation"]["folds"] == 3
    design = res["test_groups"]
    assert len(design["of_image"]) == n  # every image tested once, pooled out of fold
    assert design["table"]["tested (pooled)"]["SSA"]["images"] == \
        sum(i.label == "SSA" for i in manifest.items)
    assert design["test_rows"] == ["fold 1 test", "fold 2 test", "fold 3 test"]
    for arm in ("baseline", "augmented"):
        for row in res["arms"][arm]["per_seed"]:
            assert len(row["predicted"]) == n and sum(map(sum, row["confusion"])) == n
            assert [f["fold"] for f in row["folds"]] == ["fold 1", "fold 2", "fold 3"]
        ci = res["uncertainty"][arm]["macro_f1"]
        assert ci["low"] <= ci["estimate"] <= ci["high"]
        assert res["uncertainty"][arm]["groups"] == len({i.group for i in manifest.items})
    real_train = [row["n_train"] for row in res["arms"]["baseline"]["per_seed"][0]["folds"]]
    added = [sum(c["selected"].values()) for c in res["selection"]["per_fold"]]
    assert [row["n_train"] for row in res["arms"]["augmented"]["per_seed"][0]["folds"]] == \
        [r + a for r, a in zip(real_train, added)] and all(added)
    delta = res["delta_cluster"]
    assert delta["macro_f1"]["low"] <= delta["macro_f1"]["estimate"] <= delta["macro_f1"]["high"]
    # the two-sided bootstrap p agrees with the percentile interval: below 0.05 exactly when
    # the interval excludes 0
    d = delta["macro_f1"]
    assert (d["p"] < 0.05) == (d["low"] > 0 or d["high"] < 0), d
    assert set(delta["per_class"]) == {"AD", "SSA", "HP"}
    # CV evaluates the procedure: no single model to keep
    assert not (result.folder / "checkpoints").exists()
    images = json.loads((result.folder / "images.json").read_text())
    assert {r["tested_in"] for r in images["real"]} == {"fold 1", "fold 2", "fold 3"}
    assert all(r["folds"] for r in images["synthetic"])
    report = (result.folder / "report.html").read_text()
    for words in ("3-fold cross-validation", "grouped by patient/lesion/video",
                  "pooled out-of-fold predictions", "fold 2 test", "chose for that fold",
                  "Synthetic images added in each fold"):
        assert words in report, words


@SQLITE_ONLY
def test_a_fixed_split_not_grouped_by_lesion_is_checked_by_lesion_too(review_env, small_phantom):
    """Split by frame (stratified), a lesion can have frames in train and in test: a generator
    that learned only from its training frames passes the check by image but not by lesion."""
    from polyp_core.experiment import SelectionPolicy
    from polyp_core.data.importer import ImportConfig, import_dataset

    env = review_env
    import_dataset(env.workspace, ImportConfig(str(small_phantom), name="by-frame",
                                               split="stratified"))
    manifest = env.workspace.load_manifest("by-frame")
    held = {i.group for i in manifest.items if i.split in ("valid", "test")}
    straddling = [i.sha256 for i in manifest.split_items("train") if i.group in held]
    assert straddling, "the stratified split should cut some lesion"
    (env.workspace.models_dir / "gen-a" / "config.json").write_text(
        json.dumps({"trained_on": {"image_sha256": straddling}}))
    config = ExperimentConfig(dataset="by-frame", train=TINY, seeds=(0,), allow_small_test=True,
                              folds=0, policy=SelectionPolicy(generators=("gen-a",)))
    with pytest.raises(ValueError, match=r"frames of a validation/test patient or lesion .*"
                                         r"split: gen-a learned from \d+ group\(s\)"):
        plan_experiment(env.db, env.workspace, config)
    # a generator that learned from nothing of this data set passes
    (env.workspace.models_dir / "gen-a" / "config.json").write_text(
        json.dumps({"trained_on": {"image_sha256": ["0" * 64]}}))
    assert plan_experiment(env.db, env.workspace, config).evaluation["kind"] == "fixed split"


# the training parts, by simulation ------------------------------------------------------------

def _feature_set(rng, per_class=12, dim=64, signal=0.35):
    """Frozen-feature-like data: 3 classes x ``per_class`` lesions of 3-6 frames; each lesion
    has its own offset (frames of one lesion move together) around its class mean."""
    means = rng.normal(0, signal, (3, dim))
    x, y, groups = [], [], []
    for c in range(3):
        for lesion in range(per_class):
            centre = means[c] + rng.normal(0, 0.8, dim)
            for _ in range(rng.integers(3, 7)):
                x.append(centre + rng.normal(0, 1.0, dim))
                y.append(c)
                groups.append(f"{c}-{lesion}")
    return np.array(x), np.array(y), groups


def _pooled_oof(x: np.ndarray, y: np.ndarray, folds: list[Fold],
                train_of: Callable[[int, Fold], Sequence[int]],
                columns: np.ndarray | None = None) -> np.ndarray:
    """Pooled out-of-fold predictions of a logistic regression (the probe's model)."""
    from sklearn.linear_model import LogisticRegression

    cols = slice(None) if columns is None else columns
    predicted = np.zeros(len(y), dtype=int)
    for f, fold in enumerate(folds):
        train = list(train_of(f, fold))
        model = LogisticRegression(C=1.0, max_iter=500).fit(x[train][:, cols], y[train])
        predicted[list(fold.test)] = model.predict(x[list(fold.test)][:, cols])
    return predicted


def test_training_on_everything_but_the_test_part_beats_keeping_a_fold_for_stopping():
    """12 lesions per class, 3 folds: a model that learns from both non-test folds scores a
    higher pooled out-of-fold macro-F1 than one that keeps the next fold for early stopping (the
    studio's old scheme), on most simulated data sets; and two arms of the same recipe, compared
    with the paired cluster bootstrap over lesions, differ at p < 0.05 about 5% of the time."""
    from polyp_core.classify.metrics import classification_metrics
    from polyp_core.stats.uncertainty import paired_cluster_bootstrap

    classes = ("AD", "SSA", "HP")
    def macro(y, p):
        return classification_metrics(y, p, classes)["macro_f1"]
    new, old = [], []
    for trial in range(40):
        x, y, groups = _feature_set(np.random.default_rng(trial))
        folds = grouped_folds(y, groups, 3, seed=trial, inner_valid=0.0)
        new.append(macro(y, _pooled_oof(x, y, folds, lambda f, fold: fold.train)))
        old.append(macro(y, _pooled_oof(  # train on the folds that are neither tested nor next
            x, y, folds, lambda f, fold: set(fold.train) - set(folds[(f + 1) % 3].test))))
    gain = np.array(new) - np.array(old)
    se = gain.std(ddof=1) / np.sqrt(len(gain))
    # seeded, the README's figures: +0.058 (SE 0.007), higher on 36 of 40 data sets
    assert (round(gain.mean(), 3), round(se, 3), int((gain > 0).sum())) == (0.058, 0.007, 36), \
        (gain.mean(), se, (gain > 0).sum())

    flagged, trials = 0, 120
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        x, y, groups = _feature_set(rng)
        folds = grouped_folds(y, groups, 3, seed=trial, inner_valid=0.0)

        def arm() -> list[np.ndarray]:
            return [_pooled_oof(x, y, folds, lambda f, fold: fold.train,
                                rng.choice(64, 48, replace=False)) for _ in range(3)]

        delta = paired_cluster_bootstrap(y, arm(), arm(), groups, classes, n_boot=200, seed=trial)
        flagged += delta["macro_f1"]["p"] < 0.05
    # seeded, the README's figure: 5 of 120 (nominal 5 %: 6 of 120)
    assert flagged == 5, flagged


def test_refit_and_fixed_epochs_train_on_the_whole_training_part(demo_cv):
    """``refit``: each fold's epoch count is the median best epoch of an inner grouped 3-fold
    CV, then the network trains on the whole training part for that many epochs; with
    ``inner_valid=0`` it trains the configured epochs on all of it and keeps the last."""
    workspace, db = demo_cv
    # a frozen backbone: the ten trainings share one embedding of the images
    base = ExperimentConfig(dataset="phantom", seeds=(0,), folds=2, arms=("baseline",),
                            train=replace(TINY, freeze_backbone=True, augment=False),
                            allow_small_test=True)
    for config in (replace(base, refit=True), replace(base, inner_valid=0.0)):
        plan = plan_experiment(db, workspace, config)
        assert all(fold.valid == () for fold in plan.folds)
        assert not any("inner valid" in row for row in plan.design["table"])
        result = run_experiment(db, workspace, config, device=torch.device("cpu"), plan=plan)
        rows = result.results["arms"]["baseline"]["per_seed"][0]["folds"]
        for fold, row in zip(plan.folds, rows):
            assert row["n_train"] == len(fold.train)  # everything but the test part
            assert row["valid_macro_f1"] is None
            if config.refit:
                assert len(row["inner_best_epochs"]) == 3
                assert all(1 <= e <= TINY.epochs for e in row["inner_best_epochs"])
                expected = max(1, round(float(np.median(row["inner_best_epochs"]))))
                assert len(row["history"]) == row["best_epoch"] == expected
            else:
                assert len(row["history"]) == row["best_epoch"] == TINY.epochs
        assert result.results["evaluation"]["refit"] is config.refit
        words = result.results["evaluation"]["validation"]
        assert ("inner grouped 3-fold CV" in words) if config.refit else ("fixed epochs" in words)
