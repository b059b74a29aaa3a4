"""Real data: import a folder or a zip, switch a data set's label scheme, delete one nothing
uses (admins, or the terminal's operator)."""

from __future__ import annotations

from polyp_core.data.importer import ImportConfig, ImportResult, import_dataset
from polyp_core.data.manifest import Manifest
from polyp_core.progress import Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database


def import_data(db: Database, workspace: Workspace, person: Person, config: ImportConfig,
                progress: Progress = no_progress, archive: bool | None = None) -> ImportResult:
    """Import ``config.source``: a folder in place, or a zip (``archive``; by default when the
    name ends in ``.zip``) unpacked into the workspace within its limits. Replacing a data set
    (``overwrite``) is refused while a study or a stored run uses it.

    Raises:
        PermissionDenied: not a live admin account.
        DatasetImportError: naming every bad file, row or field; nothing is written.
    """
    authorise(db, person)
    if config.overwrite and (config.name or "") in workspace.datasets():
        from polyp_core.data.removal import check_replaceable

        check_replaceable(db, config.name)  # evidence is not replaced
    if archive if archive is not None else str(config.source).lower().endswith(".zip"):
        from polyp_core.data.archive import import_archive

        return import_archive(workspace, config, progress=progress)
    return import_dataset(workspace, config, progress=progress)


def set_scheme(db: Database, workspace: Workspace, person: Person, name: str,
               scheme: str) -> Manifest:
    """Make ``scheme`` the data set's active label scheme (raw labels are kept)."""
    authorise(db, person)
    return workspace.set_scheme(name, scheme)


def delete(db: Database, workspace: Workspace, person: Person, name: str) -> list[str]:
    """Delete a data set no study shows and no stored run was computed on; what was removed."""
    from polyp_core.data.removal import delete_dataset

    authorise(db, person)
    return list(delete_dataset(db, workspace, name))
