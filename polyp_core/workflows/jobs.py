"""Background work as a dashboard shows it."""

from __future__ import annotations

from polyp_core.jobs import JobStatus, job_status, list_jobs, recover_interrupted
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from review_db import queries
from review_db.database import Database


def active(db: Database, person: Person, kind: str) -> list[str]:
    """Ids of the queued or running jobs of ``kind``, newest first."""
    authorise(db, person)
    with db.session() as session:
        return [j.id for j in queries.list_jobs(session, kind, statuses=("queued", "running"))]


def status(db: Database, person: Person, job: str) -> JobStatus | None:
    """One job's state (None when there is no such job)."""
    authorise(db, person)
    return job_status(db, job)


def listing(db: Database, person: Person, kind: str | None = None) -> list[JobStatus]:
    """Every job of ``kind`` (all kinds: None), newest first; jobs whose process died are
    marked interrupted first."""
    authorise(db, person)
    recover_interrupted(db)
    return list_jobs(db, kind)
