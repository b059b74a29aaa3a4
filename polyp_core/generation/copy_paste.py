"""Copy-paste: the conventional augmentation every synthetic arm must beat.

A training polyp of the requested class is cut out with its mask, scaled, flipped and turned,
colour-matched to the ring of mucosa around its new place, and blended (feathered over a few
pixels, inside its own mask only) into another frame, away from that frame's own polyp. The
result's mask is the union of both polyps. Every pixel outside the pasted polyp is the target
frame's, at its own size.

Both frames are training data of the image: the provenance names them (``background``: the
target, ``sources``: the frame the polyp came from), and retrain's leak checks treat both as
such in every fold (``experiment.leakage.background_leaks``). The generator is registered like
an imported one (``external/<name>/generator.json``, kind ``copy-paste``), its training record
the union of the frames it ever used, so the generator-level checks read it too.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from polyp_core.data.images import load_mask, load_rgb
from polyp_core.generation.masks import dilate
from polyp_core.generation.window import box, feather_alpha
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.validation import checked, rule

if TYPE_CHECKING:
    from polyp_core.data.manifest import ManifestItem
    from polyp_core.workspace import Workspace
    from review_db.database import Database

BACKEND = "copy-paste"
SPLITS = ("train", "valid", "test")
#: how far (frame px) a pasted polyp stays from the target's own polyp, and from the border
GAP, EDGE = 8, 2
#: the ring of mucosa whose colour a pasted polyp takes, px around it
RING = 8
#: the feathered seam inside the pasted polyp's mask, px
SEAM = 3.0
#: placements tried per target frame, and target frames tried per image
TRIES, TARGETS = 60, 12


@checked
@dataclass(frozen=True)
class CopyPasteRequest:
    """What to make.

    Attributes:
        dataset: the real data set whose frames give the polyps and the backgrounds.
        class_label: the class of the polyps to paste (a one-class data set's when empty).
        n: how many images.
        seed: the first image's seed (image k uses ``seed + k``).
        generator: its name in the pool (registered once per data set).
        source_split: the split the polyps are cut from (the training split: a polyp is
            training data of the image).
        target_split: the split of the frames they are pasted into (``train`` for retraining;
            a held-out split to compare with other generators there).
        scale: the pasted polyp's size, a random factor in ``[1 / scale, scale]``.
    """

    dataset: str = rule(text=True)
    class_label: str = rule("", text=True)
    n: int = rule(10, lo=1, hi=100_000)
    seed: int = 0
    generator: str = rule(BACKEND, text=True)
    source_split: str = rule("train", choices=SPLITS)
    target_split: str = rule("train", choices=SPLITS)
    scale: float = rule(1.25, lo=1.0, hi=4.0)

    def validate(self) -> None:
        """Every field is checked when the request is made (``polyp_core.validation``)."""


@dataclass
class Pasted:
    """One image: pixels and mask at the target frame's size, and how it was made."""

    rgb: np.ndarray
    mask: np.ndarray
    seed: int
    source: dict
    target: dict
    placement: dict = field(default_factory=dict)


def _record(dataset: str, item: ManifestItem) -> dict:
    return {"dataset": dataset, "id": item.id, "sha256": item.sha256, "group": item.group,
            "split": item.split}


def frames_for(workspace: Workspace, request: CopyPasteRequest
            ) -> tuple[str, list[ManifestItem], list[ManifestItem]]:
    """The class, the source frames (its polyps) and the target frames.

    Raises:
        ValueError: an unknown class, or too few frames with masks (naming the class and the
            count).
    """
    manifest = workspace.load_manifest(request.dataset)
    classes = {manifest.label_of(i) for i in manifest.items}
    label = request.class_label or (next(iter(classes)) if len(classes) == 1 else "")
    if label not in classes:
        raise ValueError(f"`class_label`: {request.class_label!r} is not a class of "
                         f"{request.dataset!r} ({', '.join(sorted(classes))})")
    sources = [i for i in manifest.items if i.mask and i.split == request.source_split
               and manifest.label_of(i) == label]
    targets = [i for i in manifest.items if i.mask and i.split == request.target_split]
    if len(sources) < 2:
        raise ValueError(f"`class_label`: {request.dataset!r} has {len(sources)} {label} "
                         f"polyp(s) with a mask in its {request.source_split} split; copy-paste "
                         "needs at least 2 (so that a polyp moves to another frame, and not "
                         "always the same one)")
    if len(targets) < 2:
        raise ValueError(f"`target_split`: {request.dataset!r} has {len(targets)} frame(s) with "
                         f"a mask in its {request.target_split} split; copy-paste needs 2")
    return label, sources, targets


def _transform(patch: np.ndarray, mask: np.ndarray, factor: float, flips: tuple[bool, bool],
               turns: int) -> tuple[np.ndarray, np.ndarray]:
    size = (max(3, round(patch.shape[1] * factor)), max(3, round(patch.shape[0] * factor)))
    rgb = np.asarray(Image.fromarray(patch).resize(size, Image.Resampling.BICUBIC))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        size, Image.Resampling.NEAREST)) >= 128
    if flips[0]:
        rgb, m = rgb[:, ::-1], m[:, ::-1]
    if flips[1]:
        rgb, m = rgb[::-1], m[::-1]
    return np.ascontiguousarray(np.rot90(rgb, turns)), np.ascontiguousarray(np.rot90(m, turns))


