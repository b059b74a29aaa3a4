"""Retraining commands of ``python -m polyp_core``: retrain, runs, compare-runs, jobs."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from polyp_core.executors import Executor

    from polyp_core.progress import CancelToken, Progress


def print_experiment(results: dict) -> None:
    """The verdict sentence first (and any regression), then the dashboard's metric table
    (mean ± std [95% CI] per arm and the paired difference) and the warnings."""
    from polyp_core.experiment.figures import evaluation_line, metric_table
    from polyp_core.tasks import COMPARED
    from polyp_core.tasks.segment import against_sources
    from polyp_core.workflows.fields import as_option, name_fields

    from polyp_core.experiment.verdict import regression_flags, verdict

    print(verdict(results))
    for flag in regression_flags(results):
        print(f"  REGRESSION: {flag}")
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
            print(f"  design: {name_fields(line, retrain_options(), as_option)}")
    for w in results.get("warnings", []):
        tag = "REGRESSION" if w["beyond_noise"] else "warning"
        print(f"  {tag}: {w['text']}")
    for other in against_sources(results):
        own_size = "full" in next(iter(other["arms"].values()))
        print(f"  tested on {other['dataset']} too ({other['images']} images, {other['groups']} "
              "groups; 95% CIs over its groups and the seeds"
              + ("; at each mask's own size" if own_size else "") + "):")
        rows = [(arm, s) for arm, s in other["arms"].items()]
        rows += [(f"{COMPARED[key]}", d) for key, d in other.get("deltas", {}).items()]
        for name, scores in rows:
            shown = scores["full"] if own_size else scores
            print(f"    {name:<22} " + "  ".join(
                f"{m} {s['estimate']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
                for m, s in shown.items() if m in ("dice", "iou")))


# the retrain request's fields this command spells otherwise (the rest: --field-name)
def retrain_options() -> dict[str, str]:
    """Retrain's fields whose option is not ``--<field>`` (from the form)."""
    from polyp_core.workflows.retrain import RETRAIN

    return RETRAIN.options()


def in_this_thread(db: object, outcome: dict) -> Callable[..., str]:
    """A workflow's ``submit`` that runs the job here, with terminal progress and Ctrl-C as its
    cancel; ``outcome`` receives the job's ``status`` and what its work returned (``run``)."""
    from polyp_core.cli.common import TerminalProgress, cancel_on_interrupt
    from polyp_core.jobs import run_job

    def submit(kind: str, config_json: dict, work: Callable[[Progress, CancelToken], str],
               owner_id: int | None) -> str:
        def recording(progress: Progress, cancel: CancelToken) -> str:
            outcome["run"] = work(progress, cancel)
            return outcome["run"]

        with TerminalProgress() as progress:
            outcome["status"] = run_job(db, kind, config_json, recording, progress,
                                        cancel_on_interrupt(), owner_id)
        return outcome["status"].id

    return submit


def job_failed(status: object) -> int | None:
    """The exit code of a job that did not finish (its first error line printed), else None."""
    if status.status == "done":
        return None
    print(f"{status.status}: {(status.error or '').splitlines()[0] if status.error else ''}")
    return 1 if status.status == "failed" else 130


def cmd_retrain(args: argparse.Namespace) -> int:
    from polyp_core.experiment.figures import evaluation_line
    from polyp_core.cli.common import open_db as _db
    from polyp_core.validation import InvalidRequest
    from polyp_core.workflows import TERMINAL, retrain

    try:
        config = retrain.retrain_request(retrain.RETRAIN.values(args))
    except InvalidRequest as exc:
        exc.flags.update(retrain.RETRAIN.options())
        raise
    executor = executor_from(args)  # Ray missing, or a bad resource count: before any work
    workspace, db = Workspace(args.workspace), _db(args)
    # planned before the job: folds, design, selection and leaks are refused here, not later
    planned = retrain.plan(db, workspace, TERMINAL, config)
    print(f"evaluation: {evaluation_line({'evaluation': planned.evaluation})}")
    print(f"trainings: {executor.describe()}")
    outcome: dict = {}
    retrain.start(db, workspace, TERMINAL, config, in_this_thread(db, outcome), planned=planned,
                  executor=executor)
    failed = job_failed(outcome["status"])
    if failed is not None:
        return failed
    print(f"trainings: {executor.summary()}")
    run = retrain.stored_run(db, TERMINAL, outcome["run"])
    print(f"run {outcome['run']} ({run['folder']}); report: {run['folder'] / 'report.html'}")
    print_experiment(run["results"])
    return 0


