"""Where synthetic images came from, and whether they would leak a held-out image into the
comparison: from a generator that learned from a validation/test image or group, or inpainted
into a held-out frame."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from polyp_core.data.tensors import ImageRef
from polyp_core.experiment.folds import Fold, groups_seen
from polyp_core.experiment.policy import Selection
from polyp_core.generation.lineage import UnknownTrainingData, generator_training_images
from polyp_core.workspace import Workspace
from review_db.database import Database


def _provenance(db: Database, shas: Iterable[str]) -> dict[str, tuple[str, dict]]:
    """SHA-256 -> (generator, provenance ``extra``) of synthetic images, in one query."""
    from review_db import queries

    with db.session() as session:
        images, _ = queries.synthetic_page(session, shas=sorted(set(shas)))
        return {i.sha256: (i.provenance.generator, dict(i.provenance.extra or {}))
                for i in images}


def made_of(db: Database, images: list[ImageRef]) -> dict[str, list[str]]:
    """SHA-256 of each synthetic image -> the real frames it was made of (an inpainted
    image's background; a copy-paste image's background and the frame its polyp came from)."""
    out = {}
    for sha, (_, extra) in _provenance(db, [r.sha256 for r in images]).items():
        frames = [extra.get("background") or {}] + list(extra.get("sources") or [])
        out[sha] = [f["sha256"] for f in frames if f.get("sha256")]
    return out


def generators_of(db: Database, images: list[ImageRef]) -> set[str]:
    return {generator for generator, _ in _provenance(db, [r.sha256 for r in images]).values()}


def check_leakage(db: Database, workspace: Workspace, synthetic: list[ImageRef],
                  held_out: dict[str, str], allow_unknown: bool = False) -> None:
    """Refuse synthetic images whose generator learned from validation or test images: a
    generator that saw them makes the comparison dishonest. ``held_out``: SHA-256 -> how to
    name the image (``"dataset:id (split)"``).

    Raises:
        ValueError: naming the generators and the held-out images each saw (the first five).
    """
    problems = []
    for generator in sorted(generators_of(db, synthetic)):
        try:
            seen = generator_training_images(workspace.models_dir, generator) & held_out.keys()
        except UnknownTrainingData as error:
            if not allow_unknown:
                problems.append(f"{error} (use it anyway with `allow_unknown_training_data`; "
                                "the report then warns)")
            continue
        except ValueError as error:
            problems.append(str(error))
            continue
        if seen:
            named = sorted(held_out[sha] for sha in seen)
            problems.append(f"{generator} learned from {len(seen)} validation/test images ("
                            + ", ".join(named[:5]) + (", ..." if len(named) > 5 else "") + ")")
    if problems:
        raise ValueError("synthetic images from generators trained on held-out images would leak "
                         "into the comparison: " + "; ".join(problems) +
                         ". Train generators on the training split only, restore a missing model "
                         "folder, or exclude the generator (policy.generators).")


def generator_summary(db: Database, workspace: Workspace,
                      selections: list[Selection | None]) -> list[dict]:
    """Where the synthetic images of a run came from: each generator, how many of its images
    joined any fold, and for an imported one what its registration says (version, source,
    licence, declared training data)."""
    from polyp_core.external import read_record

    made_by = Counter(generator for generator, _ in _provenance(
        db, (ref.sha256 for sel in selections if sel for ref in sel.images)).values())
    rows = []
    for generator, n in sorted(made_by.items()):
        record = read_record(workspace, generator)
        made = ("trained in this workspace" if not record else "copy-paste (built in)"
                if record.get("kind") == "copy-paste" else "imported")
        row = {"generator": generator, "images": n, "made": made}
        if record:
            trained = record.get("trained_on") or {}
            row |= {"version": record.get("version"), "source": record.get("source"),
                    "licence": record.get("licence"),
                    "trained_on": "unknown" if trained.get("unknown") else trained.get("declared")}
        rows.append(row)
    return rows


def background_leaks(db: Database, folds: list[Fold], selections: list[Selection | None],
                     real: list[ImageRef], group_of: list[str]) -> list[str]:
    """Images made of a frame that belongs to a group of the fold's validation or test part:
    an inpainted image's background, a copy-paste image's background and the frame its polyp
    was cut from (``sources``); every such frame is training data of the image. Names image,
    frame and group."""
    problems = []
    group_of_sha = {r.sha256: g for r, g in zip(real, group_of)}
    extra_of = _provenance(db, (ref.sha256 for sel in selections if sel for ref in sel.images))
    for fold, selection in zip(folds, selections):
        if selection is None:
            continue
        held = {group_of[i] for i in fold.valid + fold.test}
        for ref in selection.images:
            extra = extra_of[ref.sha256][1]
            for role, frame in [("was made on", extra.get("background") or {})] + [
                    ("holds a polyp cut from", f) for f in extra.get("sources") or []]:
                group = group_of_sha.get(frame.get("sha256", ""))
                if group is not None and group in held:
                    problems.append(f"{fold.name}: image {ref.sha256[:12]} {role} frame "
                                    f"{frame.get('dataset')}:{frame.get('id')} of group {group} "
                                    "(validation/test part)")
    return problems


def seen_groups(workspace: Workspace, generators: set[str], real: list[ImageRef],
                 group_of: list[str], allow_unknown: bool = False) -> dict[str, set[str]]:
    """The groups of the experiment's images each generator (or a model it was fine-tuned
    from) learned from; a generator without a training record is refused, and so is an
    imported one declared as trained on unknown data unless ``allow_unknown``."""
    trained_on, problems = {}, []
    for generator in sorted(generators):
        try:
            trained_on[generator] = generator_training_images(workspace.models_dir, generator)
        except UnknownTrainingData as error:
            if allow_unknown:
                trained_on[generator] = set()
            else:
                problems.append(f"{error}; use it anyway with `allow_unknown_training_data` "
                                "(the report then warns)")
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError("cannot tell what these generators learned from: " + "; ".join(problems) +
                         ". Restore the model folder or exclude the generator (`generators`)")
    return groups_seen(trained_on, {r.sha256: g for r, g in zip(real, group_of)})
