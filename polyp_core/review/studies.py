"""Blind studies: built by an admin from pools of real and synthetic images.

A study draws images from each pool (seeded), gives each image to ``overlap`` reviewers
(balancing their load) and puts each reviewer's images in their own blocked random order
(every source spread evenly over the queue, so position says nothing about the truth). Each
assignment is reached through a random token; nothing about it reveals the image's source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.pool import register_dataset
from polyp_core.review.accounts import Person, live_account, require_admin
from polyp_core.review.blind import BLIND_SIZE, MASK_VIEWS, ServingChain, native_side
from polyp_core.review.errors import NotFound
from polyp_core.review.leaks import LeakReport, audit_rows, channel_rows, mask_shape
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from review_db.models import Image, Study


@checked
@dataclass(frozen=True)
class RealPool:
    """``n`` real images of a data set, optionally one split and some classes."""

    dataset: str
    n: int = rule(lo=1, hi=1_000_000)
    split: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"real:{self.dataset}" + (f"/{self.split}" if self.split else "")


@checked
@dataclass(frozen=True)
class SyntheticPool:
    """``n`` synthetic images, optionally of one generator, checkpoint and some classes."""

    n: int = rule(lo=1, hi=1_000_000)
    generator: str | None = None
    checkpoint: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        name = f"synthetic:{self.generator or 'any'}"
        return name + (f"@{self.checkpoint}" if self.checkpoint else "")


def parse_pool(spec: str, kind: str) -> RealPool | SyntheticPool:
    """``DATASET[:SPLIT]:N`` (real) or ``GENERATOR[@CHECKPOINT]:N`` (synthetic) as a pool: the
    CLI's ``--real``/``--synthetic`` and the calibration items of the CLI and the Studies tab.

    Raises:
        ValueError: naming the spec and what it should look like.
    """
    example = "phantom:test:10" if kind == "real" else "gen-a@step-1000:10"
    parts = spec.split(":")
    if kind not in ("real", "synthetic"):
        raise ValueError(f"{spec!r}: a pool is real or synthetic, not {kind!r}")
    if len(parts) < 2 or not parts[-1].strip().isdigit():
        raise ValueError(f"{spec!r}: end it with the number of images, e.g. {example}")
    n = int(parts[-1])
    if kind == "real":
        return RealPool(parts[0], n, parts[1] if len(parts) > 2 and parts[1] else None)
    generator, _, checkpoint = parts[0].partition("@")
    return SyntheticPool(n, generator or None, checkpoint or None)


def parse_calibration(spec: str) -> RealPool | SyntheticPool:
    """``real:DATASET[:SPLIT]:N`` or ``synthetic:GENERATOR[@CKPT]:N``: a calibration pool."""
    kind, _, rest = spec.partition(":")
    if kind not in ("real", "synthetic"):
        raise ValueError(f"calibration {spec!r}: start it with real: or synthetic:, e.g. "
                         "synthetic:gen-a@step-100:5")
    return parse_pool(rest, kind)


@checked
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
        working_resolution: ``"auto"`` (the lowest native resolution among the pools), a
            number of pixels, or ``"native"`` (no matching: each image from its own size).
        fixed_length: pad every served file to one byte length (see ``ServingChain``).
        override_audit: open the study for reviewers even when the leak audit fails; the
            reason is recorded and shown beside the results.
        repeats: share of each reviewer's images shown a second time (new token, at least half
            the queue after the first showing): each reader's test-retest agreement.
        calibration: pools of calibration items (images whose answer is plain, e.g. an early
            checkpoint's), shown to every reviewer among the others and scored apart: each
            reader's calibration score; they never enter the study's main statistics.
        show_mask: ``outline`` or ``side-by-side``: each image is shown with its polyp mask
            (an annotator's for real frames, the stored one for synthetic images; images
            without one are not drawn) and reviewers rate the mask too (good/moderate/poor).
    """

    name: str
    pools: tuple[RealPool | SyntheticPool, ...]
    reviewers: tuple[str, ...]
    overlap: int = rule(1, lo=1, hi=1000)
    ask_histology: bool = False
    seed: int = 0
    serve_size: int = rule(BLIND_SIZE, lo=64, hi=2048)
    key_visible_while_open: bool = False
    working_resolution: int | str = "auto"
    fixed_length: bool = True
    override_audit: str | None = rule(None, text=True)
    repeats: float = rule(0.0, lo=0.0, hi=0.5)
    calibration: tuple[RealPool | SyntheticPool, ...] = ()
    show_mask: str | None = rule(None, choices=MASK_VIEWS)

    def settings(self) -> dict:
        pools = [{"kind": "real" if isinstance(p, RealPool) else "synthetic", **asdict(p),
                  "label": p.label} for p in self.pools]
        calibration = [{"kind": "real" if isinstance(p, RealPool) else "synthetic", **asdict(p),
                        "label": p.label} for p in self.calibration]
        return {"pools": pools, "reviewers": list(self.reviewers), "overlap": self.overlap,
                "ask_histology": self.ask_histology, "seed": self.seed,
                "serve_size": self.serve_size,
                "key_visible_while_open": self.key_visible_while_open,
                "repeats": self.repeats, "calibration": calibration,
                "show_mask": self.show_mask}


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
    working = spec.working_resolution
    if not (working in ("auto", "native") or (isinstance(working, int)
                                               and not isinstance(working, bool)
                                               and 8 <= working <= 4096)):
        raise ValueError(f"working_resolution must be 'auto', 'native' or 8-4096 pixels, not "
                         f"{working!r}")


