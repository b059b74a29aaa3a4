"""Data sets of frames and masks without classes: the public segmentation sets import as they
are distributed (a small fixture of each layout is built here), as the one-class ``lesion``
scheme; segmentation runs on them, classification is refused; bad masks get a clear answer
and a refusal writes nothing."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polyp_core.cli import main as cli
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.data.lesion import find_pairs
from polyp_core.errors import DatasetImportError
from polyp_core.workspace import Workspace


def frame(seed: int, size: tuple[int, int] = (48, 40)) -> tuple[np.ndarray, np.ndarray]:
    """A noisy reddish frame with a brighter disc, and the disc as a 0/255 mask."""
    rng = np.random.default_rng(seed)
    w, h = size
    rgb = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    cx, cy, r = rng.integers(12, w - 12), rng.integers(12, h - 12), rng.integers(5, 10)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    rgb[disc] = (200, 90, 80)
    return rgb, disc.astype(np.uint8) * 255


def write_pair(images: Path, masks: Path, stem: str, seed: int, image_suffix: str = ".png",
               mask_name: str | None = None, mask_size: tuple[int, int] | None = None,
               size: tuple[int, int] = (48, 40)) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rgb, mask = frame(seed, size)
    Image.fromarray(rgb).save(images / f"{stem}{image_suffix}")
    m = Image.fromarray(mask)
    if mask_size:
        m = m.resize(mask_size)
    m.save(masks / (mask_name or f"{stem}.png"))


def layout(kind: str, root: Path, n: int = 8) -> Path:
    """A small copy of a public layout (file names, mask suffixes, TIFF, per-centre folders)."""
    if kind == "generic":
        for i in range(n):
            write_pair(root / "images", root / "masks", f"frame{i:02d}", i)
    elif kind == "kvasir":  # Kvasir-SEG: JPEG frames and JPEG masks of the same name
        root = root / "Kvasir-SEG"
        for i in range(n):
            write_pair(root / "images", root / "masks", f"cju{i:04d}x", i, ".jpg",
                       f"cju{i:04d}x.jpg")
        (root / "kavsir_bboxes.json").write_text("{}")
    elif kind == "clinicdb":  # CVC-ClinicDB: Original/ and Ground Truth/, TIFF
        root = root / "CVC-ClinicDB"
        for i in range(1, n + 1):
            write_pair(root / "Original", root / "Ground Truth", str(i), i, ".tif", f"{i}.tif")
    elif kind == "etis":  # ETIS-LaribPolypDB: 1.tif beside Ground Truth/p1.tif
        root = root / "ETIS-LaribPolypDB"
        for i in range(1, n + 1):
            write_pair(root / "ETIS-LaribPolypDB", root / "Ground Truth", str(i), i, ".tif",
                       f"p{i}.tif")
    elif kind == "polypgen":  # PolypGen: a folder per centre, masks named <stem>_mask.jpg
        root = root / "PolypGen2021_MultiCenterData_v3"
        for c in range(1, 4):
            for i in range(n // 2):
                write_pair(root / f"data_C{c}" / f"images_C{c}", root / f"data_C{c}" / f"masks_C{c}",
                           f"{c}00H{i:04d}", 100 * c + i, ".jpg", f"{c}00H{i:04d}_mask.jpg")
    return root


@pytest.mark.parametrize("kind,groups", [("generic", 0), ("kvasir", 0), ("clinicdb", 0),
                                         ("etis", 0), ("polypgen", 3)])
def test_each_public_layout_imports_as_it_is_distributed(tmp_path, kind, groups):
    source = layout(kind, tmp_path / "src")
    workspace = Workspace(tmp_path / "ws")
    result = import_dataset(workspace, ImportConfig(str(source), name="set"))
    manifest = workspace.load_manifest("set")
    assert manifest.layout == "lesion" and manifest.scheme == "lesion"
    assert result.counts["all"] == {"LESION": len(manifest.items)}
    assert all(i.mask and i.label == "LESION" for i in manifest.items)
    # every mask is the one drawn for its own frame (its stem, suffix or prefix matched)
    for item in manifest.items:
        red = np.asarray(Image.open(item.image).convert("RGB"))[..., 0].astype(float)
        mask = np.asarray(Image.open(item.mask).convert("L")) >= 128
        assert red[mask].mean() > 170 > 130 > red[~mask].mean(), item.id
    found = {i.group for i in manifest.items} - {None}
    assert len(found) == groups
    if kind == "polypgen":
        assert found == {"C1", "C2", "C3"} and manifest.split_method == "grouped"
        by_split = {}
        for item in manifest.items:
            by_split.setdefault(item.group, set()).add(item.split)
        assert all(len(s) == 1 for s in by_split.values())  # a centre stays in one split
    if kind == "kvasir":  # JPEG masks are grey at the edges: binarised, and the import says so
        assert any("binarised at 128" in n for n in result.notes), result.notes


def test_a_folder_of_images_and_masks_and_a_zip_of_it_import_as_lesion(tmp_path):
    source = layout("generic", tmp_path / "lesions")
    archive = tmp_path / "lesions.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(source.rglob("*")):
            z.write(path, Path("lesions") / path.relative_to(source))
    workspace = Workspace(tmp_path / "ws")
    assert cli(["--workspace", str(workspace.root), "import", str(source), "--name", "folder"]) == 0
    assert cli(["--workspace", str(workspace.root), "import", str(archive), "--name", "zipped"]) == 0
    for name in ("folder", "zipped"):
        manifest = workspace.load_manifest(name)
        assert manifest.scheme == "lesion" and len(manifest.items) == 8


def test_segmentation_runs_on_a_lesion_set_with_against_and_classification_is_refused(
        tmp_path, capsys):
    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(layout("kvasir", tmp_path / "a", n=12)), name="kv"))
    import_dataset(workspace, ImportConfig(str(layout("etis", tmp_path / "b", n=6)), name="etis"))
    base = ["--workspace", str(workspace.root), "retrain", "--dataset", "kv", "--baseline-only",
            "--folds", "0", "--allow-small-test", "--size", "32", "--epochs", "1", "--seeds", "0"]
    code = cli(base + ["--task", "segmentation", "--against", "etis"])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    run_id = re.search(r"run (retrain-\S+)", out).group(1)
    results = json.loads((workspace.root / "runs" / run_id / "results.json").read_text())
    assert results["scheme"] == "lesion" and results["classes"] == ["LESION"]
    (other,) = results["against"]
    assert other["dataset"] == "etis" and other["images"] == 6
    assert "tested on etis too (6 images" in out
    assert cli(base) == 2  # classification
    err = capsys.readouterr().err
    assert "scheme 'lesion', which has one class (LESION)" in err and "segmentation" in err


def test_against_refuses_the_data_set_itself_and_frames_it_shares(tmp_path, capsys):
    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(layout("generic", tmp_path / "a")), name="a"))
    copy = tmp_path / "b"
    layout("generic", copy)  # the same frames under another name
    import_dataset(workspace, ImportConfig(str(copy), name="b"))
    base = ["--workspace", str(workspace.root), "retrain", "--dataset", "a", "--task",
            "segmentation", "--baseline-only", "--folds", "0", "--allow-small-test", "--size",
            "32", "--epochs", "1", "--seeds", "0"]
    assert cli(base + ["--against", "a"]) == 2
    assert "'a' is the data set the run trains on" in capsys.readouterr().err
    assert cli(base + ["--against", "b"]) == 2
    err = capsys.readouterr().err
    assert "'b' shares 8 frames with 'a' (b:frame00 = a:frame00" in err, err


def _nothing_written(workspace: Workspace) -> bool:
    return not workspace.datasets()


def test_bad_masks_get_a_clear_answer_and_a_refusal_writes_nothing(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    # a mask of another size than its image: refused, naming the mask
    wrong = tmp_path / "wrong"
    for i in range(4):
        write_pair(wrong / "images", wrong / "masks", f"f{i}", i,
                   mask_size=(24, 20) if i == 2 else None)
    with pytest.raises(DatasetImportError) as error:
        import_dataset(workspace, ImportConfig(str(wrong), name="wrong"))
    text = str(error.value)
    assert "f2.png" in text and "mask is 24x20 but its image f2.png is 48x40" in text, text
    assert _nothing_written(workspace)
    # an empty mask folder: refused, naming it
    empty = tmp_path / "empty"
    for i in range(3):
        write_pair(empty / "images", empty / "other", f"f{i}", i)
    (empty / "masks").mkdir()
    with pytest.raises(DatasetImportError, match=r"masks: the mask folder holds no mask files"):
        import_dataset(workspace, ImportConfig(str(empty), name="empty"))
    assert _nothing_written(workspace)
    # grey levels (anti-aliased edges) are binarised at 128, 0/1 masks read 1 as polyp; an
    # image without a mask is imported and counted apart
    mixed = tmp_path / "mixed"
    for i in range(5):
        write_pair(mixed / "images", mixed / "masks", f"f{i}", i)
    grey = np.asarray(Image.open(mixed / "masks" / "f1.png")).copy()
    grey[grey == 255] = 200
    grey[0, 0] = 100  # below half: background
    Image.fromarray(grey).save(mixed / "masks" / "f1.png")
    Image.fromarray((np.asarray(Image.open(mixed / "masks" / "f3.png")) // 255).astype(
        np.uint8)).save(mixed / "masks" / "f3.png")
    (mixed / "masks" / "f4.png").unlink()
    result = import_dataset(workspace, ImportConfig(str(mixed), name="mixed"))
    notes = " | ".join(result.notes)
    assert "1 mask(s) hold values other than 0 and 255" in notes and "(e.g. f1)" in notes
    assert "1 mask(s) hold only 0 and 1: read with 1 as the polyp (e.g. f3)" in notes
    assert "1 image(s) have no mask and are counted apart (e.g. f4)" in notes
    manifest = workspace.load_manifest("mixed")
    assert result.n_images == 5 and result.n_masks == 4
    from polyp_core.data.images import load_mask

    for stem in ("f1", "f3"):
        drawn = frame(int(stem[1]))[1] > 0
        assert (load_mask(mixed / "masks" / f"{stem}.png") == drawn).all()
    assert next(i for i in manifest.items if i.id == "f4").mask is None


def test_pairs_are_found_beside_each_other_only(tmp_path):
    """A mask folder pairs with the image folder beside it, never with the source's parent."""
    root = layout("polypgen", tmp_path / "pg", n=2)
    pairs = {(i.name, m.name) for i, m in find_pairs(root)}
    assert pairs == {(f"images_C{c}", f"masks_C{c}") for c in (1, 2, 3)}
    masks_only = tmp_path / "masks"
    masks_only.mkdir()
    assert find_pairs(masks_only) == []


