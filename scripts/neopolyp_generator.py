"""A class-conditional DDPM on real frames (NeoPolyp, AD vs REST, training split only) for a fixed
time budget, then samples per class, KID of each class against real, and a contact sheet.

Part (c) of ``scripts/gpu_run.sh``; everything the studio does here is what a user does with
the CLI (import, train-ddpm, sample, diagnose), called through the engine so that the time
budget can stop training cleanly (a cancel token set by a timer: a checkpoint is written).

    python scripts/neopolyp_generator.py --data ../shared/data/neopolyp --out results
    python scripts/neopolyp_generator.py --tiny --out /tmp/check      # minutes on a CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.cli.common import TerminalProgress
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.demo import export_generator
from polyp_core.diagnostics.report import DiagnoseConfig, diagnose
from polyp_core.generation.backends import sample_to_pool
from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
from polyp_core.generation.request import SampleRequest
from polyp_core.progress import CancelToken
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

MODEL = "neopolyp-ddpm64"


def contact_sheet(db: Database, workspace: Workspace, dataset: str, per_class: int,
                  size: int = 96) -> np.ndarray:
    """Rows per class: real training frames, then samples, ``per_class`` each."""
    from polyp_core.data.cache import PixelCache

    cache = PixelCache(workspace.pixel_cache_dir)
    manifest = workspace.load_manifest(dataset)
    rows = []
    with db.session() as session:
        for cls in ("AD", "REST"):
            real = [i for i in manifest.split_items("train") if manifest.label_of(i) == cls][:per_class]
            fake = queries.synthetic_images(session, MODEL, classes=[cls])[:per_class]
            for images in ([(i.image, i.sha256) for i in real], [(i.path, i.sha256) for i in fake]):
                tiles = [cache.rgb(path, sha, size) for path, sha in images]
                tiles += [np.zeros((size, size, 3), np.uint8)] * (per_class - len(tiles))
                rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "neopolyp"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=240.0, help="training budget")
    parser.add_argument("--per-class", type=int, default=200, help="samples per class")
    parser.add_argument("--tiny", action="store_true",
                        help="CPU check: tiny preset, 30 s, 8 samples per class, fast KID")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out / "workspace")
    db = Database(f"sqlite:///{workspace.root / 'studio.db'}")
    if args.tiny:
        args.seconds, args.per_class = min(args.seconds, 30.0), min(args.per_class, 8)
    report: dict = {"tiny": args.tiny, "budget_s": args.seconds}
    start = time.perf_counter()
    if "neopolyp" not in workspace.datasets():
        with TerminalProgress() as progress:
            imported = import_dataset(workspace, ImportConfig(args.data, name="neopolyp"),
                                      progress=progress)
        report["import"] = {"images": imported.n_images, "split": imported.split_method,
                            "counts": imported.counts}
    config = DDPMTrainConfig(dataset="neopolyp", model_id=MODEL,
                             preset="tiny" if args.tiny else "64",
                             steps=10**6, batch_size=8 if args.tiny else 64,
                             checkpoint_every=10**6, class_balance=True, resume=False)
    cancel = CancelToken()
    timer = threading.Timer(args.seconds, cancel.cancel)  # the budget: a clean stop
    timer.start()
    with TerminalProgress() as progress:
        result = train_ddpm(workspace, config, progress, cancel)
    timer.cancel()
    report["training"] = {"steps": result.steps_done, "seconds": result.seconds,
                          "final_loss": result.final_loss, "checkpoint": result.checkpoints[-1],
                          "images_per_s": result.steps_done * config.batch_size / result.seconds,
                          "preset": config.preset, "batch": config.batch_size,
                          "splits": list(config.splits)}
    for cls in ("AD", "REST"):
        with TerminalProgress() as progress:
            sample_to_pool(db, workspace, MODEL, SampleRequest(
                class_label=cls, n=args.per_class, seed=0, steps=50 if args.tiny else 100,
                guidance=2.0, scheduler="ddpm", batch_size=64), progress=progress)
    with TerminalProgress() as progress:
        diagnosis = diagnose(db, workspace, DiagnoseConfig(
            dataset="neopolyp", generator=MODEL, size=96 if args.tiny else 224,
            subsets=10 if args.tiny else 100, projections=("pca",)), progress)
    report["kid"] = {scheme: matrix.to_json() for scheme, matrix in diagnosis.matrices.items()}
    report["extractor"] = diagnosis.extractor
    Image.fromarray(contact_sheet(db, workspace, "neopolyp", 8)).save(out / "neopolyp_samples.png")
    export = export_generator(workspace, MODEL, result.checkpoints[-1], out / MODEL)
    report["export_mb"] = sum(p.stat().st_size for p in export.rglob("*") if p.is_file()) / 1e6
    report["seconds_total"] = time.perf_counter() - start
    (out / "neopolyp_generator.json").write_text(json.dumps(report, indent=1, default=str))
    kid = report["kid"].get("ad_vs_rest", next(iter(report["kid"].values())))
    print(f"{MODEL}: {result.steps_done} steps in {result.seconds:.0f} s "
          f"({report['training']['images_per_s']:.1f} images/s), export {report['export_mb']:.1f} MB")
    for syn, row in kid["cells"].items():
        print(f"  KID synthetic {syn}: " + ", ".join(
            f"vs real {real} {cell['mean']:.4f} ± {cell['std']:.4f}" for real, cell in row.items()))
    print(f"  contact sheet: {out / 'neopolyp_samples.png'}; report: {out / 'neopolyp_generator.json'}")


if __name__ == "__main__":
    main()
