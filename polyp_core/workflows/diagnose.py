"""Diagnostics runs as an admin reads them: the stored runs and the images a run names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from polyp_core.diagnostics.report import DiagnoseConfig, DiagnoseResult, diagnose
from polyp_core.progress import Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workflows.retrain import runs as stored_runs
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


def _check(workspace: Workspace, config: DiagnoseConfig) -> None:
    workspace.load_manifest(config.dataset)  # an unknown data set: refused at once
    if config.against and config.against not in workspace.datasets():
        raise ValueError(f"second real source: no data set {config.against!r}")


def run(db: Database, workspace: Workspace, person: Person, config: DiagnoseConfig,
        progress: Progress = no_progress) -> DiagnoseResult:
    """KID/FID per class pair, near copies, projections: a stored diagnostics run."""
    authorise(db, person)
    _check(workspace, config)
    return diagnose(db, workspace, config, progress=progress)


def start(db: Database, workspace: Workspace, person: Person, config: DiagnoseConfig,
          submit: Callable[..., str]) -> str:
    """Check, then hand the run to a job: ``submit(kind, config_json, work, owner_id)``
    returns the job's id."""
    authorise(db, person)
    _check(workspace, config)
    return submit("diagnose", {"dataset": config.dataset, "generator": config.generator,
                               "against": config.against},
                  lambda progress, cancel: diagnose(db, workspace, config, progress).run_id,
                  person.id or None)


def runs(db: Database, person: Person) -> list[dict]:
    return stored_runs(db, person, "diagnose")


@dataclass(frozen=True)
class ImageFile:
    sha256: str
    path: str
    kind: str


def images(db: Database, person: Person, shas: list[str]) -> dict[str, ImageFile]:
    """The stored images among ``shas`` (a near-copy pair shows both), by SHA-256."""
    authorise(db, person)
    out = {}
    with db.session() as session:
        for sha in shas:
            image = queries.image_by_sha(session, sha)
            if image is not None:
                out[sha] = ImageFile(image.sha256, image.path, image.kind)
    return out


def stored_run(db: Database, person: Person, run_id: str) -> dict:
    """A stored diagnose run: its config, image lists, results and folder.

    Raises:
        KeyError: no such run.
    """
    from polyp_core.runs import load_run

    authorise(db, person)
    return load_run(db, run_id)
