"""Queries: every read and write of the studio's tables goes through these functions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from review_db.models import (Assignment, AuditEvent, AuthSession, GateScore, Image, Job,
                              Provenance, Rating, RatingRevision, Reviewer, Run, Study,
                              StudyImage, utcnow)

if TYPE_CHECKING:
    from sqlalchemy import Select


# reviewers -----------------------------------------------------------------------------------

def add_reviewer(session: Session, name: str, role: str, password_hash: str) -> Reviewer:
    """Raises ``ValueError`` when the name is taken."""
    if session.scalar(select(Reviewer.id).where(Reviewer.name == name)) is not None:
        raise ValueError(f"a reviewer named {name!r} already exists")
    reviewer = Reviewer(name=name, role=role, password_hash=password_hash)
    session.add(reviewer)
    session.flush()
    return reviewer


def reviewer_by_name(session: Session, name: str) -> Reviewer | None:
    return session.scalar(select(Reviewer).where(Reviewer.name == name))


def reviewers_by_name(session: Session, names: Sequence[str]) -> dict[str, Reviewer]:
    found = session.scalars(select(Reviewer).where(Reviewer.name.in_(names))).all()
    return {r.name: r for r in found}


def list_reviewers(session: Session) -> list[Reviewer]:
    return list(session.scalars(select(Reviewer).order_by(Reviewer.name)))


def set_password(session: Session, reviewer: Reviewer, password_hash: str) -> None:
    reviewer.password_hash = password_hash


def set_account(session: Session, reviewer: Reviewer, *, active: bool | None = None,
                role: str | None = None) -> None:
    if active is not None:
        reviewer.active = active
    if role is not None:
        reviewer.role = role


# sign-in sessions and the audit log ----------------------------------------------------------

def add_auth_session(session: Session, reviewer_id: int, token_hash: str,
                     address: str | None) -> AuthSession:
    row = AuthSession(token_hash=token_hash, reviewer_id=reviewer_id, address=address)
    session.add(row)
    session.flush()
    return row


def auth_session_by_hash(session: Session, token_hash: str) -> AuthSession | None:
    return session.scalar(select(AuthSession).options(joinedload(AuthSession.reviewer))
                          .where(AuthSession.token_hash == token_hash))


def delete_auth_sessions(session: Session, *, reviewer_id: int | None = None,
                         token_hash: str | None = None,
                         idle_before: dt.datetime | None = None,
                         created_before: dt.datetime | None = None) -> int:
    """Delete the sessions matching any of the given conditions; returns how many."""
    conditions = []
    if reviewer_id is not None:
        conditions.append(AuthSession.reviewer_id == reviewer_id)
    if token_hash is not None:
        conditions.append(AuthSession.token_hash == token_hash)
    if idle_before is not None:
        conditions.append(AuthSession.last_seen < idle_before)
    if created_before is not None:
        conditions.append(AuthSession.created < created_before)
    if not conditions:
        raise ValueError("delete_auth_sessions needs a condition")
    return session.execute(delete(AuthSession).where(or_(*conditions))).rowcount or 0


def count_auth_sessions(session: Session, reviewer_id: int) -> int:
    return session.scalar(select(func.count(AuthSession.id))
                          .where(AuthSession.reviewer_id == reviewer_id)) or 0


def add_audit(session: Session, kind: str, *, actor: str | None = None,
              address: str | None = None, target: str | None = None,
              detail: dict | None = None) -> AuditEvent:
    event = AuditEvent(kind=kind, actor=(actor or "")[:64] or None,
                       address=(address or "")[:64] or None,
                       target=(target or "")[:256] or None, detail=detail)
    session.add(event)
    session.flush()
    return event


def audit_event_by_id(session: Session, event_id: int) -> AuditEvent:
    return session.get(AuditEvent, event_id)


def audit_events(session: Session, *, kinds: Sequence[str] = (), actor: str | None = None,
                 address: str | None = None, since: dt.datetime | None = None,
                 limit: int | None = 200) -> list[AuditEvent]:
    """Newest first."""
    query = select(AuditEvent)
    if kinds:
        query = query.where(AuditEvent.kind.in_(kinds))
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if address is not None:
        query = query.where(AuditEvent.address == address)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


# images --------------------------------------------------------------------------------------

def upsert_image(session: Session, *, sha256: str, path: str, kind: str, label: str | None,
                 dataset: str | None = None, split: str | None = None,
                 source_id: str | None = None, provenance: dict | None = None) -> Image:
    """The image with this content hash, created (with its provenance) when new."""
    image = session.scalar(select(Image).where(Image.sha256 == sha256))
    if image is not None:
        return image
    record = Provenance(**provenance) if provenance else None
    if record is not None:
        session.add(record)
        session.flush()
    image = Image(sha256=sha256, path=path, kind=kind, label=label, dataset=dataset, split=split,
                  source_id=source_id, provenance_id=record.id if record else None)
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:  # another writer added the same content first
        image = session.scalar(select(Image).where(Image.sha256 == sha256))
    return image


def image_by_sha(session: Session, sha256: str) -> Image | None:
    return session.scalar(select(Image).options(joinedload(Image.provenance))
                          .where(Image.sha256 == sha256))


def real_images(session: Session, dataset: str, split: str | None = None,
                classes: Iterable[str] = ()) -> list[Image]:
    query = select(Image).where(Image.kind == "real", Image.dataset == dataset)
    if split:
        query = query.where(Image.split == split)
    classes = list(classes)
    if classes:
        query = query.where(Image.label.in_(classes))
    return list(session.scalars(query.order_by(Image.id)))


def _synthetic_query(generator: str | None, checkpoint: str | None,
                     classes: Iterable[str]) -> Select:
    query = (select(Image).join(Provenance, Image.provenance_id == Provenance.id)
             .where(Image.kind == "synthetic"))
    if generator:
        query = query.where(Provenance.generator == generator)
    if checkpoint:
        query = query.where(Provenance.checkpoint == checkpoint)
    classes = list(classes)
    if classes:
        query = query.where(Image.label.in_(classes))
    return query


def synthetic_images(session: Session, generator: str | None = None,
                     checkpoint: str | None = None, classes: Iterable[str] = ()) -> list[Image]:
    query = _synthetic_query(generator, checkpoint, classes)
    return list(session.scalars(query.options(joinedload(Image.provenance)).order_by(Image.id)))


def synthetic_page(session: Session, *, generator: str | None = None,
                   checkpoint: str | None = None, class_label: str | None = None,
                   shas: Sequence[str] | None = None, offset: int = 0,
                   limit: int | None = None) -> tuple[list[Image], int]:
    """Synthetic images (newest first) matching the filters, and how many match in all."""
    query = _synthetic_query(generator, checkpoint, [class_label] if class_label else ())
    if shas is not None:
        query = query.where(Image.sha256.in_(list(shas)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.options(joinedload(Image.provenance)).order_by(Image.id.desc()).offset(offset)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query)), total


def studies_using_images(session: Session, image_ids: Sequence[int]) -> dict[int, list[str]]:
    """For each image id, the names of the studies that hold it."""
    rows = session.execute(select(StudyImage.image_id, Study.name)
                           .join(Study, StudyImage.study_id == Study.id)
                           .where(StudyImage.image_id.in_(list(image_ids))))
    found: dict[int, list[str]] = {}
    for image_id, name in rows:
        found.setdefault(image_id, []).append(name)
    return found


def studies_using_dataset(session: Session, dataset: str) -> list[str]:
    """Names of the studies holding any real image of ``dataset``."""
    return list(session.scalars(
        select(Study.name).distinct().join(StudyImage, StudyImage.study_id == Study.id)
        .join(Image, StudyImage.image_id == Image.id)
        .where(Image.kind == "real", Image.dataset == dataset)))


def delete_real_images(session: Session, dataset: str) -> int:
    """Delete the records of a data set's real images (the caller checked nothing uses them)."""
    return session.execute(delete(Image).where(Image.kind == "real", Image.dataset == dataset)
                           ).rowcount or 0


