"""The synthetic pool as an admin keeps it: which generators it holds, and images made
elsewhere imported into it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from polyp_core.external import ImportedSynthetic, SyntheticImport
from polyp_core.pool import (PoolFilter, PoolItem, PoolPage, Removal, pool_item, pool_page,
                             remove_from_pool)
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.forms import Form, of
from polyp_core.segment.gate import GATE_TRAIN, GateConfig, run_gate
from polyp_core.training import TrainConfig
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


def generators(db: Database, person: Person) -> list[str]:
    """The generators with at least one image in the pool."""
    authorise(db, person)
    with db.session() as session:
        return sorted({i.provenance.generator for i in queries.synthetic_images(session)})


def page(db: Database, person: Person, pool_filter: PoolFilter, number: int = 0,
         per_page: int = 24) -> PoolPage:
    """One page of the synthetic pool, newest first, with provenance, ratings and studies."""
    authorise(db, person)
    return pool_page(db, pool_filter, number, per_page)


def item(db: Database, person: Person, sha256: str) -> PoolItem:
    """One synthetic image with its full provenance, every rating and its studies."""
    authorise(db, person)
    return pool_item(db, sha256)


def remove(db: Database, workspace: Workspace, person: Person, shas: list[str]) -> Removal:
    """Remove images no study and no stored run uses; the others are kept, each with why."""
    authorise(db, person)
    return remove_from_pool(db, workspace, list(shas))


def import_synthetic(db: Database, workspace: Workspace, person: Person,
                     request: SyntheticImport,
                     progress: Progress = no_progress) -> ImportedSynthetic:
    """Import an external generator's images (a folder or a zip) into the pool, with their
    masks, manifest rows and the generator's declared training data.

    Raises:
        PermissionDenied: not a live admin account.
        DatasetImportError: naming every bad file and manifest row; nothing is imported.
    """
    from polyp_core.external import import_synthetic as run_import

    authorise(db, person)
    return run_import(db, workspace, request, progress)


#: The import-synthetic action, declared once: the CLI's options and the Pool tab's import panel
#: start from it (``SyntheticImport``'s defaults).
IMPORT_SYNTHETIC = Form("import-synthetic", "import synthetic images made elsewhere (a folder or "
                                            "zip with a manifest.csv/jsonl, images and optional "
                                            "masks) into the pool", (
    of(SyntheticImport, "source", positional=True, help="the folder or zip"),
    of(SyntheticImport, "generator", kind="text", required=True,
       help="the name the images carry in the pool"),
    of(SyntheticImport, "dataset", kind="text", required=True,
       help="the real data set the images complement (their classes are its)"),
    of(SyntheticImport, "trained_on",
       help="what the generator learned from: DATASET:SPLIT[,SPLIT], DATASET:images=FILE (ids "
            "or SHA-256s), DATASET:groups=FILE, or unknown (retrain then refuses its images "
            "unless --allow-unknown-training-data)"),
    of(SyntheticImport, "version", kind="text", help="the generator's version"),
    of(SyntheticImport, "source_note", option="--source-note", aliases=("--citation",),
       help="where it comes from: a URL or citation text"),
    of(SyntheticImport, "licence", kind="text", help="its licence, as a note"),
))


def import_synthetic_request(fields: Mapping[str, object]) -> SyntheticImport:
    """The import-synthetic request from plain values; empty fields take the defaults.

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = IMPORT_SYNTHETIC.parse(fields)
    return SyntheticImport(source=str(f["source"] or ""), generator=f["generator"] or "",
                           dataset=f["dataset"] or "", trained_on=f["trained_on"],
                           version=f["version"], source_note=f["source_note"],
                           licence=f["licence"])

#: The gate action, declared once: the CLI's options and the Pool tab's gate panel start from
#: it; the defaults are ``GateConfig``'s and its U-Net's (``GATE_TRAIN``).
GATE = Form("gate", "the segmentation gate: does each synthetic image show its polyp where its "
                    "mask says? (IoU under a U-Net trained on real training frames)", (
    of(GateConfig, "dataset", required=True, help="the real data set the gate learns from "
                                                  "(training split; validation and test give "
                                                  "the reference)"),
    of(GateConfig, "generator", help="score this generator's images (default: all with masks)"),
    of(GateConfig, "threshold", help="IoU counted as accepted in the printed rates"),
    of(TrainConfig, "image_size", default=GATE_TRAIN.image_size, option="--size",
       help="the U-Net's input size"),
    of(TrainConfig, "epochs", default=GATE_TRAIN.epochs, help="the U-Net's epochs"),
    of(GateConfig, "seed", help="the U-Net's seed"),
))


def gate_request(fields: Mapping[str, object]) -> GateConfig:
    """The gate request from plain values (form text and numbers, an argparse namespace's
    dict); missing or empty fields take :data:`GATE`'s defaults.

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = GATE.parse(fields)
    train = replace(GATE_TRAIN, image_size=f["image_size"], epochs=f["epochs"])
    return GateConfig(dataset=f["dataset"] or "", generator=f["generator"], train=train,
                      threshold=f["threshold"], seed=f["seed"])

def gate_work(db: Database, workspace: Workspace, person: Person, config: GateConfig,
              holder: dict | None = None) -> Callable[[Progress, CancelToken], str]:
    """The segmentation gate, for both front ends: the data set is checked now; the work runs
    the gate and leaves its result in ``holder["result"]``."""
    authorise(db, person)
    workspace.load_manifest(config.dataset)
    out = {} if holder is None else holder

    def work(progress: Progress, cancel: CancelToken) -> str:
        out["result"] = run_gate(db, workspace, config, progress, cancel)
        return f"gate {out['result'].gate}: {len(out['result'].scores)} image(s) scored"

    return work
