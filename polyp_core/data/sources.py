"""Read a data set as the user has it on disk into a flat list of labelled items.

Three layouts are understood without any reshaping by the user:

* ``hospital``: a folder with ``images/``, optional ``masks/`` (same stem) and a label CSV
  with an id column (``image_id`` or ``image id``) and a class column (``cls``). Split files
  ``train.csv``, ``valid.csv`` and ``gt_test.csv`` in sibling folders (each possibly with
  its own ``images/`` and ``masks/``) are honoured.
* ``folders``: one folder per class (``root/AD/*.jpg``, ``root/SSA/*.png``, ...).
* ``csv``: a CSV of image paths and labels, with optional mask, group and split columns.
* ``lesion``: frames and masks without classes, as the public segmentation sets are
  distributed (``polyp_core.data.lesion``).

Readers never stop at the first problem: they return every problem found, each naming
the file and row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polyp_core.data.images import IMAGE_SUFFIXES
from polyp_core.data.labels import CANONICAL_ALIASES, canonical_label
from polyp_core.data.items import SourceItem, SourceScan
from polyp_core.data.lesion import looks_like_lesion, scan_lesion
from polyp_core.data.tables import Table, normalise_column, read_table
from polyp_core.errors import DatasetImportError, Problem

ID_COLUMNS = ("image_id", "image id", "id", "image_name", "filename")
LABEL_COLUMNS = ("cls", "class", "label")
GROUP_COLUMNS = ("group", "patient", "patient_id", "lesion", "lesion_id", "polyp_id",
                 "video", "video_id", "case_id")
PATH_COLUMNS = ("path", "image", "image_path", "file", "filepath")
MASK_COLUMNS = ("mask", "mask_path")
SPLIT_COLUMNS = ("split", "subset", "fold")
#: split file name -> split; as the seed thesis's code base named them
SPLIT_FILES = {"train.csv": "train", "valid.csv": "valid", "val.csv": "valid",
               "gt_test.csv": "test", "test.csv": "test"}
SPLIT_VALUES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                "validation": "valid", "test": "test", "gt_test": "test", "testing": "test"}
LAYOUTS = ("auto", "hospital", "folders", "csv", "lesion")


@dataclass(frozen=True)
class ColumnChoice:
    """Column names the user named explicitly (``None``: detect)."""

    id: str | None = None
    label: str | None = None
    group: str | None = None
    path: str | None = None
    mask: str | None = None


def accepted_labels() -> str:
    return ", ".join(a for aliases in CANONICAL_ALIASES.values() for a in aliases[:2])


def _stem_index(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """Map file stem -> path for the images in a folder; two files with one stem is a problem."""
    index: dict[str, Path] = {}
    if not folder.is_dir():
        return index
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in index:
                problems.append(Problem(str(path), f"two files share the id {path.stem!r}: "
                                        f"{index[path.stem].name} and {path.name}"))
                continue
            index[path.stem] = path
    return index


def _strip_suffix(image_id: str) -> str:
    path = Path(image_id)
    return path.stem if path.suffix.lower() in IMAGE_SUFFIXES else image_id


def detect_layout(source: Path) -> str:
    """Guess the layout of ``source``.

    Raises:
        ValueError: naming what was looked for when nothing fits.
    """
    if source.is_file():
        if source.suffix.lower() in (".csv", ".tsv", ".txt"):
            return "csv"
        raise ValueError(f"{source}: a file source must be a CSV of image paths and labels")
    if not source.is_dir():
        raise ValueError(f"{source}: no such file or folder")
    if looks_like_lesion(source):
        return "lesion"
    if (source / "images").is_dir() or any(
        (sub / "images").is_dir() for sub in source.iterdir() if sub.is_dir()
    ):
        return "hospital"
    class_dirs = [d for d in source.iterdir() if d.is_dir() and canonical_label(d.name)]
    if class_dirs:
        return "folders"
    raise ValueError(
        f"{source}: cannot tell the layout: expected an images/ folder with a label CSV "
        f"(hospital layout), class folders named like {accepted_labels()}, a CSV file, or "
        "frames beside their masks without a CSV (images/ + masks/, Kvasir-SEG, CVC-ClinicDB, "
        "ETIS-LaribPolypDB, PolypGen)"
    )


def _resolve_column(table: Table, role: str, explicit: str | None,
                    candidates: tuple[str, ...], problems: list[Problem],
                    required: bool) -> str | None:
    if explicit:
        if normalise_column(explicit) in table.normalised:
            return normalise_column(explicit)
        problems.append(Problem(str(table.path), table.missing_message(role, (explicit,))))
        return None
    found = table.find(candidates)
    if found is None and required:
        problems.append(Problem(str(table.path), table.missing_message(role, candidates[:2])))
    return found


def _label_of(raw: str, where: str, aliases: dict[str, str] | None,
              problems: list[Problem]) -> str | None:
    if not raw:
        problems.append(Problem(where, "empty class label"))
        return None
    label = canonical_label(raw, aliases)
    if label is None:
        problems.append(Problem(where, f"unknown label {raw!r}; accepted: {accepted_labels()} "
                                       "(or map it with a label alias)"))
    return label


def _read_table_or_problem(path: Path, problems: list[Problem]) -> Table | None:
    try:
        return read_table(path)
    except (OSError, ValueError) as exc:
        problems.append(Problem(str(path), f"cannot read the table ({exc})"))
        return None


def _hospital_files(root: Path, problems: list[Problem]) -> tuple[list[Path], dict[str, Path],
                                                                   dict[str, Path]]:
    """The image folders (``images/`` and every ``*/images/``), and images and masks by stem."""
    image_dirs = [root / "images"] + sorted(d / "images" for d in root.iterdir()
                                              if d.is_dir() and (d / "images").is_dir())
    image_dirs = [d for d in image_dirs if d.is_dir()]
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    for folder in image_dirs:
        for stem, path in _stem_index(folder, problems).items():
            if stem in images:
                problems.append(Problem(str(path), f"id {stem!r} also at {images[stem]}"))
            else:
                images[stem] = path
        for stem, path in _stem_index(folder.parent / "masks", problems).items():
            masks.setdefault(stem, path)
    return image_dirs, images, masks


def _label_table(root: Path, columns: ColumnChoice, split_tables: list[tuple[str, Path]],
                 problems: list[Problem]) -> Path | None | bool:
    """The one CSV with an id and a class column (or the only CSV there is). None: none, and
    the split files carry the labels; False: no usable table (a problem says why)."""
    split_paths = {p for _, p in split_tables}
    candidates = [p for p in sorted(root.glob("*.csv")) if p not in split_paths]
    id_names = (columns.id,) if columns.id else ID_COLUMNS
    label_names = (columns.label,) if columns.label else LABEL_COLUMNS
    labelled = []
    for path in candidates:
        table = _read_table_or_problem(path, problems)
        if table and table.find(id_names) and table.find(label_names):
            labelled.append(path)
    if len(labelled) > 1:
        problems.append(Problem(str(root), "several label tables: " + ", ".join(
            p.name for p in labelled) + "; name the one to use"))
        return None
    if len(labelled) == 1:
        return labelled[0]
    if len(candidates) == 1:
        return candidates[0]  # the only table: its missing columns are reported later
    if not split_tables:
        what = ("several CSVs, none with" if candidates else "no label CSV with")
        problems.append(Problem(str(root), f"{what} an id ('image_id') and a class ('cls') "
                                           "column; name the label table and its columns"))
        return False
    return None


def _labelled_items(label_tables: list[tuple[str | None, Path]], columns: ColumnChoice,
                    images: dict[str, Path], masks: dict[str, Path], image_dirs: list[Path],
                    root: Path, aliases: dict[str, str] | None,
                    problems: list[Problem]) -> dict[str, SourceItem]:
    """Every labelled row whose image exists, by id (a split table gives its split)."""
    items: dict[str, SourceItem] = {}
    for split, path in label_tables:
        table = _read_table_or_problem(path, problems)
        if table is None:
            continue
        id_col = _resolve_column(table, "id", columns.id, ID_COLUMNS, problems, True)
        label_col = _resolve_column(table, "class", columns.label, LABEL_COLUMNS, problems, True)
        group_col = _resolve_column(table, "group", columns.group, GROUP_COLUMNS, problems,
                                    columns.group is not None)
        if id_col is None or label_col is None:
            continue
        if not any(table.rows):
            problems.append(Problem(str(path), "the table has a header but no rows"))
        for number, row in enumerate(table.rows, start=table.first_row):
            if not row:
                continue
            where = f"{path} row {number}"
            image_id = _strip_suffix(row.get(id_col, ""))
            if not image_id:
                problems.append(Problem(where, f"empty {id_col!r}"))
                continue
            if image_id in items:
                problems.append(Problem(where, f"duplicate id {image_id!r} "
                                               f"(first at {items[image_id].origin})"))
                continue
            label = _label_of(row.get(label_col, ""), where, aliases, problems)
            image = images.get(image_id)
            if image is None:
                dirs = ", ".join(str(d) for d in image_dirs) or str(root / "images")
                problems.append(Problem(where, f"image {image_id!r} not found in {dirs}"))
            if label is None or image is None:
                continue
            extra = {k: v for k, v in row.items() if k not in (id_col, label_col, group_col)}
            items[image_id] = SourceItem(
                id=image_id, image=image, raw_label=row[label_col], label=label, origin=where,
                mask=masks.get(image_id), group=(row.get(group_col) or None) if group_col else None,
                split=split, extra=extra)
    return items


def _apply_split_files(items: dict[str, SourceItem], split_tables: list[tuple[str, Path]],
                       labels_csv: Path, columns: ColumnChoice, root: Path,
                       problems: list[Problem]) -> None:
    """Give every labelled item the split of the split file that lists it; an id in two
    split files, in none, or not labelled is a problem."""
    assigned: dict[str, tuple[str, str]] = {}
    for split, path in split_tables:
        table = _read_table_or_problem(path, problems)
        if table is None:
            continue
        id_col = _resolve_column(table, "id", columns.id, ID_COLUMNS, problems, True)
        if id_col is None:
            continue
        for number, row in enumerate(table.rows, start=table.first_row):
            image_id = _strip_suffix(row.get(id_col, "")) if row else ""
            if not image_id:
                continue
            where = f"{path} row {number}"
            if image_id in assigned:
                problems.append(Problem(where, f"id {image_id!r} is also in the "
                                               f"{assigned[image_id][0]} split "
                                               f"({assigned[image_id][1]})"))
            elif image_id not in items:
                problems.append(Problem(where, f"id {image_id!r} is not in {labels_csv.name}"))
            else:
                assigned[image_id] = (split, where)
                items[image_id].split = split
    unassigned = [i for i in items.values() if i.split is None]
    for item in unassigned[:20]:
        problems.append(Problem(item.origin, f"id {item.id!r} is in no split file "
                                             f"({', '.join(p.name for _, p in split_tables)})"))
    if len(unassigned) > 20:
        problems.append(Problem(str(root), f"{len(unassigned) - 20} more ids in no split file"))


def scan_hospital(root: Path, columns: ColumnChoice = ColumnChoice(),
                  labels_csv: Path | None = None,
                  aliases: dict[str, str] | None = None) -> SourceScan:
    """Read the seed thesis's hospital layout (also BKAI NeoPolyp as shared here)."""
    problems: list[Problem] = []
    notes: list[str] = []
    image_dirs, images, masks = _hospital_files(root, problems)
    split_tables: list[tuple[str, Path]] = []
    for folder in [root] + sorted(d for d in root.iterdir() if d.is_dir()):
        for name, split in SPLIT_FILES.items():
            if (folder / name).is_file():
                split_tables.append((split, folder / name))
    if labels_csv is None:
        found = _label_table(root, columns, split_tables, problems)
        if found is False:
            return SourceScan("hospital", root, [], problems, notes)
        labels_csv = found
    label_tables = [(None, labels_csv)] if labels_csv else list(split_tables)
    items = _labelled_items(label_tables, columns, images, masks, image_dirs, root, aliases,
                            problems)
    if labels_csv is not None and split_tables:
        _apply_split_files(items, split_tables, labels_csv, columns, root, problems)
    unlabelled = len(set(images) - set(items))
    if unlabelled:
        notes.append(f"{unlabelled} image(s) in images/ have no label row and were left out")
    return SourceScan("hospital", root, list(items.values()), problems, notes,
                      bool(split_tables))


