"""Diagnostics runs as an admin reads them: the stored runs and the images a run names."""

from __future__ import annotations

from dataclasses import dataclass

from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workflows.retrain import runs as stored_runs
from review_db import queries
from review_db.database import Database


def runs(db: Database, person: Person) -> list[dict]:
    return stored_runs(db, person, "diagnose")


@dataclass(frozen=True)
class ImageFile:
    sha256: str
    path: str
    kind: str


def images(db: Database, person: Person, shas: list[str]) -> dict[str, ImageFile]:
    """The stored images among ``shas`` (a near-copy pair shows both), by SHA-256."""
    authorise(db, person)
    out = {}
    with db.session() as session:
        for sha in shas:
            image = queries.image_by_sha(session, sha)
            if image is not None:
                out[sha] = ImageFile(image.sha256, image.path, image.kind)
    return out
