"""Import a data set into the workspace: read, validate everything, then write atomically."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from polyp_core import __version__
from polyp_core.data.cache import PixelCache
from polyp_core.data import duplicates
from polyp_core.data.lesion import LESION
from polyp_core.data.images import load_mask_levels, pixel_sha256, resize_rgb, sha256_file
from polyp_core.data.labels import get_scheme, native_scheme
from polyp_core.data.manifest import Manifest, ManifestItem, source_group
from polyp_core.data.sources import LAYOUTS, ColumnChoice, SourceItem, scan_source
from polyp_core.data.splits import SPLIT_METHODS, grouped_split, stratified_split
from polyp_core.errors import DatasetImportError, ImageDecodeError, Problem
from polyp_core.progress import Progress, no_progress
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace, check_name


@checked
@dataclass(frozen=True)
class ImportConfig:
    """What to import and how.

    Attributes:
        source: a folder (hospital or class-folder layout) or a CSV of paths.
        name: data set name in the workspace (default: the source folder's name).
        layout: ``auto``, ``hospital``, ``folders`` or ``csv``.
        labels_csv: the label table, when a hospital folder has several CSVs.
        id_column, label_column, group_column, path_column, mask_column: explicit column names.
        split: ``auto`` (split files if present, else grouped if groups are known, else
            stratified), ``stratified``, ``grouped`` or ``files``.
        split_fractions: train, valid, test.
        seed: split seed.
        scheme: active label scheme (default: the finest the labels allow).
        label_aliases: extra raw-label spellings as ``(("TA", "AD"), ...)``.
        cache_sizes: sizes at which resized pixels are cached during the import.
        overwrite: replace a data set of the same name.
    """

    source: str = rule(text=True)
    name: str | None = None
    layout: str = "auto"
    labels_csv: str | None = rule(None, text=True)
    id_column: str | None = None
    label_column: str | None = None
    group_column: str | None = None
    path_column: str | None = None
    mask_column: str | None = None
    split: str = "auto"
    split_fractions: tuple[float, float, float] = rule((0.7, 0.1, 0.2), lo=0.0, hi=1.0,
                                                       flag="--fractions")
    seed: int = 0
    scheme: str | None = None
    label_aliases: tuple[tuple[str, str], ...] = ()
    cache_sizes: tuple[int, ...] = rule((), lo=8, hi=4096)
    overwrite: bool = False


@dataclass(frozen=True)
class ImportResult:
    name: str
    manifest_path: Path
    n_images: int
    n_masks: int
    counts: dict[str, dict[str, int]]
    scheme: str
    split_method: str
    decoded: int  # files decoded by this import (0 when everything came from the cache)
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class _Checked:
    item: SourceItem
    sha256: str = ""
    width: int = 0
    height: int = 0
    pixels: str | None = None
    mask_sha256: str | None = None
    mask_levels: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _check_item(item: SourceItem, cache: PixelCache, cache_sizes: tuple[int, ...]) -> _Checked:
    """Hash, decode (unless cached) and check one image and its mask."""
    checked = _Checked(item)
    try:
        checked.sha256 = sha256_file(item.image)
        info = cache.info(checked.sha256)
        missing = [s for s in cache_sizes if cache.get(checked.sha256, s) is None]
        if info is None or "pixels" not in info or missing:
            rgb = cache.decode(item.image)
            info = {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                    "pixels": pixel_sha256(rgb)}
            cache.put_info(checked.sha256, info)
            for size in missing:
                cache.put(checked.sha256, size, resize_rgb(rgb, size))
        checked.width, checked.height = info["width"], info["height"]
        checked.pixels = info["pixels"]
    except ImageDecodeError as exc:
        checked.problems.append(Problem(f"{item.origin}", f"image {exc}"))
        return checked
    except OSError as exc:
        checked.problems.append(Problem(item.origin, f"cannot read {item.image}: {exc}"))
        return checked
    if item.mask is not None:
        try:
            checked.mask_sha256 = sha256_file(item.mask)
            info = cache.info(checked.mask_sha256)
            if info is None or "levels" not in info:
                cache.decodes += 1
                mask, levels = load_mask_levels(item.mask)
                info = {"width": int(mask.shape[1]), "height": int(mask.shape[0]),
                        "polyp_pixels": int(mask.sum()), "levels": levels}
                cache.put_info(checked.mask_sha256, info)
            checked.mask_levels = info["levels"]
            if (info["width"], info["height"]) != (checked.width, checked.height):
                checked.problems.append(Problem(
                    str(item.mask), f"mask is {info['width']}x{info['height']} but its image "
                                    f"{item.image.name} is {checked.width}x{checked.height}"))
        except ImageDecodeError as exc:
            checked.problems.append(Problem(item.origin, f"mask {exc}"))
        except OSError as exc:
            checked.problems.append(Problem(item.origin, f"cannot read mask {item.mask}: {exc}"))
    return checked


def _assign_splits(items: list[SourceItem], config: ImportConfig, from_files: bool,
                   problems: list[Problem], same: list[list[int]]) -> tuple[list[str], str]:
    """Each item's split and the method that chose it. ``same``: the sets of frames with
    identical pixels (``items``' groups already join them), kept in one split by the
    stratified rule; split files are the user's, so a set they put in two splits is a note."""
    method = config.split
    has_groups = any(source_group(i) for i in items)
    if method == "auto":
        method = "files" if from_files else ("grouped" if has_groups else "stratified")
    labels = [i.label for i in items]
    if method == "files":
        if not from_files:
            problems.append(Problem(config.source, "split 'files' asked for, but the source has "
                                                   "no split files or split column"))
            return [], method
        return [i.split or "" for i in items], method
    if method == "grouped":
        missing = [i for i in items if not i.group]
        for item in missing[:20]:
            problems.append(Problem(item.origin, "no group value, needed for a grouped split"))
        if missing:
            return [], method
        return grouped_split(labels, [i.group for i in items], config.split_fractions,
                             config.seed), method
    return duplicates.keep_together(
        stratified_split(labels, config.split_fractions, config.seed), same), method


def _mask_notes(checked: list[_Checked]) -> list[str]:
    """What the import did to masks that were not plain 0/255: grey levels binarised at 128,
    0/1 masks read with 1 as polyp."""
    notes = []
    for levels, text in (("grey", "hold values other than 0 and 255 (JPEG masks, "
                                  "anti-aliased edges): binarised at 128"),
                         ("0/1", "hold only 0 and 1: read with 1 as the polyp")):
        ids = [c.item.id for c in checked if c.mask_levels == levels]
        if ids:
            notes.append(f"{len(ids)} mask(s) {text} (e.g. {', '.join(ids[:3])})")
    return notes


def _crossing(items: list[SourceItem], splits: list[str], same: list[list[int]]) -> list[str]:
    """A note for each picture whose frames the split files put in different splits."""
    crossing = [m for m in same if len({splits[i] for i in m}) > 1]
    return ["the split files put identical frames in different splits: " + "; ".join(
        ", ".join(f"{items[i].id} ({splits[i]})" for i in m) for m in crossing[:6])
        + ": the fixed split trains on one copy and tests the other; use --folds (grouped) "
          "or fix the split files"] if crossing else []


def _mixed_lesion_problems(items: list[SourceItem], scheme: str | None) -> list[Problem]:
    """Rows labelled as a polyp without histology (``LESION``) among rows with histology: the
    set would otherwise fall back to the one-class scheme and lose its classes; named by row,
    unless the import asks for scheme ``lesion``."""
    histology = sorted({i.label for i in items} - {LESION})
    if scheme == "lesion" or not histology:
        return []
    return [Problem(i.origin, f"label {i.raw_label!r} is a polyp without histology, but other "
                              f"rows have classes ({', '.join(histology)}): give this row its "
                              "class, or import the whole set as one class with scheme lesion")
            for i in items if i.label == LESION][:20]


def _empty_class_problems(items: list[SourceItem], scheme_name: str, source: str) -> list[Problem]:
    scheme = get_scheme(scheme_name)
    counts = Counter(scheme.mapping.get(i.label) for i in items)
    return [Problem(source, f"class {cls} has no images (scheme {scheme.name} needs "
                            f"{', '.join(scheme.classes)})")
            for cls in scheme.classes if counts.get(cls, 0) == 0]


def _check_config(config: ImportConfig, name: str, target: Path, source: Path) -> None:
    """The request's own choices: a free name (or ``overwrite``), a known scheme, layout and
    split method."""
    if target.exists() and not config.overwrite:
        raise DatasetImportError([Problem(str(target), f"a data set named {name!r} already "
                                                       "exists (choose another name or overwrite)")],
                                 str(source))
    if config.scheme is not None:
        get_scheme(config.scheme)
    if config.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {config.layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if config.split not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {config.split!r}; choose one of: "
                         f"{', '.join(SPLIT_METHODS)}")


def _check_items(items: list[SourceItem], cache: PixelCache, cache_sizes: tuple[int, ...],
                 problems: list[Problem], progress: Progress) -> list[_Checked]:
    """Hash and decode every image and mask (threads: decoding releases the GIL), caching the
    pixels at ``cache_sizes``; each item's problems join ``problems``."""
    progress(0, len(items), f"checking {len(items)} images")
    checked: list[_Checked] = []
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda it: _check_item(it, cache, cache_sizes), items)
        for done, result in enumerate(jobs, start=1):
            checked.append(result)
            problems.extend(result.problems)
            if done % 50 == 0 or done == len(items):
                progress(done, len(items), f"checked {done}/{len(items)} images")
    return checked


def _put_in_place(workspace: Workspace, manifest: Manifest, target: Path) -> None:
    """Write the manifest into a staging folder and rename it into ``datasets/``: the data set
    appears whole or not at all (an old one is moved aside first and then removed)."""
    staging = workspace.staging_dir / f"{manifest.name}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        manifest.save(staging / "manifest.json")
        if target.exists():
            retired = workspace.staging_dir / f"old-{manifest.name}-{uuid.uuid4().hex}"
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_dataset(workspace: Workspace, config: ImportConfig,
                   progress: Progress = no_progress) -> ImportResult:
    """Validate a data set completely and write its manifest into the workspace.

    Nothing is written to ``datasets/`` unless every check passes; the manifest appears
    with one atomic rename. Pixels decoded along the way fill the content-hash cache.

    Raises:
        DatasetImportError: listing every problem found, each with its file and row.
        ValueError: an unknown layout, split method or scheme, or a bad name.
    """
    start = time.perf_counter()
    source = Path(config.source).expanduser().resolve()
    name = check_name(config.name or source.stem)
    target = workspace.dataset_dir(name)
    _check_config(config, name, target, source)
    columns = ColumnChoice(config.id_column, config.label_column, config.group_column,
                           config.path_column, config.mask_column)
    aliases = dict(config.label_aliases) or None
    labels_csv = Path(config.labels_csv).expanduser().resolve() if config.labels_csv else None
    try:
        scan = scan_source(source, config.layout, columns, labels_csv, aliases)
    except ValueError as exc:
        raise DatasetImportError([Problem(str(source), str(exc).removeprefix(f"{source}: "))],
                                 str(source)) from None
    problems = list(scan.problems)
    cache = PixelCache(workspace.pixel_cache_dir)
    checked = _check_items(scan.items, cache, config.cache_sizes, problems, progress)
    items = [c.item for c in checked]
    if not items and not problems:
        problems.append(Problem(str(source), "no labelled images found"))
    problems.extend(_mixed_lesion_problems(items, config.scheme))
    scheme = config.scheme or native_scheme({i.label for i in items})
    if items:
        try:
            for item in items:
                get_scheme(scheme).map(item.label)
        except ValueError as exc:
            problems.append(Problem(str(source), str(exc)))
        else:
            problems.extend(_empty_class_problems(items, scheme, str(source)))
    same = duplicates.same_pixel_sets([c.pixels for c in checked])
    if same:
        for item, group in zip(items, duplicates.joined_groups(
                [i.id for i in items], [i.group for i in items], same)):
            item.group = group
    splits, method = _assign_splits(items, config, scan.split_from_files, problems, same)
    if problems:
        raise DatasetImportError(problems, str(source))
    notes = (*scan.notes, *_mask_notes(checked), *duplicates.describe([i.id for i in items], same,
                                               [i.label for i in items]),
             *(_crossing(items, splits, same) if method == "files" else []))

    manifest = Manifest(
        name=name, layout=scan.layout, source=str(source), scheme=scheme, split_method=method,
        split_seed=config.seed, split_fractions=tuple(config.split_fractions),
        items=tuple(ManifestItem(
            id=c.item.id, image=str(c.item.image), sha256=c.sha256, width=c.width,
            height=c.height, raw_label=c.item.raw_label, label=c.item.label, split=split,
            mask=str(c.item.mask) if c.item.mask else None, mask_sha256=c.mask_sha256,
            group=c.item.group, extra=c.item.extra, pixels=c.pixels)
            for c, split in zip(checked, splits)),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        studio_version=__version__, notes=notes)

    _put_in_place(workspace, manifest, target)
    progress(len(items), len(items), f"imported {name}: {len(items)} images")
    return ImportResult(
        name=name, manifest_path=target / "manifest.json", n_images=len(items),
        n_masks=sum(1 for i in items if i.mask), counts=manifest.class_counts(), scheme=scheme,
        split_method=method, decoded=cache.decodes, seconds=time.perf_counter() - start,
        notes=notes)