@dataclass(frozen=True)
class StudyPlan:
    """What an admin sees before creating a study: each pool's native resolution (side of the
    centre square), the serving chain it implies, and warnings."""

    native: dict[str, dict[str, int]]
    chain: ServingChain
    warnings: tuple[str, ...]

    def lines(self) -> list[str]:
        rows = [f"{label}: native {r['min']}-{r['max']} px (median {r['median']}, "
                f"{r['n']} image(s) looked at)" for label, r in self.native.items()]
        return [*rows, f"serving chain: {self.chain.text()}", *self.warnings]


class MaskFiles:
    """Where each image's polyp mask is: a real frame's in its data set's manifest, a synthetic
    image's beside it in the pool (``provenance.extra.mask_sha256``)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._manifests: dict[str, dict[str, str | None]] = {}

    def __call__(self, image: Image) -> Path | None:
        from polyp_core.pool import mask_path

        if image.kind == "real":
            if image.dataset not in self._manifests:
                try:
                    items = self.workspace.load_manifest(image.dataset).items
                except KeyError:
                    items = []
                self._manifests[image.dataset] = {i.id: i.mask for i in items}
            found = self._manifests[image.dataset].get(image.source_id)
            return Path(found) if found else None
        extra = (image.provenance.extra if image.provenance else None) or {}
        sha = extra.get("mask_sha256")
        return mask_path(Path(image.path).parent, sha) if sha else None


def _pool_candidates(session: Session, pool: RealPool | SyntheticPool,
                     masks: MaskFiles | None = None) -> list[Image]:
    """A pool's images; in a mask study (``masks``) only those with a mask."""
    if isinstance(pool, RealPool):
        images = queries.real_images(session, pool.dataset, pool.split, pool.classes)
    else:
        images = queries.synthetic_images(session, pool.generator, pool.checkpoint, pool.classes)
    return [i for i in images if masks(i) is not None] if masks is not None else images


