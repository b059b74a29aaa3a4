"""Which synthetic images join the real training set: a selection policy is data.

The policy reads expert ratings, memorisation flags from a diagnostics run, a target class
mix and a cap on the synthetic-to-real ratio, and returns the exact list of images with a
hash of the ratings it read, so a run can be repeated after new ratings arrive and the
difference explained.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.data.labels import get_scheme
from polyp_core.data.tensors import ImageRef
from polyp_core.pool import mask_path
from polyp_core.validation import checked, rule
from polyp_core.vocabulary import QUALITY_RANK
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from review_db.models import Image

VERDICT_RULES = ("any", "not_majority_synthetic", "majority_real", "all_real")
UNRATED = ("include", "exclude")


@checked
@dataclass(frozen=True)
class SelectionPolicy:
    """Rules for the synthetic images of an augmented arm.

    Attributes:
        generators: only images of these generators (model ids); empty: every generator.
        classes: only these scheme classes; empty: every class.
        min_quality: ``moderate`` or ``good``: keep an image only when at least
            ``min_reviewers`` different reviewers rated it that good or better.
        min_reviewers: see ``min_quality``.
        verdict: ``any``; ``not_majority_synthetic`` (drop images more than half of their
            ratings called synthetic); ``majority_real`` (more than half called real);
            ``all_real`` (every rating called real).
        unrated: ``include`` or ``exclude`` images nobody rated (rating rules cannot judge them).
        studies: read ratings of these studies only; empty: every study.
        exclude_memorised: diagnostics run ids; images they flagged as near copies are dropped.
        target_mix: ``{"AD": 0.4, "SSA": 0.3, "HP": 0.3}`` for the real + synthetic training
            set, or ``"balance"`` (top every class up to the largest real class); None: take
            every eligible image.
        max_ratio: at most this many synthetic images per real training image.
        seed: which eligible images are taken when fewer are needed.
        min_mask_quality: ``moderate`` or ``good``: keep an image only when at least
            ``min_reviewers`` reviewers rated its mask that good or better (studies that showed
            masks); images whose mask nobody rated follow ``unrated``.
        min_gate_iou: the segmentation gate: only images stored with a mask, and of those only
            the ones a U-Net trained on the fold's real training part finds where their mask
            says (IoU at least this; ``segment.gate``). Applied per fold when the run trains.
        gate_folds: 0: one gate per fold learns from the fold's whole real training part. K >= 2
            cross-fits it: the training part's groups are dealt into K parts and an image made
            on a training frame (inpainted into it, or pasted onto it) is scored by the gate
            that learned from the other K - 1 parts, never from its own frame, whose polyp
            sits where the image's mask says (a gate that saw it scores the image too well).
    """

    generators: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    min_quality: str | None = rule(None, choices=("moderate", "good"))
    min_reviewers: int = rule(1, lo=1, hi=1000)
    verdict: str = rule("any", choices=VERDICT_RULES)
    unrated: str = rule("include", choices=UNRATED)
    studies: tuple[str, ...] = ()
    exclude_memorised: tuple[str, ...] = ()
    target_mix: Mapping[str, float] | str | None = rule(None, lo=0.0, hi=1.0)
    max_ratio: float | None = rule(None, lo=0.0, hi=1000.0)
    seed: int = 0
    min_gate_iou: float | None = rule(None, lo=0.0, hi=1.0)
    min_mask_quality: str | None = rule(None, choices=("moderate", "good"))
    gate_folds: int = rule(0, lo=0, hi=20)

    def validate(self, scheme_classes: tuple[str, ...]) -> None:
        """The rules that need the scheme (field ranges are checked when the policy is made)."""
        if self.gate_folds == 1:
            raise ValueError("`gate_folds`: 0 (one gate per fold) or at least 2 (cross-fitted); "
                             "1 would leave the gate nothing to learn from")
        unknown = [c for c in self.classes if c not in scheme_classes]
        if unknown:
            raise ValueError(f"classes {unknown} are not in the scheme's {list(scheme_classes)}")
        if isinstance(self.target_mix, str):
            if self.target_mix != "balance":
                raise ValueError(f"target_mix {self.target_mix!r}: give 'balance' or class shares")
        elif self.target_mix is not None:
            wrong = [c for c in self.target_mix if c not in scheme_classes]
            if wrong:
                raise ValueError(f"target_mix names {wrong}, not classes of {list(scheme_classes)}")
            shares = list(self.target_mix.values())
            if any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
                raise ValueError(f"target_mix shares must be non-negative and sum to 1; got {shares}")

    def to_json(self) -> dict:
        data = asdict(self)
        data["target_mix"] = dict(self.target_mix) if isinstance(self.target_mix, Mapping) \
            else self.target_mix
        return data

    @classmethod
    def from_json(cls, data: dict) -> SelectionPolicy:
        tuples = ("generators", "classes", "studies", "exclude_memorised")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


def parse_mix(text: str | None) -> Mapping[str, float] | str | None:
    """``"AD=0.4,SSA=0.3,HP=0.3"`` or ``"balance"`` (the CLI's spelling).

    Raises:
        ValueError: naming the part that is not ``CLASS=share``.
    """
    if not text:
        return None
    if text.strip() == "balance":
        return "balance"
    mix = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"target mix part {part!r} is not CLASS=share (e.g. AD=0.4)") from None
    return mix


@dataclass
class Selection:
    images: list[ImageRef]
    ratings_hash: str
    counts: dict = field(default_factory=dict)


def ratings_fingerprint(rows: list[tuple]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def memorised(db: Database, run_ids: tuple[str, ...]) -> set[str]:  # pragma: no mutate block
    """SHA-256 of the synthetic images the named diagnostics runs flagged as near copies."""
    from polyp_core.runs import load_run

    flagged = set()
    for run_id in run_ids:
        try:
            results = load_run(db, run_id)["results"]
        except KeyError:
            raise ValueError(f"exclude_memorised: no diagnostics run {run_id!r}") from None
        if "memorisation" not in results:
            raise ValueError(f"exclude_memorised: run {run_id!r} has no memorisation results")
        flagged.update(p["synthetic_id"] for p in results["memorisation"]["pairs"])
    return flagged


def _quotas(real_counts: dict[str, int], available: dict[str, int], policy: SelectionPolicy,
            classes: tuple[str, ...]) -> dict[str, int]:
    mix = policy.target_mix
    if mix == "balance":
        top = max(real_counts.values())
        wanted = {c: max(0, top - real_counts.get(c, 0)) for c in classes}
    elif mix:
        total = max(real_counts.get(c, 0) / share for c, share in mix.items() if share > 0)
        wanted = {c: max(0, round(mix.get(c, 0.0) * total) - real_counts.get(c, 0)) for c in classes}
    else:
        wanted = dict(available)
    quota = {c: min(wanted.get(c, 0), available.get(c, 0)) for c in classes}
    if policy.max_ratio is not None:
        limit = int(policy.max_ratio * sum(real_counts.values()))
        taken = sum(quota.values())
        if taken > limit:
            exact = {c: quota[c] * limit / taken for c in classes}
            quota = {c: int(exact[c]) for c in classes}
            for c in sorted(classes, key=lambda c: exact[c] - quota[c], reverse=True)[
                    :limit - sum(quota.values())]:
                quota[c] += 1
    return quota


def _mask_path(image: Image) -> str | None:
    """The file of a synthetic image's mask, when it was stored with one."""
    mask_sha = ((image.provenance.extra if image.provenance else None) or {}).get("mask_sha256")
    return str(mask_path(Path(image.path).parent, mask_sha)) if mask_sha else None


def select_synthetic(db: Database, policy: SelectionPolicy, scheme: str,
                     real_counts: dict[str, int], with_masks: bool = False) -> Selection:  # pragma: no mutate block
    """Apply ``policy`` to the synthetic pool for a training set with ``real_counts`` images
    per scheme class. ``with_masks`` (segmentation): only images stored with a mask, which
    each chosen image then carries.

    Returns:
        the chosen images (scheme classes), the ratings hash and how many each rule dropped.
    """
    label_scheme = get_scheme(scheme)
    policy.validate(label_scheme.classes)
    with db.session() as session:
        pool = []
        for generator in policy.generators or (None,):
            pool += queries.synthetic_images(session, generator=generator)
        candidates = sorted({(img.sha256, img.path, img.label, _mask_path(img)) for img in pool})
        rows = queries.synthetic_ratings(session, policy.studies)
        mask_rows = queries.synthetic_mask_ratings(session, policy.studies) \
            if policy.min_mask_quality else []
    ratings: dict[str, list[tuple]] = defaultdict(list)
    for sha, reviewer, _study, verdict, quality, _rev in rows:
        ratings[sha].append((reviewer, verdict, quality))
    mask_ratings: dict[str, list[tuple]] = defaultdict(list)
    for sha, reviewer, mask_quality in mask_rows:
        mask_ratings[sha].append((reviewer, mask_quality))
    flagged = memorised(db, policy.exclude_memorised)
    dropped: Counter = Counter()
    eligible: dict[str, list[ImageRef]] = defaultdict(list)
    for sha, path, label, mask in candidates:
        if with_masks and mask is None:
            dropped["no_mask"] += 1
            continue
        cls = label_scheme.mapping.get(label or "")
        if cls is None or (policy.classes and cls not in policy.classes):
            dropped["class"] += 1
            continue
        if sha in flagged:
            dropped["memorised"] += 1
            continue
        if policy.min_mask_quality and not mask_passes(mask_ratings.get(sha, []), policy):
            dropped["mask_quality"] += 1
            continue
        mine = ratings.get(sha, [])
        rated_rules = policy.min_quality is not None or policy.verdict != "any"
        if not mine:
            if rated_rules and policy.unrated == "exclude":
                dropped["unrated"] += 1
                continue
        else:
            if policy.min_quality is not None:
                good = {r for r, _, q in mine if QUALITY_RANK[q] >= QUALITY_RANK[policy.min_quality]}
                if len(good) < policy.min_reviewers:
                    dropped["quality"] += 1
                    continue
            real_votes = sum(v == "real" for _, v, _ in mine)
            keep = {"any": True,
                    "not_majority_synthetic": (len(mine) - real_votes) * 2 <= len(mine),
                    "majority_real": real_votes * 2 > len(mine),
                    "all_real": real_votes == len(mine)}[policy.verdict]
            if not keep:
                dropped["verdict"] += 1
                continue
        eligible[cls].append(ImageRef(sha, path, cls, "synthetic", mask if with_masks else None))
    available = {c: len(eligible[c]) for c in label_scheme.classes}
    quota = _quotas(real_counts, available, policy, label_scheme.classes)
    rng = random.Random(policy.seed)
    chosen = []
    for c in label_scheme.classes:
        pool_c = list(eligible[c])
        rng.shuffle(pool_c)
        chosen += sorted(pool_c[:quota[c]], key=lambda r: r.sha256)
        if quota[c] < available[c]:
            dropped["mix_or_cap"] += available[c] - quota[c]
    counts = {"candidates": len(candidates), "dropped": dict(dropped), "eligible": available,
              "selected": {c: quota[c] for c in label_scheme.classes},
              "ratings_read": len(rows)}
    fingerprint = [list(r) for r in rows] + ([["masks", *r] for r in mask_rows] if mask_rows else [])
    return Selection(chosen, ratings_fingerprint(fingerprint), counts)


def mask_passes(ratings: list[tuple], policy: SelectionPolicy,
                threshold: str | None = None) -> bool:
    """Whether enough reviewers (``min_reviewers``) rated an image's mask at least
    ``threshold`` (default: the policy's ``min_mask_quality``); an image whose mask nobody rated
    passes when unrated images are included."""
    if not ratings:
        return policy.unrated == "include"
    floor = QUALITY_RANK[threshold or policy.min_mask_quality]
    return len({r for r, q in ratings if QUALITY_RANK[q] >= floor}) >= policy.min_reviewers


def expert_selections(rows: Iterable[tuple[str, str, str]], policy: SelectionPolicy,
                      selections: list[Selection | None]) -> list[Selection | None]:
    """The expert arm's selections from mask ratings ``(sha256, reviewer, quality)``: each
    fold's selection less the images that ``policy.min_reviewers`` reviewers did not rate at
    ``policy.min_mask_quality`` or better (unrated images follow ``policy.unrated``).

    Raises:
        ValueError: a fold left with no image.
    """
    ratings: dict[str, list[tuple]] = {}
    for sha, reviewer, quality in rows:
        ratings.setdefault(sha, []).append((reviewer, quality))
    out: list[Selection | None] = []
    for selection in selections:
        if selection is None:
            out.append(None)
            continue
        kept = [r for r in selection.images if mask_passes(ratings.get(r.sha256, []), policy)]
        if not kept:
            raise ValueError(f"no selected image has a mask rated {policy.min_mask_quality} or "
                             f"better by {policy.min_reviewers} reviewer(s); the expert arm "
                             "needs a study that showed their masks")
        out.append(replace(selection, images=kept, counts={
            **selection.counts, "expert": {"min_mask_quality": policy.min_mask_quality,
                                           "kept": len(kept), "of": len(selection.images)}}))
    return out
