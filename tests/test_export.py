"""Exports: an nnU-Net raw dataset that nnU-Net's own integrity check accepts, whose
splits_final.json holds the studio's grouped folds; an arm's training set of one fold of a
stored run, image for image; a data card with no path outside the export; refusals that write
nothing."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from polyp_core.export import ExportConfig, export
from polyp_core.workspace import Workspace
from review_db.database import Database


@pytest.fixture(scope="module")
def pasted(tmp_path_factory, small_phantom):
    """The small phantom with 4 copy-paste images per class in the pool."""
    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.generation.copy_paste import CopyPasteRequest, copy_paste, store_pasted

    root = tmp_path_factory.mktemp("export")
    workspace = Workspace(root / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    db = Database(f"sqlite:///{root / 'studio.db'}")
    for k, cls in enumerate(("AD", "SSA", "HP")):
        request = CopyPasteRequest(dataset="phantom", class_label=cls, n=4, seed=100 * k,
                                   generator="cp")
        label, images = copy_paste(workspace, request)
        store_pasted(db, workspace, request, label, images)
    return workspace, db, root


def _rows(folder):
    with (folder / "cases.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_an_nnunet_export_passes_nnunets_check_and_keeps_the_studios_folds(pasted):
    pytest.importorskip("nnunetv2", reason="nnunetv2 is a test dependency (requirements-test.txt)")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    from polyp_core.experiment.folds import grouped_folds

    workspace, db, root = pasted
    out = root / "nnunet"
    card = export(db, workspace, ExportConfig(to="nnunet", out=str(out), dataset="phantom",
                                              folds=3, seed=4, licence="CC-BY-4.0"))
    folder = out / "Dataset501_Polyps"
    verify_dataset_integrity(str(folder), 1)  # raises on any problem
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dataset["labels"] == {"background": 0, "polyp": 1}
    rows = _rows(out)
    manifest = workspace.load_manifest("phantom")
    training = [i for i in manifest.items if i.split != "test"]
    assert dataset["numTraining"] == len(training) + 12 == len(list((folder / "imagesTr").iterdir()))
    assert len(list((folder / "imagesTs").iterdir())) == len(manifest.split_items("test"))
    # the studio's folds, computed here from the manifest: the same validation cases
    classes = sorted({i.label for i in training})
    folds = grouped_folds([classes.index(i.label) for i in training],
                          [i.group or i.id for i in training], 3, 4, classes=classes,
                          inner_valid=0.0)
    case_of = {r["sha256"]: r["case"] for r in rows}
    splits = json.loads((folder / "splits_final.json").read_text())
    assert [sorted(case_of[training[i].sha256] for i in fold.test) for fold in folds] == \
        [s["val"] for s in splits]
    # a pasted image trains every fold but those that validate one of its two frames
    from polyp_core.data.tensors import ImageRef
    from polyp_core.experiment.leakage import made_of

    group_of = {i.sha256: i.group or i.id for i in manifest.items}
    pasted_rows = [r for r in rows if r["kind"] == "synthetic"]
    frames = made_of(db, [ImageRef(r["sha256"], "", "") for r in pasted_rows])
    left_out = 0
    for split, fold in zip(splits, folds):
        assert not set(split["train"]) & set(split["val"])
        held = {training[i].group or training[i].id for i in fold.test}
        for r in pasted_rows:
            touches = {group_of[f] for f in frames[r["sha256"]]} & held
            assert (r["case"] in split["train"]) == (not touches), r
            left_out += bool(touches)
    assert left_out > 0 and all(len(f) == 2 for f in frames.values())
    assert card["counts"]["train"]["synthetic"] == {"AD": 4, "HP": 4, "SSA": 4}
    assert card["real_data"]["licence"] == "CC-BY-4.0"
    assert card["generators"][0]["route"] == ["copy-paste"]
    text = (out / "DATACARD.md").read_text() + (out / "datacard.json").read_text() + \
        (out / "cases.csv").read_text()
    assert str(root) not in text and "reviewers" not in card["ratings"]


def test_an_arms_export_holds_exactly_what_it_trained_on(pasted):
    from polyp_core.experiment import ExperimentConfig, SelectionPolicy, run_experiment
    from polyp_core.training import TrainConfig

    workspace, db, root = pasted
    run = run_experiment(db, workspace, ExperimentConfig(
        dataset="phantom", task="segmentation", folds=2, seeds=(0,), allow_small_test=True,
        seen_groups_train=True,
        policy=SelectionPolicy(generators=("cp",)), name="export",
        train=TrainConfig(image_size=32, epochs=1, batch_size=16)), device=torch.device("cpu"))
    images = json.loads((run.folder / "images.json").read_text())
    out = root / "fold2"
    export(db, workspace, ExportConfig(to="csv", out=str(out), run=run.run_id, arm="augmented",
                                       fold=2))
    rows = _rows(out)
    exported = {r["sha256"] for r in rows if r["split"] == "train"}
    # independent of the new record: the fold's synthetic images (images.json's fold lists),
    # its test images, and the count its network trained on
    synthetic = {s["sha256"] for s in images["synthetic"] if "fold 2" in s["folds"]}
    tested = {r["sha256"] for r in images["real"] if r["tested_in"] == "fold 2"}
    n_train = run.results["arms"]["augmented"]["per_seed"][0]["folds"][1]["n_train"]
    assert {r["sha256"] for r in rows if r["kind"] == "synthetic"} == synthetic
    assert {r["sha256"] for r in rows if r["split"] == "test"} == tested
    assert len(exported) == n_train and not exported & tested
    trained = images["trained"]["augmented"]["fold 2"]
    assert exported == set(trained["real"]) | set(trained["synthetic"])
    baseline = root / "baseline"
    export(db, workspace, ExportConfig(to="csv", out=str(baseline), run=run.run_id,
                                       arm="baseline", fold=2))
    assert {r["sha256"] for r in _rows(baseline) if r["split"] == "train"} == exported - synthetic

    for config, message in (
            (ExportConfig(to="csv", out=str(root / "x"), run=run.run_id, arm="gated"),
             r"`arm`: run .* has no arm 'gated' \(it has baseline, augmented\)"),
            (ExportConfig(to="csv", out=str(root / "x"), run=run.run_id, fold=3),
             r"`fold`: run .* has 2 fold\(s\); fold 3 does not exist"),
            (ExportConfig(to="csv", out=str(root / "x"), dataset="phantom",
                          policy=SelectionPolicy(generators=("nobody",))),
             r"no synthetic image|selects no synthetic image"),
            (ExportConfig(to="csv", out=str(out), dataset="phantom"),
             r"`out`: .* exists and is not an empty folder")):
        with pytest.raises(ValueError, match=message):
            export(db, workspace, config)
    assert not (root / "x").exists()
    assert not list(root.glob(".export-*"))  # no scratch folder left behind
    assert len(_rows(out)) == len(rows)  # the existing export is untouched


def test_byte_copies_in_a_data_set_get_their_own_cases():
    """NeoPolyp holds the same file under two ids: each must stay a case of its own (the first
    NeoPolyp export lost four cases to overwritten files)."""
    from polyp_core.export import Case, _number_copies

    cases = _number_copies([Case("ab" * 32, "a.png", "m", "AD", "train", "real", "g1"),
                            Case("ab" * 32, "b.png", "m", "AD", "train", "real", "g1"),
                            Case("ab" * 32, "s.png", "m", "AD", "train", "synthetic", "s"),
                            Case("cd" * 32, "c.png", "m", "AD", "test", "real", "g2")])
    assert [c.case_id for c in cases] == [f"real_{'ab' * 8}", f"real_{'ab' * 8}-1",
                                          f"syn_{'ab' * 8}", f"real_{'cd' * 8}"]
