"""The two executors on this machine, in one run: the issue's design (the demo set,
``retrain --folds 3 --seeds 0,1``, baseline and augmented: 12 trainings) through the CLI as a
user runs it, with ``--executor local`` (one training after another, all of the process's
threads; and at 1 thread, the reference Ray must equal) and ``--executor ray`` (a Ray started
here, one CPU and one thread per training). Prints each one's wall time, the trainings' own
times, how many ran at once, and the ratio to the local run; checks that Ray's stored results
equal the local run at the same threads bit for bit.

What k workers (k GPUs: ``--gpus-per-training 1``) would take follows from the per-training
times: about ceil(n / k) x the longest training's time plus Ray's start (a few seconds) and
the caller's own work (loading the images, the bootstrap); the printed "expected on k" rows
read it off this run.

    python bench/bench_executors.py [--frames 300] [--size 64] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import demo_pool  # the demo set with 12 images of the demo generator


def retrain(workspace, db, args, *options: str) -> tuple[float, str, dict]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "polyp_core", "--workspace", str(workspace.root), "retrain",
         "--dataset", "phantom", "--db", db.url, "--folds", "3", "--seeds", "0,1", "--size",
         str(args.size), "--epochs", str(args.epochs), "--allow-small-test", *options],
        cwd=ROOT, text=True, capture_output=True, env=os.environ | {"RAY_AUTH_MODE": "disabled"})
    wall = time.perf_counter() - began
    if done.returncode:
        sys.exit(done.stdout[-3000:] + done.stderr[-3000:])
    run_id = next(line for line in done.stdout.splitlines() if line.startswith("run ")).split()[1]
    results = json.loads((workspace.runs_dir / run_id / "results.json").read_text())
    summary = next(line for line in done.stdout.splitlines()
                   if line.startswith("trainings: ") and " trainings in " in line)
    return wall, summary, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace, db = demo_pool(Path(tmp), n_frames=args.frames, steps=2)
        rows = {}
        for name, options in (("local (all threads)", ("--executor", "local")),
                              ("local (1 thread)", ("--executor", "local",
                                                    "--cpus-per-training", "1")),
                              ("ray (1 thread each)", ("--executor", "ray",
                                                       "--cpus-per-training", "1"))):
            rows[name] = retrain(workspace, db, args, *options)
            print(f"{name:<22} wall {rows[name][0]:6.1f} s   {rows[name][1]}", flush=True)
    reference = rows["local (all threads)"][0]
    for name, (wall, _, _) in rows.items():
        print(f"{name:<22} ratio to local (all threads): {wall / reference:.2f}")
    same = json.dumps(rows["ray (1 thread each)"][2], sort_keys=True) == \
        json.dumps(rows["local (1 thread)"][2], sort_keys=True)
    print(f"ray stored the local (1 thread) run bit for bit: {same}")
    each = [float(x) for x in re.findall(r"each ([\d.]+)-([\d.]+) s", rows["local (1 thread)"][1])[0]]
    n = 12
    for k in (1, 2, 4, 8):
        print(f"expected on {k} worker(s), trainings alone: ~{math.ceil(n / k) * each[1]:.0f} s "
              f"(ceil({n}/{k}) x the longest training, {each[1]:.1f} s at 1 thread)")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
