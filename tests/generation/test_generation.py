"""The DDPM backend: training (checkpoints, resume, cancel, two-step, per class), sampling
(reproducible per seed, every scheduler), the pool with provenance, and regeneration."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.generation.backends import load_generator, regenerate, sample_to_pool
from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm, training_loader
from polyp_core.generation.request import SCHEDULERS, CancelToken, SampleRequest
from polyp_core.workspace import Workspace


def tiny(model_id, **kw):
    base = dict(dataset="phantom", model_id=model_id, preset="tiny", steps=6, batch_size=8,
                checkpoint_every=3, grid_per_class=2, grid_steps=3, warmup=2)
    return DDPMTrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def trained(small_phantom, tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("gen") / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    result = train_ddpm(workspace, tiny("t1"))
    return workspace, result


def test_training_writes_checkpoints_with_config_split_and_versions(trained):
    workspace, result = trained
    assert (result.status, result.steps_done, result.checkpoints) == (
        "done", 6, ("step-000003", "step-000006"))
    meta = json.loads((result.folder / "config.json").read_text())
    manifest = workspace.load_manifest("phantom")
    train_shas = sorted(i.sha256 for i in manifest.items if i.split == "train")
    assert meta["trained_on"]["splits"] == ["train"]
    assert meta["trained_on"]["image_sha256"] == train_shas  # never valid or test images
    assert meta["classes"] == ["AD", "SSA", "HP", "unknown", "<null>"]
    assert {"torch", "diffusers", "polyp_studio"} <= set(meta["versions"])
    last = result.folder / "checkpoints" / "step-000006"
    assert Image.open(last / "grid.png").size == (2 * 32, 3 * 32)  # a row per class
    assert json.loads((last / "state.json").read_text())["grid_rows"] == ["AD", "SSA", "HP"]
    assert (result.folder / "loss.csv").read_text().startswith("step,loss,lr")


def test_resume_continues_from_the_last_checkpoint(trained):
    workspace, _ = trained
    import shutil

    shutil.copytree(workspace.models_dir / "t1", workspace.models_dir / "t1r")
    more = train_ddpm(workspace, tiny("t1r", steps=9))
    assert more.steps_done == 9 and more.checkpoints[-1] == "step-000009"
    assert len(more.checkpoints) == 3  # 3 and 6 from before, 9 now: it did not start over


def test_cancel_keeps_a_checkpoint(trained):
    workspace, _ = trained
    token = CancelToken()

    def progress(done, total, message):
        if done == 2:
            token.cancel()

    result = train_ddpm(workspace, tiny("t-cancel", steps=50, checkpoint_every=100),
                        progress=progress, cancel=token)
    assert result.status == "cancelled" and result.steps_done == 2
    assert result.checkpoints == ("step-000002",)


def test_same_request_same_pixels_and_per_image_seeds(trained):
    workspace, _ = trained
    generator = load_generator(workspace, "t1")
    request = SampleRequest(class_label="AD", n=3, seed=5, steps=4, guidance=2.0, batch_size=1)
    first = [g.rgb for g in generator.sample(request)]
    second = [g.rgb for g in generator.sample(request)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    alone = generator.sample(SampleRequest(class_label="AD", n=1, seed=6, steps=4, guidance=2.0))
    assert np.array_equal(first[1], alone[0].rgb)  # image i is seed + i
    assert first[0].shape == (32, 32, 3) and first[0].dtype == np.uint8
    other = generator.sample(SampleRequest(class_label="HP", n=1, seed=5, steps=4, guidance=2.0))
    assert not np.array_equal(first[0], other[0].rgb)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_samples(trained, scheduler):
    workspace, _ = trained
    generator = load_generator(workspace, "t1")
    request = SampleRequest(class_label="SSA", n=2, steps=3, scheduler=scheduler, seed=4)
    images = generator.sample(request)
    assert len(images) == 2 and images[0].rgb.shape == (32, 32, 3)
    again = generator.sample(request)  # seeded: the same pixels again
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(images, again))
    assert not np.array_equal(images[0].rgb, images[1].rgb)  # each image its own noise
    assert all(i.rgb.std() > 1.0 for i in images)  # not a blank


def test_bad_requests(trained):
    workspace, _ = trained
    generator = load_generator(workspace, "t1")
    with pytest.raises(ValueError, match="not one of this generator's: AD, SSA, HP"):
        generator.sample(SampleRequest(class_label="XX"))
    with pytest.raises(ValueError, match="by class, not by prompt"):
        generator.sample(SampleRequest(prompt="a polyp"))
    with pytest.raises(ValueError, match="scheduler: 'plms' is not one of"):
        SampleRequest(class_label="AD", scheduler="plms").validate()
    with pytest.raises(ValueError, match="class or a prompt"):
        SampleRequest().validate()
    with pytest.raises(KeyError, match="no generator 'nope'"):
        load_generator(workspace, "nope")
    with pytest.raises(ValueError, match="no checkpoint 'step-9'"):
        load_generator(workspace, "t1", "step-9")


def test_grid_cells_arrive_one_by_one_it_cancels_and_a_big_grid_is_refused(trained):
    from polyp_core.generation.grid import check_grid, max_cells, xy_grid
    from polyp_core.progress import Cancelled

    workspace, _ = trained
    base = SampleRequest(class_label="AD", steps=2, scheduler="ddim")
    seen, token = [], CancelToken()

    def on_cell(i, j, rgb):
        seen.append((i, j, rgb.shape))
        if len(seen) == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        xy_grid(workspace, "t1", base, "seed", [1, 2], "class_label", ["AD", "SSA"],
                cancel=token, on_cell=on_cell, cell_size=32)
    assert seen == [(0, 0, (32, 32, 3)), (0, 1, (32, 32, 3)), (1, 0, (32, 32, 3))]
    picture = xy_grid(workspace, "t1", base, "seed", [1, 2], "guidance", [1.0], cell_size=32)
    assert picture.shape[0] == 24 + 32 and picture.shape[1] == 90 + 2 * 32
    with pytest.raises(ValueError, match="9 x 8 = 72 cells is over the limit of 64 cells"):
        check_grid("seed", list(range(9)), "guidance", list(range(8)))
    assert max_cells({"STUDIO_GRID_MAX_CELLS": "100"}) == 100
    with pytest.raises(ValueError, match="STUDIO_GRID_MAX_CELLS='lots' is not a whole number"):
        max_cells({"STUDIO_GRID_MAX_CELLS": "lots"})


def test_pool_provenance_and_regeneration(trained, db):
    workspace, _ = trained
    request = SampleRequest(class_label="HP", n=3, seed=40, steps=4, guidance=1.5, batch_size=3)
    stored = sample_to_pool(db, workspace, "t1", request)
    assert len(stored) == 3 and len({sha for _, sha in stored}) == 3
    from review_db import queries

    for _, sha in stored:
        path = workspace.synthetic_dir / f"{sha}.png"
        image = Image.open(path)
        assert image.info == {} or set(image.info) <= {"dpi"}  # no text chunks, no label
        with db.session() as session:
            record = queries.image_by_sha(session, sha)
            p = record.provenance
            assert (record.kind, record.label) == ("synthetic", "HP")
            assert (p.backend, p.generator, p.checkpoint, p.steps, p.guidance, p.scheduler) == (
                "ddpm", "t1", "step-000006", 4, 1.5, "ddim")
            assert len(p.checkpoint_hash) == 64 and p.width == 32
        again = regenerate(db, workspace, sha)
        assert np.array_equal(again, np.asarray(image))
    # the same pixels are stored once
    assert sample_to_pool(db, workspace, "t1", request) == stored


def test_two_step_pretrain_then_finetune_with_frozen_down_blocks(trained, tmp_path):
    workspace, _ = trained
    pre = train_ddpm(workspace, tiny("pre", unknown_class=True, splits=("train", "valid")))
    meta = json.loads((pre.folder / "config.json").read_text())
    assert meta["trained_on"]["splits"] == ["train", "valid"]
    fine = train_ddpm(workspace, tiny("fine", init_from="pre", freeze_down_blocks=True))
    assert json.loads((fine.folder / "config.json").read_text())["init_from"] == "pre@step-000006"
    before = load_file(str(pre.folder / "checkpoints" / "step-000006" / "unet_ema.safetensors"))
    after = load_file(str(fine.folder / "checkpoints" / "step-000006" / "unet.safetensors"))
    down = [k for k in before if k.startswith("down_blocks.")]
    up = [k for k in before if k.startswith("up_blocks.") and k.endswith("weight")]
    assert down and all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in down)
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in up)
    with pytest.raises(ValueError, match="no checkpoint 'step-999'"):
        train_ddpm(workspace, tiny("fine2", init_from="pre@step-999"))

    # exported alone, the fine-tuned model still answers for what its parent saw
    from polyp_core.demo import export_generator
    from polyp_core.generation.lineage import generator_training_images

    valid = {i.sha256 for i in workspace.load_manifest("phantom").split_items("valid")}
    elsewhere = tmp_path / "models"
    export_generator(workspace, "fine", "step-000006", elsewhere / "fine")
    assert json.loads((elsewhere / "fine" / "config.json").read_text())["lineage"]["models"] == ["fine", "pre"]
    assert valid and valid <= generator_training_images(elsewhere, "fine")
    (elsewhere / "fine" / "config.json").write_text(json.dumps(meta | {"train": {"init_from": "pre"}}))
    with pytest.raises(ValueError, match="'pre' has no training record"):
        generator_training_images(elsewhere, "fine")  # a chain with a missing link


def test_demo_generator_recipe_is_one_command_and_made_the_shipped_model(small_phantom, tmp_path):
    from dataclasses import asdict

    from polyp_core.cli import main
    from polyp_core.demo import ASSETS, demo_generator_recipe, install_demo_generator

    # the recipe's second job is the one recorded in the shipped model, field for field
    shipped = json.loads((ASSETS / "demo-ddpm" / "config.json").read_text())
    first, second = demo_generator_recipe()
    recipe = json.loads(json.dumps(asdict(second)))
    # fields added after the model was trained must sit at defaults that leave image training as it was
    added = {k: recipe.pop(k) for k in set(recipe) - set(shipped["train"])}
    assert added == {"task": "image", "max_dilate": 6, "full_frame": 0.1, "window": "lesion"}
    assert recipe == shipped["train"]
    assert shipped["lineage"]["models"] == [second.model_id, first.model_id]

    # the same command, shortened, from an empty workspace to an installable model
    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))  # instead of 1,100 frames
    out = tmp_path / "assets" / "demo-ddpm"
    threads = torch.get_num_threads()
    assert main(["--workspace", str(workspace.root), "train-demo-generator", "--to", str(out),
                 "--steps", "4,3", "--checkpoint-every", "2"]) == 0
    assert torch.get_num_threads() == threads  # each job's thread count is set only for the job
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["class_balance"] and meta["train"]["init_from"] == "demo-ddpm-lin@step-000004"
    assert meta["lineage"]["models"] == ["demo-ddpm-bal", "demo-ddpm-lin"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000003"]
    demo = Workspace(tmp_path / "demo")
    assert install_demo_generator(demo, out.parent)
    images = load_generator(demo, "demo-ddpm").sample(
        SampleRequest(class_label="HP", n=2, steps=3, seed=0, scheduler="ddpm"))
    assert [i.rgb.shape for i in images] == [(32, 32, 3)] * 2


def test_class_balance_draws_every_class_equally_often():
    labels = torch.tensor([0] * 540 + [1] * 120 + [2] * 120)
    images = torch.zeros(len(labels), 1, dtype=torch.uint8)
    def drawn(balance):
        return torch.cat([b for _, b in training_loader(images, labels, 30, 0, balance)])
    plain, balanced = drawn(False), drawn(True)
    assert torch.bincount(plain).tolist() == [540, 120, 120]  # one epoch, each image once
    share = torch.bincount(balanced, minlength=3).double() / len(balanced)
    assert len(balanced) == len(labels) and share.sub(1 / 3).abs().max() < 0.05, share
    assert torch.equal(balanced, drawn(True))  # the seed fixes the order
    with pytest.raises(ValueError, match="class_balance needs"):
        tiny("bad", class_balance=True, unknown_class=True).validate()


def test_balanced_training_records_its_setting(trained, monkeypatch):
    from polyp_core.generation.ddpm import trainer

    workspace, _ = trained
    asked = []  # the loader training used: balanced as configured
    monkeypatch.setattr(trainer, "training_loader",
                        lambda *a, balance=False, **kw: asked.append(balance)
                        or training_loader(*a, balance=balance, **kw))
    result = train_ddpm(workspace, tiny("bal", class_balance=True, steps=2, checkpoint_every=2))
    assert asked == [True]
    assert json.loads((result.folder / "config.json").read_text())["train"]["class_balance"] is True
    assert result.status == "done"


def test_class_fidelity_reads_real_frames_as_the_real_ceiling(trained):
    """Fed the real test frames as if generated, the probe must give exactly its real score;
    frames of one class passed off as another must score lower."""
    from polyp_core.data.cache import PixelCache
    from polyp_core.diagnostics.probe import class_fidelity

    workspace, _ = trained
    manifest, cache = workspace.load_manifest("phantom"), PixelCache(workspace.pixel_cache_dir)
    test = {c: [cache.rgb(i.image, i.sha256, 32) for i in manifest.split_items("test")
                if manifest.label_of(i) == c] for c in ("AD", "SSA", "HP")}
    honest = class_fidelity(manifest, cache, test, size=32, feature_size=64)
    assert honest.generated_confusion == honest.real_confusion
    assert honest.generated_balanced_accuracy == honest.real_balanced_accuracy
    assert sum(map(sum, honest.real_confusion)) == len(manifest.split_items("test"))
    swapped = class_fidelity(manifest, cache, {"SSA": test["AD"], "AD": test["SSA"]}, size=32,
                             feature_size=64)
    assert swapped.generated_balanced_accuracy < honest.real_balanced_accuracy
    assert "balanced accuracy" in swapped.lines()[0]
    with pytest.raises(ValueError, match="no class XX"):
        class_fidelity(manifest, cache, {"XX": test["AD"]}, size=32)


def test_one_model_per_class(trained):
    workspace, _ = trained
    result = train_ddpm(workspace, tiny("per", mode="per_class", steps=2, checkpoint_every=2))
    assert result.sub_models == ("class-AD", "class-SSA", "class-HP")
    from polyp_core.generation.lineage import generator_training_images

    train = {i.sha256 for i in workspace.load_manifest("phantom").split_items("train")}
    assert generator_training_images(workspace.models_dir, "per") == train  # via its sub-models
    generator = load_generator(workspace, "per")
    images = generator.sample(SampleRequest(class_label="SSA", n=2, steps=3, guidance=3.0))
    assert len(images) == 2


def test_train_and_sample_from_the_cli(trained, tmp_path, capsys):
    from polyp_core import cli

    workspace, _ = trained
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli.main(["--workspace", str(workspace.root), "train-ddpm", "--dataset", "phantom",
                     "--model", "cli1", "--preset", "tiny", "--steps", "2", "--batch-size", "4",
                     "--checkpoint-every", "2"]) == 0
    assert cli.main(["--workspace", str(workspace.root), "sample", "--model", "cli1",
                     "--count", "AD=2", "--count", "SSA=1", "--steps", "2", "--db", db_url]) == 0
    from review_db import Database, queries

    db = Database(db_url)
    with db.session() as session:
        assert len(queries.synthetic_images(session, "cli1")) == 3
        assert len(queries.synthetic_images(session, "cli1", classes=["SSA"])) == 1
    db.dispose()
    capsys.readouterr()
    assert cli.main(["--workspace", str(workspace.root), "check-classes", "--model", "cli1",
                     "--dataset", "phantom", "--n", "2", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "on 2 samples per class" in printed and "generated read as" in printed


def test_checkpoint_sweep_of_a_trained_generator(trained):
    """Issue 4's sweep on real checkpoints: one KID matrix per checkpoint, a table, a plot."""
    from polyp_core.diagnostics.sweep import sweep_figure, sweep_generator

    workspace, result = trained
    sweep = sweep_generator(workspace, "t1", "phantom", n_per_class=4, size=64, steps=3,
                            subsets=3)
    assert sweep.checkpoints == result.checkpoints
    assert {r["checkpoint"] for r in sweep.rows} == set(result.checkpoints)
    assert len(sweep.rows) == 2 * 3 and sweep.best() in result.checkpoints
    assert sweep.matrices["step-000006"].extractor == "efficientnet_lite0@bundled"
    assert len(sweep_figure(sweep).data) == 6


