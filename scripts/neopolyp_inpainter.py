"""Inpainting on real frames (NeoPolyp, AD vs REST) on a CPU time budget: does filling a polyp
into a real frame give images closer to real ones than making whole frames?

Two generators learn from the data set's training split only, each on its own budget, both
resumable (run the same command again: training continues from the newest checkpoint):

- ``inpaint``: a DDPM trained for inpainting (``train-ddpm --inpaint``: hole, polyp mask and
  the blanked frame are extra inputs; a tenth of its holes are whole frames);
- ``with-mask``: a DDPM of image and mask (``train-ddpm --with-mask``), which inpaints by
  RePaint resampling.

The held-out side (validation and test splits, frames the generators never saw) is cut in
two group-disjoint halves: half A gives the backgrounds (each frame's own polyp mask dilated
by ``--dilate`` px), half B is the real reference. Per class, ``--per-class`` images of four
kinds are made on half-A frames: trained inpainting, RePaint, and two kinds of whole frames
(the inpainting model with the whole frame as its hole, and free samples of the image-and-mask
model). KID (Lite0 features at 224 px, the studio's extractor) of each kind and class against
half B's real frames of each class sits beside the real-vs-real floor (half A's real frames
against half B's), all at the generators' 64 px. Written: ``neopolyp_inpainter.json`` and a
contact sheet (background | mask | trained | RePaint) in ``--out``; the models stay in
``--out/workspace`` (research-use data: never commit them).

    python scripts/neopolyp_inpainter.py --out /tmp/inpainter               # ~60-80 min, 2 CPUs
    python scripts/neopolyp_inpainter.py --out /tmp/check --tiny            # minutes
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
from polyp_core.data.browse import overlay_mask
from polyp_core.data.cache import PixelCache
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.diagnostics.distances import kid
from polyp_core.diagnostics.features import extract_features
from polyp_core.generation.backends import load_generator
from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
from polyp_core.data.images import resize_rgb
from polyp_core.generation.inpaint import InpaintRequest, fill, frame_background
from polyp_core.generation.masks import dilate as dilate_mask
from polyp_core.generation.masks import hole_at, polyp_at
from polyp_core.generation.request import SampleRequest
from polyp_core.progress import CancelToken
from polyp_core.workspace import Workspace

CLASSES = ("AD", "REST")
MODELS = {"inpaint": "neopolyp-inpaint64", "image_mask": "neopolyp-withmask64"}


def train(workspace: Workspace, task: str, seconds: float, tiny: bool) -> dict:
    """Train (or continue) one generator until its budget is spent; a checkpoint is written
    when the timer stops it, so the next run resumes there."""
    config = DDPMTrainConfig(dataset="neopolyp", model_id=MODELS[task],
                             preset="tiny" if tiny else "demo64", steps=10**6,
                             batch_size=8 if tiny else 16, lr=2e-4, warmup=100,
                             checkpoint_every=500, class_balance=True, task=task,
                             max_dilate=2 if tiny else 4, full_frame=0.1,
                             grid_per_class=2, grid_steps=10)
    cancel = CancelToken()
    timer = threading.Timer(seconds, cancel.cancel)
    timer.start()
    with TerminalProgress() as progress:
        result = train_ddpm(workspace, config, progress, cancel)
    timer.cancel()
    return {"model": config.model_id, "task": task, "preset": config.preset,
            "steps": result.steps_done, "seconds_this_run": result.seconds,
            "final_loss": result.final_loss, "checkpoint": result.checkpoints[-1],
            "batch": config.batch_size}


def halves(workspace: Workspace, seed: int) -> tuple[list, list]:
    """The held-out side (every split but train) cut in two group-disjoint halves, as
    ``(item, class)`` pairs."""
    manifest = workspace.load_manifest("neopolyp")
    held = [(i, manifest.label_of(i)) for i in manifest.items if i.split != "train"]
    groups = sorted({i.group or i.id for i, _ in held})
    first = set(np.random.default_rng(seed).permutation(groups)[: len(groups) // 2].tolist())
    return ([(i, c) for i, c in held if (i.group or i.id) in first],
            [(i, c) for i, c in held if (i.group or i.id) not in first])


def frames_at(workspace: Workspace, items: list, size: int, dilate: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backgrounds, holes (own mask dilated by ``dilate`` px of the frame) and polyp masks at
    the generators' size: what ``inpaint`` computes for one frame, for many."""
    rgb, holes, polyps = [], [], []
    for item in items:
        background = frame_background(workspace, "neopolyp", item.id)
        hole = hole_at(dilate_mask(background.mask, dilate), size)
        rgb.append(resize_rgb(background.rgb, size))
        holes.append(hole)
        polyps.append(polyp_at(background.mask, size) & hole)
    return np.stack(rgb), np.stack(holes), np.stack(polyps)


