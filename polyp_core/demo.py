"""The demo workspace: the phantom data set painted and imported, ready to browse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.data.importer import ImportConfig, ImportResult, import_dataset
from polyp_core.data.phantom import write_phantom
from polyp_core.generation.lineage import lineage_record
from polyp_core.progress import Progress, no_progress
from polyp_core.vocabulary import QUALITIES
from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    from polyp_core.generation.ddpm import DDPMTrainConfig
    from polyp_core.progress import CancelToken
    from review_db.database import Database

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


DEMO_ADMIN = ("admin", "polyp-demo-admin")
DEMO_REVIEWERS = (("reviewer1", "polyp-demo-review"), ("reviewer2", "polyp-demo-review"),
                  ("reviewer3", "polyp-demo-review"))
DEMO_GENERATOR = "demo-ddpm"
DEMO_STUDY = "demo-study"
#: a closed study whose ratings are simulated, so the reader-study dashboard (per-reader ROC,
#: the OR analysis, pace, per-source tables) has something to show on first start
DEMO_SIMULATED_STUDY = "demo-simulated-ratings"
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


def ensure_demo_workspace(workspace: Workspace, db: Database, n_per_class: int = 12,
                          progress: Progress = no_progress, assets: Path = ASSETS,
                          **dataset_options: object) -> list[str]:
    """Everything the demo needs so that every tab works on a CPU at first start: the phantom
    data set, the demo generator, a few of its images in the pool, a demo admin and three
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
            tuple(r for r, _ in DEMO_REVIEWERS), overlap=2))  # the admin stays blind: not a reader
        made.append(f"the open study {DEMO_STUDY!r}")
    with db.session() as session:
        has_simulated = queries.study_by_name(session, DEMO_SIMULATED_STUDY) is not None
    if has_pool and not has_simulated:
        simulate_reader_study(db, workspace)
        made.append(f"the closed study {DEMO_SIMULATED_STUDY!r} with simulated ratings")
    return made


def simulate_reader_study(db: Database, workspace: Workspace, seed: int = 7) -> None:
    """Create the demo's closed study and rate it with simulated readers (every reader rates
    every image, so the OR analysis applies): real images lean "real", the demo generator's
    lean "synthetic" a little, each reader with their own skill and pace; the third reader
    rates fast, so the pace flag has something to flag. The admin, who can see the real images
    in the Data tab, is not a reader. Nothing here is evidence of anything."""
    import numpy as np

    from polyp_core.review import desk
    from polyp_core.review.accounts import Person
    from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, close_study, create_study
    from review_db import queries

    names = tuple(r for r, _ in DEMO_REVIEWERS)
    with db.session() as session:
        people = {n: Person(r.id, r.name, r.role) for n in (*names, DEMO_ADMIN[0])
                  if (r := queries.reviewer_by_name(session, n)) is not None}
        n_synthetic = len(queries.synthetic_images(session, DEMO_GENERATOR))
    n = min(12, n_synthetic)
    admin = people[DEMO_ADMIN[0]]
    create_study(db, workspace, admin, StudySpec(
        DEMO_SIMULATED_STUDY, (RealPool(DEMO_DATASET, n, split="train"),
                               SyntheticPool(n, DEMO_GENERATOR)), names, overlap=len(names),
        seed=seed, repeats=0.25, calibration=(RealPool(DEMO_DATASET, 4, split="test"),)))
    rng = np.random.default_rng(seed)
    skill = {names[0]: 1.2, names[1]: 0.6, names[2]: 0.3}
    pace = {names[0]: 6.0, names[1]: 3.5, names[2]: 0.6}
    with db.session() as session:
        study = queries.study_by_name(session, DEMO_SIMULATED_STUDY)
        truth = {a.token: (a.image.kind, a.image_id, a.kind)
                 for a, _ in queries.study_rows(session, study.id)}
    for name in names:
        first: dict[int, int] = {}
        for item in desk.queue(db, people[name], DEMO_SIMULATED_STUDY):
            kind, image, role = truth[item.token]
            lean = skill[name] if kind == "real" else -skill[name]
            confidence = int(np.clip(np.round(3 - lean + rng.normal(0, 1.0)), 1, 5))
            if role == "repeat":  # mostly the same answer again, sometimes a point off
                confidence = int(np.clip(first[image] + rng.choice([-1, 0, 0, 0, 1]), 1, 5))
            first.setdefault(image, confidence)
            quality = QUALITIES[int(rng.integers(0, 3))]
            desk.rate(db, people[name], item.token, None, quality, None,
                      float(rng.gamma(2.0, pace[name] / 2)), confidence=confidence)
    close_study(db, admin, DEMO_SIMULATED_STUDY)


DEMO_NOTE = ("**What you are looking at.** This is the demo workspace: the real images are "
             "the *phantom* data set, colonoscopy-like frames the studio paints itself (no "
             "patient), and the synthetic ones come from the small demo generator (32 px, "
             "trained on the phantom's training split). The numbers show how the studio reads "
             "its evidence, not how well any method works on real polyps.")


