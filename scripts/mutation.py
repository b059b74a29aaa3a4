"""Mutation testing of the scoring code (``make mutation``; results in tests/MUTATION.md).

Each target is one module and its own tests: mutmut (3.x) mutates that module's functions
one change at a time and runs only those of the listed tests that reach the mutated function.
A target runs in a fresh copy of the tree under ``build/mutation/<target>/`` (mutmut caches
its verdicts per function and would not see a changed test).
Functions marked ``# pragma: no mutate block`` on their ``def`` line are orchestration
(databases, files, training loops); tests/MUTATION.md says which and where they are tested.

    python scripts/mutation.py                 # every target
    python scripts/mutation.py segment_gate    # one target
    python scripts/mutation.py --list          # targets, modules and tests

Prints, per target, the mutants, how many the tests killed, and every survivor by name;
writes the same to ``build/mutation/summary.json``. ``mutmut show NAME`` (run inside the
target's folder) prints a survivor's diff.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "mutation"

#: target -> (module, the tests that are its own: fast, known-answer ones)
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "segment_metrics": ("polyp_core/segment/metrics.py", (
        "tests/experiment/test_scores.py",
        "tests/segment/test_segment.py::test_scores_per_image_by_hand")),
    "segment_gate": ("polyp_core/segment/gate.py", ("tests/experiment/test_scores.py",)),
    "segment_predict": ("polyp_core/segment/train.py", ("tests/experiment/test_scores.py",)),
    "classify_metrics": ("polyp_core/classify/metrics.py", (
        "tests/experiment/test_classify.py::test_metrics_agree_with_sklearn_and_intervals_are_t_intervals",
        "tests/experiment/test_classify.py::test_an_ssa_collapse_is_a_regression_beyond_noise",
        "tests/experiment/test_known_metrics.py")),
    "stats_seeds": ("polyp_core/stats/seeds.py", (
        "tests/experiment/test_classify.py::test_metrics_agree_with_sklearn_and_intervals_are_t_intervals",
        "tests/experiment/test_known_metrics.py")),
    # the simulations of tests/experiment/test_uncertainty.py (power, null rate) take minutes
    # a run: the arithmetic is pinned by the known answers, the behaviour by those tests in
    # make test
    "stats_uncertainty": ("polyp_core/stats/uncertainty.py", (
        "tests/experiment/test_known_metrics.py",
        "tests/experiment/test_uncertainty.py::test_point_estimates_are_the_seed_means_of_the_plain_metrics",
        "tests/experiment/test_uncertainty.py::test_regression_warning_fires_only_when_the_interval_excludes_zero",
        "tests/segment/test_segment.py::test_the_bootstrap_of_scores_resamples_groups_not_images")),
    "review_stats": ("polyp_core/review/stats.py", (
        "tests/review/test_review_stats.py", "tests/experiment/test_scores.py")),
    "review_proportions": ("polyp_core/review/proportions.py", (
        "tests/review/test_review_stats.py::test_wilson_interval_known_values",)),
    "review_leaks": ("polyp_core/review/leaks.py", (
        "tests/review/test_leaks.py::test_auc_is_scikit_learns_with_ties",
        "tests/review/test_leaks.py::test_auditor_catches_a_planted_channel_and_passes_noise",
        "tests/review/test_leaks.py::test_the_combined_channel_must_beat_relabelled_images",
        "tests/experiment/test_known_metrics.py")),
    "experiment_policy": ("polyp_core/experiment/policy.py", (
        "tests/experiment/test_classify.py::test_policy_errors_name_the_field",
        "tests/experiment/test_classify.py::test_parse_mix_errors",
        "tests/experiment/test_scores.py")),
}

COPY = ("polyp_core", "review_db", "tests", "assets", "pyproject.toml")

#: survivors that no test can kill, because the program computes the same thing: (target, a
#: regular expression the mutant's "+" line matches, or with "diff:" its whole "- old + new"
#: diff, or with "name:" its name (where the diff alone could be another function's), why it
#: is equivalent). ``--report`` matches every survivor against these and lists
#: any it cannot explain as UNEXPLAINED.
EQUIVALENT: list[tuple[str, str, str]] = [
    ("segment_metrics", r"reshape\(len\((predicted|truth)\), -2\)",
     "numpy reads any negative size as 'the rest' (-2 = -1 here: one unknown dimension)"),
    ("segment_metrics", r"\.astype\(None\)",
     "astype(None) is float64, the same as astype(float)"),
    ("segment_metrics", r'float\("NAN"\)', 'float("NAN") is float("nan")'),
    ("stats_seeds", r"np\.asarray\((treated|control|values), (dtype=)?(None)?\)",
     "the values are Python floats (or ints): numpy's default dtype for them gives the same "
     "differences, means and intervals as float64"),
    ("classify_metrics", r'"beyond_noise": d\["n"\] > 1 and d\["ci"\]\[1\] <= 0',
     "a t interval's upper end is exactly 0.0 only when mean + half-width cancel to the last "
     "bit, or with zero width at a mean of 0, where no warning is made (the mean must be < 0)"),
    ("stats_uncertainty", r"rng\.integers\((len\(names\)|n_seeds), size=",
     "numpy's integers(high) with one bound draws from [0, high): the same draws as (0, high)"),
    ("stats_uncertainty",
     r"np\.asarray\((groups|treated|control|scores), (dtype=)?(None)?\)",
     "groups are strings and scores/predictions numbers already: the default dtype gives the "
     "same groups and the same float arithmetic"),
    ("stats_uncertainty", r"\.astype\(None\)", "astype(None) is float64"),
    ("stats_uncertainty", r"np\.ones\(\(2, ",
     "the point estimate reads row 0 only; a second identical row of weights changes nothing"),
    ("stats_uncertainty", r'simplefilter\("ignore", \)',
     "inside nanmean only RuntimeWarnings arise; ignoring every category ignores the same ones"),
    ("stats_uncertainty", r'float\("NAN"\)', 'float("NAN") is float("nan")'),
    ("stats_uncertainty", r"present\.any\(None\)",
     "a confusion with no class present has present.sum() 0, so its mean is 0/0 = NaN either way"),
    ("stats_uncertainty", r'return float\((None|"XXnanXX")\)',
     "unreachable in paired_cluster_bootstrap: every replicate draws at least one group, so a "
     "class is present and every metric of the replicate is finite"),
    ("review_stats", r"np\.asarray\(hits, \)",
     "hits are booleans already; the default dtype is bool too"),
    ("review_stats", r"size = np\.bincount\(inverse, \)",
     "every case index occurs in inverse (np.unique), so the count has its full length anyway"),
    ("review_stats", r'weights="linear", labels=None',
     "with linear weights an unused level changes nothing: with three levels used the labels "
     "are the same; with two, every disagreement has the same weight in the observed and the "
     "expected table, so kappa is the same"),
    ("review_stats", r"diff:value_domain=\[0, 1, 2\]\) \+\s*\)$|value_domain=None\)",
     "the ordinal distance adds up the counts of the levels between two answers; a level nobody "
     "used counts 0, so inferring the levels from the answers gives the same alpha"),
    ("review_stats", r"np\.asarray\(hits, None\)",
     "hits are booleans already; numpy's default dtype for them is bool"),
    ("review_stats", r"per_case = np\.bincount\(inverse, weights=hits_a, \)",
     "every case index occurs in inverse (np.unique), so the count has its full length anyway"),
    ("review_stats", r"n_boot: int = 2001",
     "the number of bootstrap replicates sets Monte Carlo precision, not the estimate: 2001 "
     "replicates give an interval as valid as 2000 (tests pin the interval's construction)"),
    ("review_stats", r"fleiss_kappa\(table\)\) if (\(len\(categories\) > 1\) or True|"
                     r"len\(categories\) >= 1)",
     "statsmodels' Fleiss' kappa of a single category is 0/0 = nan, what the guard returns"),
    ("review_stats", r"if \(len\(images\)\) or True else 0",
     "with no images the matrix is empty and the count of pairable columns is 0 anyway"),
    ("review_stats", r"if \(len\(set\(x\) \| set\(y\)\) > 1\) or True|"
                     r"if len\(set\(x\) \| set\(y\)\) >= 1",
     "scikit-learn's kappa of one shared value is 0/0 = nan, what the guard returns"),
    ("review_stats", r'weights="linear", \)\)',
     "with linear weights an unused level changes nothing (see labels=None above)"),
    ("review_stats", r"(verdicts_by_reviewer|quality_distribution|cohen_pairs|fleiss)\(done, \)",
     "the argument left out equals the function's default (real; source; verdict)"),
    ("experiment_policy", r"wanted\.get\(c, 1\)",
     "a class missing from ``wanted`` is one missing from ``available`` too (without a mix, "
     "wanted is what is available; with one, every class is in it), so min(., 0) = 0 anyway"),
    ("experiment_policy", r"if taken >= limit:",
     "at taken == limit the scaling keeps every quota as it is (exact = quota, no remainder)"),
    ("experiment_policy", r"ratings\.get\(r\.sha256, (None)?\)",
     "an image nobody rated gets None instead of []: both are falsy, the first test of "
     "mask_passes"),
    ("experiment_policy", r"json\.dumps\(rows, (sort_keys=(None|False))?\)",
     "the rows are lists of strings and numbers: there is no mapping whose keys could be sorted"),
    ("experiment_policy", r"abs\(sum\(shares\) - 1\) >= 1e-6",
     "differs only when the shares sum to 1 ± 1e-6 to the last bit, which no decimal mix does "
     "(the tolerance is for rounding, tested at 1e-7 in and 0.1 out)"),
    ("review_leaks", r"n_boot: int = 1001",
     "the number of bootstrap replicates sets Monte Carlo precision, not the estimate (every "
     "caller passes its own; tests pin the interval's construction)"),
    ("review_leaks", r'"mask_area" in rows\[1\]',
     "every row of an audit has the same channels (channel_rows makes them alike) and an audit "
     "has rows of both kinds, so the second row answers as the first"),
    ("review_leaks", r"np\.array\(\[r\[name\] for r in rows\], (None)?\)",
     "the AUC depends on ranks only: integer and float channel values rank alike"),
    ("review_leaks", r"for r in rows\], (dtype=None)?\)$",
     "the features are numbers; the scaler casts them to float as float64 would"),
    ("review_leaks", r"name:x_combined_scores__mutmut_(51|53)$",
     "unreachable guard: stratified folds (at most as many as either kind has images) leave "
     "both kinds in every training part, so no fold is skipped"),
    ("review_leaks", r"LogisticRegression\(max_iter=1001\)",
     "lbfgs converges on these few standardised features long before 1000 iterations"),
    ("review_leaks", r"rgb\.astype\(None\)\.mean",
     "float64 instead of float32 only moves the 7th digit of the Laplacian's mean; the channel "
     "is read by rank (AUC)"),
    ("review_leaks", r'format="jpeg", quality=75|format="JPEG", \)',
     "Pillow reads format names in any case, and its default JPEG quality is 75"),
    ("review_leaks", r"boundary / mask\.shape\[1\]",
     "a study draws every mask on its square served image (rows = columns)"),
    ("review_leaks", r"DESCRIPTIONS\.get\(self\.name, (None|'XXXX')?\)",
     "every channel the audit reports (the combined one included) has a description"),
    ("segment_predict", r"batch_size: int = 17",
     "the batch size only groups images; an eval-mode U-Net predicts each image alone"),
]


def _setup_cfg(module: str, tests: tuple[str, ...]) -> str:
    selection = "\n".join(f"    {t}" for t in tests)
    return (f"[mutmut]\nsource_paths=polyp_core\nonly_mutate={module}\n"
            f"pytest_add_cli_args_test_selection=\n{selection}\n"
            "pytest_add_cli_args=-p no:randomly -q -p no:cacheprovider -x\n"
            "also_copy=\n    review_db\n    assets\n"
            # torch is not fork-safe once its thread pool has run: fork from a clean server
            "process_isolation=forkserver\n")


def _prepare(target: str) -> Path:
    module, tests = TARGETS[target]
    folder = BUILD / target
    if folder.exists():  # mutmut caches verdicts by function, not by test: start clean
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in COPY:
        source, dest = ROOT / name, folder / name
        if dest.is_dir():
            shutil.rmtree(dest)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest)
    (folder / "setup.cfg").write_text(_setup_cfg(module, tests))
    return folder


def _results(folder: Path, mutmut: str) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=folder, capture_output=True,
                         text=True, check=True).stdout
    status = {}
    for line in out.splitlines():
        name, _, verdict = line.strip().rpartition(": ")
        if name:
            status[name] = verdict
    return status


def run_target(target: str, children: int, mutmut: str) -> dict:
    folder = _prepare(target)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    log = folder / "run.log"
    with open(log, "w") as handle:
        code = subprocess.run([mutmut, "run", "--max-children", str(children)], cwd=folder,
                              stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    status = _results(folder, mutmut)
    counts: dict[str, int] = {}
    for verdict in status.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    survivors = sorted(n for n, v in status.items() if v != "killed")
    return {"module": TARGETS[target][0], "tests": list(TARGETS[target][1]), "exit": code,
            "mutants": len(status), "counts": counts, "not_killed": survivors,
            "status": {n: status[n] for n in survivors},
            "diffs": {n: _diff(folder, mutmut, n) for n in survivors}}


def _diff(folder: Path, mutmut: str, name: str) -> list[str]:
    """The changed lines of one mutant (``mutmut show``), without the file headers."""
    out = subprocess.run([mutmut, "show", name], cwd=folder, capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def status_of(result: dict, name: str) -> str:
    return result.get("status", {}).get(name, "survived")


def explain(target: str, diff: list[str], mutant: str = "") -> str | None:
    """The recorded reason a survivor is equivalent, or None."""
    import re

    added = " ".join(line[1:].strip() for line in diff if line.startswith("+"))
    texts = {"diff:": " ".join(line.strip() for line in diff),  # "- old + new"
             "name:": mutant}  # the mutant's name, e.g. x_combined_scores__mutmut_53
    for name, pattern, reason in EQUIVALENT:
        prefix = next((p for p in texts if pattern.startswith(p)), "")
        if name == target and re.search(pattern[len(prefix):], texts.get(prefix, added)):
            return reason
    return None


def report(summary: dict) -> str:
    """tests/MUTATION.md's generated part: per target the counts, then every survivor with
    its diff and the reason it is equivalent (or UNEXPLAINED)."""
    lines = ["| target | module | mutants | killed | not killed | explained |",
             "|---|---|---|---|---|---|"]
    details = []
    for target, r in summary.items():
        explained = {n: explain(target, r["diffs"][n], n) for n in r["not_killed"]}
        lines.append(f"| {target} | `{r['module']}` | {r['mutants']} | "
                     f"{r['counts'].get('killed', 0)} | {len(r['not_killed'])} | "
                     f"{sum(v is not None for v in explained.values())} |")
        for name in r["not_killed"]:
            diff = "\n".join(r["diffs"][name])
            details.append(f"- `{name}` ({status_of(r, name)}): "
                           f"{explained[name] or 'UNEXPLAINED'}\n  ```diff\n  "
                           + diff.replace("\n", "\n  ") + "\n  ```")
    return "\n".join(lines) + "\n\n### Every mutant not killed\n\n" + "\n".join(details) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], metavar="TARGET")
    parser.add_argument("--list", action="store_true", help="list the targets and stop")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report", action="store_true",
                        help="print the table and survivors of build/mutation/summary.json "
                             "(for tests/MUTATION.md) and stop")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads((BUILD / "summary.json").read_text())))
        return 0
    if args.list:
        for name, (module, tests) in TARGETS.items():
            print(f"{name}: {module}\n  " + "\n  ".join(tests))
        return 0
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    summary_path = BUILD / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for target in args.targets or list(TARGETS):
        print(f"== {target}: {TARGETS[target][0]}", flush=True)
        result = run_target(target, args.children, mutmut)
        summary[target] = result
        summary_path.write_text(json.dumps(summary, indent=1))
        print(f"   {result['mutants']} mutants: {result['counts']}")
        for name in result["not_killed"]:
            print(f"   not killed: {name} ({status_of(result, name)})")
            for line in result["diffs"][name]:
                print(f"      {line.strip()[:150]}")
    unexplained = [n for t, r in summary.items() for n in r["not_killed"]
                   if explain(t, r["diffs"][n], n) is None]
    print(f"summary in {summary_path}; "
          f"{sum(len(r['not_killed']) for r in summary.values())} mutant(s) not killed, "
          f"{len(unexplained)} of them not explained as equivalent in scripts/mutation.py")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
