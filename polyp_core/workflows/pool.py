"""The synthetic pool as an admin browses it: which generators it holds."""

from __future__ import annotations

from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from review_db import queries
from review_db.database import Database


def generators(db: Database, person: Person) -> list[str]:
    """The generators with at least one image in the pool."""
    authorise(db, person)
    with db.session() as session:
        return sorted({i.provenance.generator for i in queries.synthetic_images(session)})
