"""The segmentation gate: IoUs stored per image and gate beside a real-frame reference, the
pool filter, and retrain's per-fold gate, which learns from its fold's training part only."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from polyp_core.experiment import ExperimentConfig, plan_experiment, run_experiment
from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.training import TrainConfig
from polyp_core.cli import main as cli
from polyp_core.generation.inpaint import InpaintRequest
from polyp_core.pool import PoolFilter, pool_page
from polyp_core.segment import gate as gate_module
from polyp_core.segment.gate import GATE_TRAIN, GateConfig
from helpers import gate_now, inpaint_now
from review_db import queries

TINY = TrainConfig(image_size=32, epochs=1, batch_size=32, patience=1, hidden=16)
FAST_GATE = replace(GATE_TRAIN, image_size=64, epochs=1)


@pytest.fixture(scope="module")
def gated(painted):
    """Six inpainted images on training-split frames (two per class), in the pool with masks."""
    workspace, db = painted
    frames = [i for i in workspace.load_manifest("demo").items if i.split == "train"]
    shas = []
    for k, cls in enumerate(("AD", "SSA", "HP")):
        _, stored = inpaint_now(db, workspace, InpaintRequest(
            generator="paint", class_label=cls, dataset="demo", image=frames[k].id, dilate=3,
            steps=2, seeds=(100 + k, 200 + k)))
        shas += [sha for _, sha in stored]
    return workspace, db, shas


def test_the_gate_stores_an_iou_per_image_beside_the_real_reference(gated, capsys):
    workspace, db, shas = gated
    db_url = f"sqlite:///{db.engine.url.database}"
    assert cli(["--workspace", str(workspace.root), "gate", "--dataset", "demo", "--generator",
                "paint", "--size", "64", "--epochs", "1", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "reference, held-out real frames under the same model: IoU median" in out
    assert "paint / AD: accepted" in out and "filter with --min-gate-iou" in out
    gate_id = out.split("stored as gate ")[1].split()[0]
    with db.session() as session:
        scores = queries.gate_scores(session, shas, gate=gate_id)
    assert set(scores) == set(shas)  # every inpainted image of the generator, scored
    results = json.loads((workspace.runs_dir / gate_id / "results.json").read_text())
    assert results["reference"]["n"] == len([i for i in workspace.load_manifest("demo").items
                                             if i.split != "train"])
    assert all(v is None or 0.0 <= v <= 1.0 for v in results["scores"].values())
    # the acceptance printed and stored is the count of stored IoUs at or above 0.7, per class
    labels = {i.sha256: i.class_label for i in pool_page(db, PoolFilter(generator="paint"), 0, 200).items}
    expected: dict[str, list[int]] = {}
    for sha, iou in results["scores"].items():
        tally = expected.setdefault(f"paint / {labels[sha]}", [0, 0])
        tally[0] += iou is not None and iou >= 0.7
        tally[1] += 1
    assert {k: [r["accepted"], r["n"]] for k, r in results["rates"].items()} == expected
    # the pool filter reads the newest gate's score
    threshold = float(np.median([v for v in results["scores"].values() if v is not None]))
    kept = pool_page(db, PoolFilter(generator="paint", min_gate_iou=threshold), 0, 200).items
    assert {i.sha256 for i in kept} == {s for s, v in results["scores"].items()
                                        if v is not None and v >= threshold}
    assert all(i.gate[0] == gate_id for i in kept) and "gate IoU" in kept[0].caption()


def test_no_images_with_masks_is_a_clear_error(gated):
    workspace, db, _ = gated
    with pytest.raises(ValueError, match="no synthetic image with a mask to score from "
                                         "generator 'nobody'"):
        gate_now(db, workspace, GateConfig(dataset="demo", generator="nobody", train=FAST_GATE))


def test_retrain_gates_each_fold_with_a_model_of_its_own_training_part(gated, monkeypatch):
    """Cross-validation with the gate: each fold's gate learns only from the fold's training
    part (never a frame of its validation or test part), scores the fold's selection, and
    only images at or above the threshold train the augmented arm."""
    workspace, db, shas = gated
    monkeypatch.setattr(gate_module, "GATE_TRAIN", FAST_GATE)
    seen: list[tuple[list[int], int]] = []
    real_fold_gate = gate_module.fold_gate

    def spy(real, train_index, synthetic, *args, **kwargs):
        seen.append((list(train_index), len(synthetic)))
        return real_fold_gate(real, train_index, synthetic, *args, **kwargs)

    monkeypatch.setattr(gate_module, "fold_gate", spy)
    config = ExperimentConfig(dataset="demo", train=TINY, seeds=(0,), folds=2,
                              seen_groups_train=True, allow_small_test=True,
                              policy=SelectionPolicy(generators=("paint",), min_gate_iou=0.0))
    plan = plan_experiment(db, workspace, config)
    assert all(r.mask for sel in plan.selections for r in sel.images)  # the gate needs masks
    result = run_experiment(db, workspace, config, plan=plan)
    gates = result.results["gate"]
    assert len(gates) == len(plan.folds) == len(seen) == 2
    for fold, record, (train_index, scored) in zip(plan.folds, gates, seen):
        assert train_index == list(fold.train)
        held = {plan.real[i].sha256 for i in fold.valid + fold.test}
        assert not held & set(record["trained_on"])  # the gate never saw its test fold
        assert len(record["trained_on"]) == len(fold.train) and record["scored"] == scored
        kept = [s for s, v in record["iou"].items() if v is not None and v >= 0.0]
        assert record["kept"] == len(kept)
    images = json.loads((result.folder / "images.json").read_text())
    kept_anywhere = {s for record in gates for s, v in record["iou"].items()
                     if v is not None and v >= 0.0}
    assert {image["sha256"] for image in images["synthetic"]} == kept_anywhere
    assert kept_anywhere <= set(shas)
    report = (result.folder / "report.html").read_text()
    assert "<h3>Segmentation gate</h3>" in report and f"<td>{gates[0]['kept']}</td>" in report


def test_the_gated_arm_trains_the_same_selection_less_what_the_gate_dropped(gated, monkeypatch):
    """The gate paper's comparison in one segmentation run: ``augmented`` with every selected
    image, ``gated`` with those the fold's gate kept, and the paired gated − augmented Dice."""
    from polyp_core.experiment.figures import metric_table

    workspace, db, _ = gated

    def half(real, train_index, synthetic, *args, **kwargs):  # keeps the first and the third
        return np.array([0.9 if k in (0, 2) else 0.1 for k in range(len(synthetic))])

    monkeypatch.setattr(gate_module, "fold_gate", half)
    seg = replace(TINY, image_size=64, freeze_backbone=True, augment=False)
    config = ExperimentConfig(dataset="demo", task="segmentation", train=seg, seeds=(0,),
                              folds=0, allow_small_test=True, arms=("augmented", "gated"),
                              policy=SelectionPolicy(generators=("paint",)))
    result = run_experiment(db, workspace, config)
    arms = result.results["arms"]
    scored = result.results["gate"][0]["scored"]
    assert result.results["gate"][0]["threshold"] == 0.7  # the paper's, when none is given
    assert scored == 6 and result.results["gate"][0]["kept"] == 2
    n_real = arms["augmented"]["per_seed"][0]["n_train"] - scored
    assert arms["gated"]["per_seed"][0]["n_train"] == n_real + 2
    assert set(result.results["delta_gate_cluster"]) >= {"dice", "iou"}
    header, _ = metric_table(result.results)
    assert "gated − augmented: paired CI over groups+seeds, p" in header
