"""Importing a data set from a zip archive: checked before anything is written, extracted into
staging, moved into place in one rename, and removed again if the import fails.

The archive's own directory is read first and every entry checked against the limits (total
uncompressed size, compression ratio, file count, path depth) and for what no data set needs
(absolute paths, ``..``, symbolic links, duplicate names): a zip bomb is refused from its
directory in milliseconds. Extraction then counts the bytes it really writes, so a directory
that lies about sizes is caught too. A source is never written into: an archive whose name is
taken (as a source folder or a data set) is refused, naming it.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from polyp_core.errors import DatasetImportError, Problem
from polyp_core.progress import Progress, no_progress
from polyp_core.settings import numbers_from_env
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace, check_name

if TYPE_CHECKING:
    from polyp_core.data.importer import ImportConfig, ImportResult


@checked
@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may hold. ``from_env`` reads ``STUDIO_ARCHIVE_<FIELD>``."""

    max_total_bytes: int = rule(20 * 2**30, lo=1)
    max_ratio: float = rule(200.0, above=0.0)  # uncompressed / compressed, per entry and in all
    max_files: int = rule(200_000, lo=1)
    max_depth: int = rule(12, lo=1)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ArchiveLimits:
        return numbers_from_env(cls, "STUDIO_ARCHIVE_", environ)


def _fail(archive: Path, what: str) -> DatasetImportError:
    return DatasetImportError([Problem(str(archive), what)], str(archive))


def check_archive(archive: Path, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The archive's file entries, once every entry has passed the limits and rules.

    Raises:
        DatasetImportError: naming the archive, the entry and the limit it breaks.
    """
    try:
        with zipfile.ZipFile(archive) as handle:
            entries = handle.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail(archive, f"not a readable zip archive ({exc})") from None
    files, seen, total, packed = [], set(), 0, 0
    for info in entries:
        name = info.filename
        path = PurePosixPath(name)
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or \
                ".." in path.parts or "\\" in name:
            raise _fail(archive, f"entry {name!r} points outside the archive's folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _fail(archive, f"entry {name!r} is a symbolic link; data sets need none")
        if len(path.parts) > limits.max_depth:
            raise _fail(archive, f"entry {name!r} is {len(path.parts)} folders deep; the limit "
                                 f"is {limits.max_depth} (STUDIO_ARCHIVE_MAX_DEPTH)")
        if info.is_dir():
            continue
        key = name.casefold()
        if key in seen:
            raise _fail(archive, f"entry {name!r} is in the archive twice")
        seen.add(key)
        files.append(info)
        total += info.file_size
        packed += info.compress_size
        if info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise _fail(archive, f"entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}"
                                 f"-fold; the limit is {limits.max_ratio:g} "
                                 "(STUDIO_ARCHIVE_MAX_RATIO): a zip bomb?")
    if len(files) > limits.max_files:
        raise _fail(archive, f"{len(files)} files; the limit is {limits.max_files} "
                             "(STUDIO_ARCHIVE_MAX_FILES)")
    if total > limits.max_total_bytes:
        raise _fail(archive, f"expands to {total / 2**30:.2f} GiB; the limit is "
                             f"{limits.max_total_bytes / 2**30:.2f} GiB "
                             "(STUDIO_ARCHIVE_MAX_TOTAL_BYTES)")
    if total > limits.max_ratio * max(packed, 1):
        raise _fail(archive, f"expands {total / max(packed, 1):.0f}-fold in all; the limit is "
                             f"{limits.max_ratio:g} (STUDIO_ARCHIVE_MAX_RATIO)")
    return files


def extract(archive: Path, files: list[zipfile.ZipInfo], folder: Path,
            limits: ArchiveLimits, progress: Progress = no_progress) -> None:
    """Write the checked entries below ``folder``, counting the bytes really written."""
    written = 0
    with zipfile.ZipFile(archive) as handle:
        for index, info in enumerate(files):
            target = folder / PurePosixPath(info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with handle.open(info) as source, open(target, "wb") as sink:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > min(limits.max_total_bytes, 2 * max(
                            sum(f.file_size for f in files), 1)):
                        raise _fail(archive, "holds more bytes than its directory says; refused")
                    sink.write(chunk)
            progress(index + 1, len(files), f"extracted {index + 1}/{len(files)} files")


def import_archive(workspace: Workspace, config: ImportConfig, limits: ArchiveLimits | None = None,
                   progress: Progress = no_progress) -> ImportResult:
    """Import ``config.source`` (a zip) as a new source ``sources/<name>`` and data set
    ``<name>`` (default: the archive's stem). Nothing is left behind on failure.

    Args:
        config: an ``ImportConfig`` whose ``source`` is the archive.

    Raises:
        DatasetImportError: a broken or oversized archive, a name already taken, or any
            problem of the import itself (naming the file and row).
    """
    from polyp_core.data.importer import import_dataset

    limits = limits or ArchiveLimits.from_env()
    archive = Path(config.source)
    name = check_name(config.name or archive.stem)
    target = workspace.sources_dir / name
    if target.exists() or name in workspace.datasets():
        raise _fail(archive, f"a source or data set named {name!r} already exists; an import "
                             "never writes into one: choose another name")
    files = check_archive(archive, limits)
    staging = workspace.staging_dir / f"archive-{name}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        extract(archive, files, staging, limits, progress)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)  # one rename: the source appears whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entries = [p for p in target.iterdir() if not p.name.startswith(("__", "."))]
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else target
    try:
        return import_dataset(workspace, replace(config, source=str(root), name=name,
                                                 overwrite=False), progress=progress)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # nothing refers to a source that never imported
        raise
