"""Blind studies (admins): plan and create one, audit it for leaks, open a held one for a
recorded reason, close it, read its statistics and export them. Reviewers may list the studies
they are in (:data:`REVIEWER_ENTRIES`). The engine's study functions check the account once
more (``review.accounts.live_account``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from polyp_core.forms import Form, of

from polyp_core.review import desk, stats
from polyp_core.review.accounts import Person
from polyp_core.review.leaks import LeakReport
from polyp_core.review.studies import (StudyInfo, StudyPlan, StudySpec, audit_study, close_study,
                                       create_study, list_studies, override_audit, plan_study,
                                       study_integrity)
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

REVIEWER_ENTRIES = frozenset({"studies"})

#: Creating a study, declared once: the CLI's ``study create``/``plan`` options and the Studies
#: tab's widgets start from it (``StudySpec``'s defaults, bounds and choices); the pools,
#: reviewers and calibration items are each front end's own widgets or specs.
STUDY = Form("study", "create, list, close, analyse and export blind studies", (
    of(StudySpec, "overlap", help="reviewers per image"),
    of(StudySpec, "ask_histology", option="--histology", help="ask for AD/SSA/HP/unsure"),
    of(StudySpec, "show_mask", help="show each image with its polyp mask; reviewers rate the "
                                    "mask too (good/moderate/poor)"),
    of(StudySpec, "repeats", help="share of each reviewer's images shown again (test-retest), "
                                  "0-0.5"),
    of(StudySpec, "seed", help="which images are drawn and in which order"),
    of(StudySpec, "working_resolution", kind="text",
       help="auto (the lowest native resolution among the pools), a number of pixels, or "
            "native (no matching)"),
    of(StudySpec, "fixed_length", option="--no-fixed-length",
       help="do not pad served files to one byte length"),
    of(StudySpec, "override_audit", metavar="REASON",
       help="open the study for reviewers even if its leak audit fails"),
))


def study_request(name: str, pools: tuple, reviewers: tuple[str, ...], fields: Mapping[str, object],
                  calibration: tuple = ()) -> StudySpec:
    """A study from its pools, reviewers and calibration items and the form's plain values
    (empty ones take :data:`STUDY`'s defaults).

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = STUDY.parse(fields)
    working = str(f["working_resolution"])
    f["working_resolution"] = int(working) if working.isdigit() else working
    return StudySpec(name=(name or "").strip(), pools=tuple(pools), reviewers=tuple(reviewers),
                     calibration=tuple(calibration), **f)

def plan(db: Database, workspace: Workspace, person: Person, spec: StudySpec) -> StudyPlan:
    """Each pool's native resolution, the serving chain and warnings, before creating."""
    authorise(db, person)
    return plan_study(db, workspace, spec)


def create(db: Database, workspace: Workspace, person: Person, spec: StudySpec) -> int:
    """Draw, queue (a blocked design), render and audit the study; its id."""
    authorise(db, person)
    return create_study(db, workspace, person, spec)


def audit(db: Database, workspace: Workspace, person: Person, name: str,
          n_boot: int = 1000) -> LeakReport:
    authorise(db, person)
    return audit_study(db, workspace, person, name, n_boot)


def override(db: Database, person: Person, name: str, reason: str) -> None:
    authorise(db, person)
    override_audit(db, person, name, reason)


def close(db: Database, person: Person, name: str) -> None:
    authorise(db, person)
    close_study(db, person, name)


def studies(db: Database, person: Person) -> list[StudyInfo]:
    """Admins: every study; reviewers: their own open ones, with their own progress."""
    authorise(db, person, "reviewer")
    return list_studies(db, person)


def integrity(db: Database, person: Person, name: str) -> dict:
    authorise(db, person)
    return study_integrity(db, person, name)


def statistics(db: Database, person: Person, name: str) -> dict:
    """The reader study's statistics (hidden until the study is closed, unless it was made to
    show them)."""
    authorise(db, person)
    return stats.study_statistics(desk.rating_records(db, person, name))


def export(db: Database, person: Person, name: str, folder: Path | str) -> list[Path]:
    """Ratings, per-reader tables, the iMRMC file and the OR analysis as files in ``folder``."""
    authorise(db, person)
    return stats.export_csv(desk.rating_records(db, person, name), folder)