def add_executor_options(parser: argparse.ArgumentParser) -> None:
    """Where the trainings run (not part of the request: both executors store the same run)."""
    from polyp_core.executors import EXECUTORS

    group = parser.add_argument_group("where the trainings run")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: one training after another in this process (default); "
                            "ray: every (fold, seed, arm) training a Ray task, on this "
                            "machine's CPUs and GPUs or on a Ray cluster (needs "
                            "requirements-cluster.txt)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="a running Ray cluster (auto, or ray://HEAD:10001; default: "
                            "$RAY_ADDRESS, else a Ray started on this machine)")
    group.add_argument("--ray-cpus", type=int, metavar="N",
                       help="ray without an address: the CPUs of the Ray started here "
                            "(default: all of this machine's)")
    group.add_argument("--cpus-per-training", type=int, metavar="N",
                       help="CPU threads of each training (ray: also the CPUs it reserves; "
                            "default 1; local: default all of this process's). On a CPU the "
                            "same N on both executors gives the same results bit for bit")
    group.add_argument("--gpus-per-training", type=float, default=0.0, metavar="G",
                       help="ray: GPUs each training reserves (1: one per GPU; 0.5: two "
                            "share one); default 0, the CPU")
    group.add_argument("--retries", type=int, default=1, metavar="N",
                       help="ray: how often a training whose worker died runs again before "
                            "the run fails (default 1)")


def executor_from(args: argparse.Namespace) -> Executor:
    """The executor the options name (checked, Ray's presence included, before any work)."""
    from polyp_core.executors import executor_of

    return executor_of(args.executor, args.ray_address, args.cpus_per_training,
                       args.gpus_per_training, args.retries, args.ray_cpus)


def cmd_runs(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.workflows import TERMINAL, retrain

    for run in retrain.runs(_db(args), TERMINAL, args.kind):
        print(f"{run['id']}  {run['kind']:<9} {run['status']:<6} "
              f"{run['created']:%Y-%m-%d %H:%M}  {run['name']}")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    """The whole loop as a job in this thread (Ctrl-C cancels; finished steps stay)."""
    from polyp_core.cli.common import open_db as _db
    from polyp_core.recipe import summary_lines
    from polyp_core.validation import InvalidRequest
    from polyp_core.workflows import TERMINAL
    from polyp_core.workflows import recipe as recipe_workflow

    try:
        config = recipe_workflow.recipe_request(recipe_workflow.RECIPE.values(args))
    except InvalidRequest as exc:
        exc.flags.update(recipe_workflow.RECIPE.options())
        raise
    executor = executor_from(args)
    workspace, db = Workspace(args.workspace), _db(args)
    print(f"trainings: {executor.describe()}")
    outcome: dict = {}
    recipe_workflow.start(db, workspace, TERMINAL, config, in_this_thread(db, outcome),
                          executor=executor)
    failed = job_failed(outcome["status"])
    if failed is not None:
        return failed
    folder = workspace.runs_dir / f"{config.name}-{config.dataset}"
    summary = json.loads((folder / "summary.json").read_text())
    for line in summary_lines(summary):
        print(line)
    for key, run in summary["runs"].items():
        print(f"  run {run['run']} ({run['title']}): {run['verdict']}")
    print(f"summary: {folder / 'recipe.html'}")
    return 0


def cmd_show_run(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.workflows import TERMINAL, retrain

    run = retrain.stored_run(_db(args), TERMINAL, args.run)
    if args.json:
        print(json.dumps(run["results"], indent=1))
    else:
        print_experiment(run["results"])
    return 0


def cmd_compare_runs(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.workflows import TERMINAL, retrain

    diff = retrain.compare(_db(args), TERMINAL, args.run_a, args.run_b)
    print(json.dumps(diff, indent=1))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from polyp_core.cli.common import open_db as _db
    from polyp_core.workflows import TERMINAL
    from polyp_core.workflows import jobs as jobs_workflow

    for job in jobs_workflow.listing(_db(args), TERMINAL, args.kind):
        detail = job.error.splitlines()[0] if job.error else (job.message or "")
        print(f"{job.id[:12]}  {job.kind:<9} {job.status:<11} {job.done}/{job.total}  {detail}")
    return 0


def add_classify_commands(sub: argparse._SubParsersAction) -> None:
    from polyp_core.workflows.retrain import RETRAIN  # declared once, with the tab's defaults

    re = sub.add_parser("retrain", help=RETRAIN.help)
    RETRAIN.add_options(re)
    add_executor_options(re)
    re.add_argument("--db")
    re.set_defaults(func=cmd_retrain)

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--kind", help="retrain or diagnose")
    runs.add_argument("--db")
    runs.set_defaults(func=cmd_runs)

    from polyp_core.workflows.recipe import RECIPE

    recipe = sub.add_parser("recipe", help=RECIPE.help)
    RECIPE.add_options(recipe)
    add_executor_options(recipe)
    recipe.add_argument("--db")
    recipe.set_defaults(func=cmd_recipe)

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
