"""Retrain and compare: one request parsed once for both front ends, checked, authorised and
planned once; the job runs the plan it was given."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict as vars_of
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyp_core.experiment import ExperimentConfig, SelectionPolicy, compare_runs, parse_mix
from polyp_core.tasks import TASKS, train_defaults
from polyp_core.training import TrainConfig
from polyp_core.experiment import ExperimentPlan, plan_experiment, run_experiment
from polyp_core.review.accounts import Person
from polyp_core.runs import load_run
from polyp_core.forms import Field, Form, names_text, of
from polyp_core.validation import InvalidRequest, Problem, number, whole
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

if TYPE_CHECKING:
    from polyp_core.executors import Executor
    from polyp_core.progress import CancelToken, Progress

AUTO = "auto"
#: the working sizes the Retrain tab offers: 128 (a CPU), 224 (the classifier's ImageNet size),
#: 256 and 352 (the segmentation papers' sizes; 352 is PraNet's)
WORKING_SIZES = (128, 224, 256, 352)


def _folds_text(folds: int | None) -> str:
    return AUTO if folds is None else str(folds)


def _optional(values: tuple) -> str | None:
    return names_text(values) or None


def _per_task(name: str) -> str:
    """Each task's default of a ``TrainConfig`` field, for ``--help``: its own or the
    config's."""
    base = vars_of(TrainConfig())[name]
    return ", ".join(f"{t} {train_defaults(t).get(name, base):g}" for t in TASKS)


#: The retrain action, declared once: the CLI's options (``retrain --help``) and the Retrain
#: tab's widgets start from it; engine fields take their defaults and bounds from the request
#: that checks them (``TrainConfig``, ``ExperimentConfig``, ``SelectionPolicy``).
RETRAIN = Form("retrain", "baseline vs augmented over grouped folds and seeds", (
    Field("dataset", required=True, help="the real data set"),
    Field("scheme", help="three_class or ad_vs_rest (default: the data set's)"),
    of(ExperimentConfig, "name", help="a label for the run list"),
    of(ExperimentConfig, "task", help="classification (histology) or segmentation (a U-Net on "
                                      "the data set's masks; Dice and IoU per test image)"),
    # the arms
    Field("baseline_only", False, "train the baseline alone (no synthetic images)", "flag"),
    Field("synthetic_arm", False, "segmentation: also train on the selected synthetic images "
                                  "alone", "flag"),
    Field("gated_arm", False, "also train with only the images each fold's segmentation gate "
                              "keeps (--min-gate-iou, 0.7 when unset): the gated - augmented "
                              "difference", "flag"),
    Field("expert_arm", False, "also train with only the images whose mask reviewers rated at "
                               "least --min-mask-quality: the expert - augmented difference",
          "flag"),
    of(ExperimentConfig, "real_fractions", kind="names", show=_optional, metavar="SHARES",
       help="segmentation: a learning curve, every arm again on these shares of each fold's "
            "real training groups (e.g. 0.25,0.5)"),
    of(ExperimentConfig, "against", kind="names", show=_optional, metavar="DATASETS",
       help="segmentation: also test every model on these other real data sets, comma-"
            "separated (other sources' frames with masks; each with its own intervals and "
            "paired differences)"),
    # how each network trains (TrainConfig)
    of(TrainConfig, "backbone", help="registry name (efficientnet_lite0 offline)"),
    of(TrainConfig, "image_size", option="--size",
       help="input size in px (the offered sizes: 128, 224, 256, 352; any from 32)"),
    of(TrainConfig, "imbalance", help="none, sampler (weighted sampling) or loss (weighted "
                                      "loss)"),
    of(TrainConfig, "epochs", help="at most this many epochs"),
    of(TrainConfig, "batch_size", default=None,
       help=f"images per step (default: the task's: {_per_task('batch_size')})"),
    of(TrainConfig, "lr", default=None,
       help=f"AdamW learning rate (default: the task's: {_per_task('lr')})"),
    of(TrainConfig, "patience", help="epochs without a better validation score before stopping"),
    of(TrainConfig, "augment", option="--no-augment", help="no augmentation of training images"),
    of(TrainConfig, "freeze_backbone", help="train the head only"),
    # the design
    of(ExperimentConfig, "seeds", kind="names", show=names_text,
       help="one network per seed and arm, the same seeds in every arm"),
    of(ExperimentConfig, "folds", kind="text", show=_folds_text, metavar="K|auto",
       help="grouped K-fold cross-validation over all images (K >= 2; folds stratified by "
            "class, grouped by patient/lesion/video; each fold trains on everything but its "
            "test part); 0: the data set's fixed split; auto: the most folds up to 10 that "
            "keep 3 groups of each class in every test fold, the fixed split when none does"),
    of(ExperimentConfig, "inner_valid", metavar="SHARE",
       help="with folds: share of each fold's training groups (at least 2 per class) that "
            "networks stop early on; 0: fixed epochs on the whole training part"),
    of(ExperimentConfig, "refit", help="with folds: choose the epoch count by inner grouped "
                                       "3-fold CV, then train on the whole training part"),
    of(ExperimentConfig, "cv_seed", help="how groups are dealt into folds"),
    of(ExperimentConfig, "seen_groups_train",
       help="with --folds: groups a generator learned from train in every fold and are never "
            "tested (instead of refusing the run)"),
    of(ExperimentConfig, "linear_probe",
       help="also fit logistic regression on the frozen backbone's features (C by inner "
            "grouped CV): the baseline a network must beat"),
    of(ExperimentConfig, "allow_small_test",
       help="run even when a class has fewer than 3 test groups (patients/lesions)"),
    of(ExperimentConfig, "allow_unknown_training_data",
       help="use images of imported generators whose training data are unknown (their leak "
            "cannot be checked; the run and its report warn)"),
    # which synthetic images join (SelectionPolicy)
    of(SelectionPolicy, "generators", kind="names", show=_optional,
       help="comma-separated generator ids (default: all)"),
    of(SelectionPolicy, "classes", kind="names", show=_optional,
       help="comma-separated classes to add (default: all)"),
    of(SelectionPolicy, "min_quality", help="only images rated at least this"),
    of(SelectionPolicy, "min_reviewers", help="by at least this many reviewers"),
    of(SelectionPolicy, "verdict", help="which real/synthetic verdicts an image may have"),
    of(SelectionPolicy, "unrated", help="images nobody rated"),
    of(SelectionPolicy, "studies", kind="names", show=_optional,
       help="comma-separated studies whose ratings count (default: all)"),
    of(SelectionPolicy, "exclude_memorised", kind="names", show=_optional,
       help="comma-separated diagnose run ids: leave out what they flagged as memorised"),
    of(SelectionPolicy, "target_mix", kind="text",
       help="'AD=0.4,SSA=0.3,HP=0.3' or 'balance'"),
    of(SelectionPolicy, "max_ratio", kind="float",
       help="at most this many synthetic per real image"),
    of(SelectionPolicy, "seed", field="selection_seed", help="how the selection draws"),
    of(SelectionPolicy, "min_gate_iou", kind="float",
       help="the segmentation gate: only images with masks that a U-Net trained on each "
            "fold's real training part finds at IoU >= this (e.g. 0.7)"),
    of(SelectionPolicy, "min_mask_quality",
       help="keep images whose mask reviewers rated at least this (mask studies)"),
))
#: Every field of a retrain request with its default (the form's).
DEFAULTS: dict[str, object] = RETRAIN.defaults()


