"""Real data: import a folder or a zip, switch a data set's label scheme, delete one nothing
uses (admins, or the terminal's operator)."""

from __future__ import annotations

from collections.abc import Mapping

from polyp_core.data.importer import ImportConfig, ImportResult, import_dataset
from polyp_core.data.manifest import Manifest
from polyp_core.data.sources import LAYOUTS
from polyp_core.data.splits import SPLIT_METHODS
from polyp_core.forms import Form, of
from polyp_core.progress import Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.validation import InvalidRequest, Problem
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database
from polyp_core.data.labels import SCHEMES


def _fractions(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


#: The import action, declared once: the CLI's options (``import --help``) and the Data tab's
#: import start from it; defaults and bounds are ``ImportConfig``'s, the layouts and split
#: methods the importer's.
IMPORT = Form("import", "import a data set (folder or CSV) into the workspace", (
    of(ImportConfig, "source", positional=True,
       help="hospital-layout folder, class-per-folder tree, CSV, or a zip of one (unpacked into "
            "the workspace, with limits)"),
    of(ImportConfig, "name", kind="text", help="the data set's name (default: the folder's)"),
    of(ImportConfig, "layout", choices=LAYOUTS, help="how the source is laid out"),
    of(ImportConfig, "labels_csv", help="the label table, if the folder has several CSVs"),
    *(of(ImportConfig, f"{column}_column", kind="text", help=f"name of the {column} column")
      for column in ("id", "label", "group", "path", "mask")),
    of(ImportConfig, "split", choices=SPLIT_METHODS, help="how images are split"),
    of(ImportConfig, "split_fractions", kind="names", show=_fractions, option="--fractions",
       help="train,valid,test"),
    of(ImportConfig, "seed", help="the split's seed"),
    of(ImportConfig, "scheme", kind="text", choices=tuple(SCHEMES),
       help="label scheme (default: the finest the labels allow)"),
    of(ImportConfig, "overwrite",
       help="replace a data set of this name (refused if a study or run uses it)"),
))


def import_request(fields: Mapping[str, object], label_aliases: tuple = (),
                   cache_sizes: tuple[int, ...] = ()) -> ImportConfig:
    """The import request from plain values (form text, an argparse namespace's dict);
    missing or empty fields take :data:`IMPORT`'s defaults.

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = IMPORT.parse(fields)
    try:  # the request checks the numbers themselves (finite, 0..1, three of them)
        f["split_fractions"] = tuple(float(x) for x in str(f["split_fractions"]).split(","))
    except ValueError:
        raise InvalidRequest("import", [Problem("split_fractions", f"{f['split_fractions']!r} "
                                                "is not three numbers")],
                             IMPORT.options()) from None
    f["source"] = str(f["source"] or "")
    return ImportConfig(**f, label_aliases=tuple(label_aliases), cache_sizes=tuple(cache_sizes))

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
