"""Image-and-mask generation and class-conditional inpainting: pixels outside the hole stay the
frame's, the mask joins the pool with the image, the provenance names the frame, and retrain
refuses an image whose frame lies in a validation or test group. Tiny models, a few steps:
these tests check the plumbing, not the pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from polyp_core.experiment import ExperimentConfig, plan_experiment
from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.training import TrainConfig
from polyp_core.cli import main as cli
from polyp_core.data.images import load_mask
from polyp_core.generation.backends import load_generator, regenerate, sample_to_pool
from polyp_core.generation.inpaint import (InpaintRequest, frame_background, inpaint,
                                           parse_seeds)
from polyp_core.generation.masks import dilate, dilate_batch
from polyp_core.generation.request import SampleRequest
from polyp_core.pool import PoolFilter, pool_page, remove_from_pool
from polyp_core.workspace import Workspace
from helpers import inpaint_now

TINY = TrainConfig(image_size=32, epochs=1, batch_size=32, patience=1, hidden=16)


def _frame(workspace: Workspace, split: str = "train"):
    return next(i for i in workspace.load_manifest("demo").items if i.split == split)


def test_disk_dilation_is_the_same_on_frames_and_on_training_batches():
    rng = np.random.default_rng(0)
    mask = rng.random((20, 24)) > 0.9
    for px in (0, 1, 3, 7):
        batch = dilate_batch(torch.from_numpy(mask.astype(np.float32))[None, None], px)
        assert np.array_equal(batch[0, 0].numpy() > 0.5, dilate(mask, px))
        # the distance-transform rule is the disk's binary dilation
        from scipy import ndimage

        from polyp_core.generation.masks import disk

        expected = ndimage.binary_dilation(mask, structure=disk(px)) if px else mask
        assert np.array_equal(dilate(mask, px), expected)
    assert not dilate(np.zeros((5, 5), bool), 3).any()


@pytest.mark.parametrize("model_id,method,window", [
    ("paint", "trained", "lesion"), ("withmask", "repaint", "lesion"), ("plain", "repaint", "none"),
    ("paint", "trained", "none")])
def test_inpainting_keeps_every_pixel_outside_the_hole_and_stores_the_pair(painted, model_id,
                                                                           method, window):
    """With a window the result has the frame's size and equals the frame outside the hole;
    without one, the model's size and the shrunk frame."""
    workspace, db = painted
    item = _frame(workspace)
    request = InpaintRequest(generator=model_id, class_label="SSA", dataset="demo", image=item.id,
                             dilate=4, seeds=(0, 1), steps=3, jump_length=2, jump_n_sample=2,
                             window=window)
    result, stored = inpaint_now(db, workspace, request)
    assert result.method == method and len(stored) == 2
    frame = result.background.rgb if window == "lesion" else result.background_rgb
    assert frame.shape == ((64, 64, 3) if window == "lesion" else (32, 32, 3))
    for image, (_, sha) in zip(result.images, stored):
        outside = ~image.hole
        assert image.rgb.shape == frame.shape and image.hole.shape == frame.shape[:2]
        assert outside.any() and image.hole.any()
        assert np.array_equal(image.rgb[outside], frame[outside])  # exact
        assert not np.array_equal(image.rgb[image.hole], frame[image.hole])
        assert not (image.mask & ~image.hole).any()  # the polyp lies inside the hole
        stored_item = pool_page(db, PoolFilter(generator=model_id), 0, 100).items
        record = next(i for i in stored_item if i.sha256 == sha)
        assert np.array_equal(np.asarray(Image.open(record.path).convert("RGB")), image.rgb)
        assert np.array_equal(load_mask(record.mask_file), image.mask)  # stored beside it
        extra = record.provenance["extra"]
        assert extra["background"] == {"dataset": "demo", "id": item.id, "sha256": item.sha256,
                                       "group": item.group, "split": "train"}
        assert extra["mask_source"] == {"kind": "own"}
        assert extra["inpaint"]["method"] == method and extra["inpaint"]["dilate"] == 4
        if window == "lesion":
            assert extra["inpaint"]["window"] == result.window.to_json() | {"seam": result.seam}
            assert (record.provenance["width"], record.provenance["height"]) == (64, 64)
        else:
            assert extra["inpaint"]["window"] is None
    with pytest.raises(ValueError, match="was inpainted into frame demo:"):
        regenerate(db, workspace, stored[0][1])


