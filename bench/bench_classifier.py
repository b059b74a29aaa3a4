"""Classifier training throughput: the studio's loop against a plain timm loop, one run.

Both train the same Lite0 classifier (same head, batch size, optimiser, augmentation kinds)
on the same images for the same number of epochs. The plain loop is what research scripts
do: a torch Dataset that opens and decodes each JPEG every epoch, torchvision transforms,
a DataLoader with worker processes. The studio's loop decodes once through the pixel cache,
keeps uint8 tensors in memory, augments whole batches and runs channels_last. Prints images
per second of each and the ratio (target: at least 1.0). Uses ../shared/data/neopolyp when
present, else a freshly painted phantom set.

    python bench/bench_classifier.py [--n 256] [--size 128] [--epochs 2]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
import torch.nn.functional as F

from polyp_core.data.tensors import ImageRef, load_tensors
from polyp_core.classify.model import build_classifier
from polyp_core.classify.train import train_classifier
from polyp_core.training import TrainConfig
from polyp_core.data.cache import PixelCache
from sources import bench_workspace, throughput_args


class FileDataset(torch.utils.data.Dataset):
    """The research-script way: decode and transform every image every epoch."""

    def __init__(self, refs, classes, size, mean, std):
        from torchvision import transforms

        self.refs, self.index = refs, {c: i for i, c in enumerate(classes)}
        self.transform = transforms.Compose([
            transforms.Resize((size, size)), transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(), transforms.RandomRotation(15),
            transforms.ColorJitter(0.1, 0.1), transforms.ToTensor(),
            transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.refs)

    def __getitem__(self, i):
        from PIL import Image

        ref = self.refs[i]
        with Image.open(ref.path) as image:
            return self.transform(image.convert("RGB")), self.index[ref.label]


def plain_loop(refs, classes, config, workers: int) -> float:
    model, spec = build_classifier(config.backbone, classes, config.image_size, config.hidden)
    loader = torch.utils.data.DataLoader(
        FileDataset(refs, classes, config.image_size, spec.mean, spec.std),
        batch_size=config.batch_size, shuffle=True, num_workers=workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()
    start = time.perf_counter()
    for _ in range(config.epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    args = throughput_args(256)
    with tempfile.TemporaryDirectory() as tmp:
        workspace, _ = bench_workspace(tmp, args.n + 16)
        manifest = workspace.load_manifest("bench")
        classes = sorted({manifest.label_of(i) for i in manifest.items})
        refs = [ImageRef(i.sha256, i.image, manifest.label_of(i)) for i in manifest.items]
        train_refs, valid_refs = refs[:args.n], refs[args.n:args.n + 16]
        config = TrainConfig(image_size=args.size, epochs=args.epochs, batch_size=32,
                                       imbalance="none", patience=args.epochs)
        torch.manual_seed(0)
        plain = plain_loop(train_refs, classes, config, args.workers)
        # ours, from files on disk: decoding (first use of the cache) is inside the timing
        start = time.perf_counter()
        pixels = PixelCache(workspace.pixel_cache_dir)
        train = load_tensors(train_refs, classes, args.size, pixels)
        valid = load_tensors(valid_refs, classes, args.size, pixels)
        train_classifier(train, valid, tuple(classes), config, seed=0, device=torch.device("cpu"))
        ours = time.perf_counter() - start
    images = args.n * args.epochs
    print(f"plain timm loop ({args.workers} workers, decode every epoch): {images / plain:.1f} images/s")
    print(f"studio loop (decode once, batched augmentation, channels_last, incl. validation): "
          f"{images / ours:.1f} images/s")
    print(f"throughput ratio studio/plain: {plain / ours:.2f}x  (target >= 1.0)")


if __name__ == "__main__":
    main()
