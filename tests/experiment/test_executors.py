"""Where the trainings run: ``--executor ray`` (a local Ray of 2 CPU workers, started by the
CLI as a user would) stores the same run as ``--executor local``, bit for bit; a worker killed
from outside (SIGKILL, as the OOM killer or a lost node would) is retried once; a second kill of
the same training fails the run with nothing stored; without Ray the option says how to install
it, and nothing of the default install imports Ray."""

from __future__ import annotations

import json
import re
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
#: (the demo generator's images only: a test below adds copy-paste images to the same pool)
DESIGN = ["--folds", "3", "--seeds", "0,1", "--size", "32", "--epochs", "2", "--batch-size",
          "8", "--allow-small-test", "--generators", "demo-ddpm", "--cpus-per-training", "1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with bounded(300, "the demo set with 12 images of the demo generator (executors)"):
        workspace, db = demo_pool(tmp_path_factory.mktemp("executors"), n_frames=48, steps=2)
    return workspace, db


def _retrain(workspace, db, *options: str, env: dict | None = None) -> subprocess.Popen:
    """The CLI in its own process, as a user runs it (Ray lives and dies with it; the Ray it
    starts has Ray's default token authentication)."""
    return subprocess.Popen(
        [sys.executable, "-m", "polyp_core", "--workspace", str(workspace.root), "retrain",
         "--dataset", "phantom", "--db", db.url, *options], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ | (env or {}))


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


@pytest.fixture(scope="module")
def ray_here():
    """One Ray of 2 CPUs in this process, started as the studio starts it, for the tests that
    call the executor directly (shut down after the module)."""
    import ray

    from polyp_core.executors import RayExecutor

    with bounded(120, "starting a Ray in the test process"):
        RayExecutor(num_cpus=2).connect()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(demo):
    """The issue's design on the local executor: its output and stored results."""
    workspace, db = demo
    with bounded(400, "the local retrain the Ray runs must equal"):
        local = _retrain(workspace, db, *DESIGN, "--executor", "local")
        out = local.communicate(timeout=400)[0]
    assert local.returncode == 0, out
    return out, _results(workspace, out)


@pytest.fixture
def ray_cluster():
    """A Ray cluster started as on a head machine (``ray start --head``), 2 CPUs, on loopback
    without a token (a test's cluster: nothing to share a token with); its address. Stopped
    (its whole process group) after the test."""
    import shutil
    import socket
    import tempfile

    # Ray's socket paths must stay under the 107 characters of a Unix socket: a short folder
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
         "--num-gpus", "0", "--include-dashboard", "false", "--node-ip-address", "127.0.0.1",
         "--temp-dir", temp], cwd=ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
        env=os.environ | {"RAY_AUTH_MODE": "disabled"})
    try:
        with bounded(120, "starting a Ray head"):
            for line in head.stdout:
                if "Ray runtime started" in line:
                    break
            else:
                pytest.fail("ray start --head ended without starting")
        threading.Thread(target=head.stdout.read, daemon=True).start()  # its log, drained
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _stored_runs(workspace, db) -> tuple[list, list]:
    from review_db import queries

    with db.session() as session:
        rows = [run.id for run in queries.list_runs(session, "retrain")]
    return rows, sorted(p.name for p in workspace.runs_dir.glob("retrain-*"))


def _results(workspace, out: str) -> dict:
    run_id = next(line for line in out.splitlines() if line.startswith("run ")).split()[1]
    return json.loads((workspace.runs_dir / run_id / "results.json").read_text())


def test_ray_with_a_killed_worker_stores_the_local_run_bit_for_bit(demo, local_run):
    workspace, db = demo
    out_local, a = local_run
    assert "trainings: local: one training at a time in this process (1 CPU thread(s))" in \
        out_local
    with bounded(600, "a retrain on Ray with a worker killed"):
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
    b = _results(workspace, out_ray)
    # the whole stored result: every prediction, every epoch's loss, every interval
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    from polyp_core.experiment.figures import metric_table

    assert metric_table(a) == metric_table(b)
    assert {arm: len(d["per_seed"]) for arm, d in b["arms"].items()} == {"baseline": 2,
                                                                          "augmented": 2}
    assert len(b["arms"]["augmented"]["per_seed"][0]["folds"]) == 3