def test_inpainting_the_gate_and_a_mask_study_work_on_a_lesion_set(tmp_path, capsys):
    """A one-class inpainter learns from the lesion set's training frames; inpainting needs no
    class (the generator's only one), the gate scores the images, and a study shows them with
    their masks."""
    from polyp_core.review.accounts import create_account
    from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, create_study
    from review_db import queries
    from review_db.database import Database

    workspace = Workspace(tmp_path / "ws")
    source = tmp_path / "src"
    for i in range(24):
        write_pair(source / "images", source / "masks", f"f{i:02d}", i)
    import_dataset(workspace, ImportConfig(str(source), name="les"))
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    base = ["--workspace", str(workspace.root)]
    assert cli(base + ["train-ddpm", "--dataset", "les", "--model", "inp", "--preset", "tiny",
                       "--steps", "2", "--batch-size", "4", "--inpaint"]) == 0
    frames = [i.id for i in workspace.load_manifest("les").items if i.split == "train"]
    for k, frame_id in enumerate(frames[:3]):
        assert cli(base + ["inpaint", "--generator", "inp", "--dataset", "les", "--image",
                           frame_id, "--steps", "2", "--dilate", "3", "--seeds", f"{k},{k + 10}",
                           "--db", db.url]) == 0
    out = capsys.readouterr().out
    assert out.count("inpainted LESION image(s) from inp@") == 3, out
    assert cli(base + ["gate", "--dataset", "les", "--generator", "inp", "--epochs", "1",
                       "--size", "32", "--db", db.url]) == 0
    assert "inp / LESION: accepted" in capsys.readouterr().out
    admin = create_account(db, "les-boss", "correct horse battery", "admin")
    create_account(db, "les-r", "correct horse battery")
    study_id = create_study(db, workspace, admin, StudySpec(
        name="lesion-masks", pools=(RealPool("les", 6, split="train"),
                                    SyntheticPool(6, generator="inp")),
        reviewers=("les-r",), show_mask="outline"))
    with db.session() as session:
        kinds = sorted(si.image.kind for si in queries.study_images(session, study_id))
    assert kinds == ["real"] * 6 + ["synthetic"] * 6