def delete_synthetic_images(session: Session, images: Sequence[Image]) -> None:
    """Delete synthetic images with their provenance and gate scores (the caller checked
    nothing uses them)."""
    if images:
        session.execute(delete(GateScore).where(GateScore.image_id.in_([i.id for i in images])))
    for image in images:
        provenance = image.provenance
        session.delete(image)
        if provenance is not None:
            session.delete(provenance)
    session.flush()


def store_gate_scores(session: Session, gate: str, scores: dict[str, float | None]) -> int:
    """The gate's IoU of every synthetic image (by SHA-256); returns how many were stored."""
    images = dict(session.execute(select(Image.sha256, Image.id).where(
        Image.sha256.in_(list(scores)))).all())
    for sha, iou in scores.items():
        session.add(GateScore(image_id=images[sha], gate=gate, iou=iou))
    session.flush()
    return len(scores)


def gate_scores(session: Session, shas: Sequence[str], gate: str | None = None
                ) -> dict[str, tuple[str, float | None]]:
    """SHA-256 -> (gate, IoU) of the newest gate that scored each image (or of ``gate``)."""
    query = (select(Image.sha256, GateScore.gate, GateScore.iou, GateScore.created)
             .join(GateScore, GateScore.image_id == Image.id).where(Image.sha256.in_(list(shas))))
    if gate is not None:
        query = query.where(GateScore.gate == gate)
    out: dict[str, tuple[str, float | None]] = {}
    for sha, name, iou, _ in sorted(session.execute(query).all(), key=lambda r: (r[3], r[1])):
        out[sha] = (name, iou)  # the newest last
    return out