def make_images(workspace: Workspace, backgrounds: list, per_class: int, dilate: int,
                steps: int, jumps: tuple[int, int], batch: int = 25) -> tuple[dict, list]:
    """Per kind and class, ``per_class`` images on half-A frames (cycled; class c starts at
    frame c * per_class), and the contact sheet's rows."""
    trained = load_generator(workspace, MODELS["inpaint"])
    with_mask = load_generator(workspace, MODELS["image_mask"])
    size = trained.size
    kinds = {"trained": (trained, {}),
             "repaint": (with_mask, {"jump_length": jumps[0], "jump_n_sample": jumps[1]}),
             "whole_inpaint": (trained, {})}
    made: dict[str, dict[str, list]] = {k: {c: [] for c in CLASSES} for k in
                                        (*kinds, "whole_with_mask")}
    timing = dict.fromkeys(made, 0.0)
    sheet = []
    for c, cls in enumerate(CLASSES):
        items = [backgrounds[(k + c * per_class) % len(backgrounds)][0] for k in range(per_class)]
        rgb, holes, polyps = frames_at(workspace, items, size, dilate)
        for kind, (generator, extra) in kinds.items():
            request = InpaintRequest(generator=MODELS["inpaint"], class_label=cls, steps=steps,
                                     guidance=2.0, scheduler="ddim", **extra)
            hole = np.ones_like(holes) if kind == "whole_inpaint" else holes
            start = time.perf_counter()
            with TerminalProgress() as progress:
                for first in range(0, per_class, batch):
                    part = slice(first, first + batch)
                    made[kind][cls] += list(fill(generator, request, list(range(first, first + batch))[
                        :len(rgb[part])], rgb[part], hole[part], polyps[part]))
                    progress(len(made[kind][cls]), per_class, f"{kind} {cls}")
            timing[kind] += time.perf_counter() - start
        for k in range(4):
            sheet.append(np.concatenate([rgb[k], overlay_mask(rgb[k], holes[k], (255, 200, 0)),
                                         overlay_mask(made["trained"][cls][k], polyps[k]),
                                         overlay_mask(made["repaint"][cls][k], polyps[k])], axis=1))
        start = time.perf_counter()
        free = with_mask.sample(SampleRequest(class_label=cls, n=per_class, seed=0, steps=steps,
                                              guidance=2.0, batch_size=50))
        timing["whole_with_mask"] += time.perf_counter() - start
        made["whole_with_mask"][cls] = [g.rgb for g in free]
    return made | {"seconds": timing}, sheet


def kid_table(workspace: Workspace, made: dict, half_a: list, half_b: list, size: int,
              subsets: int) -> dict:
    """KID of every kind and class against half B's real frames of each class, and the floor."""
    cache = PixelCache(workspace.pixel_cache_dir)

    def real(items: list, cls: str) -> np.ndarray:
        frames = [cache.rgb(i.image, i.sha256, size) for i, c in items if c == cls]
        return extract_features(frames)

    ref = {c: real(half_b, c) for c in CLASSES}
    a = {c: real(half_a, c) for c in CLASSES}

    def cell(x: np.ndarray, y: np.ndarray) -> dict:
        result = kid(x, y, subsets=subsets, subset_size=min(len(x), len(y), 100))
        return {"mean": result.mean, "std": result.std, "n_real": len(x), "n": len(y)}

    table = {"floor (real half A)": {c: {r: cell(ref[r], a[c]) for r in CLASSES} for c in CLASSES}}
    for kind, per_class in made.items():
        if kind == "seconds":
            continue
        feats = {c: extract_features(per_class[c]) for c in CLASSES}
        table[kind] = {c: {r: cell(ref[r], feats[c]) for r in CLASSES} for c in CLASSES}
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "neopolyp"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=1800.0, help="training budget per model")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--dilate", type=int, default=20, help="px of the frame (NeoPolyp: ~1280 px wide)")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (DDIM; RePaint)")
    parser.add_argument("--jumps", default="5,2", help="RePaint jump_length,jump_n_sample")
    parser.add_argument("--skip-training", action="store_true", help="sample the models as they are")
    parser.add_argument("--tiny", action="store_true", help="check the script: tiny models, 20 s each")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out / "workspace")
    if args.tiny:
        args.seconds, args.per_class, args.steps = min(args.seconds, 20.0), min(args.per_class, 6), 4
    report: dict = {"tiny": args.tiny, "budget_s_per_model": args.seconds, "dilate_px": args.dilate,
                    "steps": args.steps, "jumps": args.jumps}
    start = time.perf_counter()
    if "neopolyp" not in workspace.datasets():
        with TerminalProgress() as progress:
            imported = import_dataset(workspace, ImportConfig(args.data, name="neopolyp"),
                                      progress=progress)
        report["import"] = {"images": imported.n_images, "split": imported.split_method}
    if not args.skip_training:
        report["training"] = [train(workspace, task, args.seconds, args.tiny) for task in MODELS]
    half_a, half_b = halves(workspace, seed=0)
    report["halves"] = {name: {c: sum(k == c for _, k in half) for c in CLASSES}
                        for name, half in (("A (backgrounds, floor)", half_a), ("B (reference)", half_b))}
    jumps = tuple(int(j) for j in args.jumps.split(","))
    made, sheet = make_images(workspace, half_a, args.per_class, args.dilate, args.steps, jumps)
    report["sampling_seconds"] = made.pop("seconds")
    size = load_generator(workspace, MODELS["inpaint"]).size
    report["kid"] = kid_table(workspace, made, half_a, half_b, size, 10 if args.tiny else 100)
    report["seconds_total"] = time.perf_counter() - start
    Image.fromarray(np.concatenate(sheet, axis=0)).resize(
        (4 * 128, len(sheet) * 128), Image.Resampling.NEAREST).save(out / "neopolyp_inpainting.png")
    (out / "neopolyp_inpainter.json").write_text(json.dumps(report, indent=1, default=str))
    for kind, table in report["kid"].items():
        print(f"{kind:>22}: " + "; ".join(
            f"{c} vs real {r} {cell['mean']:.4f} ± {cell['std']:.4f}"
            for c, row in table.items() for r, cell in row.items()))
    print(f"sheet: {out / 'neopolyp_inpainting.png'}; report: {out / 'neopolyp_inpainter.json'}")


if __name__ == "__main__":
    main()
