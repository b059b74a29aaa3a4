"""The copy-paste baseline: a training polyp cut out, colour-matched and pasted away from the
target's own polyp; both frames are the image's training data, and retrain's leak checks treat
them so. Worked by hand on flat frames."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from polyp_core.cli import main as cli
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.experiment import ExperimentConfig, plan_experiment
from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.data.tensors import ImageRef
from polyp_core.experiment.folds import Fold
from polyp_core.experiment.leakage import background_leaks
from polyp_core.generation.copy_paste import GAP, paste_polyp
from polyp_core.pool import PoolFilter, pool_page
from polyp_core.workspace import Workspace
from review_db.database import Database
from tests.data.test_lesion import write_pair


def test_a_polyp_is_pasted_colour_matched_away_from_the_targets_own():
    """A 6 x 6 red square (200, 50, 50) on grey 100 is pasted at scale 1 into a flat frame of
    60 whose own polyp is a 5 x 5 corner. The source's ring is 100 (std 0, +1), the target's
    60: the gain is 1 and the polyp's colour becomes (200 - 100 + 60, 50 - 100 + 60) =
    (160, 10, 10) where it is pasted whole (2 px inside its mask, the 3 px seam's depth
    there); outside the pasted square the target is unchanged."""
    source = np.full((40, 40, 3), 100, np.uint8)
    source_mask = np.zeros((40, 40), bool)
    source_mask[10:16, 20:26] = True
    source[source_mask] = (200, 50, 50)
    target = np.full((40, 40, 3), 60, np.uint8)
    target_mask = np.zeros((40, 40), bool)
    target_mask[:5, :5] = True
    for seed in range(20):
        out, mask, placed = paste_polyp(source, source_mask, target, target_mask,
                                        np.random.default_rng(seed), scale=1.0)
        assert placed["scale"] == 1.0 and (placed["width"], placed["height"]) == (6, 6)
        y, x = placed["y"], placed["x"]
        square = np.zeros((40, 40), bool)
        square[y:y + 6, x:x + 6] = True
        assert np.array_equal(mask, target_mask | square)  # the union of both polyps
        assert np.array_equal(out[~square], target[~square])  # nothing else changes
        assert (out[y + 2:y + 4, x + 2:x + 4] == (160, 10, 10)).all()
        # the border pixels take a third of the polyp: 60 + (160 - 60) / 3
        assert tuple(out[y, x + 2]) == (93, 43, 43)
        # away from the target's polyp by GAP px, and inside the frame
        rows, cols = np.nonzero(square)
        assert rows.min() >= 2 and cols.min() >= 2 and rows.max() <= 37 and cols.max() <= 37
        assert distance_transform_edt(~target_mask)[square].min() > GAP


@pytest.fixture
def lesions(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    source = tmp_path / "src"
    for i in range(30):
        write_pair(source / "images", source / "masks", f"f{i:02d}", i, size=(96, 80))
    import_dataset(workspace, ImportConfig(str(source), name="les"))
    return workspace, Database(f"sqlite:///{tmp_path / 'studio.db'}")


def test_the_cli_pastes_into_the_pool_and_retrain_treats_both_frames_as_training_data(
        lesions, capsys):
    workspace, db = lesions
    base = ["--workspace", str(workspace.root)]
    assert cli(base + ["copy-paste", "les", "--n", "6", "--db", db.url]) == 0
    assert "6 copy-paste LESION image(s) from les (train polyps into train frames)" in \
        capsys.readouterr().out
    config = ExperimentConfig(dataset="les", task="segmentation", folds=0, seeds=(0,),
                              allow_small_test=True,
                              policy=SelectionPolicy(generators=("copy-paste",)))
    plan = plan_experiment(db, workspace, config)  # training frames only: accepted
    assert len(plan.selections[0].images) == 6
    # polyps cut from test frames: the generator's record holds them, so the run is refused
    assert cli(base + ["copy-paste", "les", "--n", "2", "--source-split", "test",
                       "--generator", "cp-test", "--db", db.url]) == 0
    with pytest.raises(ValueError, match=r"cp-test learned from \d validation/test images "
                                         r"\(les:f\d\d \(test\)"):
        plan_experiment(db, workspace, ExperimentConfig(
            **{**config.__dict__, "policy": SelectionPolicy(generators=("cp-test",))}))
    # and each image on its own: both of its frames are its training data
    items = workspace.load_manifest("les").items
    real = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in items]
    fold = Fold("fixed split", *(tuple(k for k, i in enumerate(items) if i.split == part)
                                 for part in ("train", "valid", "test")))
    pool = pool_page(db, PoolFilter(generator="cp-test"), 0, 10).items
    found = background_leaks(db, [fold], [SimpleNamespace(images=[
        ImageRef(p.sha256, str(p.path), "LESION") for p in pool])], real,
        [i.group or i.id for i in items])
    sources = [p.provenance["extra"]["sources"][0] for p in pool]
    assert sorted(found) == sorted(
        f"fixed split: image {p.sha256[:12]} holds a polyp cut from frame les:{s['id']} of "
        f"group {s['id']} (validation/test part)" for p, s in zip(pool, sources))
    assert all(p.provenance["extra"]["background"]["split"] == "train" for p in pool)


def test_a_class_with_one_training_polyp_is_refused_and_nothing_is_stored(tmp_path, capsys):
    from tests.conftest import make_hospital

    workspace = Workspace(tmp_path / "ws")
    labels = {f"ad{i}": "AD" for i in range(6)} | {"hp0": "HP", "hp1": "HP", "hp2": "HP"}
    import_dataset(workspace, ImportConfig(str(make_hospital(tmp_path / "h", labels)),
                                           name="h", scheme="ad_vs_rest",
                                           split_fractions=(0.4, 0.0, 0.6)))
    manifest = workspace.load_manifest("h")
    hp_train = [i for i in manifest.items if i.label == "HP" and i.split == "train"]
    assert len(hp_train) == 1
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    code = cli(["--workspace", str(workspace.root), "copy-paste", "h", "--class", "REST",
                "--db", db.url])
    assert code == 2 and "has 1 REST polyp(s) with a mask in its train split; copy-paste " \
                         "needs at least 2" in capsys.readouterr().err
    assert not (workspace.root / "external").exists() and not any(
        workspace.synthetic_dir.glob("*.png"))
    assert cli(["--workspace", str(workspace.root), "copy-paste", "h", "--class", "XX",
                "--db", db.url]) == 2
    assert "--class: 'XX' is not a class of 'h' (AD, REST)" in capsys.readouterr().err
