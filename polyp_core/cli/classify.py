"""Retraining commands of ``python -m polyp_core``: retrain, runs, compare-runs, jobs."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from polyp_core.progress import CancelToken, Progress


def print_experiment(results: dict) -> None:
    """The dashboard's metric table (mean ± std [95% CI] per arm and the paired difference),
    then the warnings."""
    from polyp_core.classify.figures import evaluation_line, metric_table
    from polyp_core.workflows.fields import as_option, name_fields

    print(f"  evaluation: {evaluation_line(results)}")
    header, rows = metric_table(results)
    widths = [max(len(str(r[i])) for r in [header, *rows]) + 2 for i in range(len(header))]
    for row in [header, *rows]:
        print("  " + "".join(f"{str(cell):<{w}}" for cell, w in zip(row, widths)))
    if "delta_cluster" in results:
        d = results["delta_cluster"]
        print(f"  95% CIs: cluster bootstrap over {d['groups']} test groups with {d['seeds']} "
              "seed(s); p: paired, two-sided")
    design = results.get("test_groups")
    if design:
        print(f"  unit of the test split: {design['unit']}")
        width = max(len(split) for split in design["table"])
        for split, table in design["table"].items():
            print(f"  {split:<{width}}  " + "  ".join(
                f"{c}: {v['groups']} groups / {v['images']} images" if design["grouped"] else
                f"{c}: {v['images']} images" for c, v in table.items()))
        for line in design.get("warnings", []):
            print(f"  design: {name_fields(line, RETRAIN_OPTIONS, as_option)}")
    for w in results.get("warnings", []):
        tag = "REGRESSION" if w["beyond_noise"] else "warning"
        print(f"  {tag}: {w['text']}")
    if "against" in results:
        other = results["against"]
        print(f"  tested on {other['dataset']} too ({other['images']} images, {other['groups']} "
              "groups; 95% CIs over its groups and the seeds):")
        for arm, scores in other["arms"].items():
            print(f"    {arm:<16} " + "  ".join(
                f"{m} {s['estimate']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
                for m, s in scores.items() if m in ("dice", "iou")))


# the retrain request's fields this command spells otherwise (the rest: --field-name)
RETRAIN_OPTIONS = {"image_size": "--size", "augment": "--no-augment"}


def cmd_retrain(args: argparse.Namespace) -> int:
    from polyp_core.classify.figures import evaluation_line
    from polyp_core.cli.common import TerminalProgress, cancel_on_interrupt, open_db as _db
    from polyp_core.jobs import run_job
    from polyp_core.runs import load_run
    from polyp_core.validation import InvalidRequest
    from polyp_core.workflows import TERMINAL, retrain

    fields = {k: v for k, v in vars(args).items() if k in retrain.DEFAULTS}
    fields |= {"image_size": args.size, "augment": not args.no_augment}
    try:
        config = retrain.retrain_request(fields)
    except InvalidRequest as exc:
        exc.flags.update(RETRAIN_OPTIONS)
        raise
    workspace, db = Workspace(args.workspace), _db(args)
    # planned before the job: folds, design, selection and leaks are refused here, not later
    planned = retrain.plan(db, workspace, TERMINAL, config)
    print(f"evaluation: {evaluation_line({'evaluation': planned.evaluation})}")
    outcome = {}

    def in_this_thread(kind: str, config_json: dict, work: Callable[[Progress, CancelToken], str],
                       owner_id: int | None) -> str:
        def recording(progress: Progress, cancel: CancelToken) -> str:
            outcome["run"] = work(progress, cancel)
            return outcome["run"]

        with TerminalProgress() as progress:
            outcome["status"] = run_job(db, kind, config_json, recording, progress,
                                        cancel_on_interrupt(), owner_id)
        return outcome["status"].id

    retrain.start(db, workspace, TERMINAL, config, in_this_thread, planned=planned)
    status = outcome["status"]
    if status.status != "done":
        print(f"{status.status}: {(status.error or '').splitlines()[0] if status.error else ''}")
        return 1 if status.status == "failed" else 130
    run = load_run(db, outcome["run"])
    print(f"run {outcome['run']} ({run['folder']}); report: {run['folder'] / 'report.html'}")
    print_experiment(run["results"])
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.workflows import TERMINAL, retrain

    for run in retrain.runs(_db(args), TERMINAL, args.kind):
        print(f"{run['id']}  {run['kind']:<9} {run['status']:<6} "
              f"{run['created']:%Y-%m-%d %H:%M}  {run['name']}")
    return 0


def cmd_show_run(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.runs import load_run

    run = load_run(_db(args), args.run)
    if args.json:
        print(json.dumps(run["results"], indent=1))
    else:
        print_experiment(run["results"])
    return 0


def cmd_compare_runs(args: argparse.Namespace) -> int:
    from polyp_core.classify import compare_runs
    from polyp_core.cli.common import open_db as _db

    diff = compare_runs(_db(args), args.run_a, args.run_b)
    print(json.dumps(diff, indent=1))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.jobs import list_jobs, recover_interrupted

    db = _db(args)
    recover_interrupted(db)
    for job in list_jobs(db, args.kind):
        detail = job.error.splitlines()[0] if job.error else (job.message or "")
        print(f"{job.id[:12]}  {job.kind:<9} {job.status:<11} {job.done}/{job.total}  {detail}")
    return 0


def add_classify_commands(sub: argparse._SubParsersAction) -> None:
    from polyp_core.workflows.retrain import DEFAULTS as D  # one set of defaults with the UI

    re = sub.add_parser("retrain", help="baseline vs augmented classifier over several seeds")
    re.add_argument("--dataset", required=True)
    re.add_argument("--scheme", help="three_class or ad_vs_rest (default: the data set's)")
    re.add_argument("--backbone", default=D["backbone"])
    re.add_argument("--size", type=int, default=D["image_size"], help="input size (128 or 224)")
    re.add_argument("--imbalance", default=D["imbalance"], choices=["none", "sampler", "loss"])
    re.add_argument("--epochs", type=int, default=D["epochs"])
    re.add_argument("--batch-size", type=int, default=D["batch_size"])
    re.add_argument("--lr", type=float, default=D["lr"])
    re.add_argument("--patience", type=int, default=D["patience"])
    re.add_argument("--seeds", default=D["seeds"])
    re.add_argument("--no-augment", action="store_true", help="no augmentation of training images")
    re.add_argument("--freeze-backbone", action="store_true", help="train the head only")
    re.add_argument("--baseline-only", action="store_true")
    re.add_argument("--linear-probe", action="store_true",
                    help="also fit logistic regression on the frozen backbone's features (C by "
                         "inner grouped CV): the baseline a network must beat")
    re.add_argument("--allow-small-test", action="store_true",
                    help="run even when a class has fewer than 3 test groups (patients/lesions)")
    re.add_argument("--task", default=D["task"], choices=["classification", "segmentation"],
                    help="classification (histology) or segmentation (a U-Net on the data "
                         "set's masks; Dice and IoU per test image)")
    re.add_argument("--gated-arm", action="store_true",
                    help="also train with only the images each fold's segmentation gate keeps "
                         "(--min-gate-iou, 0.7 when unset): the gated − augmented difference")
    re.add_argument("--expert-arm", action="store_true",
                    help="also train with only the images whose mask reviewers rated at least "
                         "--min-mask-quality: the expert − augmented difference")
    re.add_argument("--min-mask-quality", choices=["moderate", "good"],
                    help="keep images whose mask reviewers rated at least this (mask studies)")
    re.add_argument("--synthetic-arm", action="store_true",
                    help="segmentation: also train on the selected synthetic images alone")
    re.add_argument("--real-fractions", metavar="SHARES",
                    help="segmentation: a learning curve, every arm again on these shares of "
                         "each fold's real training groups (e.g. 0.25,0.5)")
    re.add_argument("--against", metavar="DATASET",
                    help="segmentation: also test every model on this second real data set "
                         "(another source's frames with masks)")
    re.add_argument("--allow-unknown-training-data", action="store_true",
                    help="use images of imported generators whose training data are unknown "
                         "(their leak cannot be checked; the run and its report warn)")
    re.add_argument("--folds", default=D["folds"], metavar="K|auto",
                    help="grouped K-fold cross-validation over all images (K >= 2; folds "
                         "stratified by class, grouped by patient/lesion/video; each fold trains "
                         "on everything but its test part); 0: the data set's fixed split; auto "
                         "(default): the most folds up to 10 that keep 3 groups of each class in "
                         "every test fold, the fixed split when none does")
    re.add_argument("--inner-valid", type=float, default=D["inner_valid"], metavar="SHARE",
                    help="with folds: share of each fold's training groups (at least 2 per "
                         "class) that networks stop early on (default 0.15); 0: fixed epochs on "
                         "the whole training part")
    re.add_argument("--refit", action="store_true",
                    help="with folds: choose the epoch count by inner grouped 3-fold CV, then "
                         "train on the whole training part")
    re.add_argument("--cv-seed", type=int, default=D["cv_seed"],
                    help="how groups are dealt into folds")
    re.add_argument("--seen-groups-train", action="store_true",
                    help="with --folds: groups a generator learned from train in every fold "
                         "and are never tested (instead of refusing the run)")
    re.add_argument("--generators", help="comma-separated generator ids (default: all)")
    re.add_argument("--classes", help="comma-separated classes to add (default: all)")
    re.add_argument("--min-quality", choices=["moderate", "good"])
    re.add_argument("--min-reviewers", type=int, default=D["min_reviewers"])
    re.add_argument("--verdict", default=D["verdict"],
                    choices=["any", "not_majority_synthetic", "majority_real", "all_real"])
    re.add_argument("--unrated", default=D["unrated"], choices=["include", "exclude"])
    re.add_argument("--studies", help="comma-separated studies whose ratings count (default: all)")
    re.add_argument("--exclude-memorised", help="comma-separated diagnose run ids")
    re.add_argument("--target-mix", help="'AD=0.4,SSA=0.3,HP=0.3' or 'balance'")
    re.add_argument("--max-ratio", type=float, help="at most this many synthetic per real image")
    re.add_argument("--selection-seed", type=int, default=D["selection_seed"])
    re.add_argument("--min-gate-iou", type=float,
                    help="the segmentation gate: only images with masks that a U-Net trained on "
                         "each fold's real training part finds at IoU >= this (e.g. 0.7)")
    re.add_argument("--name")
    re.add_argument("--db")
    re.set_defaults(func=cmd_retrain)

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--kind", help="retrain or diagnose")
    runs.add_argument("--db")
    runs.set_defaults(func=cmd_runs)

    show = sub.add_parser("show-run", help="print a retrain run's metric table")
    show.add_argument("run")
    show.add_argument("--json", action="store_true")
    show.add_argument("--db")
    show.set_defaults(func=cmd_show_run)

    cmp_ = sub.add_parser("compare-runs", help="what differs between two retrain runs")
    cmp_.add_argument("run_a")
    cmp_.add_argument("run_b")
    cmp_.add_argument("--db")
    cmp_.set_defaults(func=cmd_compare_runs)

    jobs = sub.add_parser("jobs", help="background jobs and their status")
    jobs.add_argument("--kind")
    jobs.add_argument("--db")
    jobs.set_defaults(func=cmd_jobs)