def test_a_ray_cluster_started_apart_runs_the_same_trainings(demo, ray_cluster):
    """The cluster path: ``ray start --head`` as on a head machine, the studio pointed at it
    with ``--ray-address``; here with the frozen backbone and the linear probe, whose features
    are embedded once in the calling process and read by every worker: the run equals the
    local one bit for bit."""
    workspace, db = demo
    design = [*DESIGN, "--freeze-backbone", "--linear-probe"]
    with bounded(600, "a frozen-backbone retrain here and on a Ray cluster"):
        local = _retrain(workspace, db, *design, "--executor", "local")
        out_local = local.communicate(timeout=400)[0]
        ray = _retrain(workspace, db, *design, "--executor", "ray", "--ray-address",
                       ray_cluster, env={"RAY_AUTH_MODE": "disabled"})
        out = ray.communicate(timeout=400)[0]
    assert local.returncode == 0, out_local
    assert ray.returncode == 0, out
    assert f"trainings: ray: {ray_cluster}, 1 CPU thread(s)" in out
    a, b = _results(workspace, out_local), _results(workspace, out)
    assert "linear probe + synthetic" in b["arms"]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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


def test_ctrl_c_cancels_every_training_on_ray_and_stores_nothing(demo):
    """The job's cancel (Ctrl-C in the terminal) ends a Ray run: the CLI says cancelled, exits
    130 and no run is stored; no training outlives it (here the CLI's Ray ends with its
    process; the job runner's test checks the cancel reaches a Ray that lives on)."""
    workspace, db = demo
    before = _stored_runs(workspace, db)
    with bounded(300, "a Ray run cancelled"):
        ray = _retrain(workspace, db, *DESIGN[:-2], "--epochs", "60", "--executor", "ray",
                       "--ray-cpus", "2")
        while not _training_pids() and ray.poll() is None:
            time.sleep(0.05)
        running = _training_pids()
        time.sleep(0.5)
        ray.send_signal(signal.SIGINT)
        out = ray.communicate(timeout=120)[0]
    assert running, out[-2000:]
    assert ray.returncode == 130, out
    assert "cancelled" in out
    assert _stored_runs(workspace, db) == before
    assert not _training_pids()  # nothing trains on after the run


def test_the_timing_summary_reads_how_many_ran_at_once():
    from polyp_core.executors import timing_summary

    # 15 s of trainings in 10 s of wall time: 1.5 at a time
    assert timing_summary([(10.0, [4.0, 6.0, 5.0])]) == \
        "3 trainings in 10 s (each 4.0-6.0 s, together 15 s: 1.5 at a time)"
    assert timing_summary([(2.0, [1.0]), (2.0, [3.0])]) == \
        "2 trainings in 4 s (each 1.0-3.0 s, together 4 s: 1.0 at a time)"
    assert timing_summary([]) == "no trainings ran"


@pytest.mark.parametrize("command", [["retrain", "--dataset", "phantom", *DESIGN],
                                     ["recipe", "phantom", "--seeds", "0,1"]])
def test_ray_missing_says_how_to_install_it_and_stores_nothing(demo, monkeypatch, capsys,
                                                                command):
    import polyp_core.executors as executors
    from polyp_core.cli import main

    workspace, db = demo
    before = _stored_runs(workspace, db), sorted(p.name for p in workspace.runs_dir.iterdir())
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    code = main(["--workspace", str(workspace.root), *command, "--db", db.url,
                 "--executor", "ray"])
    assert code == 2
    assert "the Ray executor needs Ray, an optional extra: pip install -r " \
           "requirements-cluster.txt (or pip install 'ray==2.60.0')" in capsys.readouterr().err
    assert (_stored_runs(workspace, db),
            sorted(p.name for p in workspace.runs_dir.iterdir())) == before


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


