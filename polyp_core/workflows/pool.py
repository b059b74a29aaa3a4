"""The synthetic pool as an admin keeps it: which generators it holds, and images made
elsewhere imported into it."""

from __future__ import annotations

from collections.abc import Callable

from polyp_core.external import ImportedSynthetic, SyntheticImport
from polyp_core.pool import (PoolFilter, PoolItem, PoolPage, Removal, pool_item, pool_page,
                             remove_from_pool)
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.segment.gate import GateConfig, GateResult, run_gate
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


def generators(db: Database, person: Person) -> list[str]:
    """The generators with at least one image in the pool."""
    authorise(db, person)
    with db.session() as session:
        return sorted({i.provenance.generator for i in queries.synthetic_images(session)})


def page(db: Database, person: Person, pool_filter: PoolFilter, number: int = 0,
         per_page: int = 24) -> PoolPage:
    """One page of the synthetic pool, newest first, with provenance, ratings and studies."""
    authorise(db, person)
    return pool_page(db, pool_filter, number, per_page)


def item(db: Database, person: Person, sha256: str) -> PoolItem:
    """One synthetic image with its full provenance, every rating and its studies."""
    authorise(db, person)
    return pool_item(db, sha256)


def remove(db: Database, workspace: Workspace, person: Person, shas: list[str]) -> Removal:
    """Remove images no study and no stored run uses; the others are kept, each with why."""
    authorise(db, person)
    return remove_from_pool(db, workspace, list(shas))


def import_synthetic(db: Database, workspace: Workspace, person: Person,
                     request: SyntheticImport,
                     progress: Progress = no_progress) -> ImportedSynthetic:
    """Import an external generator's images (a folder or a zip) into the pool, with their
    masks, manifest rows and the generator's declared training data.

    Raises:
        PermissionDenied: not a live admin account.
        DatasetImportError: naming every bad file and manifest row; nothing is imported.
    """
    from polyp_core.external import import_synthetic as run_import

    authorise(db, person)
    return run_import(db, workspace, request, progress)


def gate(db: Database, workspace: Workspace, person: Person, config: GateConfig,
         progress: Progress = no_progress, cancel: CancelToken | None = None) -> GateResult:
    """Run the segmentation gate over the pool's images with masks (the terminal's ``gate``)."""
    authorise(db, person)
    return run_gate(db, workspace, config, progress, cancel)


def gate_work(db: Database, workspace: Workspace, person: Person, config: GateConfig,
              holder: dict) -> Callable[[Progress, CancelToken], str]:
    """The Pool tab's gate job: the data set is checked now; the job leaves the result in
    ``holder["result"]``."""
    authorise(db, person)
    workspace.load_manifest(config.dataset)

    def work(progress: Progress, cancel: CancelToken) -> str:
        holder["result"] = run_gate(db, workspace, config, progress, cancel)
        return f"gate {holder['result'].gate}: {len(holder['result'].scores)} image(s) scored"

    return work
