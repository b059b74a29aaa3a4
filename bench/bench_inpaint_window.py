"""Window inpainting against whole-frame inpainting at the same model size: seconds per image.

Both fill the same frames' holes with the same inpainting DDPM (the ``demo64`` U-Net at 64 px,
random weights after one training step: speed does not depend on them), the same sampler,
steps and seeds, through the studio's ``inpaint``. The window route also cuts the window,
scales it, and scales the result back and pastes it into the frame at its own size. Measured
in one run, alternating, best of ``--repeats``; printed: seconds per image of each and the
ratio window / whole frame (target: at most 1.2). Uses ../shared/data/neopolyp's frames when
present, else a freshly painted phantom set at 384 px.

    python bench/bench_inpaint_window.py [--frames 6] [--seeds 4] [--steps 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm
from polyp_core.generation.inpaint import InpaintRequest, frame_background, inpaint, plan_masks
from sources import bench_workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dilate", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace, source = bench_workspace(tmp, 64)
        train_ddpm(workspace, DDPMTrainConfig(dataset="bench", model_id="paint", preset="demo64",
                                              steps=1, batch_size=2, task="inpaint",
                                              checkpoint_every=1, grid_per_class=1,
                                              grid_steps=1))
        manifest = workspace.load_manifest("bench")
        frames = []
        for item in manifest.items:
            request = InpaintRequest(generator="paint", class_label=item.label, dataset="bench",
                                     image=item.id, dilate=args.dilate)
            try:
                plan_masks(workspace, request, frame_background(workspace, "bench", item.id))
            except ValueError:
                continue
            frames.append(item)
            if len(frames) == args.frames:
                break
        best = {"lesion": float("inf"), "none": float("inf")}
        for _ in range(args.repeats):
            for window in best:
                start = time.perf_counter()
                for item in frames:
                    inpaint(workspace, InpaintRequest(
                        generator="paint", class_label=item.label, dataset="bench", image=item.id,
                        dilate=args.dilate, seeds=tuple(range(args.seeds)), steps=args.steps,
                        window=window), frame_background(workspace, "bench", item.id))
                best[window] = min(best[window], time.perf_counter() - start)
        shape = frame_background(workspace, "bench", frames[0].id).rgb.shape
    images = len(frames) * args.seeds
    print(f"{source.name}: {len(frames)} frames ({shape[1]}x{shape[0]}), {args.seeds} seeds each, "
          f"{args.steps} DDIM steps, demo64 U-Net at 64 px, best of {args.repeats}")
    print(f"  whole frame (window none): {best['none'] / images:.3f} s per image")
    print(f"  window (lesion):           {best['lesion'] / images:.3f} s per image")
    print(f"  ratio window / whole frame: {best['lesion'] / best['none']:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
