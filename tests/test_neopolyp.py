"""The shared real data set imports unchanged (skips when ../shared/data is absent)."""

from conftest import NEOPOLYP, requires_neopolyp
from polyp_core.data.images import load_mask
from polyp_core.data.importer import ImportConfig, import_dataset

pytestmark = requires_neopolyp()


def test_neopolyp_imports_unchanged(workspace):
    result = import_dataset(workspace, ImportConfig(str(NEOPOLYP)))
    manifest = workspace.load_manifest("neopolyp")
    assert result.n_images == 951 and result.n_masks == 951
    assert manifest.scheme == "ad_vs_rest" and manifest.schemes == ["ad_vs_rest"]
    assert manifest.class_counts()["all"] == {"AD": 694, "REST": 257}
    assert all(item.extra["histology"] == ("1" if item.label == "AD" else "0")
               for item in manifest.items)
    item = manifest.items[0]
    assert load_mask(item.mask).shape == (item.height, item.width)
    counts = manifest.class_counts()
    assert counts["train"]["REST"] / counts["train"]["AD"] == \
        __import__("pytest").approx(257 / 694, abs=0.02)
    # four pictures appear twice under two names: each pair is one group, in one split
    assert any(n.startswith("8 frames have identical decoded pixels (4 pictures, 4 pairs)")
               for n in result.notes), result.notes
    pairs: dict = {}
    for item in manifest.items:
        pairs.setdefault(item.pixels, []).append(item)
    twins = [p for p in pairs.values() if len(p) > 1]
    assert len(twins) == 4 and all(len(p) == 2 for p in twins)
    for a, b in twins:
        assert a.group == b.group == f"same-pixels:{a.id}" and a.split == b.split
    assert sum(1 for i in manifest.items if i.group) == 8


def test_neopolyp_5_fold_cv_baseline_and_linear_probe_lite0_224(workspace, tmp_path):
    """The real-data baseline of the retraining engine: Lite0 at 224 px with ImageNet weights,
    AD vs REST, 5-fold cross-validation (frame-level: NeoPolyp names no patients or lesions,
    which the run says), 3 seeds, pooled out-of-fold predictions with CIs. The head trains on a
    frozen backbone (each image embedded once for all folds and seeds) so the check fits the
    suite's CPU budget; the fine-tuned figure is in docs (the CLI's default fine-tunes). The
    linear probe must reach a plain logistic regression (C = 1) on the same features and folds."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from polyp_core.experiment import ExperimentConfig, run_experiment
    from polyp_core.training import TrainConfig
    from polyp_core.experiment import plan_experiment
    from review_db.database import Database

    import_dataset(workspace, ImportConfig(str(NEOPOLYP)))
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    config = ExperimentConfig(
        dataset="neopolyp", arms=("baseline",), seeds=(0, 1, 2), linear_probe=True, folds=5,
        train=TrainConfig(image_size=224, freeze_backbone=True, augment=False,
                                    epochs=30, patience=8, lr=1e-3))
    features: dict = {}
    result = run_experiment(db, workspace, config, device=torch.device("cpu"),
                            feature_cache=features)
    res = result.results
    assert res["evaluation"]["kind"] == "grouped cross-validation" and not res["evaluation"]["grouped"]
    assert res["test_groups"]["unit"].startswith("image (the data set names no groups")
    assert "frame-level folds" in (result.folder / "report.html").read_text()
    assert len(res["test_groups"]["of_image"]) == 951  # every frame tested once
    cases = res["uncertainty"]["baseline"]
    probe = res["uncertainty"]["linear probe"]
    for name, ci in (("frozen-backbone head", cases), ("linear probe", probe)):
        print(f"NeoPolyp 5-fold CV (frame-level), {name}: macro-F1 {ci['macro_f1']['estimate']:.3f} "
              f"[{ci['macro_f1']['low']:.3f}, {ci['macro_f1']['high']:.3f}], balanced accuracy "
              f"{ci['balanced_accuracy']['estimate']:.3f} [{ci['balanced_accuracy']['low']:.3f}, "
              f"{ci['balanced_accuracy']['high']:.3f}]")
    # the README's table, as measured (seeded; each figure to its three decimals)
    def shown(ci):
        return tuple(round(ci[k], 3) for k in ("estimate", "low", "high"))
    # (re-measured once the import grouped NeoPolyp's four pairs of identical frames: the
    # folds moved; before, 0.700 / 0.714 for the head and 0.704 / 0.716 for the probe)
    assert shown(cases["macro_f1"]) == (0.699, 0.666, 0.731)
    assert shown(cases["balanced_accuracy"]) == (0.712, 0.679, 0.743)
    assert shown(probe["macro_f1"]) == (0.709, 0.677, 0.741)
    assert shown(probe["balanced_accuracy"]) == (0.722, 0.688, 0.755)
    # chance is 0.5 balanced accuracy; the minority class is found
    assert cases["balanced_accuracy"]["low"] > 0.55 and cases["macro_f1"]["estimate"] > 0.6
    assert cases["per_class"]["REST"]["recall"]["estimate"] > 0.3
    # the reference: logistic regression with C = 1 on the same cached features and folds
    plan = plan_experiment(db, workspace, config)
    x = torch.stack([features[("efficientnet_lite0", 224)][r.sha256] for r in plan.real]).numpy()
    y = np.array([plan.classes.index(r.label) for r in plan.real])
    tested = [i for fold in plan.folds for i in fold.test]
    reference = np.concatenate([make_pipeline(StandardScaler(), LogisticRegression(
        class_weight="balanced", max_iter=5000)).fit(x[list(f.train + f.valid)],
                                                     y[list(f.train + f.valid)])
        .predict(x[list(f.test)]) for f in plan.folds])
    lr_f1 = f1_score(y[tested], reference, average="macro")
    print(f"NeoPolyp 5-fold CV, logistic regression C = 1 on the same features: macro-F1 {lr_f1:.3f}")
    assert round(lr_f1, 3) == 0.683  # 0.677 before the identical frames were grouped
    assert probe["macro_f1"]["estimate"] >= lr_f1 - 0.01
    assert probe["macro_f1"]["estimate"] > 0.68


def test_neopolyp_3_fold_design_trains_on_more_than_it_tests(workspace, tmp_path):
    """Every fold of ``retrain --folds 3`` learns from at least 1.5 times as many frames of each
    class as it tests (a whole fold kept for early stopping gave as many), with an inner
    validation split of its own."""
    from polyp_core.experiment import ExperimentConfig
    from polyp_core.experiment import plan_experiment
    from review_db.database import Database

    import_dataset(workspace, ImportConfig(str(NEOPOLYP)))
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    plan = plan_experiment(db, workspace, ExperimentConfig(
        dataset="neopolyp", arms=("baseline",), folds=3))
    table = plan.design["table"]
    for f in (1, 2, 3):
        for c in ("AD", "REST"):
            trained, tested = table[f"fold {f} train"][c]["groups"], table[f"fold {f} test"][c]["groups"]
            assert trained >= 1.5 * tested, (f, c, trained, tested)
            assert table[f"fold {f} inner valid"][c]["groups"] >= 2
