"""Grouped cross-validation: the folds, per-fold generator checks, and the demo's whole CV loop
(baseline, augmented with the demo generator's images, paired deltas)."""

import json
import time

import numpy as np
import pytest
import torch

from polyp_core.classify import ClassifierTrainConfig, ExperimentConfig, run_experiment
from polyp_core.classify.experiment import plan_experiment
from polyp_core.classify.folds import fold_leaks, grouped_folds, groups_seen
from polyp_core.workspace import Workspace

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
TINY = ClassifierTrainConfig(image_size=32, epochs=2, batch_size=32, patience=2, hidden=32)


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
        assert fold.valid == folds[(k + 1) % 4].test  # early stopping on the next fold
    assert grouped_folds(labels, groups, 4, seed=0) == grouped_folds(labels, groups, 4, seed=0)
    assert grouped_folds(labels, groups, 4, seed=1) != grouped_folds(labels, groups, 4, seed=0)
    with pytest.raises(ValueError, match="3 or more"):
        grouped_folds(labels, groups, 2)
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
    # fold 1 tests the group; fold 3 stops early on fold 1's part; fold 2 trains on it
    assert leaks == [f"fold 1: gen-a learned from 1 group(s) of its validation/test part "
                     f"({groups[tested_first]})",
                     f"fold 3: gen-a learned from 1 group(s) of its validation/test part "
                     f"({groups[tested_first]})"]


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
    assert any(lesion in text for lesion in seen_lesions) and "--seen-groups-train" in text
    assert "fold " in text
    from dataclasses import replace
    plan = plan_experiment(env.db, env.workspace, replace(config, seen_groups_train=True))
    group_of = plan.group_of
    for fold in plan.folds:
        assert not {group_of[i] for i in fold.valid + fold.test} & set(seen_lesions)
        assert {i for i, g in enumerate(group_of) if g in seen_lesions} <= set(fold.train)
    assert plan.evaluation["train_only_groups"] == 3
    assert plan.evaluation["train_only_images"] == len(seen_shas)
    # auto on this small set: too few groups per class for 5 folds, so the fixed split, saying why
    auto = plan_experiment(env.db, env.workspace, replace(config, folds=None, arms=("baseline",)))
    assert auto.evaluation["kind"] == "fixed split" and len(auto.folds) == 1
    assert "auto: fixed split: 5-fold CV needs 15 groups per class" in auto.evaluation["chosen"]
    with pytest.raises(ValueError, match="3 or more"):
        plan_experiment(env.db, env.workspace, replace(config, folds=2))


@pytest.fixture(scope="module")
def demo_cv(tmp_path_factory):
    """The demo data set (300 frames at 64 px) with the shipped demo generator and 12 of its
    images in the pool (20 DDIM steps: the loop needs images of the generator, not good ones).
    The demo generator learned from the full-size demo set, whose files this one does not share,
    so no group of it is held back."""
    from polyp_core.demo import (DEMO_GENERATOR, DEMO_GUIDANCE, ensure_demo_dataset,
                                 install_demo_generator)
    from polyp_core.generation.backends import sample_to_pool
    from polyp_core.generation.request import SampleRequest
    from review_db.database import Database

    root = tmp_path_factory.mktemp("cv")
    workspace = Workspace(root / "ws")
    db = Database(f"sqlite:///{root / 'studio.db'}")
    ensure_demo_dataset(workspace, n_frames=300, size=64)
    assert install_demo_generator(workspace), "the demo CV loop needs assets/demo-ddpm"
    for i, cls in enumerate(("AD", "SSA", "HP")):
        sample_to_pool(db, workspace, DEMO_GENERATOR, SampleRequest(
            class_label=cls, n=4, seed=1000 * i, steps=20, guidance=DEMO_GUIDANCE,
            scheduler="ddim"))
    return workspace, db


def test_demo_cv_loop_baseline_augmented_and_paired_deltas(demo_cv):
    workspace, db = demo_cv
    # auto: every class of the demo set has 15 lesions to test, so 5-fold CV is the default
    auto = plan_experiment(db, workspace, ExperimentConfig(dataset="phantom", folds=None))
    assert auto.evaluation["kind"] == "grouped cross-validation" and len(auto.folds) == 5
    assert auto.evaluation["chosen"].startswith("auto: 5-fold CV")

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
    assert 0 <= delta["macro_f1"]["p"] <= 1
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
    from polyp_core.classify import SelectionPolicy
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
                              policy=SelectionPolicy(generators=("gen-a",)))
    with pytest.raises(ValueError, match=r"frames of a validation/test patient or lesion .*"
                                         r"split: gen-a learned from \d+ group\(s\)"):
        plan_experiment(env.db, env.workspace, config)
    # a generator that learned from nothing of this data set passes
    (env.workspace.models_dir / "gen-a" / "config.json").write_text(
        json.dumps({"trained_on": {"image_sha256": ["0" * 64]}}))
    assert plan_experiment(env.db, env.workspace, config).evaluation["kind"] == "fixed split"
