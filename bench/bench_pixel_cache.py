"""Reading cached pixels against decoding and resizing the image files, in one run.

Prints the speed-up of the content-hash cache for a training-sized pass (224 px). Uses
../shared/data/neopolyp when present (real JPEGs), else a freshly painted phantom set.

    python bench/bench_pixel_cache.py [--n 400]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.data.cache import PixelCache
from polyp_core.data.images import load_rgb, resize_rgb
from sources import bench_workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace, source = bench_workspace(tmp, args.n)
        items = workspace.load_manifest("bench").items[: args.n]
        cache = PixelCache(workspace.pixel_cache_dir)
        for item in items:  # warm the cache at the training size
            cache.rgb(item.image, item.sha256, args.size)

        start = time.perf_counter()
        for item in items:
            resize_rgb(load_rgb(item.image), args.size)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        for item in items:
            cache.get(item.sha256, args.size)
        cached = time.perf_counter() - start
    print(f"source: {source.name}, {len(items)} images, {args.size} px")
    print(f"decode+resize: {len(items) / decode:8.0f} images/s (reference)")
    print(f"pixel cache:   {len(items) / cached:8.0f} images/s")
    print(f"ratio cache/decode: {decode / cached:.1f}x")


if __name__ == "__main__":
    main()
