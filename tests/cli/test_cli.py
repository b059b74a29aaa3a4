"""``python -m polyp_core``, run as a user would: a real subprocess, exit codes, messages."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_hospital, three_class_labels

ROOT = Path(__file__).resolve().parents[2]


def run(*args, workspace):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_demo_data_import_info_scheme(tmp_path):
    ws = tmp_path / "ws"
    out = run("demo-data", "--frames", "30", "--size", "48", workspace=ws)
    assert out.returncode == 0, out.stderr
    assert "painted and imported 30 phantom frames" in out.stdout
    again = run("demo-data", "--frames", "30", "--size", "48", workspace=ws)
    assert "already" in again.stdout

    src = make_hospital(tmp_path / "hosp", three_class_labels(6, 3, 3))
    out = run("import", str(src), "--name", "h", "--split", "stratified", workspace=ws)
    assert out.returncode == 0, out.stderr
    assert "imported 12 images (12 with masks) as 'h'" in out.stdout

    out = run("info", workspace=ws)
    assert "2 data set(s)" in out.stdout and "phantom" in out.stdout
    out = run("info", "h", "--json", workspace=ws)
    data = json.loads(out.stdout)
    assert data["counts"]["all"] == {"AD": 6, "SSA": 3, "HP": 3}

    out = run("sheet", "h", "--out", str(tmp_path / "s.png"), "--per-class", "2", "--size", "16",
              workspace=ws)
    assert out.returncode == 0, out.stderr
    from PIL import Image
    assert Image.open(tmp_path / "s.png").size == (32, 48)  # 2 per row, 3 class rows

    out = run("scheme", "h", "ad_vs_rest", workspace=ws)
    assert out.returncode == 0 and "REST" in out.stdout
    out = run("info", "h", "--json", workspace=ws)
    assert json.loads(out.stdout)["counts"]["all"] == {"AD": 6, "REST": 6}


def test_bad_input_exit_code_and_message(tmp_path):
    ws = tmp_path / "ws"
    src = make_hospital(tmp_path / "bad", {**three_class_labels(3, 2, 2), "x1": "ZZ"})
    out = run("import", str(src), workspace=ws)
    assert out.returncode == 2
    assert "labels.csv row 9" in out.stderr and "unknown label 'ZZ'" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("info", "nothing", workspace=ws)
    assert out.returncode == 2 and "no data set named 'nothing'" in out.stderr


def test_review_from_the_terminal(tmp_path):
    """An admin builds a study and a reviewer rates, all through the CLI (SQLite workspace)."""
    import csv

    ws = tmp_path / "ws"
    env_pw = {"STUDIO_PASSWORD": "long enough pw"}

    def go(*args):
        out = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(ws), *args],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(ROOT), **env_pw})
        assert out.returncode == 0, out.stderr
        return out.stdout

    go("demo-data", "--frames", "30", "--size", "48")
    go("reviewer", "add", "boss", "--role", "admin")
    go("reviewer", "add", "ana")
    assert "ana\treviewer" in go("reviewer", "list")
    created = go("study", "create", "pilot", "--as", "boss", "--real", "phantom:test:4",
                 "--real", "phantom:train:2", "--reviewers", "ana")
    assert "6 images" in created
    assert "serving chain: centre square crop" in created and "leak audit of pilot" in created
    audit = go("study", "audit", "pilot", "--as", "boss")
    assert "leak audit of pilot: PASSED" in audit and "only one kind of image" in audit
    lines = go("review", "queue", "pilot", "--as", "ana").splitlines()
    assert len(lines) == 6
    token = lines[0].split("\t")[1]
    go("review", "image", "pilot", token, "--as", "ana", "--out", str(tmp_path / "x.jpg"))
    assert (tmp_path / "x.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert "revision 1" in go("review", "rate", "pilot", token, "real", "good", "--as", "ana")
    refused = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(ws),
                              "study", "stats", "pilot", "--as", "boss"], capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env_pw})
    assert refused.returncode == 2 and "hidden until it is closed" in refused.stderr
    go("study", "close", "pilot", "--as", "boss")
    assert "1/6 rated" in go("study", "stats", "pilot", "--as", "boss")
    go("study", "export", "pilot", "--as", "boss", "--out", str(tmp_path / "exp"))
    with open(tmp_path / "exp" / "ratings.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and sum(r["verdict"] == "real" for r in rows) == 1
    wrong = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(ws), "review",
                            "queue", "pilot", "--as", "ana"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "STUDIO_PASSWORD": "nope"})
    assert wrong.returncode == 2 and "wrong password" in wrong.stderr
    # account changes from the terminal, and the audit log that records them
    assert "0 open session(s) ended" in go("reviewer", "deactivate", "ana")
    assert "ana\treviewer\tdeactivated" in go("reviewer", "list")
    gone = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(ws), "review",
                           "queue", "pilot", "--as", "ana"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env_pw})
    assert gone.returncode == 2 and "wrong password" in gone.stderr  # no hint it exists
    go("reviewer", "activate", "ana")
    go("reviewer", "role", "ana", "--role", "admin")
    log = go("audit", "--limit", "50")
    for kind in ("account_created", "sign_in", "sign_in_failed", "study_created", "study_closed",
                 "account_deactivated", "account_activated", "role_changed"):
        assert f"\t{kind}\t" in log, kind
    assert "\taccount_deactivated\tcli:" in log and "\tana\t" in log


def test_long_commands_print_progress_with_an_eta_at_least_every_interval():
    """The terminal progress line: at the first report, then at most every interval while the
    work reports, and from a heartbeat while it is silent; with done/total and an ETA."""
    import io
    import time

    from polyp_core.cli.common import TerminalProgress

    out = io.StringIO()
    with TerminalProgress(every=0.4, stream=out) as progress:
        progress(1, 4, "step")
        progress(2, 4, "step")  # within the interval: not printed
        deadline = time.monotonic() + 60
        while "[2/4 50%]" not in out.getvalue():  # silent work: the heartbeat repeats it
            assert time.monotonic() < deadline, "no heartbeat in 60 s"
            time.sleep(0.05)
        progress(4, 4, "done")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  [1/4 25%] step (0:00 elapsed, ETA 0:00)")
    assert any(line.startswith("  [2/4 50%] step") for line in lines[1:-1])  # the heartbeat
    assert lines[-1].startswith("  [4/4 100%] done") and "ETA" not in lines[-1]
    assert len(lines) <= 5
