"""Export a training set (``polyp_core.export``) from the CLI or the Retrain tab: one request,
checked before anything is written; in the tab a job that ends with a zip to download."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.experiment import SelectionPolicy
from polyp_core.export import FORMATS, ExportConfig, choose, export
from polyp_core.review.accounts import Person
from polyp_core.validation import whole
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

if TYPE_CHECKING:
    from polyp_core.progress import CancelToken, Progress


def _names(text: object) -> tuple[str, ...]:
    return tuple(p.strip() for p in str(text or "").split(",") if p.strip())


def export_request(fields: Mapping[str, object]) -> ExportConfig:
    """The request from CLI or form values: ``to``, ``out``, ``dataset`` or ``run``/``arm``/
    ``fold``, and the policy's fields (``generators``, ``min_quality``, ``min_reviewers``,
    ``verdict``, ``unrated``, ``exclude_memorised``)."""
    f = dict(fields)
    policy = SelectionPolicy(
        generators=_names(f.get("generators")), min_quality=f.get("min_quality") or None,
        min_reviewers=whole(f.get("min_reviewers") or 1, "min_reviewers"),
        verdict=str(f.get("verdict") or "any"), unrated=str(f.get("unrated") or "include"),
        exclude_memorised=_names(f.get("exclude_memorised")))
    return ExportConfig(
        to=str(f.get("to") or "nnunet"), out=str(f.get("out") or ""),
        dataset=f.get("dataset") or None, policy=policy, real_only=bool(f.get("real_only")),
        run=f.get("run") or None, arm=str(f.get("arm") or "augmented"),
        fold=whole(f.get("fold") or 1, "fold"), folds=whole(f.get("folds") or 5, "folds"),
        seed=whole(f.get("seed") or 0, "seed"), number=whole(f.get("number") or 501, "number"),
        name=str(f.get("name") or "Polyps"), licence=f.get("licence") or None,
        with_reviewers=bool(f.get("with_reviewers")))


def start(db: Database, workspace: Workspace, person: Person, config: ExportConfig,
          submit: Callable[..., str]) -> str:
    """Check what would be exported (refusals before the job), then export as a job into
    ``workspace/exports/<name>`` and zip it; the job's message is the zip's path."""
    authorise(db, person)
    choose(db, workspace, config)

    def work(progress: Progress, cancel: CancelToken) -> str:
        export(db, workspace, config, progress)
        folder = Path(config.out)
        return shutil.make_archive(str(folder), "zip", root_dir=folder)

    return submit("export", {"to": config.to, "run": config.run, "arm": config.arm,
                             "fold": config.fold, "dataset": config.dataset}, work,
                  person.id or None)


def tab_export(workspace: Workspace, run: str, arm: str, fold: int, to: str) -> ExportConfig:
    """The Retrain tab's export of a run's arm and fold, into a new folder of ``exports/``."""
    import datetime as dt

    if to not in FORMATS:
        raise ValueError(f"`to`: one of {', '.join(FORMATS)}")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = workspace.root / "exports" / f"{run}-{arm}-fold{fold}-{to}-{stamp}"
    return export_request({"run": run, "arm": arm, "fold": fold, "to": to, "out": str(out)})
