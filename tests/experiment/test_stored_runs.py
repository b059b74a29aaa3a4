"""Runs stored before the experiment package (made by commit a906872, where the experiment
lived in ``classify/experiment.py``; ``tests/fixtures/runs_before_the_move``: two classification
runs and a segmentation run on the phantom demo, without their checkpoints) still load, read
back as requests, compare and render."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

STORED = Path(__file__).resolve().parents[1] / "fixtures" / "runs_before_the_move"


@pytest.fixture
def stored(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    db = Database(f"sqlite:///{tmp_path / 'studio.db'}")
    for run in ("classification-a", "classification-b", "segmentation"):
        folder = workspace.runs_dir / run
        shutil.copytree(STORED / run, folder)
        config = json.loads((folder / "config.json").read_text())
        with db.session() as session:
            queries.add_run(session, run_id=run, kind="retrain", status="done", config=config,
                            results_path=str(folder))
    return workspace, db


def test_a_run_from_before_the_move_loads_reads_back_and_compares(stored):
    from polyp_core.experiment import ExperimentConfig, compare_runs
    from polyp_core.runs import load_run

    _, db = stored
    a = load_run(db, "classification-a")
    assert a["config"]["name"] == "before-a" and a["config"]["studio_version"] == "0.1.0"
    config = ExperimentConfig.from_json(a["config"])
    assert (config.seeds, config.folds, config.task, config.train.epochs) == \
        ((0, 1), 0, "classification", 1)
    diff = compare_runs(db, "classification-a", "classification-b")
    assert diff["config"]["seeds"] == [[0, 1], [0, 2]]
    # stored macro-F1 means: a baseline 0.212121..., augmented 0.140226...; b both 0.180871...
    assert diff["metrics"]["baseline"]["macro_f1"] == pytest.approx(0.1808712121 - 0.2121212121)
    assert diff["metrics"]["augmented"]["macro_f1"] == pytest.approx(0.1808712121 - 0.1402257873)
    assert set(diff["metrics"]["baseline"]["per_class"]) == {"AD", "SSA", "HP"}
    seg = load_run(db, "segmentation")
    assert ExperimentConfig.from_json(seg["config"]).task == "segmentation"
    assert compare_runs(db, "segmentation", "segmentation")["metrics"]["baseline"] == {
        "dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError, match="answer different tasks"):
        compare_runs(db, "classification-a", "segmentation")


def test_a_run_from_before_the_move_renders_its_table_figures_and_report(stored, tmp_path):
    from polyp_core.experiment.figures import confusion_figure, delta_bars, metric_table
    from polyp_core.experiment.report import write_report
    from polyp_core.runs import load_run

    _, db = stored
    for run, first_row, task_part, answer in (
            ("classification-a", "macro-F1", "Confusion matrices (rows: truth",
             "Adding 18 demo-ddpm images changed macro-F1 by −0.072 [−0.286, 0.000] (p 0.53): "
             "this run is too small to detect anything (the smallest change its test part could "
             "show is 0.84); no class fell."),
            ("segmentation", "Dice", "Test images without a polyp",
             "Only the baseline arm ran: Dice 0.065 [0.046, 0.088] over 11 test groups; nothing "
             "was compared, so this run says nothing about synthetic images.")):
        stored_run = load_run(db, run)
        header, rows = metric_table(stored_run["results"])
        assert header[0] == "metric" and rows[0][0] == first_row
        delta_bars(stored_run["results"])
        confusion_figure(stored_run["results"])
        folder = tmp_path / run
        folder.mkdir()
        html = write_report(folder, run, stored_run["config"], stored_run["results"]).read_text()
        assert task_part in html and "<summary>Methods</summary>" in html
        # runs stored before the verdict get one from their stored figures, first
        assert html.index(f"<p class='verdict' id='verdict'>{answer}</p>") < html.index("<h2>")
