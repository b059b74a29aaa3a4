"""Where the trainings run: ``--executor ray`` (a local Ray of 2 CPU workers, started by the
CLI as a user would) stores the same run as ``--executor local``, bit for bit; a worker killed
from outside (SIGKILL, as the OOM killer or a lost node would) is retried once; a second kill of
the same training fails the run with nothing stored; without Ray the option says how to install
it, and nothing of the default install imports Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import bounded, demo_pool

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("ray") is None and
    not os.environ.get("STUDIO_REQUIRE_SERVICES"),
    reason="Ray is not installed (make test installs requirements-cluster.txt)")
#: the issue's design on the demo set: 3 grouped folds x seeds 0, 1 x baseline and augmented
DESIGN = ["--folds", "3", "--seeds", "0,1", "--size", "32", "--epochs", "2", "--batch-size",
          "8", "--allow-small-test", "--cpus-per-training", "1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with bounded(300, "the demo set with 12 images of the demo generator (executors)"):
        workspace, db = demo_pool(tmp_path_factory.mktemp("executors"), n_frames=48, steps=2)
    return workspace, db


def _retrain(workspace, db, *options: str) -> subprocess.Popen:
    """The CLI in its own process, as a user runs it (Ray lives and dies with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "polyp_core", "--workspace", str(workspace.root), "retrain",
         "--dataset", "phantom", "--db", db.url, *options], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=os.environ | {"RAY_AUTH_MODE": "disabled"})


def _training_pids() -> set[int]:
    """Ray workers running a training now (Ray titles them ``ray::polyp_training``)."""
    import psutil

    from polyp_core.executors import TRAINING

    found = set()
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        title = " ".join(process.info["cmdline"] or []) + (process.info["name"] or "")
        if f"ray::{TRAINING}" in title:
            found.add(process.info["pid"])
    return found


def _kill_trainings(process: subprocess.Popen, times: int, killed: list[int]) -> None:
    """SIGKILL a worker that runs a training, ``times`` times, each a new worker process (the
    retry of the training before it, when only one training runs)."""
    while len(killed) < times and process.poll() is None:
        fresh = _training_pids() - set(killed)
        if fresh:
            pid = min(fresh)
            time.sleep(0.3)  # inside the training, not its first line
            if pid in _training_pids():  # still training (not idle between two), kill it
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)


def _stored_runs(workspace, db) -> tuple[list, list]:
    from review_db import queries

    with db.session() as session:
        rows = [run.id for run in queries.list_runs(session, "retrain")]
    return rows, sorted(p.name for p in workspace.runs_dir.glob("retrain-*"))


def _results(workspace, out: str) -> dict:
    run_id = next(line for line in out.splitlines() if line.startswith("run ")).split()[1]
    return json.loads((workspace.runs_dir / run_id / "results.json").read_text())


def test_ray_with_a_killed_worker_stores_the_local_run_bit_for_bit(demo):
    workspace, db = demo
    with bounded(900, "a retrain on each executor"):
        local = _retrain(workspace, db, *DESIGN, "--executor", "local")
        out_local = local.communicate(timeout=400)[0]
        assert local.returncode == 0, out_local
        assert "trainings: local: one training at a time in this process (1 CPU threads)" in \
            out_local
        ray = _retrain(workspace, db, *DESIGN, "--executor", "ray", "--ray-cpus", "2")
        killed: list[int] = []
        killer = threading.Thread(target=_kill_trainings, args=(ray, 1, killed))
        killer.start()
        out_ray = ray.communicate(timeout=400)[0]
        killer.join()
    assert ray.returncode == 0, out_ray
    assert len(killed) == 1, f"no training was running to kill: {out_ray[-2000:]}"
    assert "trainings: ray: a Ray started on this machine, 1 CPU thread(s) and 0 GPU per " \
           "training, 1 retry per lost worker" in out_ray
    assert "12 trainings sent to Ray" in out_ray or "(12/12 trainings" in out_ray
    a, b = _results(workspace, out_local), _results(workspace, out_ray)
    # the whole stored result: every prediction, every epoch's loss, every interval
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    from polyp_core.experiment.figures import metric_table

    assert metric_table(a) == metric_table(b)
    assert {arm: len(d["per_seed"]) for arm, d in b["arms"].items()} == {"baseline": 2,
                                                                          "augmented": 2}
    assert len(b["arms"]["augmented"]["per_seed"][0]["folds"]) == 3