def test_the_studio_server_reads_its_executor_from_the_environment(monkeypatch):
    import polyp_core.executors as executors
    from polyp_core.executors import LocalExecutor, RayExecutor, executor_from_env

    assert executor_from_env({}) == LocalExecutor()
    # RAY_ADDRESS alone (set for other tools) does not move the studio's trainings
    assert executor_from_env({"RAY_ADDRESS": "10.0.0.1:6379"}) == LocalExecutor()
    assert executor_from_env({"STUDIO_CPUS_PER_TRAINING": "3"}) == LocalExecutor(3)
    monkeypatch.setattr(executors, "ray_installed", lambda: True)
    assert executor_from_env({"STUDIO_EXECUTOR": "ray", "RAY_ADDRESS": "10.0.0.1:6379",
                              "STUDIO_GPUS_PER_TRAINING": "0.5",
                              "STUDIO_TRAINING_RETRIES": "2"}) == \
        RayExecutor("10.0.0.1:6379", 1, 0.5, 2)
    for environ, message in (
            ({"STUDIO_CPUS_PER_TRAINING": "two"}, "STUDIO_CPUS_PER_TRAINING='two' is not a number"),
            ({"STUDIO_EXECUTOR": "spark"}, "STUDIO_EXECUTOR: 'spark' is not one of local, ray"),
            ({"STUDIO_GPUS_PER_TRAINING": "1"},
             "RAY_ADDRESS, `ray_cpus` and STUDIO_GPUS_PER_TRAINING are for STUDIO_EXECUTOR ray"),
            ({"STUDIO_EXECUTOR": "ray", "STUDIO_CPUS_PER_TRAINING": "0"},
             "STUDIO_CPUS_PER_TRAINING: at least 1")):
        with pytest.raises(ValueError, match=re.escape(message)):
            executor_from_env(environ)
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    with pytest.raises(executors.RayMissing, match="pip install -r requirements-cluster.txt"):
        executor_from_env({"STUDIO_EXECUTOR": "ray"})


def test_the_studio_job_runner_drives_ray_with_its_progress_and_cancel(demo, ray_here):
    """The server's path: a retrain job in the job runner's thread on a RayExecutor. Its
    progress says each finished training; the job's cancel stops the trainings, the job is
    cancelled and no run is stored."""
    from polyp_core.executors import RayExecutor
    from polyp_core.experiment import ExperimentConfig, SelectionPolicy, run_experiment
    from polyp_core.jobs import JobRunner
    from polyp_core.training import TrainConfig

    workspace, db = demo
    before = _stored_runs(workspace, db)
    config = ExperimentConfig(dataset="phantom", seeds=(0, 1), folds=3, allow_small_test=True,
                              train=TrainConfig(image_size=32, epochs=40, batch_size=8),
                              policy=SelectionPolicy(generators=("demo-ddpm",)))
    runner, messages = JobRunner(db), []
    executor = RayExecutor(cpus_per_training=1, num_cpus=2)

    def work(progress, cancel):
        def recording(done, total, message):
            messages.append(message)
            progress(done, total, message)
        return run_experiment(db, workspace, config, recording, cancel,
                              executor=executor).run_id

    with bounded(300, "a Ray job cancelled in the job runner"):
        job = runner.submit("retrain", config.to_json(), work)
        while not any("done on Ray" in m for m in messages):
            assert runner.status(job).status in ("queued", "running"), runner.status(job).error
            time.sleep(0.1)
        assert runner.cancel(job)
        status = runner.wait(job, timeout=120)
        # this Ray lives on after the job: its trainings must have been stopped, not left
        deadline = time.time() + 10
        while _training_pids() and time.time() < deadline:
            time.sleep(0.2)
        still_training = _training_pids()
    assert status.status == "cancelled", status.error
    assert not still_training  # 40 epochs each: left alone, they would train for minutes
    assert "12 trainings sent to Ray" in messages
    assert any(re.fullmatch(r"fold \d · (baseline|augmented) seed [01] \(\d+/12\) done on Ray "
                            r"\(1/12 trainings, \d+ s\)", m) for m in messages), messages
    assert _stored_runs(workspace, db) == before


def fails_on_odd(shared, unit, progress, cancel, device):
    """A training that raises its own error on odd units, noting each attempt in the file
    ``shared[1]``."""
    factor, attempts = shared
    if unit % 2:
        with open(attempts, "a") as f:
            f.write(f"{unit}\n")
        raise ValueError(f"unit {unit} has no training images")
    return factor * unit


