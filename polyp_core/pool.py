"""The image pool in the database: real images from data sets, synthetic images by content.

Synthetic images are stored once, as ``synthetic/<sha256>.png`` with no metadata (no
text chunks, no label in the name), and their provenance goes to the database.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from polyp_core.data.manifest import Manifest
from polyp_core.files import atomic_write
from polyp_core.vocabulary import QUALITY_ORDER
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from review_db.models import Image, Provenance


@dataclass(frozen=True)
class ProvenanceRecord:
    """Everything needed to make a synthetic image again (mirrors ``review_db.models.Provenance``)."""

    backend: str
    generator: str
    class_label: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    checkpoint: str | None = None
    checkpoint_hash: str | None = None
    base_model: str | None = None
    base_model_hash: str | None = None
    lora: dict | None = None
    lora_scale: float | None = None
    width: int | None = None
    height: int | None = None
    extra: dict | None = None


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG with no text chunks or other metadata: identical pixels give identical bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """A mask as the pool stores it: black and white RGB PNG without metadata."""
    return png_bytes(np.repeat(np.asarray(mask, bool)[..., None].astype(np.uint8) * 255, 3, 2))


def add_synthetic(db: Database, workspace: Workspace, rgb: np.ndarray,
                  provenance: ProvenanceRecord, mask: np.ndarray | None = None) -> tuple[int, str]:
    """Store a synthetic image once (content-addressed) with its provenance, and its polyp
    mask beside it when it has one (``provenance.extra["mask_sha256"]``).

    Returns:
        ``(image id, sha256)``; adding the same pixels again returns the first record.
    """
    data = png_bytes(rgb)
    sha = hashlib.sha256(data).hexdigest()
    path = workspace.synthetic_dir / f"{sha}.png"
    if mask is not None:
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        stored = mask_png(mask)
        mask_sha = hashlib.sha256(stored).hexdigest()
        if not mask_path(workspace.synthetic_dir, mask_sha).exists():
            atomic_write(mask_path(workspace.synthetic_dir, mask_sha), stored)
        provenance = replace(provenance, extra={**(provenance.extra or {}), "mask_sha256": mask_sha})
    if not path.exists():
        atomic_write(path, data)
    with db.session() as session:
        image = queries.upsert_image(
            session, sha256=sha, path=str(path), kind="synthetic", label=provenance.class_label,
            provenance=asdict(provenance))
        return image.id, sha


def mask_path(synthetic_dir: Path, mask_sha: str) -> Path:
    """Where the pool keeps a synthetic image's mask: beside the images, by content hash."""
    return Path(synthetic_dir) / "masks" / f"{mask_sha}.png"


def register_dataset(db: Database, manifest: Manifest) -> int:
    """Make a data set's images known to the database as real images. Returns how many."""
    with db.session() as session:
        for item in manifest.items:
            queries.upsert_image(session, sha256=item.sha256, path=item.image, kind="real",
                                 label=item.label, dataset=manifest.name, split=item.split,
                                 source_id=item.id)
    return len(manifest.items)


def image_path(db: Database, sha256: str) -> Path:
    with db.session() as session:
        image = queries.image_by_sha(session, sha256)
        if image is None:
            raise KeyError(f"no image with SHA-256 {sha256}")
        return Path(image.path)


# browsing and pruning the pool ---------------------------------------------------------------

RATING_FILTERS = ("any", "rated", "unrated")


@dataclass(frozen=True)
class PoolFilter:
    """Which synthetic images to list. ``min_quality``: keep images whose median rating is at
    least this good (implies rated). ``min_gate_iou``: keep images the newest segmentation gate
    that scored them found at least this well (implies scored)."""

    generator: str | None = None
    checkpoint: str | None = None
    class_label: str | None = None
    rated: str = "any"
    min_quality: str | None = None
    min_gate_iou: float | None = None

    def __post_init__(self) -> None:
        if self.rated not in RATING_FILTERS:
            raise ValueError(f"rated {self.rated!r} is not one of: {', '.join(RATING_FILTERS)}")
        if self.min_quality is not None and self.min_quality not in QUALITY_ORDER:
            raise ValueError(f"min_quality {self.min_quality!r} is not one of: "
                             f"{', '.join(QUALITY_ORDER)}")


