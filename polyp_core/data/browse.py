"""What a person browsing a data set sees: count tables and pages of images with masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from polyp_core.data.cache import PixelCache
from polyp_core.data.images import load_mask, resize_mask
from polyp_core.data.manifest import Manifest, ManifestItem
from polyp_core.data.splits import SPLITS

ALL = "all"


def count_rows(manifest: Manifest, scheme: str | None = None) -> tuple[list[str], list[list]]:
    """Header and rows of the class-count table: one row per split plus ``all``."""
    counts = manifest.class_counts(scheme)
    classes = list(counts[ALL])
    header = ["split", *classes, "total"]
    rows = [[split, *[row[c] for c in classes], sum(row.values())] for split, row in counts.items()]
    return header, rows


def filter_items(manifest: Manifest, split: str = ALL, cls: str = ALL,
                 scheme: str | None = None) -> list[ManifestItem]:
    if split != ALL and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {ALL}, {', '.join(SPLITS)}")
    return [item for item in manifest.items
            if (split == ALL or item.split == split)
            and (cls == ALL or manifest.label_of(item, scheme) == cls)]


def overlay_mask(rgb: np.ndarray, mask: np.ndarray,
                 colour: tuple[int, int, int] = (64, 255, 96)) -> np.ndarray:
    """Draw the mask's outline (2 px) on a copy of the image."""
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    out = rgb.copy()
    out[edge] = colour
    return out


@dataclass(frozen=True)
class Page:
    tiles: list[tuple[np.ndarray, str]]  # (thumbnail, caption)
    page: int
    pages: int
    total: int


def browse_page(manifest: Manifest, cache: PixelCache, split: str = ALL, cls: str = ALL,
                page: int = 0, per_page: int = 24, size: int = 192, show_masks: bool = True,
                scheme: str | None = None) -> Page:
    """One page of thumbnails, filtered by split and class, masks outlined."""
    items = filter_items(manifest, split, cls, scheme)
    pages = max(1, -(-len(items) // per_page))
    page = min(max(0, page), pages - 1)
    tiles = []
    for item in items[page * per_page:(page + 1) * per_page]:
        rgb = cache.rgb(item.image, item.sha256, size)
        if show_masks and item.mask:
            rgb = overlay_mask(rgb, resize_mask(load_mask(item.mask), size))
        tiles.append((rgb, f"{manifest.label_of(item, scheme)} ({item.raw_label}) · "
                           f"{item.split} · {item.id[:10]}"))
    return Page(tiles, page, pages, len(items))


def contact_sheet(manifest: Manifest, cache: PixelCache, per_class: int = 6, size: int = 160,
                  scheme: str | None = None, show_masks: bool = False, seed: int = 0) -> np.ndarray:
    """One row per class of ``per_class`` images drawn at random (seeded): an RGB array."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls in manifest.class_counts(scheme)["all"]:
        items = filter_items(manifest, ALL, cls, scheme)
        chosen = [items[i] for i in sorted(rng.choice(len(items), min(per_class, len(items)),
                                                      replace=False))]
        tiles = []
        for item in chosen:
            rgb = cache.rgb(item.image, item.sha256, size)
            if show_masks and item.mask:
                rgb = overlay_mask(rgb, resize_mask(load_mask(item.mask), size))
            tiles.append(rgb)
        tiles += [np.zeros((size, size, 3), np.uint8)] * (per_class - len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)
