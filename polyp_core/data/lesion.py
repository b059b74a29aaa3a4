"""Data sets of frames and polyp masks without histology: the public segmentation sets as
they are distributed, read into one class, ``LESION`` (the ``lesion`` scheme).

Layouts found without a label table (folder names compared without case, spaces, ``_``
or ``-``):

* generic and Kvasir-SEG: ``images/`` + ``masks/``, the same file names (JPEG masks);
* CVC-ClinicDB: ``Original/`` + ``Ground Truth/`` (TIFF or PNG);
* ETIS-LaribPolypDB: the frames (``1.tif``) in a folder beside ``Ground Truth/`` (``p1.tif``),
  or in the folder that holds it; CVC-ColonDB likewise (PraNet's copy: ``images/`` + ``masks/``);
* PolypGen: ``data_C1/images_C1/`` + ``masks_C1/`` (``<stem>_mask.jpg``) for each centre,
  whose centre (``C1``) is the group; its ``sequenceData/.../seqN`` folders are groups too.

A mask is found by the image's file stem, the stem with ``_mask`` added, or ``p`` put before
it. An image without a mask is imported and counted apart (a note says how many); a mask
folder without any image file is a problem.
"""

from __future__ import annotations

import re
from pathlib import Path

from polyp_core.data.images import IMAGE_SUFFIXES
from polyp_core.data.items import SourceItem, SourceScan
from polyp_core.errors import Problem

#: the one class of a data set without histology
LESION = "LESION"
RAW_LABEL = "lesion"
#: folder names (lower case, without spaces, ``_`` or ``-``) of mask and image folders
MASK_FOLDERS = ("masks", "mask", "groundtruth", "gt", "labels", "annotations",
                "segmentations", "segmentation")
IMAGE_FOLDERS = ("images", "image", "original", "originals", "imgs", "frames")
#: how deep below the source a pair of folders is looked for (PolypGen's sequences: 4)
DEPTH = 4


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def _is_mask_folder(folder: Path) -> bool:
    key = _key(folder.name)
    return key in MASK_FOLDERS or (key.startswith("masks") and len(key) > 5)


def _is_image_folder(folder: Path) -> bool:
    key = _key(folder.name)
    return key in IMAGE_FOLDERS or (key.startswith("images") and len(key) > 6)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _folders(root: Path, depth: int = DEPTH) -> list[Path]:
    out, level = [root], [root]
    for _ in range(depth):
        level = [d for folder in level for d in sorted(folder.iterdir())
                 if d.is_dir() and not d.name.startswith((".", "__"))]
        out += level
    return out


def find_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Every (image folder, mask folder) pair under ``root``: a mask folder and, beside it, a
    folder named like images (or the one other folder with images, or their parent when it
    holds the images itself)."""
    pairs = []
    for folder in _folders(root)[1:]:
        if not _is_mask_folder(folder):
            continue
        siblings = [d for d in sorted(folder.parent.iterdir())
                    if d.is_dir() and d != folder and not _is_mask_folder(d)]
        named = [d for d in siblings if _is_image_folder(d)]
        suffix = _key(folder.name)[len("masks"):] if _key(folder.name).startswith("masks") else ""
        if suffix:  # PolypGen: masks_C1 goes with images_C1
            named = [d for d in named if _key(d.name).endswith(suffix)] or named
        holding = [d for d in siblings if _image_files(d)]
        if len(named) == 1:
            pairs.append((named[0], folder))
        elif not named and len(holding) == 1:
            pairs.append((holding[0], folder))
        elif not named and not holding and _image_files(folder.parent):
            pairs.append((folder.parent, folder))
    return pairs


def looks_like_lesion(source: Path) -> bool:
    """A folder with no CSV at its top and at least one pair of image and mask folders."""
    return source.is_dir() and not any(source.glob("*.csv")) and bool(find_pairs(source))


def _mask_index(folder: Path) -> dict[str, Path]:
    """Mask files by every stem an image of theirs may have: ``1``, ``1_mask`` and ``p1``
    all serve image ``1``."""
    index: dict[str, Path] = {}
    for path in _image_files(folder):
        stem = path.stem
        index.setdefault(stem, path)
        bare = re.sub(r"[_\-]?mask$", "", stem, flags=re.IGNORECASE)
        if bare and bare != stem:
            index.setdefault(bare, path)
        if len(stem) > 1 and stem[0] in "pP" and stem[1:].isdigit():
            index.setdefault(stem[1:], path)
    return index


def _group(pair_parent: Path, root: Path, several: bool) -> str | None:
    """A pair's group where there are several pairs: PolypGen's centre (``data_C1`` -> ``C1``),
    else the folder that holds the pair (a sequence), relative to the source."""
    if not several:
        return None
    name = pair_parent.name
    match = re.fullmatch(r"data[_\-]?(C\d+)", name, flags=re.IGNORECASE)
    if match:
        return match.group(1).upper()
    return pair_parent.relative_to(root).as_posix() or name


def scan_lesion(root: Path) -> SourceScan:
    """Read a data set of frames and masks without classes (see the module's layouts)."""

    problems: list[Problem] = []
    notes: list[str] = []
    pairs = find_pairs(root)
    if not pairs:
        problems.append(Problem(str(root), "no mask folder (masks/, Ground Truth/, masks_C1/ ...) "
                                           "beside an image folder"))
        return SourceScan("lesion", root, [], problems, notes)
    several = len(pairs) > 1
    items: dict[str, SourceItem] = {}
    unmasked: list[str] = []
    orphans = 0
    for images, masks in pairs:
        found = _mask_index(masks)
        files = _image_files(images)
        if not found:
            problems.append(Problem(str(masks), "the mask folder holds no mask files "
                                                f"({', '.join(IMAGE_SUFFIXES)})"))
            continue
        if not files:
            problems.append(Problem(str(images), "the image folder holds no images"))
            continue
        group = _group(masks.parent, root, several)
        used = set()
        for path in files:
            image_id = f"{group}__{path.stem}" if group else path.stem
            if image_id in items:
                problems.append(Problem(str(path), f"two images share the id {image_id!r}: "
                                                   f"{items[image_id].image.name} and {path.name}"))
                continue
            mask = found.get(path.stem)
            if mask is None:
                unmasked.append(image_id)
            else:
                used.add(mask)
            items[image_id] = SourceItem(id=image_id, image=path, raw_label=RAW_LABEL,
                                         label=LESION, origin=str(path), mask=mask, group=group)
        orphans += len(set(found.values()) - used)
    where = "; ".join(f"{i.relative_to(root).as_posix() or '.'} + "
                      f"{m.relative_to(root).as_posix()}" for i, m in pairs[:6])
    notes.append(f"frames and masks without classes (scheme lesion): {where}"
                 + (f" and {len(pairs) - 6} more pairs" if len(pairs) > 6 else "")
                 + (f"; each pair's folder is a group ({len(pairs)} groups)" if several else ""))
    if unmasked:
        notes.append(f"{len(unmasked)} image(s) have no mask and are counted apart (e.g. "
                     f"{', '.join(unmasked[:3])}); segmentation needs a mask for every image")
    if orphans:
        notes.append(f"{orphans} mask file(s) match no image and were left out")
    return SourceScan("lesion", root, list(items.values()), problems, notes)