# studies -------------------------------------------------------------------------------------

def create_study(session: Session, *, name: str, settings: dict, created_by: int | None,
                 images: Sequence[tuple[int, str]],
                 assignments: Sequence[tuple]) -> Study:
    """Store a study with its images ``(image_id, pool)`` and assignments
    ``(reviewer_id, image_id, position, token[, kind])``. Raises ``ValueError`` on a taken
    name."""
    if session.scalar(select(Study.id).where(Study.name == name)) is not None:
        raise ValueError(f"a study named {name!r} already exists")
    study = Study(name=name, status="open", settings=settings, created_by=created_by)
    session.add(study)
    session.flush()
    session.add_all(StudyImage(study_id=study.id, image_id=i, pool=p) for i, p in images)
    session.add_all(Assignment(study_id=study.id, reviewer_id=a[0], image_id=a[1],
                               position=a[2], token=a[3], kind=a[4] if len(a) > 4 else "main")
                    for a in assignments)
    session.flush()
    return study


def study_by_name(session: Session, name: str) -> Study | None:
    return session.scalar(select(Study).where(Study.name == name))


def list_studies(session: Session) -> list[Study]:
    return list(session.scalars(select(Study).order_by(Study.created, Study.id)))


def update_study_settings(session: Session, study: Study, **changes: object) -> None:
    """Replace some keys of a study's settings (a new dict, so the JSON column is written)."""
    study.settings = {**study.settings, **changes}


def close_study(session: Session, study: Study) -> None:
    study.status = "closed"
    study.closed = utcnow()


def study_progress(session: Session, study_id: int, reviewer_id: int | None = None
                   ) -> tuple[int, int]:
    """(assignments, rated) in a study, for one reviewer or all."""
    query = select(func.count(Assignment.id), func.count(Rating.id)).select_from(Assignment) \
        .outerjoin(Rating, Rating.assignment_id == Assignment.id) \
        .where(Assignment.study_id == study_id)
    if reviewer_id is not None:
        query = query.where(Assignment.reviewer_id == reviewer_id)
    total, rated = session.execute(query).one()
    return int(total), int(rated)


def studies_of_reviewer(session: Session, reviewer_id: int) -> list[Study]:
    query = select(Study).where(Study.id.in_(
        select(Assignment.study_id).where(Assignment.reviewer_id == reviewer_id)))
    return list(session.scalars(query.order_by(Study.created, Study.id)))


def synthetic_ratings(session: Session, studies: Sequence[str] = ()
                      ) -> list[tuple[str, int, str, str, str, int]]:
    """Every rating of a synthetic image: ``(image sha256, reviewer id, study name, verdict,
    quality, revision)``, in a stable order; optionally only from the named studies."""
    query = (select(Image.sha256, Assignment.reviewer_id, Study.name, Rating.verdict,
                    Rating.quality, Rating.revision)
             .select_from(Rating).join(Assignment, Rating.assignment_id == Assignment.id)
             .join(Image, Assignment.image_id == Image.id).join(Study, Assignment.study_id == Study.id)
             .where(Image.kind == "synthetic"))
    if studies:
        query = query.where(Study.name.in_(list(studies)))
    query = query.order_by(Image.sha256, Assignment.reviewer_id, Study.name)
    return [tuple(row) for row in session.execute(query)]


def synthetic_mask_ratings(session: Session, studies: Sequence[str] = ()
                           ) -> list[tuple[str, int, str]]:
    """Every mask-quality rating of a synthetic image (studies that showed masks):
    ``(image sha256, reviewer id, mask quality)``, in a stable order."""
    query = (select(Image.sha256, Assignment.reviewer_id, Rating.mask_quality)
             .select_from(Rating).join(Assignment, Rating.assignment_id == Assignment.id)
             .join(Image, Assignment.image_id == Image.id).join(Study, Assignment.study_id == Study.id)
             .where(Image.kind == "synthetic", Rating.mask_quality.is_not(None)))
    if studies:
        query = query.where(Study.name.in_(list(studies)))
    query = query.order_by(Image.sha256, Assignment.reviewer_id, Study.name)
    return [tuple(row) for row in session.execute(query)]


