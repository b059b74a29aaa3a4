"""The image pool in the database: real images from data sets, synthetic images by content.

Synthetic images are stored once, as ``synthetic/<sha256>.png`` with no metadata (no
text chunks, no label in the name), and their provenance goes to the database.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from polyp_core.data.manifest import Manifest
from polyp_core.files import atomic_write
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


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


def add_synthetic(db: Database, workspace: Workspace, rgb: np.ndarray,
                  provenance: ProvenanceRecord) -> tuple[int, str]:
    """Store a synthetic image once (content-addressed) with its provenance.

    Returns:
        ``(image id, sha256)``; adding the same pixels again returns the first record.
    """
    data = png_bytes(rgb)
    sha = hashlib.sha256(data).hexdigest()
    path = workspace.synthetic_dir / f"{sha}.png"
    if not path.exists():
        atomic_write(path, data)
    with db.session() as session:
        image = queries.upsert_image(
            session, sha256=sha, path=str(path), kind="synthetic", label=provenance.class_label,
            provenance=asdict(provenance))
        return image.id, sha


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