def demo_analyses(db: Database, workspace: Workspace) -> list[tuple[str, dict, object]]:
    """The demo's diagnostics report and retrain-and-compare run, as ``(kind, config, work)``
    jobs for the job runner: the same engine calls a user makes, so the two dashboards have
    content on first look. Only the missing ones (a workspace with any run of a kind has
    enough of it)."""
    from polyp_core.experiment import ExperimentConfig, run_experiment
    from polyp_core.training import TrainConfig
    from polyp_core.diagnostics.report import DiagnoseConfig, diagnose
    from review_db import queries

    if DEMO_DATASET not in workspace.datasets() or not (workspace.models_dir / DEMO_GENERATOR).is_dir():
        return []
    with db.session() as session:
        kinds = {r.kind for r in queries.list_runs(session)}
        kinds |= {j.kind for j in queries.list_jobs(session, statuses=("queued", "running"))}
    jobs = []
    if "diagnose" not in kinds:
        config = DiagnoseConfig(dataset=DEMO_DATASET, generator=DEMO_GENERATOR, size=128,
                                subsets=50, projections=("umap",))
        jobs.append(("diagnose", {"dataset": DEMO_DATASET, "generator": DEMO_GENERATOR,
                                  "demo": True},
                     lambda progress, cancel: diagnose(db, workspace, config, progress).run_id))
    if "retrain" not in kinds:
        # auto: the most folds (up to 10) grouped by lesion that the set allows; the demo
        # generator learned from the train split, so those lesions train in every fold and are
        # never tested
        experiment = ExperimentConfig(
            dataset=DEMO_DATASET, name="demo: does the demo generator help?",
            folds=None, linear_probe=True,
            train=TrainConfig(image_size=128, epochs=15, augment=False,
                                        freeze_backbone=True))
        jobs.append(("retrain", {**experiment.to_json(), "demo": True},
                     lambda progress, cancel: run_experiment(db, workspace, experiment, progress,
                                                             cancel).run_id))
    return jobs


DEMO_TRAINING_STEPS = (4000, 2500)
# CPU threads the shipped model's two jobs ran with: with as many threads, on this project's
# CPU, the recipe gives the same bits (other thread counts sum floats in another order)
DEMO_TRAINING_THREADS = (1, 2)


def demo_generator_recipe(steps: tuple[int, int] = DEMO_TRAINING_STEPS,
                          checkpoint_every: int = 500) -> list[DDPMTrainConfig]:
    """The two training jobs that made ``assets/demo-ddpm`` (assets/README.md explains why two).

    ``steps`` exists so that a test can run the same recipe in seconds; warm-up shrinks with it
    only when a job is shorter than four times its warm-up.
    """
    from polyp_core.generation.ddpm import DDPMTrainConfig

    first_steps, second_steps = steps
    common = dict(dataset=DEMO_DATASET, preset="tiny", batch_size=32,
                  checkpoint_every=min(checkpoint_every, min(steps)))
    # step 1: the data set's own class mix (68 % AD)
    first = DDPMTrainConfig(model_id=f"{DEMO_GENERATOR}-lin", steps=first_steps, lr=4e-4,
                            warmup=min(200, first_steps // 4), seed=0, **common)
    # step 2: every class drawn equally often, fine-tuned from step 1's last checkpoint
    second = DDPMTrainConfig(model_id=f"{DEMO_GENERATOR}-bal", steps=second_steps, lr=2e-4,
                             warmup=min(100, second_steps // 4), seed=1, class_balance=True,
                             init_from=f"{first.model_id}@step-{first_steps:06d}", **common)
    return [first, second]


def train_demo_generator(workspace: Workspace, target: Path,
                         steps: tuple[int, int] = DEMO_TRAINING_STEPS,
                         checkpoint_every: int = 500, progress: Progress = no_progress,
                         cancel: CancelToken | None = None,
                         same_threads: bool = True) -> Path | None:
    """Make the demo generator from nothing: paint and import the phantom set (when missing),
    run :func:`demo_generator_recipe`'s two jobs (each resumes where an earlier run stopped)
    and export the last checkpoint to ``target``. With ``same_threads`` each job runs on
    the CPU threads it ran with (``DEMO_TRAINING_THREADS``), for the same bits.

    Returns:
        ``target``, or ``None`` when a job was cancelled (nothing exported).
    """
    import torch

    from polyp_core.generation.ddpm import train_ddpm

    ensure_demo_dataset(workspace, progress=progress)
    last, before = None, torch.get_num_threads()
    for config, threads in zip(demo_generator_recipe(steps, checkpoint_every), DEMO_TRAINING_THREADS):
        try:
            if same_threads:
                torch.set_num_threads(threads)
            result = train_ddpm(workspace, config, progress, cancel)
        finally:
            torch.set_num_threads(before)
        if result.status != "done":
            return None
        last = config
    return export_generator(workspace, last.model_id, f"step-{last.steps:06d}", target)


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
