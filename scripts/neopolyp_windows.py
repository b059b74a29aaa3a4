"""Polyps at the frame's own resolution on NeoPolyp: window inpainting (both routes) against
whole-frame inpainting and copy-paste, judged on the hole as well as on the frame.

Phase ``train`` (resumable: run it again and each model continues from its newest
checkpoint, each on its own time budget), on the training split only:

- ``np-win-inpaint``: ``train-ddpm --inpaint``, learning from windows (the default);
- ``np-win-withmask``: ``train-ddpm --with-mask`` from windows, which inpaints by RePaint;
- ``np-frame-inpaint``: ``train-ddpm --inpaint --window frame``, whole frames shrunk to 64 px
  (the route before windows), used with ``--window none``.

Phase ``evaluate``: the held-out side (validation + test) is cut in two group-disjoint halves;
half A's frames whose polyp a window can hold are the backgrounds, half B is the real
reference. Per class, ``--per-class`` images of each kind go into the pool through the
studio's own engine (``inpaint`` + ``store_inpainted``, ``copy_paste.paste_polyp`` +
``store_pasted``, copy-paste cutting training polyps): window-trained, window-RePaint,
whole-frame trained, copy-paste. Then, per kind and class: KID of crops around each polyp
against half B's crops (``diagnostics.lesion``; interval over lesions and backgrounds) beside
the crops' real-vs-real floor (half A against half B), whole-frame KID, and the gate's
acceptance at IoU 0.7 (``run_gate``, Wilson intervals). A contact sheet at the frame's
resolution, a blind study with masks shown (its leak audit at creation) and the timings are
written to ``--out`` (``neopolyp_windows.json``, ``neopolyp_windows.png``). The models and the
workspace stay in ``--out/workspace`` (research-use data: never commit them).

    python scripts/neopolyp_windows.py train --out build/np-windows --seconds 1200
    python scripts/neopolyp_windows.py evaluate --out build/np-windows
    python scripts/neopolyp_windows.py sheet --out build/np-windows      # full resolution
    python scripts/neopolyp_windows.py train --out /tmp/check --tiny && \\
        python scripts/neopolyp_windows.py evaluate --out /tmp/check --tiny      # minutes
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
from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.diagnostics.distances import kid
from polyp_core.diagnostics.features import FeatureExtractor
from polyp_core.diagnostics.lesion import kid_interval, lesion_crop
from polyp_core.generation.copy_paste import (CopyPasteRequest, Pasted, _record, paste_polyp,
                                              store_pasted)
from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
from polyp_core.generation.inpaint import (InpaintRequest, frame_background, inpaint,
                                           plan_masks, store_inpainted)
from polyp_core.data.images import load_mask, load_rgb
from polyp_core.progress import CancelToken
from polyp_core.workspace import Workspace
from scripts.neopolyp_inpainter import halves as held_out_halves

CLASSES = ("AD", "REST")
MODELS = {"np-win-inpaint": ("inpaint", "lesion"), "np-win-withmask": ("image_mask", "lesion"),
          "np-frame-inpaint": ("inpaint", "frame")}
#: kind -> (model, window); copy-paste has no model
KINDS = {"window, trained": ("np-win-inpaint", "lesion"),
         "window, RePaint": ("np-win-withmask", "lesion"),
         "whole frame, trained": ("np-frame-inpaint", "none"),
         "copy-paste": (None, None)}
GENERATOR_OF = {"copy-paste": "np-copy-paste"}


def workspace_of(out: Path, data: str) -> Workspace:
    workspace = Workspace(out / "workspace")
    if "neopolyp" not in workspace.datasets():
        with TerminalProgress() as progress:
            import_dataset(workspace, ImportConfig(data, name="neopolyp"), progress=progress)
    return workspace


def train(workspace: Workspace, model: str, seconds: float, tiny: bool) -> dict:
    """Train (or continue) one generator until its budget is spent; a checkpoint is written
    when the timer stops it, so the next run resumes there."""
    task, window = MODELS[model]
    config = DDPMTrainConfig(dataset="neopolyp", model_id=model,
                             preset="tiny" if tiny else "demo64", steps=10**6,
                             batch_size=8 if tiny else 16, lr=2e-4, warmup=100,
                             checkpoint_every=500, class_balance=True, task=task,
                             max_dilate=2 if tiny else 4, full_frame=0.1, window=window,
                             grid_per_class=2, grid_steps=10)
    cancel = CancelToken()
    timer = threading.Timer(seconds, cancel.cancel)
    timer.start()
    with TerminalProgress() as progress:
        result = train_ddpm(workspace, config, progress, cancel)
    timer.cancel()
    return {"model": model, "task": task, "window": window, "steps": result.steps_done,
            "seconds_this_run": result.seconds, "final_loss": result.final_loss,
            "checkpoint": result.checkpoints[-1] if result.checkpoints else None}


def halves(workspace: Workspace, seed: int, dilate: int) -> tuple[list, list]:
    """Half A (backgrounds: held-out frames whose polyp a window holds) and half B (the
    reference), group-disjoint, as ``(item, class)``: the whole-frame study's halves, half A
    kept to the frames window inpainting accepts."""
    half_a, half_b = held_out_halves(workspace, seed)
    request = InpaintRequest(generator="x", class_label="AD", dilate=dilate)
    usable = []
    for item, cls in half_a:
        try:
            plan_masks(workspace, request, frame_background(workspace, "neopolyp", item.id))
        except ValueError:
            continue
        usable.append((item, cls))
    return usable, half_b


def make(db, workspace: Workspace, backgrounds: list, per_class: int, dilate: int, steps: int,
         jumps: tuple[int, int]) -> tuple[dict, dict, list]:
    """Every kind's images of every class into the pool: their SHA-256s by kind and class, the
    seconds each kind took, and the contact sheet's rows (four frames per class)."""
    manifest = workspace.load_manifest("neopolyp")
    made = {k: {c: [] for c in CLASSES} for k in KINDS}
    seconds = dict.fromkeys(KINDS, 0.0)
    sheet = []
    sources = {c: [i for i in manifest.items if i.split == "train" and i.mask
                   and manifest.label_of(i) == c] for c in CLASSES}
    for c, cls in enumerate(CLASSES):
        frames = [backgrounds[(k + c * per_class) % len(backgrounds)][0] for k in range(per_class)]
        shown = {}
        for kind, (model, window) in KINDS.items():
            start = time.perf_counter()
            with TerminalProgress() as progress:
                for k, item in enumerate(frames):
                    background = frame_background(workspace, "neopolyp", item.id)
                    if model is None:
                        rng = np.random.default_rng(10_000 * c + k)
                        source = sources[cls][int(rng.integers(len(sources[cls])))]
                        pasted = paste_polyp(load_rgb(source.image), load_mask(source.mask),
                                             background.rgb, background.mask, rng, 1.25)
                        if pasted is None:
                            continue
                        request = CopyPasteRequest(dataset="neopolyp", class_label=cls,
                                                   generator=GENERATOR_OF[kind],
                                                   target_split="test")
                        image = Pasted(pasted[0], pasted[1], 10_000 * c + k,
                                       _record("neopolyp", source), _record("neopolyp", item),
                                       pasted[2])
                        stored = store_pasted(db, workspace, request, cls, [image])
                        rgb = image.rgb
                    else:
                        request = InpaintRequest(generator=model, class_label=cls,
                                                 dataset="neopolyp", image=item.id,
                                                 dilate=dilate, seeds=(k,), steps=steps,
                                                 scheduler="ddim", window=window,
                                                 jump_length=jumps[0], jump_n_sample=jumps[1])
                        result = inpaint(workspace, request, background)
                        stored = store_inpainted(db, workspace, request, result)
                        rgb = result.images[0].rgb
                    made[kind][cls] += [sha for _, sha in stored]
                    if k < 4:
                        shown.setdefault(k, {})[kind] = rgb
                    progress(k + 1, per_class, f"{kind} {cls}")
            seconds[kind] += time.perf_counter() - start
        for k in sorted(shown):
            background = frame_background(workspace, "neopolyp", frames[k].id)
            row = [background.rgb, overlay_mask(background.rgb, background.mask, (255, 200, 0))]
            row += [_fit(shown[k].get(kind), background.rgb.shape) for kind in KINDS]
            sheet.append(np.concatenate(row, axis=1))
    return made, seconds, sheet


