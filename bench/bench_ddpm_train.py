"""DDPM training throughput (images/s) and peak GPU memory of the studio's trainer, per preset.

The studio's ``train_ddpm`` (accelerate, mixed precision, EMA, class-conditional, data from
the pixel cache) runs per preset on a small phantom data set; the clock runs between its
progress reports after ``--warmup`` steps and after the last of ``--steps`` more, so set-up,
compilation and the final checkpoint are not counted. Reference, measured in the same run: a plain fp32 loop over
the same ``UNet2DModel`` with random tensors already on the device (no data loading, no EMA),
the floor any trainer pays. The two alternate ``--repeats`` times (a 2-core CPU drifts by about
5 % between identical runs) and the medians are compared. Printed: images/s, the ratio of the
medians and each repeat's, peak memory.

    python bench/bench_ddpm_train.py                      # presets 64,128 on a GPU; tiny on a CPU
    python bench/bench_ddpm_train.py --presets tiny --steps 4 --batch-size 4   # checks the script
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.generation.ddpm import DDPMTrainConfig, build_unet, get_preset, train_ddpm
from polyp_core.workspace import Workspace


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_rate(preset: str, batch: int, steps: int, device: torch.device) -> float:
    """Images/s of a plain fp32 training loop over the same network (data already on the device)."""
    from diffusers import DDPMScheduler

    config = get_preset(preset)
    unet = build_unet(config, num_class_embeds=4).to(device)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps)
    x = torch.randn(batch, 3, config.size, config.size, device=device)
    labels = torch.randint(0, 4, (batch,), device=device)

    def step() -> None:
        noise = torch.randn_like(x)
        t = torch.randint(0, config.num_train_timesteps, (batch,), device=device)
        loss = torch.nn.functional.mse_loss(
            unet(scheduler.add_noise(x, noise, t), t, class_labels=labels).sample, noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(2):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def studio_rate(workspace: Workspace, preset: str, batch: int, warmup: int, steps: int,
                mixed: str, device: torch.device, repeat: int = 0) -> tuple[float, float | None]:
    """Images/s of the studio's trainer between its progress reports at step ``warmup`` and
    at the last step (each report follows a synchronising ``loss.item()``), so set-up and the
    final checkpoint are not counted."""
    stamps: dict[int, float] = {}

    def progress(done: int, total: int, message: str) -> None:
        stamps[done] = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = DDPMTrainConfig(dataset="bench", model_id=f"bench-{preset}-{repeat}", preset=preset,
                             steps=warmup + steps, batch_size=batch, mixed_precision=mixed,
                             checkpoint_every=10**6, warmup=1, grid_per_class=1, grid_steps=2,
                             resume=False)
    train_ddpm(workspace, config, progress)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return batch * steps / (stamps[warmup + steps] - stamps[warmup]), peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default=None, help="default: 64,128 on a GPU, tiny on a CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (GPU), 8 (CPU)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="default 60 (GPU), 6 (CPU)")
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "fp16", "bf16"])
    parser.add_argument("--frames", type=int, default=120, help="phantom frames to train on")
    parser.add_argument("--repeats", type=int, default=None, help="default 1 (GPU), 3 (CPU)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    from polyp_core.demo import ensure_demo_dataset

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    presets = (args.presets or ("64,128" if gpu else "tiny")).split(",")
    batch = args.batch_size or (64 if gpu else 8)
    steps = args.steps or (60 if gpu else 6)
    repeats = args.repeats or (1 if gpu else 3)
    name = torch.cuda.get_device_name() if gpu else "CPU"
    print(f"DDPM training on {name}: batch {batch}, {steps} timed steps after {args.warmup}, "
          f"mixed precision {args.mixed_precision}, {repeats} alternating repeat(s)")
    results = {"device": name, "batch": batch, "steps": steps, "mixed": args.mixed_precision,
               "repeats": repeats, "versions": {"torch": torch.__version__}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Workspace(Path(tmp) / "ws")
        size = max(get_preset(p).size for p in presets)
        ensure_demo_dataset(workspace, n_frames=args.frames, size=max(64, size), name="bench")
        for preset in presets:
            references, rates, peak = [], [], None
            try:
                for repeat in range(repeats):
                    references.append(reference_rate(preset, batch, steps, device))
                    rate, peak = studio_rate(workspace, preset, batch, args.warmup, steps,
                                             args.mixed_precision, device, repeat)
                    rates.append(rate)
            except torch.OutOfMemoryError:
                print(f"  preset {preset}: out of memory at batch {batch}")
                continue
            rate, reference = statistics.median(rates), statistics.median(references)
            each = ", ".join(f"{r / ref:.2f}" for r, ref in zip(rates, references))
            peak_text = f"{peak:6.2f} GB" if peak is not None else "(CPU)"
            print(f"  preset {preset:>5}: studio {rate:9.1f} images/s, plain fp32 loop "
                  f"{reference:9.1f} images/s, x{rate / reference:5.2f} (each repeat: {each}); "
                  f"peak {peak_text}")
            results["rows"].append({"preset": preset, "images_per_s": rate,
                                    "reference_images_per_s": reference,
                                    "ratio": rate / reference, "peak_gb": peak,
                                    "each": {"studio": rates, "reference": references}})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
