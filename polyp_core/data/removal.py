"""Deleting a data set, and what keeps one from being deleted or replaced.

A data set that a study shows or a stored run was computed on is evidence: deleting or
replacing it would leave results that cannot be traced or redone. Such a data set is kept,
and the answer names the studies and runs that use it.
"""

from __future__ import annotations

import shutil

from polyp_core.errors import StudioError
from polyp_core.workspace import Workspace, check_name
from review_db import queries
from review_db.database import Database


class DatasetInUse(StudioError):
    """A data set used by studies or runs; ``users`` names them."""

    def __init__(self, name: str, users: dict[str, list[str]], doing: str) -> None:
        self.users = users
        parts = [f"{kind} {', '.join(names)}" for kind, names in users.items() if names]
        super().__init__(f"data set {name!r} cannot be {doing}: used by " + "; ".join(parts))


def dataset_users(db: Database, name: str) -> dict[str, list[str]]:
    """The studies that show images of data set ``name`` and the runs computed on it."""
    with db.session() as session:
        studies = queries.studies_using_dataset(session, name)
        runs = [r.id for r in queries.list_runs(session) if (r.config or {}).get("dataset") == name]
    return {"studies": sorted(studies), "runs": sorted(runs)}


def check_replaceable(db: Database, name: str, doing: str = "replaced") -> None:
    """Raise ``DatasetInUse`` when studies or runs use data set ``name``."""
    users = dataset_users(db, name)
    if any(users.values()):
        raise DatasetInUse(name, users, doing)


def delete_dataset(db: Database, workspace: Workspace, name: str) -> list[str]:
    """Delete a data set that nothing uses: its manifest folder, the copy of its images the
    studio made (``sources/<name>``: archives and the phantom; a folder imported in place is
    the user's and stays), and its image records. Returns what was removed."""
    check_name(name)
    if name not in workspace.datasets():
        raise KeyError(f"no data set named {name!r} (data sets: "
                       f"{', '.join(workspace.datasets()) or 'none'})")
    check_replaceable(db, name, "deleted")
    removed = [str(workspace.dataset_dir(name))]
    shutil.rmtree(workspace.dataset_dir(name))
    owned = workspace.sources_dir / name
    if owned.is_dir():
        shutil.rmtree(owned)
        removed.append(str(owned))
    with db.session() as session:
        count = queries.delete_real_images(session, name)
    removed.append(f"{count} image record(s)")
    return removed
