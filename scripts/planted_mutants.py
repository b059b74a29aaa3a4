"""The four bugs issue 38 planted by hand, each run against the one test written for it.

For each mutant: copy the tree to a scratch folder, apply the one-line change, run the named
test alone, and expect it to fail; the same test on the unchanged copy must pass. Prints one
line per mutant and exits non-zero when a mutant survives or a test fails on clean code.
Part of ``make mutation`` (tests/MUTATION.md); not of ``make test``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (file, the line as it is, the line as the bug makes it, the test that must fail)
MUTANTS = {
    "segmentation threshold at logit 0.5": (
        "polyp_core/segment/train.py",
        "out.append((model(x)[:, 0] > 0).cpu().numpy())",
        "out.append((model(x)[:, 0] > 0.5).cpu().numpy())",
        "tests/experiment/test_scores.py::test_a_prediction_is_a_logit_above_zero_and_the_gate_iou_follows_it"),
    "gate acceptance inverted (iou < threshold)": (
        "polyp_core/segment/gate.py",
        "tally[0] += int(passes(float(iou), threshold))",
        "tally[0] += int(not np.isnan(iou) and float(iou) < threshold)",
        "tests/experiment/test_scores.py::test_acceptance_at_0_7_counts_ties_in_and_empty_masks_out"),
    "gated arm's comparison inverted": (
        "polyp_core/segment/gate.py",
        "return [item for item, iou in zip(items, ious) if passes(float(iou), threshold)]",
        "return [item for item, iou in zip(items, ious) if float(iou) < threshold]",
        "tests/experiment/test_scores.py::test_the_gated_selection_keeps_exactly_the_images_at_or_above_the_threshold"),
    "import-synthetic's real-frame check switched off": (
        "polyp_core/external.py",
        "        if sha in frames:",
        "        if False and sha in frames:",
        "tests/test_external.py::test_a_real_frame_among_them_is_refused_and_nothing_is_imported"),
}


def _run(tree: Path, test: str) -> int:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly",
                           "-p", "no:cacheprovider", test], cwd=tree, capture_output=True,
                          text=True).returncode


def main() -> int:
    bad = 0
    with tempfile.TemporaryDirectory(prefix="planted-") as scratch:
        for name, (file, before, after, test) in MUTANTS.items():
            tree = Path(scratch) / name.split()[0]
            shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
                ".venv", ".git", "build", "workspace", "__pycache__", "*.db"))
            source = (tree / file).read_text()
            if source.count(before) != 1:
                print(f"{name}: the line to mutate is not in {file} once; update this script")
                bad += 1
                continue
            clean = _run(tree, test)
            (tree / file).write_text(source.replace(before, after))
            mutated = _run(tree, test)
            verdict = ("killed" if clean == 0 and mutated != 0 else
                       "SURVIVED" if clean == 0 else "test fails on clean code")
            bad += verdict != "killed"
            print(f"{name}: {verdict} by {test}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
