"""Retraining commands of ``python -m polyp_core``: retrain, runs, compare-runs, jobs."""

from __future__ import annotations

import argparse
import json

from polyp_core.workspace import Workspace


def print_experiment(results: dict) -> None:
    """The dashboard's metric table (mean ± std [95% CI] per arm and the paired difference),
    then the warnings."""
    from polyp_core.classify.figures import evaluation_line, metric_table

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
            print(f"  design: {line}")
    for w in results.get("warnings", []):
        tag = "REGRESSION" if w["beyond_noise"] else "warning"
        print(f"  {tag}: {w['text']}")


def folds_option(text: str) -> int | None:
    """``--folds``: a whole number or ``auto`` (None)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of folds or 'auto'") from None


def cmd_retrain(args: argparse.Namespace) -> int:
    from polyp_core.classify import (ClassifierTrainConfig, ExperimentConfig, SelectionPolicy,
                                     parse_mix, run_experiment)
    from polyp_core.classify.experiment import plan_experiment
    from polyp_core.classify.figures import evaluation_line
    from polyp_core.cli.common import TerminalProgress, cancel_on_interrupt, open_db as _db
    from polyp_core.jobs import run_job

    split = lambda text: tuple(x for x in (text or "").split(",") if x)  # noqa: E731
    train = ClassifierTrainConfig(
        backbone=args.backbone, image_size=args.size, imbalance=args.imbalance, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, patience=args.patience, augment=not args.no_augment,
        freeze_backbone=args.freeze_backbone)
    policy = SelectionPolicy(
        generators=split(args.generators), classes=split(args.classes), min_quality=args.min_quality,
        min_reviewers=args.min_reviewers, verdict=args.verdict, unrated=args.unrated,
        studies=split(args.studies), exclude_memorised=split(args.exclude_memorised),
        target_mix=parse_mix(args.target_mix), max_ratio=args.max_ratio, seed=args.selection_seed)
    arms = ("baseline",) if args.baseline_only else ("baseline", "augmented")
    config = ExperimentConfig(dataset=args.dataset, scheme=args.scheme, train=train,
                              seeds=tuple(int(s) for s in args.seeds.split(",")), policy=policy,
                              arms=arms, name=args.name,
                              allow_small_test=args.allow_small_test,
                              linear_probe=args.linear_probe, folds=args.folds,
                              cv_seed=args.cv_seed, seen_groups_train=args.seen_groups_train,
                              inner_valid=args.inner_valid, refit=args.refit)
    workspace, db = Workspace(args.workspace), _db(args)
    # planned before the job: folds, design, selection and leaks are refused here, not later
    plan = plan_experiment(db, workspace, config)
    print(f"evaluation: {evaluation_line({'evaluation': plan.evaluation})}")
    outcome = {}

    def work(progress, cancel):  # noqa: ANN001
        result = run_experiment(db, workspace, config, progress, cancel)
        outcome["result"] = result
        return result.run_id

    with TerminalProgress() as progress:
        status = run_job(db, "retrain", config.to_json(), work, progress, cancel_on_interrupt())
    if status.status != "done":
        print(f"{status.status}: {(status.error or '').splitlines()[0] if status.error else ''}")
        return 1 if status.status == "failed" else 130
    result = outcome["result"]
    print(f"run {result.run_id} ({result.folder}); report: {result.folder / 'report.html'}")
    print_experiment(result.results)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from review_db import queries

    db = _db(args)
    with db.session() as session:
        for run in queries.list_runs(session, args.kind):
            name = run.config.get("name") or run.config.get("dataset", "")
            print(f"{run.id}  {run.kind:<9} {run.status:<6} {queries.as_utc(run.created):%Y-%m-%d %H:%M}  {name}")
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


def add_classify_commands(sub) -> None:  # noqa: ANN001
    re = sub.add_parser("retrain", help="baseline vs augmented classifier over several seeds")
    re.add_argument("--dataset", required=True)
    re.add_argument("--scheme", help="three_class or ad_vs_rest (default: the data set's)")
    re.add_argument("--backbone", default="efficientnet_lite0")
    re.add_argument("--size", type=int, default=224, help="input size (128 or 224)")
    re.add_argument("--imbalance", default="sampler", choices=["none", "sampler", "loss"])
    re.add_argument("--epochs", type=int, default=15)
    re.add_argument("--batch-size", type=int, default=32)
    re.add_argument("--lr", type=float, default=3e-4)
    re.add_argument("--patience", type=int, default=5)
    re.add_argument("--seeds", default="0,1,2")
    re.add_argument("--no-augment", action="store_true", help="no augmentation of training images")
    re.add_argument("--freeze-backbone", action="store_true", help="train the head only")
    re.add_argument("--baseline-only", action="store_true")
    re.add_argument("--linear-probe", action="store_true",
                    help="also fit logistic regression on the frozen backbone's features (C by "
                         "inner grouped CV): the baseline a network must beat")
    re.add_argument("--allow-small-test", action="store_true",
                    help="run even when a class has fewer than 3 test groups (patients/lesions)")
    re.add_argument("--folds", type=folds_option, default=None, metavar="K|auto",
                    help="grouped K-fold cross-validation over all images (K >= 2; folds "
                         "stratified by class, grouped by patient/lesion/video; each fold trains "
                         "on everything but its test part); 0: the data set's fixed split; auto "
                         "(default): the most folds up to 10 that keep 3 groups of each class in "
                         "every test fold, the fixed split when none does")
    re.add_argument("--inner-valid", type=float, default=0.15, metavar="SHARE",
                    help="with folds: share of each fold's training groups (at least 2 per "
                         "class) that networks stop early on (default 0.15); 0: fixed epochs on "
                         "the whole training part")
    re.add_argument("--refit", action="store_true",
                    help="with folds: choose the epoch count by inner grouped 3-fold CV, then "
                         "train on the whole training part")
    re.add_argument("--cv-seed", type=int, default=0, help="how groups are dealt into folds")
    re.add_argument("--seen-groups-train", action="store_true",
                    help="with --folds: groups a generator learned from train in every fold "
                         "and are never tested (instead of refusing the run)")
    re.add_argument("--generators", help="comma-separated generator ids (default: all)")
    re.add_argument("--classes", help="comma-separated classes to add (default: all)")
    re.add_argument("--min-quality", choices=["moderate", "good"])
    re.add_argument("--min-reviewers", type=int, default=1)
    re.add_argument("--verdict", default="any",
                    choices=["any", "not_majority_synthetic", "majority_real", "all_real"])
    re.add_argument("--unrated", default="include", choices=["include", "exclude"])
    re.add_argument("--studies", help="comma-separated studies whose ratings count (default: all)")
    re.add_argument("--exclude-memorised", help="comma-separated diagnose run ids")
    re.add_argument("--target-mix", help="'AD=0.4,SSA=0.3,HP=0.3' or 'balance'")
    re.add_argument("--max-ratio", type=float, help="at most this many synthetic per real image")
    re.add_argument("--selection-seed", type=int, default=0)
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
