"""The reviewer's side of a blind study, and the admin's view of what was said.

A reviewer only ever handles tokens: the queue lists tokens and whether each is rated, the
image comes by token, the rating goes by token. Nothing returned to a reviewer says where
an image came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyp_core.review.accounts import Person, live_account
from polyp_core.review.errors import InvalidRating, NotFound, PermissionDenied, StudyClosed
from review_db import queries
from review_db.database import Database
from polyp_core.workspace import Workspace
from polyp_core.vocabulary import CONFIDENCES, HISTOLOGY_GUESSES, QUALITIES, verdict_of
from review_db.models import Assignment

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from review_db.models import Image, Study

MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class QueueItem:
    """One entry of a reviewer's queue: everything the reviewer may know about it."""

    token: str
    position: int
    rated: bool
    verdict: str | None = None
    quality: str | None = None
    histology: str | None = None
    confidence: int | None = None
    mask_quality: str | None = None


@dataclass(frozen=True)
class Receipt:
    """The acknowledgement of a rating: once returned, the rating is committed."""

    token: str
    revision: int
    changed: bool


def _study_named(session: Session, study_name: str) -> Study:
    from polyp_core.review.studies import open_to_reviewers

    study = queries.study_by_name(session, study_name)
    # a study held by its leak audit answers like one that does not exist
    if study is None or not open_to_reviewers(study):
        raise NotFound(f"no study named {study_name!r}")
    return study


def queue(db: Database, person: Person, study_name: str) -> list[QueueItem]:
    """The signed-in person's own assignments in a study, in their order, with their ratings."""
    with db.session() as session:
        live_account(session, person)
        study = _study_named(session, study_name)
        items = queries.reviewer_queue(session, study.id, person.id)
        if not items:
            raise NotFound(f"you have no assignments in study {study_name!r}")
        return [QueueItem(a.token, a.position, a.rating is not None,
                          *(a.rating.verdict, a.rating.quality, a.rating.histology,
                            a.rating.confidence, a.rating.mask_quality) if a.rating else ())
                for a in items]


def asks_mask(db: Database, person: Person, study_name: str) -> bool:
    """Whether a study the person reviews shows masks (and so asks for their quality)."""
    with db.session() as session:
        live_account(session, person)
        return bool(_study_named(session, study_name).settings.get("show_mask"))


def next_unrated(db: Database, person: Person, study_name: str) -> QueueItem | None:
    """Where the reviewer left off: the first unrated item, or ``None`` when all are done."""
    return next((item for item in queue(db, person, study_name) if not item.rated), None)


def _own_assignment(session: Session, person: Person, token: str, lock: bool = False) -> Assignment:
    if not isinstance(token, str) or not token:
        raise NotFound("unknown assignment token")
    assignment = queries.assignment_by_token(session, token, lock=lock)
    # Another reviewer's token gets the same answer as a made-up one: it says nothing.
    if assignment is None or assignment.reviewer_id != person.id or \
            assignment.study.settings.get("held"):
        raise NotFound("unknown assignment token")
    live_account(session, person)  # a deactivated account's open page can no longer rate
    return assignment


def image_for(db: Database, workspace: Workspace, person: Person, token: str) -> bytes:
    """The blinded image bytes behind one of the reviewer's own tokens: the study's serving
    chain (resolution matching, one encoder, one byte length), rendered at creation."""
    from polyp_core.review.studies import served_bytes

    with db.session() as session:
        assignment = _own_assignment(session, person, token)
        return served_bytes(workspace, assignment.study, assignment.image)


def _check_mask_quality(mask_quality: object, asked: bool) -> str | None:
    if not asked:
        if mask_quality is not None:
            raise InvalidRating("mask_quality: this study shows no masks, so it asks nothing "
                                "about them")
        return None
    if mask_quality not in QUALITIES:
        raise InvalidRating(f"mask_quality {mask_quality!r} is not one of: {', '.join(QUALITIES)} "
                            "(this study shows masks: rate the mask too)")
    return str(mask_quality)


