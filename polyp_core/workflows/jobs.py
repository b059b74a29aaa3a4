"""Background work as a dashboard shows it."""

from __future__ import annotations

from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from review_db import queries
from review_db.database import Database


def active(db: Database, person: Person, kind: str) -> list[str]:
    """Ids of the queued or running jobs of ``kind``, newest first."""
    authorise(db, person)
    with db.session() as session:
        return [j.id for j in queries.list_jobs(session, kind, statuses=("queued", "running"))]
