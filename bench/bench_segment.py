"""Segmentation training throughput: the studio's loop against a plain
segmentation-models-pytorch loop, one run.

Both train the same U-Net (smp, ``tu-tf_efficientnet_lite0`` encoder, the same decoder widths,
Dice + BCE loss, AdamW, batch size) on the same images and masks for the same number of
epochs. The plain loop is what research scripts do: a torch Dataset that opens and decodes the
JPEG and its mask every epoch, torchvision-style flips, a DataLoader with worker processes. The
studio's loop decodes once through the pixel cache, keeps uint8 tensors in memory and augments
whole batches. Prints images per second of each and the ratio (target: at least 1.0). Uses
../shared/data/neopolyp when present, else a freshly painted phantom set.

    python bench/bench_segment.py [--n 192] [--size 128] [--epochs 2]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from polyp_core.data.tensors import ImageRef
from polyp_core.training import TrainConfig
from polyp_core.data.cache import PixelCache
from polyp_core.segment.model import build_segmenter
from polyp_core.segment.train import dice_bce_loss, load_masked, train_segmenter
from sources import bench_workspace, throughput_args


class FileDataset(torch.utils.data.Dataset):
    """The research-script way: decode, resize and flip every image and mask every epoch."""

    def __init__(self, refs, size, mean, std):
        self.refs, self.size = refs, size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.refs)

    def __getitem__(self, i):
        from PIL import Image

        ref = self.refs[i]
        with Image.open(ref.path) as image, Image.open(ref.mask) as mask:
            x = np.asarray(image.convert("RGB").resize((self.size, self.size)), dtype=np.float32)
            m = np.asarray(mask.convert("L").resize((self.size, self.size), Image.NEAREST)) >= 128
        x = torch.from_numpy(x / 255.0).permute(2, 0, 1)
        m = torch.from_numpy(m.copy())
        if torch.rand(1) < 0.5:
            x, m = x.flip(2), m.flip(1)
        if torch.rand(1) < 0.5:
            x, m = x.flip(1), m.flip(0)
        return (x - self.mean) / self.std, m


def plain_loop(refs, config, workers: int) -> float:
    model = build_segmenter(config.backbone, pretrained=True)
    loader = torch.utils.data.DataLoader(FileDataset(refs, config.image_size, model.mean, model.std),
                                         batch_size=config.batch_size, shuffle=True,
                                         num_workers=workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()
    start = time.perf_counter()
    for _ in range(config.epochs):
        for x, m in loader:
            loss = dice_bce_loss(model(x), m)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    args = throughput_args(192)
    with tempfile.TemporaryDirectory() as tmp:
        workspace, _ = bench_workspace(tmp, args.n + 16)
        manifest = workspace.load_manifest("bench")
        refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in manifest.items]
        train_refs, valid_refs = refs[:args.n], refs[args.n:args.n + 16]
        config = TrainConfig(image_size=args.size, epochs=args.epochs, batch_size=16,
                                       patience=args.epochs)
        torch.manual_seed(0)
        plain = plain_loop(train_refs, config, args.workers)
        # ours, from files on disk: decoding (first use of the cache) is inside the timing
        start = time.perf_counter()
        pixels = PixelCache(workspace.pixel_cache_dir)
        train = load_masked(train_refs, args.size, pixels)
        valid = load_masked(valid_refs, args.size, pixels)
        train_segmenter(train, valid, config, seed=0, device=torch.device("cpu"))
        ours = time.perf_counter() - start
    images = args.n * args.epochs
    print(f"plain smp loop ({args.workers} workers, decode every epoch): {images / plain:.1f} images/s")
    print(f"studio loop (decode once, batched augmentation, incl. validation): "
          f"{images / ours:.1f} images/s")
    print(f"throughput ratio studio/plain: {plain / ours:.2f}x  (target >= 1.0)")


if __name__ == "__main__":
    main()