def _fit(rgb: np.ndarray | None, shape: tuple) -> np.ndarray:
    """A result at the frame's size (a whole-frame result is 64 px: scaled up, as it is)."""
    if rgb is None:
        return np.zeros(shape, np.uint8)
    if rgb.shape == shape:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((shape[1], shape[0]), Image.Resampling.NEAREST))


def evaluate_images(db, workspace: Workspace, made: dict, half_a: list, half_b: list,
                    subsets: int, seed: int = 0) -> dict:
    """Per kind and class: lesion-crop KID (interval over lesions) against half B's crops,
    the crops' floor (half A's real crops against half B's), and whole-frame KID."""
    from review_db import queries
    from polyp_core.diagnostics.lesion import synthetic_crops

    extractor = FeatureExtractor("efficientnet_lite0")
    size = 224

    def real_side(items: list, cls: str) -> tuple[np.ndarray, np.ndarray, list]:
        crops, frames, units = [], [], []
        for item, c in items:
            if c != cls:
                continue
            rgb, mask = load_rgb(item.image), load_mask(item.mask)
            crop = lesion_crop(rgb, mask, size)
            if crop is None:
                continue
            crops.append(crop)
            frames.append(np.asarray(Image.fromarray(rgb).resize((size, size),
                                                                 Image.Resampling.BICUBIC)))
            units.append(item.group or item.id)
        return extractor(crops), extractor(frames), units

    def cell(x: np.ndarray, y: np.ndarray) -> dict:
        r = kid(x, y, subsets, min(len(x), len(y), 100), seed)
        return {"mean": r.mean, "std": r.std}

    table: dict = {}
    for cls in CLASSES:
        ref_crops, ref_frames, ref_units = real_side(half_b, cls)
        a_crops, a_frames, a_units = real_side(half_a, cls)
        table.setdefault("real (half A), the floor", {})[cls] = {
            "lesion": cell(ref_crops, a_crops) | kid_interval(ref_crops, ref_units, a_crops,
                                                            a_units, seed),
            "frame": cell(ref_frames, a_frames), "n": len(a_crops)}
        for kind in KINDS:
            shas = made[kind][cls]
            kept, crops, units = synthetic_crops(db, workspace, shas, size)
            with db.session() as session:
                paths = [queries.image_by_sha(session, s).path for s in shas]
            frames = [np.asarray(Image.open(p).convert("RGB").resize(
                (size, size), Image.Resampling.BICUBIC)) for p in paths]
            crop_features = extractor(crops)
            table.setdefault(kind, {})[cls] = {
                "lesion": cell(ref_crops, crop_features) | kid_interval(
                    ref_crops, ref_units, crop_features, units, seed),
                "frame": cell(ref_frames, extractor(frames)), "n": len(shas),
                "left_out": len(shas) - len(kept)}
    return table


