"""Blind studies: built by an admin from pools of real and synthetic images.

A study draws images from each pool (seeded), gives each image to ``overlap`` reviewers
(balancing their load) and puts each reviewer's images in their own random order. Each
assignment is reached through a random token; nothing about it reveals the image's source.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field

import numpy as np

from polyp_core.pool import register_dataset
from polyp_core.review.accounts import Person, live_account, require_admin
from polyp_core.review.blind import BLIND_SIZE
from polyp_core.review.errors import NotFound
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


@dataclass(frozen=True)
class RealPool:
    """``n`` real images of a data set, optionally one split and some classes."""

    dataset: str
    n: int
    split: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"real:{self.dataset}" + (f"/{self.split}" if self.split else "")


@dataclass(frozen=True)
class SyntheticPool:
    """``n`` synthetic images, optionally of one generator, checkpoint and some classes."""

    n: int
    generator: str | None = None
    checkpoint: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        name = f"synthetic:{self.generator or 'any'}"
        return name + (f"@{self.checkpoint}" if self.checkpoint else "")


@dataclass(frozen=True)
class StudySpec:
    """What a study shows and to whom.

    Attributes:
        name: unique study name.
        pools: where images come from, with how many each (the mix).
        reviewers: reviewer names.
        overlap: how many reviewers rate each image (k).
        ask_histology: ask reviewers for AD / SSA / HP / unsure as well.
        seed: which images are drawn and in which order they are shown.
        serve_size: pixel size of the served square image.
        key_visible_while_open: let admins see the answer key and everyone's ratings before
            the study closes (off by default, so an admin who also reviews stays blind).
    """

    name: str
    pools: tuple[RealPool | SyntheticPool, ...]
    reviewers: tuple[str, ...]
    overlap: int = 1
    ask_histology: bool = False
    seed: int = 0
    serve_size: int = BLIND_SIZE
    key_visible_while_open: bool = False

    def settings(self) -> dict:
        pools = [{"kind": "real" if isinstance(p, RealPool) else "synthetic", **asdict(p),
                  "label": p.label} for p in self.pools]
        return {"pools": pools, "reviewers": list(self.reviewers), "overlap": self.overlap,
                "ask_histology": self.ask_histology, "seed": self.seed,
                "serve_size": self.serve_size,
                "key_visible_while_open": self.key_visible_while_open}


def _validate(spec: StudySpec) -> None:
    if not spec.name.strip():
        raise ValueError("a study needs a name")
    if not spec.pools:
        raise ValueError("a study needs at least one pool of images")
    if not spec.reviewers:
        raise ValueError("a study needs at least one reviewer")
    if len(set(spec.reviewers)) != len(spec.reviewers):
        raise ValueError("a reviewer is listed twice")
    if not 1 <= spec.overlap <= len(spec.reviewers):
        raise ValueError(f"overlap must be between 1 and the number of reviewers "
                         f"({len(spec.reviewers)}); got {spec.overlap}")
    for pool in spec.pools:
        if pool.n < 1:
            raise ValueError(f"pool {pool.label}: n must be at least 1")
    if not 64 <= spec.serve_size <= 2048:
        raise ValueError("serve_size must be between 64 and 2048 pixels")


def plan_assignments(image_ids: list[int], reviewer_ids: list[int], overlap: int,
                     rng: np.random.Generator) -> dict[int, list[int]]:
    """Give each image to ``overlap`` reviewers, least-loaded first; shuffle each queue."""
    load = {r: 0 for r in reviewer_ids}
    queues: dict[int, list[int]] = {r: [] for r in reviewer_ids}
    for image in rng.permutation(image_ids).tolist():
        ties = rng.permutation(reviewer_ids).tolist()
        for reviewer in sorted(ties, key=lambda r: load[r])[:overlap]:
            queues[reviewer].append(image)
            load[reviewer] += 1
    return {r: rng.permutation(q).tolist() for r, q in queues.items()}


def create_study(db: Database, workspace: Workspace, admin: Person, spec: StudySpec) -> int:
    """Draw the images, plan the assignments and store the study. Returns its id.

    Raises:
        PermissionDenied: not an admin.
        ValueError: a bad spec, an unknown reviewer or data set, or a pool too small.
    """
    require_admin(admin)
    _validate(spec)
    for pool in spec.pools:
        if isinstance(pool, RealPool):
            try:
                register_dataset(db, workspace.load_manifest(pool.dataset))
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
    rng = np.random.default_rng(spec.seed)
    with db.session() as session:
        live_account(session, admin, admin=True)
        reviewers = queries.reviewers_by_name(session, spec.reviewers)
        missing = [n for n in spec.reviewers if n not in reviewers]
        if missing:
            raise ValueError(f"unknown reviewer(s): {', '.join(missing)}")
        chosen: dict[int, str] = {}
        for pool in spec.pools:
            if isinstance(pool, RealPool):
                candidates = queries.real_images(session, pool.dataset, pool.split, pool.classes)
            else:
                candidates = queries.synthetic_images(session, pool.generator, pool.checkpoint,
                                                      pool.classes)
            candidates = [c for c in candidates if c.id not in chosen]
            if len(candidates) < pool.n:
                raise ValueError(f"pool {pool.label} has {len(candidates)} image(s) "
                                 f"available, the study asks for {pool.n}")
            for index in sorted(rng.choice(len(candidates), pool.n, replace=False)):
                chosen[candidates[index].id] = pool.label
        plan = plan_assignments(list(chosen), [reviewers[n].id for n in spec.reviewers],
                                spec.overlap, rng)
        assignments = [(reviewer, image, position, secrets.token_urlsafe(32))
                       for reviewer, queue in plan.items() for position, image in enumerate(queue)]
        study = queries.create_study(session, name=spec.name, settings=spec.settings(),
                                     created_by=admin.id, images=list(chosen.items()),
                                     assignments=assignments)
        queries.add_audit(session, "study_created", actor=admin.name, target=spec.name,
                          detail={"images": len(chosen), "reviewers": list(spec.reviewers),
                                  "overlap": spec.overlap})
        return study.id


def close_study(db: Database, admin: Person, name: str) -> None:
    """Close a study: ratings are final, and the answer key becomes visible to admins."""
    require_admin(admin)
    with db.session() as session:
        live_account(session, admin, admin=True)
        study = queries.study_by_name(session, name)
        if study is None:
            raise NotFound(f"no study named {name!r}")
        queries.close_study(session, study)
        queries.add_audit(session, "study_closed", actor=admin.name, target=name)


@dataclass(frozen=True)
class StudyInfo:
    name: str
    status: str
    ask_histology: bool
    assigned: int
    rated: int
    reviewers: tuple[str, ...] = field(default_factory=tuple)


def list_studies(db: Database, person: Person) -> list[StudyInfo]:
    """Admins see every study with overall progress; reviewers see their own progress."""
    with db.session() as session:
        live_account(session, person, admin=person.is_admin)
        studies = (queries.list_studies(session) if person.is_admin
                   else queries.studies_of_reviewer(session, person.id))
        out = []
        for study in studies:
            assigned, rated = queries.study_progress(
                session, study.id, None if person.is_admin else person.id)
            reviewers = tuple(study.settings.get("reviewers", ())) if person.is_admin else ()
            out.append(StudyInfo(study.name, study.status,
                                 bool(study.settings.get("ask_histology")), assigned, rated,
                                 reviewers))
        return out