def test_a_training_that_raises_fails_the_run_at_once_without_a_retry(tmp_path, ray_here):
    """A training's own error would raise again: not retried, the run fails naming it; results
    come back in the units' order."""
    from polyp_core.executors import LocalExecutor, RayExecutor, TrainingFailed

    executor = RayExecutor(cpus_per_training=1, num_cpus=2, retries=3)
    labels = [f"unit {u} · " for u in range(4)]
    # the workers cannot import this test module by name: send the function itself
    ray_here.cloudpickle.register_pickle_by_value(sys.modules[fails_on_odd.__module__])
    shared = (10, str(tmp_path / "attempts"))
    with bounded(120, "Ray on a function that raises"):
        assert executor.map(fails_on_odd, shared, [0, 2, 4, 6], labels, lambda *a: None,
                            None) == [0, 20, 40, 60]
        with pytest.raises(TrainingFailed, match=re.escape(
                "training unit 1 failed on Ray: ValueError: unit 1 has no training images")):
            executor.map(fails_on_odd, shared, [0, 1, 2, 4], labels, lambda *a: None, None)
    # a training bigger than the whole cluster: refused at once, not queued for ever
    with pytest.raises(ValueError, match=re.escape(
            "each training asks for 1 GPU but the Ray cluster has 0")):
        RayExecutor(gpus_per_training=1).map(fails_on_odd, shared, [0], labels,
                                             lambda *a: None, None)
    assert (tmp_path / "attempts").read_text() == "1\n"  # once: retries are for lost workers
    # the same function here raises its own error, as it always did
    with pytest.raises(ValueError, match="unit 1 has no training images"):
        LocalExecutor().map(fails_on_odd, shared, [0, 1], labels, lambda *a: None, None)


def test_the_segmentation_gates_fan_out_too_and_keep_the_same_images(demo, monkeypatch,
                                                                      ray_here):
    """Every gate of a cross-fitted, cross-validated gate is a training on the executor: on a
    Ray of 2 CPUs they score every image exactly as one after another here."""
    from polyp_core.cli import main
    from polyp_core.data.cache import PixelCache
    from polyp_core.executors import LocalExecutor, RayExecutor
    from polyp_core.experiment import ExperimentConfig, SelectionPolicy, plan_experiment
    from polyp_core.experiment.gating import gate_selections
    from polyp_core.experiment.leakage import made_of
    from polyp_core.segment import gate as quality_gate
    from polyp_core.training import TrainConfig

    workspace, db = demo
    for cls in ("AD", "SSA", "HP"):  # polyps pasted into training frames: images with masks
        assert main(["--workspace", str(workspace.root), "copy-paste", "phantom", "--class",
                     cls, "--n", "3", "--seed", "7", "--db", db.url]) == 0
    monkeypatch.setattr(quality_gate, "GATE_TRAIN", TrainConfig(
        image_size=32, epochs=1, batch_size=8, lr=1e-3, freeze_backbone=True, augment=False))
    config = ExperimentConfig(
        dataset="phantom", task="segmentation", seeds=(0,), folds=2, allow_small_test=True,
        seen_groups_train=True, arms=("augmented", "gated"),
        train=TrainConfig(image_size=32, epochs=1),
        policy=SelectionPolicy(generators=("copy-paste",), gate_folds=3, min_gate_iou=0.0))
    plan = plan_experiment(db, workspace, config)
    frames = made_of(db, plan.synthetic_refs)
    pixels = PixelCache(workspace.pixel_cache_dir)
    here = LocalExecutor(1)
    local = gate_selections(config, plan, pixels, frames_of=frames, executor=here)
    remote_executor = RayExecutor(cpus_per_training=1, num_cpus=2)
    with bounded(300, "the gates on Ray"):
        remote = gate_selections(config, plan, pixels, frames_of=frames,
                                 executor=remote_executor)
    trainings = len(here.timings[0][1])
    assert trainings >= 2 * 3  # two folds, at least three gates each (the cross-fit's parts)
    assert len(remote_executor.timings[0][1]) == trainings
    assert all("cross_fitted" in fold for fold in local.gate)
    assert json.dumps(local.gate, sort_keys=True) == json.dumps(remote.gate, sort_keys=True)
    assert [len(s.images) for s in local.gated] == [len(s.images) for s in remote.gated]


def test_the_ray_the_studio_starts_refuses_a_caller_without_its_token(tmp_path, ray_here):
    """A Ray started here listens on every interface (docs/SECURITY.md): Ray's token
    authentication must refuse a caller without the token and admit one with it."""
    address = ray_here._private.worker._global_node.gcs_address
    code = f"import ray; ray.init(address={address!r}); print('CONNECTED')"
    stranger = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=os.environ | {"HOME": str(tmp_path)})
    owner = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120)
    assert stranger.returncode != 0 and "CONNECTED" not in stranger.stdout
    assert "AuthenticationError" in stranger.stderr
    assert owner.returncode == 0 and "CONNECTED" in owner.stdout, owner.stderr[-2000:]
