"""The studio's segmentation training against a plain segmentation-models-pytorch script, at
equal budget, in one run: Dice with its 95% interval and the wall time of each, side by side.

Both train the same U-Net (smp, the bundled Lite0 encoder, the same decoder widths) on the
same training frames of the data set's fixed split, at the same size, for the same epochs and
batch size, and are scored on the same test frames, at the working size and at each mask's own
size (logits upsampled to it). The plain arm is what a research script does: a torch Dataset
that decodes every JPEG and mask every epoch, random flips, AdamW with a one-cycle schedule at
1e-3, Dice + BCE (smp's losses), the last epoch's model. The studio arm is ``retrain --task
segmentation --baseline-only --folds 0 --seeds 0`` at the task's defaults (``tasks.segment.
TRAIN_DEFAULTS``), run through the experiment as a user would (early stopping on the valid
split). Intervals: the cluster bootstrap over test groups (frames, or frames with identical
pixels), the paired difference studio - plain on the same frames. Target: the studio's Dice
within 0.01 of the plain loop's, or above it.

Uses ../shared/data/neopolyp when present, else a freshly painted phantom set.

    python bench/bench_segment.py [--size 128] [--epochs 12] [--batch-size 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from polyp_core.data.cache import PixelCache
from polyp_core.data.tensors import ImageRef
from polyp_core.segment.metrics import mask_scores
from polyp_core.segment.model import build_segmenter
from polyp_core.segment.train import (FullSizeTruth, full_size_scores, load_masked,
                                      predict_logits)
from polyp_core.stats.uncertainty import cluster_bootstrap_scores, paired_cluster_bootstrap_scores
from polyp_core.tasks import train_defaults
from polyp_core.training import TrainConfig
from sources import bench_workspace


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
        m = torch.from_numpy(m.copy()).float()[None]
        if torch.rand(1) < 0.5:
            x, m = x.flip(2), m.flip(2)
        if torch.rand(1) < 0.5:
            x, m = x.flip(1), m.flip(1)
        return (x - self.mean) / self.std, m


def plain_loop(refs, size: int, epochs: int, batch: int, workers: int) -> torch.nn.Module:
    """A plain segmentation-models-pytorch training script; the last epoch's model."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = build_segmenter("efficientnet_lite0", pretrained=True)
    loader = torch.utils.data.DataLoader(FileDataset(refs, size, model.mean, model.std),
                                         batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, epochs=epochs,
                                                   steps_per_epoch=len(loader))
    dice = smp.losses.DiceLoss(mode="binary", from_logits=True)
    bce = torch.nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        model.train()
        for x, m in loader:
            logits = model(x)
            loss = dice(logits, m) + bce(logits, m)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"  plain: epoch {epoch + 1}/{epochs} done", flush=True)
    return model.eval()


def studio_run(workspace, size: int, epochs: int, batch: int | None) -> tuple[dict, float]:
    """``retrain --task segmentation --baseline-only --folds 0 --seeds 0`` at the task's
    defaults: its results and wall time."""
    from polyp_core.experiment import ExperimentConfig, run_experiment
    from review_db.database import Database

    own = train_defaults("segmentation") | ({"batch_size": batch} if batch else {})
    config = ExperimentConfig(dataset="bench", task="segmentation", arms=("baseline",),
                              folds=0, seeds=(0,), name="bench-segment", allow_small_test=True,
                              train=TrainConfig(**own, image_size=size, epochs=epochs))
    db = Database(f"sqlite:///{workspace.root / 'studio.db'}")
    start = time.perf_counter()
    result = run_experiment(db, workspace, config, device=torch.device("cpu"))
    return result.results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        workspace, source = bench_workspace(tmp, 160)
        manifest = workspace.load_manifest("bench")
        train = [i for i in manifest.items if i.split == "train"]
        test = [i for i in manifest.items if i.split == "test"]
        refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in train]
        test_refs = [ImageRef(i.sha256, i.image, i.label, mask=i.mask) for i in test]
        groups = [i.group or i.id for i in test]
        print(f"{source.name}: {len(train)} training and {len(test)} test frames (fixed split), "
              f"{args.size} px, {args.epochs} epochs, batch {args.batch_size}", flush=True)

        results, studio_seconds = studio_run(workspace, args.size, args.epochs, args.batch_size)
        row = results["arms"]["baseline"]["per_seed"][0]
        studio = {"working": np.array(row["scores"]["dice"]),
                  "full": np.array(row["full"]["scores"]["dice"])}
        assert len(studio["working"]) == len(test)  # the manifest's test frames, in order

        start = time.perf_counter()
        model = plain_loop(refs, args.size, args.epochs, args.batch_size, args.workers)
        plain_seconds = time.perf_counter() - start
        data = load_masked(test_refs, args.size, PixelCache(workspace.pixel_cache_dir))
        logits = predict_logits(model, data, torch.device("cpu"))
        plain = {"working": mask_scores((logits > 0).numpy(), data.masks.numpy())["dice"],
                 "full": full_size_scores(logits, test_refs, FullSizeTruth())["dice"]}

    # the experiment tests the fixed split's test frames in the manifest's order, as here
    print(f"\nDice on {len(test)} test frames (95% CI over {len(set(groups))} test groups):")
    for view, name in (("full", "at each mask's own size"), ("working", f"at {args.size} px")):
        s = cluster_bootstrap_scores(studio[view][None], groups)
        p = cluster_bootstrap_scores(plain[view][None], groups)
        d = paired_cluster_bootstrap_scores(studio[view][None], plain[view][None], groups)
        print(f"  {name}:")
        print(f"    studio (retrain, lr {train_defaults('segmentation')['lr']:g}): "
              f"{s['estimate']:.3f} [{s['low']:.3f}, {s['high']:.3f}]")
        print(f"    plain smp loop (one-cycle 1e-3):  "
              f"{p['estimate']:.3f} [{p['low']:.3f}, {p['high']:.3f}]")
        print(f"    studio - plain (paired):          "
              f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p']:.3g}")
    print(f"wall time: studio {studio_seconds:.0f} s (decoding, validation every epoch and "
          f"scoring included), plain {plain_seconds:.0f} s ({args.workers} workers; scoring "
          f"not included); ratio studio/plain {studio_seconds / plain_seconds:.2f}")
    gap = (cluster_bootstrap_scores(studio["working"][None], groups)["estimate"]
           - cluster_bootstrap_scores(plain["working"][None], groups)["estimate"])
    print(f"target (studio within 0.01 Dice of plain, or above): "
          f"{'met' if gap >= -0.01 else 'NOT met'} ({gap:+.3f})")


if __name__ == "__main__":
    main()