@pytest.mark.parametrize("name", ["ddim", "dpmsolver++", "euler"])
def test_clipped_eps_keeps_the_clean_image_in_the_pixel_range(name):
    from polyp_core.generation.ddpm import DDPMConfig, clipped_eps, noise_schedule
    from polyp_core.generation.request import make_scheduler

    scheduler = make_scheduler(name, noise_schedule(DDPMConfig(size=8)))
    scheduler.set_timesteps(10)
    index, t = 2, scheduler.timesteps[2]
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((2, 3, 8, 8), generator=g) * 6 - 3  # partly outside [-1, 1]
    eps = torch.randn((2, 3, 8, 8), generator=g)
    if name == "euler":
        sigma = scheduler.sigmas[index]
        x = x0 + sigma * eps
        def recovered(e):
            return x - sigma * e
    else:
        ab = scheduler.alphas_cumprod[int(t)]
        x = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        def recovered(e):
            return (x - (1 - ab).sqrt() * e) / ab.sqrt()
    fixed = clipped_eps(scheduler, x, eps, t, index)
    assert torch.allclose(recovered(fixed), x0.clamp(-1, 1), atol=1e-4)
    inside = x0.abs() <= 1
    assert torch.allclose(fixed[inside], eps[inside], atol=1e-4)  # in range: unchanged