def _plan(session: Session, spec: StudySpec) -> StudyPlan:
    native = {}
    for pool in (*spec.pools, *spec.calibration):
        images = _pool_candidates(session, pool)
        step = max(1, len(images) // 50)  # up to ~50 spread over the pool: headers only
        sides = sorted(native_side(i.path) for i in images[::step])
        if sides:
            native[pool.label] = {"min": sides[0], "median": sides[len(sides) // 2],
                                  "max": sides[-1], "n": len(sides)}
    if spec.working_resolution == "native":
        working = None
    elif spec.working_resolution == "auto":
        working = min(r["min"] for r in native.values()) if native else None
    else:
        working = int(spec.working_resolution)
    warnings = []
    medians = {label: r["median"] for label, r in native.items()}
    if medians and max(medians.values()) > 2 * min(medians.values()):
        low = min(medians, key=medians.get)
        high = max(medians, key=medians.get)
        gap = (f"warning: sources differ more than 2x in resolution ({low} {medians[low]} px, "
               f"{high} {medians[high]} px): ")
        if working is None or working > medians[low]:
            gap += "unmatched, the higher one shows detail the other cannot have"
        else:
            gap += f"every image is brought down to {working} px first, so it cannot"
        warnings.append(gap)
    return StudyPlan(native, ServingChain(spec.serve_size, working, spec.fixed_length,
                                          spec.show_mask), tuple(warnings))


def plan_study(db: Database, workspace: Workspace, spec: StudySpec) -> StudyPlan:
    """The native resolutions, serving chain and warnings of a study not yet created."""
    _validate(spec)
    _register_real_pools(db, workspace, spec)
    with db.session() as session:
        return _plan(session, spec)


def _register_real_pools(db: Database, workspace: Workspace, spec: StudySpec) -> None:
    for pool in (*spec.pools, *spec.calibration):
        if isinstance(pool, RealPool):
            try:
                register_dataset(db, workspace.load_manifest(pool.dataset))
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None


def served_dir(workspace: Workspace, study_id: int) -> Path:
    return workspace.root / "studies" / str(study_id) / "served"


def served_path(workspace: Workspace, study_id: int, image_sha256: str) -> Path:
    """Where a study keeps an image's served bytes, rendered once at creation: every request
    then costs the same file read whatever the source."""
    key = hashlib.sha256(f"{study_id}:{image_sha256}".encode()).hexdigest()[:32]
    return served_dir(workspace, study_id) / f"{key}.jpg"


def plan_assignments(image_ids: list[int], reviewer_ids: list[int], overlap: int,
                     rng: np.random.Generator) -> dict[int, list[int]]:
    """Give each image to ``overlap`` reviewers, least-loaded first (the queues' order is
    :func:`reviewer_queue`'s)."""
    load = {r: 0 for r in reviewer_ids}
    queues: dict[int, list[int]] = {r: [] for r in reviewer_ids}
    for image in rng.permutation(image_ids).tolist():
        ties = rng.permutation(reviewer_ids).tolist()
        for reviewer in sorted(ties, key=lambda r: load[r])[:overlap]:
            queues[reviewer].append(image)
            load[reviewer] += 1
    return queues


def _largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split over ``weights`` in proportion, rounded by largest remainder."""
    whole = sum(weights.values())
    share = {k: total * w / whole if whole else 0.0 for k, w in weights.items()}
    quota = {k: math.floor(v) for k, v in share.items()}
    for k in sorted(share, key=lambda k: (share[k] - quota[k], str(k)), reverse=True):
        if sum(quota.values()) >= total:
            break
        quota[k] += 1
    return quota


def reviewer_queue(main: list[int], calibration: list[int], repeats: float,
                   source_of: dict[int, str], rng: np.random.Generator) -> list[tuple[int, str]]:
    """One reviewer's queue as ``(image, kind)``, in a blocked design.

    Every source (a pool: the real images, each generator, each calibration pool) is spread
    evenly over the whole queue, repeats included: with ``n_s`` showings of source ``s`` the
    queue is cut, for that source, into ``n_s`` equal blocks, and its ``k``-th showing lands at
    a uniformly random point of its ``k``-th block; the queue is sorted by those points. For
    two sources of 8 images each this is the classic design of blocks of two (one real, one
    synthetic, random order within the block); for other proportions it is the same idea
    without a common block size. Any stretch of the queue then holds the sources in their
    proportions (give or take one), so queue position says nothing about the truth, whatever
    the seed.

    ``repeats`` of the main images (each source in its share, largest remainder) are shown a
    second time: a source's repeated images take its first blocks and their second showings
    its last ones, so each comes back at least half the queue (without repeats) later; one
    that a block's jitter would bring back sooner goes to the end of the queue.
    """
    members: dict[str, list[int]] = {}
    for image in [*main, *calibration]:
        members.setdefault(source_of[image], []).append(image)
    in_main = set(main)
    quota = _largest_remainder(round(repeats * len(main)), {
        s: sum(i in in_main for i in m) for s, m in members.items()})
    keyed = []
    for source in sorted(members):
        shuffled = [members[source][i] for i in rng.permutation(len(members[source]))]
        again = shuffled[:quota.get(source, 0)]
        showings = [(i, "main" if i in in_main else "calibration") for i in shuffled] + \
            [(i, "repeat") for i in again]
        n = len(showings)
        keyed += [((k + rng.random()) / n, showing) for k, showing in enumerate(showings)]
    queue = [showing for _, showing in sorted(keyed, key=lambda pair: pair[0])]
    half = math.ceil((len(main) + len(calibration)) / 2)
    for _ in range(len(queue)):  # moving one showing shifts the others: look again each time
        first = {image: p for p, (image, kind) in enumerate(queue) if kind != "repeat"}
        late = next((p for p, (image, kind) in enumerate(queue)
                     if kind == "repeat" and p - first[image] < half), None)
        if late is None:
            break
        queue.append(queue.pop(late))
    return queue


def create_study(db: Database, workspace: Workspace, admin: Person, spec: StudySpec) -> int:
    """Draw the images, plan the assignments and store the study. Returns its id.

    Raises:
        PermissionDenied: not an admin.
        ValueError: a bad spec, an unknown reviewer or data set, or a pool too small.
    """
    require_admin(admin)
    _validate(spec)
    _register_real_pools(db, workspace, spec)
    rng = np.random.default_rng(spec.seed)
    masks = MaskFiles(workspace) if spec.show_mask else None
    with db.session() as session:
        live_account(session, admin, admin=True)
        plan = _plan(session, spec)
        reviewers = queries.reviewers_by_name(session, spec.reviewers)
        missing = [n for n in spec.reviewers if n not in reviewers]
        if missing:
            raise ValueError(f"unknown reviewer(s): {', '.join(missing)}")
        chosen: dict[int, str] = {}
        with_mask = " with a mask" if masks else ""
        for pool in spec.pools:
            candidates = [c for c in _pool_candidates(session, pool, masks) if c.id not in chosen]
            if len(candidates) < pool.n:
                raise ValueError(f"pool {pool.label} has {len(candidates)} image(s){with_mask} "
                                 f"available, the study asks for {pool.n}")
            for index in sorted(rng.choice(len(candidates), pool.n, replace=False)):
                chosen[candidates[index].id] = pool.label
        main_images = list(chosen)
        calibration: list[int] = []
        for pool in spec.calibration:  # never one of the study's own images
            candidates = [c for c in _pool_candidates(session, pool, masks)
                          if c.id not in chosen]
            if len(candidates) < pool.n:
                raise ValueError(f"calibration pool {pool.label} has {len(candidates)} "
                                 f"image(s){with_mask} available beside the study's, it asks "
                                 f"for {pool.n}")
            for index in sorted(rng.choice(len(candidates), pool.n, replace=False)):
                chosen[candidates[index].id] = f"calibration:{pool.label}"
                calibration.append(candidates[index].id)
        queues = plan_assignments(main_images, [reviewers[n].id for n in spec.reviewers],
                                  spec.overlap, rng)
        assignments = [(reviewer, image, position, secrets.token_urlsafe(32), kind)
                       for reviewer, queue in queues.items()
                       for position, (image, kind) in enumerate(
                           reviewer_queue(queue, calibration, spec.repeats, chosen, rng))]
        settings = {**spec.settings(), "serving": plan.chain.describe(),
                    "native_resolution": plan.native, "warnings": list(plan.warnings)}
        study = queries.create_study(session, name=spec.name, settings=settings,
                                     created_by=admin.id, images=list(chosen.items()),
                                     assignments=assignments)
        try:
            _render(session, workspace, study.id, plan.chain)
            report = _audit(session, workspace, study)
        except BaseException:
            shutil.rmtree(served_dir(workspace, study.id).parent, ignore_errors=True)
            raise
        held = not report.passed and not spec.override_audit
        override = _override(admin, spec.override_audit) if spec.override_audit and \
            not report.passed else None
        queries.update_study_settings(session, study, audit=report.to_json(), held=held,
                                      override=override)
        queries.add_audit(session, "study_created", actor=admin.name, target=spec.name,
                          detail={"images": len(main_images), "calibration": len(calibration),
                                  "repeats": spec.repeats, "reviewers": list(spec.reviewers),
                                  "overlap": spec.overlap, "audit_passed": report.passed,
                                  "held": held, "override": spec.override_audit})
        return study.id


def _override(admin: Person, reason: str) -> dict:
    """The record of an admin opening a study despite its leak audit."""
    return {"by": admin.name, "reason": reason.strip(),
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def admin_study(session: Session, admin: Person, name: str) -> Study:
    """The named study, for an admin whose account is live; ``NotFound`` otherwise."""
    require_admin(admin)
    live_account(session, admin, admin=True)
    study = queries.study_by_name(session, name)
    if study is None:
        raise NotFound(f"no study named {name!r}")
    return study


def _render(session: Session, workspace: Workspace, study_id: int, chain: ServingChain) -> None:
    served_dir(workspace, study_id).mkdir(parents=True, exist_ok=True)
    masks = MaskFiles(workspace)
    for study_image in queries.study_images(session, study_id):
        image = study_image.image
        target = served_path(workspace, study_id, image.sha256)
        try:
            data = chain.serve(image.path, masks(image) if chain.show_mask else None)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{image.path}: cannot be served ({exc})") from None
        target.write_bytes(data)


def served_bytes(workspace: Workspace, study: Study, image: Image) -> bytes:
    """The bytes a reviewer receives for one image of a study (rendered at creation; studies
    made before that are rendered now with the chain they were made with)."""
    path = served_path(workspace, study.id, image.sha256)
    if path.is_file():
        return path.read_bytes()
    chain = ServingChain.from_settings(study.settings)
    return chain.serve(image.path, MaskFiles(workspace)(image) if chain.show_mask else None)


def _audit(session: Session, workspace: Workspace, study: Study, n_boot: int = 1000) -> LeakReport:
    rows = queries.study_rows(session, study.id)
    lengths: dict[int, int] = {}
    for assignment, _ in rows:
        lengths[assignment.reviewer_id] = lengths.get(assignment.reviewer_id, 0) + 1
    chain = ServingChain.from_settings(study.settings)
    masks, shapes = MaskFiles(workspace), {}
    if chain.show_mask:  # the shape of each mask as drawn: reported beside the other channels
        for assignment, _ in rows:
            image = assignment.image
            if image.sha256 not in shapes:
                shapes[image.sha256] = mask_shape(chain.mask_raster(image.path, masks(image)))
    items = [{"image": a.image.sha256, "truth": a.image.kind, "token": a.token,
              "position": a.position, "queue_length": lengths[a.reviewer_id],
              "mask": shapes.get(a.image.sha256),
              "fetch": lambda a=a: served_bytes(workspace, study, a.image)} for a, _ in rows]
    return audit_rows(study.name, channel_rows(items), n_boot,
                      chain=ServingChain.from_settings(study.settings).describe())


def audit_study(db: Database, workspace: Workspace, admin: Person, name: str,
                n_boot: int = 1000) -> LeakReport:
    """Run the leak audit again (admins); the newest result is stored with the study. A held
    study whose audit now passes opens for its reviewers."""
    with db.session() as session:
        study = admin_study(session, admin, name)
        report = _audit(session, workspace, study, n_boot)
        held = not report.passed and not study.settings.get("override")
        queries.update_study_settings(session, study, audit=report.to_json(), held=held)
        queries.add_audit(session, "study_audited", actor=admin.name, target=name,
                          detail={"passed": report.passed, "held": held})
        return report


def override_audit(db: Database, admin: Person, name: str, reason: str) -> None:
    """Open a study whose leak audit failed, for a recorded reason (shown with its results)."""
    if not reason or not reason.strip():
        raise ValueError("an override needs a reason")
    with db.session() as session:
        study = admin_study(session, admin, name)
        queries.update_study_settings(session, study, override=_override(admin, reason),
                                      held=False)
        queries.add_audit(session, "study_audit_overridden", actor=admin.name, target=name,
                          detail={"reason": reason.strip()})


def study_integrity(db: Database, admin: Person, name: str) -> dict:
    """What the study's results rest on (admins): the leak audit it passed (or the override
    that opened it), the serving chain, and reviewers who could see its real images elsewhere
    (admin accounts reach the Data tab): a flag, not a block."""
    with db.session() as session:
        settings = admin_study(session, admin, name).settings
        accounts = queries.reviewers_by_name(session, settings.get("reviewers", []))
        admins = sorted(n for n, r in accounts.items() if r.role == "admin")
    state = audit_state(settings)
    audit = settings.get("audit")
    lines = LeakReport.from_json(audit).lines() if audit else ["not audited (made before the "
                                                               "leak auditor): run study audit"]
    override = settings.get("override")
    parts = [f"leak audit {state}"]
    if override:
        parts.append(f"opened by {override['by']} despite the audit: {override['reason']}")
    parts.append(f"serving chain: {ServingChain.from_settings(settings).text()}")
    if admins:
        parts.append("reviewers who also hold an admin account and could see the study's real "
                     f"images in the Data tab: {', '.join(admins)}")
    parts.extend(settings.get("warnings", []))
    return {"study": name, "audit_state": state, "audit": audit, "override": override,
            "chain": ServingChain.from_settings(settings).describe(),
            "native_resolution": settings.get("native_resolution"),
            "admin_reviewers": admins, "summary": "integrity: " + "; ".join(parts),
            "audit_lines": lines}


def open_to_reviewers(study: Study) -> bool:
    """A study held by a failed leak audit is invisible to its reviewers."""
    return not study.settings.get("held", False)


def close_study(db: Database, admin: Person, name: str) -> None:
    """Close a study: ratings are final, and the answer key becomes visible to admins."""
    with db.session() as session:
        study = admin_study(session, admin, name)
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
    audit: str = ""  # admins: passed, held (failed), overridden, or not audited
    show_mask: str | None = None  # outline / side-by-side: the mask is rated too


def audit_state(settings: dict) -> str:
    audit = settings.get("audit")
    if audit is None:
        return "not audited"
    if audit["passed"]:
        return "passed"
    return "overridden" if settings.get("override") else "held (failed)"


def list_studies(db: Database, person: Person) -> list[StudyInfo]:
    """Admins see every study with overall progress; reviewers see their own progress."""
    with db.session() as session:
        live_account(session, person, admin=person.is_admin)
        studies = (queries.list_studies(session) if person.is_admin
                   else [s for s in queries.studies_of_reviewer(session, person.id)
                         if open_to_reviewers(s)])
        out = []
        for study in studies:
            assigned, rated = queries.study_progress(
                session, study.id, None if person.is_admin else person.id)
            reviewers = tuple(study.settings.get("reviewers", ())) if person.is_admin else ()
            out.append(StudyInfo(study.name, study.status,
                                 bool(study.settings.get("ask_histology")), assigned, rated,
                                 reviewers, audit_state(study.settings) if person.is_admin else "",
                                 study.settings.get("show_mask")))
        return out
