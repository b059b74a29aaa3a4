"""Frozen-backbone training with augmentation against the same run without it.

With the backbone frozen, features are embedded once; augmentation embeds one augmented view
per image once more (``AUGMENTED_VIEWS``) instead of pushing every augmented batch through the
backbone every epoch. Target: at most 2x the time of the run without augmentation. Prints both
times and the ratio. Uses ../shared/data/neopolyp when present, else a freshly painted phantom
set.

    python bench/bench_frozen_augment.py [--n 256] [--size 224] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from polyp_core.data.tensors import ImageRef, load_tensors
from polyp_core.classify.train import train_classifier
from polyp_core.training import TrainConfig
from polyp_core.data.cache import PixelCache
from sources import bench_workspace


def timed(train, valid, classes, config) -> float:
    start = time.perf_counter()
    train_classifier(train, valid, classes, config, seed=0, device=torch.device("cpu"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    workspace, _ = bench_workspace(tmp, args.n + 64)
    manifest = workspace.load_manifest("bench")
    classes = tuple(sorted({i.label for i in manifest.items}))
    def refs(split):
        return [ImageRef(i.sha256, i.image, i.label)
                              for i in manifest.split_items(split)]
    pixels = PixelCache(workspace.pixel_cache_dir)
    train = load_tensors(refs("train")[:args.n], classes, args.size, pixels)
    valid = load_tensors(refs("valid")[:max(32, args.n // 4)], classes, args.size, pixels)
    base = TrainConfig(image_size=args.size, epochs=args.epochs, patience=args.epochs,
                                 freeze_backbone=True, augment=False)
    plain = timed(train, valid, classes, base)
    cached = timed(train, valid, classes, replace(base, augment=True))
    print(f"{len(train)} training images at {args.size} px, {args.epochs} epochs, frozen Lite0:")
    print(f"  no augmentation:           {plain:7.1f} s")
    print(f"  augmentation, cached views: {cached:7.1f} s  ratio {cached / plain:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
