"""The demo workspace: the phantom data set painted and imported, ready to browse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from polyp_core.data.importer import ImportConfig, ImportResult, import_dataset
from polyp_core.data.phantom import write_phantom
from polyp_core.generation.lineage import lineage_record
from polyp_core.progress import Progress, no_progress
from polyp_core.workspace import Workspace

DEMO_DATASET = "phantom"


def ensure_demo_dataset(workspace: Workspace, n_frames: int = 1100, size: int = 256,
                        seed: int = 0, name: str = DEMO_DATASET, force: bool = False,
                        progress: Progress = no_progress) -> ImportResult | None:
    """Paint the phantom set into ``sources/<name>`` and import it, unless already there.

    Returns:
        the import result, or ``None`` when the data set already existed.
    """
    if name in workspace.datasets() and not force:
        return None
    out = workspace.sources_dir / name
    if out.exists():
        shutil.rmtree(out)
    write_phantom(out, n_frames=n_frames, size=size, seed=seed, progress=progress)
    # lesion_id groups the views of one polyp, so the default split is grouped.
    return import_dataset(workspace, ImportConfig(source=str(out), name=name, seed=seed,
                                                  overwrite=force), progress=progress)


def sources_path(workspace: Workspace, name: str = DEMO_DATASET) -> Path:
    return workspace.sources_dir / name


DEMO_ADMIN = ("admin", "polyp-demo-admin")
DEMO_REVIEWERS = (("reviewer1", "polyp-demo-review"), ("reviewer2", "polyp-demo-review"))
DEMO_GENERATOR = "demo-ddpm"
DEMO_STUDY = "demo-study"
# The demo DDPM was trained for minutes on a CPU: the ancestral sampler with many steps gives
# clean frames; deterministic few-step samplers need a longer-trained model (assets/README.md).
DEMO_SAMPLER = ("ddpm", 200)
DEMO_GUIDANCE = 4.0  # separates AD from SSA/HP best (assets/README.md)
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def install_demo_generator(workspace: Workspace, assets: Path = ASSETS) -> bool:
    """Copy the shipped demo DDPM (``assets/demo-ddpm``) into ``models/``, once.

    Returns:
        whether it was copied (False: already there, or not shipped with this checkout).
    """
    source = assets / DEMO_GENERATOR
    target = workspace.models_dir / DEMO_GENERATOR
    if target.exists() or not (source / "config.json").is_file():
        return False
    shutil.copytree(source, target)
    return True


def ensure_demo_workspace(workspace: Workspace, db, n_per_class: int = 12,  # noqa: ANN001
                          progress: Progress = no_progress, assets: Path = ASSETS,
                          **dataset_options) -> list[str]:
    """Everything the demo needs so that every tab works on a CPU at first start: the phantom
    data set, the demo generator, a few of its images in the pool, a demo admin and two
    reviewers, and one open study. Each part is made only when missing.

    Returns:
        what was made, in words (for the first-start message).
    """
    from polyp_core.generation.backends import sample_to_pool
    from polyp_core.generation.request import SampleRequest
    from polyp_core.review.accounts import create_account
    from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, create_study
    from review_db import queries

    made = []
    if ensure_demo_dataset(workspace, progress=progress, **dataset_options):
        made.append(f"the phantom data set ({DEMO_DATASET})")
    if install_demo_generator(workspace, assets):
        made.append(f"the demo generator ({DEMO_GENERATOR})")
    with db.session() as session:
        known = {r.name for r in queries.list_reviewers(session)}
        has_pool = bool(queries.synthetic_images(session, DEMO_GENERATOR))
        has_study = queries.study_by_name(session, DEMO_STUDY) is not None
    for (name, password), role in [(DEMO_ADMIN, "admin")] + [(r, "reviewer") for r in DEMO_REVIEWERS]:
        if name not in known:
            create_account(db, name, password, role)
            made.append(f"{role} account {name!r}")
    if (workspace.models_dir / DEMO_GENERATOR).is_dir() and not has_pool:
        for i, cls in enumerate(("AD", "SSA", "HP")):
            sample_to_pool(db, workspace, DEMO_GENERATOR, SampleRequest(
                class_label=cls, n=n_per_class, seed=1000 * i, steps=DEMO_SAMPLER[1], guidance=DEMO_GUIDANCE,
                scheduler=DEMO_SAMPLER[0]))
        made.append(f"{3 * n_per_class} demo-generator images in the synthetic pool")
        has_pool = True
    if has_pool and not has_study:
        from polyp_core.review.accounts import Person

        with db.session() as session:
            row = queries.reviewer_by_name(session, DEMO_ADMIN[0])
            admin = Person(row.id, row.name, row.role)
        create_study(db, workspace, admin, StudySpec(
            DEMO_STUDY, (RealPool(DEMO_DATASET, 12, split="train"), SyntheticPool(12, DEMO_GENERATOR)),
            tuple(r for r, _ in DEMO_REVIEWERS) + (DEMO_ADMIN[0],), overlap=2))
        made.append(f"the open study {DEMO_STUDY!r}")
    return made


def export_generator(workspace: Workspace, model_id: str, checkpoint: str, target: Path) -> Path:
    """Copy a trained DDPM's config and one checkpoint's sampling files (EMA weights, state,
    sample grid; not the optimizer state) to ``target`` — how ``assets/demo-ddpm`` is made."""
    source = workspace.models_dir / model_id
    ckpt = source / "checkpoints" / checkpoint
    if not (ckpt / "unet_ema.safetensors").is_file():
        raise FileNotFoundError(f"no checkpoint {checkpoint!r} with EMA weights in {source}")
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    (target / "checkpoints" / checkpoint).mkdir(parents=True)
    meta = json.loads((source / "config.json").read_text())
    # the models it was fine-tuned from stay behind: carry what they learned from, so the
    # leakage check still sees every image in the exported model's history
    meta["lineage"] = lineage_record(workspace.models_dir, model_id)
    (target / "config.json").write_text(json.dumps(meta, indent=1))
    for name in ("unet_ema.safetensors", "state.json", "grid.png"):
        if (ckpt / name).is_file():
            shutil.copy2(ckpt / name, target / "checkpoints" / checkpoint / name)
    return target