def parse_folds(value: object) -> int | None:
    """``folds``: ``auto`` (or empty) is None, the most folds the data allow; else a whole
    number (0: the data set's fixed split)."""
    if value is None or str(value).strip().lower() in (AUTO, ""):
        return None
    try:
        return whole(value, "folds")
    except InvalidRequest:
        raise InvalidRequest("retrain", [Problem("folds", f"{value!r} is not a number of folds "
                                                          "or 'auto'")]) from None


def _names(text: object) -> tuple[str, ...]:
    return tuple(x.strip() for x in str(text or "").split(",") if x.strip())


def retrain_request(fields: Mapping[str, object]) -> ExperimentConfig:
    """The retrain request from plain values (form text, numbers, an argparse namespace's
    dict): unknown fields are refused, missing ones take :data:`DEFAULTS`.

    Raises:
        InvalidRequest: naming every bad field.
    """
    unknown = sorted(set(fields) - set(DEFAULTS))
    if unknown:
        raise InvalidRequest("retrain", [Problem(u, "is not a field of a retrain request")
                                         for u in unknown])
    f = {**DEFAULTS, **{k: v for k, v in fields.items() if v is not None}}
    if not f["dataset"]:
        raise InvalidRequest("retrain", [Problem("dataset", "choose a data set")])
    seeds = tuple(whole(s, "seeds") for s in _names(f["seeds"]))
    own = {**vars_of(TrainConfig()),
           **(train_defaults(str(f["task"])) if str(f["task"]) in TASKS else {})}
    batch = f["batch_size"] if f["batch_size"] not in (None, "") else own["batch_size"]
    lr = f["lr"] if f["lr"] not in (None, "") else own["lr"]
    train = TrainConfig(
        backbone=str(f["backbone"]), image_size=whole(f["image_size"], "image_size"),
        imbalance=str(f["imbalance"]), epochs=whole(f["epochs"], "epochs"),
        batch_size=whole(batch, "batch_size"), lr=number(lr, "lr"),
        patience=whole(f["patience"], "patience"), augment=bool(f["augment"]),
        freeze_backbone=bool(f["freeze_backbone"]))
    ratio, gate = f["max_ratio"], f["min_gate_iou"]
    policy = SelectionPolicy(
        generators=_names(f["generators"]), classes=_names(f["classes"]),
        min_quality=f["min_quality"] or None,
        min_reviewers=whole(f["min_reviewers"], "min_reviewers"), verdict=str(f["verdict"]),
        unrated=str(f["unrated"]), studies=_names(f["studies"]),
        exclude_memorised=_names(f["exclude_memorised"]),
        target_mix=parse_mix(str(f["target_mix"] or "") or None),
        max_ratio=number(ratio, "max_ratio") if ratio not in (None, "", 0) else None,
        seed=whole(f["selection_seed"], "selection_seed"),
        min_gate_iou=number(gate, "min_gate_iou") if gate not in (None, "") else None,
        min_mask_quality=f["min_mask_quality"] or None)
    return ExperimentConfig(
        dataset=str(f["dataset"]), scheme=f["scheme"] or None, train=train, seeds=seeds,
        policy=policy, arms=(("baseline",) if f["baseline_only"] else ("baseline", "augmented"))
        + (("gated",) if f["gated_arm"] else ()) + (("expert",) if f["expert_arm"] else ())
        + (("synthetic",) if f["synthetic_arm"] else ()),
        name=f["name"] or None, allow_small_test=bool(f["allow_small_test"]),
        linear_probe=bool(f["linear_probe"]), folds=parse_folds(f["folds"]),
        cv_seed=whole(f["cv_seed"], "cv_seed"), seen_groups_train=bool(f["seen_groups_train"]),
        inner_valid=number(f["inner_valid"], "inner_valid"), refit=bool(f["refit"]),
        allow_unknown_training_data=bool(f["allow_unknown_training_data"]),
        task=str(f["task"]),
        real_fractions=tuple(number(x, "real_fractions") for x in _names(f["real_fractions"])),
        against=_names(f["against"]))