def _check_rating(verdict: object, confidence: object, quality: object, histology: object,
                  seconds: object, ask_histology: bool) -> tuple[int, str, str, str | None,
                                                                  float | None]:
    if confidence is None:  # a binary answer: the scale's end it means
        if verdict not in ("real", "synthetic"):
            raise InvalidRating(f"verdict {verdict!r} is not one of: real, synthetic (or give a "
                                "confidence from 1, definitely real, to 5, definitely synthetic)")
        confidence = 1 if verdict == "real" else 5
    if isinstance(confidence, bool) or confidence not in CONFIDENCES:
        raise InvalidRating(f"confidence {confidence!r} is not one of: 1 (definitely real), 2, "
                            "3 (unsure), 4, 5 (definitely synthetic)")
    if verdict is not None and verdict != verdict_of(int(confidence)):
        raise InvalidRating(f"verdict {verdict!r} contradicts confidence {confidence} "
                            f"({verdict_of(int(confidence))})")
    if quality not in QUALITIES:
        raise InvalidRating(f"quality {quality!r} is not one of: {', '.join(QUALITIES)}")
    if histology is not None and histology not in HISTOLOGY_GUESSES:
        raise InvalidRating(f"histology {histology!r} is not one of: "
                            f"{', '.join(HISTOLOGY_GUESSES)}")
    if ask_histology and histology is None:
        raise InvalidRating("this study asks for histology: one of "
                            f"{', '.join(HISTOLOGY_GUESSES)}")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
            raise InvalidRating(f"seconds {seconds!r} must be a number from 0 to {MAX_SECONDS}")
        seconds = float(seconds)
    confidence = int(confidence)
    return confidence, verdict_of(confidence), quality, histology, seconds  # type: ignore[return-value]


def rate(db: Database, person: Person, token: str, verdict: str | None, quality: str,
         histology: str | None = None, seconds: float | None = None,
         confidence: int | None = None, mask_quality: str | None = None) -> Receipt:
    """Record (or revise) the reviewer's rating of one of their assignments.

    The answer is a point of the five-point scale (``confidence``: 1 definitely real ... 5
    definitely synthetic); the verdict is derived from it. A binary ``verdict`` alone stands
    for the scale's end (real: 1, synthetic: 5). A study that shows masks asks a third
    answer, ``mask_quality`` (good/moderate/poor), and refuses a rating without it; other
    studies refuse one with it. Submitting the same values again changes nothing and counts
    once. Every check runs before any write, so a refused rating leaves
    the database as it was.

    Raises:
        NotFound: unknown token, or another reviewer's.
        StudyClosed: the study is closed.
        InvalidRating: a value outside the allowed ones, naming the field.
    """
    with db.session() as session:
        assignment = _own_assignment(session, person, token, lock=True)
        study = assignment.study
        if study.status != "open":
            raise StudyClosed(f"study {study.name!r} is closed; ratings can no longer change")
        values = _check_rating(verdict, confidence, quality, histology, seconds,
                               bool(study.settings.get("ask_histology")))
        mask = _check_mask_quality(mask_quality, bool(study.settings.get("show_mask")))
        rating, changed = queries.save_rating(session, assignment, confidence=values[0],
                                              verdict=values[1], quality=values[2],
                                              histology=values[3], seconds=values[4],
                                              mask_quality=mask)
        return Receipt(token, rating.revision, changed)


# admin views ---------------------------------------------------------------------------------

def _visible_study(session: Session, admin: Person, study_name: str) -> Study:
    from polyp_core.review.studies import admin_study

    study = admin_study(session, admin, study_name)
    if study.status != "closed" and not study.settings.get("key_visible_while_open"):
        raise PermissionDenied(f"study {study_name!r} is open: its answer key and ratings stay "
                               "hidden until it is closed (or create it with "
                               "key_visible_while_open)")
    return study


def source_of(image: Image) -> str:
    """``real`` or ``<generator>@<checkpoint>``: the unit statistics are reported per."""
    if image.kind == "real":
        return "real"
    provenance = image.provenance
    name = provenance.generator if provenance else "synthetic"
    return f"{name}@{provenance.checkpoint}" if provenance and provenance.checkpoint else name


def rating_records(db: Database, admin: Person, study_name: str) -> list[dict]:
    """Every assignment of a study with truth and rating, for statistics and export (admins)."""
    with db.session() as session:
        study = _visible_study(session, admin, study_name)
        rows = []
        for assignment, rating in queries.study_rows(session, study.id):
            image = assignment.image
            rows.append({
                "study": study.name, "reviewer": assignment.reviewer.name,
                "image": image.sha256, "position": assignment.position,
                "kind": assignment.kind,
                "truth": image.kind, "source": source_of(image), "label": image.label,
                "verdict": rating.verdict if rating else None,
                "confidence": rating.confidence if rating else None,
                "quality": rating.quality if rating else None,
                "histology": rating.histology if rating else None,
                "mask_quality": rating.mask_quality if rating else None,
                "seconds": rating.seconds if rating else None,
                "revision": rating.revision if rating else 0,
            })
        return rows


def answer_key(db: Database, admin: Person, study_name: str) -> list[dict]:
    """Which image of a study is real and where each synthetic one came from (admins)."""
    with db.session() as session:
        study = _visible_study(session, admin, study_name)
        return [{"image": si.image.sha256, "truth": si.image.kind, "label": si.image.label,
                 "source": source_of(si.image), "pool": si.pool}
                for si in queries.study_images(session, study.id)]