# assignments and ratings ---------------------------------------------------------------------

def assignment_by_token(session: Session, token: str, lock: bool = False) -> Assignment | None:
    query = select(Assignment).where(Assignment.token == token)
    if lock:  # serialises two submissions of one assignment (PostgreSQL; SQLite locks the db)
        query = query.with_for_update()
    return session.scalar(query)


def reviewer_queue(session: Session, study_id: int, reviewer_id: int) -> list[Assignment]:
    query = (select(Assignment).options(joinedload(Assignment.rating))
             .where(Assignment.study_id == study_id, Assignment.reviewer_id == reviewer_id)
             .order_by(Assignment.position))
    return list(session.scalars(query).unique())


def save_rating(session: Session, assignment: Assignment, *, confidence: int, verdict: str,
                quality: str, histology: str | None,
                seconds: float | None, mask_quality: str | None = None) -> tuple[Rating, bool]:
    """Create or revise the rating of an assignment, keeping the earlier version.

    Returns:
        the rating and whether anything changed (a repeated identical submission changes
        nothing and counts once).
    """
    rating = session.scalar(select(Rating).where(Rating.assignment_id == assignment.id))
    if rating is None:
        rating = Rating(assignment_id=assignment.id, confidence=confidence, verdict=verdict,
                        quality=quality, histology=histology, seconds=seconds, revision=1,
                        mask_quality=mask_quality)
        session.add(rating)
        session.flush()
        return rating, True
    if (rating.confidence, rating.quality, rating.histology, rating.mask_quality) == \
            (confidence, quality, histology, mask_quality):
        return rating, False
    session.add(RatingRevision(rating_id=rating.id, revision=rating.revision,
                               confidence=rating.confidence, verdict=rating.verdict,
                               quality=rating.quality, histology=rating.histology,
                               mask_quality=rating.mask_quality,
                               seconds=rating.seconds, recorded=rating.revised or rating.created))
    rating.confidence, rating.verdict = confidence, verdict
    rating.quality, rating.histology = quality, histology
    rating.mask_quality = mask_quality
    rating.seconds = seconds
    rating.revision += 1
    rating.revised = utcnow()
    session.flush()
    return rating, True


def rating_history(session: Session, rating_id: int) -> list[RatingRevision]:
    return list(session.scalars(select(RatingRevision).where(RatingRevision.rating_id == rating_id)
                                .order_by(RatingRevision.revision)))


def study_rows(session: Session, study_id: int) -> list[tuple[Assignment, Rating | None]]:
    """Every assignment of a study with its rating (admin views: answer key, statistics)."""
    query = (select(Assignment).options(joinedload(Assignment.rating),
                                        joinedload(Assignment.reviewer),
                                        joinedload(Assignment.image).joinedload(Image.provenance))
             .where(Assignment.study_id == study_id)
             .order_by(Assignment.reviewer_id, Assignment.position))
    return [(a, a.rating) for a in session.scalars(query).unique()]


def study_images(session: Session, study_id: int) -> list[StudyImage]:
    query = (select(StudyImage).options(joinedload(StudyImage.image).joinedload(Image.provenance))
             .where(StudyImage.study_id == study_id).order_by(StudyImage.id))
    return list(session.scalars(query))


def count_ratings(session: Session, study_id: int | None = None) -> int:
    query = select(func.count(Rating.id))
    if study_id is not None:
        query = query.join(Assignment).where(Assignment.study_id == study_id)
    return int(session.scalar(query))


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; the studio stores UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


# runs ----------------------------------------------------------------------------------------

def add_run(session: Session, *, run_id: str, kind: str, status: str, config: dict,
            results_path: str | None, job_id: str | None = None) -> Run:
    run = Run(id=run_id, kind=kind, status=status, config=config, results_path=results_path,
              job_id=job_id)
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def list_runs(session: Session, kind: str | None = None) -> list[Run]:
    query = select(Run).order_by(Run.created.desc())
    if kind:
        query = query.where(Run.kind == kind)
    return list(session.scalars(query))


# jobs ----------------------------------------------------------------------------------------

def add_job(session: Session, *, job_id: str, kind: str, config: dict,
            owner_id: int | None = None) -> Job:
    job = Job(id=job_id, kind=kind, status="queued", config=config, owner_id=owner_id)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, kind: str | None = None, statuses: Sequence[str] = ()) -> list[Job]:
    query = select(Job).order_by(Job.created.desc(), Job.id)
    if kind:
        query = query.where(Job.kind == kind)
    if statuses:
        query = query.where(Job.status.in_(list(statuses)))
    return list(session.scalars(query))