def test_the_same_seed_gives_the_same_image_and_a_drawn_mask_is_obeyed(painted):
    workspace, _ = painted
    item = _frame(workspace)
    background = frame_background(workspace, "demo", item.id)
    drawn = np.zeros(background.rgb.shape[:2], bool)
    drawn[10:20, 30:44] = True
    request = InpaintRequest(generator="paint", class_label="AD", dataset="demo", image=item.id,
                             mask_source="drawn", dilate=2, seeds=(5,), steps=2, window="none")
    first = inpaint(workspace, request, background, drawn)
    again = inpaint(workspace, request, background, drawn)
    assert np.array_equal(first.images[0].rgb, again.images[0].rgb)
    hole = first.images[0].hole  # 32 px model: the 64 px frame's rows 8..21 and columns 28..45
    rows, cols = np.nonzero(hole)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 10, 14, 22)
    with pytest.raises(ValueError, match="the drawn mask is 3x3, the frame 64x64"):
        inpaint(workspace, request, background, np.ones((3, 3), bool))


def test_bad_requests_name_what_is_wrong(painted):
    workspace, _ = painted
    item = _frame(workspace)
    background = frame_background(workspace, "demo", item.id)
    base = dict(generator="paint", class_label="AD", dataset="demo", image=item.id, steps=2)
    with pytest.raises(ValueError, match="'XX' is not one of paint's classes"):
        inpaint(workspace, InpaintRequest(**{**base, "class_label": "XX"}), background)
    with pytest.raises(ValueError, match="data set 'demo' has no image 'nope'"):
        frame_background(workspace, "demo", "nope")
    bare = type(background)(background.rgb, None, {"uploaded": "x.png", "sha256": "0" * 64})
    with pytest.raises(ValueError, match="frame uploaded x.png has no polyp mask"):
        inpaint(workspace, InpaintRequest(**base), bare)
    with pytest.raises(ValueError, match="paint was trained to inpaint"):
        load_generator(workspace, "paint").sample(SampleRequest(class_label="AD", steps=2))
    with pytest.raises(ValueError, match="plain does not make masks"):
        inpaint(workspace, InpaintRequest(**{**base, "mask_source": "generated",
                                             "mask_generator": "plain"}), background)
    with pytest.raises(ValueError, match="`seeds`: '1-x'"):
        parse_seeds("1-x")


def test_an_image_and_mask_model_samples_masks_into_the_pool_and_for_inpainting(painted):
    workspace, db = painted
    stored = sample_to_pool(db, workspace, "withmask", SampleRequest(class_label="HP", n=2,
                                                                     steps=2, scheduler="ddim"))
    items = {i.sha256: i for i in pool_page(db, PoolFilter(generator="withmask"), 0, 100).items}
    for _, sha in stored:
        assert items[sha].mask_file.is_file()
        assert items[sha].provenance["extra"]["mask_threshold"] == 0.0
    item = _frame(workspace)
    result = inpaint(workspace, InpaintRequest(
        generator="paint", class_label="HP", dataset="demo", image=item.id, steps=2,
        mask_source="generated", mask_generator="withmask", mask_seed=3, dilate=2,
        window="none"),  # an untrained model's mask may reach the border
        frame_background(workspace, "demo", item.id))
    assert result.mask_source["kind"] == "generated" and result.mask_source["seed"] == 3