@dataclass(frozen=True)
class PoolItem:
    sha256: str
    path: str
    class_label: str | None
    provenance: dict
    ratings: tuple[dict, ...]
    studies: tuple[str, ...]
    gate: tuple[str, float | None] | None = None  # (gate run, IoU) of the newest gate

    @property
    def mask_file(self) -> Path | None:
        """The polyp mask stored with the image, when it has one."""
        mask_sha = (self.provenance.get("extra") or {}).get("mask_sha256")
        return mask_path(Path(self.path).parent, mask_sha) if mask_sha else None

    @property
    def median_quality(self) -> str | None:
        ranks = sorted(QUALITY_ORDER.index(r["quality"]) for r in self.ratings)
        return QUALITY_ORDER[ranks[(len(ranks) - 1) // 2]] if ranks else None

    def caption(self) -> str:
        p = self.provenance
        made = f"{p.get('generator')}@{p.get('checkpoint') or '-'} · seed {p.get('seed')}"
        rated = (f"{len(self.ratings)} rating(s), median {self.median_quality}"
                 if self.ratings else "unrated")
        gate = ""
        if self.gate is not None:
            gate = " · gate IoU " + ("-" if self.gate[1] is None else f"{self.gate[1]:.2f}")
        return f"{self.class_label or p.get('prompt') or '?'} · {made} · {rated}{gate}"


@dataclass(frozen=True)
class PoolPage:
    items: tuple[PoolItem, ...]
    page: int
    pages: int
    total: int


def _provenance_dict(provenance: Provenance | None) -> dict:
    if provenance is None:
        return {}
    return {c: getattr(provenance, c) for c in (
        "backend", "generator", "checkpoint", "checkpoint_hash", "base_model", "base_model_hash",
        "lora", "lora_scale", "class_label", "prompt", "negative_prompt", "seed", "steps",
        "guidance", "scheduler", "width", "height", "extra")} | {
        "created": provenance.created.isoformat(timespec="seconds") if provenance.created else None}


def pool_page(db: Database, pool_filter: PoolFilter = PoolFilter(), page: int = 0,
              per_page: int = 24) -> PoolPage:
    """One page of the synthetic pool, newest first, with provenance, ratings and the studies
    each image is in. Without rating filters the database pages; rating filters apply after
    the query (ratings live in studies), over the images the other filters leave."""
    if not 1 <= per_page <= 200:
        raise ValueError(f"per_page must be 1-200, not {per_page}")
    where = dict(generator=pool_filter.generator, checkpoint=pool_filter.checkpoint,
                 class_label=pool_filter.class_label)
    with db.session() as session:
        if pool_filter.rated == "any" and not pool_filter.min_quality \
                and pool_filter.min_gate_iou is None:
            _, total = queries.synthetic_page(session, **where, limit=1)
            pages = max(1, -(-total // per_page))
            page = min(max(0, int(page)), pages - 1)
            images, _ = queries.synthetic_page(session, **where, offset=page * per_page,
                                               limit=per_page)
            return PoolPage(tuple(_items(session, images)), page, pages, total)
        images, _ = queries.synthetic_page(session, **where)
        items = _items(session, images, with_studies=False)
        if pool_filter.rated != "any":
            items = [i for i in items if bool(i.ratings) == (pool_filter.rated == "rated")]
        if pool_filter.min_quality:
            floor = QUALITY_ORDER.index(pool_filter.min_quality)
            items = [i for i in items if i.median_quality is not None
                     and QUALITY_ORDER.index(i.median_quality) >= floor]
        if pool_filter.min_gate_iou is not None:
            gated = queries.gate_scores(session, [i.sha256 for i in items])
            items = [i for i in items if i.sha256 in gated and gated[i.sha256][1] is not None
                     and gated[i.sha256][1] >= pool_filter.min_gate_iou]
        pages = max(1, -(-len(items) // per_page))
        page = min(max(0, int(page)), pages - 1)
        wanted = {i.sha256 for i in items[page * per_page:(page + 1) * per_page]}
        shown = _items(session, [i for i in images if i.sha256 in wanted])
        return PoolPage(tuple(shown), page, pages, len(items))


def pool_item(db: Database, sha256: str) -> PoolItem:
    """One synthetic image with its provenance, ratings and studies."""
    with db.session() as session:
        images, _ = queries.synthetic_page(session, shas=[sha256])
        if not images:
            raise KeyError(f"no synthetic image with SHA-256 {sha256}")
        return _items(session, images)[0]


def _items(session: Session, images: Sequence[Image], with_studies: bool = True) -> list[PoolItem]:
    shas = {i.sha256 for i in images}
    ratings: dict[str, list[dict]] = {}
    for sha, _reviewer, study, verdict, quality, revision in queries.synthetic_ratings(session):
        if sha in shas:
            ratings.setdefault(sha, []).append({"study": study, "verdict": verdict,
                                                "quality": quality, "revision": revision})
    used = queries.studies_using_images(session, [i.id for i in images]) if with_studies else {}
    gated = queries.gate_scores(session, list(shas))
    return [PoolItem(i.sha256, i.path, i.label, _provenance_dict(i.provenance),
                     tuple(ratings.get(i.sha256, ())), tuple(sorted(used.get(i.id, ()))),
                     gated.get(i.sha256))
            for i in images]


def runs_using(db: Database, shas: set[str]) -> dict[str, list[str]]:
    """For each of ``shas``, the stored runs whose image lists name it."""
    import re

    found: dict[str, list[str]] = {}
    hexes = re.compile(r"[0-9a-f]{64}")
    with db.session() as session:
        runs = [(r.id, r.results_path) for r in queries.list_runs(session)]
    for run_id, folder in runs:
        path = Path(folder or "") / "images.json"
        if not path.is_file():
            continue
        for sha in set(hexes.findall(path.read_text())) & shas:
            found.setdefault(sha, []).append(run_id)
    return found


@dataclass(frozen=True)
class Removal:
    removed: tuple[str, ...]
    refused: dict[str, str]  # sha256 -> why (the studies and runs that use it)


def remove_from_pool(db: Database, workspace: Workspace, shas: list[str]) -> Removal:
    """Delete synthetic images (record, provenance, file). An image a study or a stored run
    uses is kept, and the answer says which study or run; unknown hashes are refused too."""
    wanted = list(dict.fromkeys(shas))
    runs = runs_using(db, set(wanted))
    refused: dict[str, str] = {}
    with db.session() as session:
        images, _ = queries.synthetic_page(session, shas=wanted)
        known = {i.sha256: i for i in images}
        used = queries.studies_using_images(session, [i.id for i in images])
        doomed = []
        for sha in wanted:
            image = known.get(sha)
            if image is None:
                refused[sha] = "not a synthetic image of the pool"
                continue
            why = [f"study {name}" for name in sorted(used.get(image.id, ()))]
            why += [f"run {run}" for run in sorted(runs.get(sha, ()))]
            if why:
                refused[sha] = "used by " + ", ".join(why)
            else:
                doomed.append(image)
        paths = [Path(i.path) for i in doomed]
        removed = tuple(i.sha256 for i in doomed)
        queries.delete_synthetic_images(session, doomed)
    for path in paths:  # after the commit: a failed delete leaves no record without its file
        if path.is_relative_to(workspace.synthetic_dir):
            path.unlink(missing_ok=True)
    return Removal(removed, refused)
