"""The synthetic pool as an admin keeps it: which generators it holds, and images made
elsewhere imported into it."""

from __future__ import annotations

from polyp_core.external import ImportedSynthetic, SyntheticImport
from polyp_core.progress import Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


def generators(db: Database, person: Person) -> list[str]:
    """The generators with at least one image in the pool."""
    authorise(db, person)
    with db.session() as session:
        return sorted({i.provenance.generator for i in queries.synthetic_images(session)})


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
