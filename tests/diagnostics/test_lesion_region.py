"""Diagnostics of the polyp, not the frame: crops around each polyp region, KID with intervals
over lesions beside the floor and the whole-frame figure."""

from __future__ import annotations

import re

import numpy as np

from polyp_core.cli import main as cli
from polyp_core.data.images import resize_rgb
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.diagnostics.lesion import kid_interval, lesion_crop, synthetic_region
from polyp_core.workspace import Workspace
from review_db.database import Database
from tests.data.test_lesion import write_pair


def test_a_crop_is_the_square_around_the_region_grown_by_half():
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    region = np.zeros((40, 60), bool)
    region[10:18, 20:30] = True  # 8 x 10: side 15, centred on (14, 25) -> x 18 (17.5 -> 18), y 6
    crop = lesion_crop(rgb, region, 8)
    assert np.array_equal(crop, resize_rgb(np.ascontiguousarray(rgb[6:21, 18:33]), 8))
    assert lesion_crop(rgb, np.zeros((40, 60), bool), 8) is None
    assert lesion_crop(rgb, np.ones((40, 60), bool), 8) is None  # wider than the frame's limit


def test_the_region_of_each_kind_of_synthetic_image(tmp_path):
    from polyp_core.pool import mask_path, mask_png
    from polyp_core.workspace import Workspace as W

    workspace = W(tmp_path / "ws")
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:9] = True
    mask[12:16, 20:26] = True
    hole = np.zeros((20, 30), bool)
    hole[10:18, 18:28] = True
    for m in (mask, hole):
        path = mask_path(workspace.synthetic_dir, f"{m.sum()}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mask_png(m))
    plain = {"mask_sha256": str(mask.sum())}
    assert np.array_equal(synthetic_region(plain, (20, 30), workspace), mask)
    inpainted = plain | {"inpaint": {"hole_sha256": str(hole.sum())}}
    assert np.array_equal(synthetic_region(inpainted, (20, 30), workspace), hole)
    pasted = plain | {"copy_paste": {"x": 19, "y": 11, "width": 8, "height": 6}}
    expected = np.zeros((20, 30), bool)
    expected[12:16, 20:26] = True  # the pasted polyp only, not the frame's own
    assert np.array_equal(synthetic_region(pasted, (20, 30), workspace), expected)
    assert synthetic_region({}, (20, 30), workspace) is None


def test_the_interval_resamples_whole_groups():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 8))
    far = rng.normal(loc=0.8, size=(30, 8))
    near = rng.normal(size=(30, 8))
    units = [f"g{k // 4}" for k in range(40)]
    syn_units = [f"s{k // 3}" for k in range(30)]
    a = kid_interval(real, units, far, syn_units, n_boot=60)
    b = kid_interval(real, units, near, syn_units, n_boot=60)
    assert a["real_units"] == 10 and a["synthetic_units"] == 10 and a["n_boot"] == 60
    assert a["low"] < a["estimate"] < a["high"] and "half-samples" in a["method"]
    assert a["low"] > b["high"]  # a shifted distribution is further, beyond the noise
    assert kid_interval(real, units, far, syn_units, n_boot=60) == a  # seeded


def test_diagnose_region_lesion_prints_the_crops_beside_the_whole_frames(tmp_path, capsys):
    workspace = Workspace(tmp_path / "ws")
    source = tmp_path / "src"
    for i in range(24):
        write_pair(source / "images", source / "masks", f"f{i:02d}", i, size=(96, 80))
    import_dataset(workspace, ImportConfig(str(source), name="les"))
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    base = ["--workspace", str(workspace.root)]
    assert cli(base + ["copy-paste", "les", "--n", "8", "--db", db.url]) == 0
    capsys.readouterr()
    assert cli(base + ["diagnose", "--dataset", "les", "--real-split", "all", "--subsets", "5",
                       "--size", "32", "--projection", "pca", "--region", "lesion",
                       "--db", db.url]) == 0
    out = capsys.readouterr().out
    assert "KID lesion (synthetic row vs real column" in out  # the whole frames, as before
    assert re.search(r"around each polyp \(crops; 24 real, 8 synthetic; left out without a "
                     r"polyp region: 0 real, 0 synthetic", out), out
    assert re.search(r"lesion LESION: KID -?\d+\.\d{4} \[-?\d+\.\d{4}, -?\d+\.\d{4}\], floor", out)
    assert re.search(r"copy-paste \(lesion\): LESION -?\d+\.\d{4} \[.*\] \(n=8\)", out), out


def test_groups_the_import_made_for_identical_frames_are_not_lesions():
    """The floor's unit says "groups" only where the source named patients or lesions; a
    group the import made for two identical frames does not count."""
    from types import SimpleNamespace

    from polyp_core.data.labels import get_scheme
    from polyp_core.diagnostics.report import DiagnoseConfig, kid_floor

    def items(first_group: str | None) -> list:
        return [SimpleNamespace(id=f"f{k}", label="AD", group=first_group if k < 2 else None)
                for k in range(8)]

    features = np.random.default_rng(0).normal(size=(8, 4))
    config = DiagnoseConfig("d", subsets=5)
    scheme = get_scheme("ad_vs_rest")
    assert kid_floor(features, items("same-pixels:f0"), scheme, config)["AD"]["unit"] == "images"
    assert kid_floor(features, items("patient-1"), scheme, config)["AD"]["unit"] == "groups"