def test_the_cli_inpaints_a_demo_frame_into_the_pool(painted, capsys):
    workspace, db = painted
    item = _frame(workspace)
    db_file = str(db.engine.url.database)
    assert cli(["--workspace", str(workspace.root), "inpaint", "--generator", "paint",
                "--dataset", "demo", "--image", item.id, "--class", "HP", "--dilate", "3",
                "--seeds", "0-2", "--steps", "2", "--db", f"sqlite:///{db_file}"]) == 0
    out = capsys.readouterr().out
    assert f"3 inpainted HP image(s) from paint@step-000002 (trained) on demo:{item.id}" in out
    assert "mask: own" in out and "added to the pool with their masks" in out


def test_retrain_refuses_images_made_on_validation_or_test_frames(painted):
    """Fixed split: a test-split frame bars its images. Cross-validation (the generator's own
    frames moved into every training part): every fold whose test part holds the frame's group
    refuses, naming image, frame and group."""
    workspace, db = painted
    frame = _frame(workspace, "test")
    _, stored = inpaint_now(db, workspace, InpaintRequest(
        generator="paint", class_label="AD", dataset="demo", image=frame.id, dilate=2, steps=2,
        seeds=(7,)))
    sha = stored[0][1][:12]
    config = ExperimentConfig(dataset="demo", train=TINY, seeds=(0,), folds=0,
                              allow_small_test=True, policy=SelectionPolicy(generators=("paint",)))
    group = frame.group or frame.id
    try:
        with pytest.raises(ValueError, match=rf"image {sha} was made on frame demo:{frame.id} of "
                                             rf"group {group}"):
            plan_experiment(db, workspace, config)
        with pytest.raises(ValueError, match=rf"fold \d: image {sha} was made on frame "
                                             rf"demo:{frame.id} of group {group}"):
            plan_experiment(db, workspace, ExperimentConfig(**{
                **config.__dict__, "folds": 2, "seen_groups_train": True}))
    finally:  # the pool is shared with later tests, which retrain on it
        assert remove_from_pool(db, workspace, [stored[0][1]]).refused == {}


def test_a_mask_model_records_its_task_and_threshold(painted):
    workspace, _ = painted
    meta = json.loads((workspace.models_dir / "withmask" / "config.json").read_text())
    assert meta["task"] == "image_mask" and meta["mask_threshold"] == 0.0
    unet = load_generator(workspace, "paint").units["*"][0]
    assert (unet.config.in_channels, unet.config.out_channels) == (8, 3)


def test_the_trained_sampler_shows_the_model_the_frame_around_the_hole(painted):
    """Its loss covers only the hole, so the model's output outside the hole is untrained: at
    every step the sampler must hold the outside to the background at that step's noise level
    (as training showed it), or it drifts into the hole. Seen by the model at the last step:
    the background, barely noised."""
    from polyp_core.generation.ddpm import denoise_batch
    from polyp_core.generation.masks import inpaint_condition

    workspace, _ = painted
    generator = load_generator(workspace, "paint")
    unet, meta, ids, null_id = generator.class_ids(["AD"])
    size = generator.size
    background = torch.linspace(-0.8, 0.8, size * size).reshape(1, 1, size, size).expand(1, 3, -1, -1)
    hole = torch.zeros(1, 1, size, size)
    hole[..., size // 4: size // 2, size // 4: size // 2] = 1
    seen = []

    def recording(model_in, t, class_labels=None):
        seen.append(model_in[:1, :3].clone())  # the conditional half
        return unet(model_in, t, class_labels=class_labels)

    denoise_batch(recording, meta["noise_schedule"], "ddim", 5, ids, null_id, [0], 0.0, size,
                  torch.device("cpu"), condition=inpaint_condition(background, hole, hole))
    outside = (1 - hole).bool().expand(1, 3, -1, -1)
    assert len(seen) == 5
    assert (seen[-1] - background)[outside].abs().max() < 0.05
    assert (seen[0] - background)[outside].abs().mean() > 0.5  # the first step: mostly noise
