"""Scores at each mask's own size (logits upsampled before the threshold), several other
sources with paired differences, and the task's own training defaults, on cases worked by
hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from polyp_core.data.tensors import ImageRef
from polyp_core.segment.train import FullSizeTruth, full_size_scores
from polyp_core.stats.uncertainty import cluster_bootstrap_scores, paired_cluster_bootstrap_scores
from polyp_core.tasks import segment
from polyp_core.workflows.retrain import retrain_request


def _mask(path, mask: np.ndarray):
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return ImageRef("0" * 64, str(path), "LESION", mask=str(path))


def test_logits_are_upsampled_bilinearly_then_thresholded(tmp_path):
    """A 2x2 logit map [[1, -3], [-3, -3]] at 4x4 (half-pixel centres): the corner pixel is 1,
    its neighbours 0.75 * 1 + 0.25 * -3 = 0 (not above 0), the rest below: one pixel. The truth
    is the top-left 2x2 block: Dice 2 * 1 / (1 + 4) = 0.4, IoU 1/4, precision 1, recall 1/4.
    Upsampling the thresholded mask (nearest) would give the whole block and Dice 1."""
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True
    ref = _mask(tmp_path / "m.png", truth)
    logits = torch.tensor([[[1.0, -3.0], [-3.0, -3.0]]])
    scores = full_size_scores(logits, [ref], FullSizeTruth())
    assert scores["dice"][0] == pytest.approx(0.4)
    assert scores["iou"][0] == pytest.approx(0.25)
    assert scores["precision"][0] == pytest.approx(1.0)
    assert scores["recall"][0] == pytest.approx(0.25)
    # a mask of another shape than the working size (6 wide, 3 high): upsampled to it
    wide = np.zeros((3, 6), bool)
    wide[:, :3] = True
    ref = _mask(tmp_path / "w.png", wide)
    out = full_size_scores(torch.tensor([[[2.0, -2.0], [2.0, -2.0]]]), [ref], FullSizeTruth())
    assert out["dice"][0] == pytest.approx(1.0)  # the left half, exactly
    # an empty mask: no Dice, counted as a false positive when something is drawn
    ref = _mask(tmp_path / "e.png", np.zeros((4, 4), bool))
    out = full_size_scores(torch.ones((1, 2, 2)), [ref], FullSizeTruth())
    assert np.isnan(out["dice"][0]) and out["empty"][0] and out["false_positive"][0]


def test_full_size_truth_keeps_masks_packed_and_exact(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.5
    ref = _mask(tmp_path / "r.png", mask)
    truth = FullSizeTruth()
    assert (truth(ref) == mask).all() and (truth(ref) == mask).all()  # cached: the same


def test_every_other_source_gets_its_rows_and_paired_differences():
    """Two sources, two arms, two seeds, two folds' models: per image the mean over the folds'
    models, then the cluster bootstrap; the paired difference over the same images."""
    config = SimpleNamespace(arms=("baseline", "augmented"), seeds=(0, 1), real_fractions=())
    rng = np.random.default_rng(1)
    sources, elsewhere, expected = [], {}, {}
    for name, n in (("kvasir", 6), ("etis", 4)):
        groups = [f"g{i // 2}" for i in range(n)]
        sources.append(segment.Elsewhere(name, None, groups))
        for arm in config.arms:
            for seed in config.seeds:
                folds = []
                for _ in range(2):
                    dice = rng.random(n)
                    folds.append({"dice": dice, "iou": dice / 2, "precision": dice,
                                  "recall": dice, "full": {"dice": dice * 0.9, "iou": dice / 3,
                                                           "precision": dice, "recall": dice}})
                elsewhere[name, arm, seed] = folds
                expected[name, arm, seed] = (folds[0]["dice"] + folds[1]["dice"]) / 2
    out = segment.against_results(config, elsewhere, sources)
    assert [o["dataset"] for o in out] == ["kvasir", "etis"]
    for o, source in zip(out, sources):
        name, groups = o["dataset"], source.groups
        base = np.array([expected[name, "baseline", s] for s in (0, 1)])
        aug = np.array([expected[name, "augmented", s] for s in (0, 1)])
        assert o["images"] == len(groups) and o["groups"] == len(groups) // 2
        assert o["arms"]["baseline"]["dice"] == cluster_bootstrap_scores(base, groups)
        assert o["arms"]["augmented"]["full"]["dice"] == pytest.approx(
            cluster_bootstrap_scores(aug * 0.9, groups))
        assert o["deltas"]["delta"]["dice"] == paired_cluster_bootstrap_scores(aug, base, groups)
        assert o["deltas"]["delta"]["dice"]["estimate"] == pytest.approx(aug.mean() - base.mean())
        assert list(o["deltas"]) == ["delta"]  # no gated or expert arm, no other difference
    # a run stored before several sources: one dict, read as a list of one
    assert segment.against_sources({"against": {"dataset": "x"}}) == [{"dataset": "x"}]
    assert segment.against_sources({}) == []


def test_the_segmentation_task_trains_at_its_own_defaults_unless_told():
    seg = retrain_request({"dataset": "d", "task": "segmentation"}).train
    cls = retrain_request({"dataset": "d"}).train
    assert (seg.lr, seg.batch_size) == (1e-3, 16)
    assert (cls.lr, cls.batch_size) == (3e-4, 32)
    told = retrain_request({"dataset": "d", "task": "segmentation", "lr": "2e-4",
                            "batch_size": "8"}).train
    assert (told.lr, told.batch_size) == (2e-4, 8)
    assert retrain_request({"dataset": "d", "against": "a, b"}).against == ("a", "b")
