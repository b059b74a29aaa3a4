"""Synthetic images made elsewhere: an external generator's output imported into the pool.

A folder (or a zip, through the data import's archive checks) holds the images, optional
masks with the same stem (``masks/<stem>.*``, or a ``mask`` column), and a manifest
(``manifest.csv`` or ``manifest.jsonl``) with one row per image::

    file,class,seed,prompt,checkpoint,background,cfg_note
    images/0001.png,AD,7,"an adenoma",step-4000,phantom:f0012,...

``file`` and ``class`` are required; ``mask``, ``seed``, ``prompt``, ``negative_prompt``,
``checkpoint``, ``steps``, ``guidance``, ``scheduler`` and ``background`` (the real frame an
inpainted image was made on: ``DATASET:ID`` or its SHA-256) are read when present, and every
other column is kept with the image.

The generator is registered once (``external/<name>/generator.json``): name, version, source,
licence and what it learned from (``DATASET:SPLIT[,SPLIT]``, ``DATASET:images=FILE`` of ids
or SHA-256s, ``DATASET:groups=FILE``, or ``unknown``), resolved to the SHA-256 of those
frames, so retrain's leak checks treat it like the studio's own generators
(:mod:`polyp_core.generation.lineage`). Every check runs before anything is written; a single
problem imports nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.data.images import load_mask, load_rgb, pixel_sha256, sha256_file
from polyp_core.data.labels import canonical_label
from polyp_core.data.tables import normalise_column, read_table
from polyp_core.errors import DatasetImportError, ImageDecodeError, Problem
from polyp_core.files import atomic_write
from polyp_core.pool import ProvenanceRecord, mask_path, mask_png, png_bytes
from polyp_core.progress import Progress, no_progress
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace, check_name
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
KNOWN_COLUMNS = ("file", "class", "mask", "seed", "prompt", "negative_prompt", "checkpoint",
                 "steps", "guidance", "scheduler", "background")
FILE_ALIASES = ("file", "image", "path", "filename")
CLASS_ALIASES = ("class", "label", "class_label")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
UNKNOWN = "unknown"


def external_dir(workspace: Workspace) -> Path:
    return workspace.root / "external"


def record_path(workspace: Workspace, name: str) -> Path:
    return external_dir(workspace) / check_name(name, "generator") / "generator.json"


def read_record(workspace: Workspace, name: str) -> dict | None:
    """The registration of external generator ``name``, or None when there is none."""
    path = record_path(workspace, name)
    return json.loads(path.read_text()) if path.is_file() else None


@checked
@dataclass(frozen=True)
class SyntheticImport:
    """One import of an external generator's images.

    Attributes:
        source: the folder (or zip) holding the manifest, images and masks.
        generator: the name the images carry in the pool (a new name, or an external
            generator imported before with the same declaration).
        dataset: the workspace's real data set the images complement: their classes must be
            classes it has, and retrain checks them against its folds.
        trained_on: what the generator learned from (see the module text); ``unknown`` makes
            retrain refuse its images unless ``allow_unknown_training_data`` is given.
        version, source_note, licence: the generator's version, where it comes from (a URL or
            citation) and its licence, recorded as given.
    """

    source: str = rule(text=True)
    generator: str
    dataset: str
    trained_on: str = rule(UNKNOWN, text=True)
    version: str | None = None
    source_note: str | None = rule(None, flag="--source-note")
    licence: str | None = None


@dataclass(frozen=True)
class _Row:
    number: int
    file: Path
    label: str
    rgb: np.ndarray
    file_sha: str
    png: bytes
    mask: np.ndarray | None
    background: dict | None
    fields: dict
    other: dict


@dataclass
class ImportedSynthetic:
    generator: str
    import_id: str
    images: list[str] = field(default_factory=list)  # pool SHA-256, in manifest order
    masks: int = 0
    record: dict = field(default_factory=dict)

    @property
    def declared_training(self) -> str | None:
        """What the generator was declared to have learned from, with how many frames that
        is; None when it was declared unknown."""
        trained = self.record.get("trained_on", {})
        if trained.get("unknown"):
            return None
        return f"{trained.get('declared')} ({len(trained.get('image_sha256', []))} frames)"


def _read_manifest(folder: Path) -> tuple[str, list[tuple[int, dict]]]:
    """The manifest's name and its rows as ``(row number, {normalised column: value})``."""
    found = [folder / n for n in MANIFEST_NAMES if (folder / n).is_file()]
    if not found:
        raise DatasetImportError([Problem(str(folder), "no manifest: expected " + " or ".join(
            MANIFEST_NAMES) + " beside the images")], str(folder))
    if len(found) > 1:
        raise DatasetImportError([Problem(str(folder), "both manifest.csv and manifest.jsonl; "
                                          "keep one")], str(folder))
    path = found[0]
    if path.suffix == ".csv":
        try:
            table = read_table(path)
        except ValueError as error:
            raise DatasetImportError([Problem(path.name, f"cannot read the table ({error})")],
                                     str(folder)) from None
        if not table.rows:
            raise DatasetImportError([Problem(path.name, "the table has a header but no rows")],
                                     str(folder))
        return path.name, [(table.first_row + k, row) for k, row in enumerate(table.rows)]
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetImportError([Problem(f"{path.name} line {number}",
                                              f"not a JSON object ({error.msg})")], str(folder)) from None
        if not isinstance(value, dict):
            raise DatasetImportError([Problem(f"{path.name} line {number}", "not a JSON object")],
                                     str(folder))
        rows.append((number, {normalise_column(str(k)): v for k, v in value.items()}))
    if not rows:
        raise DatasetImportError([Problem(path.name, "no rows")], str(folder))
    return path.name, rows