def _ring_stats(rgb: np.ndarray, inside: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    ring = dilate(inside, RING) & ~inside & ~exclude
    pixels = rgb[ring].astype(np.float64) if ring.any() else rgb.reshape(-1, 3).astype(np.float64)
    return pixels.mean(0), pixels.std(0) + 1.0


def colour_match(patch: np.ndarray, source_ring: tuple[np.ndarray, np.ndarray],
                 target_ring: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The patch's colours moved from its own ring of mucosa to the new place's: per channel,
    ``(x - mean_src) * clip(std_tgt / std_src, 0.7, 1.4) + mean_tgt``."""
    (mean_s, std_s), (mean_t, std_t) = source_ring, target_ring
    gain = np.clip(std_t / std_s, 0.7, 1.4)
    return np.clip((patch.astype(np.float64) - mean_s) * gain + mean_t, 0, 255).round().astype(
        np.uint8)


def _place(target_mask: np.ndarray, pasted: np.ndarray, rng: np.random.Generator
           ) -> tuple[int, int] | None:
    """A top-left corner where the pasted mask lies inside the frame (``EDGE`` px from its
    border) and ``GAP`` px away from the target's own polyp; None when none is found."""
    height, width = target_mask.shape
    h, w = pasted.shape
    if h + 2 * EDGE > height or w + 2 * EDGE > width:
        return None
    keep_out = dilate(target_mask, GAP)
    for _ in range(TRIES):
        y = int(rng.integers(EDGE, height - h - EDGE + 1))
        x = int(rng.integers(EDGE, width - w - EDGE + 1))
        if not (keep_out[y:y + h, x:x + w] & pasted).any():
            return y, x
    return None


def paste_polyp(source_rgb: np.ndarray, source_mask: np.ndarray, target_rgb: np.ndarray,
                target_mask: np.ndarray, rng: np.random.Generator, scale: float
                ) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """One source polyp pasted into one target frame: the image, the union of both masks and
    the placement; None when no place is found."""
    y0, y1, x0, x1 = box(source_mask)
    patch, cut = source_rgb[y0:y1, x0:x1], source_mask[y0:y1, x0:x1]
    src_ring = _ring_stats(source_rgb, source_mask, np.zeros_like(source_mask))
    factor = float(np.exp(rng.uniform(-np.log(scale), np.log(scale))))
    flips = (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
    turns = int(rng.integers(0, 4))
    patch, cut = _transform(patch, cut, factor, flips, turns)
    where = _place(target_mask, cut, rng)
    if where is None:
        return None
    y, x = where
    h, w = cut.shape
    placed = np.zeros_like(target_mask)
    placed[y:y + h, x:x + w] = cut
    matched = colour_match(patch, src_ring, _ring_stats(target_rgb, placed, target_mask))
    alpha = feather_alpha(cut, SEAM)[..., None]
    out = target_rgb.copy()
    region = out[y:y + h, x:x + w].astype(np.float64)
    out[y:y + h, x:x + w] = np.where(alpha > 0, np.rint(alpha * matched + (1 - alpha) * region),
                                     region).astype(np.uint8)
    return out, target_mask | placed, {"x": x, "y": y, "width": w, "height": h,
                                       "scale": round(factor, 4), "flip_h": flips[0],
                                       "flip_v": flips[1], "turns": turns}


def copy_paste(workspace: Workspace, request: CopyPasteRequest, progress: Progress = no_progress,
               cancel: CancelToken | None = None) -> tuple[str, list[Pasted]]:
    """``request.n`` images (image k seeded ``seed + k``): the class and the images.

    Raises:
        ValueError: as :func:`frames_for`, or no place found for a polyp in any frame tried.
    """
    label, sources, targets = frames_for(workspace, request)
    made: list[Pasted] = []
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def frame(item: ManifestItem) -> tuple[np.ndarray, np.ndarray]:
        if item.sha256 not in cache:
            if len(cache) > 256:
                cache.clear()
            cache[item.sha256] = (load_rgb(item.image), load_mask(item.mask))
        return cache[item.sha256]

    for k in range(request.n):
        if cancel is not None:
            cancel.check()
        seed = request.seed + k
        rng = np.random.default_rng(seed)
        source = sources[int(rng.integers(len(sources)))]
        others = [t for t in targets if t.sha256 != source.sha256
                  and (t.pixels is None or t.pixels != source.pixels)]
        if not others:
            raise ValueError(f"`target_split`: no frame of {request.target_split} other than "
                             f"{source.id} (and its copies) to paste its polyp into")
        pasted = None
        for _ in range(TARGETS):
            target = others[int(rng.integers(len(others)))]
            pasted = paste_polyp(*frame(source), *frame(target), rng, request.scale)
            if pasted is not None:
                break
        if pasted is None:
            raise ValueError(f"copy-paste: no place found for polyp {source.id} away from the "
                             f"polyps of {TARGETS} frames tried (seed {seed}); lower `scale`")
        rgb, mask, placement = pasted
        made.append(Pasted(rgb, mask, seed, _record(request.dataset, source),
                           _record(request.dataset, target), placement))
        progress(k + 1, request.n, f"pasted {k + 1}/{request.n}")
    return label, made


def _register(workspace: Workspace, request: CopyPasteRequest, made: list[Pasted]) -> None:
    """The generator's record beside the imported ones: the data set and the union of every
    frame it used (sources and targets), which the generator-level leak checks read."""
    from polyp_core import __version__
    from polyp_core.external import read_record, record_path
    from polyp_core.files import atomic_write

    old = read_record(workspace, request.generator)
    if old is not None and (old.get("kind") != BACKEND or old.get("dataset") != request.dataset):
        raise ValueError(f"`generator`: {request.generator!r} is already registered "
                         f"({old.get('kind', 'external')}, data set {old.get('dataset')!r}); "
                         "choose another name")
    if (workspace.models_dir / request.generator).exists():
        raise ValueError(f"`generator`: {request.generator!r} is a generator trained in this "
                         "workspace; choose another name")
    used = set((old or {}).get("trained_on", {}).get("image_sha256", []))
    used |= {p.source["sha256"] for p in made} | {p.target["sha256"] for p in made}
    record = {"name": request.generator, "kind": BACKEND, "version": __version__,
              "source": "built-in copy-paste augmentation", "licence": "the data set's",
              "dataset": request.dataset,
              "trained_on": {"dataset": request.dataset,
                             "declared": f"{request.dataset}: the frames each image was made of",
                             "image_sha256": sorted(used)},
              "imports": (old or {}).get("imports", []) + [{
                  "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "images": len(made), "seed": request.seed,
                  "source_split": request.source_split, "target_split": request.target_split}]}
    atomic_write(record_path(workspace, request.generator), json.dumps(record, indent=2).encode())


def store_pasted(db: Database, workspace: Workspace, request: CopyPasteRequest, label: str,
                 made: list[Pasted]) -> list[tuple[int, str]]:
    """Register the generator, then put every image into the pool with its mask; its
    provenance names both frames (``background``: the target, ``sources``: the polyp's)."""
    from polyp_core.pool import ProvenanceRecord, add_synthetic

    _register(workspace, request, made)
    stored = []
    for image in made:
        provenance = ProvenanceRecord(
            backend=BACKEND, generator=request.generator, class_label=label, seed=image.seed,
            width=int(image.rgb.shape[1]), height=int(image.rgb.shape[0]),
            extra={"copy_paste": {"blend": "feathered", "seam": SEAM, "ring": RING,
                                  "scale": request.scale, **image.placement},
                   "background": image.target, "sources": [image.source]})
        stored.append(add_synthetic(db, workspace, image.rgb, provenance, mask=image.mask))
    return stored
