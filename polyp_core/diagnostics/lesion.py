"""Evidence on the hole, not the frame: the diagnostics of crops around each polyp.

An inpainted image is mostly its real background, so KID over whole frames rewards the frame
and says little about the polyp the generator made. Here every image is cut to the square
around its polyp region (the box grown by half, ``generation.window.lesion_window``), scaled to
the extractor's size, and compared there:

- real: each frame's own polyp mask;
- inpainted: the hole it filled; copy-paste: the pasted polyp's box; any other synthetic
  image with a mask: its mask;
- images without a region (no mask) are left out and counted.

KID per class pair of synthetic crops against real crops, the real-vs-real floor on crops
(two group-disjoint halves), a 95% interval of each diagonal KID from half-samples over real
groups (lesions, or frames where the data set names none) and over the synthetic images'
frames (:func:`kid_interval`), and the nearest real crop of every synthetic crop (a copy
check on the polyp).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.data.images import load_mask, load_rgb, resize_rgb
from polyp_core.diagnostics.distances import kid
from polyp_core.generation.window import lesion_window

if TYPE_CHECKING:
    from polyp_core.data.manifest import ManifestItem
    from polyp_core.diagnostics.features import FeatureExtractor
    from polyp_core.progress import Progress
    from polyp_core.workspace import Workspace
    from review_db.database import Database

REGIONS = ("frame", "lesion")
#: bootstrap replicates of a diagonal KID's interval, and KID subsets in each
N_BOOT, BOOT_SUBSETS = 200, 10


def lesion_crop(rgb: np.ndarray, region: np.ndarray, size: int) -> np.ndarray | None:
    """The square around ``region`` (its box grown by half), at ``size``; None when the region
    is empty or larger than a square of the frame."""
    if region.shape != rgb.shape[:2] or not region.any():
        return None
    try:
        window = lesion_window(region, 1)
    except ValueError:
        return None
    return resize_rgb(np.ascontiguousarray(window.crop(rgb)), size)


def real_crops(items: Sequence[ManifestItem], size: int) -> tuple[list[int], list[np.ndarray]]:
    """The crops of real frames with a mask: the kept indices and their crops."""
    kept, crops = [], []
    for k, item in enumerate(items):
        if not item.mask:
            continue
        crop = lesion_crop(load_rgb(item.image), load_mask(item.mask), size)
        if crop is not None:
            kept.append(k)
            crops.append(crop)
    return kept, crops


def synthetic_region(extra: dict, rgb_shape: tuple[int, int], workspace: Workspace
                     ) -> np.ndarray | None:
    """Where a synthetic image's polyp is: the hole an inpainted image filled, the box of a
    copy-paste image's pasted polyp within its mask, else its own mask; None without one."""
    from polyp_core.pool import mask_path

    folder = workspace.synthetic_dir
    hole_sha = (extra.get("inpaint") or {}).get("hole_sha256")
    if hole_sha and mask_path(folder, hole_sha).is_file():
        return load_mask(mask_path(folder, hole_sha))
    mask = load_mask(mask_path(folder, extra["mask_sha256"])) if extra.get("mask_sha256") else None
    placed = extra.get("copy_paste")
    if placed and mask is not None:
        region = np.zeros(rgb_shape, bool)
        region[placed["y"]:placed["y"] + placed["height"],
               placed["x"]:placed["x"] + placed["width"]] = True
        return region & mask
    return mask


def synthetic_crops(db: Database, workspace: Workspace, shas: Sequence[str], size: int
                    ) -> tuple[list[int], list[np.ndarray], list[str]]:
    """The crops of synthetic images with a polyp region: kept indices, crops, and each kept
    image's unit for the bootstrap (the frame it was made on, else the image itself)."""
    from review_db import queries

    kept, crops, units = [], [], []
    with db.session() as session:
        for k, sha in enumerate(shas):
            image = queries.image_by_sha(session, sha)
            extra = (image.provenance.extra if image and image.provenance else None) or {}
            rgb = load_rgb(image.path)
            region = synthetic_region(extra, rgb.shape[:2], workspace)
            crop = None if region is None else lesion_crop(rgb, region, size)
            if crop is not None:
                kept.append(k)
                crops.append(crop)
                units.append((extra.get("background") or {}).get("sha256") or sha)
    return kept, crops, units


def kid_interval(real: np.ndarray, real_units: Sequence[str], synthetic: np.ndarray,
                 synthetic_units: Sequence[str], seed: int = 0, n_boot: int = N_BOOT,
                 level: float = 0.95) -> dict:
    """A 95% interval of KID(real, synthetic) over lesions: KID is computed on the whole sets
    (``estimate``) and on ``n_boot`` half-samples drawn without replacement by unit (real
    groups; synthetic images by the frame they were made on), ``BOOT_SUBSETS`` KID subsets in
    each. A bootstrap with replacement would put copies of an image in one set, which the
    unbiased KID reads as a closer set and biases upward; half-samples hold no copies. Their
    spread, scaled by 1/sqrt(2) to the whole sets' size (the variance of a U-statistic goes
    as 1/n), gives a normal interval around the estimate."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)

    def members(units: Sequence[str]) -> list[np.ndarray]:
        by: dict[str, list[int]] = {}
        for k, u in enumerate(units):
            by.setdefault(u, []).append(k)
        return [np.array(v) for v in by.values()]

    real_groups, syn_groups = members(real_units), members(synthetic_units)
    estimate = kid(real, synthetic, BOOT_SUBSETS * 10, min(len(real), len(synthetic), 1000),
                   seed).mean
    values = []
    for b in range(n_boot):
        r = np.concatenate([real_groups[i] for i in rng.permutation(len(real_groups))[
            :max(1, len(real_groups) // 2)]])
        s = np.concatenate([syn_groups[i] for i in rng.permutation(len(syn_groups))[
            :max(1, len(syn_groups) // 2)]])
        if len(r) < 2 or len(s) < 2:
            continue
        values.append(kid(real[r], synthetic[s], BOOT_SUBSETS, min(len(r), len(s), 1000),
                          seed * 100_003 + b).mean)
    half = norm.ppf(0.5 + level / 2) * np.std(values, ddof=1) / np.sqrt(2) \
        if len(values) > 1 else np.nan
    return {"estimate": float(estimate), "low": float(estimate - half),
            "high": float(estimate + half), "n_boot": len(values),
            "real_units": len(real_groups), "synthetic_units": len(syn_groups),
            "method": "half-samples by unit without replacement, normal interval"}


def embed(extractor: FeatureExtractor, crops: list[np.ndarray], progress: Progress
          ) -> np.ndarray:
    return extractor(crops, progress) if crops else np.zeros((0, extractor.dim), np.float32)