def scan_folders(root: Path, aliases: dict[str, str] | None = None) -> SourceScan:
    """Read one folder per class; the folder name is the raw label."""
    problems: list[Problem] = []
    notes: list[str] = []
    items: dict[str, SourceItem] = {}
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        label = canonical_label(folder.name, aliases)
        if label is None:
            problems.append(Problem(str(folder), f"folder name {folder.name!r} is not a known "
                                                 f"label; accepted: {accepted_labels()}"))
            continue
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            problems.append(Problem(str(folder), f"class {label} has no images"))
        for path in files:
            rel = path.relative_to(root)
            image_id = "__".join(rel.with_suffix("").parts)
            items[image_id] = SourceItem(id=image_id, image=path, raw_label=folder.name,
                                         label=label, origin=str(path))
    return SourceScan("folders", root, list(items.values()), problems, notes)


def scan_csv(path: Path, columns: ColumnChoice = ColumnChoice(),
             aliases: dict[str, str] | None = None) -> SourceScan:
    """Read a CSV of image paths (relative to the CSV's folder, or absolute) and labels."""
    problems: list[Problem] = []
    table = _read_table_or_problem(path, problems)
    if table is None:
        return SourceScan("csv", path.parent, [], problems)
    path_col = _resolve_column(table, "image path", columns.path, PATH_COLUMNS, problems, True)
    label_col = _resolve_column(table, "class", columns.label, LABEL_COLUMNS, problems, True)
    mask_col = _resolve_column(table, "mask", columns.mask, MASK_COLUMNS, problems,
                               columns.mask is not None)
    group_col = _resolve_column(table, "group", columns.group, GROUP_COLUMNS, problems,
                                columns.group is not None)
    id_col = table.find(("image_id", "id")) if columns.id is None else _resolve_column(
        table, "id", columns.id, ID_COLUMNS, problems, True)
    split_col = table.find(SPLIT_COLUMNS)
    if path_col is None or label_col is None:
        return SourceScan("csv", path.parent, [], problems)

    def resolve(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (path.parent / candidate)

    items: dict[str, SourceItem] = {}
    used = {c for c in (path_col, label_col, mask_col, group_col, id_col, split_col) if c}
    any_split = False
    for number, row in enumerate(table.rows, start=table.first_row):
        if not row:
            continue
        where = f"{path} row {number}"
        value = row.get(path_col, "")
        if not value:
            problems.append(Problem(where, f"empty {path_col!r}"))
            continue
        image = resolve(value)
        image_id = row.get(id_col, "") if id_col else ""
        image_id = image_id or Path(value).with_suffix("").as_posix().replace("/", "__")
        if image_id in items:
            problems.append(Problem(where, f"duplicate id {image_id!r} "
                                           f"(first at {items[image_id].origin})"))
            continue
        label = _label_of(row.get(label_col, ""), where, aliases, problems)
        if not image.is_file():
            problems.append(Problem(where, f"image file not found: {image}"))
            continue
        mask = None
        if mask_col and row.get(mask_col):
            mask = resolve(row[mask_col])
            if not mask.is_file():
                problems.append(Problem(where, f"mask file not found: {mask}"))
                continue
        split = None
        if split_col and row.get(split_col):
            split = SPLIT_VALUES.get(row[split_col].strip().lower())
            if split is None:
                problems.append(Problem(where, f"unknown split {row[split_col]!r}; "
                                               "accepted: train, valid, test"))
                continue
            any_split = True
        if label is None:
            continue
        items[image_id] = SourceItem(
            id=image_id, image=image, raw_label=row[label_col], label=label, origin=where,
            mask=mask, group=(row.get(group_col) or None) if group_col else None, split=split,
            extra={k: v for k, v in row.items() if k not in used})
    if any_split:
        for item in items.values():
            if item.split is None:
                problems.append(Problem(item.origin, f"no value in the {split_col!r} column "
                                                     "while other rows have one"))
    return SourceScan("csv", path.parent, list(items.values()), problems, [], any_split)


def printable_path(path: Path | str) -> str:
    """A path as text that can always be printed: bytes that are not UTF-8 as ``\\xe9``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _refuse_undecodable_names(source: Path) -> None:
    """File names must be UTF-8 text: the manifest, the database and every export store them."""
    if not source.is_dir():
        return
    bad = [p for p in source.rglob("*") if printable_path(p.name) != p.name]
    if bad:
        raise DatasetImportError(
            [Problem(printable_path(p), "file name is not UTF-8 text; rename it (e.g. with "
                                        "convmv) and import again") for p in bad], str(source))


def scan_source(source: Path, layout: str = "auto", columns: ColumnChoice = ColumnChoice(),
                labels_csv: Path | None = None,
                aliases: dict[str, str] | None = None) -> SourceScan:
    """Read ``source`` in the given (or detected) layout.

    Raises:
        ValueError: unknown layout, or a source whose layout cannot be told.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    source = Path(source).expanduser().resolve()
    _refuse_undecodable_names(source)
    if layout == "auto":
        layout = detect_layout(source)
    if layout == "hospital":
        return scan_hospital(source, columns, labels_csv, aliases)
    if layout == "folders":
        return scan_folders(source, aliases)
    if layout == "lesion":
        return scan_lesion(source)
    return scan_csv(source, columns, aliases)
