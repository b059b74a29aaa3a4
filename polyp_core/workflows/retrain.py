"""Retrain and compare: one request parsed once for both front ends, checked, authorised and
planned once; the job runs the plan it was given."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyp_core.classify import (ClassifierTrainConfig, ExperimentConfig, SelectionPolicy,
                                 parse_mix)
from polyp_core.classify.experiment import ExperimentPlan, plan_experiment, run_experiment
from polyp_core.review.accounts import Person
from polyp_core.validation import InvalidRequest, Problem, number, whole
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

if TYPE_CHECKING:
    from polyp_core.progress import CancelToken, Progress

AUTO = "auto"
#: Every field of a retrain request with its default: the CLI's options and the Retrain tab's
#: widgets start from these, so "auto" and every default mean one thing in both.
DEFAULTS: dict[str, object] = {
    "dataset": None, "scheme": None, "name": None, "task": "classification",
    # segmentation's extra arms: synthetic images alone, a learning curve, a second source
    "synthetic_arm": False, "real_fractions": None, "against": None,
    # the gate paper's comparison: the same synthetic images with and without the gate
    "gated_arm": False, "expert_arm": False, "min_mask_quality": None,
    # how each classifier trains (ClassifierTrainConfig)
    "backbone": "efficientnet_lite0", "image_size": 224, "imbalance": "sampler", "epochs": 15,
    "batch_size": 32, "lr": 3e-4, "patience": 5, "augment": True, "freeze_backbone": False,
    # the design
    "seeds": "0,1,2", "baseline_only": False, "linear_probe": False, "allow_small_test": False,
    "folds": AUTO, "cv_seed": 0, "seen_groups_train": False, "inner_valid": 0.15,
    "refit": False, "allow_unknown_training_data": False,
    # which synthetic images join (SelectionPolicy)
    # (None: every generator, class and study; no memorisation run; no target mix; no cap)
    "generators": None, "classes": None, "min_quality": None, "min_reviewers": 1,
    "verdict": "any", "unrated": "include", "studies": None, "exclude_memorised": None,
    "target_mix": None, "max_ratio": None, "selection_seed": 0, "min_gate_iou": None,
}


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
    train = ClassifierTrainConfig(
        backbone=str(f["backbone"]), image_size=whole(f["image_size"], "image_size"),
        imbalance=str(f["imbalance"]), epochs=whole(f["epochs"], "epochs"),
        batch_size=whole(f["batch_size"], "batch_size"), lr=number(f["lr"], "lr"),
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
        against=str(f["against"]).strip() or None if f["against"] else None)


def plan(db: Database, workspace: Workspace, person: Person,
         config: ExperimentConfig) -> ExperimentPlan:
    """The experiment's plan (folds, selections, leak checks, design), for an admin.

    Raises:
        PermissionDenied: not a live admin account.
        ValueError: what :func:`~polyp_core.classify.experiment.plan_experiment` refuses.
    """
    authorise(db, person)
    return plan_experiment(db, workspace, config)


@dataclass(frozen=True)
class Started:
    """A retrain that passed its plan and was handed to a job runner."""

    job: str
    plan: ExperimentPlan


def start(db: Database, workspace: Workspace, person: Person, config: ExperimentConfig,
          submit: Callable[..., str], planned: ExperimentPlan | None = None) -> Started:
    """Plan once (or take the ``planned`` a caller just showed), then hand that plan to a job:
    ``submit(kind, config_json, work, owner_id)`` is the caller's runner (the UI's background
    runner, or the CLI's in-thread one) and returns the job's id. Refusals come before
    anything is queued."""
    authorise(db, person)
    planned = planned or plan_experiment(db, workspace, config)

    def work(progress: Progress, cancel: CancelToken) -> str:
        return run_experiment(db, workspace, config, progress, cancel, plan=planned).run_id

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