def gate_acceptance(db, workspace: Workspace, tiny: bool) -> dict:
    """The gate at IoU 0.7 on every generator's images: acceptance with Wilson intervals, per
    generator and class."""
    from polyp_core.segment.gate import GATE_TRAIN, GateConfig, run_gate
    from dataclasses import replace

    train = replace(GATE_TRAIN, epochs=1, image_size=64) if tiny else GATE_TRAIN
    with TerminalProgress() as progress:
        result = run_gate(db, workspace, GateConfig(dataset="neopolyp", train=train), progress)
    return {"gate": result.gate, "lines": result.lines(), "rates": result.rates,
            "reference": result.reference}


def study(db, workspace: Workspace, per_pool: int) -> dict:
    """A blind study of real held-out frames and every kind's images with their masks shown;
    its leak audit runs at creation (a failing audit refuses the study)."""
    from polyp_core.review.accounts import create_account
    from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, create_study
    from review_db import queries

    with db.session() as session:
        admin_known = queries.reviewers_by_name(session, ["np-admin"])
    admin = create_account(db, "np-admin", "windows study password", "admin") \
        if not admin_known else None
    if admin is None:
        raise SystemExit("the study exists already in this workspace; delete the database "
                         "to run the study again")
    create_account(db, "np-reviewer", "windows study password")
    pools = [RealPool("neopolyp", per_pool, split="test")] + [
        SyntheticPool(per_pool // 2, generator=model or GENERATOR_OF[kind])
        for kind, (model, _) in KINDS.items()]
    study_id = create_study(db, workspace, admin, StudySpec(
        name="neopolyp-windows", pools=tuple(pools), reviewers=("np-reviewer",),
        show_mask="outline"))
    with db.session() as session:
        settings = dict(queries.study_by_name(session, "neopolyp-windows").settings)
    return {"study": study_id, "audit": settings.get("audit")}


def full_sheet(db, workspace: Workspace, out: Path, per_class: int = 2) -> Path:
    """The contact sheet at the frame's own resolution: per class ``per_class`` held-out frames,
    each as background | its hole | every kind's image made on that frame (read back from the
    pool by background frame; a whole-frame image is 64 px, shown scaled up as it is)."""
    from review_db import queries

    with db.session() as session:
        by_kind = {kind: {(i.label, (i.provenance.extra or {}).get("background", {}).get("id")):
                          i.path for i in queries.synthetic_images(session, model or
                                                                  GENERATOR_OF[kind])}
                   for kind, (model, _) in KINDS.items()}
    rows = []
    for cls in CLASSES:
        frames = [frame for (label, frame) in by_kind["window, trained"] if label == cls]
        for frame in frames[:per_class]:
            background = frame_background(workspace, "neopolyp", frame)
            row = [background.rgb, overlay_mask(background.rgb, background.mask, (255, 200, 0))]
            for kind in KINDS:
                path = by_kind[kind].get((cls, frame))
                row.append(_fit(np.asarray(Image.open(path).convert("RGB")) if path else None,
                                background.rgb.shape))
            rows.append(np.concatenate(row, axis=1))
    width = min(r.shape[1] for r in rows)
    path = out / "neopolyp_windows_full.png"
    Image.fromarray(np.concatenate([r[:, :width] for r in rows], axis=0)).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["train", "evaluate", "sheet"])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "neopolyp"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=1200.0, help="training budget per model")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--dilate", type=int, default=10, help="px of the frame (384 wide)")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps (DDIM; RePaint)")
    parser.add_argument("--jumps", default="5,2", help="RePaint jump_length,jump_n_sample")
    parser.add_argument("--tiny", action="store_true", help="check the script: tiny models")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = workspace_of(out, args.data)
    if args.phase == "train":
        seconds = min(args.seconds, 60.0) if args.tiny else args.seconds
        log = [train(workspace, model, seconds, args.tiny) for model in MODELS]
        previous = json.loads((out / "training.json").read_text()) \
            if (out / "training.json").is_file() else []
        (out / "training.json").write_text(json.dumps(previous + [log], indent=1))
        print(json.dumps(log, indent=1))
        return
    from review_db.database import Database

    if args.phase == "sheet":  # after evaluate: the sheet at the frame's own resolution
        print(full_sheet(Database(f"sqlite:///{out / 'studio.db'}"), workspace, out))
        return
    if args.tiny:
        args.per_class, args.steps = min(args.per_class, 4), 3
    db = Database(f"sqlite:///{out / 'studio.db'}")
    report: dict = {"tiny": args.tiny, "dilate_px": args.dilate, "steps": args.steps,
                    "jumps": args.jumps, "per_class": args.per_class}
    start = time.perf_counter()
    half_a, half_b = halves(workspace, 0, args.dilate)
    report["halves"] = {name: {c: sum(k == c for _, k in half) for c in CLASSES}
                        for name, half in (("A (backgrounds)", half_a), ("B (reference)", half_b))}
    jumps = tuple(int(j) for j in args.jumps.split(","))
    made, seconds, sheet = make(db, workspace, half_a, args.per_class, args.dilate, args.steps,
                                jumps)
    report["seconds_per_image"] = {k: v / max(1, sum(len(made[k][c]) for c in CLASSES))
                                   for k, v in seconds.items()}
    report["kid"] = evaluate_images(db, workspace, made, half_a, half_b,
                                    10 if args.tiny else 100)
    report["gate"] = gate_acceptance(db, workspace, args.tiny)
    report["study"] = study(db, workspace, 4 if args.tiny else 20)
    report["seconds_total"] = time.perf_counter() - start
    rows = [np.asarray(Image.fromarray(r).resize((round(r.shape[1] * 160 / r.shape[0]), 160),
                                                 Image.Resampling.BICUBIC)) for r in sheet]
    width = min(r.shape[1] for r in rows)
    Image.fromarray(np.concatenate([r[:, :width] for r in rows], axis=0)).save(
        out / "neopolyp_windows.png")
    (out / "neopolyp_windows.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str)[:6000])


if __name__ == "__main__":
    main()