def plan(db: Database, workspace: Workspace, person: Person,
         config: ExperimentConfig) -> ExperimentPlan:
    """The experiment's plan (folds, selections, leak checks, design), for an admin.

    Raises:
        PermissionDenied: not a live admin account.
        ValueError: what :func:`~polyp_core.experiment.plan_experiment` refuses.
    """
    authorise(db, person)
    return plan_experiment(db, workspace, config)


@dataclass(frozen=True)
class Started:
    """A retrain that passed its plan and was handed to a job runner."""

    job: str
    plan: ExperimentPlan


def start(db: Database, workspace: Workspace, person: Person, config: ExperimentConfig,
          submit: Callable[..., str], planned: ExperimentPlan | None = None,
          executor: Executor | None = None) -> Started:
    """Plan once (or take the ``planned`` a caller just showed), then hand that plan to a job:
    ``submit(kind, config_json, work, owner_id)`` is the caller's runner (the UI's background
    runner, or the CLI's in-thread one) and returns the job's id. Refusals come before
    anything is queued. ``executor``: where the trainings run (``polyp_core.executors``; this
    process when None); it is not part of the request: both store the same run."""
    authorise(db, person)
    planned = planned or plan_experiment(db, workspace, config)

    def work(progress: Progress, cancel: CancelToken) -> str:
        return run_experiment(db, workspace, config, progress, cancel, plan=planned,
                              executor=executor).run_id

    return Started(submit("retrain", config.to_json(), work, person.id or None), planned)


def runs(db: Database, person: Person, kind: str | None = "retrain") -> list[dict]:
    """Stored runs, newest first: id, kind, status, created (UTC) and a name."""
    from review_db import queries

    authorise(db, person)
    with db.session() as session:
        return [{"id": r.id, "kind": r.kind, "status": r.status,
                 "created": queries.as_utc(r.created), "config": r.config,
                 "name": r.config.get("name") or r.config.get("dataset", "")}
                for r in queries.list_runs(session, kind)]


def stored_run(db: Database, person: Person, run_id: str) -> dict:
    """A stored run: its config, image lists, results and folder.

    Raises:
        KeyError: no such run.
    """
    authorise(db, person)
    return load_run(db, run_id)


def compare(db: Database, person: Person, run_a: str, run_b: str) -> dict:
    """What differs between two stored runs of one task (``compare-runs``)."""
    authorise(db, person)
    return compare_runs(db, run_a, run_b)