def test_any_data_set_reads_as_lesion_but_lists_it_only_without_histology(tmp_path):
    from tests.conftest import make_hospital, three_class_labels

    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(make_hospital(tmp_path / "h",
                                                             three_class_labels(4, 3, 3))),
                                           name="h"))
    import_dataset(workspace, ImportConfig(str(layout("generic", tmp_path / "g")), name="g"))
    histology = workspace.load_manifest("h")
    assert histology.schemes == ["three_class", "ad_vs_rest"]
    as_lesion = histology.with_scheme("lesion")
    assert {as_lesion.label_of(i) for i in as_lesion.items} == {"LESION"}
    assert workspace.load_manifest("g").schemes == ["lesion"]
    with pytest.raises(ValueError, match="which scheme 'three_class' cannot express; "
                                         "available: lesion"):
        workspace.load_manifest("g").with_scheme("three_class")


def test_a_polyp_without_histology_among_classified_rows_is_named_not_absorbed(tmp_path):
    """One row labelled 'polyp' in a histology table would turn the whole set into one class:
    refused, naming the row, unless the import asks for scheme lesion."""
    from tests.conftest import make_hospital, three_class_labels

    workspace = Workspace(tmp_path / "ws")
    source = make_hospital(tmp_path / "h", {**three_class_labels(3, 2, 2), "x1": "POLYP"})
    with pytest.raises(DatasetImportError, match=r"labels.csv row 9: label 'POLYP' is a polyp "
                                                 r"without histology, but other rows have "
                                                 r"classes \(AD, HP, SSA\)"):
        import_dataset(workspace, ImportConfig(str(source), name="mixed"))
    assert not workspace.datasets()
    result = import_dataset(workspace, ImportConfig(str(source), name="mixed", scheme="lesion"))
    assert result.scheme == "lesion" and result.counts["all"] == {"LESION": 8}
