"""Blind review (any signed-in account, for studies it is in): the next image, its served
bytes, a rating. Everything a reviewer receives passes the study's blinding chain; the desk
checks the account and the token's owner once more."""

from __future__ import annotations

from polyp_core.review import desk
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

REVIEWER_ENTRIES = frozenset({"queue", "next_unrated", "image", "rate"})


def queue(db: Database, person: Person, study: str) -> list[desk.QueueItem]:
    authorise(db, person, "reviewer")
    return desk.queue(db, person, study)


def next_unrated(db: Database, person: Person, study: str) -> desk.QueueItem | None:
    authorise(db, person, "reviewer")
    return desk.next_unrated(db, person, study)


def image(db: Database, workspace: Workspace, person: Person, token: str) -> bytes:
    authorise(db, person, "reviewer")
    return desk.image_for(db, workspace, person, token)


def rate(db: Database, person: Person, token: str, verdict: str | None, quality: str,
         histology: str | None = None, seconds: float | None = None,
         confidence: int | None = None, mask_quality: str | None = None) -> desk.Receipt:
    authorise(db, person, "reviewer")
    return desk.rate(db, person, token, verdict, quality, histology, seconds,
                     confidence=confidence, mask_quality=mask_quality)
