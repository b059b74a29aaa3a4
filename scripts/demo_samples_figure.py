"""The figure docs/demo_ddpm_samples.png: real frames of each class beside a generator's
samples (seeds 0..n-1) per class and scheduler, everything shown at 64 px.

    python scripts/demo_samples_figure.py WORKSPACE MODEL CHECKPOINT OUT.png \
        [--guidance 4] [--schedulers ddpm:200,ddim:50,dpmsolver++:25,euler:30] [--n 8]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polyp_core.data.cache import PixelCache
from polyp_core.generation.backends import load_generator
from polyp_core.generation.grid import labelled_grid
from polyp_core.generation.request import SampleRequest
from polyp_core.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("workspace", "model", "checkpoint", "out"):
        parser.add_argument(name)
    parser.add_argument("--dataset", default="phantom")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--schedulers", default="ddpm:200,ddim:50,dpmsolver++:25,euler:30")
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    workspace = Workspace(args.workspace)
    generator = load_generator(workspace, args.model, args.checkpoint)
    manifest, pixels = workspace.load_manifest(args.dataset), PixelCache(workspace.pixel_cache_dir)
    def show(rgb):
        return np.asarray(Image.fromarray(rgb).resize((64, 64), Image.Resampling.BICUBIC))
    classes = list(manifest.class_counts()["all"])
    rows, names = [], []
    for cls in classes:  # real training frames, seen at the generator's resolution
        real = [i for i in manifest.split_items("train") if manifest.label_of(i) == cls][:args.n]
        rows.append([show(pixels.rgb(i.image, i.sha256, generator.size)) for i in real])
        names.append(f"real {cls}")
    for spec in args.schedulers.split(","):
        scheduler, steps = spec.split(":")
        for cls in classes:
            images = generator.sample(SampleRequest(class_label=cls, n=args.n, seed=0, steps=int(steps),
                                                    guidance=args.guidance, scheduler=scheduler))
            rows.append([show(i.rgb) for i in images])
            names.append(f"{scheduler} {cls}")
    Image.fromarray(labelled_grid(rows, [str(i) for i in range(args.n)], names, margin=110,
                                    cell_size=64)).save(args.out)


if __name__ == "__main__":
    main()