def _column(row: dict, aliases: tuple[str, ...]) -> str | None:
    for alias in aliases:
        value = row.get(alias)
        if value not in (None, ""):
            return str(value).strip()
    return None


def _inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` when it stays inside ``folder`` (no ``..``, no absolute path)."""
    if not name or PurePosixPath(name.replace("\\", "/")).is_absolute():
        return None
    path = (folder / name.replace("\\", "/")).resolve()
    return path if path.is_relative_to(folder.resolve()) else None


def _mask_file(folder: Path, image: Path, named: str | None) -> Path | None:
    if named:
        return _inside(folder, named)
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / "masks" / f"{image.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _real_frames(workspace: Workspace) -> dict[str, dict]:
    """Every real frame of every data set here, read once, by its SHA-256 and by
    ``DATASET:ID`` (how a background may be named): ``{dataset, id, sha256, group}``."""
    frames: dict[str, dict] = {}
    for name in workspace.datasets():
        for item in workspace.load_manifest(name).items:
            frame = {"dataset": name, "id": item.id, "sha256": item.sha256, "group": item.group}
            frames.setdefault(item.sha256, frame)
            if item.pixels:  # the same picture in other bytes (a re-saved copy)
                frames.setdefault(f"pixels:{item.pixels}", frame)
            frames[f"{name}:{item.id}"] = frame
    return frames


def resolve_training(workspace: Workspace, declared: str, base: Path) -> tuple[dict, list[Problem]]:
    """The ``trained_on`` record of a declaration: the data set, what was declared, and the
    SHA-256 of every frame it names. ``images=``/``groups=`` files are read relative to
    ``base`` (the import folder) when not absolute."""
    if declared.strip().lower() == UNKNOWN:
        return {"unknown": True, "declared": UNKNOWN}, []
    where = "trained_on"
    name, _, what = declared.partition(":")
    if not what:
        return {}, [Problem(where, f"{declared!r}: give DATASET:SPLIT[,SPLIT], "
                                   "DATASET:images=FILE, DATASET:groups=FILE or unknown")]
    try:
        manifest = workspace.load_manifest(name)
    except (KeyError, ValueError) as error:
        return {}, [Problem(where, str(error.args[0] if error.args else error))]
    record = {"dataset": name, "declared": declared}
    if what.startswith(("images=", "groups=")):
        kind, _, file_name = what.partition("=")
        path = Path(file_name) if Path(file_name).is_absolute() else base / file_name
        if not path.is_file():
            return {}, [Problem(where, f"{kind} file {file_name!r} not found")]
        wanted = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        problems, shas = [], set()
        for number, value in enumerate(wanted, 1):
            if not value:
                continue
            if kind == "images":
                hits = [i.sha256 for i in manifest.items if value in (i.id, i.sha256)]
            else:
                hits = [i.sha256 for i in manifest.items if i.group == value]
            if not hits:
                problems.append(Problem(f"{path.name} line {number}",
                                        f"{value!r} is not an image{' group' * (kind == 'groups')} "
                                        f"of data set {name!r}"))
            shas.update(hits)
        record[kind] = file_name
        record["image_sha256"] = sorted(shas)
        return record, problems
    splits = [s.strip() for s in what.split(",")]
    bad = [s for s in splits if s not in ("train", "valid", "test")]
    if bad:
        return {}, [Problem(where, f"split(s) {', '.join(map(repr, bad))}: splits are train, "
                                   "valid and test")]
    record["splits"] = splits
    record["image_sha256"] = sorted(i.sha256 for i in manifest.items if i.split in splits)
    return record, []


def _number(value: object, kind: type, where: str, name: str,
            problems: list[Problem]) -> int | float | None:
    if value in (None, ""):
        return None
    try:
        number = kind(float(value)) if kind is int and float(value).is_integer() else kind(value)
        if not np.isfinite(number):
            raise ValueError
        return number
    except (TypeError, ValueError):
        problems.append(Problem(where, f"{name} {value!r} is not a{'n integer' if kind is int else ' number'}"))
        return None


def _check_rows(workspace: Workspace, db: Database, folder: Path, manifest_name: str,
                rows: list[tuple[int, dict]], classes: set[str], frames: dict,
                progress: Progress) -> tuple[list[_Row], list[Problem]]:
    """Check every manifest row (see :func:`_check_row`); images given twice are found across
    rows."""
    problems: list[Problem] = []
    checked_rows: list[_Row] = []
    first_of: dict[str, int] = {}
    with db.session() as session:
        for index, (number, row) in enumerate(rows):
            checked = _check_row(session, workspace, folder, f"{manifest_name} row {number}",
                                 number, row, classes, frames, first_of, problems)
            if checked is not None:
                checked_rows.append(checked)
            progress(index + 1, len(rows), f"checked {index + 1}/{len(rows)} images")
    return checked_rows, problems


def _check_row(session: Session, workspace: Workspace, folder: Path, where: str, number: int,
               row: dict, classes: set[str], frames: dict, first_of: dict[str, int],
               problems: list[Problem]) -> _Row | None:
    """One manifest row: its file inside the folder and decodable, its class known, not a real
    frame, not in the pool, not given before (``first_of``: SHA-256 -> row), its mask of the
    image's size, its background frame known, its numbers numbers. Problems join
    ``problems``; None when the image itself cannot be read."""
    name, label = _column(row, FILE_ALIASES), _column(row, CLASS_ALIASES)
    if name is None:
        problems.append(Problem(where, "no file: give the image's path in a 'file' column"))
        return None
    path = _inside(folder, name)
    if path is None:
        problems.append(Problem(where, f"file {name!r} points outside the import folder"))
        return None
    if not path.is_file():
        problems.append(Problem(where, f"image {name!r} not found"))
        return None
    canonical = canonical_label(label) if label else None
    if canonical is None or canonical not in classes:
        problems.append(Problem(where, f"class {label!r} is not one this data set knows "
                                       f"({', '.join(sorted(classes))})"))
    try:
        rgb = load_rgb(path)
    except ImageDecodeError as error:
        problems.append(Problem(where, str(error)))
        return None
    file_sha, png = sha256_file(path), png_bytes(rgb)
    pool_sha = hashlib.sha256(png).hexdigest()
    seen = _seen_before(session, name, (file_sha, pool_sha), frames, first_of,
                        pixel_sha256(rgb))
    if seen:
        problems.append(Problem(where, seen))
    first_of.setdefault(file_sha, number)
    first_of.setdefault(pool_sha, number)
    mask = _mask_of(folder, path, _column(row, ("mask",)), rgb.shape[:2], where, problems)
    background = None
    if (named := _column(row, ("background",))) is not None:
        background = _background(frames, named)
        if background is None:
            problems.append(Problem(where, f"background {named!r} is not a real frame of "
                                           "this workspace (give DATASET:ID or its SHA-256)"))
    fields = {"seed": _number(row.get("seed"), int, where, "seed", problems),
              "steps": _number(row.get("steps"), int, where, "steps", problems),
              "guidance": _number(row.get("guidance"), float, where, "guidance", problems),
              "prompt": _column(row, ("prompt",)),
              "negative_prompt": _column(row, ("negative_prompt",)),
              "checkpoint": _column(row, ("checkpoint",)),
              "scheduler": _column(row, ("scheduler",))}
    other = {k: v for k, v in row.items() if k not in KNOWN_COLUMNS + FILE_ALIASES + CLASS_ALIASES}
    return _Row(number, path, canonical or "", rgb, file_sha, png, mask, background, fields, other)


def _seen_before(session: Session, name: str, shas: tuple[str, str], frames: dict,
                 first_of: dict[str, int], pixels: str | None = None) -> str | None:
    """Why an image may not join the pool: it is a real frame here (the same file, or the same
    decoded ``pixels`` in other bytes), already in the pool (or the database), or given in an
    earlier row. None when it is new."""
    if pixels and f"pixels:{pixels}" in frames and shas[0] not in frames:
        frame = frames[f"pixels:{pixels}"]
        return (f"{name} is the real frame {frame['id']!r} of data set {frame['dataset']!r} "
                "saved again (other bytes, the same decoded pixels); a real frame in the "
                "synthetic pool would poison every statistic")
    for sha in dict.fromkeys(shas):
        if sha in frames:
            frame, dataset = frames[sha]["id"], frames[sha]["dataset"]
            return (f"{name} is the real frame {frame!r} of data set {dataset!r} (same SHA-256 "
                    f"{sha[:12]}); a real frame in the synthetic pool would poison every "
                    "statistic")
        known = queries.image_by_sha(session, sha)
        if known is not None:
            whose = (f"the synthetic pool (generator {known.provenance.generator})"
                     if known.kind == "synthetic" and known.provenance else
                     f"the database as a {known.kind} image")
            return f"{name} is already in {whose} (SHA-256 {sha[:12]})"
        if sha in first_of:
            return f"{name} is the same image as row {first_of[sha]} (SHA-256 {sha[:12]})"
    return None


def _mask_of(folder: Path, image: Path, named: str | None, shape: tuple[int, int], where: str,
             problems: list[Problem]) -> np.ndarray | None:
    """The image's mask (a ``mask`` column, or ``masks/<stem>.*``), which must decode and
    have the image's size; None when there is none or it is refused."""
    mask_path = _mask_file(folder, image, named)
    if named and (mask_path is None or not mask_path.is_file()):
        problems.append(Problem(where, f"mask {named!r} not found"))
        return None
    if mask_path is None:
        return None
    try:
        mask = load_mask(mask_path)
    except ImageDecodeError as error:
        problems.append(Problem(where, str(error)))
        return None
    if mask.shape != shape:
        problems.append(Problem(where, f"mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]} "
                                       f"but its image is {shape[1]}x{shape[0]}"))
        return None
    return mask


def _background(frames: dict, named: str) -> dict | None:
    """The real frame a ``background`` names (its SHA-256, or ``DATASET:ID``), or None."""
    found = frames.get(named.lower()) or frames.get(named)
    return dict(found) if found else None


def _registration(workspace: Workspace, request: SyntheticImport, trained_on: dict,
                  problems: list[Problem]) -> dict:
    """The generator's record: new, or the one imported before when its declaration agrees."""
    name = request.generator
    if (workspace.models_dir / name).exists():
        problems.append(Problem("generator", f"{name!r} is the name of a generator trained in "
                                             "this workspace; choose another"))
    old = read_record(workspace, name)
    given = {"name": name, "version": request.version, "source": request.source_note,
             "licence": request.licence, "dataset": request.dataset, "trained_on": trained_on}
    if old is None:
        return given | {"kind": "external", "imports": []}
    for key in ("version", "source", "licence", "dataset", "trained_on"):
        if old.get(key) != given[key]:
            problems.append(Problem("generator", f"{name!r} was imported before with another "
                                                 f"{key.replace('_', ' ')} ({old.get(key)!r}); "
                                                 "import under a new name or give the same"))
    return old


def import_synthetic(db: Database, workspace: Workspace, request: SyntheticImport,
                     progress: Progress = no_progress,
                     origin: str | None = None) -> ImportedSynthetic:
    """Check every row, then store the images (and masks) in the pool with their provenance and
    register the generator. Nothing is written when any check fails.

    Raises:
        DatasetImportError: listing every problem, each naming the file and manifest row.
    """
    check_name(request.generator, "generator")
    source = Path(request.source).expanduser()
    if source.is_file() and zipfile.is_zipfile(source):
        return _import_zip(db, workspace, request, source, progress)
    if not source.is_dir():
        raise DatasetImportError([Problem(str(source), "not a folder or a zip archive")], str(source))
    try:
        manifest = workspace.load_manifest(request.dataset)
    except KeyError as error:
        raise DatasetImportError([Problem("dataset", error.args[0])], str(source)) from None
    manifest_name, rows = _read_manifest(source)
    trained_on, problems = resolve_training(workspace, request.trained_on, source)
    record = _registration(workspace, request, trained_on, problems)
    with db.session() as session:
        own = [i for i in queries.synthetic_images(session, request.generator)
               if i.provenance and i.provenance.backend != "external"]
    if own:
        problems.append(Problem("generator", f"{request.generator!r} already names {len(own)} "
                                             "image(s) the studio made; choose another name"))
    classes = {i.label for i in manifest.items}
    checked_rows, row_problems = _check_rows(workspace, db, source, manifest_name, rows, classes,
                                             _real_frames(workspace), progress)
    problems += row_problems
    if problems:
        raise DatasetImportError(problems, str(source))
    return _store(db, workspace, request, source / manifest_name, checked_rows, record,
                  origin)


def _import_zip(db: Database, workspace: Workspace, request: SyntheticImport, archive: Path,
                progress: Progress) -> ImportedSynthetic:
    from polyp_core.data.archive import ArchiveLimits, check_archive, extract

    limits = ArchiveLimits.from_env()
    files = check_archive(archive, limits)
    staging = workspace.staging_dir / f"synthetic-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        extract(archive, files, staging, limits, progress)
        entries = [p for p in staging.iterdir() if not p.name.startswith(("__", "."))]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        return import_synthetic(db, workspace, replace(request, source=str(root)), progress,
                                origin=str(archive))
    finally:  # the pool keeps its own copies: the extracted folder is not needed afterwards
        shutil.rmtree(staging, ignore_errors=True)


def _store(db: Database, workspace: Workspace, request: SyntheticImport, manifest_file: Path,
           rows: list[_Row], record: dict, origin: str | None = None) -> ImportedSynthetic:
    import_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    record_file = record_path(workspace, request.generator)
    folder = record_file.parent
    before = record_file.read_bytes() if record_file.is_file() else None
    written: list[Path] = []
    result = ImportedSynthetic(request.generator, import_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        kept = folder / "imports" / f"{import_id}{manifest_file.suffix}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest_file, kept)
        written.append(kept)
        with db.session() as session:
            for row in rows:
                sha = hashlib.sha256(row.png).hexdigest()
                path = workspace.synthetic_dir / f"{sha}.png"
                if not path.exists():
                    atomic_write(path, row.png)
                    written.append(path)
                mask_sha = None
                if row.mask is not None:
                    stored_png = mask_png(row.mask)
                    mask_sha = hashlib.sha256(stored_png).hexdigest()
                    stored = mask_file(workspace, mask_sha)
                    if not stored.exists():
                        atomic_write(stored, stored_png)
                        written.append(stored)
                    result.masks += 1
                extra = {"import": import_id, "file": row.file.relative_to(
                    manifest_file.parent).as_posix(), "file_sha256": row.file_sha,
                    "manifest_row": row.number, "columns": row.other,
                    "mask_sha256": mask_sha, "background": row.background}
                provenance = ProvenanceRecord(
                    backend="external", generator=request.generator, class_label=row.label,
                    width=int(row.rgb.shape[1]), height=int(row.rgb.shape[0]),
                    extra=extra, **row.fields)
                queries.upsert_image(session, sha256=sha, path=str(path), kind="synthetic",
                                     label=row.label, provenance=asdict(provenance))
                result.images.append(sha)
            record["imports"] = record.get("imports", []) + [{
                "id": import_id, "from": origin or str(manifest_file.parent),
                "manifest": kept.name,
                "manifest_sha256": sha256_file(manifest_file), "images": len(rows),
                "masks": result.masks}]
            atomic_write(record_file, json.dumps(record, indent=2).encode())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if before is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            atomic_write(record_file, before)
        raise
    result.record = record
    return result


def mask_file(workspace: Workspace, mask_sha: str) -> Path:
    """Where the pool keeps a mask (content-addressed, like the images)."""
    return mask_path(workspace.synthetic_dir, mask_sha)


def external_generators(workspace: Workspace) -> list[str]:
    folder = external_dir(workspace)
    return sorted(p.parent.name for p in folder.glob("*/generator.json")) if folder.is_dir() else []
