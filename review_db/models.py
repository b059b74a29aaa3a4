"""SQLAlchemy 2 models: images and their provenance, reviewers, their sign-in sessions and the
audit log, studies, ratings, jobs, runs.

Schema changes go through Alembic (``review_db/migrations``); a test checks that these
models and the migrations describe the same schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (JSON, CheckConstraint, DateTime, Float, ForeignKey, Integer, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# the domain's vocabularies are the engine's; the constraints below are built from them
from polyp_core.vocabulary import HISTOLOGY_GUESSES, QUALITIES, VERDICTS

IMAGE_KINDS = ("real", "synthetic")
ROLES = ("admin", "reviewer")
STUDY_STATUSES = ("open", "closed")
ASSIGNMENT_KINDS = ("main", "repeat", "calibration")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# what "now" is for every timestamp the studio stores and every lifetime it checks (sign-in
# locks, sessions): tests set a fake clock here instead of sleeping
CLOCK = system_clock


def utcnow() -> dt.datetime:
    return CLOCK()


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Provenance(Base):
    """How a synthetic image was made: enough to make it again."""

    __tablename__ = "provenance"
    id: Mapped[int] = mapped_column(primary_key=True)
    backend: Mapped[str] = mapped_column(String(32))
    generator: Mapped[str] = mapped_column(String(128))  # model id in the workspace
    checkpoint: Mapped[str | None] = mapped_column(String(128))
    checkpoint_hash: Mapped[str | None] = mapped_column(String(64))
    base_model: Mapped[str | None] = mapped_column(String(256))
    base_model_hash: Mapped[str | None] = mapped_column(String(64))
    lora: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # adapters, hashes and scales
    class_label: Mapped[str | None] = mapped_column(String(16))
    prompt: Mapped[str | None] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(Integer)
    steps: Mapped[int | None] = mapped_column(Integer)
    guidance: Mapped[float | None] = mapped_column(Float)
    scheduler: Mapped[str | None] = mapped_column(String(32))
    lora_scale: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    """A real or synthetic image the studio knows, by content hash."""

    __tablename__ = "image"
    __table_args__ = (CheckConstraint(_in("kind", IMAGE_KINDS), name="ck_image_kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[str | None] = mapped_column(String(16))  # canonical class
    dataset: Mapped[str | None] = mapped_column(String(64), index=True)
    split: Mapped[str | None] = mapped_column(String(8))
    source_id: Mapped[str | None] = mapped_column(String(256))  # the data set's own id
    provenance_id: Mapped[int | None] = mapped_column(ForeignKey("provenance.id"), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    provenance: Mapped[Provenance | None] = relationship()


class GateScore(Base):
    """The segmentation gate's verdict on a synthetic image: the IoU of the mask a gate model
    predicts with the mask the image was made with (NaN-free: ``None`` when either is empty),
    one row per image and gate (the gate's run id)."""

    __tablename__ = "gate_score"
    __table_args__ = (UniqueConstraint("image_id", "gate", name="uq_gate_score"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    gate: Mapped[str] = mapped_column(String(36), index=True)
    iou: Mapped[float | None] = mapped_column(Float)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Reviewer(Base):
    __tablename__ = "reviewer"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="ck_reviewer_role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuthSession(Base):
    """A signed-in browser: only the SHA-256 of its cookie token is stored, so a copy of the
    database cannot be replayed as a session. Deleting the row ends the session."""

    __tablename__ = "auth_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewer.id", ondelete="CASCADE"),
                                             index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reviewer: Mapped[Reviewer] = relationship()


class AuditEvent(Base):
    """Who did what to accounts, sessions and studies. Names are copied, not referenced, so
    the log outlives what it speaks of."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str | None] = mapped_column(String(64), index=True)  # account name, as typed
    address: Mapped[str | None] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Study(Base):
    __tablename__ = "study"
    __table_args__ = (CheckConstraint(_in("status", STUDY_STATUSES), name="ck_study_status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # pools, mix, overlap, blinding
    created_by: Mapped[int | None] = mapped_column(ForeignKey("reviewer.id"))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class StudyImage(Base):
    """Which images a study holds, and from which pool each was drawn."""

    __tablename__ = "study_image"
    __table_args__ = (UniqueConstraint("study_id", "image_id", name="uq_study_image"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    pool: Mapped[str] = mapped_column(String(128))
    image: Mapped[Image] = relationship()


class Assignment(Base):
    """One image for one reviewer in one study, at a position in that reviewer's order."""

    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("study_id", "reviewer_id", "image_id", "kind",
                         name="uq_assignment_image"),
        UniqueConstraint("study_id", "reviewer_id", "position", name="uq_assignment_position"),
        CheckConstraint(_in("kind", ASSIGNMENT_KINDS), name="ck_assignment_kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewer.id"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    position: Mapped[int] = mapped_column(Integer)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # opaque, random
    # main; repeat: the same image again, far from its main showing (test-retest);
    # calibration: an item whose answer is known, scored apart. Never sent to the reviewer.
    kind: Mapped[str] = mapped_column(String(16), default="main", server_default="main")
    study: Mapped[Study] = relationship()
    image: Mapped[Image] = relationship()
    reviewer: Mapped[Reviewer] = relationship()
    rating: Mapped[Rating | None] = relationship(back_populates="assignment", uselist=False)


class Rating(Base):
    """The current verdict on an assignment; earlier versions live in ``rating_revision``."""

    __tablename__ = "rating"
    __table_args__ = (
        CheckConstraint(_in("verdict", VERDICTS), name="ck_rating_verdict"),
        CheckConstraint(_in("quality", QUALITIES), name="ck_rating_quality"),
        CheckConstraint(f"histology IS NULL OR {_in('histology', HISTOLOGY_GUESSES)}",
                        name="ck_rating_histology"),
        CheckConstraint("confidence BETWEEN 1 AND 5", name="ck_rating_confidence"),
        CheckConstraint(f"mask_quality IS NULL OR {_in('mask_quality', QUALITIES)}",
                        name="ck_rating_mask_quality"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignment.id", ondelete="CASCADE"), unique=True)
    confidence: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(16))
    quality: Mapped[str] = mapped_column(String(16))
    histology: Mapped[str | None] = mapped_column(String(8))
    # the mask's quality, in studies that show masks (None: not asked)
    mask_quality: Mapped[str | None] = mapped_column(String(16))
    seconds: Mapped[float | None] = mapped_column(Float)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revised: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    assignment: Mapped[Assignment] = relationship(back_populates="rating")


class RatingRevision(Base):
    """A rating as it was before a revision replaced it."""

    __tablename__ = "rating_revision"
    id: Mapped[int] = mapped_column(primary_key=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("rating.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(16))
    quality: Mapped[str] = mapped_column(String(16))
    histology: Mapped[str | None] = mapped_column(String(8))
    mask_quality: Mapped[str | None] = mapped_column(String(16))
    seconds: Mapped[float | None] = mapped_column(Float)
    recorded: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """Background work: status survives a restart (a job found running at start is interrupted)."""

    __tablename__ = "job"
    __table_args__ = (CheckConstraint(_in("status", JOB_STATUSES), name="ck_job_status"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("reviewer.id"))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """A stored analysis or training run: config, where its results are, and its status."""

    __tablename__ = "run"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("job.id"))
    results_path: Mapped[str | None] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
