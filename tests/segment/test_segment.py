"""Retrain's segmentation task: the U-Net's encoder weights, per-image scores, the bootstrap of
scores over groups, and the whole loop through the command line on a tiny phantom set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from polyp_core.stats.uncertainty import (cluster_bootstrap_scores,
                                             paired_cluster_bootstrap_scores)
from polyp_core.cli import main as cli
from polyp_core.segment.metrics import mask_scores, summarise_scores
from polyp_core.segment.model import build_segmenter


def test_the_unet_encoder_carries_the_bundled_lite0_weights():
    from polyp_core.backbones import create_backbone

    unet = build_segmenter("efficientnet_lite0", pretrained=True)
    reference = create_backbone("efficientnet_lite0", pretrained=True)
    assert unet.pretrained_from == "bundled package"
    encoder = unet.encoder.model.state_dict()
    for name in ("conv_stem.weight", "blocks.3.0.conv_pw.weight", "blocks.6.0.conv_pwl.weight"):
        assert torch.equal(encoder[name], reference.state_dict()[name]), name
    assert unet(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_scores_per_image_by_hand():
    truth = np.zeros((3, 4, 4), bool)
    truth[0, :2, :2] = True  # 4 pixels
    truth[1, :, :2] = True   # 8 pixels; image 2 holds no polyp
    predicted = np.zeros_like(truth)
    predicted[0, :2, :3] = True  # 4 of 6 right
    predicted[2, 0, 0] = True    # something drawn on the empty image
    s = mask_scores(predicted, truth)
    assert s["dice"][0] == pytest.approx(2 * 4 / (6 + 4)) and s["iou"][0] == pytest.approx(4 / 6)
    assert s["precision"][0] == pytest.approx(4 / 6) and s["recall"][0] == 1.0
    assert s["dice"][1] == 0.0 and s["precision"][1] == 0.0 and s["recall"][1] == 0.0
    assert np.isnan(s["dice"][2]) and s["empty"].tolist() == [False, False, True]
    assert s["false_positive"].tolist() == [False, False, True]
    summary = summarise_scores(s)
    assert summary["dice"] == pytest.approx(0.4) and summary["images_with_polyp"] == 2
    assert (summary["empty_images"], summary["empty_false_positives"]) == (1, 1)


def test_the_bootstrap_of_scores_resamples_groups_not_images():
    """Ten lesions of ten frames each: frames of a lesion share its score. The interval over
    lesions is about sqrt(10) times wider than one that took the 100 frames as independent."""
    rng = np.random.default_rng(0)
    per_lesion = rng.uniform(0.3, 0.9, 10)
    scores = np.repeat(per_lesion, 10)[None, :]
    groups = [f"L{i}" for i in range(10) for _ in range(10)]
    by_lesion = cluster_bootstrap_scores(scores, groups, n_boot=2000)
    by_frame = cluster_bootstrap_scores(scores, [str(i) for i in range(100)], n_boot=2000)
    assert by_lesion["estimate"] == pytest.approx(per_lesion.mean())
    assert by_lesion["low"] < per_lesion.mean() < by_lesion["high"] and by_lesion["groups"] == 10
    ratio = (by_lesion["high"] - by_lesion["low"]) / (by_frame["high"] - by_frame["low"])
    assert 2.3 < ratio < 4.3, ratio  # sqrt(10) = 3.16
    # NaN (no polyp) images are left out of every replicate's mean
    with_empty = np.concatenate([scores, [[np.nan] * 5]], axis=1)
    same = cluster_bootstrap_scores(with_empty, groups + ["E"] * 5, n_boot=2000)
    assert same["estimate"] == pytest.approx(by_lesion["estimate"])
    # a paired difference that is the same on every lesion has a zero-width interval, p = 0
    delta = paired_cluster_bootstrap_scores(scores + 0.05, scores, groups, n_boot=500)
    assert delta["estimate"] == pytest.approx(0.05) and delta["low"] == pytest.approx(0.05)
    assert delta["p"] == 0.0


@pytest.fixture(scope="module")
def phantom_ws(tmp_path_factory, small_phantom):
    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("seg") / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    return workspace


def test_retrain_segmentation_prints_dice_and_iou_with_intervals_and_the_design(phantom_ws,
                                                                                capsys):
    """The issue's must-show, on the 60-frame phantom at 64 px (2 epochs: the loop, not a
    good model)."""
    code = cli(["--workspace", str(phantom_ws.root), "retrain", "--task", "segmentation",
                "--dataset", "phantom", "--baseline-only", "--folds", "3", "--allow-small-test",
                "--size", "64", "--epochs", "2", "--batch-size", "8", "--seeds", "0",
                "--name", "seg"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    interval = r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]"
    for size in ("mask's own size", "working size"):
        assert re.search(rf"Dice \({size}\)\s+{interval}", out), out
        assert re.search(rf"IoU \({size}\)\s+{interval}", out), out
    assert "3-fold cross-validation" in out and "fold 1 test" in out and "groups" in out
    run_id = re.search(r"run (retrain-\S+)", out).group(1)
    results = json.loads((phantom_ws.root / "runs" / run_id / "results.json").read_text())
    assert results["task"] == "segmentation"
    scores = results["arms"]["baseline"]["per_seed"][0]["scores"]["dice"]
    assert len(scores) == 60 and results["uncertainty"]["baseline"]["dice"]["groups"] > 3
    report = (phantom_ws.root / "runs" / run_id / "report.html").read_text()
    assert "U-Nets (segmentation-models-pytorch; encoder efficientnet_lite0" in report
    assert report.count("data:image/png;base64,") == 6  # 3 best and 3 worst test images
    assert cli(["--workspace", str(phantom_ws.root), "compare-runs", run_id, run_id]) == 0
    diff = json.loads(capsys.readouterr().out)
    same = {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    assert diff["metrics"] == {"baseline": same | {"full": same}}


def test_a_data_set_without_masks_is_refused_for_segmentation(tmp_path, capsys):
    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.workspace import Workspace
    from tests.conftest import make_hospital, three_class_labels

    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(make_hospital(
        tmp_path / "h", three_class_labels(4, 2, 2), masks=False)), name="plain"))
    code = cli(["--workspace", str(workspace.root), "retrain", "--task", "segmentation",
                "--dataset", "plain", "--baseline-only", "--folds", "0"])
    assert code == 2
    assert "8 of 8 images have no mask" in capsys.readouterr().err


def test_the_fast_arm_trains_the_decoder_on_cached_encoder_features(phantom_ws):
    """``freeze_backbone``: the encoder's weights stay the bundled ones, the decoder learns,
    and two runs with the same seed give the same decoder."""
    from polyp_core.data.tensors import ImageRef
    from polyp_core.training import TrainConfig
    from polyp_core.data.cache import PixelCache
    from polyp_core.segment.train import load_masked, train_segmenter

    manifest = phantom_ws.load_manifest("phantom")
    refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in manifest.items[:20]]
    data = load_masked(refs, 64, PixelCache(phantom_ws.pixel_cache_dir))
    config = TrainConfig(image_size=64, epochs=2, batch_size=8, freeze_backbone=True)
    empty = data.subset([])
    first = train_segmenter(data.subset(range(16)), empty, config, seed=3)
    again = train_segmenter(data.subset(range(16)), empty, config, seed=3)
    torch.manual_seed(3)  # the initialisation train_segmenter started from
    fresh = build_segmenter("efficientnet_lite0", pretrained=True)
    trained, init = first.model.state_dict(), fresh.state_dict()
    encoder = [k for k in trained if k.startswith("encoder.")]
    decoder = [k for k in trained if k.startswith("decoder.") and trained[k].is_floating_point()]
    assert all(torch.equal(trained[k], init[k]) for k in encoder if "running" not in k)
    assert any(not torch.equal(trained[k], init[k]) for k in decoder)
    assert all(torch.equal(trained[k], again.model.state_dict()[k]) for k in decoder)
    assert first.best_epoch == 2 and len(first.history) == 2


def test_mixed_precision_steps_run_under_bf16_autocast(phantom_ws, monkeypatch):
    """The GPU path's autocast (bf16 here, on the CPU, where torch supports it): the loss is
    taken in float32 from bf16 logits and the model still learns and predicts. (No GPU was
    lent to this project: fp16 with its grad scaler is not exercised.)"""
    import polyp_core.segment.train as seg_train
    from polyp_core.data.tensors import ImageRef
    from polyp_core.training import TrainConfig
    from polyp_core.data.cache import PixelCache

    manifest = phantom_ws.load_manifest("phantom")
    refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in manifest.items[:12]]
    data = seg_train.load_masked(refs, 64, PixelCache(phantom_ws.pixel_cache_dir))
    monkeypatch.setattr(seg_train, "autocast_dtype", lambda config, device: torch.bfloat16)
    seen, loss = [], seg_train.dice_bce_loss

    def recording(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return loss(logits, masks)

    monkeypatch.setattr(seg_train, "dice_bce_loss", recording)
    result = seg_train.train_segmenter(data.subset(range(8)), data.subset(range(8, 12)),
                                       TrainConfig(image_size=64, epochs=2,
                                                             batch_size=4, patience=2), seed=0)
    assert seen == [(True, torch.bfloat16)] * 4  # 2 epochs x 2 steps, all under bf16 autocast
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    assert len(result.history) == 2 and np.isfinite(result.best_valid_dice)
