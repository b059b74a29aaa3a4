"""The whole loop in one call, on the small phantom with tiny budgets (the loop, not good
models): a cancel mid-way keeps what finished, a re-run finishes without making anything
twice, and a third run makes nothing; every refusal comes before any work."""

from __future__ import annotations

import json
import shutil

import pytest

from polyp_core.progress import CancelToken, Cancelled
from polyp_core.recipe import RecipeConfig, check, run_recipe
from polyp_core.runs import load_run
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

TINY = dict(dataset="phantom", minutes=0.1, per_class=2, preset="tiny", size=64, epochs=1,
            fast=True, allow_small_test=True, steps=3, gate_iou=0.0, seeds=(0, 1))


@pytest.fixture
def phantom(tmp_path, small_phantom):
    from polyp_core.data.importer import ImportConfig, import_dataset

    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    return workspace, Database(f"sqlite:///{tmp_path / 'studio.db'}")


def _made(db, workspace):
    with db.session() as session:
        images = sorted(i.sha256 for i in queries.synthetic_images(session, None))
        runs = sorted(r.id for r in queries.list_runs(session, "retrain"))
    return images, runs, sorted(p.name for p in workspace.models_dir.iterdir())


def test_the_recipe_cancels_resumes_and_makes_nothing_twice(phantom):
    workspace, db = phantom
    config = RecipeConfig(**TINY)
    token, seen = CancelToken(), []

    def cancel_after_the_key_run(done, total, message):
        seen.append(message)
        if message.startswith("retraining: real vs real + gated") and "stored run" in message:
            token.cancel()

    with pytest.raises(Cancelled):
        run_recipe(db, workspace, config, cancel_after_the_key_run, token)
    folder = workspace.runs_dir / "recipe-phantom"
    state = json.loads((folder / "recipe.json").read_text())
    assert list(state) == ["inpainter", "inpainted", "copy_paste", "run:key"]
    assert {c: len(s) for c, s in state["inpainted"].items()} == {"AD": 2, "HP": 2, "SSA": 2}
    key = load_run(db, state["run:key"]["run"])  # the finished run is whole
    assert (key["folder"] / "report.html").is_file() and key["results"]["versus_real"]
    after_cancel = _made(db, workspace)
    assert len(after_cancel[0]) == 12 and after_cancel[1] == [state["run:key"]["run"]]

    second: list[str] = []
    outcome = run_recipe(db, workspace, config, lambda d, t, m: second.append(m))
    summary = outcome.summary
    assert sum("made before, kept" in m for m in second) == 4  # the steps that had finished
    assert summary["runs"]["key"]["run"] == state["run:key"]["run"]  # kept, not retrained
    images, runs, models = _made(db, workspace)
    assert images == after_cancel[0] and models == ["recipe-phantom-inpaint"]
    assert len(runs) == 4  # key, arms, copy-paste, classification
    arms = [(r["key"], r["arm"]) for r in summary["rows"]]
    for expected in [("key", "real"), ("key", "real + inpainted, gated (full fine-tuning)"),
                     ("arms", "real + inpainted"), ("arms", "real + inpainted, gated"),
                     ("arms", "inpainted only"), ("arms", "real, 25% of the real groups"),
                     ("arms", "real + inpainted, gated, 50% of the real groups"),
                     ("copy-paste", "real + copy-paste"),
                     ("classification", "real + inpainted (classification)"),
                     ("classification", "linear probe, real + inpainted (classification)")]:
        assert expected in arms, expected
    compared = [r for r in summary["rows"] if "delta" in r]
    assert all(r["delta"]["low"] <= r["delta"]["estimate"] <= r["delta"]["high"]
               for r in compared)
    assert {c: g["n"] for c, g in summary["gate"].items()} == {"AD": 2, "HP": 2, "SSA": 2}
    assert summary["answer"].startswith(("Beat real beyond noise: ", "No arm beat real"))
    # the key pair: full fine-tuning, two seeds; the many arms: decoders only (fast); the gate
    # cross-fitted over the training part's groups
    configs = {k: load_run(db, summary["runs"][k]["run"])["config"] for k in summary["runs"]}
    assert configs["key"]["train"]["freeze_backbone"] is False and configs["key"]["seeds"] == [0, 1]
    assert configs["arms"]["train"]["freeze_backbone"] is True
    assert configs["key"]["policy"]["gate_folds"] == 3
    gate = load_run(db, summary["runs"]["key"]["run"])["results"]["gate"][0]
    assert sum(p["scored"] for p in gate["cross_fitted"].values()) == gate["scored"] == 6
    page = (folder / "recipe.html").read_text()
    for run in runs:
        assert f"href='../{run}/report.html'" in page
    assert (folder / "summary.json").is_file()

    again = run_recipe(db, workspace, config)  # everything made: nothing new but the summary
    assert _made(db, workspace) == (images, runs, models)
    assert again.summary["rows"] == summary["rows"]


def test_every_refusal_comes_before_any_work(phantom, tmp_path, small_phantom):
    from polyp_core.data.importer import ImportConfig, import_dataset

    workspace, db = phantom
    with pytest.raises(ValueError, match=r"`per_class`: 1000 images of AD need as many training "
                                         r"frames of AD with a mask .* has \d+"):
        check(workspace, RecipeConfig(**TINY | {"per_class": 1000}))
    with pytest.raises(ValueError, match=r"`minutes`: 0.001 min is below one training step of "
                                         r"the inpainter on this machine \(3.0 s measured\)"):
        check(workspace, RecipeConfig(**TINY | {"minutes": 0.001}), step_seconds=3.0)
    # the step is measured for real: a budget of 6 ms is below any step of the tiny network
    with pytest.raises(ValueError, match="below one training step"):
        check(workspace, RecipeConfig(**TINY | {"minutes": 1e-4}))
    import_dataset(workspace, ImportConfig(str(small_phantom), name="no-test",
                                           split_fractions=(0.8, 0.2, 0.0)))
    with pytest.raises(ValueError, match=r"`dataset`: 'no-test' has no test part in its split"):
        run_recipe(db, workspace, RecipeConfig(**TINY | {"dataset": "no-test"}))
    bare = tmp_path / "bare"  # the same frames without masks: classification alone, said so
    shutil.copytree(small_phantom, bare, ignore=shutil.ignore_patterns("masks"))
    import_dataset(workspace, ImportConfig(str(bare), name="bare"))
    facts = check(workspace, RecipeConfig(**TINY | {"dataset": "bare"}))
    assert not facts.masks and "classification alone runs" in facts.notes[0]
    assert _made(db, workspace) == ([], [], [])
    assert not (workspace.runs_dir / "recipe-no-test").exists()