def test_a_training_killed_twice_fails_the_run_and_stores_nothing(demo):
    workspace, db = demo
    before = _stored_runs(workspace, db)
    with bounded(400, "a one-training run killed twice"):
        # one training only (the fixed split, one seed, the baseline), so both kills hit it
        ray = _retrain(workspace, db, "--folds", "0", "--seeds", "0", "--baseline-only",
                       "--size", "32", "--epochs", "60", "--batch-size", "8",
                       "--allow-small-test", "--executor", "ray", "--ray-cpus", "2",
                       "--retries", "1")
        killed: list[int] = []
        killer = threading.Thread(target=_kill_trainings, args=(ray, 2, killed))
        killer.start()
        out = ray.communicate(timeout=300)[0]
        killer.join()
    assert len(killed) == 2, out[-2000:]
    assert ray.returncode == 1, out
    assert "failed: TrainingFailed: training baseline seed 0 (1/1) failed on Ray: its worker " \
           "was lost (WorkerCrashedError" in out
    assert "lost again after 1 retry; nothing of the run was stored" in out
    assert _stored_runs(workspace, db) == before  # no row, no folder


def test_ray_missing_says_how_to_install_it_and_stores_nothing(demo, monkeypatch, capsys):
    import polyp_core.executors as executors
    from polyp_core.cli import main

    workspace, db = demo
    before = _stored_runs(workspace, db)
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    code = main(["--workspace", str(workspace.root), "retrain", "--dataset", "phantom",
                 "--db", db.url, *DESIGN, "--executor", "ray"])
    assert code == 2
    assert "the Ray executor needs Ray, an optional extra: pip install -r " \
           "requirements-cluster.txt (or pip install 'ray==2.60.0')" in capsys.readouterr().err
    assert _stored_runs(workspace, db) == before


@pytest.mark.parametrize("options, message", [
    (["--executor", "local", "--gpus-per-training", "1"], "are for --executor ray"),
    (["--executor", "ray", "--cpus-per-training", "0"], "--cpus-per-training: at least 1"),
    (["--executor", "ray", "--ray-address", "auto", "--ray-cpus", "2"],
     "--ray-cpus is for a Ray started here"),
])
def test_executor_options_are_checked_before_any_work(demo, capsys, options, message):
    from polyp_core.cli import main

    workspace, db = demo
    before = _stored_runs(workspace, db)
    code = main(["--workspace", str(workspace.root), "retrain", "--dataset", "phantom",
                 "--db", db.url, "--allow-small-test", *options])
    assert code == 2 and message in capsys.readouterr().err
    assert _stored_runs(workspace, db) == before


def test_a_training_asking_more_than_the_cluster_has_is_refused(demo):
    """Ray would queue a training that no machine can hold for ever: refused at once."""
    workspace, db = demo
    ray = _retrain(workspace, db, *DESIGN, "--executor", "ray", "--ray-cpus", "1",
                   "--gpus-per-training", "1")
    out = ray.communicate(timeout=200)[0]
    assert ray.returncode == 1
    assert "each training asks for 1 GPU but the Ray cluster has 0" in out


def test_the_default_install_and_the_demo_never_import_ray(tmp_path):
    """The studio's modules, its app and a local retrain load no Ray module (Ray is in the
    test environment, so an import anywhere would show)."""
    script = f"""
import sys
from pathlib import Path
import app  # the studio `make demo` serves, built on the demo workspace
from polyp_core.cli import main
from tests.conftest import demo_pool
workspace, db = demo_pool(Path({str(tmp_path)!r}), n_frames=36, steps=1)
app.build_app(workspace, db)
code = main(["--workspace", str(workspace.root), "retrain", "--dataset", "phantom", "--db",
             db.url, "--folds", "0", "--seeds", "0", "--size", "32", "--epochs", "1",
             "--allow-small-test"])
assert code == 0, code
print("RAY MODULES:", sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RAY MODULES: []" in done.stdout
    assert "ray" not in (ROOT / "requirements.txt").read_text().lower()
