"""Training and sampling under ``accelerate launch`` with two CPU processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def launch(*args, workspace):
    command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               "0", "-m", "polyp_core", "--workspace", str(workspace), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


@pytest.fixture(scope="module")
def workspace(small_phantom, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("dist") / "ws")
    import_dataset(ws, ImportConfig(str(small_phantom), name="phantom"))
    return ws


def test_data_parallel_training_and_sharded_sampling(workspace):
    out = launch("train-ddpm", "--dataset", "phantom", "--model", "dp", "--preset", "tiny",
                 "--steps", "2", "--batch-size", "4", "--checkpoint-every", "2", workspace=workspace.root)
    assert out.count("done: dp at step 2") == 2  # both processes trained to the end
    meta = json.loads((workspace.models_dir / "dp" / "config.json").read_text())
    assert meta["processes"] == 2
    assert [p.name for p in (workspace.models_dir / "dp" / "checkpoints").iterdir()] == ["step-000002"]

    out = launch("sample", "--model", "dp", "--count", "AD=5", "--steps", "2", "--batch-size", "1",
                 workspace=workspace.root)
    shares = sorted(int(line.split()[0]) for line in out.splitlines() if "added to the pool" in line)
    assert shares == [2, 3]  # the images were split between the two processes
    sharded = sorted(p.name for p in workspace.synthetic_dir.iterdir())
    shutil.rmtree(workspace.synthetic_dir)
    (workspace.root / "studio.db").unlink()
    import torch

    from polyp_core import cli

    # one thread, as each launched process has (OMP_NUM_THREADS=1): the sum order of a
    # convolution depends on the thread count, and one flipped rounding changes a file's hash
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(["--workspace", str(workspace.root), "sample", "--model", "dp", "--count",
                         "AD=5", "--steps", "2", "--batch-size", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    single = sorted(p.name for p in workspace.synthetic_dir.iterdir())
    assert sharded == single and len(single) == 5  # each image depends on its own seed only
